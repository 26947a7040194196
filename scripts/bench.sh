#!/usr/bin/env bash
# Runs the standard benchmarks of shop with shop-bench and writes a short
# Markdown table (also to target/bench/results.md), beside the JSON reports
# and, for the runs at a fixed rate, a line per order (shop-bench --orders):
#
#   - embedded mode: time from launch to the first order RESERVED, idle
#     resident memory, latency at a fixed 200 orders/s, throughput at full
#     speed with 64 and with 256 orders in flight;
#   - distributed mode (Apache Kafka, PostgreSQL and the four service
#     processes, started by scripts/distributed.sh): latency at a fixed
#     200 orders/s over 60 s ($BENCH_RATE_DURATION) with the p99 of its first
#     and last 10 s, throughput at full speed, PostgreSQL transactions per
#     order, and each process's CPU and resident memory, the broker's too;
#     then a second gateway instance, and customers spread over both at
#     100 orders/s (each must see every order of its own);
#   - pgbench -N against the same PostgreSQL for 15 s, the database's own
#     ceiling on this machine;
#   - history (only when asked for): the embedded shop as orders pile up:
#     $BENCH_HISTORY_RUNS (10) runs of $BENCH_HISTORY_RUN (50s) back to back
#     at 200 orders/s with 30% paid on one backend, each with its latency,
#     resident memory and data directory; then a restart with all of it,
#     timed from launch to healthy and to the first order RESERVED, and
#     resident memory with 1,000 connected customers. The unpaid 70%
#     expire at the pay deadline, $BENCH_HISTORY_PAY_TTL (10m): from then
#     on every second also has its expiries; a deadline of seconds gives
#     every run the same work from the start.
#
#   scripts/bench.sh                 everything, 30 s per run
#   BENCH_DURATION=10s BENCH_RATE_DURATION=20s scripts/bench.sh
#   scripts/bench.sh embedded        only the embedded mode
#   scripts/bench.sh distributed     only the distributed mode and pgbench
#   scripts/bench.sh history         only the history runs (not part of all)
#   BENCH_HISTORY_RUNS=30 BENCH_HISTORY_RUN=60s BENCH_HISTORY_PAY_TTL=10s \
#     scripts/bench.sh history       a 30-minute soak at the same work throughout
#
# It uses the PostgreSQL at $SHOP_TEST_DATABASE_URL (default
# postgres://postgres@127.0.0.1:5432/postgres) or starts a throwaway one, as
# scripts/test.sh does, and creates databases named shop_bench_*; a broker
# of its own comes from scripts/kafka.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh

DURATION=${BENCH_DURATION:-30s}
RATE_DURATION=${BENCH_RATE_DURATION:-60s}
WHAT=${1:-all}
case "$WHAT" in
    all | embedded | distributed | history) ;;
    *)
        echo "usage: scripts/bench.sh [all|embedded|distributed|history]" >&2
        exit 1
        ;;
esac

