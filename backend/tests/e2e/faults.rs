//! Faults of distributed mode: services killed mid-saga, the broker gone
//! for a while, several instances of a service at once.

use std::time::Duration;

use shop_client::Client;
use shop_shared::domain::{CancelReason, Order, OrderStatus, TimelineEvent};

use crate::harness::{
    GOOD_CARD, Mode, Options, Service, Shop, WAIT, place, reserve, wait_available, wait_status,
};

fn count(order: &Order, event: TimelineEvent) -> usize {
    order
        .timeline
        .iter()
        .filter(|entry| entry.event == event)
        .count()
}

#[tokio::test]
async fn killing_each_service_mid_saga_still_ends_every_saga_right() {
    let mut shop = Shop::start_with(Mode::Distributed, Options::paying_within("2m")).await;
    let alice = shop.customer().await;
    let bob = shop.customer().await;
    let tokens = (alice.token().to_owned(), bob.token().to_owned());
    let mut placed: Vec<(bool, Order)> = Vec::new();
    let (mut alice, mut bob) = (alice, bob);
    for service in [
        Service::Stock,
        Service::Order,
        Service::Payment,
        Service::Gateway,
    ] {
        // Three sagas in flight, then the crash.
        let first = place(&alice, &[("SKU-001", 1)]).await;
        let second = place(&bob, &[("SKU-002", 2)]).await;
        let third = place(&alice, &[("SKU-003", 1), ("SKU-001", 1)]).await;
        shop.kill_service(service).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        shop.restart_service(service).await;
        if service == Service::Gateway {
            // The gateway dropped every connection: customers reconnect and
            // see the current state.
            alice = shop.returning(&tokens.0).await;
            bob = shop.returning(&tokens.1).await;
        }
        for (client, order, pay) in [
            (&alice, &first, true),
            (&bob, &second, true),
            (&alice, &third, false),
        ] {
            let order = client
                .wait_for_checkout(order.id, WAIT)
                .await
                .unwrap_or_else(|error| {
                    panic!("after killing {service:?}: {error}\n{}", shop.log())
                });
            assert_eq!(
                order.status,
                OrderStatus::Reserved,
                "after killing {service:?}: {order:?}"
            );
            if pay {
                let response = shop
                    .pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
                    .await;
                assert_eq!(response.status(), 303);
            } else {
                client
                    .cancel_order(&order.id.to_string())
                    .await
                    .expect("cancelled");
            }
            placed.push((pay, order));
        }
    }
    let mut sold = std::collections::HashMap::<String, i64>::new();
    for (paid, order) in &placed {
        let client = if alice.order(&order.id.to_string()).await.is_ok() {
            &alice
        } else {
            &bob
        };
        let expected = if *paid {
            OrderStatus::Paid
        } else {
            OrderStatus::Cancelled
        };
        let order = wait_status(client, order, expected).await;
        if *paid {
            assert_eq!(
                count(&order, TimelineEvent::Paid),
                1,
                "paid once: {order:?}"
            );
            for line in &order.lines {
                *sold.entry(line.sku.clone()).or_default() += line.quantity;
            }
        } else {
            assert_eq!(order.cancel_reason, Some(CancelReason::ByCustomer));
        }
        assert_eq!(count(&order, TimelineEvent::Created), 1);
        assert_eq!(count(&order, TimelineEvent::Reserved), 1);
    }
    for sku in ["SKU-001", "SKU-002", "SKU-003"] {
        let sold = sold.get(sku).copied().unwrap_or(0);
        // Nothing is reserved any more: every unit is available or sold.
        wait_available(&alice, sku, 10 - sold).await;
    }
}

