//! At-least-once delivery: every bus message may arrive again, and a
//! message that cannot be processed must not block its partition. The
//! embedded tests run the application in-process to reach its bus; the
//! distributed ones connect to the test's broker.

use std::sync::Arc;
use std::time::Duration;

use shop_backend::bus::kafka::{KafkaBus, KafkaConfig};
use shop_backend::bus::{Bus, OutgoingRecord, Record, Subscription, header};
use shop_backend::config::EmbeddedArgs;
use shop_backend::metrics::Metrics;
use shop_backend::tasks::Supervisor;
use shop_backend::{Application, Running};
use shop_client::{Client, websocket_url};
use shop_shared::domain::OrderStatus;
use shop_shared::events::topic;

use crate::harness::{
    GOOD_CARD, Mode, Options, Pushes, Shop, Tap, WAIT, place, reserve, wait_available, wait_status,
};

struct InProcess {
    app: Option<Application>,
    base: String,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn build(pay_ttl: Duration) -> InProcess {
        let dir = tempfile::tempdir().expect("data dir");
        let app = Application::build(EmbeddedArgs {
            pay_ttl,
            ..EmbeddedArgs::local(dir.path().join("data"))
        })
        .await
        .expect("application builds");
        let base = format!("http://{}", app.local_addr());
        InProcess {
            app: Some(app),
            base,
            _dir: dir,
        }
    }

    fn app(&self) -> &Application {
        self.app.as_ref().expect("not started yet")
    }

    fn run(&mut self) -> Running {
        self.app.take().expect("built").spawn()
    }

    async fn customer(&self) -> Client {
        Client::connect(&websocket_url(&self.base), None)
            .await
            .expect("connects")
    }

    async fn pay(&self, url: &str) {
        let response = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
            .post(url)
            .form(&[
                ("card_number", GOOD_CARD),
                ("expiry", "12/34"),
                ("cvc", "123"),
                ("name", "T"),
            ])
            .send()
            .await
            .expect("checkout answers");
        assert_eq!(response.status(), 303);
    }
}

/// Runs one saga of each ending: paid, out of stock, cancelled, expired
/// (the shop's pay TTL must be short).
async fn each_ending<F, Fut>(client: &Client, pay: F)
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let paid = reserve(client, &[("SKU-001", 2), ("SKU-002", 1)]).await;
    pay(paid.checkout_url.clone().expect("url")).await;
    wait_status(client, &paid, OrderStatus::Paid).await;
    let refused = place(client, &[("SKU-003", 99)]).await;
    wait_status(client, &refused, OrderStatus::Cancelled).await;
    let cancelled = reserve(client, &[("SKU-003", 2)]).await;
    client
        .cancel_order(&cancelled.id.to_string())
        .await
        .expect("cancelled");
    let expired = reserve(client, &[("SKU-002", 3)]).await;
    wait_status(client, &expired, OrderStatus::Cancelled).await;
}

/// Checks that `recorded` holds every kind of message the sagas exchange.
fn assert_every_kind(recorded: &[Arc<Record>]) {
    let kinds: std::collections::HashSet<&str> = recorded
        .iter()
        .filter_map(|record| record.header(header::TYPE))
        .collect();
    for kind in [
        "PlaceOrder",
        "CancelOrder",
        "ReserveStock",
        "ReleaseStock",
        "CommitStock",
        "StockReserved",
        "StockRejected",
        "CreatePayment",
        "CancelPayment",
        "CheckoutReady",
        "PaymentSucceeded",
        "OrderUpdated",
        "ProductUpdated",
    ] {
        assert!(
            kinds.contains(kind),
            "the sagas produced a {kind} to redeliver"
        );
    }
}

