//! Paying through Stripe Checkout, against a stand-in that speaks Stripe's
//! wire format (`stripe_stub`): the parameters of each session, completion,
//! delayed payments, expiry both ways, the late payment refunded, webhook
//! signatures, and retries that never open a second session.

use std::time::Duration;

use serde_json::Value;
use shop_backend::payment::signature;
use shop_shared::domain::{CancelReason, Order, OrderStatus, RefundState, TimelineEvent};
use shop_shared::time::Timestamp;

use crate::harness::{
    Mode, Options, Pushes, Shop, WAIT, place, reserve, wait_available, wait_payment_failed,
    wait_refunded, wait_status,
};
use crate::stripe_stub::StripeStub;

const SESSIONS: &str = "/v1/checkout/sessions";
const REFUNDS: &str = "/v1/refunds";

/// A shop paying through the stand-in.
async fn stripe_shop(mode: Mode, options: Options) -> (StripeStub, Shop) {
    let stub = StripeStub::start().await;
    let shop = Shop::start_with(
        mode,
        Options {
            stripe: Some(stub.keys()),
            ..options
        },
    )
    .await;
    (stub, shop)
}

/// The Checkout Session id behind an order's checkout URL.
fn session_of(order: &Order) -> String {
    let url = order.checkout_url.as_deref().expect("checkout URL");
    url.rsplit('/').next().expect("session id").to_owned()
}

/// Delivers `event` to the shop and checks that it was processed.
async fn deliver_processed(stub: &StripeStub, shop: &Shop, event: &str) {
    let (status, answer) = stub.deliver(&shop.webhook_url(), event).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("processed")),
        "{answer}"
    );
}

fn now_seconds() -> i64 {
    Timestamp::now().as_unix_seconds()
}

