#!/usr/bin/env bash
# Runs the shop in distributed mode on this machine without Docker: Apache
# Kafka (scripts/kafka.sh), PostgreSQL and the four services, each its own
# process.
#
#   scripts/distributed.sh up        build shop-backend (release), start what is not running
#   scripts/distributed.sh status    what runs, where, and where it logs (exit 0 when
#                                    everything runs, 3 when nothing does, 4 when part)
#   scripts/distributed.sh down      stop everything `up` started, and nothing else
#   scripts/distributed.sh reset     down, then delete the state directory (a database
#                                    at SHOP_DATABASE_URL or on 127.0.0.1:5432 is left alone)
#   scripts/distributed.sh operator-token NAME
#                                    print an operator's token for this shop (shop admin login)
#
# PostgreSQL: the server at $SHOP_DATABASE_URL if set; otherwise
# 127.0.0.1:5432 if it lets user postgres in without a password (database
# `shop`, created if missing); otherwise a cluster of Debian's postgresql package of its own,
# kept in the state directory. Orders, stock and Kafka's log are kept there
# too, so `down` then `up` carries on where the shop was.
#
# Settings (environment):
#   SHOP_DISTRIBUTED_DIR   state directory: logs, pids, Kafka, PostgreSQL
#                          [default: target/distributed in the repository;
#                          a relative path is taken from the current directory]
#   SHOP_GATEWAY_PORT      gateway: WebSocket /ws, return pages [8080]
#   SHOP_ORDER_PORT, SHOP_STOCK_PORT, SHOP_PAYMENT_PORT
#                          health and metrics; payment also serves the
#                          checkout pages and /stripe/webhook [8081, 8082, 8083]
#                          The ports `up` used are kept in the state directory:
#                          `status` and `down` find them there.
#   SHOP_CATALOG, SHOP_PAY_TTL, STRIPE_*, SHOP_LOG ...
#                          passed to the services as documented in README.md
# The token, operator and webhook secrets are generated once into the state
# directory (readable by you only), so customers stay who they are across
# restarts.
set -euo pipefail
CALLER=$PWD
cd "$(dirname "$0")/.."

. scripts/lib.sh

# psql must not wait for ever on a port where something else listens.
export PGCONNECT_TIMEOUT=5

