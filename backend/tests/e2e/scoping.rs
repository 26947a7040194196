//! A customer sees and acts on their own orders only.

use std::time::Duration;

use shop_shared::domain::OrderStatus;
use shop_shared::protocol::ErrorCode;

use crate::harness::{GOOD_CARD, Mode, Pushes, Shop, reserve, wait_available, wait_status};

async fn one_customer_cannot_see_cancel_or_follow_anothers_order(mode: Mode) {
    let shop = Shop::start(mode).await;
    let alice = shop.customer().await;
    let bob = shop.customer().await;
    assert_ne!(alice.customer_id(), bob.customer_id());
    let mut bob_pushes = Pushes::new(&bob);
    let order = reserve(&alice, &[("SKU-001", 2)]).await;
    let id = order.id.to_string();

    let seen = bob.order(&id).await.expect_err("hidden");
    let unknown_id = uuid::Uuid::new_v4().to_string();
    let unknown = bob.order(&unknown_id).await.expect_err("unknown");
    assert_eq!(seen.code(), Some(ErrorCode::OrderNotFound));
    assert_eq!(seen.code(), unknown.code());
    assert_eq!(
        seen.to_string().replace(&id, "ID"),
        unknown.to_string().replace(&unknown_id, "ID"),
        "another's order looks exactly like one that does not exist"
    );
    let cancel = bob.cancel_order(&id).await.expect_err("not his");
    assert_eq!(cancel.code(), Some(ErrorCode::OrderNotFound));
    assert!(bob.orders().await.expect("orders").is_empty());

    // Alice's order is untouched and she can still pay it.
    assert_eq!(
        alice.order(&id).await.expect("hers").status,
        OrderStatus::Reserved
    );
    wait_available(&alice, "SKU-001", 8).await;
    shop.pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    wait_status(&alice, &order, OrderStatus::Paid).await;

    bob_pushes.collect(Duration::from_millis(300)).await;
    assert!(
        bob_pushes.orders(order.id).is_empty(),
        "bob was told nothing about alice's order"
    );
    assert_eq!(
        bob_pushes.availability("SKU-001"),
        vec![8],
        "but everyone sees stock move"
    );

    // The same token is the same customer on another connection; a new
    // connection without one is someone else.
    let alice_again = shop.returning(alice.token()).await;
    assert_eq!(alice_again.orders().await.expect("orders").len(), 1);
    let stranger = shop.customer().await;
    assert!(stranger.orders().await.expect("orders").is_empty());
}

crate::in_both_modes!(one_customer_cannot_see_cancel_or_follow_anothers_order,);