async fn a_session_carries_the_order_exactly_and_completing_it_pays(mode: Mode) {
    let (stub, shop) = stripe_shop(mode, Options::default()).await;
    let client = shop.customer().await;
    let before = now_seconds();
    let order = reserve(&client, &[("SKU-001", 2), ("SKU-002", 1)]).await;
    let after = now_seconds();

    let creates = stub.requests(SESSIONS);
    assert_eq!(creates.len(), 1, "one request opens one session");
    let create = &creates[0];
    assert_eq!(
        create.authorization.as_deref(),
        Some(format!("Bearer {}", stub.secret_key).as_str())
    );
    assert_eq!(
        create.idempotency_key.as_deref(),
        Some(format!("shop-checkout-{}", order.id).as_str())
    );
    let return_page = format!(
        "{}/orders/{}/return?session_id={{CHECKOUT_SESSION_ID}}",
        shop.base, order.id
    );
    let id = order.id.to_string();
    // After paying, the return page says the payment is being confirmed.
    let paid_page = format!("{return_page}&checkout=complete");
    let mut expected: Vec<(&str, &str)> = vec![
        ("mode", "payment"),
        ("client_reference_id", &id),
        ("metadata[order_id]", &id),
        ("success_url", &paid_page),
        ("cancel_url", &return_page),
        ("line_items[0][quantity]", "2"),
        ("line_items[0][price_data][currency]", "eur"),
        ("line_items[0][price_data][unit_amount]", "450000"),
        (
            "line_items[0][price_data][product_data][name]",
            "MacBook Pro",
        ),
        ("line_items[1][quantity]", "1"),
        ("line_items[1][price_data][currency]", "eur"),
        ("line_items[1][price_data][unit_amount]", "110000"),
        ("line_items[1][price_data][product_data][name]", "iPhone 16"),
    ];
    expected.sort();
    let mut sent: Vec<(&str, &str)> = create
        .params
        .iter()
        .filter(|(name, _)| name != "expires_at")
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    sent.sort();
    assert_eq!(sent, expected, "the exact parameters of the session");
    // The order is payable for 5 minutes, but Stripe refuses sessions that
    // expire in less than 30: the session lives 40 minutes from the request
    // (30, and a margin for the command's journey and retries).
    let expires_at: i64 = create
        .param("expires_at")
        .expect("expires_at sent")
        .parse()
        .expect("unix seconds");
    assert!(
        (before + 40 * 60..=after + 40 * 60 + 1).contains(&expires_at),
        "expires_at {expires_at} is 40 minutes after {before}"
    );

    let session_id = session_of(&order);
    let session = stub.session(&session_id);
    assert_eq!(order.checkout_url.as_deref(), session["url"].as_str());

    let paid = stub.complete(&session_id, true);
    let event = stub.event("checkout.session.completed", &paid);
    deliver_processed(&stub, &shop, &event).await;
    let order = wait_status(&client, &order, OrderStatus::Paid).await;
    assert_eq!(order.total, Some(1_010_000));
    wait_available(&client, "SKU-001", 8).await;
    wait_available(&client, "SKU-002", 9).await;

    let landing = return_page.replace("{CHECKOUT_SESSION_ID}", &session_id);
    let page = shop.http().get(&landing).send().await.expect("return page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("PAID"));

    let log = shop.log();
    assert!(!log.contains(&stub.secret_key), "the secret key was logged");
    assert!(
        !log.contains(&stub.webhook_secret),
        "the webhook secret was logged"
    );
}

async fn a_payment_made_before_the_deadline_wins_though_its_webhook_never_came(mode: Mode) {
    let (stub, shop) = stripe_shop(mode, Options::paying_within("2s")).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let session_id = session_of(&order);
    // The customer pays on Stripe's page in time; its webhook is lost. At
    // the deadline the shop asks Stripe to expire the session, Stripe
    // refuses (it is complete), and the shop reads that it was paid.
    let paid = stub.complete(&session_id, true);
    let order = wait_status(&client, &order, OrderStatus::Paid).await;
    let events: Vec<TimelineEvent> = order.timeline.iter().map(|entry| entry.event).collect();
    assert!(
        events.ends_with(&[TimelineEvent::DeadlinePassed, TimelineEvent::Paid]),
        "{events:?}"
    );
    assert!(
        !stub
            .requests(&format!("{SESSIONS}/{session_id}/expire"))
            .is_empty()
            && !stub
                .requests(&format!("{SESSIONS}/{session_id}"))
                .is_empty(),
        "the session was read after Stripe refused to expire it"
    );
    assert!(stub.requests("/v1/refunds").is_empty(), "nothing refunded");
    wait_available(&client, "SKU-001", 9).await;

    // The webhook arriving after all changes nothing.
    let event = stub.event("checkout.session.completed", &paid);
    let (status, answer) = stub.deliver(&shop.webhook_url(), &event).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (200, Some("payment_already_settled"))
    );
    let still = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!((still.status, still.refunded), (OrderStatus::Paid, false));
}

async fn a_payment_completed_after_the_session_expired_is_refunded_and_shown_live(mode: Mode) {
    let (stub, shop) = stripe_shop(mode, Options::paying_within("2s")).await;
    let client = shop.customer().await;
    let mut pushes = Pushes::new(&client);
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let session_id = session_of(&order);
    // Nobody pays in time: the session is expired at Stripe first, and only
    // then is the order cancelled.
    let cancelled = wait_status(&client, &order, OrderStatus::Cancelled).await;
    assert_eq!(cancelled.cancel_reason, Some(CancelReason::NotPaid));
    assert_eq!(stub.session(&session_id)["status"], "expired");
    wait_available(&client, "SKU-001", 10).await;

    // A payment Stripe still reports for it is truly late: refunded.
    let paid = stub.complete(&session_id, true);
    let event = stub.event("checkout.session.completed", &paid);
    deliver_processed(&stub, &shop, &event).await;
    let refunded = wait_refunded(&client, order.id).await;
    assert_eq!(
        refunded.status,
        OrderStatus::Cancelled,
        "it stays cancelled"
    );
    assert_eq!(refunded.cancel_reason, Some(CancelReason::NotPaid));
    let last = refunded.timeline.last().expect("timeline");
    assert_eq!(last.event, TimelineEvent::Refunded);
    assert_eq!(last.detail.as_deref(), Some("4,500.00 EUR refunded"));

    let refunds = stub.requests("/v1/refunds");
    assert_eq!(refunds.len(), 1, "{refunds:?}");
    assert_eq!(
        refunds[0].param("payment_intent"),
        paid["payment_intent"].as_str()
    );
    assert_eq!(
        refunds[0].idempotency_key.as_deref(),
        Some(format!("shop-refund-{}", order.id).as_str())
    );
    assert_eq!(
        refunds[0].param("metadata[order_id]"),
        Some(order.id.to_string().as_str())
    );
    assert_eq!(stub.refunds()[0]["amount"], 450_000);

    let (status, answer) = stub.deliver(&shop.webhook_url(), &event).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate"))
    );
    pushes.collect(Duration::from_millis(500)).await;
    assert!(
        pushes
            .orders(order.id)
            .iter()
            .any(|pushed| pushed.refunded && pushed.status == OrderStatus::Cancelled),
        "the refund was pushed live"
    );
    assert_eq!(stub.requests("/v1/refunds").len(), 1, "refunded once");
    wait_available(&client, "SKU-001", 10).await;
}

