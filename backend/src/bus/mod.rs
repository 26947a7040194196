//! The message bus seam: publish records to topics; consume them as a
//! member of a consumer group.
//!
//! Two implementations keep the same semantics, Kafka's: at-least-once
//! delivery, order only per key within a topic (a key always maps to the same
//! partition), consumer groups that share partitions, and no order across
//! topics. [`memory::MemoryBus`] runs in-process over a durable log;
//! the Kafka bus speaks to a broker through rdkafka.
//!
//! Services never see partitions or offsets: they implement [`Handler`] for
//! batches of records, and [`consumer::deliver`] turns handler failures into
//! retries and, for records that cannot be processed, dead letters.

pub mod consumer;
pub mod kafka;
pub mod memory;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use shop_shared::events::{Envelope, Message};
use shop_shared::time::Timestamp;
use tokio::sync::watch;

/// A record as stored on a topic.
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
    pub timestamp: Timestamp,
}

impl Record {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .field("key", &self.key)
            .field("type", &self.header(header::TYPE))
            .finish()
    }
}

/// A record to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRecord {
    pub topic: String,
    pub key: String,
    pub headers: Vec<(String, String)>,
    pub payload: Vec<u8>,
}

impl OutgoingRecord {
    /// The record for an envelope, with its type and id also as headers so
    /// that tools can filter without parsing payloads.
    pub fn from_envelope<M: Message>(envelope: &Envelope<M>) -> Self {
        OutgoingRecord {
            topic: M::TOPIC.to_owned(),
            key: envelope.key.clone(),
            headers: vec![
                (
                    header::TYPE.to_owned(),
                    envelope.message.type_name().to_owned(),
                ),
                (header::EVENT_ID.to_owned(), envelope.id.to_string()),
            ],
            payload: envelope.to_json(),
        }
    }

    /// Published again, for instance from a record read off the bus.
    pub fn from_record(record: &Record) -> Self {
        OutgoingRecord {
            topic: record.topic.to_string(),
            key: record.key.clone(),
            headers: record.headers.clone(),
            payload: record.payload.clone(),
        }
    }
}

/// Header names.
pub mod header {
    pub const TYPE: &str = "type";
    pub const EVENT_ID: &str = "event-id";
    pub const DLQ_REASON: &str = "dlq-reason";
    pub const DLQ_TOPIC: &str = "dlq-topic";
    pub const DLQ_PARTITION: &str = "dlq-partition";
    pub const DLQ_OFFSET: &str = "dlq-offset";
    pub const DLQ_GROUP: &str = "dlq-group";
    pub const DLQ_ATTEMPTS: &str = "dlq-attempts";
}

/// A topic to create if missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    /// Keep only the newest record per key (read models replay these).
    pub compacted: bool,
}

impl TopicSpec {
    /// Every topic the services use.
    pub fn all() -> Vec<TopicSpec> {
        shop_shared::events::topic::ALL
            .iter()
            .map(|(name, compacted)| TopicSpec {
                name: (*name).to_owned(),
                compacted: *compacted,
            })
            .collect()
    }

    pub fn dead_letter(group: &str) -> TopicSpec {
        TopicSpec {
            name: shop_shared::events::topic::dead_letter(group),
            compacted: false,
        }
    }
}

/// How a subscription reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A member of a consumer group: the group's members share the
    /// partitions, and the group resumes from its committed offsets.
    Group,
    /// Every subscriber reads every record from the earliest still kept and
    /// commits nothing: for in-memory read models that replay small
    /// compacted topics (the catalogue) on start.
    Broadcast,
    /// Every subscriber reads every record published after it subscribed,
    /// from the end of each partition (or from where
    /// [`Subscription::resume_from`]'s group stands), and commits
    /// nothing: for pushing live changes without storing or replaying
    /// history.
    Live,
}

