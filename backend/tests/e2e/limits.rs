//! Bounds on what one client can make the shop hold: the per-customer
//! limits on placing orders (units held in unpaid orders, orders per
//! minute), whose refusals have their own codes and change nothing, and
//! the webhook's body limit.

use shop_client::{Client, ClientError};
use shop_shared::protocol::ErrorCode;
use uuid::Uuid;

use crate::harness::{Mode, Options, Shop, available, place, reserve, wait_available};

/// Places `lines` and returns the error the gateway refuses them with.
async fn refusal(client: &Client, lines: &[(&str, i64)]) -> (ErrorCode, String) {
    match client.place_order(lines, &Uuid::new_v4().to_string()).await {
        Err(ClientError::Server { code, message }) => (code, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

async fn the_hold_limit_refuses_with_its_code_and_moves_no_stock(mode: Mode) {
    let shop = Shop::start_with(
        mode,
        Options {
            env: vec![("SHOP_HOLD_LIMIT", "5".into())],
            ..Options::default()
        },
    )
    .await;
    let client = shop.customer().await;
    let first = reserve(&client, &[("SKU-001", 3)]).await;
    let before = available(&client, "SKU-002").await;

    let (code, message) = refusal(&client, &[("SKU-002", 3)]).await;
    assert_eq!(code, ErrorCode::HoldLimit);
    assert!(
        message.contains("at most 5 units") && message.contains("you hold 3"),
        "{message}"
    );
    assert_eq!(
        client.orders().await.expect("orders").len(),
        1,
        "no order was stored"
    );

    // An order that fits goes through the same services after the refused
    // one: had the refused 3 units moved, SKU-002 would end 5 lower.
    reserve(&client, &[("SKU-002", 2)]).await;
    wait_available(&client, "SKU-002", before - 2).await;

    let other = shop.customer().await;
    reserve(&other, &[("SKU-002", 5)]).await;

    // Cancelling an unpaid order gets the customer under the limit.
    client
        .cancel_order(&first.id.to_string())
        .await
        .expect("cancelled");
    reserve(&client, &[("SKU-003", 3)]).await;
    assert_eq!(
        refusal(&client, &[("SKU-003", 1)]).await.0,
        ErrorCode::HoldLimit
    );
}

async fn the_order_rate_refuses_the_order_over_the_limit_with_rate_limited(mode: Mode) {
    let shop = Shop::start_with(
        mode,
        Options {
            env: vec![("SHOP_ORDER_RATE", "2".into())],
            ..Options::default()
        },
    )
    .await;
    let client = shop.customer().await;
    let key = Uuid::new_v4().to_string();
    let first = client
        .place_order(&[("SKU-001", 1)], &key)
        .await
        .expect("first order");
    place(&client, &[("SKU-002", 1)]).await;

    let (code, message) = refusal(&client, &[("SKU-003", 1)]).await;
    assert_eq!(code, ErrorCode::RateLimited);
    assert!(
        message.contains("at most 2 orders a minute") && message.contains("wait"),
        "{message}"
    );
    assert_eq!(client.orders().await.expect("orders").len(), 2);

    let again = client
        .place_order(&[("SKU-001", 1)], &key)
        .await
        .expect("a retry of a stored order is answered whatever the rate");
    assert_eq!(again.id, first.id);
    let other = shop.customer().await;
    place(&other, &[("SKU-003", 1)]).await;
}

/// A webhook body is buffered up to a limit before the signature is
/// checked, so a forged request cannot make the shop hash megabytes.
async fn a_webhook_body_over_the_limit_is_refused_before_its_signature_is_checked(mode: Mode) {
    let shop = Shop::start(mode).await;
    let response = shop
        .http()
        .post(shop.webhook_url())
        .header("stripe-signature", "t=1,v1=00")
        .body(vec![b'x'; 3 * 1024 * 1024])
        .send()
        .await
        .expect("the payment service answers");
    assert_eq!(response.status(), 413, "payload too large");
}

crate::in_both_modes!(
    the_hold_limit_refuses_with_its_code_and_moves_no_stock,
    the_order_rate_refuses_the_order_over_the_limit_with_rate_limited,
    a_webhook_body_over_the_limit_is_refused_before_its_signature_is_checked,
);