#[tokio::test]
async fn a_delayed_payment_waits_then_succeeds() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::default()).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-003", 1)]).await;
    let session_id = session_of(&order);

    let pending = stub.complete(&session_id, false);
    let event = stub.event("checkout.session.completed", &pending);
    deliver_processed(&stub, &shop, &event).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waiting = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(
        waiting.status,
        OrderStatus::Reserved,
        "an unpaid completion is not a payment"
    );

    let settled = stub.settle(&session_id);
    let event = stub.event("checkout.session.async_payment_succeeded", &settled);
    deliver_processed(&stub, &shop, &event).await;
    let paid = wait_status(&client, &order, OrderStatus::Paid).await;
    assert_eq!(
        paid.timeline.last().map(|entry| entry.event),
        Some(TimelineEvent::Paid)
    );
}

#[tokio::test]
async fn a_delayed_payment_that_fails_cancels_the_order_and_releases_stock() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::default()).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 3)]).await;
    wait_available(&client, "SKU-001", 7).await;
    let session_id = session_of(&order);

    let pending = stub.complete(&session_id, false);
    let event = stub.event("checkout.session.completed", &pending);
    stub.deliver(&shop.webhook_url(), &event).await;
    let event = stub.event("checkout.session.async_payment_failed", &pending);
    deliver_processed(&stub, &shop, &event).await;

    assert_eq!(
        wait_payment_failed(&client, &order).await,
        "the payment did not go through after checkout"
    );
    wait_available(&client, "SKU-001", 10).await;
}

#[tokio::test]
async fn cancelling_or_missing_the_deadline_expires_the_session_at_stripe() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::paying_within("3s")).await;
    let client = shop.customer().await;

    let cancelled = reserve(&client, &[("SKU-001", 1)]).await;
    client
        .cancel_order(&cancelled.id.to_string())
        .await
        .expect("cancelled");
    let session_id = session_of(&cancelled);
    let path = format!("{SESSIONS}/{session_id}/expire");
    let deadline = tokio::time::Instant::now() + WAIT;
    while stub.requests(&path).is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expire = &stub.requests(&path)[0];
    assert_eq!(
        expire.idempotency_key.as_deref(),
        Some(format!("shop-expire-{session_id}").as_str())
    );
    let expired = stub.session(&session_id);
    assert_eq!(expired["status"], "expired");
    // Stripe then announces the expiry it was asked for.
    let event = stub.event("checkout.session.expired", &expired);
    let (status, answer) = stub.deliver(&shop.webhook_url(), &event).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (200, Some("session_already_closed"))
    );
    let still = client
        .order(&cancelled.id.to_string())
        .await
        .expect("order");
    assert_eq!(still.cancel_reason, Some(CancelReason::ByCustomer));

    let unpaid = reserve(&client, &[("SKU-002", 1)]).await;
    let unpaid = wait_status(&client, &unpaid, OrderStatus::Cancelled).await;
    assert_eq!(unpaid.cancel_reason, Some(CancelReason::NotPaid));
    let session_id = session_of(&unpaid);
    let deadline = tokio::time::Instant::now() + WAIT;
    while stub.session(&session_id)["status"] != "expired" {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session of the unpaid order stayed open"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_available(&client, "SKU-001", 10).await;
    wait_available(&client, "SKU-002", 10).await;
}