#[tokio::test]
async fn the_services_recover_by_themselves_after_the_broker_was_gone() {
    let options = Options {
        own_broker: true,
        ..Options::default()
    };
    let mut shop = Shop::start_with(Mode::Distributed, options).await;
    let client = shop.customer().await;
    let before = reserve(&client, &[("SKU-001", 1)]).await;

    shop.stop_broker().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while shop.all_healthy().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "health checks never noticed the broker was gone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Paying while the broker is away: the payment is stored and its event
    // waits in the outbox.
    let paid = shop
        .pay(before.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    assert_eq!(paid.status(), 303);
    tokio::time::sleep(Duration::from_secs(3)).await;
    shop.start_broker().await;

    wait_status(&client, &before, OrderStatus::Paid).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !shop.all_healthy().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "services never became healthy again"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = reserve(&client, &[("SKU-002", 3)]).await;
    assert_eq!(after.total, Some(330_000));
    wait_available(&client, "SKU-001", 9).await;
    wait_available(&client, "SKU-002", 7).await;
}

/// The per-process values of `shop_bus_assigned_partitions` of the group
/// of `service`, for the processes running it.
async fn assigned(shop: &Shop, service: Service, group: &str) -> Vec<f64> {
    let values = shop
        .metric_per_process("shop_bus_assigned_partitions", &[("group", group)])
        .await;
    shop.process_services()
        .into_iter()
        .zip(values)
        .filter(|(which, _)| *which == service)
        .map(|(_, value)| value)
        .collect()
}

#[tokio::test]
async fn two_stock_and_two_order_instances_share_the_work_without_overselling() {
    let mut shop = Shop::start(Mode::Distributed).await;
    shop.add_instance(Service::Stock).await;
    shop.add_instance(Service::Order).await;
    // Wait until the groups have rebalanced over both members of each.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let stock = assigned(&shop, Service::Stock, "stock").await;
        let order = assigned(&shop, Service::Order, "order").await;
        if stock.len() == 2 && order.len() == 2 && stock.iter().chain(&order).all(|n| *n > 0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "groups never rebalanced: stock {stock:?}, order {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let customers: Vec<Client> =
        futures_util::future::join_all((0..30).map(|_| shop.customer())).await;
    let orders = futures_util::future::join_all(
        customers
            .iter()
            .map(|client| place(client, &[("SKU-001", 1), ("SKU-002", 1)])),
    )
    .await;
    let mut reserved = 0;
    for (client, order) in customers.iter().zip(&orders) {
        let order = client
            .wait_for_order(order.id, WAIT, |o| {
                o.status == OrderStatus::Cancelled || o.checkout_url.is_some()
            })
            .await
            .expect("every order settles");
        assert_eq!(count(&order, TimelineEvent::Created), 1, "{order:?}");
        match order.status {
            OrderStatus::Reserved => {
                reserved += 1;
                assert_eq!(count(&order, TimelineEvent::Reserved), 1, "{order:?}");
            }
            _ => assert_eq!(order.cancel_reason, Some(CancelReason::OutOfStock)),
        }
    }
    assert_eq!(reserved, 10, "exactly the available units are sold");
    wait_available(&customers[0], "SKU-001", 0).await;
    wait_available(&customers[0], "SKU-002", 0).await;
    // Every reservation request was decided exactly once across both stock
    // instances, and each instance decided some.
    let decided = shop
        .metric_per_process("shop_reservations_total", &[])
        .await;
    let by_stock: Vec<f64> = shop
        .process_services()
        .into_iter()
        .zip(decided)
        .filter(|(service, _)| *service == Service::Stock)
        .map(|(_, n)| n)
        .collect();
    assert_eq!(
        by_stock.iter().sum::<f64>(),
        30.0,
        "30 requests, 30 decisions: {by_stock:?}"
    );
    assert!(
        by_stock.iter().all(|n| *n > 0.0),
        "both stock instances worked: {by_stock:?}"
    );
}

#[tokio::test]
async fn health_and_metrics_report_what_each_service_does() {
    let shop = Shop::start(Mode::Distributed).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-003", 2)]).await;
    shop.pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    wait_status(&client, &order, OrderStatus::Paid).await;
    let refused = place(&client, &[("SKU-003", 50)]).await;
    wait_status(&client, &refused, OrderStatus::Cancelled).await;
    assert!(shop.all_healthy().await);
    let deadline = tokio::time::Instant::now() + WAIT;
    while shop.metric("shop_orders", &[("status", "PAID")]).await != 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "orders by status never showed the paid order"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shop.metric("shop_orders", &[("status", "CANCELLED")]).await,
        1.0
    );
    assert_eq!(
        shop.metric("shop_reservations_total", &[("outcome", "reserved")])
            .await,
        1.0
    );
    assert_eq!(
        shop.metric("shop_reservations_total", &[("outcome", "rejected")])
            .await,
        1.0
    );
    assert_eq!(
        shop.metric("shop_webhooks_total", &[("outcome", "processed")])
            .await,
        1.0
    );
    assert_eq!(
        shop.metric("shop_stock_sold", &[("sku", "SKU-003")]).await,
        2.0
    );
    assert!(
        shop.metric(
            "shop_bus_messages_published_total",
            &[("topic", "orders.v1")]
        )
        .await
            >= 4.0
    );
    assert!(
        shop.metric("shop_bus_messages_consumed_total", &[("group", "stock")])
            .await
            >= 3.0
    );
    assert_eq!(shop.metric("shop_gateway_connections", &[]).await, 1.0);
    assert!(
        shop.metric(
            "shop_gateway_commands_total",
            &[("type", "place_order"), ("outcome", "ok")]
        )
        .await
            >= 2.0
    );
}
