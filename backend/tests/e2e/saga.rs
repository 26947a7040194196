//! The SELECT → RESERVE → PAY saga and each of its endings.

use std::time::Duration;

use shop_shared::domain::{CancelReason, OrderStatus, TimelineEvent};
use shop_shared::money::Currency;
use shop_shared::protocol::ErrorCode;
use shop_shared::time::Timestamp;

use crate::harness::{
    DECLINED_CARD, GOOD_CARD, Mode, Options, Pushes, Shop, WAIT, available, place, reserve,
    wait_available, wait_status,
};

async fn the_catalogue_starts_with_the_reference_shop(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let products = client.products().await.expect("products");
    let summary: Vec<(&str, &str, i64, i64)> = products
        .iter()
        .map(|p| (p.sku.as_str(), p.name.as_str(), p.unit_price, p.available))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("SKU-001", "MacBook Pro", 450_000, 10),
            ("SKU-002", "iPhone 16", 110_000, 10),
            ("SKU-003", "MacBook Air", 150_000, 10),
        ]
    );
    assert!(products.iter().all(|p| p.currency == Currency::EUR));
}

async fn a_catalogue_file_seeds_a_different_shop(mode: Mode) {
    let catalog = r#"
        currency = "EUR"
        [[products]]
        sku = "MUG"
        name = "Coffee mug"
        price = "12.50"
        stock = 3
    "#;
    let shop = Shop::start_with(
        mode,
        Options {
            catalog: Some(catalog.into()),
            ..Options::default()
        },
    )
    .await;
    let client = shop.customer().await;
    let products = client.products().await.expect("products");
    assert_eq!(products.len(), 1);
    assert_eq!(
        (
            products[0].sku.as_str(),
            products[0].unit_price,
            products[0].available
        ),
        ("MUG", 1_250, 3)
    );
    let order = reserve(&client, &[("MUG", 2)]).await;
    assert_eq!(order.total, Some(2_500));
}

