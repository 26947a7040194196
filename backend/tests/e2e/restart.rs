//! Stopping and crashing the backend mid-saga, then starting it again on the
//! same data directory.

use std::time::Duration;

use shop_shared::domain::{CancelReason, OrderStatus};

use crate::harness::{
    GOOD_CARD, Mode, Options, Shop, WAIT, place, reserve, wait_available, wait_status,
};

async fn a_crash_mid_saga_loses_nothing_and_doubles_nothing(mode: Mode) {
    // Long enough to outlast what a crash costs: in distributed mode, a
    // Kafka consumer group waits for its dead members' sessions to time out.
    let pay_ttl = match mode {
        Mode::Embedded => "6s",
        Mode::Distributed => "20s",
    };
    let mut shop = Shop::start_with(
        mode,
        Options {
            pay_ttl,
            ..Options::default()
        },
    )
    .await;
    let client = shop.customer().await;
    let token = client.token().to_owned();
    let customer_id = client.customer_id();
    let first = reserve(&client, &[("SKU-001", 2)]).await;
    // Place three more and crash while their sagas are in flight.
    let mut ids = vec![first.id];
    for quantity in [1, 2, 1] {
        ids.push(place(&client, &[("SKU-001", quantity)]).await.id);
    }
    shop.kill().await;
    shop.restart().await;

    let client = shop.returning(&token).await;
    assert_eq!(
        client.customer_id(),
        customer_id,
        "the token is still valid"
    );
    for id in &ids {
        let order = client
            .wait_for_order(*id, WAIT, |o| {
                o.checkout_url.is_some() || o.status.is_final()
            })
            .await
            .expect("each saga finishes after the restart");
        assert_eq!(order.status, OrderStatus::Reserved, "{order:?}");
    }
    let orders = client.orders().await.expect("orders");
    assert_eq!(orders.len(), 4, "no order lost or doubled");
    wait_available(&client, "SKU-001", 10 - 6).await;

    // Deadlines still hold after the restart.
    for id in &ids {
        let order = client
            .wait_for_status(*id, &[OrderStatus::Cancelled], WAIT)
            .await
            .expect("expires");
        assert_eq!(order.cancel_reason, Some(CancelReason::NotPaid));
    }
    wait_available(&client, "SKU-001", 10).await;
}

async fn a_deadline_that_passes_while_the_backend_is_down_is_enforced_on_start(mode: Mode) {
    let mut shop = Shop::start_with(mode, Options::paying_within("2s")).await;
    let client = shop.customer().await;
    let token = client.token().to_owned();
    let order = reserve(&client, &[("SKU-002", 5)]).await;
    client.close();
    shop.stop().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    shop.restart().await;
    let client = shop.returning(&token).await;
    let order = wait_status(&client, &order, OrderStatus::Cancelled).await;
    assert_eq!(order.cancel_reason, Some(CancelReason::NotPaid));
    wait_available(&client, "SKU-002", 10).await;
}

async fn a_payment_made_before_a_crash_across_the_deadline_still_wins(mode: Mode) {
    let mut shop = Shop::start_with(
        mode,
        Options {
            webhook_delay: Some("60s"),
            ..Options::paying_within("3s")
        },
    )
    .await;
    let client = shop.customer().await;
    let token = client.token().to_owned();
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    // Paid in time, its webhook held back; the backend dies before the
    // deadline and is down when it passes.
    let answer = shop
        .pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    assert_eq!(answer.status(), 303);
    client.close();
    shop.kill().await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    shop.restart().await;

    let client = shop.returning(&token).await;
    let paid = wait_status(&client, &order, OrderStatus::Paid).await;
    assert!(!paid.refunded, "nothing refunded: {paid:?}");
    wait_available(&client, "SKU-001", 9).await;
}

async fn paid_orders_tokens_and_stock_survive_a_restart(mode: Mode) {
    let mut shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let token = client.token().to_owned();
    let customer_id = client.customer_id();
    let order = reserve(&client, &[("SKU-003", 4)]).await;
    shop.pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    wait_status(&client, &order, OrderStatus::Paid).await;
    let open = reserve(&client, &[("SKU-003", 1)]).await;
    client.close();
    shop.stop().await;
    shop.restart().await;

    let client = shop.returning(&token).await;
    assert_eq!(
        client.customer_id(),
        customer_id,
        "the token is still valid"
    );
    let orders = client.orders().await.expect("orders");
    assert_eq!(orders.len(), 2);
    let paid = client
        .order(&order.id.to_string())
        .await
        .expect("paid order");
    assert_eq!(paid.status, OrderStatus::Paid);
    wait_available(&client, "SKU-003", 5).await;
    // The open order can still be paid after the restart.
    let response = shop
        .pay(open.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    assert_eq!(response.status(), 303);
    wait_status(&client, &open, OrderStatus::Paid).await;
    wait_available(&client, "SKU-003", 5).await;
}

async fn a_payment_made_just_before_a_crash_is_not_lost(mode: Mode) {
    let mut shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let token = client.token().to_owned();
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let response = shop
        .pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    assert_eq!(response.status(), 303);
    // Crash at once: the webhook may not have been delivered yet.
    shop.kill().await;
    shop.restart().await;
    let client = shop.returning(&token).await;
    let paid = wait_status(&client, &order, OrderStatus::Paid).await;
    assert_eq!(paid.total, Some(450_000));
    wait_available(&client, "SKU-001", 9).await;
}

crate::in_both_modes!(
    a_crash_mid_saga_loses_nothing_and_doubles_nothing,
    a_deadline_that_passes_while_the_backend_is_down_is_enforced_on_start,
    paid_orders_tokens_and_stock_survive_a_restart,
    a_payment_made_just_before_a_crash_is_not_lost,
    a_payment_made_before_a_crash_across_the_deadline_still_wins,
);