if [ -n "${SHOP_DISTRIBUTED_DIR:-}" ]; then
    case "$SHOP_DISTRIBUTED_DIR" in
        /*) STATE=$SHOP_DISTRIBUTED_DIR ;;
        *) STATE=$CALLER/$SHOP_DISTRIBUTED_DIR ;;
    esac
else
    STATE=$PWD/target/distributed
fi
STATE=${STATE%/}
# Written by `up`: only a directory that has it is ever deleted by `reset`.
MARKER=.shop-distributed
SERVICES=(gateway order stock payment)

# The port of a service: what `up` used (kept in the state directory), or
# for `up` the environment's, or the default.
port_of() {
    local saved="" variable="SHOP_${1^^}_PORT"
    if [ -f "$STATE/ports" ]; then
        saved=$(awk -v service="$1" '$1 == service { print $2 }' "$STATE/ports")
    fi
    if [ "${FOR_UP:-}" = 1 ] && [ -n "${!variable:-}" ]; then
        echo "${!variable}"
    elif [ -n "$saved" ]; then
        echo "$saved"
    else
        case "$1" in
            gateway) echo "${SHOP_GATEWAY_PORT:-8080}" ;;
            order) echo "${SHOP_ORDER_PORT:-8081}" ;;
            stock) echo "${SHOP_STOCK_PORT:-8082}" ;;
            payment) echo "${SHOP_PAYMENT_PORT:-8083}" ;;
        esac
    fi
}

# Whether the service $1 of this state directory runs: its pid file names
# a live shop-backend running that service (a pid left by a crash may have
# been reused since).
alive() {
    local file=$STATE/$1.pid pid
    [ -f "$file" ] || return 1
    pid=$(cat "$file")
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "shop-backend $1 --listen"
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sets DATABASE to the PostgreSQL URL the services use, starting the state
# directory's own cluster when there is no other server. Exits on failure.
choose_database() {
    if [ -n "${SHOP_DATABASE_URL:-}" ]; then
        DATABASE=$SHOP_DATABASE_URL
        return
    fi
    if [ -f "$STATE/postgres/data/PG_VERSION" ]; then
        own_postgres
        return
    fi
    if postgres_answers 127.0.0.1 5432 && postgres_usable 127.0.0.1 5432; then
        local admin=postgres://postgres@127.0.0.1:5432/postgres
        if ! psql "$admin" -qAtc "SELECT 1 FROM pg_database WHERE datname = 'shop'" 2>/dev/null | grep -q 1; then
            psql "$admin" -qc "CREATE DATABASE shop" >/dev/null 2>&1 || {
                say "PostgreSQL answers on 127.0.0.1:5432 but user postgres cannot create database shop there; set SHOP_DATABASE_URL to a database the shop may use"
                exit 1
            }
        fi
        say "using database shop of the PostgreSQL on 127.0.0.1:5432 (reset leaves it alone)"
        DATABASE=postgres://postgres@127.0.0.1:5432/shop
        return
    fi
    own_postgres
}

own_postgres() {
    local port
    if [ "$(id -u)" != 0 ]; then
        say "no PostgreSQL answers on 127.0.0.1:5432, and starting one of its own needs root (it runs as user postgres); start one or set SHOP_DATABASE_URL"
        exit 1
    fi
    mkdir -p "$STATE/postgres"
    if [ -f "$STATE/postgres/port" ]; then
        port=$(cat "$STATE/postgres/port")
    else
        port=$(kafka_free_port)
        echo "$port" >"$STATE/postgres/port"
    fi
    if ! postgres_answers 127.0.0.1 "$port"; then
        if listening "$port"; then
            say "port $port, kept for this shop's PostgreSQL, is taken by something else; free it, or delete $STATE/postgres/port to pick another"
            exit 1
        fi
        say "starting PostgreSQL of its own on 127.0.0.1:$port (data in $STATE/postgres)"
        start_throwaway_postgres "$STATE/postgres" "$port" || {
            say "PostgreSQL did not start; the end of $STATE/postgres/log:"
            tail -n 5 "$STATE/postgres/log" >&2
            exit 1
        }
        touch "$STATE/postgres/started"
    fi
    local admin=postgres://postgres@127.0.0.1:$port/postgres
    if ! psql "$admin" -qAtc "SELECT 1 FROM pg_database WHERE datname = 'shop'" | grep -q 1; then
        psql "$admin" -qc "CREATE DATABASE shop" >/dev/null
    fi
    DATABASE=postgres://postgres@127.0.0.1:$port/shop
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
    # A state directory from before operators existed gets their secret.
    if ! grep -q '^SHOP_OPERATOR_SECRET=' "$STATE/secrets.env"; then
        echo "SHOP_OPERATOR_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')" >>"$STATE/secrets.env"
    fi
    set -a
    . "$STATE/secrets.env"
    set +a
}

wait_healthy() {
    local service=$1 port=$2
    for _ in $(seq 600); do
        if curl -fs --max-time 2 -o /dev/null "http://127.0.0.1:$port/healthz"; then
            return
        fi
        if ! alive "$service"; then
            say "$service exited; the end of $STATE/$service.log:"
            tail -n 20 "$STATE/$service.log" >&2
            exit 1
        fi
        sleep 0.1
    done
    say "$service is not healthy after 60 s or more; see $STATE/$service.log"
    exit 1
}

up() {
    if ! command -v curl >/dev/null 2>&1; then
        say "scripts/distributed.sh needs curl"
        exit 1
    fi
    mkdir -p "$STATE"
    touch "$STATE/$MARKER"
    local service port ports=() other
    for service in "${SERVICES[@]}"; do
        port=$(FOR_UP=1 port_of "$service")
        if ! [[ "$port" =~ ^[0-9]+$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
            say "SHOP_${service^^}_PORT=$port is not a port number"
            exit 1
        fi
        for other in "${ports[@]}"; do
            if [ "$other" = "$port" ]; then
                say "two services would share port $port; give each its own (SHOP_GATEWAY_PORT, SHOP_ORDER_PORT, SHOP_STOCK_PORT, SHOP_PAYMENT_PORT)"
                exit 1
            fi
        done
        ports+=("$port")
        if alive "$service" && [ "$port" != "$(port_of "$service")" ]; then
            say "$service already runs on port $(port_of "$service"); run down first to move it"
            exit 1
        fi
        if ! alive "$service" && listening "$port"; then
            say "port $port, for the $service service, is taken (an embedded shop-backend?); stop what uses it or set SHOP_${service^^}_PORT"
            exit 1
        fi
    done
    {
        for service in "${SERVICES[@]}"; do
            echo "$service $(FOR_UP=1 port_of "$service")"
        done
    } >"$STATE/ports.new"
    mv "$STATE/ports.new" "$STATE/ports"

    say "building shop-backend (release)"
    cargo build --release --quiet -p shop-backend
    local brokers
    if kafka_running "$STATE/kafka"; then
        brokers=$(kafka_bootstrap "$STATE/kafka")
    else
        say "starting Apache Kafka $KAFKA_VERSION (log dir $STATE/kafka)"
        brokers=$(kafka_start "$STATE/kafka")
    fi
    choose_database
    secrets
    export SHOP_KAFKA_BROKERS=$brokers SHOP_DATABASE_URL=$DATABASE
    export SHOP_GATEWAY_URL=http://127.0.0.1:$(port_of gateway)

    for service in "${SERVICES[@]}"; do
        port=$(port_of "$service")
        if alive "$service"; then
            continue
        fi
        setsid target/release/shop-backend "$service" --listen "127.0.0.1:$port" \
            >>"$STATE/$service.log" 2>&1 </dev/null &
        echo $! >"$STATE/$service.pid"
    done
    for service in "${SERVICES[@]}"; do
        wait_healthy "$service" "$(port_of "$service")"
    done
    status || true
    local gateway
    gateway=http://127.0.0.1:$(port_of gateway)
    echo
    if [ "$(port_of gateway)" = 8080 ]; then
        echo "The shop is at $gateway: shop products, shop-tui."
    else
        echo "The shop is at $gateway: shop --gateway $gateway products, shop-tui --gateway $gateway."
    fi
    echo "An operator's token: scripts/distributed.sh operator-token NAME | shop admin login"
    echo "Stop it with: scripts/distributed.sh down"
}

# Prints an operator's token for this shop, signed with its operator secret.
operator_token() {
    if [ -z "${1:-}" ]; then
        echo "usage: scripts/distributed.sh operator-token NAME" >&2
        exit 1
    fi
    if [ ! -f "$STATE/secrets.env" ]; then
        echo "no shop was started with the state directory $STATE: run scripts/distributed.sh up first" >&2
        exit 1
    fi
    secrets
    if [ ! -x target/release/shop-backend ]; then
        cargo build --release -q -p shop-backend
    fi
    target/release/shop-backend operator-token --name "$1"
}

status() {
    local service up=0 down=0
    if [ ! -f "$STATE/$MARKER" ]; then
        echo "nothing was started with the state directory $STATE"
        return 3
    fi
    if kafka_running "$STATE/kafka"; then
        echo "kafka     running  pid $(cat "$STATE/kafka/kafka.pid")  $(kafka_bootstrap "$STATE/kafka")  log $STATE/kafka/kafka.log"
        up=$((up + 1))
    else
        echo "kafka     stopped"
        down=$((down + 1))
    fi
    if [ -f "$STATE/postgres/port" ] && postgres_answers 127.0.0.1 "$(cat "$STATE/postgres/port")"; then
        echo "postgres  running  127.0.0.1:$(cat "$STATE/postgres/port")  log $STATE/postgres/log"
        up=$((up + 1))
    elif [ -f "$STATE/postgres/data/PG_VERSION" ]; then
        echo "postgres  stopped"
        down=$((down + 1))
    else
        echo "postgres  not started here (the server at SHOP_DATABASE_URL or 127.0.0.1:5432)"
    fi
    for service in "${SERVICES[@]}"; do
        if alive "$service"; then
            printf '%-9s running  pid %s  http://127.0.0.1:%s  log %s\n' "$service" \
                "$(cat "$STATE/$service.pid")" "$(port_of "$service")" "$STATE/$service.log"
            up=$((up + 1))
        else
            printf '%-9s stopped\n' "$service"
            down=$((down + 1))
        fi
    done
    if [ "$down" -eq 0 ]; then
        return 0
    elif [ "$up" -eq 0 ]; then
        return 3
    fi
    return 4
}

# Stops service $1 with SIGTERM, waiting up to 30 s.
stop_service() {
    local file=$STATE/$1.pid pid
    if ! alive "$1"; then
        rm -f "$file"
        return
    fi
    say "stopping $1"
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
    if [ ! -f "$STATE/$MARKER" ]; then
        return 0
    fi
    for service in payment order stock gateway; do
        stop_service "$service"
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

# operator-token takes a name; nothing else takes an argument.
if { [ $# -gt 1 ] && [ "$1" != operator-token ]; } || [ $# -gt 2 ]; then
    echo "usage: scripts/distributed.sh up|status|down|reset|operator-token NAME (no further arguments; settings are environment variables, see --help)" >&2
    exit 1
fi
case "${1:-}" in
    up) up ;;
    down) down ;;
    operator-token) operator_token "${2:-}" ;;
    status)
        rc=0
        status || rc=$?
        exit "$rc"
        ;;
    reset)
        if [ ! -e "$STATE" ]; then
            exit 0
        fi
        if [ ! -f "$STATE/$MARKER" ]; then
            say "$STATE is not a state directory of scripts/distributed.sh (it has no $MARKER); not deleting it"
            exit 1
        fi
        down
        say "removing $STATE"
        rm -rf "$STATE"
        ;;
    -h | --help | help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//' ;;
    *)
        echo "usage: scripts/distributed.sh up|status|down|reset|operator-token NAME" >&2
        exit 1
        ;;
esac
