//! Bad input of every kind gets a clear, typed error, leaves the connection
//! usable, and changes nothing.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shop_backend::payment::signature;
use shop_client::{Client, Push};
use shop_shared::domain::{OrderStatus, TimelineEvent};
use shop_shared::protocol::ErrorCode;
use shop_shared::time::Timestamp;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Mode, Shop, Socket, WAIT, close_code, reserve, wait_available};

/// Sends `frame` raw and returns the error frame the gateway answers with.
async fn refused(client: &Client, frame: impl Into<String>) -> (ErrorCode, Option<String>, String) {
    let mut pushes = client.subscribe();
    client.send_raw(frame).expect("sent");
    let answer = tokio::time::timeout(WAIT, async {
        loop {
            match pushes.recv().await.expect("connection open") {
                Push::Error {
                    request_id,
                    code,
                    message,
                } => return (code, request_id, message),
                Push::Disconnected => panic!("the gateway closed the connection"),
                _ => {}
            }
        }
    })
    .await
    .expect("an error frame");
    client.ping().await.expect("the connection stays usable");
    answer
}

async fn malformed_frames_get_typed_errors_and_the_connection_stays_usable(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let products = client.products().await.expect("products");

    let (code, _, message) = refused(&client, "{not json").await;
    assert_eq!(code, ErrorCode::BadRequest);
    assert!(message.contains("malformed JSON"), "{message}");
    assert_eq!(refused(&client, "[1, 2, 3]").await.0, ErrorCode::BadRequest);
    assert_eq!(
        refused(&client, r#"{"request_id":"a"}"#).await.0,
        ErrorCode::BadRequest
    );

    let (code, request_id, message) =
        refused(&client, r#"{"type":"launch_missiles","request_id":"r7"}"#).await;
    assert_eq!(code, ErrorCode::UnknownCommand);
    assert_eq!(
        request_id.as_deref(),
        Some("r7"),
        "the error names the request"
    );
    assert!(
        message.contains("place_order"),
        "lists the commands: {message}"
    );

    let (code, request_id, message) = refused(
        &client,
        r#"{"type":"place_order","request_id":"r8","lines":[]}"#,
    )
    .await;
    assert_eq!(
        (code, request_id.as_deref()),
        (ErrorCode::BadRequest, Some("r8"))
    );
    assert!(message.contains("idempotency_key"), "{message}");
    let fractional = r#"{"type":"place_order","request_id":"r9","idempotency_key":"k","lines":[{"sku":"SKU-001","quantity":1.5}]}"#;
    assert_eq!(refused(&client, fractional).await.0, ErrorCode::BadRequest);
    let huge_number = r#"{"type":"place_order","request_id":"r10","idempotency_key":"k","lines":[{"sku":"SKU-001","quantity":1e40}]}"#;
    assert_eq!(refused(&client, huge_number).await.0, ErrorCode::BadRequest);
    let wrong_type = r#"{"type":"get_order","request_id":"r11","order_id":42}"#;
    assert_eq!(refused(&client, wrong_type).await.0, ErrorCode::BadRequest);

    let oversized = format!(
        r#"{{"type":"ping","request_id":"big","pad":"{}"}}"#,
        "x".repeat(100_000)
    );
    let (code, _, message) = refused(&client, oversized).await;
    assert_eq!(code, ErrorCode::FrameTooLarge);
    assert!(message.contains("65536"), "{message}");

    assert_eq!(
        client.products().await.expect("products"),
        products,
        "nothing changed"
    );
    assert!(client.orders().await.expect("orders").is_empty());
}

async fn a_frame_beyond_the_socket_limit_closes_only_that_connection(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let mut pushes = client.subscribe();
    client.send_raw("x".repeat(2 << 20)).expect("sent");
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Push::Disconnected) | Err(_) = pushes.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the gateway closes a connection that sends 2 MiB frames"
    );
    let other = shop.customer().await;
    assert_eq!(
        other.products().await.expect("products").len(),
        3,
        "the backend still serves"
    );
}

