# Helpers shared by scripts/test.sh, scripts/bench.sh and
# scripts/distributed.sh: they provide what the tests, benchmarks and local
# runs need and was not there (cargo-nextest, Apache Kafka, PostgreSQL,
# Chromium). Source it from the repository's root.

# Bold only on a terminal, so that logs and pipes get plain text.
say() {
    if [ -t 2 ]; then printf '\033[1m==> %s\033[0m\n' "$*" >&2; else printf '==> %s\n' "$*" >&2; fi
}

# Says what went wrong and stops the script.
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

. scripts/kafka.sh

ensure_nextest() {
    if ! cargo nextest --version >/dev/null 2>&1; then
        say "installing cargo-nextest (once)"
        cargo install cargo-nextest --locked
    fi
}

# A broker for the test run: the one at $SHOP_TEST_KAFKA_BROKERS if set,
# otherwise Apache Kafka started in $1 (stopped by stop_test_kafka).
TEST_KAFKA=""
ensure_test_kafka() {
    if [ -n "${SHOP_TEST_KAFKA_BROKERS:-}" ]; then
        return
    fi
    TEST_KAFKA=$1
    say "starting Apache Kafka $KAFKA_VERSION for the distributed tests"
    SHOP_TEST_KAFKA_BROKERS=$(kafka_start "$TEST_KAFKA")
    export SHOP_TEST_KAFKA_BROKERS
}

stop_test_kafka() {
    if [ -n "$TEST_KAFKA" ]; then
        say "stopping Apache Kafka"
        kafka_stop "$TEST_KAFKA"
        rm -rf "$TEST_KAFKA"
        TEST_KAFKA=""
    fi
}

# Whether PostgreSQL answers at host $1 port $2.
postgres_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$1" -p "$2" -t 3
    else
        (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
    fi
}

THROWAWAY=""
stop_throwaway() {
    if [ -n "$THROWAWAY" ]; then
        say "stopping the throwaway PostgreSQL"
        stop_postgres_in "$THROWAWAY"
        rm -rf "$THROWAWAY"
    fi
}

# Whether user postgres can log in without a password at host $1 port $2
# (a server that answers may still ask for one, as Debian's default
# cluster does over TCP).
postgres_usable() {
    if command -v psql >/dev/null 2>&1; then
        PGCONNECT_TIMEOUT=5 psql "postgres://postgres@$1:$2/postgres" -qAtc 'SELECT 1' >/dev/null 2>&1
    else
        postgres_answers "$1" "$2"
    fi
}

ensure_postgres() {
    if [ -n "${SHOP_TEST_DATABASE_URL:-}" ]; then
        return
    fi
    if postgres_answers 127.0.0.1 5432; then
        if postgres_usable 127.0.0.1 5432; then
            export SHOP_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
            return
        fi
        say "PostgreSQL on 127.0.0.1:5432 does not let user postgres in without a password; using a throwaway cluster instead (SHOP_TEST_DATABASE_URL names another server)"
    fi
    THROWAWAY=$(mktemp -d /tmp/shop-test-postgres.XXXXXX)
    say "starting a throwaway PostgreSQL on 127.0.0.1:55432"
    start_throwaway_postgres "$THROWAWAY" 55432
    export SHOP_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:55432/postgres"
}

# Installs Debian's postgresql unless there, then creates a cluster in
# $1/data (unless made before) with trust authentication for user postgres,
# and starts it on
# 127.0.0.1:$2 (its socket and log in $1). Stop it with stop_postgres_in $1.
start_throwaway_postgres() {
    local dir=$1 port=$2
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        say "installing PostgreSQL (Debian's postgresql package)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    chown postgres: "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        runuser -u postgres -- "$PGBIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
    fi
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
        -o "-p $port -k '$dir' -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
}

# Stops the cluster that start_throwaway_postgres made in $1.
stop_postgres_in() {
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    runuser -u postgres -- "$bin/pg_ctl" -D "$1/data" -m fast stop >/dev/null 2>&1 || true
}

ensure_chromium() {
    local chromium="${SHOP_TEST_CHROMIUM:-/usr/bin/chromium}"
    local driver="${SHOP_TEST_CHROMEDRIVER:-/usr/bin/chromedriver}"
    if [ -x "$chromium" ] && [ -x "$driver" ]; then
        return
    fi
    say "installing Chromium and chromedriver for the browser tests (Debian's chromium, chromium-driver)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
}

ensure_openssh() {
    if command -v ssh >/dev/null && command -v ssh-keygen >/dev/null && command -v ssh-keyscan >/dev/null; then
        return
    fi
    say "installing the OpenSSH client for the SSH shop's tests (Debian's openssh-client)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-client >/dev/null
}

# What the dependency tree promises: TLS through rustls only (building needs
# no OpenSSL), and every package built alone with the same features as the
# whole workspace (the workspace-hack crate, kept by `cargo hakari
# generate`), so that `cargo run -p shop-backend` after a workspace build
# reuses what was built.
check_dependencies() {
    if cargo tree --locked --workspace -i openssl-sys > /dev/null 2>&1; then
        die "openssl-sys is in the dependency tree (cargo tree -i openssl-sys): use rustls"
    fi
    local tree=(--locked -e normal,build --prefix none -f '{p} {f}')
    local all package extra
    all=$(cargo tree "${tree[@]}" --workspace | sed 's/ (\*)$//' | sort -u)
    for package in shop-backend shop-cli shop-tui shop-ssh shop-bench; do
        extra=$(cargo tree "${tree[@]}" -p "$package" | sed 's/ (\*)$//' | sort -u \
            | comm -23 - <(printf '%s\n' "$all"))
        if [ -n "$extra" ]; then
            die "$package alone builds dependencies with other features than the workspace \
(run \`cargo hakari generate\` and \`cargo hakari manage-deps\`):
$extra"
        fi
    done
}