#[tokio::test]
async fn a_session_stripe_expires_cancels_the_order() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::default()).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-002", 4)]).await;
    wait_available(&client, "SKU-002", 6).await;

    let lapsed = stub.lapse(&session_of(&order));
    let event = stub.event("checkout.session.expired", &lapsed);
    deliver_processed(&stub, &shop, &event).await;
    let cancelled = wait_status(&client, &order, OrderStatus::Cancelled).await;
    assert_eq!(
        cancelled.cancel_reason,
        Some(CancelReason::NotPaid),
        "nobody paid before the session closed"
    );
    wait_available(&client, "SKU-002", 10).await;
}

#[tokio::test]
async fn forged_stale_and_replayed_stripe_webhooks_change_nothing() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::default()).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let paid = stub.complete(&session_of(&order), true);
    let event = stub.event("checkout.session.completed", &paid);
    let url = shop.webhook_url();
    let now = now_seconds();

    let forged = signature::header("whsec_someone_else", now, event.as_bytes());
    let (status, answer) = stub.deliver_signed(&url, &event, &forged).await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (400, Some("invalid_signature"))
    );
    let stale = signature::header(&stub.webhook_secret, now - 301, event.as_bytes());
    let (status, answer) = stub.deliver_signed(&url, &event, &stale).await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (400, Some("stale_timestamp"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let unchanged = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(unchanged.status, OrderStatus::Reserved, "nothing was paid");

    // While Stripe rolls a secret, a header carries a signature per
    // secret: one matching is enough.
    let rolled = format!("{},v1={}", stub.sign(&event), "0".repeat(64));
    let (status, answer) = stub.deliver_signed(&url, &event, &rolled).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("processed"))
    );
    let paid_order = wait_status(&client, &order, OrderStatus::Paid).await;

    let (status, answer) = stub.deliver(&url, &event).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate")),
        "the replayed event id is recognised"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(after, paid_order, "the replay changed nothing");
    let pays = after
        .timeline
        .iter()
        .filter(|entry| entry.event == TimelineEvent::Paid)
        .count();
    assert_eq!(pays, 1);
}

#[tokio::test]
async fn failed_calls_are_retried_with_one_key_and_open_one_session() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::default()).await;
    stub.fail_next(SESSIONS, &[(500, "api_error"), (429, "rate_limit_error")]);
    // The third attempt runs at Stripe, but its answer is lost on the way.
    stub.lose_next_response(SESSIONS);
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;

    let creates = stub.requests(SESSIONS);
    assert_eq!(creates.len(), 4, "500, 429, lost answer, replay");
    let key = format!("shop-checkout-{}", order.id);
    assert!(
        creates
            .iter()
            .all(|request| request.idempotency_key.as_deref() == Some(key.as_str())),
        "every attempt carries the same key: {creates:?}"
    );
    assert_eq!(stub.session_count(), 1, "no second session");
    let session: Value = stub.session(&session_of(&order));
    assert_eq!(order.checkout_url.as_deref(), session["url"].as_str());
    assert!(
        shop.log()
            .contains("retrying with the same idempotency key"),
        "the retries were logged"
    );
}

#[tokio::test]
async fn html_error_pages_from_a_proxy_are_retried_and_the_order_is_then_paid() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::default()).await;
    // A proxy in front of Stripe answers with its own HTML pages while it
    // cannot reach Stripe: unavailable, not a refusal.
    stub.fail_next_with_page(SESSIONS, 503, 2);
    stub.fail_next_with_page(SESSIONS, 502, 1);
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-002", 1)]).await;
    assert_eq!(order.cancel_reason, None, "{order:?}");
    assert_eq!(
        stub.requests(SESSIONS).len(),
        4,
        "three error pages, then Stripe"
    );
    assert_eq!(stub.session_count(), 1);

    let paid = stub.complete(&session_of(&order), true);
    let event = stub.event("checkout.session.completed", &paid);
    deliver_processed(&stub, &shop, &event).await;
    let order = wait_status(&client, &order, OrderStatus::Paid).await;
    assert_eq!(order.total, Some(110_000));
    wait_available(&client, "SKU-002", 9).await;
}