async fn bad_orders_are_refused_with_their_own_codes_and_change_nothing(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let products = client.products().await.expect("products");
    let many: Vec<(String, i64)> = (0..21).map(|n| (format!("SKU-{n:03}"), 1)).collect();
    let many: Vec<(&str, i64)> = many.iter().map(|(sku, qty)| (sku.as_str(), *qty)).collect();
    type Case<'a> = (Vec<(&'a str, i64)>, &'a str, ErrorCode);
    let cases: Vec<Case> = vec![
        (vec![("SKU-999", 1)], "k1", ErrorCode::UnknownSku),
        (
            vec![("'; DROP TABLE products; --", 1)],
            "k2",
            ErrorCode::UnknownSku,
        ),
        (vec![("SKU-001", 0)], "k3", ErrorCode::InvalidQuantity),
        (vec![("SKU-001", -2)], "k4", ErrorCode::InvalidQuantity),
        (vec![("SKU-001", 1_001)], "k5", ErrorCode::InvalidQuantity),
        (
            vec![("SKU-001", i64::MAX)],
            "k6",
            ErrorCode::InvalidQuantity,
        ),
        (
            vec![("SKU-001", 1), ("SKU-001", 2)],
            "k7",
            ErrorCode::DuplicateSku,
        ),
        (vec![], "k8", ErrorCode::EmptyOrder),
        (many, "k9", ErrorCode::TooManyLines),
        (vec![("SKU-001", 1)], "", ErrorCode::InvalidIdempotencyKey),
    ];
    for (lines, key, expected) in cases {
        let error = client.place_order(&lines, key).await.expect_err("refused");
        assert_eq!(error.code(), Some(expected), "{lines:?}: {error}");
        assert!(!error.to_string().is_empty());
    }
    let missing = client
        .order(&uuid::Uuid::new_v4().to_string())
        .await
        .expect_err("unknown");
    assert_eq!(missing.code(), Some(ErrorCode::OrderNotFound));
    let junk = client.cancel_order("not-an-id").await.expect_err("unknown");
    assert_eq!(junk.code(), Some(ErrorCode::OrderNotFound));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        client.orders().await.expect("orders").is_empty(),
        "no order was created"
    );
    assert_eq!(
        client.products().await.expect("products"),
        products,
        "no stock moved"
    );
}

