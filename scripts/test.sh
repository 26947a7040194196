#!/usr/bin/env bash
# Runs every test of shop: formatting and lints, unit tests, and the
# end-to-end suites against real backends on loopback.
#
#   scripts/test.sh             everything
#   scripts/test.sh e2e         extra arguments go to cargo nextest (a filter here)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (once)"
    cargo install cargo-nextest --locked
fi

say "formatting"
cargo fmt --all --check
say "lints"
cargo clippy --workspace --all-targets --quiet -- -D warnings
say "tests"
cargo nextest run --workspace --no-fail-fast "$@"
