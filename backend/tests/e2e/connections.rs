//! What an unauthenticated client can make the shop hold is bounded:
//! customers who said hello and left leave nothing behind; connections
//! beyond the caps are refused with 503 and served again once idle ones
//! time out; a socket that never sends a request is closed, a request
//! whose body stops coming gets 408, and a WebSocket that never says hello
//! or goes silent is closed with its documented code.
//!
//! Nothing here is timed: tests set short timeouts and wait, within a
//! generous bound, for what a client would notice.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use shop_client::{Client, ClientError};
use shop_shared::domain::OrderStatus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{Mode, Options, Shop, WAIT, close_code, reserve};

/// A second loopback address: its connections are only this test's.
const OTHER_LOOPBACK: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The gateway's address.
fn gateway(shop: &Shop) -> SocketAddr {
    shop.base
        .trim_start_matches("http://")
        .parse()
        .expect("the gateway's address")
}

/// A TCP connection to `to` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("a loopback address to connect from");
    socket.connect(to).await.expect("connects")
}

/// Everything the server sends until it closes the connection.
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, async {
        // A reset is a close too; what was read before it counts.
        let _ = stream.read_to_end(&mut received).await;
    })
    .await;
    assert!(read.is_ok(), "the server closes the connection");
    String::from_utf8_lossy(&received).into_owned()
}

/// Gauge `name` of the gateway, read over a connection of its own that
/// the gateway has closed (and uncounted) by the time this returns.
async fn gauge(shop: &Shop, name: &str) -> f64 {
    let mut stream = TcpStream::connect(gateway(shop)).await.expect("connects");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n")
        .await
        .expect("request sent");
    let text = read_until_closed(&mut stream).await;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no gauge {name} in:\n{text}"))
}

