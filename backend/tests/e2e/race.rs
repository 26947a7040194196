//! Many customers at once for fewer units than they ask for.

use shop_shared::domain::{CancelReason, OrderStatus};

use crate::harness::{Mode, Shop, WAIT, place, wait_available};

async fn many_customers_racing_for_few_units_buy_exactly_what_there_is(mode: Mode) {
    let shop = Shop::start(mode).await;
    let customers = futures_util::future::join_all((0..25).map(|_| shop.customer())).await;
    // 25 customers × 2 units of a product with 10: only 5 orders can win.
    let orders = futures_util::future::join_all(
        customers
            .iter()
            .map(|client| place(client, &[("SKU-001", 2)])),
    )
    .await;
    let mut finished = Vec::new();
    for (client, order) in customers.iter().zip(&orders) {
        let order = client
            .wait_for_order(order.id, WAIT, |order| {
                order.status == OrderStatus::Cancelled || order.checkout_url.is_some()
            })
            .await
            .expect("every order settles");
        finished.push(order);
    }
    let reserved: Vec<_> = finished
        .iter()
        .filter(|o| o.status == OrderStatus::Reserved)
        .collect();
    let refused: Vec<_> = finished
        .iter()
        .filter(|o| o.status == OrderStatus::Cancelled)
        .collect();
    assert_eq!(reserved.len(), 5, "exactly the available units are sold");
    assert_eq!(refused.len(), 20);
    assert!(
        refused
            .iter()
            .all(|o| o.cancel_reason == Some(CancelReason::OutOfStock))
    );
    let reserved_units: i64 = reserved
        .iter()
        .flat_map(|o| &o.lines)
        .map(|line| line.quantity)
        .sum();
    wait_available(&customers[0], "SKU-001", 0).await;
    assert_eq!(reserved_units, 10, "available + reserved is conserved");
}

async fn racing_multi_line_orders_are_all_or_nothing_under_contention(mode: Mode) {
    let shop = Shop::start(mode).await;
    let customers = futures_util::future::join_all((0..12).map(|_| shop.customer())).await;
    // Each asks for 1 of SKU-002 and 3 of SKU-003: SKU-003 runs out after 3 orders.
    let orders = futures_util::future::join_all(
        customers
            .iter()
            .map(|client| place(client, &[("SKU-002", 1), ("SKU-003", 3)])),
    )
    .await;
    let mut reserved = 0;
    for (client, order) in customers.iter().zip(&orders) {
        let order = client
            .wait_for_order(order.id, WAIT, |o| {
                o.status == OrderStatus::Cancelled || o.checkout_url.is_some()
            })
            .await
            .expect("settles");
        if order.status == OrderStatus::Reserved {
            reserved += 1;
        }
    }
    assert_eq!(reserved, 3);
    wait_available(&customers[0], "SKU-003", 1).await;
    wait_available(&customers[0], "SKU-002", 10 - 3).await;
}

crate::in_both_modes!(
    many_customers_racing_for_few_units_buy_exactly_what_there_is,
    racing_multi_line_orders_are_all_or_nothing_under_contention,
);
