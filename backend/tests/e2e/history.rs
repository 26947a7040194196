//! The shop over time: a gateway keeps customers' orders in its own
//! projection, holds in memory only what is live, and starts without
//! replaying history.

use std::time::Duration;

use shop_client::Client;
use shop_shared::domain::OrderStatus;

use crate::harness::{GOOD_CARD, Mode, Options, Service, Shop, WAIT, place, reserve, wait_status};

/// Records of `orders.v1` consumed by every group of every process.
async fn orders_topic_consumed(shop: &Shop) -> f64 {
    shop.metric(
        "shop_bus_messages_consumed_total",
        &[("topic", "orders.v1")],
    )
    .await
}

async fn a_restart_with_history_replays_none_of_it(mode: Mode) {
    let mut shop = Shop::start(mode).await;
    let mut customers = Vec::new();
    // Ten of each product: eight orders of one each per customer.
    for sku in ["SKU-001", "SKU-002", "SKU-003"] {
        let client = shop.customer().await;
        let mut ids = Vec::new();
        for _ in 0..8 {
            ids.push(reserve(&client, &[(sku, 1)]).await.id);
        }
        customers.push((client.token().to_owned(), ids));
    }
    shop.stop().await;
    shop.restart().await;

    // What the restarted processes read of the order history: nothing, as
    // the projection's group resumes where it committed.
    assert_eq!(
        orders_topic_consumed(&shop).await,
        0.0,
        "a restarted gateway reads no order snapshot from before"
    );
    if mode == Mode::Embedded {
        let in_memory = shop.metric("shop_bus_records_in_memory", &[]).await;
        assert!(
            in_memory < 24.0,
            "the bus loaded {in_memory} records; the 24 orders' snapshots stay in its file"
        );
    }
    for (token, ids) in &customers {
        let client = shop.returning(token).await;
        let listed: Vec<_> = client
            .orders()
            .await
            .expect("orders")
            .into_iter()
            .map(|order| order.id)
            .collect();
        let mut expected = ids.clone();
        expected.reverse();
        assert_eq!(listed, expected, "every order, newest first");
        let order = client.order(&ids[0].to_string()).await.expect("one order");
        assert_eq!(order.status, OrderStatus::Reserved);
    }

    // Changes after the restart still reach the customer live.
    let (token, ids) = &customers[0];
    let client = shop.returning(token).await;
    let order = client.order(&ids[0].to_string()).await.expect("order");
    let response = shop
        .pay(
            order.checkout_url.as_deref().expect("checkout url"),
            GOOD_CARD,
        )
        .await;
    assert_eq!(response.status(), 303);
    wait_status(&client, &order, OrderStatus::Paid).await;
}

#[tokio::test]
async fn a_customer_reconnecting_to_another_gateway_instance_sees_every_change_live() {
    let mut shop = Shop::start(Mode::Distributed).await;
    shop.add_instance(Service::Gateway).await;
    let urls = shop.gateway_ws_urls();
    assert_eq!(urls.len(), 2);
    let first = Client::connect(&urls[0], None)
        .await
        .expect("connects to the first gateway");
    let token = first.token().to_owned();
    let order = reserve(&first, &[("SKU-001", 1)]).await;

    // The same customer on the second instance sees the order, and a change
    // made through the first instance arrives there live. Each instance
    // reads `orders.v1` on its own, so the second may see the order a few
    // milliseconds after the first did.
    let second = Client::connect(&urls[1], Some(&token))
        .await
        .expect("connects to the second gateway");
    second
        .wait_for_order(order.id, WAIT, |o| o.checkout_url.is_some())
        .await
        .expect("the order reaches the second instance");
    let listed = second.orders().await.expect("orders");
    assert_eq!(listed.iter().map(|o| o.id).collect::<Vec<_>>(), [order.id]);
    let another = place(&first, &[("SKU-002", 1)]).await;
    second
        .wait_for_order(another.id, WAIT, |o| o.checkout_url.is_some())
        .await
        .expect("an order placed on the first instance reaches the second live");

    // The first instance dies; its customer goes on with the second and
    // misses nothing that changed meanwhile.
    first.close();
    shop.kill_service(Service::Gateway).await;
    let response = shop
        .pay(
            order.checkout_url.as_deref().expect("checkout url"),
            GOOD_CARD,
        )
        .await;
    assert_eq!(response.status(), 303);
    let paid = wait_status(&second, &order, OrderStatus::Paid).await;
    assert_eq!(paid.status, OrderStatus::Paid);
    let again = Client::connect(&urls[1], Some(&token))
        .await
        .expect("reconnects to the second gateway");
    let listed = again.orders().await.expect("orders");
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(
        listed.iter().find(|o| o.id == order.id).map(|o| o.status),
        Some(OrderStatus::Paid)
    );
}

#[tokio::test]
async fn the_projection_catches_up_with_what_changed_while_the_gateway_was_down() {
    let mut shop = Shop::start_with(Mode::Distributed, Options::paying_within("3s")).await;
    let client = shop.customer().await;
    let token = client.token().to_owned();
    let expiring = reserve(&client, &[("SKU-001", 1)]).await;
    client.close();
    shop.kill_service(Service::Gateway).await;
    // The order expires while no gateway runs.
    tokio::time::sleep(Duration::from_secs(5)).await;
    shop.restart_service(Service::Gateway).await;
    let client = shop.returning(&token).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let order = client.order(&expiring.id.to_string()).await.expect("order");
        if order.status == OrderStatus::Cancelled {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the gateway never learned that the order expired: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = client.orders().await.expect("orders");
    assert_eq!(
        listed.iter().map(|o| o.status).collect::<Vec<_>>(),
        [OrderStatus::Cancelled]
    );
}

async fn pruning_never_lets_a_redelivered_message_apply_twice(mode: Mode) {
    // Processed-message ids go after a second of running: the shortest
    // retention there is, to prune while sagas are in flight.
    let mut shop = Shop::start_with(
        mode,
        Options {
            pay_ttl: match mode {
                Mode::Embedded => "10s",
                Mode::Distributed => "90s",
            },
            ..Options::with_env(&[("SHOP_INBOX_RETENTION", "1s")])
        },
    )
    .await;
    let client = shop.customer().await;
    let token = client.token().to_owned();
    let mut ids = Vec::new();
    for quantity in [1, 2] {
        ids.push(reserve(&client, &[("SKU-001", quantity)]).await.id);
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while shop
        .metric("shop_pruned_rows_total", &[("table", "processed_messages")])
        .await
        == 0.0
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no processed-message id was ever pruned"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Crash with sagas in flight: what was handled but not committed comes
    // again after the restart, and must change nothing.
    for quantity in [1, 3, 1] {
        ids.push(place(&client, &[("SKU-001", quantity)]).await.id);
    }
    shop.kill().await;
    shop.restart().await;
    let client = shop.returning(&token).await;
    for id in &ids {
        let order = client
            .wait_for_order(*id, WAIT, |o| {
                o.checkout_url.is_some() || o.status.is_final()
            })
            .await
            .expect("each saga finishes after the restart");
        assert_eq!(order.status, OrderStatus::Reserved, "{order:?}");
    }
    // Pruning goes on after the restart, and units were reserved once each.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(crate::harness::available(&client, "SKU-001").await, 10 - 8);
    let orders = client.orders().await.expect("orders");
    assert_eq!(orders.len(), 5, "no order lost or doubled");
}

crate::in_both_modes!(
    a_restart_with_history_replays_none_of_it,
    pruning_never_lets_a_redelivered_message_apply_twice,
);
