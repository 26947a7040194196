#!/usr/bin/env bash
# Runs every test of shop: formatting and lints, unit tests, and the
# end-to-end suites against real backends on loopback, in embedded mode and
# in distributed mode (a Kafka-compatible broker and PostgreSQL).
#
#   scripts/test.sh             everything
#   scripts/test.sh saga        extra arguments go to cargo nextest (a filter here)
#
# It provides what the tests need and was not there:
#   - cargo-nextest;
#   - tansu, a Kafka-compatible broker (cargo install, once; the tests start
#     one per distributed test);
#   - PostgreSQL: the server at $SHOP_TEST_DATABASE_URL (default
#     postgres://postgres@127.0.0.1:5432/postgres) if it answers, otherwise
#     a throwaway cluster of Debian's postgresql package, stopped at the end;
#   - Chromium and chromedriver for the browser tests (Debian's chromium
#     and chromium-driver), unless $SHOP_TEST_CHROMIUM and
#     $SHOP_TEST_CHROMEDRIVER point at others.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
trap stop_throwaway EXIT

ensure_nextest
ensure_tansu
ensure_postgres
ensure_chromium

say "formatting"
cargo fmt --all --check
say "lints"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "tests (PostgreSQL at ${SHOP_TEST_DATABASE_URL%%@*}@…, broker $SHOP_TEST_TANSU)"
cargo nextest run --workspace --no-fail-fast "$@"