/// The next text frame, as JSON.
async fn next_json(socket: &mut Socket) -> Value {
    loop {
        if let Message::Text(text) = socket.next().await.expect("open").expect("frame") {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

async fn ask(socket: &mut Socket, frame: Value) -> Value {
    socket
        .send(Message::text(frame.to_string()))
        .await
        .expect("sent");
    next_json(socket).await
}

async fn commands_before_hello_wrong_versions_and_forged_tokens_are_refused(mode: Mode) {
    let shop = Shop::start(mode).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(shop.ws_url.as_str())
        .await
        .expect("connects");
    let early = ask(
        &mut socket,
        json!({"type": "list_products", "request_id": "1"}),
    )
    .await;
    assert_eq!(
        (early["type"].as_str(), early["code"].as_str()),
        (Some("error"), Some("not_authenticated"))
    );
    let future = ask(
        &mut socket,
        json!({"type": "hello", "request_id": "2", "protocol": 2}),
    )
    .await;
    assert_eq!(future["code"], "unsupported_protocol");
    let forged = ask(
        &mut socket,
        json!({"type": "hello", "request_id": "3", "protocol": 1, "token": "v1.0123.abcd"}),
    )
    .await;
    assert_eq!(forged["code"], "invalid_token");
    let welcome = ask(
        &mut socket,
        json!({"type": "hello", "request_id": "4", "protocol": 1}),
    )
    .await;
    assert_eq!(welcome["type"], "welcome");
    assert_eq!(welcome["request_id"], "4");
    let again = ask(
        &mut socket,
        json!({"type": "hello", "request_id": "5", "protocol": 1}),
    )
    .await;
    assert_eq!(again["code"], "bad_request");
    socket
        .send(Message::binary(vec![1, 2, 3]))
        .await
        .expect("sent");
    let binary = next_json(&mut socket).await;
    assert_eq!(binary["code"], "bad_request");
    let products = ask(
        &mut socket,
        json!({"type": "list_products", "request_id": "6"}),
    )
    .await;
    assert_eq!(products["type"], "products");
    assert_eq!(products["products"].as_array().map(Vec::len), Some(3));
}

/// Posts `body` to the webhook with `signature` and returns status and JSON.
async fn webhook(shop: &Shop, body: &str, signature: Option<String>) -> (u16, Value) {
    let mut request = shop
        .http()
        .post(shop.webhook_url())
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    let response = request.send().await.expect("webhook answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn completed(event_id: &str, session_id: &str, order_id: &str, amount: i64) -> String {
    json!({
        "id": event_id,
        "object": "event",
        "type": "checkout.session.completed",
        "created": Timestamp::now().as_unix_seconds(),
        "data": { "object": {
            "id": session_id,
            "object": "checkout.session",
            "amount_total": amount,
            "currency": "eur",
            "payment_status": "paid",
            "payment_intent": "pi_test_1",
            "metadata": { "order_id": order_id },
        }}
    })
    .to_string()
}

async fn forged_stale_malformed_unknown_and_replayed_webhooks_change_nothing(mode: Mode) {
    let shop = Shop::start(mode).await;
    let secret = shop.webhook_secret();
    let now = Timestamp::now().as_unix_seconds();
    let sign = |body: &str, at: i64| Some(signature::header(&secret, at, body.as_bytes()));
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let url = order.checkout_url.clone().expect("url");
    let session = url.rsplit('/').next().expect("session id").to_owned();
    let id = order.id.to_string();
    let body = completed("evt_test_1", &session, &id, 450_000);

    let (status, answer) = webhook(&shop, &body, None).await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (400, Some("missing_signature"))
    );
    let forged = Some(signature::header("whsec_not_ours", now, body.as_bytes()));
    let (status, answer) = webhook(&shop, &body, forged).await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (400, Some("invalid_signature"))
    );
    let (status, answer) = webhook(&shop, &body, sign(&body, now - 600)).await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (400, Some("stale_timestamp"))
    );
    let altered = body.replace("450000", "1");
    let (status, _) = webhook(&shop, &altered, sign(&body, now)).await;
    assert_eq!(status, 400, "a body altered after signing is refused");
    let (status, answer) = webhook(&shop, "{not json", sign("{not json", now)).await;
    assert_eq!(
        (status, answer["error"]["type"].as_str()),
        (400, Some("malformed_event"))
    );
    let stranger = completed("evt_test_2", "cs_unknown", &id, 450_000);
    let (status, answer) = webhook(&shop, &stranger, sign(&stranger, now)).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (200, Some("unknown_session"))
    );
    let cheap = completed("evt_test_3", &session, &id, 1);
    let (status, answer) = webhook(&shop, &cheap, sign(&cheap, now)).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (200, Some("amount_mismatch"))
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let unchanged = client.order(&id).await.expect("order");
    assert_eq!(
        unchanged.status,
        OrderStatus::Reserved,
        "no bad webhook paid the order"
    );
    wait_available(&client, "SKU-001", 9).await;

    let (status, answer) = webhook(&shop, &body, sign(&body, now)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("processed"))
    );
    let paid = client
        .wait_for_status(order.id, &[OrderStatus::Paid], WAIT)
        .await
        .expect("paid");
    let (status, answer) = webhook(&shop, &body, sign(&body, now)).await;
    assert_eq!(
        (status, answer["outcome"].as_str()),
        (200, Some("duplicate")),
        "a replay is recognised"
    );
    let second = completed("evt_test_4", &session, &id, 450_000);
    let (status, answer) = webhook(&shop, &second, sign(&second, now)).await;
    assert_eq!(
        (status, answer["reason"].as_str()),
        (200, Some("payment_already_settled"))
    );

    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = client.order(&id).await.expect("order");
    assert_eq!(after, paid, "replays changed nothing");
    let payments = after
        .timeline
        .iter()
        .filter(|entry| entry.event == TimelineEvent::Paid)
        .count();
    assert_eq!(payments, 1);
    wait_available(&client, "SKU-001", 9).await;
}