/// Waits until gauge `name` satisfies `done`; its last value.
async fn wait_gauge(shop: &Shop, name: &str, bound: Duration, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let value = gauge(shop, name).await;
        if done(value) {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} stayed at {value}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A customer, as soon as the gateway takes one again.
async fn customer_once_served(shop: &Shop) -> Client {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Client::connect(&shop.ws_url, None).await {
            Ok(client) => return client,
            Err(error) => assert!(
                tokio::time::Instant::now() < deadline,
                "never served again: {error}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn tokenless_hellos_from_closed_connections_leave_no_customer_state_behind(mode: Mode) {
    const HELLOS: usize = 10_000;
    const AT_ONCE: usize = 32;
    // The caps are not what this test is about.
    let shop = Shop::start_with(
        mode,
        Options::with_env(&[
            ("SHOP_MAX_CONNECTIONS", "10000"),
            ("SHOP_MAX_CONNECTIONS_PER_ADDRESS", "10000"),
        ]),
    )
    .await;
    let staying = shop.customer().await;
    let channels = "shop_gateway_customer_channels";
    let before = wait_gauge(&shop, channels, WAIT, |value| value == 1.0).await;

    let url = shop.ws_url.clone();
    let workers = (0..AT_ONCE).map(|_| {
        let url = url.clone();
        tokio::spawn(async move {
            for _ in 0..HELLOS / AT_ONCE + 1 {
                let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str())
                    .await
                    .expect("connects");
                let hello = json!({"type": "hello", "request_id": "1", "protocol": 1});
                socket
                    .send(Message::text(hello.to_string()))
                    .await
                    .expect("hello sent");
                let welcome: Value = loop {
                    if let Message::Text(text) = socket.next().await.expect("open").expect("frame")
                    {
                        break serde_json::from_str(&text).expect("JSON");
                    }
                };
                assert_eq!(welcome["type"], "welcome", "{welcome}");
                let _ = socket.close(None).await;
            }
        })
    });
    for worker in futures_util::future::join_all(workers).await {
        worker.expect("every hello welcomed");
    }

    let after = wait_gauge(&shop, channels, Duration::from_secs(120), |value| {
        value <= before
    })
    .await;
    assert_eq!(
        after, before,
        "only the customer still connected has a channel"
    );
    let order = reserve(&staying, &[("SKU-001", 1)]).await;
    assert_eq!(
        order.status,
        OrderStatus::Reserved,
        "the customer still connected still hears of its orders"
    );
}

async fn beyond_the_connection_cap_sockets_are_refused_with_503_until_idle_ones_time_out(
    mode: Mode,
) {
    const CAP: usize = 100;
    let shop = Shop::start_with(
        mode,
        Options::with_env(&[
            ("SHOP_MAX_CONNECTIONS", "100"),
            ("SHOP_MAX_CONNECTIONS_PER_ADDRESS", "1000"),
            ("SHOP_HEADER_READ_TIMEOUT", "5s"),
        ]),
    )
    .await;
    // Until the connections of starting the shop are gone, the count is
    // not the test's alone.
    wait_gauge(&shop, "shop_http_connections", WAIT, |value| value == 1.0).await;

    let address = gateway(&shop);
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(TcpStream::connect(address).await.expect("connects"));
    }
    let mut one_more = TcpStream::connect(address).await.expect("connects");
    let answer = read_until_closed(&mut one_more).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable"),
        "the socket beyond the cap is refused: {answer:?}"
    );
    assert!(answer.contains("try again shortly"), "{answer}");
    match Client::connect(&shop.ws_url, None).await {
        Err(ClientError::Connect { reason, .. }) => {
            assert!(reason.contains("503"), "a client is told why: {reason}");
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a client beyond the cap was served"),
    }

    let client = customer_once_served(&shop).await;
    assert_eq!(
        client.products().await.expect("products").len(),
        3,
        "served once the idle sockets timed out"
    );
    for mut socket in idle {
        assert_eq!(
            read_until_closed(&mut socket).await,
            "",
            "an idle socket is closed without an answer"
        );
    }
    assert!(
        shop.metric(
            "shop_http_connections_refused_total",
            &[("reason", "total")]
        )
        .await
            >= 2.0
    );
}

async fn one_address_cannot_take_the_connections_of_others(mode: Mode) {
    const CAP: usize = 100;
    let shop = Shop::start_with(
        mode,
        Options::with_env(&[
            ("SHOP_MAX_CONNECTIONS_PER_ADDRESS", "100"),
            ("SHOP_HEADER_READ_TIMEOUT", "5s"),
        ]),
    )
    .await;
    let address = gateway(&shop);
    let mut idle = Vec::new();
    for _ in 0..CAP {
        idle.push(connect_from(OTHER_LOOPBACK, address).await);
    }
    let mut one_more = connect_from(OTHER_LOOPBACK, address).await;
    let answer = read_until_closed(&mut one_more).await;
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable"),
        "the address's socket beyond its cap is refused: {answer:?}"
    );
    assert!(answer.contains("from your address"), "{answer}");

    let other = shop.customer().await;
    assert_eq!(
        other.products().await.expect("products").len(),
        3,
        "a client from another address is served meanwhile"
    );

    for mut socket in idle {
        read_until_closed(&mut socket).await;
    }
    let mut again = connect_from(OTHER_LOOPBACK, address).await;
    again
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: shop\r\nconnection: close\r\n\r\n")
        .await
        .expect("request sent");
    let answer = read_until_closed(&mut again).await;
    assert!(
        answer.starts_with("HTTP/1.1 200 OK"),
        "served again once its idle sockets timed out: {answer:?}"
    );
}

async fn sockets_that_never_finish_a_request_head_are_closed(mode: Mode) {
    let shop = Shop::start_with(
        mode,
        Options::with_env(&[("SHOP_HEADER_READ_TIMEOUT", "1s")]),
    )
    .await;
    let address = gateway(&shop);
    let mut silent = TcpStream::connect(address).await.expect("connects");
    let mut slow = TcpStream::connect(address).await.expect("connects");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost: shop\r\n")
        .await
        .expect("half a request head sent");
    let silent_answer = read_until_closed(&mut silent).await;
    assert!(
        !silent_answer.contains("200 OK"),
        "a socket that never sends a byte is closed: {silent_answer:?}"
    );
    let slow_answer = read_until_closed(&mut slow).await;
    assert!(
        !slow_answer.contains("200 OK"),
        "a request head that never ends is closed: {slow_answer:?}"
    );
    assert!(shop.all_healthy().await, "the shop still serves");
}

