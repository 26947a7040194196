#!/usr/bin/env bash
# A tour of shop that runs unattended:
#   1. starts an embedded backend unless one answers at $SHOP_GATEWAY
#      (its own: a free port, a fresh data directory, a 10 s pay deadline,
#      a product with only three units left);
#   2. has two customers, alice and bob, race for the last units;
#   3. pays the winner's order on the local checkout page with the test
#      card, over plain HTTP (curl);
#   4. lets a third customer's order expire;
#   5. prints what happened.
#
#   scripts/demo.sh
#   SHOP_GATEWAY=http://127.0.0.1:8080 scripts/demo.sh   use a running backend
#
# SHOP_BIN_DIR may name a directory holding built `shop` and `shop-backend`
# binaries; otherwise they are built with cargo (release).
set -euo pipefail
cd "$(dirname "$0")/.."

bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
step() { printf '\033[36m$ %s\033[0m\n' "$*"; }

if [ -n "${SHOP_BIN_DIR:-}" ]; then
    bin="$SHOP_BIN_DIR"
else
    bold "Building shop and shop-backend (release)…"
    cargo build --release --quiet -p shop-backend -p shop-cli
    bin="target/release"
fi
for program in shop shop-backend; do
    [ -x "$bin/$program" ] || { echo "demo: $bin/$program is missing; build it with cargo build -p shop-cli -p shop-backend" >&2; exit 1; }
done

work=$(mktemp -d /tmp/shop-demo.XXXXXX)
backend_pid=""
cleanup() {
    if [ -n "$backend_pid" ]; then
        kill "$backend_pid" 2>/dev/null || true
        wait "$backend_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# The demo's customers keep their tokens here, not in your config.
export XDG_CONFIG_HOME="$work/config"

healthy() { curl -fsS --max-time 2 "$1/healthz" >/dev/null 2>&1; }

if [ -n "${SHOP_GATEWAY:-}" ] && healthy "$SHOP_GATEWAY"; then
    bold "Using the backend at $SHOP_GATEWAY"
    sku=$("$bin/shop" products --json | python3 -c '
import json, sys
products = [p for p in json.load(sys.stdin) if p["available"] >= 2]
print(products[0]["sku"] if products else "")')
    [ -n "$sku" ] || { echo "demo: no product at $SHOP_GATEWAY has two units left to race for" >&2; exit 1; }
else
    bold "Starting an embedded backend (pay deadline 10s)…"
    cat > "$work/catalog.toml" <<'EOF'
currency = "EUR"

[[products]]
sku = "SKU-001"
name = "MacBook Pro"
price = "4500.00"
stock = 10

[[products]]
sku = "LAST-3"
name = "Limited edition keyboard"
price = "249.00"
stock = 3
EOF
    "$bin/shop-backend" --listen 127.0.0.1:0 --data-dir "$work/data" --pay-ttl 10s \
        --catalog "$work/catalog.toml" > "$work/backend.out" 2> "$work/backend.log" &
    backend_pid=$!
    for _ in $(seq 1 100); do
        grep -q "listening on" "$work/backend.out" 2>/dev/null && break
        sleep 0.1
    done
    address=$(grep -o 'http://[0-9.:]*' "$work/backend.out" | head -1)
    [ -n "$address" ] || { echo "demo: the backend did not start:" >&2; cat "$work/backend.log" >&2; exit 1; }
    export SHOP_GATEWAY="$address"
    sku="LAST-3"
    echo "shop-backend is serving on $SHOP_GATEWAY"
fi
shop() { "$bin/shop" "$@"; }

bold "The catalogue"
step "shop products"
shop products

available=$(shop products --json | python3 -c "import json,sys; print(next(p['available'] for p in json.load(sys.stdin) if p['sku']=='$sku'))")
want=$(( available / 2 + 1 ))
bold "alice and bob race for the $available units of $sku left, $want each"
step "shop --profile alice order $sku:$want  &  shop --profile bob order $sku:$want"
set +e
shop --profile alice order "$sku:$want" --json > "$work/alice.json" 2> "$work/alice.err" &
alice=$!
shop --profile bob order "$sku:$want" --json > "$work/bob.json" 2> "$work/bob.err" &
bob=$!
wait $alice; alice_code=$?
wait $bob; bob_code=$?
set -e
if [ $alice_code -eq 0 ]; then winner=alice; loser=bob; else winner=bob; loser=alice; fi
winner_code=$([ $winner = alice ] && echo $alice_code || echo $bob_code)
loser_code=$([ $loser = alice ] && echo $alice_code || echo $bob_code)
if [ "$winner_code" -ne 0 ] || [ "$loser_code" -ne 3 ]; then
    echo "demo: expected one order reserved and one refused, got exit codes $alice_code and $bob_code" >&2
    cat "$work/alice.err" "$work/bob.err" >&2
    exit 1
fi
echo "$winner got the units; $loser was refused: $(cat "$work/$loser.err")"

order=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$work/$winner.json")
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["checkout_url"])' "$work/$winner.json")
bold "$winner pays on the local checkout page with the test card, over plain HTTP"
step "curl -d card_number=4242424242424242 -d expiry=12/34 -d cvc=123 -d name=$winner $url"
code=$(curl -s -o /dev/null -w '%{http_code}' -d card_number=4242424242424242 -d expiry=12/34 \
    -d cvc=123 -d name="$winner" "$url")
echo "the checkout answered $code (303: paid, on to the payment-return page)"
step "shop --profile $winner pay ${order:0:8} --wait"
shop --profile "$winner" pay "${order:0:8}" --wait

bold "carol orders but never pays"
step "shop --profile carol order SKU-001"
shop --profile carol order SKU-001
carol_order=$(shop --profile carol orders --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"][:8])')
step "shop --profile carol pay $carol_order --wait     (nobody pays; the deadline passes)"
set +e
shop --profile carol pay "$carol_order" --wait
carol_code=$?
set -e
[ $carol_code -eq 3 ] || { echo "demo: carol's order should have expired (exit 3), got $carol_code" >&2; exit 1; }
echo "(exit code 3: cancelled because the deadline passed)"

bold "What happened"
for customer in alice bob carol; do
    step "shop --profile $customer orders"
    shop --profile "$customer" orders
done
step "shop products"
shop products
bold "Demo complete."
