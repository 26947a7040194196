//! The branches of Stripe's state machine, shown offline by the local
//! checkout: delayed payments that settle or fail, sessions expired when an
//! order is cancelled, a payment made in time winning however late its news
//! comes, a payment that settles too late being refunded, and webhooks that
//! arrive late; a closed checkout answers `410 Gone`.

use std::time::Duration;

use shop_shared::domain::{CancelReason, OrderStatus, TimelineEvent};

use crate::harness::{
    DELAYED_CARD, GOOD_CARD, Mode, Options, Pushes, Shop, reserve, wait_available,
    wait_payment_failed, wait_refunded, wait_status,
};

/// Fails a few seconds after checkout.
const DELAYED_FAILING_CARD: &str = "4000 0000 0000 2008";

/// What the checkout page at `url` says about its session.
async fn checkout_state(shop: &Shop, url: &str) -> String {
    checkout_page(shop, url).await.1
}

/// The status the checkout page at `url` answers with, and what it says
/// about its session.
async fn checkout_page(shop: &Shop, url: &str) -> (u16, String) {
    let page = shop.http().get(url).send().await.expect("checkout page");
    let status = page.status().as_u16();
    let header = |name: &str| {
        page.headers()
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        (header("x-frame-options"), header("cache-control")),
        (Some("DENY".into()), Some("no-store".into())),
        "checkout pages may not be framed or cached"
    );
    let html = page.text().await.expect("html");
    let start = html.find("id=\"state\">").expect("a state on the page") + "id=\"state\">".len();
    let end = html[start..].find('<').expect("state ends") + start;
    (status, html[start..end].to_owned())
}

async fn a_delayed_card_settles_a_few_seconds_after_checkout(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let url = order.checkout_url.clone().expect("checkout URL");

    let answer = shop.pay(&url, DELAYED_CARD).await;
    assert_eq!(answer.status(), 303, "checkout accepts the card");
    let pending = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(
        pending.status,
        OrderStatus::Reserved,
        "the money has not arrived yet"
    );
    assert_eq!(checkout_state(&shop, &url).await, "Processing");
    let again = shop.pay(&url, GOOD_CARD).await;
    assert_eq!(again.status(), 200);
    assert!(
        again.text().await.expect("html").contains(">Processing<"),
        "a completed checkout takes no second payment"
    );

    let paid = wait_status(&client, &order, OrderStatus::Paid).await;
    assert_eq!(
        paid.timeline.last().map(|entry| entry.event),
        Some(TimelineEvent::Paid)
    );
    wait_available(&client, "SKU-001", 9).await;
    assert_eq!(checkout_state(&shop, &url).await, "Paid");
}

async fn a_delayed_card_that_fails_cancels_the_order_and_releases_stock(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-002", 2)]).await;
    wait_available(&client, "SKU-002", 8).await;

    let answer = shop
        .pay(
            order.checkout_url.as_deref().expect("url"),
            DELAYED_FAILING_CARD,
        )
        .await;
    assert_eq!(answer.status(), 303);
    assert_eq!(
        wait_payment_failed(&client, &order).await,
        "the payment did not go through after checkout"
    );
    wait_available(&client, "SKU-002", 10).await;
    let url = order.checkout_url.as_deref().expect("url");
    assert_eq!(
        checkout_page(&shop, url).await,
        (410, "Payment failed".to_owned()),
        "the checkout of a cancelled order is gone"
    );
    let again = shop.pay(url, GOOD_CARD).await;
    assert_eq!(again.status(), 410, "a failed checkout takes no other card");
    let still = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(
        (still.status, still.cancel_reason, still.refunded),
        (
            OrderStatus::Cancelled,
            Some(CancelReason::PaymentFailed),
            false
        )
    );
}

async fn a_card_paid_before_the_deadline_wins_though_its_webhook_is_held_back(mode: Mode) {
    let shop = Shop::start_with(
        mode,
        Options {
            webhook_delay: Some("30s"),
            ..Options::paying_within("3s")
        },
    )
    .await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let url = order.checkout_url.clone().expect("checkout URL");
    // The checkout takes the card before the deadline, but its webhook is
    // held back far beyond it: the order learns of the payment only by
    // asking the provider at the deadline.
    let answer = shop.pay(&url, GOOD_CARD).await;
    assert_eq!(answer.status(), 303, "checkout accepts the card in time");
    let pending = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(pending.status, OrderStatus::Reserved, "no webhook yet");

    let paid = wait_status(&client, &order, OrderStatus::Paid).await;
    let events: Vec<TimelineEvent> = paid.timeline.iter().map(|entry| entry.event).collect();
    assert!(
        events.ends_with(&[TimelineEvent::DeadlinePassed, TimelineEvent::Paid]),
        "the deadline passed before the payment was known: {events:?}"
    );
    assert!(!paid.refunded);
    wait_available(&client, "SKU-001", 9).await;
    assert_eq!(checkout_state(&shop, &url).await, "Paid");
}

async fn a_delayed_payment_made_before_the_deadline_settles_after_it_and_is_paid(mode: Mode) {
    let shop = Shop::start_with(mode, Options::paying_within("2s")).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-002", 1)]).await;
    let answer = shop
        .pay(order.checkout_url.as_deref().expect("url"), DELAYED_CARD)
        .await;
    assert_eq!(answer.status(), 303);
    // Settlement comes after the deadline, within the grace period.
    let paid = wait_status(&client, &order, OrderStatus::Paid).await;
    assert!(
        paid.timeline
            .iter()
            .any(|entry| entry.event == TimelineEvent::DeadlinePassed),
        "{:?}",
        paid.timeline
    );
    assert!(!paid.refunded);
    wait_available(&client, "SKU-002", 9).await;
}