/// Webhooks that arrive together share a transaction in the payment
/// service: each event still counts once, however many copies come at once.
async fn webhooks_arriving_together_are_each_applied_once(mode: Mode) {
    const COPIES: usize = 4;
    let shop = Shop::start(mode).await;
    let secret = shop.webhook_secret();
    let now = Timestamp::now().as_unix_seconds();
    let client = shop.customer().await;
    let mut orders = Vec::new();
    let mut bodies = Vec::new();
    for n in 0..5 {
        let order = reserve(&client, &[("SKU-002", 1)]).await;
        let url = order.checkout_url.clone().expect("url");
        let session = url.rsplit('/').next().expect("session id").to_owned();
        let id = order.id.to_string();
        bodies.push(completed(
            &format!("evt_together_{n}"),
            &session,
            &id,
            110_000,
        ));
        orders.push(order.id);
    }
    let sends = bodies
        .iter()
        .flat_map(|body| std::iter::repeat_n(body, COPIES))
        .map(|body| {
            let signed = signature::header(&secret, now, body.as_bytes());
            webhook(&shop, body, Some(signed))
        });
    let answers = futures_util::future::join_all(sends).await;
    for copies in answers.chunks(COPIES) {
        let outcomes: Vec<(u16, &str)> = copies
            .iter()
            .map(|(status, answer)| (*status, answer["outcome"].as_str().unwrap_or_default()))
            .collect();
        let count = |wanted: &str| {
            outcomes
                .iter()
                .filter(|(status, outcome)| *status == 200 && *outcome == wanted)
                .count()
        };
        assert_eq!(
            (count("processed"), count("duplicate")),
            (1, COPIES - 1),
            "one copy of each event is processed: {outcomes:?}"
        );
    }
    for id in orders {
        let paid = client
            .wait_for_status(id, &[OrderStatus::Paid], WAIT)
            .await
            .expect("paid");
        let payments = paid
            .timeline
            .iter()
            .filter(|entry| entry.event == TimelineEvent::Paid)
            .count();
        assert_eq!(payments, 1, "paid once: {:?}", paid.timeline);
    }
    wait_available(&client, "SKU-002", 5).await;
}

async fn the_checkout_form_refuses_bad_card_details_without_charging(mode: Mode) {
    let shop = Shop::start(mode).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-002", 1)]).await;
    let url = order.checkout_url.clone().expect("url");
    for (card, expiry, cvc, needle) in [
        ("", "12/34", "123", "Enter a card number"),
        ("4242 4242 4242 4241", "12/34", "123", "invalid"),
        ("4242 4242 4242 4242", "01/20", "123", "in the past"),
        ("4242 4242 4242 4242", "12/34", "1", "security code"),
    ] {
        let response = shop
            .http()
            .post(&url)
            .form(&[
                ("card_number", card),
                ("expiry", expiry),
                ("cvc", cvc),
                ("name", "T"),
            ])
            .send()
            .await
            .expect("answers");
        assert_eq!(response.status(), 422);
        assert!(
            response.text().await.expect("html").contains(needle),
            "{card} {expiry} {cvc}"
        );
    }
    let unknown = shop
        .http()
        .get(format!(
            "{}/checkout/cs_nope",
            url.rsplit_once("/checkout/").expect("checkout URL").0
        ))
        .send()
        .await
        .expect("answers");
    assert_eq!(unknown.status(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        client
            .order(&order.id.to_string())
            .await
            .expect("order")
            .status,
        OrderStatus::Reserved
    );
}

/// The close code the gateway ends a connection with after `frame`.
async fn close_code_after(shop: &Shop, frame: Message) -> Option<u16> {
    let (mut socket, _) = tokio_tungstenite::connect_async(shop.ws_url.as_str())
        .await
        .expect("connects");
    // The gateway may close before it has read all of an oversized message,
    // and the rest of it then meets a closed socket: what counts is the
    // close frame that arrived first.
    let _ = socket.send(frame).await;
    close_code(&mut socket).await
}

async fn protocol_violations_close_with_the_codes_rfc_6455_gives_them(mode: Mode) {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

    let shop = Shop::start(mode).await;
    assert_eq!(
        close_code_after(&shop, Message::text("x".repeat((1 << 20) + 16))).await,
        Some(1009),
        "a message beyond 1 MiB: message too big"
    );
    let not_utf8 = Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(Data::Text), true);
    assert_eq!(
        close_code_after(&shop, Message::Frame(not_utf8)).await,
        Some(1007),
        "a text frame that is not UTF-8: invalid payload"
    );
    let mut reserved = Frame::message(b"{}".to_vec(), OpCode::Data(Data::Text), true);
    reserved.header_mut().rsv1 = true;
    assert_eq!(
        close_code_after(&shop, Message::Frame(reserved)).await,
        Some(1002),
        "a reserved bit set without an extension: protocol error"
    );
    let other = shop.customer().await;
    assert_eq!(
        other.products().await.expect("products").len(),
        3,
        "the backend still serves"
    );
}