OUT=target/bench
# Each shop-bench connection is one customer ordering far more, and far
# faster, than a person: the shop's per-customer limits are off while
# measuring (every process started below inherits these).
export SHOP_HOLD_LIMIT=0 SHOP_ORDER_RATE=0
WORK=$(mktemp -d /tmp/shop-bench.XXXXXX)
PIDS=()
STOP_DISTRIBUTED=""
cleanup() {
    if [ -n "$STOP_DISTRIBUTED" ]; then
        scripts/distributed.sh down >&2 || true
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    rm -rf "$WORK"
    stop_throwaway
}
trap cleanup EXIT
mkdir -p "$OUT"

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# CPU seconds a process has used so far.
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# CPU seconds all PostgreSQL processes have used so far.
postgres_cpu_s() {
    ps -C postgres -o cputimes= | awk '{ sum += $1 } END { printf "%.2f", sum }'
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# Waits up to 60 s for http://$1/healthz to answer 200.
wait_healthy() {
    for _ in $(seq 6000); do
        if curl -fs --max-time 2 -o /dev/null "http://$1/healthz"; then
            return
        fi
        sleep 0.01
    done
    echo "no healthy service at $1; see the logs in $WORK" >&2
    exit 1
}

# A field of a JSON report: json FILE EXPRESSION (Python, over `r`).
json() {
    python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print($2)" "$1"
}

# Runs shop-bench against $1 and keeps its JSON report in $2.
bench() {
    local gateway=$1 report=$2
    shift 2
    say "shop-bench run $* against $gateway"
    target/release/shop-bench run --gateway "http://$gateway" --duration "${RUN_DURATION:-$DURATION}" --json "$@" >"$report" || {
        local code=$?
        # 3 and 4 still leave a report to read: failed orders or lost stock.
        if [ "$code" -ne 3 ] && [ "$code" -ne 4 ]; then
            exit "$code"
        fi
    }
    python3 - "$report" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
l = r["to_reserved"] or {}
print(f"    {r['reserved_per_s']:.0f} orders/s, p50 {l.get('p50_ms', 0):.1f} ms, "
      f"p99 {l.get('p99_ms', 0):.1f} ms, errors {r['errors']}, conservation {'ok' if r['conservation']['ok'] else 'VIOLATED'}",
      file=sys.stderr)
EOF
}

ROWS=()
# A row of the results table from a report: row MODE LOAD REPORT
row() {
    ROWS+=("$(python3 - "$1" "$2" "$3" <<'EOF'
import json, sys
mode, load, path = sys.argv[1:]
r = json.load(open(path))
l = r["to_reserved"] or {}
ok = "ok" if r["conservation"]["ok"] else "**violated**"
print(f"| {mode} | {load} | {r['reserved_per_s']:.0f} | {l.get('p50_ms', 0):.1f} | {l.get('p90_ms', 0):.1f} "
      f"| {l.get('p99_ms', 0):.1f} | {l.get('max_ms', 0):.1f} | {r['errors']} | {ok} |")
EOF
)")
}
FACTS=()

# Every connection of the load comes from this machine: lift the limit
# per address (100 by default) that would otherwise refuse some of them.
export SHOP_MAX_CONNECTIONS_PER_ADDRESS=1000

say "building shop-backend and shop-bench (release)"
cargo build --release --quiet -p shop-backend -p shop-bench
target/release/shop-bench catalog --skus 1000 --stock 1000000 --out "$WORK/catalog.toml"

embedded() {
    local port address pid started first rss_idle rss_after
    port=$(free_port)
    address=127.0.0.1:$port
    say "embedded mode on $address"
    started=$(now_ms)
    SHOP_LOG=warn target/release/shop-backend --listen "$address" --data-dir "$WORK/embedded" \
        --catalog "$WORK/catalog.toml" --pay-ttl 10m >"$WORK/embedded.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_healthy "$address"
    target/release/shop-bench run --gateway "http://$address" --connections 1 --count 1 \
        --warmup 0s --quiet --json >"$WORK/first.json"
    first=$(($(now_ms) - started))
    sleep 2
    rss_idle=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
    FACTS+=("embedded: launch to first order RESERVED: $first ms (shop-bench's own start and connection included)")
    FACTS+=("embedded: idle resident memory after the first order: $rss_idle MB")

    local cpu_before cpu_after placed
    cpu_before=$(cpu_s "$pid")
    bench "$address" "$OUT/embedded-rate.json" --rate 200 --connections 16 --orders "$OUT/embedded-rate-orders.csv"
    cpu_after=$(cpu_s "$pid")
    placed=$(json "$OUT/embedded-rate.json" 'r["placed"]')
    FACTS+=("embedded: CPU per order at 200 orders/s (warmup included): $(python3 -c "print(f'{($cpu_after - $cpu_before) * 1000 / max($placed, 1):.1f}')") ms")
    row embedded "200 orders/s" "$OUT/embedded-rate.json"
    bench "$address" "$OUT/embedded-full.json" --connections 16 --in-flight 4
    row embedded "full speed, 64 in flight" "$OUT/embedded-full.json"
    # More orders in flight make bigger batches: more orders per transaction.
    bench "$address" "$OUT/embedded-full-256.json" --connections 32 --in-flight 8
    row embedded "full speed, 256 in flight" "$OUT/embedded-full-256.json"
    rss_after=$(awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$pid/status")
    FACTS+=("embedded: resident memory after the runs: $rss_after MB")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
}

psql_admin() {
    psql "$SHOP_TEST_DATABASE_URL" -v ON_ERROR_STOP=1 -qAt "$@"
}

# Transactions committed so far in the shop's database.
commits() {
    psql_admin -c "SELECT pg_stat_force_next_flush()" >/dev/null 2>&1 || true
    psql_admin -c "SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database WHERE datname = 'shop_bench'"
}

# Resident memory of process $1 in MB.
rss_mb() { awk '/VmRSS/ { print int($2 / 1024) }' "/proc/$1/status" 2>/dev/null || echo 0; }

# The p99 of the time to RESERVED of the orders due in the first and in the
# last 10 s of an --orders file: "first last".
window_p99() {
    python3 - "$1" <<'EOF'
import csv, sys
rows = [(float(r["due_ms"]), float(r["seen_ms"])) for r in csv.DictReader(open(sys.argv[1]))]
end = max(due for due, _ in rows)
def p99(values):
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))] if values else 0.0
first = p99([seen for due, seen in rows if due < 10_000])
last = p99([seen for due, seen in rows if due >= end - 10_000])
print(f"{first:.1f} {last:.1f}")
EOF
}