#[tokio::test]
async fn a_refused_refund_is_shown_counted_and_retried_until_it_goes_through() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::paying_within("2s")).await;
    let client = shop.customer().await;
    let mut pushes = Pushes::new(&client);
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    wait_status(&client, &order, OrderStatus::Cancelled).await;
    // A payment arrives after the session was expired at the deadline;
    // Stripe refuses to refund it twice, then gives the money back.
    let paid = stub.complete(&session_of(&order), true);
    stub.refuse_next(
        REFUNDS,
        2,
        "charge_disputed",
        "This charge is disputed and cannot be refunded now.",
    );
    let event = stub.event("checkout.session.completed", &paid);
    deliver_processed(&stub, &shop, &event).await;

    let refunded = wait_refunded(&client, order.id).await;
    assert_eq!(refunded.status, OrderStatus::Cancelled);
    assert_eq!(refunded.refund, None, "nothing pending any more");
    let events: Vec<(TimelineEvent, String)> = refunded
        .timeline
        .iter()
        .map(|entry| (entry.event, entry.detail.clone().unwrap_or_default()))
        .collect();
    let refused = events
        .iter()
        .find(|(event, _)| *event == TimelineEvent::RefundRefused)
        .unwrap_or_else(|| panic!("the refusal is in the timeline: {events:?}"));
    assert!(
        refused.1.contains("This charge is disputed") && refused.1.contains("charge_disputed"),
        "{refused:?}"
    );
    let kinds: Vec<TimelineEvent> = events.iter().map(|(event, _)| *event).collect();
    assert_eq!(
        kinds[kinds.len() - 3..],
        [
            TimelineEvent::RefundRequested,
            TimelineEvent::RefundRefused,
            TimelineEvent::Refunded
        ],
        "{events:?}"
    );

    pushes.collect(Duration::from_millis(300)).await;
    assert!(
        pushes.orders(order.id).iter().any(|pushed| matches!(
            &pushed.refund,
            Some(RefundState::Pending { reason: Some(reason) }) if reason.contains("disputed")
        )),
        "the customer saw the refund pending with Stripe's reason"
    );
    assert_eq!(
        shop.metric("shop_refund_failures_total", &[("outcome", "refused")])
            .await,
        2.0
    );
    let attempts = stub.requests(REFUNDS);
    let keys: Vec<Option<&str>> = attempts
        .iter()
        .map(|request| request.idempotency_key.as_deref())
        .collect();
    let first = format!("shop-refund-{}", order.id);
    assert_eq!(
        keys,
        vec![
            Some(first.as_str()),
            Some(format!("{first}-1").as_str()),
            Some(format!("{first}-2").as_str())
        ],
        "each attempt after a refusal goes under a key of its own"
    );
    assert_eq!(stub.refunds().len(), 1, "refunded once");
}

#[tokio::test]
async fn while_stripe_is_down_the_order_waits_for_the_provider_then_gets_its_checkout() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::default()).await;
    stub.fail_next(SESSIONS, &[(503, "api_error"); 1000]);
    let client = shop.customer().await;
    let placed = place(&client, &[("SKU-003", 1)]).await;
    let waiting = client
        .wait_for_order(placed.id, WAIT, |order| order.checkout_delay.is_some())
        .await
        .expect("the order says it waits for the provider");
    assert_eq!(waiting.status, OrderStatus::Reserved);
    assert_eq!(waiting.checkout_url, None);
    let wait = waiting.provider_wait().expect("waiting");
    assert!(
        wait.starts_with("waiting for the payment provider: payment provider unavailable")
            && wait.contains("HTTP 503"),
        "{wait}"
    );
    assert_eq!(
        waiting.timeline.last().map(|entry| entry.event),
        Some(TimelineEvent::CheckoutDelayed)
    );

    stub.recover(SESSIONS);
    let ready = client
        .wait_for_checkout(placed.id, WAIT)
        .await
        .expect("checkout once Stripe is back");
    assert_eq!(ready.status, OrderStatus::Reserved);
    assert_eq!(ready.checkout_delay, None);
    assert_eq!(
        ready.checkout_url.as_deref(),
        stub.session(&session_of(&ready))["url"].as_str()
    );
    let delays = ready
        .timeline
        .iter()
        .filter(|entry| entry.event == TimelineEvent::CheckoutDelayed)
        .count();
    assert_eq!(delays, 1, "told once, however often it was retried");

    let paid = stub.complete(&session_of(&ready), true);
    let event = stub.event("checkout.session.completed", &paid);
    deliver_processed(&stub, &shop, &event).await;
    wait_status(&client, &ready, OrderStatus::Paid).await;
}

