//! The Kafka bus against Apache Kafka itself, below the services: what a
//! broker of a real cluster does differently from the in-process bus.

use std::sync::Arc;
use std::time::Duration;

use shop_backend::bus::kafka::{KafkaBus, KafkaConfig};
use shop_backend::bus::{Bus, OutgoingRecord, Subscription, TopicSpec};
use shop_backend::metrics::Metrics;
use shop_backend::tasks::Supervisor;
use uuid::Uuid;

use crate::harness::{Broker, Tap, WAIT};

/// A bus on `broker` whose topics and groups carry `prefix`.
fn bus(broker: &Broker, prefix: &str) -> (KafkaBus, Supervisor) {
    let (supervisor, spawner) = Supervisor::new();
    let config = KafkaConfig {
        brokers: broker.bootstrap(),
        partitions: 4,
        replication: 1,
        client_id: "shop-test".into(),
        fetch_wait: Duration::from_millis(500),
        topic_prefix: prefix.to_owned(),
    };
    let bus = KafkaBus::new(config, Metrics::default(), &spawner).expect("Kafka client");
    (bus, supervisor)
}

fn record(topic: &str, key: &str, payload: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.to_owned(),
        key: key.to_owned(),
        headers: Vec::new(),
        payload: payload.as_bytes().to_vec(),
    }
}

fn topic(name: &str) -> TopicSpec {
    TopicSpec {
        name: name.to_owned(),
        compacted: false,
    }
}

/// A gateway subscribes to its topics from their beginning right after
/// creating them; on a KRaft broker a new topic reaches the broker's
/// metadata a moment after the creation is acknowledged.
#[tokio::test]
async fn a_topic_can_be_read_from_the_moment_it_is_created() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let broker = Broker::start(dir.path().join("kafka"), false).await;
    let (bus, _supervisor) = bus(&broker, &format!("test-{}.", Uuid::new_v4().simple()));
    // The race is narrow: many fresh topics at once, each read as soon as
    // it exists, keep the broker's metadata busy.
    let names: Vec<String> = (0..40).map(|n| format!("fresh-{n}")).collect();
    let readers = names.iter().map(|name| {
        let bus = bus.clone();
        async move {
            bus.ensure_topics(&[topic(name)]).await.expect("created");
            let tap = Arc::new(Tap::default());
            let handle = bus
                .subscribe(Subscription::broadcast("reader", &[name]), tap.clone())
                .await
                .unwrap_or_else(|error| {
                    panic!("{name} cannot be read right after creation: {error}")
                });
            tokio::time::timeout(WAIT, handle.caught_up())
                .await
                .expect("an empty topic is caught up at once");
            tap
        }
    });
    let taps = futures_util::future::join_all(readers).await;
    bus.publish(
        names
            .iter()
            .map(|name| record(name, "k", "first"))
            .collect(),
    )
    .await
    .expect("published");
    for (name, tap) in names.iter().zip(&taps) {
        let records = tap.wait_for(1).await;
        assert_eq!(records.len(), 1, "{name}: the record arrives");
        assert_eq!(&*records[0].topic, name.as_str());
    }
}

