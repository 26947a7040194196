#!/usr/bin/env bash
# Runs the shop in distributed mode on this machine without Docker: Apache
# Kafka (scripts/kafka.sh), PostgreSQL and the four services, each its own
# process.
#
#   scripts/distributed.sh up        build shop-backend (release), start what is not running
#   scripts/distributed.sh status    what runs, where, and where it logs
#   scripts/distributed.sh down      stop everything `up` started, and nothing else
#   scripts/distributed.sh reset     down, then forget the shop's data
#
# PostgreSQL: the server at $SHOP_DATABASE_URL if set; otherwise
# 127.0.0.1:5432 if it answers (database `shop`, user postgres, created if
# missing); otherwise a cluster of Debian's postgresql package of its own,
# kept in the state directory. Orders, stock and Kafka's log are kept there
# too, so `down` then `up` carries on where the shop was.
#
# Settings (environment):
#   SHOP_DISTRIBUTED_DIR   state directory: logs, pids, Kafka, PostgreSQL
#                          [default: target/distributed]
#   SHOP_GATEWAY_PORT      gateway: WebSocket /ws, return pages [8080]
#   SHOP_ORDER_PORT, SHOP_STOCK_PORT, SHOP_PAYMENT_PORT
#                          health and metrics; payment also serves the
#                          checkout pages and /stripe/webhook [8081, 8082, 8083]
#   SHOP_CATALOG, SHOP_PAY_TTL, STRIPE_*, SHOP_LOG ...
#                          passed to the services as documented in README.md
# The token and webhook secrets are generated once into the state
# directory (readable by you only), so customers stay who they are across
# restarts.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

STATE=${SHOP_DISTRIBUTED_DIR:-target/distributed}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
SERVICES=(gateway order stock payment)

port_of() {
    case "$1" in
        gateway) echo "${SHOP_GATEWAY_PORT:-8080}" ;;
        order) echo "${SHOP_ORDER_PORT:-8081}" ;;
        stock) echo "${SHOP_STOCK_PORT:-8082}" ;;
        payment) echo "${SHOP_PAYMENT_PORT:-8083}" ;;
    esac
}

# Whether the process of pid file $1 runs.
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The PostgreSQL URL the services use; starts the state directory's own
# cluster when there is no other server.
database_url() {
    if [ -n "${SHOP_DATABASE_URL:-}" ]; then
        printf '%s\n' "$SHOP_DATABASE_URL"
        return
    fi
    if [ -f "$STATE/postgres/data/PG_VERSION" ]; then
        own_postgres
        return
    fi
    if postgres_answers 127.0.0.1 5432; then
        local admin=postgres://postgres@127.0.0.1:5432/postgres
        if ! psql "$admin" -qAtc "SELECT 1 FROM pg_database WHERE datname = 'shop'" 2>/dev/null | grep -q 1; then
            psql "$admin" -qc "CREATE DATABASE shop" >/dev/null || {
                say "PostgreSQL answers on 127.0.0.1:5432 but user postgres cannot create database shop there; set SHOP_DATABASE_URL to a database the shop may use"
                exit 1
            }
        fi
        printf '%s\n' postgres://postgres@127.0.0.1:5432/shop
        return
    fi
    own_postgres
}

own_postgres() {
    local port
    mkdir -p "$STATE/postgres"
    if [ -f "$STATE/postgres/port" ]; then
        port=$(cat "$STATE/postgres/port")
    else
        port=$(kafka_free_port)
        echo "$port" >"$STATE/postgres/port"
    fi
    if ! postgres_answers 127.0.0.1 "$port"; then
        say "starting PostgreSQL of its own on 127.0.0.1:$port (data in $STATE/postgres)"
        start_throwaway_postgres "$STATE/postgres" "$port"
        touch "$STATE/postgres/started"
    fi
    local admin=postgres://postgres@127.0.0.1:$port/postgres
    if ! psql "$admin" -qAtc "SELECT 1 FROM pg_database WHERE datname = 'shop'" | grep -q 1; then
        psql "$admin" -qc "CREATE DATABASE shop" >/dev/null
    fi
    printf 'postgres://postgres@127.0.0.1:%s/shop\n' "$port"
}