distributed() {
    local gateway db base before after per_order tps state
    ensure_postgres
    base=${SHOP_TEST_DATABASE_URL%/*}
    for db in shop_bench shop_bench_pgbench; do
        psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
    done

    state=$WORK/distributed
    export SHOP_DISTRIBUTED_DIR=$state SHOP_DATABASE_URL=$base/shop_bench
    SHOP_GATEWAY_PORT=$(free_port) SHOP_ORDER_PORT=$(free_port)
    SHOP_STOCK_PORT=$(free_port) SHOP_PAYMENT_PORT=$(free_port)
    export SHOP_GATEWAY_PORT SHOP_ORDER_PORT SHOP_STOCK_PORT SHOP_PAYMENT_PORT
    export SHOP_CATALOG=$WORK/catalog.toml SHOP_PAY_TTL=10m SHOP_LOG=warn
    say "distributed mode: Apache Kafka, PostgreSQL at ${base%%@*}@…, four services (scripts/distributed.sh)"
    STOP_DISTRIBUTED=1
    scripts/distributed.sh up >&2
    gateway=127.0.0.1:$SHOP_GATEWAY_PORT
    local NAMED=("kafka:$(cat "$state/kafka/kafka.pid")") service
    for service in gateway order stock payment; do
        NAMED+=("$service:$(cat "$state/$service.pid")")
    done
    FACTS+=("distributed: Apache Kafka $KAFKA_VERSION (one KRaft node, heap at most 512 MB); the services' Kafka fetch wait: ${SHOP_KAFKA_FETCH_WAIT:-the default}")
    # The stock service publishes its catalogue once at start: wait until
    # the gateway has all of it.
    target/release/shop-bench run --gateway "http://$gateway" --connections 1 --count 1 \
        --warmup 0s --quiet --json >/dev/null
    # A broker that has just started spends most of a core for its first
    # minute compiling its hot paths (the JVM's C2 compiler): warm it up, as
    # a broker that has been running is, before anything is measured.
    say "warming up the broker's JVM: ${BENCH_KAFKA_WARMUP:-45s} at 100 orders/s, not measured"
    target/release/shop-bench run --gateway "http://$gateway" --rate 100 --connections 16 \
        --duration "${BENCH_KAFKA_WARMUP:-45s}" --quiet --json >/dev/null || true

    RUN_DURATION=$RATE_DURATION bench "$gateway" "$OUT/distributed-rate.json" --rate 200 --connections 16 --orders "$OUT/distributed-rate-orders.csv"
    row distributed "200 orders/s, $RATE_DURATION" "$OUT/distributed-rate.json"
    local windows
    windows=$(window_p99 "$OUT/distributed-rate-orders.csv")
    FACTS+=("distributed: p99 to RESERVED at 200 orders/s of the orders due in its first 10 s: ${windows% *} ms; in its last 10 s: ${windows#* } ms")
    sleep 1
    before=$(commits)
    local cpu_before=() entry
    for entry in "${NAMED[@]}"; do cpu_before+=("$(cpu_s "${entry#*:}")"); done
    local postgres_before
    postgres_before=$(postgres_cpu_s)
    bench "$gateway" "$OUT/distributed-full.json" --connections 16 --in-flight 4 --warmup 0s
    local spent=() rss=() index=0
    for entry in "${NAMED[@]}"; do
        spent+=("${entry%%:*} $(python3 -c "print(f'{$(cpu_s "${entry#*:}") - ${cpu_before[$index]}:.1f}')") s")
        rss+=("${entry%%:*} $(rss_mb "${entry#*:}") MB")
        index=$((index + 1))
    done
    spent+=("PostgreSQL $(python3 -c "print(f'{$(postgres_cpu_s) - $postgres_before:.1f}')") s")
    sleep 2
    after=$(commits)
    row distributed "full speed, 64 in flight" "$OUT/distributed-full.json"
    placed=$(json "$OUT/distributed-full.json" 'r["placed"]')
    per_order=$(python3 -c "print(f'{($after - $before) / max($placed, 1):.1f}')")
    FACTS+=("distributed: CPU used during the full-speed run ($DURATION): $(IFS=,; echo "${spent[*]}" | sed 's/,/, /g')")
    FACTS+=("distributed: resident memory after the runs: $(IFS=,; echo "${rss[*]}" | sed 's/,/, /g')")
    FACTS+=("distributed: PostgreSQL transactions per order (to RESERVED with its checkout session, committed during the full-speed run, idle work included): $per_order")
    two_gateways "$state" "$gateway"
    scripts/distributed.sh down >&2
    STOP_DISTRIBUTED=""

    say "pgbench -N for 15 s"
    pgbench -i -q -s 10 "$base/shop_bench_pgbench" >"$WORK/pgbench-init.log" 2>&1
    pgbench -N -c 8 -j 2 -T 15 "$base/shop_bench_pgbench" >"$WORK/pgbench.log" 2>&1
    tps=$(awk '/^tps = / { printf "%.0f", $3 }' "$WORK/pgbench.log")
    FACTS+=("pgbench -N -c 8 -j 2 -T 15 (scale 10): $tps tps")
    local full
    full=$(json "$OUT/distributed-full.json" 'round(r["reserved_per_s"])')
    FACTS+=("distributed target: 50% of $tps tps / $per_order transactions per order = $(python3 -c "print(f'{0.5 * $tps / max($per_order, 0.1):.0f}')") orders/s; reached $full orders/s")
    for db in shop_bench shop_bench_pgbench; do
        psql_admin -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
}

# A second gateway instance of the distributed shop in $1 (the first at
# $2), and customers spread over both at 100 orders/s: each customer must
# see each of its orders RESERVED through the instance it is connected to.
two_gateways() {
    local state=$1 first=$2 second pid
    second=127.0.0.1:$(free_port)
    say "a second gateway on $second; customers spread over both"
    (
        set -a
        . "$state/secrets.env"
        set +a
        SHOP_KAFKA_BROKERS=$(kafka_bootstrap "$state/kafka") SHOP_GATEWAY_URL=http://$second \
            exec target/release/shop-backend gateway --listen "$second"
    ) >>"$state/gateway-2.log" 2>&1 </dev/null &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 600); do
        curl -fs --max-time 2 -o /dev/null "http://$second/healthz" && break
        sleep 0.1
    done
    target/release/shop-bench run --gateway "http://$first,http://$second" --connections 16 \
        --rate 100 --duration "$DURATION" --json --quiet >"$OUT/distributed-two-gateways.json" || {
        say "shop-bench over two gateways failed; see $OUT/distributed-two-gateways.json"
        exit 1
    }
    row distributed "two gateways, 100 orders/s" "$OUT/distributed-two-gateways.json"
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# Starts the embedded backend on $1 with its data in $2; sets PID.
start_embedded() {
    SHOP_LOG=warn SHOP_MAX_CONNECTIONS=2000 SHOP_MAX_CONNECTIONS_PER_ADDRESS=2000 \
        target/release/shop-backend --listen "$1" --data-dir "$2" \
        --catalog "$WORK/catalog.toml" --pay-ttl "${BENCH_HISTORY_PAY_TTL:-10m}" >>"$WORK/history.log" 2>&1 &
    PID=$!
    PIDS+=("$PID")
}

# A row of the history table: history_row REPORT ORDERS RSS_MB DATA_MB
history_row() {
    python3 - "$@" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
l, p = r["to_reserved"] or {}, r["to_paid"] or {}
print(f"| {int(sys.argv[2]):,} | {l.get('p50_ms', 0):.1f} | {l.get('p99_ms', 0):.1f} | {p.get('p99_ms', 0):.1f} "
      f"| {sys.argv[3]} | {sys.argv[4]} | {r['errors']} |")
EOF
}

HISTORY_ROWS=()
history() {
    local port address data runs run_duration run orders=0 report placed
    port=$(free_port)
    address=127.0.0.1:$port
    data=$WORK/history
    runs=${BENCH_HISTORY_RUNS:-10}
    run_duration=${BENCH_HISTORY_RUN:-50s}
    say "history: $runs runs of $run_duration at 200 orders/s, 30% paid, on one embedded backend at $address"
    start_embedded "$address" "$data"
    wait_healthy "$address"
    for run in $(seq "$runs"); do
        report=$OUT/history-$run.json
        RUN_DURATION=$run_duration bench "$address" "$report" --rate 200 --connections 16 --pay 0.3
        placed=$(json "$report" 'r["placed"]')
        orders=$((orders + placed))
        HISTORY_ROWS+=("$(history_row "$report" "$orders" "$(rss_mb "$PID")" "$(du -sm "$data" | cut -f1)")")
    done
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    local started healthy first
    started=$(now_ms)
    start_embedded "$address" "$data"
    wait_healthy "$address"
    healthy=$(($(now_ms) - started))
    target/release/shop-bench run --gateway "http://$address" --connections 1 --count 1 \
        --warmup 0s --quiet --json >"$WORK/first.json"
    first=$(($(now_ms) - started))
    FACTS+=("history: restart with $orders orders placed: launch to healthy $healthy ms, to the first order RESERVED $first ms (shop-bench's own start included)")
    FACTS+=("history: resident memory after the restart: $(rss_mb "$PID") MB; bus records in memory: $(curl -fs "http://$address/metrics" | awk '/^shop_bus_records_in_memory/ { print $2 }')")
    RUN_DURATION=20s bench "$address" "$OUT/history-idle.json" --rate 5 --connections 1000 --warmup 5s
    FACTS+=("history: resident memory with 1,000 connected customers (5 orders/s among them): $(rss_mb "$PID") MB")
    kill "$PID"
    wait "$PID" 2>/dev/null || true
}

case "$WHAT" in
    all)
        embedded
        distributed
        ;;
    embedded) embedded ;;
    distributed) distributed ;;
    history) history ;;
esac

if [ "$WHAT" = history ]; then
    {
        echo "### The shop over time, $(date -u +%Y-%m-%d), $(nproc) cores, runs of ${BENCH_HISTORY_RUN:-50s} at 200 orders/s, 30% paid, pay deadline ${BENCH_HISTORY_PAY_TTL:-10m}"
        echo
        echo "| orders so far | p50 to RESERVED, ms | p99 to RESERVED, ms | p99 pay → PAID, ms | resident memory, MB | data directory, MB | errors |"
        echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        printf '%s\n' "${HISTORY_ROWS[@]}"
        echo
        printf -- '- %s\n' "${FACTS[@]}"
    } | tee "$OUT/history.md"
    exit 0
fi

{
    echo "### shop-bench, $(date -u +%Y-%m-%d), $(nproc) cores, $DURATION per run"
    echo
    echo "| mode | load | RESERVED/s | p50 ms | p90 ms | p99 ms | max ms | errors | conservation |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
    printf '%s\n' "${ROWS[@]}"
    echo
    printf -- '- %s\n' "${FACTS[@]}"
} | tee "$OUT/results.md"