#[derive(Debug, Clone)]
pub struct Subscription {
    pub group: String,
    pub topics: Vec<String>,
    pub mode: Mode,
    /// Most records handed to the handler at once.
    pub max_batch: usize,
    /// [`Mode::Live`]: start each partition where this consumer group
    /// stands, so that what the group has not handled yet is read too: its
    /// committed offset, or the earliest record kept where it committed
    /// nothing (where the group itself starts). Without it, the end.
    pub resume_from: Option<String>,
}

impl Subscription {
    pub fn group(group: &str, topics: &[&str]) -> Self {
        Subscription {
            group: group.to_owned(),
            topics: topics.iter().map(|topic| (*topic).to_owned()).collect(),
            mode: Mode::Group,
            max_batch: 256,
            resume_from: None,
        }
    }

    pub fn broadcast(name: &str, topics: &[&str]) -> Self {
        Subscription {
            mode: Mode::Broadcast,
            ..Subscription::group(name, topics)
        }
    }

    /// Live from where `group` committed (see [`Subscription::resume_from`]).
    pub fn live(name: &str, topics: &[&str], group: &str) -> Self {
        Subscription {
            mode: Mode::Live,
            resume_from: Some(group.to_owned()),
            ..Subscription::group(name, topics)
        }
    }
}

/// What a running subscription reports.
#[derive(Debug, Clone)]
pub struct SubscriptionHandle {
    caught_up: watch::Receiver<bool>,
}

impl SubscriptionHandle {
    pub fn new(caught_up: watch::Receiver<bool>) -> Self {
        SubscriptionHandle { caught_up }
    }

    /// True once the subscriber has handled every record that was on its
    /// topics when it subscribed.
    pub fn is_caught_up(&self) -> bool {
        *self.caught_up.borrow()
    }

    /// Waits until [`SubscriptionHandle::is_caught_up`].
    pub async fn caught_up(&self) {
        let mut caught_up = self.caught_up.clone();
        let _ = caught_up.wait_for(|done| *done).await;
    }
}

/// Why a handler could not process a batch.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The infrastructure failed (database unreachable, busy, deadlock):
    /// retry the same records until it works; never dead-letter them.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Processing these records failed: retry a few times, then dead-letter
    /// the record that keeps failing.
    #[error("{0:#}")]
    Failed(anyhow::Error),
    /// A record cannot be read at all: dead-letter it at once.
    #[error("malformed record: {0}")]
    Malformed(String),
}

impl From<shop_shared::events::DecodeError> for HandlerError {
    fn from(error: shop_shared::events::DecodeError) -> Self {
        HandlerError::Malformed(error.to_string())
    }
}

/// Processes records. A batch counts as done only when `handle` returns
/// `Ok`, after its effects are committed; the bus then stores the offsets.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError>;
}

/// Why the bus refused.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("unknown topic `{0}`")]
    UnknownTopic(String),
    #[error("the bus is shutting down")]
    Closed,
    #[error("bus storage failed: {0}")]
    Storage(String),
    #[error("broker: {0}")]
    Broker(String),
}

/// The seam between services and the messaging system.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Creates the topics that do not exist yet.
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError>;

    /// Publishes records; returns once every one is durably accepted.
    /// Records with the same topic and key keep the order given.
    async fn publish(&self, records: Vec<OutgoingRecord>) -> Result<(), BusError>;

    /// Starts consuming. Batches go to `handler` until shutdown.
    async fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
    ) -> Result<SubscriptionHandle, BusError>;

    /// Whether the bus can currently publish (for health checks).
    async fn is_healthy(&self) -> bool;

    /// Gauges of the bus itself for `/metrics`, if it has any.
    fn gauges(&self) -> Option<crate::metrics::GaugeSource> {
        None
    }
}

/// Publishes typed messages, each in a fresh envelope.
///
/// # Errors
///
/// As [`Bus::publish`]: an unknown topic, a closed bus, or a broker or storage
/// failure.
pub async fn publish_messages<M: Message>(
    bus: &dyn Bus,
    messages: Vec<(M, String)>,
) -> Result<(), BusError> {
    let records = messages
        .into_iter()
        .map(|(message, correlation)| {
            OutgoingRecord::from_envelope(&Envelope::new(message, correlation))
        })
        .collect();
    bus.publish(records).await
}