#[tokio::test]
async fn redelivering_every_bus_message_changes_nothing() {
    let mut shop = InProcess::build(Duration::from_secs(2)).await;
    let bus = shop.app().bus().clone();
    let idle = shop.app().idleness();
    let tap = Arc::new(Tap::default());
    let topics: Vec<&str> = shop_shared::events::topic::ALL
        .iter()
        .map(|(name, _)| *name)
        .collect();
    bus.subscribe(Subscription::broadcast("tap", &topics), tap.clone())
        .await
        .expect("tap");
    let _stop = shop.run();

    let client = shop.customer().await;
    each_ending(&client, |url: String| {
        let shop = &shop;
        async move { shop.pay(&url).await }
    })
    .await;
    assert!(idle.settle(WAIT).await, "the shop settles");

    let products_before = client.products().await.expect("products");
    let orders_before = client.orders().await.expect("orders");
    let recorded = tap.records();
    assert_every_kind(&recorded);

    let mut pushes = Pushes::new(&client);
    let again: Vec<OutgoingRecord> = recorded
        .iter()
        .map(|record| OutgoingRecord::from_record(record))
        .collect();
    bus.publish(again).await.expect("redelivered");
    assert!(idle.settle(WAIT).await, "the shop settles again");

    assert_eq!(client.products().await.expect("products"), products_before);
    assert_eq!(client.orders().await.expect("orders"), orders_before);
    pushes.collect(Duration::from_millis(300)).await;
    assert!(
        pushes.seen.is_empty(),
        "redelivery pushed changes: {:?}",
        pushes.seen
    );
    for group in ["order", "stock", "payment"] {
        assert!(
            bus.records(&topic::dead_letter(group)).is_empty(),
            "nothing was dead-lettered by {group}"
        );
    }
}

#[tokio::test]
async fn a_message_that_cannot_be_processed_is_dead_lettered_and_the_rest_flows() {
    let mut shop = InProcess::build(Duration::from_secs(300)).await;
    let bus = shop.app().bus().clone();
    let idle = shop.app().idleness();
    let _stop = shop.run();
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;

    // Garbage on the order service's topic, with the key of a live order so
    // that it shares that order's partition.
    bus.publish(vec![OutgoingRecord {
        topic: topic::ORDER_COMMANDS.into(),
        key: order.id.to_string(),
        headers: vec![(header::TYPE.into(), "Nonsense".into())],
        payload: b"{\"this\": \"is not an envelope\"}".to_vec(),
    }])
    .await
    .expect("published");
    // An unknown topic is refused outright.
    let unknown = bus
        .publish(vec![OutgoingRecord {
            topic: "no.such.topic".into(),
            key: "k".into(),
            headers: vec![],
            payload: vec![],
        }])
        .await;
    assert!(unknown.is_err());

    // The same partition keeps flowing: the order can still be cancelled.
    let cancelled = client
        .cancel_order(&order.id.to_string())
        .await
        .expect("cancelled");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert!(idle.settle(WAIT).await);
    wait_available(&client, "SKU-001", 10).await;

    let dead = bus.records(&topic::dead_letter("order"));
    assert_eq!(dead.len(), 1, "the bad record was dead-lettered once");
    let letter = &dead[0];
    assert_eq!(
        letter.header(header::DLQ_TOPIC),
        Some(topic::ORDER_COMMANDS)
    );
    assert!(
        letter
            .header(header::DLQ_REASON)
            .is_some_and(|reason| reason.contains("malformed"))
    );
    assert_eq!(
        letter.payload,
        b"{\"this\": \"is not an envelope\"}".to_vec()
    );
}

/// A test-side connection to the broker of a distributed shop.
fn kafka(shop: &Shop) -> (KafkaBus, Supervisor) {
    let (supervisor, spawner) = Supervisor::new();
    let config = KafkaConfig {
        brokers: shop.broker().expect("distributed"),
        partitions: 4,
        replication: 1,
        client_id: "shop-test".into(),
        fetch_wait: std::time::Duration::from_millis(500),
        topic_prefix: shop.topic_prefix().expect("distributed"),
    };
    let bus = KafkaBus::new(config, Metrics::default(), &spawner).expect("Kafka client");
    (bus, supervisor)
}

/// Reads every record now on `topics`.
async fn read_all(bus: &KafkaBus, topics: &[&str]) -> Vec<Arc<Record>> {
    let tap = Arc::new(Tap::default());
    let handle = bus
        .subscribe(Subscription::broadcast("tap", topics), tap.clone())
        .await
        .expect("tap");
    tokio::time::timeout(WAIT, handle.caught_up())
        .await
        .expect("tap caught up");
    tap.records()
}

