//! At-least-once delivery: every bus message may arrive again, and a
//! message that cannot be processed must not block its partition. These
//! tests run the application in-process to reach its bus.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use shop_backend::Application;
use shop_backend::bus::{Bus, Handler, HandlerError, OutgoingRecord, Record, Subscription, header};
use shop_backend::config::EmbeddedArgs;
use shop_shared::client::{Client, websocket_url};
use shop_shared::domain::OrderStatus;
use shop_shared::events::topic;

use crate::harness::{GOOD_CARD, Pushes, WAIT, place, reserve, wait_available, wait_status};

/// Keeps a copy of every record on the topics it reads.
#[derive(Default)]
struct Tap {
    records: Mutex<Vec<Arc<Record>>>,
}

#[async_trait]
impl Handler for Tap {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        self.records
            .lock()
            .expect("tap lock")
            .extend(batch.iter().cloned());
        Ok(())
    }
}

struct InProcess {
    app: Option<Application>,
    base: String,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn build(pay_ttl: Duration) -> InProcess {
        let dir = tempfile::tempdir().expect("data dir");
        let app = Application::build(EmbeddedArgs {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().join("data"),
            pay_ttl,
            catalog: None,
            public_url: None,
            partitions: 4,
            token_secret: None,
            webhook_secret: None,
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

    fn run(&mut self) -> tokio::sync::oneshot::Sender<()> {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = self.app.take().expect("built");
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        stop
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

    // One saga of each ending.
    let client = shop.customer().await;
    let paid = reserve(&client, &[("SKU-001", 2), ("SKU-002", 1)]).await;
    shop.pay(paid.checkout_url.as_deref().expect("url")).await;
    wait_status(&client, &paid, OrderStatus::Paid).await;
    let refused = place(&client, &[("SKU-003", 99)]).await;
    wait_status(&client, &refused, OrderStatus::Cancelled).await;
    let cancelled = reserve(&client, &[("SKU-003", 2)]).await;
    client
        .cancel_order(&cancelled.id.to_string())
        .await
        .expect("cancelled");
    let expired = reserve(&client, &[("SKU-002", 3)]).await;
    wait_status(&client, &expired, OrderStatus::Cancelled).await;
    assert!(idle.settle(WAIT).await, "the shop settles");

    let products_before = client.products().await.expect("products");
    let orders_before = client.orders().await.expect("orders");
    let recorded = tap.records.lock().expect("tap lock").clone();
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