/// Two shops on one cluster, told apart only by their topic prefix, never
/// see each other's records, and each sees its topics by their plain names.
#[tokio::test]
async fn shops_with_different_topic_prefixes_share_a_cluster_without_meeting() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let broker = Broker::start(dir.path().join("kafka"), false).await;
    let run = Uuid::new_v4().simple().to_string();
    let (a, _a) = bus(&broker, &format!("a-{run}."));
    let (b, _b) = bus(&broker, &format!("b-{run}."));
    let topics = TopicSpec::all();
    a.ensure_topics(&topics).await.expect("a's topics");
    b.ensure_topics(&topics).await.expect("b's topics");
    let orders = shop_shared::events::topic::ORDERS;
    let (tap_a, tap_b) = (Arc::new(Tap::default()), Arc::new(Tap::default()));
    a.subscribe(Subscription::group("gateway", &[orders]), tap_a.clone())
        .await
        .expect("a reads");
    b.subscribe(Subscription::group("gateway", &[orders]), tap_b.clone())
        .await
        .expect("b reads");
    a.publish(
        (0..5)
            .map(|n| record(orders, &format!("order-{n}"), "a"))
            .collect(),
    )
    .await
    .expect("a publishes");
    b.publish(
        (0..3)
            .map(|n| record(orders, &format!("order-{n}"), "b"))
            .collect(),
    )
    .await
    .expect("b publishes");
    tap_a.wait_for(5).await;
    tap_b.wait_for(3).await;
    // Anything that leaked across would have arrived by now too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let seen_a = tap_a.records();
    let seen_b = tap_b.records();
    assert_eq!(seen_a.len(), 5, "a sees its 5 records and no more");
    assert_eq!(seen_b.len(), 3, "b sees its 3 records and no more");
    assert!(
        seen_a
            .iter()
            .all(|r| r.payload == b"a" && &*r.topic == orders)
    );
    assert!(
        seen_b
            .iter()
            .all(|r| r.payload == b"b" && &*r.topic == orders)
    );
}

/// Publishes `payload` to topic `state` under each of `keys`.
async fn publish_each(bus: &KafkaBus, keys: &[String], payload: &str) {
    bus.publish(
        keys.iter()
            .map(|key| record("state", key, payload))
            .collect(),
    )
    .await
    .expect("published");
}

/// A live reader of topic `state` named `name` that follows `group`, once
/// it caught up.
async fn live_following(bus: &KafkaBus, name: &str, group: &str) -> Arc<Tap> {
    let seen = Arc::new(Tap::default());
    let handle = bus
        .subscribe(Subscription::live(name, &["state"], group), seen.clone())
        .await
        .expect("live reader");
    tokio::time::timeout(WAIT, handle.caught_up())
        .await
        .expect("the live reader caught up");
    seen
}

/// A live reader that follows a consumer group starts where the group
/// stands: on partitions the group committed nothing on, at the earliest
/// record (where the group starts too), not at the end; elsewhere at the
/// group's committed offset. A gateway that restarts before its projection's
/// group first commits would otherwise never push what it skipped.
#[tokio::test]
async fn a_live_reader_starts_where_the_group_it_follows_stands() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let broker = Broker::start(dir.path().join("kafka"), false).await;
    let prefix = format!("test-{}.", Uuid::new_v4().simple());
    let (bus, supervisor) = bus(&broker, &prefix);
    bus.ensure_topics(&[topic("state")]).await.expect("topic");
    let keys: Vec<String> = (0..8).map(|n| format!("key-{n}")).collect();
    publish_each(&bus, &keys, "before").await;

    // The group has committed nothing yet: the live reader reads it all.
    let before = live_following(&bus, "live-before", "projection").await;
    assert_eq!(before.records().len(), keys.len(), "every record so far");

    // The group reads everything and commits as it stops.
    let group = Arc::new(Tap::default());
    bus.subscribe(Subscription::group("projection", &["state"]), group.clone())
        .await
        .expect("group");
    assert_eq!(group.wait_for(keys.len()).await.len(), keys.len());
    drop(bus);
    supervisor.trigger().trigger();
    supervisor
        .run(Duration::from_secs(10))
        .await
        .expect("the group stops and commits");

    let (bus, _supervisor) = self::bus(&broker, &prefix);
    publish_each(&bus, &keys, "after").await;
    let after = live_following(&bus, "live-after", "projection").await;
    let payloads: Vec<Vec<u8>> = after.records().iter().map(|r| r.payload.clone()).collect();
    assert_eq!(
        payloads,
        vec![b"after".to_vec(); keys.len()],
        "only what the group has not committed"
    );
}