async fn a_request_whose_body_stops_coming_gets_408(mode: Mode) {
    let shop = Shop::start_with(mode, Options::with_env(&[("SHOP_REQUEST_TIMEOUT", "1s")])).await;
    let url = shop.webhook_url();
    let (address, path) = url
        .trim_start_matches("http://")
        .split_once('/')
        .expect("a URL with a path");
    let mut slow = TcpStream::connect(address).await.expect("connects");
    let head = format!(
        "POST /{path} HTTP/1.1\r\nhost: shop\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"id\""
    );
    slow.write_all(head.as_bytes())
        .await
        .expect("the head and a little of the body sent");
    let answer = read_until_closed(&mut slow).await;
    assert!(
        answer.starts_with("HTTP/1.1 408 Request Timeout"),
        "a body that stops coming is given up on: {answer:?}"
    );
    assert!(shop.all_healthy().await, "the shop still serves");
}

async fn a_websocket_that_never_says_hello_is_closed_with_1008(mode: Mode) {
    let shop = Shop::start_with(mode, Options::with_env(&[("SHOP_HELLO_TIMEOUT", "1s")])).await;
    let greeted = shop.customer().await;
    let (mut silent, _) = tokio_tungstenite::connect_async(shop.ws_url.as_str())
        .await
        .expect("connects");
    let (mut chatty, _) = tokio_tungstenite::connect_async(shop.ws_url.as_str())
        .await
        .expect("connects");
    chatty
        .send(Message::text(
            json!({"type": "list_products", "request_id": "1"}).to_string(),
        ))
        .await
        .expect("sent");

    assert_eq!(
        close_code(&mut silent).await,
        Some(1008),
        "no hello in time: policy violation"
    );
    assert_eq!(
        close_code(&mut chatty).await,
        Some(1008),
        "commands are no hello"
    );
    greeted
        .ping()
        .await
        .expect("a connection that said hello stays open");
}

async fn a_silent_websocket_is_closed_with_1001_and_one_that_answers_pings_stays(mode: Mode) {
    let shop = Shop::start_with(mode, Options::with_env(&[("SHOP_WS_IDLE_TIMEOUT", "1s")])).await;
    // The client library answers the gateway's pings; it sends nothing else.
    let answering = shop.customer().await;
    let (mut silent, _) = tokio_tungstenite::connect_async(shop.ws_url.as_str())
        .await
        .expect("connects");
    let hello = json!({"type": "hello", "request_id": "1", "protocol": 1});
    silent
        .send(Message::text(hello.to_string()))
        .await
        .expect("hello sent");
    // The silent socket is not read (so it answers no ping) until the
    // gateway has let it go.
    wait_gauge(&shop, "shop_gateway_connections", WAIT, |value| {
        value <= 1.0
    })
    .await;
    let mut pinged = false;
    let code = tokio::time::timeout(WAIT, async {
        while let Some(Ok(message)) = silent.next().await {
            match message {
                Message::Ping(_) => pinged = true,
                Message::Close(frame) => return frame.map(|frame| u16::from(frame.code)),
                _ => {}
            }
        }
        None
    })
    .await
    .expect("the gateway closes the connection");
    assert!(pinged, "the gateway pinged before giving up");
    assert_eq!(code, Some(1001), "silent for the idle timeout: going away");
    answering
        .ping()
        .await
        .expect("a client that answers pings stays connected");
}

crate::in_both_modes!(
    tokenless_hellos_from_closed_connections_leave_no_customer_state_behind,
    beyond_the_connection_cap_sockets_are_refused_with_503_until_idle_ones_time_out,
    one_address_cannot_take_the_connections_of_others,
    sockets_that_never_finish_a_request_head_are_closed,
    a_request_whose_body_stops_coming_gets_408,
    a_websocket_that_never_says_hello_is_closed_with_1008,
    a_silent_websocket_is_closed_with_1001_and_one_that_answers_pings_stays,
);
