//! The in-process bus of embedded mode, with Kafka's semantics.
//!
//! Each topic has a fixed number of partitions; a record goes to the
//! partition of its key, so records of one key keep their order. Each
//! partition is an append-only log of offsets. A consumer group reads every
//! partition from its committed offset, one batch at a time, and commits
//! only after the handler has committed its effects: delivery is
//! at-least-once. Members of one group share the partitions; every group
//! sees every record. Compacted topics keep only the newest record per key.
//!
//! The log is durable: one writer task appends records and commits offsets
//! to a SQLite file in group commits, and only then makes them visible, so
//! a record acknowledged to a publisher survives a crash, as with Kafka's
//! `acks=all`. Records that every group reading their topic has consumed
//! are trimmed. A compacted topic keeps its newest record per key in the
//! file, where a new reader finds it, but in memory only what some reader
//! has not passed yet: memory does not grow with the keys a topic has ever
//! had. On open, the committed offsets are loaded back, and of each
//! partition only the records past the offsets its durable groups
//! committed (all of a topic no durable group reads).
//!
//! `reader` delivers records to consumer groups, `writer` is the task
//! that appends and commits in group commits, and `store` keeps the log
//! in its SQLite file.

mod reader;
mod store;
mod writer;

#[cfg(test)]
mod tests;

use shop_shared::sync::{lock, read};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use tokio::sync::{mpsc, oneshot, watch};

use super::{
    Bus, BusError, Handler, OutgoingRecord, Partitioner, Record, Subscription, SubscriptionHandle,
    TopicSpec,
};
use crate::db::checkpoint;
use crate::metrics::Metrics;
use crate::tasks::Spawner;
use reader::Group;
use store::LogStore;
use writer::{WriteOp, Writer};

/// The in-process bus. Cheap to clone.
#[derive(Clone)]
pub struct MemoryBus {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    partitions: u32,
    writer: mpsc::UnboundedSender<WriteOp>,
    spawner: Spawner,
    metrics: Metrics,
}

/// State the writer task and the readers both see.
#[derive(Default)]
struct Shared {
    topics: RwLock<HashMap<String, Arc<TopicLog>>>,
    /// Committed next offsets of durable groups: (group, topic, partition).
    committed: Mutex<HashMap<(String, String, u32), u64>>,
    /// Durable groups reading each topic; records they have not all
    /// consumed are never trimmed.
    readers: Mutex<HashMap<String, HashSet<String>>>,
    /// Every group (durable or broadcast) of this process, by name.
    groups: Mutex<HashMap<String, Arc<Group>>>,
    /// Moves after every group commit that made records visible, so group
    /// readers wake once for all their partitions.
    appended: watch::Sender<u64>,
    /// Reads records that are in the file only; none for a volatile bus,
    /// which keeps every record in memory.
    cold: Option<store::ColdRecords>,
}

struct TopicLog {
    name: Arc<str>,
    compacted: bool,
    /// Kafka's murmur2 for every topic created now; a topic of an older log
    /// keeps the placement its records already have.
    partitioner: Partitioner,
    partitions: Vec<PartitionLog>,
}

struct PartitionLog {
    state: Mutex<PartitionState>,
    /// The next offset to be written; readers wait for it to move.
    end: watch::Sender<u64>,
}

#[derive(Default)]
struct PartitionState {
    records: BTreeMap<u64, Arc<Record>>,
    /// Compacted topics only: the offset of the newest record per key.
    latest: HashMap<String, u64>,
    /// Compacted topics only: records a newer one of the same key replaced.
    /// They are dropped once every reader has passed them, so live readers
    /// see every change, as with Kafka (which never compacts the head).
    superseded: BTreeSet<u64>,
    /// Offsets below this are kept only in the file (compacted topics):
    /// every reader of this process had passed them, and a new one reads
    /// them from there.
    cold_end: u64,
}

