#!/usr/bin/env bash
# Runs every test of shop: formatting and lints, unit tests, and the
# end-to-end suites against real backends on loopback, in embedded mode and
# in distributed mode (Apache Kafka and PostgreSQL).
#
#   scripts/test.sh             everything
#   scripts/test.sh saga        extra arguments go to cargo nextest (a filter here)
#
# It provides what the tests need and was not there:
#   - cargo-nextest;
#   - Apache Kafka (scripts/kafka.sh: resolved from Maven Central once per
#     machine, Java 17 and Maven needed): one broker for the whole run,
#     shared by the distributed tests, each under its own topic prefix (tests
#     that stop the broker start their own); $SHOP_TEST_KAFKA_BROKERS points
#     the tests at a running broker instead;
#   - PostgreSQL: the server at $SHOP_TEST_DATABASE_URL (default
#     postgres://postgres@127.0.0.1:5432/postgres) if it answers and lets
#     user postgres in without a password, otherwise
#     a throwaway cluster of Debian's postgresql package, stopped at the end;
#   - Chromium and chromedriver for the browser tests (Debian's chromium
#     and chromium-driver), unless $SHOP_TEST_CHROMIUM and
#     $SHOP_TEST_CHROMEDRIVER point at others;
#   - the OpenSSH client (Debian's openssh-client: ssh, ssh-keygen,
#     ssh-keyscan) for the tests of the SSH shop.
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/lib.sh
KAFKA_DIR=$(mktemp -d /tmp/shop-test-kafka.XXXXXX)
trap 'stop_test_kafka; rm -rf "$KAFKA_DIR"; stop_throwaway' EXIT

ensure_nextest
kafka_install
ensure_postgres
ensure_chromium
ensure_openssh

say "formatting"
cargo fmt --all --check
say "dependencies"
check_dependencies
say "lints"
cargo clippy --locked --workspace --all-targets --quiet -- -D warnings
# Kafka starts last, so that a failed lint ends the run without it.
ensure_test_kafka "$KAFKA_DIR"
say "tests (PostgreSQL at ${SHOP_TEST_DATABASE_URL%%@*}@…, Kafka at $SHOP_TEST_KAFKA_BROKERS)"
cargo nextest run --locked --workspace --no-fail-fast "$@"