#[tokio::test]
async fn a_command_redelivered_after_a_crash_repeats_the_request_exactly() {
    let (stub, mut shop) = stripe_shop(Mode::Embedded, Options::default()).await;
    // Stripe opens the session, but the shop dies before the answer comes.
    stub.slow_next_response(SESSIONS, Duration::from_secs(10));
    let client = shop.customer().await;
    let token = client.token().to_owned();
    let placed = place(&client, &[("SKU-001", 1)]).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while stub.session_count() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Stripe was never asked"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    shop.kill().await;
    // Restarting takes a while; the redelivered command must still send
    // what the first attempt sent, though the clock moved on.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    shop.restart().await;

    let client = shop.returning(&token).await;
    let order = client
        .wait_for_checkout(placed.id, WAIT)
        .await
        .expect("checkout ready after the restart");
    let creates = stub.requests(SESSIONS);
    assert!(
        creates.len() >= 2,
        "the command was redelivered: {creates:?}"
    );
    assert!(
        creates
            .iter()
            .all(|request| request.params == creates[0].params
                && request.idempotency_key == creates[0].idempotency_key),
        "every attempt sends the same parameters under the same key: {creates:?}"
    );
    assert_eq!(stub.session_count(), 1, "no second session");
    let session = stub.session(&session_of(&order));
    assert_eq!(order.checkout_url.as_deref(), session["url"].as_str());
}

#[tokio::test]
async fn an_outage_outlasting_the_deadline_stops_the_retries() {
    let (stub, shop) = stripe_shop(Mode::Embedded, Options::paying_within("3s")).await;
    stub.fail_next(SESSIONS, &[(503, "api_error"); 1000]);
    let client = shop.customer().await;
    let stuck = place(&client, &[("SKU-001", 2)]).await;
    let cancelled = wait_status(&client, &stuck, OrderStatus::Cancelled).await;
    assert_eq!(
        cancelled.cancel_reason,
        Some(CancelReason::ProviderUnavailable),
        "the reason says no checkout was ever offered: {cancelled:?}"
    );
    wait_available(&client, "SKU-001", 10).await;
    // Past the deadline nobody could pay a session: the service stops
    // asking Stripe for one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let attempts = stub.requests(SESSIONS).len();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        stub.requests(SESSIONS).len(),
        attempts,
        "still retrying after the deadline"
    );

    stub.recover(SESSIONS);
    let order = reserve(&client, &[("SKU-002", 1)]).await;
    assert_eq!(stub.session_count(), 1, "only the new order has a session");
    assert_eq!(
        order.checkout_url.as_deref(),
        stub.session(&session_of(&order))["url"].as_str()
    );
}

#[tokio::test]
async fn a_refused_checkout_cancels_the_order_with_stripes_reason() {
    let catalog = r#"
        currency = "EUR"
        [[products]]
        sku = "YACHT"
        name = "Sailing yacht"
        price = "600000.00"
        stock = 5
    "#;
    let (stub, shop) = stripe_shop(
        Mode::Embedded,
        Options {
            catalog: Some(catalog.into()),
            ..Options::default()
        },
    )
    .await;
    let client = shop.customer().await;
    let order = place(&client, &[("YACHT", 2)]).await;
    let detail = wait_payment_failed(&client, &order).await;
    assert!(
        detail.contains("no more than €999,999.99"),
        "Stripe's reason reaches the customer: {detail:?}"
    );
    assert_eq!(stub.requests(SESSIONS).len(), 1, "a refusal is not retried");
    wait_available(&client, "YACHT", 5).await;
}

crate::in_both_modes!(
    a_session_carries_the_order_exactly_and_completing_it_pays,
    a_payment_made_before_the_deadline_wins_though_its_webhook_never_came,
    a_payment_completed_after_the_session_expired_is_refunded_and_shown_live,
);