/// Waits until the services have published and consumed nothing new for
/// a second.
async fn quiet(shop: &Shop) {
    let mut last = (-1.0, -1.0);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = (
            shop.metric("shop_bus_messages_published_total", &[]).await,
            shop.metric("shop_bus_messages_consumed_total", &[]).await,
        );
        if now == last {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the shop never went quiet"
        );
        last = now;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn redelivering_every_kafka_message_changes_nothing() {
    let shop = Shop::start_with(Mode::Distributed, Options::paying_within("3s")).await;
    let client = shop.customer().await;
    each_ending(&client, |url: String| {
        let shop = &shop;
        async move {
            assert_eq!(shop.pay(&url, GOOD_CARD).await.status(), 303);
        }
    })
    .await;
    quiet(&shop).await;
    let products_before = client.products().await.expect("products");
    let orders_before = client.orders().await.expect("orders");

    let (bus, _supervisor) = kafka(&shop);
    let topics: Vec<&str> = shop_shared::events::topic::ALL
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let recorded = read_all(&bus, &topics).await;
    assert_every_kind(&recorded);
    // The services produce with Kafka's own key partitioner, the one the
    // in-process bus follows: a reader in any language finds each key
    // where Kafka's Java client would put it.
    for record in &recorded {
        assert_eq!(
            record.partition,
            shop_backend::bus::partition_for(&record.key, 4),
            "{} key {} on partition {}",
            record.topic,
            record.key,
            record.partition
        );
    }
    // Each record is consumed once more by each group reading its topic:
    // one group per topic here.
    let consumed = shop.metric("shop_bus_messages_consumed_total", &[]).await;
    let mut pushes = Pushes::new(&client);
    let again: Vec<OutgoingRecord> = recorded
        .iter()
        .map(|record| OutgoingRecord::from_record(record))
        .collect();
    bus.publish(again).await.expect("redelivered");
    let deadline = tokio::time::Instant::now() + WAIT;
    while shop.metric("shop_bus_messages_consumed_total", &[]).await
        < consumed + recorded.len() as f64
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the redelivered records were not all consumed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    quiet(&shop).await;

    assert_eq!(client.products().await.expect("products"), products_before);
    assert_eq!(client.orders().await.expect("orders"), orders_before);
    pushes.collect(Duration::from_millis(300)).await;
    assert!(
        pushes.seen.is_empty(),
        "redelivery pushed changes: {:?}",
        pushes.seen
    );
}

#[tokio::test]
async fn a_kafka_message_that_cannot_be_processed_is_dead_lettered_and_the_rest_flows() {
    let shop = Shop::start(Mode::Distributed).await;
    let client = shop.customer().await;
    let order = reserve(&client, &[("SKU-001", 1)]).await;
    let (bus, _supervisor) = kafka(&shop);
    bus.publish(vec![OutgoingRecord {
        topic: topic::ORDER_COMMANDS.into(),
        key: order.id.to_string(),
        headers: vec![(header::TYPE.into(), "Nonsense".into())],
        payload: b"{\"this\": \"is not an envelope\"}".to_vec(),
    }])
    .await
    .expect("published");
    let cancelled = client
        .cancel_order(&order.id.to_string())
        .await
        .expect("cancelled");
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    wait_available(&client, "SKU-001", 10).await;

    let dead = read_all(&bus, &[&topic::dead_letter("order")]).await;
    assert_eq!(dead.len(), 1, "the bad record was dead-lettered once");
    assert_eq!(
        dead[0].header(header::DLQ_TOPIC),
        Some(topic::ORDER_COMMANDS)
    );
    assert!(
        dead[0]
            .header(header::DLQ_REASON)
            .is_some_and(|reason| reason.contains("malformed"))
    );
    assert_eq!(
        shop.metric("shop_bus_dead_letters_total", &[("group", "order")])
            .await,
        1.0
    );
}