async fn a_payment_settling_after_the_grace_period_is_refunded(mode: Mode) {
    let shop = Shop::start_with(
        mode,
        Options {
            settle_grace: "1s",
            webhook_delay: Some("5s"),
            ..Options::paying_within("2s")
        },
    )
    .await;
    let client = shop.customer().await;
    let mut pushes = Pushes::new(&client);
    let order = reserve(&client, &[("SKU-003", 1)]).await;
    // Paid with a delayed method in time; at the deadline it is still
    // settling, and the news of its settlement comes only after the grace
    // period has cancelled the order.
    let answer = shop
        .pay(order.checkout_url.as_deref().expect("url"), DELAYED_CARD)
        .await;
    assert_eq!(answer.status(), 303);
    let cancelled = wait_status(&client, &order, OrderStatus::Cancelled).await;
    assert_eq!(cancelled.cancel_reason, Some(CancelReason::NotPaid));

    let refunded = wait_refunded(&client, order.id).await;
    assert_eq!(refunded.status, OrderStatus::Cancelled);
    let last = refunded.timeline.last().expect("timeline");
    assert_eq!(
        (last.event, last.detail.as_deref()),
        (TimelineEvent::Refunded, Some("1,500.00 EUR refunded"))
    );
    pushes.collect(Duration::from_millis(300)).await;
    assert!(
        pushes.orders(order.id).iter().any(|pushed| pushed.refunded),
        "the refund was pushed live"
    );
    wait_available(&client, "SKU-003", 10).await;
}

async fn cancelling_an_order_expires_its_session_and_announces_it(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    client
        .cancel_order(&order.id.to_string())
        .await
        .expect("cancelled");
    let url = order.checkout_url.clone().expect("url");
    shop.wait_sessions_closed(1.0).await;
    let late = shop.pay(&url, GOOD_CARD).await;
    assert_eq!(late.status(), 410, "an expired session takes no payment");
    let page = shop.http().get(&url).send().await.expect("page");
    assert!(page.text().await.expect("html").contains("expired"));
    let still = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(
        (still.status, still.cancel_reason),
        (OrderStatus::Cancelled, Some(CancelReason::ByCustomer))
    );
}

async fn a_payment_refunded_after_cancelling_shows_refunded_and_takes_no_card(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-002", 1)]).await;
    let url = order.checkout_url.clone().expect("url");
    // A delayed payment is on its way when the customer cancels; it
    // settles into a cancelled order and is refunded.
    assert_eq!(shop.pay(&url, DELAYED_CARD).await.status(), 303);
    client
        .cancel_order(&order.id.to_string())
        .await
        .expect("cancelled");
    let refunded = wait_refunded(&client, order.id).await;
    assert_eq!(
        (refunded.status, refunded.cancel_reason),
        (OrderStatus::Cancelled, Some(CancelReason::ByCustomer))
    );

    assert_eq!(
        checkout_page(&shop, &url).await,
        (410, "Refunded".to_owned()),
        "the page does not call a refunded payment paid"
    );
    let again = shop.pay(&url, GOOD_CARD).await;
    assert_eq!(again.status(), 410, "a cancelled order's checkout is gone");
    let after = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(
        (after.status, after.refunded),
        (OrderStatus::Cancelled, true)
    );
}

async fn a_held_back_webhook_leaves_the_paid_order_reserved_until_it_arrives(mode: Mode) {
    let shop = Shop::start_with(
        mode,
        Options {
            webhook_delay: Some("4s"),
            ..Options::default()
        },
    )
    .await;
    let client = shop.customer().await;
    let mut pushes = Pushes::new(&client);
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let url = order.checkout_url.clone().expect("url");

    assert_eq!(shop.pay(&url, GOOD_CARD).await.status(), 303);
    assert_eq!(
        checkout_page(&shop, &url).await,
        (200, "Paid".to_owned()),
        "the checkout took the card"
    );
    let held = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(
        held.status,
        OrderStatus::Reserved,
        "the shop has not heard of the payment yet"
    );
    assert_eq!(
        shop.metric("shop_webhooks_total", &[]).await,
        0.0,
        "no webhook has been delivered yet"
    );

    let paid = wait_status(&client, &order, OrderStatus::Paid).await;
    assert!(!paid.refunded);
    assert_eq!(
        shop.metric("shop_webhooks_total", &[("outcome", "processed")])
            .await,
        1.0,
        "the held webhook arrived once"
    );
    pushes.collect(Duration::from_millis(300)).await;
    assert_eq!(
        pushes.statuses(order.id).last(),
        Some(&OrderStatus::Paid),
        "the customer saw it paid"
    );
}

crate::in_both_modes!(
    a_delayed_card_settles_a_few_seconds_after_checkout,
    a_delayed_card_that_fails_cancels_the_order_and_releases_stock,
    a_card_paid_before_the_deadline_wins_though_its_webhook_is_held_back,
    a_delayed_payment_made_before_the_deadline_settles_after_it_and_is_paid,
    a_payment_settling_after_the_grace_period_is_refunded,
    cancelling_an_order_expires_its_session_and_announces_it,
    a_payment_refunded_after_cancelling_shows_refunded_and_takes_no_card,
    a_held_back_webhook_leaves_the_paid_order_reserved_until_it_arrives,
);