/// How a topic maps a record's key to one of its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitioner {
    /// Kafka's standard key partitioner, that of the Java client's
    /// `BuiltInPartitioner.partitionForKey`: the 32-bit murmur2 hash of the
    /// key's bytes (seed `0x9747b28c`), its sign bit cleared, modulo the
    /// partition count. librdkafka's `murmur2_random` computes the same for
    /// keyed records, so the Kafka bus, the in-process bus and a service in
    /// another language all agree on where a key lives.
    Murmur2,
    /// FNV-1a, which the in-process bus used before it followed Kafka. Topics
    /// of a log created then keep it, so that every key stays on the
    /// partition that already holds its records.
    Fnv1a,
}

impl Partitioner {
    /// The partition of `key` among `partitions` (at least one).
    pub fn partition(self, key: &str, partitions: u32) -> u32 {
        let partitions = partitions.max(1);
        match self {
            Partitioner::Murmur2 => {
                let hash = murmur2::murmur2(key.as_bytes(), murmur2::KAFKA_SEED);
                (hash & 0x7fff_ffff) % partitions
            }
            Partitioner::Fnv1a => {
                let mut hash: u32 = 0x811c_9dc5;
                for byte in key.as_bytes() {
                    hash ^= u32::from(*byte);
                    hash = hash.wrapping_mul(0x0100_0193);
                }
                hash % partitions
            }
        }
    }

    /// The name kept in the in-process bus's log.
    pub fn name(self) -> &'static str {
        match self {
            Partitioner::Murmur2 => "murmur2",
            Partitioner::Fnv1a => "fnv1a",
        }
    }

    /// The partitioner of a name kept in the log, if it is one.
    pub fn from_name(name: &str) -> Option<Partitioner> {
        match name {
            "murmur2" => Some(Partitioner::Murmur2),
            "fnv1a" => Some(Partitioner::Fnv1a),
            _ => None,
        }
    }
}

/// The partition of `key` among `partitions`, as Kafka's Java client and
/// rdkafka's `murmur2_random` partitioner place it.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    Partitioner::Murmur2.partition(key, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_always_maps_to_the_same_partition() {
        let first = partition_for("order-42", 8);
        for _ in 0..10 {
            assert_eq!(partition_for("order-42", 8), first);
        }
        assert!(first < 8);
        let used: std::collections::HashSet<u32> = (0..200)
            .map(|n| partition_for(&format!("key-{n}"), 8))
            .collect();
        assert_eq!(used.len(), 8, "keys spread over every partition");
    }

    /// Partitions computed by Apache Kafka 4.1.2's own Java client
    /// (`Utils.toPositive(Utils.murmur2(key)) % partitions`, run in jshell
    /// over `kafka-clients-4.1.2.jar`).
    #[test]
    fn keys_land_where_kafkas_java_client_puts_them() {
        let java = [
            ("SKU-001", 4, 1),
            ("SKU-002", 4, 0),
            ("SKU-002", 12, 4),
            ("SKU-003", 4, 1),
            ("0190a3c2-7b1e-7cc4-9a35-0d6f3c1e2b44", 4, 0),
            ("order-42", 4, 0),
            ("", 12, 9),
        ];
        for (key, partitions, expected) in java {
            assert_eq!(
                partition_for(key, partitions),
                expected,
                "{key:?} among {partitions}"
            );
        }
    }

    #[test]
    fn a_partitioner_is_known_by_the_name_the_log_keeps() {
        for partitioner in [Partitioner::Murmur2, Partitioner::Fnv1a] {
            assert_eq!(
                Partitioner::from_name(partitioner.name()),
                Some(partitioner)
            );
        }
        assert_eq!(Partitioner::from_name("crc32"), None);
        // The old in-process placement, which logs created before keep.
        assert_eq!(Partitioner::Fnv1a.partition("order-42", 8), 4);
    }
}
