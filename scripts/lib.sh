# Helpers shared by scripts/test.sh and scripts/bench.sh: they provide what
# the tests and benchmarks need and was not there (cargo-nextest, tansu,
# PostgreSQL, Chromium). Source it from the repository's root.

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_nextest() {
    if ! cargo nextest --version >/dev/null 2>&1; then
        say "installing cargo-nextest (once)"
        cargo install cargo-nextest --locked
    fi
}

ensure_tansu() {
    if [ -n "${SHOP_TEST_TANSU:-}" ] && [ -x "$SHOP_TEST_TANSU" ]; then
        return
    fi
    if [ -x "$HOME/.cargo/bin/tansu" ]; then
        export SHOP_TEST_TANSU="$HOME/.cargo/bin/tansu"
        return
    fi
    if command -v tansu >/dev/null 2>&1; then
        export SHOP_TEST_TANSU="$(command -v tansu)"
        return
    fi
    say "installing tansu, a Kafka-compatible broker for the distributed tests (once; takes a while)"
    cargo install tansu --locked --features dynostore
    export SHOP_TEST_TANSU="$HOME/.cargo/bin/tansu"
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
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$THROWAWAY/data" -m fast stop >/dev/null 2>&1 || true
        rm -rf "$THROWAWAY"
    fi
}

ensure_postgres() {
    if [ -n "${SHOP_TEST_DATABASE_URL:-}" ]; then
        return
    fi
    if postgres_answers 127.0.0.1 5432; then
        export SHOP_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
        return
    fi
    # A Debian cluster that exists but is stopped.
    if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
        version=$(ls /etc/postgresql | sort -V | tail -1)
        if pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null && postgres_answers 127.0.0.1 5432; then
            export SHOP_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
            return
        fi
    fi
    if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
        say "installing PostgreSQL (Debian's postgresql package)"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    fi
    PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
    THROWAWAY=$(mktemp -d /tmp/shop-test-postgres.XXXXXX)
    chown postgres: "$THROWAWAY"
    say "starting a throwaway PostgreSQL on 127.0.0.1:55432"
    runuser -u postgres -- "$PGBIN/initdb" -D "$THROWAWAY/data" -A trust -U postgres >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$THROWAWAY/data" -l "$THROWAWAY/log" -w \
        -o "-p 55432 -k $THROWAWAY -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null
    export SHOP_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:55432/postgres"
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
