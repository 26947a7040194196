//! What customers do: connect, place and pay for orders, and wait for
//! what they should see.

use std::time::Duration;

use shop_client::{Client, Push};
use shop_shared::domain::{CancelReason, Order, OrderStatus, Product, TimelineEvent};
use tokio::sync::broadcast;
use uuid::Uuid;

use super::{Mode, Shop, TEST_OPERATOR_SECRET, WAIT};

pub const GOOD_CARD: &str = "4242 4242 4242 4242";
pub const DECLINED_CARD: &str = "4000 0000 0000 0002";
/// A delayed payment method of the local checkout: settles a few seconds
/// after checkout.
pub const DELAYED_CARD: &str = "4000 0000 0000 1000";

impl Shop {
    /// Waits until the payment service has heard from the checkout that a
    /// session it closed itself (a cancelled order's) is expired, as Stripe
    /// announces one expired through its API: from then on the session
    /// takes no payment. `count` such sessions in all.
    pub async fn wait_sessions_closed(&self, count: f64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        // The shop may hear of the expiry before or after it records that it
        // closed the session itself: either outcome counts.
        loop {
            let mut handled = 0.0;
            for outcome in ["session_already_closed", "processed"] {
                handled += self
                    .metric("shop_webhooks_total", &[("outcome", outcome)])
                    .await;
            }
            if handled >= count {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no checkout.session.expired arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new customer.
    pub async fn customer(&self) -> Client {
        Client::connect(&self.ws_url, None)
            .await
            .expect("customer connects")
    }

    /// An operator's token for `name`, as `shop-backend operator-token`
    /// prints it: from the embedded shop's data directory, or with the
    /// distributed gateways' operator secret.
    pub async fn operator_token(&self, name: &str) -> String {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop-backend"));
        command.args(["operator-token", "--name", name]);
        match self.mode {
            Mode::Embedded => command.arg("--data-dir").arg(self.data_dir()),
            Mode::Distributed => command.args(["--operator-secret", TEST_OPERATOR_SECRET]),
        };
        let output = command
            .env_remove("SHOP_OPERATOR_SECRET")
            .output()
            .await
            .expect("shop-backend operator-token runs");
        assert!(
            output.status.success(),
            "operator-token failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("a token is text")
            .trim()
            .to_owned()
    }

    /// The operator `name`, signed in.
    pub async fn operator(&self, name: &str) -> Client {
        let token = self.operator_token(name).await;
        let client = Client::connect(&self.ws_url, Some(&token))
            .await
            .expect("operator connects");
        assert_eq!(client.operator(), Some(name), "signed in as an operator");
        client
    }

    /// The customer of `token`, connecting again.
    pub async fn returning(&self, token: &str) -> Client {
        Client::connect(&self.ws_url, Some(token))
            .await
            .expect("customer reconnects")
    }

    /// Submits the checkout form at `checkout_url` with `card`.
    pub async fn pay(&self, checkout_url: &str, card: &str) -> reqwest::Response {
        self.http
            .post(checkout_url)
            .form(&[
                ("card_number", card),
                ("expiry", "12/34"),
                ("cvc", "123"),
                ("name", "Test Buyer"),
            ])
            .send()
            .await
            .expect("checkout answers")
    }
}

/// The product `sku` as `client` sees it now.
pub async fn product(client: &Client, sku: &str) -> Product {
    client
        .products()
        .await
        .expect("products")
        .into_iter()
        .find(|product| product.sku == sku)
        .unwrap_or_else(|| panic!("no product {sku}"))
}

pub async fn available(client: &Client, sku: &str) -> i64 {
    product(client, sku).await.available
}

/// Waits until `sku` has `expected` units available: stock changes reach
/// clients on their own topic, shortly before or after the order's status.
pub async fn wait_available(client: &Client, sku: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = available(client, sku).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sku} stayed at {now} units available instead of {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Places an order with a fresh idempotency key.
pub async fn place(client: &Client, lines: &[(&str, i64)]) -> Order {
    client
        .place_order(lines, &Uuid::new_v4().to_string())
        .await
        .expect("order placed")
}

/// Places an order and waits until it is RESERVED with a checkout URL.
pub async fn reserve(client: &Client, lines: &[(&str, i64)]) -> Order {
    let order = place(client, lines).await;
    let order = client
        .wait_for_checkout(order.id, WAIT)
        .await
        .expect("checkout ready");
    assert_eq!(order.status, OrderStatus::Reserved, "{order:?}");
    order
}

pub async fn wait_status(client: &Client, order: &Order, status: OrderStatus) -> Order {
    client
        .wait_for_status(order.id, &[status], WAIT)
        .await
        .unwrap_or_else(|error| panic!("order {} never became {status}: {error}", order.id))
}

/// Waits until `order` is cancelled because its payment failed; returns
/// the reason the customer is shown.
pub async fn wait_payment_failed(client: &Client, order: &Order) -> String {
    let cancelled = wait_status(client, order, OrderStatus::Cancelled).await;
    assert_eq!(
        cancelled.cancel_reason,
        Some(CancelReason::PaymentFailed),
        "{cancelled:?}"
    );
    let last = cancelled.timeline.last().expect("a timeline");
    assert_eq!(last.event, TimelineEvent::Cancelled);
    last.detail.clone().expect("a reason")
}

/// Waits until order `id` shows that its payment was refunded.
pub async fn wait_refunded(client: &Client, id: Uuid) -> Order {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let order = client.order(&id.to_string()).await.expect("order");
        if order.refunded {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {id} was never refunded: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything pushed to a client, gathered as it arrives.
pub struct Pushes {
    receiver: broadcast::Receiver<Push>,
    pub seen: Vec<Push>,
}

impl Pushes {
    pub fn new(client: &Client) -> Pushes {
        Pushes {
            receiver: client.subscribe(),
            seen: Vec::new(),
        }
    }

    /// Takes in whatever has arrived, waiting `quiet` for more.
    pub async fn collect(&mut self, quiet: Duration) {
        while let Ok(Ok(push)) = tokio::time::timeout(quiet, self.receiver.recv()).await {
            self.seen.push(push);
        }
    }

    /// The pushed versions of order `id`.
    pub fn orders(&self, id: Uuid) -> Vec<Order> {
        self.seen
            .iter()
            .filter_map(|push| match push {
                Push::Order(order) if order.id == id => Some(order.clone()),
                _ => None,
            })
            .collect()
    }

    /// The statuses order `id` was pushed in, without repeats.
    pub fn statuses(&self, id: Uuid) -> Vec<OrderStatus> {
        let mut statuses: Vec<OrderStatus> = Vec::new();
        for order in self.orders(id) {
            if statuses.last() != Some(&order.status) {
                statuses.push(order.status);
            }
        }
        statuses
    }

    /// The available quantities pushed for `sku`, in order.
    pub fn availability(&self, sku: &str) -> Vec<i64> {
        self.seen
            .iter()
            .filter_map(|push| match push {
                Push::Product(product) if product.sku == sku => Some(product.available),
                _ => None,
            })
            .collect()
    }
}