#[tokio::test]
async fn a_catalogue_file_seeds_a_new_shop_only_and_a_restart_resets_nothing() {
    let mut shop = Shop::start(Mode::Embedded).await;
    let client = shop.customer().await;
    reserve(&client, &[("SKU-001", 3)]).await;
    let operator = shop.operator("olga").await;
    operator
        .admin(
            "price",
            shop_shared::catalog::CatalogChange::UpdateProduct {
                sku: "SKU-002".into(),
                name: None,
                description: None,
                category: None,
                image_url: None,
                unit_price: Some(99_900),
            },
        )
        .await
        .expect("repriced");
    shop.stop().await;
    let catalog = shop.data_dir().with_file_name("dollars.toml");
    std::fs::write(
        &catalog,
        "currency = \"USD\"\n[[products]]\nsku = \"MUG\"\nname = \"Mug\"\nprice = \"9.00\"\nstock = 5\n",
    )
    .expect("catalogue written");
    let mut restarted = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop-backend"))
        .arg("--data-dir")
        .arg(shop.data_dir())
        .arg("--catalog")
        .arg(&catalog)
        .args(["--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("shop-backend runs");
    let mut stdout = tokio::io::BufReader::new(restarted.stdout.take().expect("stdout"));
    let mut line = String::new();
    tokio::time::timeout(
        WAIT,
        tokio::io::AsyncBufReadExt::read_line(&mut stdout, &mut line),
    )
    .await
    .expect("it starts")
    .expect("stdout");
    let address = line
        .split("://")
        .nth(1)
        .expect("the listening address")
        .trim()
        .to_owned();
    let client = shop_client::Client::connect(&format!("ws://{address}/ws"), None)
        .await
        .expect("connects");
    let products = client.products().await.expect("products");
    assert_eq!(products.len(), 3, "no product of the file: {products:?}");
    assert!(products.iter().all(|p| p.currency == Currency::EUR));
    let by_sku = |sku: &str| products.iter().find(|p| p.sku == sku).cloned();
    assert_eq!(
        by_sku("SKU-001").map(|p| p.available),
        Some(7),
        "stock is not reset"
    );
    assert_eq!(
        by_sku("SKU-002").map(|p| p.unit_price),
        Some(99_900),
        "the operator's price stands"
    );
    let _ = restarted.start_kill();
    let output = restarted.wait_with_output().await.expect("stopped");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("the catalogue file is not applied"),
        "the log says why: {stderr}"
    );
}

async fn paid_path_reserves_prices_sells_and_pushes_every_step(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let mut pushes = Pushes::new(&client);
    let before = Timestamp::now();

    let placed = place(&client, &[("SKU-001", 2), ("SKU-002", 1)]).await;
    assert_eq!(placed.lines.len(), 2);
    let order = client
        .wait_for_checkout(placed.id, WAIT)
        .await
        .expect("checkout ready");
    assert_eq!(order.status, OrderStatus::Reserved);
    assert_eq!(order.currency, Some(Currency::EUR));
    assert_eq!(order.total, Some(2 * 450_000 + 110_000));
    assert_eq!(order.lines[0].amount, Some(900_000));
    assert_eq!(order.lines[1].name.as_deref(), Some("iPhone 16"));
    let deadline = order.pay_until.expect("deadline");
    let ttl = deadline.as_millis() - before.as_millis();
    assert!(
        (290_000..=310_000).contains(&ttl),
        "deadline is 5 minutes away, not {ttl} ms"
    );
    wait_available(&client, "SKU-001", 8).await;
    wait_available(&client, "SKU-002", 9).await;

    let checkout_url = order.checkout_url.clone().expect("checkout url");
    let page = shop
        .http()
        .get(&checkout_url)
        .send()
        .await
        .expect("checkout page");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert!(html.contains("10,100.00 EUR"), "the page shows the total");

    let paid = shop.pay(&checkout_url, GOOD_CARD).await;
    assert_eq!(paid.status(), 303);
    let landing = paid.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    assert!(
        landing.contains(&format!("/orders/{}/return?session_id=cs_", order.id)),
        "{landing}"
    );

    let order = wait_status(&client, &order, OrderStatus::Paid).await;
    assert_eq!(order.cancel_reason, None);
    assert_eq!(order.total, Some(1_010_000));
    let timeline: Vec<TimelineEvent> = order.timeline.iter().map(|entry| entry.event).collect();
    assert_eq!(
        timeline,
        vec![
            TimelineEvent::Created,
            TimelineEvent::Reserved,
            TimelineEvent::CheckoutReady,
            TimelineEvent::Paid
        ]
    );
    // Sold units stay gone.
    wait_available(&client, "SKU-001", 8).await;
    wait_available(&client, "SKU-002", 9).await;

    pushes.collect(Duration::from_millis(300)).await;
    assert_eq!(
        pushes.statuses(order.id),
        vec![OrderStatus::New, OrderStatus::Reserved, OrderStatus::Paid]
    );
    assert!(
        pushes
            .orders(order.id)
            .iter()
            .any(|o| o.status == OrderStatus::Reserved && o.checkout_url.is_some()),
        "the checkout URL was pushed"
    );
    assert_eq!(pushes.availability("SKU-001"), vec![8]);
    assert_eq!(pushes.availability("SKU-002"), vec![9]);

    let landing_page = shop.http().get(&landing).send().await.expect("return page");
    assert_eq!(landing_page.status(), 200);
    assert!(landing_page.text().await.expect("html").contains("PAID"));
}

async fn a_declined_card_keeps_the_order_reserved_until_a_good_card_pays(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-003", 1)]).await;
    let checkout_url = order.checkout_url.clone().expect("checkout url");

    let declined = shop.pay(&checkout_url, DECLINED_CARD).await;
    assert_eq!(declined.status(), 402);
    assert!(
        declined
            .text()
            .await
            .expect("html")
            .contains("Your card was declined.")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let still = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(still.status, OrderStatus::Reserved);
    wait_available(&client, "SKU-003", 9).await;

    let paid = shop.pay(&checkout_url, GOOD_CARD).await;
    assert_eq!(paid.status(), 303);
    let order = wait_status(&client, &order, OrderStatus::Paid).await;
    assert_eq!(order.total, Some(150_000));
    wait_available(&client, "SKU-003", 9).await;

    let again = shop.pay(&checkout_url, GOOD_CARD).await;
    assert_eq!(again.status(), 200, "a paid checkout shows itself as paid");
    assert!(again.text().await.expect("html").contains("Paid"));
}

async fn ordering_more_than_there_is_cancels_out_of_stock_and_reserves_nothing(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let mut pushes = Pushes::new(&client);
    let order = place(&client, &[("SKU-003", 11)]).await;
    let order = wait_status(&client, &order, OrderStatus::Cancelled).await;
    assert_eq!(order.cancel_reason, Some(CancelReason::OutOfStock));
    assert_eq!(order.checkout_url, None);
    assert_eq!(order.total, None);
    wait_available(&client, "SKU-003", 10).await;
    pushes.collect(Duration::from_millis(300)).await;
    assert_eq!(
        pushes.statuses(order.id),
        vec![OrderStatus::New, OrderStatus::Cancelled]
    );
    assert!(pushes.availability("SKU-003").is_empty(), "no stock moved");
}

async fn one_short_line_cancels_the_whole_order_and_reserves_no_line(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = place(&client, &[("SKU-001", 1), ("SKU-002", 11), ("SKU-003", 2)]).await;
    let order = wait_status(&client, &order, OrderStatus::Cancelled).await;
    assert_eq!(order.cancel_reason, Some(CancelReason::OutOfStock));
    let cancelled = order.timeline.last().expect("timeline");
    assert!(
        cancelled
            .detail
            .as_deref()
            .unwrap_or_default()
            .contains("SKU-002"),
        "{cancelled:?}"
    );
    for sku in ["SKU-001", "SKU-002", "SKU-003"] {
        assert_eq!(available(&client, sku).await, 10, "{sku} untouched");
    }
}

async fn an_unpaid_order_expires_and_its_stock_comes_back(mode: Mode) {
    let shop = Shop::start_with(mode, Options::paying_within("2s")).await;
    let client = shop.customer().await;
    let mut pushes = Pushes::new(&client);
    let order = reserve(&client, &[("SKU-001", 3)]).await;
    wait_available(&client, "SKU-001", 7).await;
    let order = wait_status(&client, &order, OrderStatus::Cancelled).await;
    assert_eq!(order.cancel_reason, Some(CancelReason::NotPaid));
    assert_eq!(order.pay_until, None);
    wait_available(&client, "SKU-001", 10).await;

    let late = shop
        .pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    assert_eq!(late.status(), 410, "an expired checkout takes no payment");
    pushes.collect(Duration::from_millis(300)).await;
    assert_eq!(
        pushes.statuses(order.id),
        vec![
            OrderStatus::New,
            OrderStatus::Reserved,
            OrderStatus::Cancelled
        ]
    );
    assert_eq!(pushes.availability("SKU-001"), vec![7, 10]);
    let still = client.order(&order.id.to_string()).await.expect("order");
    assert_eq!(
        still.status,
        OrderStatus::Cancelled,
        "the late attempt changed nothing"
    );
}

async fn a_customer_cancels_an_unpaid_order_and_its_stock_comes_back(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-002", 4)]).await;
    wait_available(&client, "SKU-002", 6).await;
    let cancelled = client
        .cancel_order(&order.id.to_string())
        .await
        .expect("cancelled");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.cancel_reason, Some(CancelReason::ByCustomer));
    wait_available(&client, "SKU-002", 10).await;

    let again = client
        .cancel_order(&order.id.to_string())
        .await
        .expect_err("already cancelled");
    assert_eq!(again.code(), Some(ErrorCode::OrderNotCancellable));
    // The stock comes back through the stock service and the session closes
    // through the payment service, each in its own time.
    shop.wait_sessions_closed(1.0).await;
    let late = shop
        .pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    assert_eq!(late.status(), 410);
}

async fn a_paid_order_cannot_be_cancelled(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    shop.pay(order.checkout_url.as_deref().expect("url"), GOOD_CARD)
        .await;
    wait_status(&client, &order, OrderStatus::Paid).await;
    let refused = client
        .cancel_order(&order.id.to_string())
        .await
        .expect_err("paid");
    assert_eq!(refused.code(), Some(ErrorCode::OrderNotCancellable));
    wait_available(&client, "SKU-001", 9).await;
}

async fn the_same_idempotency_key_never_creates_a_second_order(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let first = client
        .place_order(&[("SKU-001", 1)], "retry-me")
        .await
        .expect("placed");
    let second = client
        .place_order(&[("SKU-001", 1)], "retry-me")
        .await
        .expect("same order");
    assert_eq!(first.id, second.id);
    client
        .wait_for_checkout(first.id, WAIT)
        .await
        .expect("reserved");
    assert_eq!(client.orders().await.expect("orders").len(), 1);
    wait_available(&client, "SKU-001", 9).await;
    let other = client
        .place_order(&[("SKU-002", 1)], "retry-me")
        .await
        .expect_err("other lines");
    assert_eq!(other.code(), Some(ErrorCode::IdempotencyKeyReused));
    assert_eq!(client.orders().await.expect("orders").len(), 1);
}

async fn listing_orders_shows_status_lines_total_deadline_and_checkout_url(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let first = reserve(&client, &[("SKU-001", 1)]).await;
    let second = place(&client, &[("SKU-003", 50)]).await;
    wait_status(&client, &second, OrderStatus::Cancelled).await;
    let orders = client.orders().await.expect("orders");
    assert_eq!(orders.len(), 2);
    assert_eq!(orders[0].id, second.id, "newest first");
    let listed = &orders[1];
    assert_eq!(listed.status, OrderStatus::Reserved);
    assert_eq!(listed.lines[0].sku, "SKU-001");
    assert_eq!(listed.total, Some(450_000));
    assert_eq!(listed.pay_until, first.pay_until);
    assert_eq!(listed.checkout_url, first.checkout_url);
}

crate::in_both_modes!(
    the_catalogue_starts_with_the_reference_shop,
    a_catalogue_file_seeds_a_different_shop,
    paid_path_reserves_prices_sells_and_pushes_every_step,
    a_declined_card_keeps_the_order_reserved_until_a_good_card_pays,
    ordering_more_than_there_is_cancels_out_of_stock_and_reserves_nothing,
    one_short_line_cancels_the_whole_order_and_reserves_no_line,
    an_unpaid_order_expires_and_its_stock_comes_back,
    a_customer_cancels_an_unpaid_order_and_its_stock_comes_back,
    a_paid_order_cannot_be_cancelled,
    the_same_idempotency_key_never_creates_a_second_order,
    listing_orders_shows_status_lines_total_deadline_and_checkout_url,
);
