//! The checkout and payment-return pages: the order's status, updated
//! live; in a real browser too.

use serde_json::Value;
use shop_shared::domain::OrderStatus;

use crate::browser::Browser;
use crate::harness::{
    DECLINED_CARD, DELAYED_CARD, GOOD_CARD, Mode, Options, Shop, WAIT, reserve, wait_status,
};

/// Fills the checkout form on the browser's page with `card` and submits.
async fn pay_in_browser(browser: &Browser, card: &str) {
    browser.fill("#card_number", card).await;
    browser.fill("#expiry", "12/34").await;
    browser.fill("#cvc", "123").await;
    browser.fill("#name", "Ada Lovelace").await;
    browser.click("#submit").await;
}

async fn a_customer_pays_in_a_browser_and_the_page_turns_paid_by_itself(mode: Mode) {
    let browser = Browser::start().await;
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-003", 1)]).await;

    browser
        .goto(order.checkout_url.as_deref().expect("url"))
        .await;
    assert_eq!(
        browser.text("#total").await.as_deref(),
        Some("1,500.00 EUR")
    );
    pay_in_browser(&browser, DECLINED_CARD).await;
    browser.wait_text("#error", "Your card was declined.").await;
    assert_eq!(
        browser.value("#card_number").await,
        "",
        "card data is never written back into a page"
    );
    assert_eq!(
        browser.value("#name").await,
        "Ada Lovelace",
        "the name stays"
    );

    // A delayed payment method: the return page waits, then turns PAID
    // by itself.
    pay_in_browser(&browser, DELAYED_CARD).await;
    let landing = browser.wait_url("/return?session_id=").await;
    assert!(
        landing.contains(&format!("/orders/{}/return", order.id)),
        "{landing}"
    );
    // It was paid: the page says so, and offers no way back to paying.
    browser.wait_text("#status", "RESERVED").await;
    browser
        .wait_text("#message", "Payment received, confirming…")
        .await;
    assert_eq!(browser.text("#checkout").await.as_deref(), Some(""));
    browser.run("window.stillTheSamePage = true").await;
    browser.wait_text("#status", "PAID").await;
    browser.wait_text("#message", "Paid — thank you!").await;
    assert_eq!(
        browser.run("return window.stillTheSamePage === true").await,
        Value::Bool(true),
        "the page changed in place, without reloading"
    );
    wait_status(&client, &order, OrderStatus::Paid).await;
}

async fn a_refund_reaches_the_open_return_page(mode: Mode) {
    let browser = Browser::start().await;
    let shop = Shop::start_with(
        mode,
        Options {
            webhook_delay: Some("5s"),
            ..Options::default()
        },
    )
    .await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-002", 1)]).await;

    // Paid with a method that settles a few seconds after checkout, its
    // news held back; the customer cancels meanwhile. The money that then
    // arrives is given back, and the open return page shows it.
    browser
        .goto(order.checkout_url.as_deref().expect("url"))
        .await;
    pay_in_browser(&browser, DELAYED_CARD).await;
    browser.wait_url("/return?session_id=").await;
    client
        .cancel_order(&order.id.to_string())
        .await
        .expect("cancelled");
    browser.wait_text("#status", "CANCELLED").await;
    browser
        .wait_text(
            "#message",
            "Cancelled: cancelled by the customer. Your payment was refunded.",
        )
        .await;
}

async fn the_return_page_shows_the_status_and_streams_it_live(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-003", 1)]).await;
    let url = order.checkout_url.clone().expect("url");
    let session = url.rsplit('/').next().expect("session").to_owned();
    let page_url = format!(
        "{}/orders/{}/return?session_id={session}",
        shop.base, order.id
    );

    let page = shop.http().get(&page_url).send().await.expect("page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(
        html.contains("RESERVED") && html.contains("Waiting for your payment"),
        "{html}"
    );
    assert!(html.contains("1,500.00 EUR"));

    let mut events = shop
        .http()
        .get(format!(
            "{}/orders/{}/events?session_id={session}",
            shop.base, order.id
        ))
        .send()
        .await
        .expect("event stream");
    assert_eq!(events.status(), 200);
    let mut received = String::new();
    let mut read_until = async |needle: &str| {
        tokio::time::timeout(WAIT, async {
            while !received.contains(needle) {
                let chunk = events.chunk().await.expect("stream").expect("stream open");
                received.push_str(&String::from_utf8_lossy(&chunk));
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no {needle} in {received}"));
    };
    read_until("\"status\":\"RESERVED\"").await;
    shop.pay(&url, GOOD_CARD).await;
    read_until("\"status\":\"PAID\"").await;
    wait_status(&client, &order, OrderStatus::Paid).await;

    let status: serde_json::Value = shop
        .http()
        .get(format!(
            "{}/orders/{}/status?session_id={session}",
            shop.base, order.id
        ))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("JSON");
    assert_eq!(status["status"], "PAID");
    let html = shop
        .http()
        .get(&page_url)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    assert!(html.contains("Paid — thank you!"));
}

async fn the_return_page_needs_the_orders_own_checkout_session(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    for query in ["", "?session_id=cs_local_guess", "?session_id="] {
        let response = shop
            .http()
            .get(format!("{}/orders/{}/return{query}", shop.base, order.id))
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 404, "{query}");
    }
    let events = shop
        .http()
        .get(format!(
            "{}/orders/{}/events?session_id=cs_local_guess",
            shop.base, order.id
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(events.status(), 404);
}

crate::in_both_modes!(
    a_customer_pays_in_a_browser_and_the_page_turns_paid_by_itself,
    a_refund_reaches_the_open_return_page,
    the_return_page_shows_the_status_and_streams_it_live,
    the_return_page_needs_the_orders_own_checkout_session,
);