secrets() {
    if [ ! -f "$STATE/secrets.env" ]; then
        (
            umask 077
            {
                echo "SHOP_TOKEN_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
                echo "SHOP_WEBHOOK_SECRET=whsec_$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            } >"$STATE/secrets.env"
        )
    fi
    set -a
    . "$STATE/secrets.env"
    set +a
}

wait_healthy() {
    local service=$1 port=$2
    for _ in $(seq 1200); do
        if curl -fs -o /dev/null "http://127.0.0.1:$port/healthz"; then
            return
        fi
        if ! alive "$STATE/$service.pid"; then
            say "$service exited; the end of $STATE/$service.log:"
            tail -n 20 "$STATE/$service.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    say "$service is not healthy after 60 s; see $STATE/$service.log"
    exit 1
}

up() {
    if ! command -v curl >/dev/null 2>&1; then
        say "scripts/distributed.sh needs curl"
        exit 1
    fi
    say "building shop-backend (release)"
    cargo build --release --quiet -p shop-backend
    local service port
    for service in "${SERVICES[@]}"; do
        port=$(port_of "$service")
        if ! alive "$STATE/$service.pid" && listening "$port"; then
            say "port $port, for the $service service, is taken (an embedded shop-backend?); stop what uses it or set SHOP_${service^^}_PORT"
            exit 1
        fi
    done

    local brokers
    if kafka_running "$STATE/kafka"; then
        brokers=$(kafka_bootstrap "$STATE/kafka")
    else
        say "starting Apache Kafka $KAFKA_VERSION (log dir $STATE/kafka)"
        brokers=$(kafka_start "$STATE/kafka")
    fi
    local database
    database=$(database_url)
    secrets
    export SHOP_KAFKA_BROKERS=$brokers SHOP_DATABASE_URL=$database
    export SHOP_GATEWAY_URL=http://127.0.0.1:$(port_of gateway)

    for service in "${SERVICES[@]}"; do
        port=$(port_of "$service")
        if alive "$STATE/$service.pid"; then
            continue
        fi
        setsid target/release/shop-backend "$service" --listen "127.0.0.1:$port" \
            >>"$STATE/$service.log" 2>&1 </dev/null &
        echo $! >"$STATE/$service.pid"
    done
    for service in "${SERVICES[@]}"; do
        wait_healthy "$service" "$(port_of "$service")"
    done
    status
    echo
    echo "The shop is at http://127.0.0.1:$(port_of gateway) (shop products; shop-tui)."
    echo "Stop it with: scripts/distributed.sh down"
}

status() {
    local service running=0
    if kafka_running "$STATE/kafka"; then
        echo "kafka     running  pid $(cat "$STATE/kafka/kafka.pid")  $(kafka_bootstrap "$STATE/kafka")  log $STATE/kafka/kafka.log"
        running=1
    else
        echo "kafka     stopped"
    fi
    if [ -f "$STATE/postgres/port" ] && postgres_answers 127.0.0.1 "$(cat "$STATE/postgres/port")"; then
        echo "postgres  running  127.0.0.1:$(cat "$STATE/postgres/port")  log $STATE/postgres/log"
        running=1
    elif [ -f "$STATE/postgres/data/PG_VERSION" ]; then
        echo "postgres  stopped"
    else
        echo "postgres  not started here (the server at SHOP_DATABASE_URL or 127.0.0.1:5432)"
    fi
    for service in "${SERVICES[@]}"; do
        if alive "$STATE/$service.pid"; then
            printf '%-9s running  pid %s  http://127.0.0.1:%s  log %s\n' "$service" \
                "$(cat "$STATE/$service.pid")" "$(port_of "$service")" "$STATE/$service.log"
            running=1
        else
            printf '%-9s stopped\n' "$service"
        fi
    done
    [ "$running" -eq 1 ]
}

# Stops the process of pid file $1 with SIGTERM, waiting up to 30 s.
stop_pid() {
    local file=$1 pid
    if ! alive "$file"; then
        rm -f "$file"
        return
    fi
    pid=$(cat "$file")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 300); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "pid $pid did not stop within 30 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

down() {
    local service
    for service in payment order stock gateway; do
        if alive "$STATE/$service.pid"; then
            say "stopping $service"
        fi
        stop_pid "$STATE/$service.pid"
    done
    if kafka_running "$STATE/kafka"; then
        say "stopping Apache Kafka"
        kafka_stop "$STATE/kafka"
    fi
    if [ -f "$STATE/postgres/started" ]; then
        say "stopping PostgreSQL"
        stop_postgres_in "$STATE/postgres"
        rm -f "$STATE/postgres/started"
    fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status || exit 3 ;;
    reset)
        down
        say "removing $STATE"
        rm -rf "$STATE"
        ;;
    -h | --help | help) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' ;;
    *)
        echo "usage: scripts/distributed.sh up|status|down|reset" >&2
        exit 1
        ;;
esac
