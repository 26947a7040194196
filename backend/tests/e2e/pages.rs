//! The payment-return page: the order's status, updated live.

use shop_shared::domain::OrderStatus;

use crate::harness::{GOOD_CARD, Mode, Shop, WAIT, reserve, wait_status};

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
    the_return_page_shows_the_status_and_streams_it_live,
    the_return_page_needs_the_orders_own_checkout_session,
);