impl MemoryBus {
    /// Opens (or creates) the durable log at `path`. New topics get
    /// `partitions` partitions.
    ///
    /// # Errors
    ///
    /// The log file cannot be opened, created or migrated.
    pub async fn open(
        path: &Path,
        partitions: u32,
        metrics: Metrics,
        spawner: &Spawner,
    ) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .pragma("temp_store", "memory")
            .busy_timeout(Duration::from_secs(5));
        // The writer task is the only user: it owns the connection, without
        // a pool's health checks around every statement.
        let connection = SqliteConnection::connect_with(&options).await?;
        let checkpointer = checkpoint::start(&options).await?;
        let mut store = LogStore {
            connection,
            _checkpointer: checkpointer,
        };
        store.migrate().await?;
        let mut shared = store.load().await?;
        shared.cold = Some(store::ColdRecords::open(&options).await?);
        Ok(Self::start(
            Some(store),
            shared,
            partitions,
            metrics,
            spawner,
        ))
    }

    /// A bus that keeps its log in memory only, for tests.
    pub fn volatile(partitions: u32, metrics: Metrics, spawner: &Spawner) -> Self {
        Self::start(None, Shared::default(), partitions, metrics, spawner)
    }

    fn start(
        store: Option<LogStore>,
        shared: Shared,
        partitions: u32,
        metrics: Metrics,
        spawner: &Spawner,
    ) -> Self {
        let shared = Arc::new(shared);
        let (writer, ops) = mpsc::unbounded_channel();
        let actor = Writer {
            shared: shared.clone(),
            store,
            ops,
            shutdown: spawner.shutdown().clone(),
            unsaved: HashMap::new(),
        };
        spawner.spawn("bus-writer", actor.run());
        MemoryBus {
            inner: Arc::new(Inner {
                shared,
                partitions: partitions.max(1),
                writer,
                spawner: spawner.clone(),
                metrics,
            }),
        }
    }

    /// True when every subscriber has handled every record on its topics.
    pub fn is_idle(&self) -> bool {
        let groups: Vec<Arc<Group>> = lock(&self.inner.shared.groups).values().cloned().collect();
        groups.iter().all(|group| {
            let positions = lock(&group.positions);
            group.topics.iter().all(|name| {
                let Some(topic) = self.inner.shared.topic(name) else {
                    return true;
                };
                topic.partitions.iter().enumerate().all(|(index, log)| {
                    let end = *log.end.borrow();
                    let position = positions.get(&(name.clone(), index as u32)).copied();
                    end == 0 || position.is_some_and(|position| position >= end)
                })
            })
        })
    }

    /// How many records the bus holds in memory, over every topic.
    pub fn records_in_memory(&self) -> usize {
        let topics: Vec<Arc<TopicLog>> =
            read(&self.inner.shared.topics).values().cloned().collect();
        topics
            .iter()
            .flat_map(|topic| &topic.partitions)
            .map(|log| lock(&log.state).records.len())
            .sum()
    }

    /// Every record currently kept in memory on `topic`, in partition then
    /// offset order (for tests and tools).
    pub fn records(&self, topic: &str) -> Vec<Arc<Record>> {
        let Some(topic) = self.inner.shared.topic(topic) else {
            return Vec::new();
        };
        topic
            .partitions
            .iter()
            .flat_map(|log| {
                lock(&log.state)
                    .records
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        for spec in topics {
            if let Some(topic) = self.inner.shared.topic(&spec.name) {
                let kept = topic.partitions.len();
                if kept != self.inner.partitions.max(1) as usize {
                    // As in Kafka, a topic keeps the partitions it was
                    // created with; moving records between partitions
                    // would break the order of each key.
                    tracing::warn!(
                        topic = %spec.name,
                        kept,
                        asked = self.inner.partitions,
                        "the topic keeps the partitions it was created with; --partitions applies to new topics only"
                    );
                }
                continue;
            }
            let (done, created) = oneshot::channel();
            self.inner
                .writer
                .send(WriteOp::CreateTopic {
                    name: spec.name.clone(),
                    partitions: self.inner.partitions,
                    compacted: spec.compacted,
                    done,
                })
                .map_err(|_| BusError::Closed)?;
            created.await.map_err(|_| BusError::Closed)??;
        }
        Ok(())
    }

    async fn publish(&self, records: Vec<OutgoingRecord>) -> Result<(), BusError> {
        if records.is_empty() {
            return Ok(());
        }
        let topics: Vec<String> = records.iter().map(|record| record.topic.clone()).collect();
        let (done, published) = oneshot::channel();
        self.inner
            .writer
            .send(WriteOp::Append { records, done })
            .map_err(|_| BusError::Closed)?;
        published.await.map_err(|_| BusError::Closed)??;
        for topic in topics {
            self.inner.metrics.published(&topic);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
    ) -> Result<SubscriptionHandle, BusError> {
        self.join(subscription, handler).await
    }

    async fn is_healthy(&self) -> bool {
        !self.inner.writer.is_closed()
    }

    fn gauges(&self) -> Option<crate::metrics::GaugeSource> {
        let bus = self.clone();
        Some(crate::metrics::source(move || {
            let held = bus.records_in_memory();
            async move {
                vec![crate::metrics::Sample {
                    name: "shop_bus_records_in_memory",
                    help: "Records the in-process bus holds in memory: those some reader has not passed (the file keeps the rest).",
                    labels: vec![],
                    value: held as f64,
                }]
            }
        }))
    }
}

impl Shared {
    fn topic(&self, name: &str) -> Option<Arc<TopicLog>> {
        read(&self.topics).get(name).cloned()
    }
}

impl TopicLog {
    fn new(name: &str, partitions: u32, compacted: bool, partitioner: Partitioner) -> Self {
        TopicLog {
            name: Arc::from(name),
            compacted,
            partitioner,
            partitions: (0..partitions.max(1))
                .map(|_| PartitionLog {
                    state: Mutex::default(),
                    end: watch::channel(0).0,
                })
                .collect(),
        }
    }
}