crate::in_both_modes!(
    malformed_frames_get_typed_errors_and_the_connection_stays_usable,
    a_frame_beyond_the_socket_limit_closes_only_that_connection,
    protocol_violations_close_with_the_codes_rfc_6455_gives_them,
    bad_orders_are_refused_with_their_own_codes_and_change_nothing,
    commands_before_hello_wrong_versions_and_forged_tokens_are_refused,
    forged_stale_malformed_unknown_and_replayed_webhooks_change_nothing,
    webhooks_arriving_together_are_each_applied_once,
    the_checkout_form_refuses_bad_card_details_without_charging,
);

/// A signing secret given by flag is refused when short, by every process
/// that takes one, before anything is written: the message names the
/// setting, never the value.
#[tokio::test]
async fn a_short_secret_given_by_flag_is_refused_at_start_named_but_not_shown() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let data = dir.path().join("data");
    let data = data.to_str().expect("UTF-8 path");
    let unreachable_db = "postgres://nobody@127.0.0.1:1/none";
    // One character short of the 16 a secret needs.
    let short = "fifteen-chars!!";
    let cases: [(&[&str], &str); 5] = [
        (
            &["--data-dir", data, "--token-secret", short],
            "--token-secret (SHOP_TOKEN_SECRET)",
        ),
        (
            &["--data-dir", data, "--webhook-secret", short],
            "--webhook-secret (SHOP_WEBHOOK_SECRET)",
        ),
        (
            &["--data-dir", data, "--operator-secret", short],
            "--operator-secret (SHOP_OPERATOR_SECRET)",
        ),
        (
            &[
                "gateway",
                "--database-url",
                unreachable_db,
                "--token-secret",
                short,
            ],
            "--token-secret (SHOP_TOKEN_SECRET)",
        ),
        (
            &[
                "payment",
                "--database-url",
                unreachable_db,
                "--webhook-secret",
                short,
            ],
            "--webhook-secret (SHOP_WEBHOOK_SECRET)",
        ),
    ];
    for (args, named) in cases {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop-backend"));
        for (key, _) in std::env::vars() {
            if key.starts_with("SHOP_") || key.starts_with("STRIPE_") {
                command.env_remove(key);
            }
        }
        let output = tokio::time::timeout(
            WAIT,
            command
                .args(args)
                .args(["--listen", "127.0.0.1:0"])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("it ends by itself")
        .expect("shop-backend runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} started: {stderr}");
        assert!(
            stderr.contains(&format!("{named} must have at least 16 characters")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(short), "the value is shown: {stderr}");
    }
    assert!(
        !dir.path().join("data").exists(),
        "nothing is written before the secrets are checked"
    );
}

/// The embedded shop's data directory, made by it, is its user's alone:
/// its databases hold every customer's orders and payments.
#[cfg(unix)]
#[tokio::test]
async fn a_new_data_directory_is_readable_by_its_user_only() {
    use std::os::unix::fs::PermissionsExt;
    let shop = Shop::start(Mode::Embedded).await;
    let mode = std::fs::metadata(shop.data_dir())
        .expect("the data directory")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "mode {:o}", mode & 0o777);
}
