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
//! `acks=all`. On open, the log and the committed offsets are loaded back.
//! Records that every group reading their topic has consumed are trimmed.

use shop_shared::sync::{lock, read, write};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use shop_shared::time::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot, watch};

use super::consumer::{Consumer, Delivery};
use super::{
    Bus, BusError, Handler, Mode, OutgoingRecord, Partitioner, Record, Subscription,
    SubscriptionHandle, TopicSpec,
};
use crate::db::batch::{self, Placeholders};
use crate::db::checkpoint;
use crate::metrics::Metrics;
use crate::tasks::{Shutdown, Spawner};

/// How often fully consumed records are trimmed from the log. Appends wait
/// while a trim runs, and a trim's time grows with the records it removes:
/// at 200 orders/s a trim every second held them up for 8-20 ms, and the
/// orders caught behind it were the slowest hundredth; a trim every 100 ms
/// is a tenth of that (docs/performance.md).
const TRIM_EVERY: Duration = Duration::from_millis(100);
/// Most write operations one group commit takes.
const MAX_OPS_PER_COMMIT: usize = 2048;

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
}

struct Group {
    name: String,
    durable: bool,
    topics: Vec<String>,
    members: Mutex<Vec<Arc<dyn Handler>>>,
    members_changed: watch::Sender<usize>,
    /// Next offset to deliver per (topic, partition), for idleness checks.
    positions: Mutex<HashMap<(String, u32), u64>>,
}

/// A topic to create: name, partitions, compacted, and whom to tell.
type TopicCreation = (String, u32, bool, oneshot::Sender<Result<(), BusError>>);

enum WriteOp {
    Append {
        records: Vec<OutgoingRecord>,
        done: oneshot::Sender<Result<(), BusError>>,
    },
    Commit {
        group: String,
        topic: String,
        partition: u32,
        next_offset: u64,
    },
    CreateTopic {
        name: String,
        partitions: u32,
        compacted: bool,
        done: oneshot::Sender<Result<(), BusError>>,
    },
}

impl MemoryBus {
    /// Opens (or creates) the durable log at `path`. New topics get
    /// `partitions` partitions.
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
        let shared = store.load().await?;
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

    /// Every record currently kept on `topic`, in partition then offset
    /// order (for tests and tools).
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

    fn group(&self, subscription: &Subscription) -> Result<(Arc<Group>, bool), BusError> {
        let mut groups = lock(&self.inner.shared.groups);
        let name = match subscription.mode {
            Mode::Group => subscription.group.clone(),
            Mode::Broadcast => format!("{}-{}", subscription.group, uuid::Uuid::new_v4().simple()),
        };
        if let Some(existing) = groups.get(&name) {
            if existing.topics != subscription.topics {
                return Err(BusError::Broker(format!(
                    "group `{name}` already reads {:?}; a group reads one set of topics",
                    existing.topics
                )));
            }
            return Ok((existing.clone(), false));
        }
        let group = Arc::new(Group {
            name: name.clone(),
            durable: subscription.mode == Mode::Group,
            topics: subscription.topics.clone(),
            members: Mutex::default(),
            members_changed: watch::channel(0).0,
            positions: Mutex::default(),
        });
        groups.insert(name, group.clone());
        Ok((group, true))
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        for spec in topics {
            if self.inner.shared.topic(&spec.name).is_some() {
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
        let mut topics = Vec::new();
        for name in &subscription.topics {
            topics.push(
                self.inner
                    .shared
                    .topic(name)
                    .ok_or_else(|| BusError::UnknownTopic(name.clone()))?,
            );
        }
        if subscription.mode == Mode::Group {
            self.ensure_topics(&[TopicSpec::dead_letter(&subscription.group)])
                .await?;
        }
        let (group, created) = self.group(&subscription)?;
        {
            let mut members = lock(&group.members);
            members.push(handler);
            group.members_changed.send_replace(members.len());
        }
        let partitions: usize = topics.iter().map(|topic| topic.partitions.len()).sum();
        let (caught_up_tx, caught_up_rx) = watch::channel(partitions == 0);
        if !created {
            // The group's partition tasks already run; this member joins them.
            caught_up_tx.send_replace(true);
            return Ok(SubscriptionHandle::new(caught_up_rx));
        }
        if group.durable {
            let mut readers = lock(&self.inner.shared.readers);
            for topic in &topics {
                readers
                    .entry(topic.name.to_string())
                    .or_default()
                    .insert(group.name.clone());
            }
        }
        let mut cursors = Vec::with_capacity(partitions);
        for topic in topics {
            for partition in 0..topic.partitions.len() as u32 {
                let log = &topic.partitions[partition as usize];
                let target = *log.end.borrow();
                let start = {
                    let state = lock(&log.state);
                    let earliest = state.records.keys().next().copied().unwrap_or(target);
                    let committed = group.durable.then(|| {
                        lock(&self.inner.shared.committed)
                            .get(&(group.name.clone(), topic.name.to_string(), partition))
                            .copied()
                    });
                    committed
                        .flatten()
                        .unwrap_or(earliest)
                        .max(earliest.min(target))
                };
                lock(&group.positions).insert((topic.name.to_string(), partition), start);
                cursors.push(Cursor {
                    topic: topic.clone(),
                    partition,
                    position: start,
                    target,
                });
            }
        }
        let reader = GroupReader {
            bus: self.clone(),
            group: group.clone(),
            cursors,
            next: 0,
            max_batch: subscription.max_batch.max(1),
            caught_up: caught_up_tx,
            shutdown: self.inner.spawner.shutdown().clone(),
        };
        self.inner
            .spawner
            .spawn(format!("consumer {}", group.name), reader.run());
        Ok(SubscriptionHandle::new(caught_up_rx))
    }

    async fn is_healthy(&self) -> bool {
        !self.inner.writer.is_closed()
    }
}

impl Shared {
    fn topic(&self, name: &str) -> Option<Arc<TopicLog>> {
        read(&self.topics).get(name).cloned()
    }
}

/// Where a group stands in one partition.
struct Cursor {
    topic: Arc<TopicLog>,
    partition: u32,
    /// The next offset to deliver.
    position: u64,
    /// The log end when the group subscribed: reaching it means caught up.
    target: u64,
}

/// Reads every partition of a group's topics, as Kafka's consumer polls
/// all its assigned partitions: each round gathers what is new everywhere
/// into one batch per member (the records of a partition in order), so a
/// busy service handles many records per transaction. Partition `p` of a
/// topic belongs to member `p % members`.
struct GroupReader {
    bus: MemoryBus,
    group: Arc<Group>,
    cursors: Vec<Cursor>,
    /// The cursor the next round starts from, so no partition is favoured.
    next: usize,
    max_batch: usize,
    caught_up: watch::Sender<bool>,
    shutdown: Shutdown,
}

/// The records of one member's batch, by cursor.
type Portion = Vec<(usize, Vec<Arc<Record>>)>;

impl GroupReader {
    async fn run(mut self) -> anyhow::Result<()> {
        let mut appended = self.bus.inner.shared.appended.subscribe();
        let mut members_changed = self.group.members_changed.subscribe();
        loop {
            // Seen before gathering, so an append during the round wakes
            // the next wait.
            appended.borrow_and_update();
            if !*self.caught_up.borrow()
                && self
                    .cursors
                    .iter()
                    .all(|cursor| cursor.position >= cursor.target)
            {
                self.caught_up.send_replace(true);
            }
            let members = lock(&self.group.members).clone();
            if members.is_empty() {
                tokio::select! {
                    _ = members_changed.changed() => continue,
                    _ = self.shutdown.triggered() => return Ok(()),
                }
            }
            let portions = self.gather(members.len());
            if portions.iter().all(Vec::is_empty) {
                tokio::select! {
                    changed = appended.changed() => if changed.is_err() { return Ok(()) },
                    _ = members_changed.changed() => {}
                    _ = self.shutdown.triggered() => return Ok(()),
                }
                continue;
            }
            let deliveries = portions
                .into_iter()
                .zip(members.iter())
                .filter(|(portion, _)| !portion.is_empty())
                .map(|(portion, handler)| self.deliver(portion, handler.as_ref()));
            for (portion, delivery) in futures_util::future::join_all(deliveries).await {
                if delivery == Delivery::Stopped {
                    return Ok(());
                }
                for (index, records) in portion {
                    self.bus.inner.metrics.consumed(
                        &self.group.name,
                        &self.cursors[index].topic.name,
                        records.len() as u64,
                    );
                    if let Some(last) = records.last() {
                        self.cursors[index].position = last.offset + 1;
                    }
                    self.advanced(index);
                }
            }
        }
    }

    /// What is new in every partition, up to `max_batch` records in all,
    /// split by the member each partition belongs to.
    fn gather(&mut self, members: usize) -> Vec<Portion> {
        let mut portions: Vec<Portion> = (0..members).map(|_| Vec::new()).collect();
        let count = self.cursors.len();
        let mut taken = 0;
        for step in 0..count {
            if taken >= self.max_batch {
                break;
            }
            let index = (self.next + step) % count;
            let cursor = &mut self.cursors[index];
            let log = &cursor.topic.partitions[cursor.partition as usize];
            // The end is read before the records: the writer inserts records
            // before it moves the end, so every offset below this end that
            // the map lacks is gone for good. Read after, it could include
            // records appended since the map was looked at, and skip them.
            let end = *log.end.borrow();
            let records: Vec<Arc<Record>> = {
                let state = lock(&log.state);
                state
                    .records
                    .range(cursor.position..)
                    .take(self.max_batch - taken)
                    .map(|(_, record)| record.clone())
                    .collect()
            };
            if records.is_empty() {
                // Offsets below the end that are gone were compacted or
                // trimmed away: skip them.
                if cursor.position < end {
                    cursor.position = end;
                    self.advanced(index);
                }
                continue;
            }
            taken += records.len();
            let member = self.cursors[index].partition as usize % members;
            portions[member].push((index, records));
        }
        self.next = (self.next + 1) % count.max(1);
        portions
    }

    async fn deliver(&self, portion: Portion, handler: &dyn Handler) -> (Portion, Delivery) {
        let records: Vec<Arc<Record>> = portion
            .iter()
            .flat_map(|(_, records)| records.iter().cloned())
            .collect();
        let consumer = Consumer {
            group: &self.group.name,
            handler,
            bus: &self.bus,
            shutdown: &self.shutdown,
            dead_letters: self.group.durable,
            metrics: &self.bus.inner.metrics,
        };
        let delivery = consumer.deliver(&records).await;
        (portion, delivery)
    }

    /// Records cursor `index`'s new position, and commits it for a durable
    /// group.
    fn advanced(&self, index: usize) {
        let cursor = &self.cursors[index];
        let topic = cursor.topic.name.to_string();
        lock(&self.group.positions).insert((topic.clone(), cursor.partition), cursor.position);
        if !self.group.durable {
            return;
        }
        let key = (self.group.name.clone(), topic.clone(), cursor.partition);
        lock(&self.bus.inner.shared.committed).insert(key, cursor.position);
        let _ = self.bus.inner.writer.send(WriteOp::Commit {
            group: self.group.name.clone(),
            topic,
            partition: cursor.partition,
            next_offset: cursor.position,
        });
    }
}

/// The only task that writes the log: appends, offset commits and topic
/// creation, in group commits.
///
/// Appends are written before anyone learns of them. Offset commits are
/// kept in memory and written with the next trim (every [`TRIM_EVERY`])
/// and at shutdown: after a crash, a group may get the records of that
/// last moment again, which idempotent consumers ignore, as with Kafka's
/// periodic offset commits. A trim writes the offsets before removing any
/// record they cover.
struct Writer {
    shared: Arc<Shared>,
    store: Option<LogStore>,
    ops: mpsc::UnboundedReceiver<WriteOp>,
    shutdown: Shutdown,
    /// Committed offsets not yet written: (group, topic, partition).
    unsaved: HashMap<(String, String, u32), u64>,
}

/// A record placed in the log but not yet visible.
struct Placed {
    topic: Arc<TopicLog>,
    record: Arc<Record>,
    /// Compacted topics: the older record of the same key this supersedes.
    replaces: Option<u64>,
}

impl Writer {
    async fn run(mut self) -> anyhow::Result<()> {
        let mut trim = tokio::time::interval(TRIM_EVERY);
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                op = self.ops.recv() => match op {
                    Some(op) => {
                        let mut ops = vec![op];
                        while ops.len() < MAX_OPS_PER_COMMIT {
                            match self.ops.try_recv() {
                                Ok(op) => ops.push(op),
                                Err(_) => break,
                            }
                        }
                        self.apply(ops).await;
                    }
                    None => {
                        self.save_offsets().await;
                        return Ok(());
                    }
                },
                _ = trim.tick() => self.trim().await,
                _ = self.shutdown.triggered() => {
                    // Keep the commits that were already sent.
                    let mut ops = Vec::new();
                    while let Ok(op) = self.ops.try_recv() {
                        ops.push(op);
                    }
                    self.apply(ops).await;
                    self.save_offsets().await;
                    return Ok(());
                }
            }
        }
    }

    async fn apply(&mut self, ops: Vec<WriteOp>) {
        let mut placed: Vec<Placed> = Vec::new();
        let mut appends: Vec<oneshot::Sender<Result<(), BusError>>> = Vec::new();
        let mut creations = Vec::new();
        let mut next: HashMap<(Arc<str>, u32), u64> = HashMap::new();
        let mut newest: HashMap<(Arc<str>, u32, String), u64> = HashMap::new();
        let now = Timestamp::now();

        for op in ops {
            match op {
                WriteOp::Append { records, done } => {
                    let mut resolved = Vec::with_capacity(records.len());
                    let mut unknown = None;
                    for record in records {
                        match self.shared.topic(&record.topic) {
                            Some(topic) => resolved.push((topic, record)),
                            None => {
                                unknown = Some(record.topic);
                                break;
                            }
                        }
                    }
                    if let Some(topic) = unknown {
                        let _ = done.send(Err(BusError::UnknownTopic(topic)));
                        continue;
                    }
                    for (topic, record) in resolved {
                        let partition = topic
                            .partitioner
                            .partition(&record.key, topic.partitions.len() as u32);
                        let log = &topic.partitions[partition as usize];
                        let slot = next
                            .entry((topic.name.clone(), partition))
                            .or_insert_with(|| *log.end.borrow());
                        let offset = *slot;
                        *slot += 1;
                        let replaces = if topic.compacted {
                            let key = (topic.name.clone(), partition, record.key.clone());
                            newest
                                .insert(key, offset)
                                .or_else(|| lock(&log.state).latest.get(&record.key).copied())
                        } else {
                            None
                        };
                        placed.push(Placed {
                            record: Arc::new(Record {
                                topic: topic.name.clone(),
                                partition,
                                offset,
                                key: record.key,
                                headers: record.headers,
                                payload: record.payload,
                                timestamp: now,
                            }),
                            topic,
                            replaces,
                        });
                    }
                    appends.push(done);
                }
                WriteOp::Commit {
                    group,
                    topic,
                    partition,
                    next_offset,
                } => {
                    let slot = self.unsaved.entry((group, topic, partition)).or_insert(0);
                    *slot = (*slot).max(next_offset);
                }
                WriteOp::CreateTopic {
                    name,
                    partitions,
                    compacted,
                    done,
                } => creations.push((name, partitions, compacted, done)),
            }
        }

        if let Some(store) = &mut self.store
            && let Err(error) = store.write(&placed, &creations).await
        {
            tracing::error!(%error, "cannot write the bus log");
            let message = error.to_string();
            for done in appends {
                let _ = done.send(Err(BusError::Storage(message.clone())));
            }
            for (.., done) in creations {
                let _ = done.send(Err(BusError::Storage(message.clone())));
            }
            return;
        }

        for (name, partitions, compacted, done) in creations {
            let mut topics = write(&self.shared.topics);
            topics.entry(name.clone()).or_insert_with(|| {
                Arc::new(TopicLog::new(
                    &name,
                    partitions,
                    compacted,
                    Partitioner::Murmur2,
                ))
            });
            let _ = done.send(Ok(()));
        }
        for item in &placed {
            let log = &item.topic.partitions[item.record.partition as usize];
            let mut state = lock(&log.state);
            if let Some(replaced) = item.replaces {
                state.superseded.insert(replaced);
            }
            if item.topic.compacted {
                state
                    .latest
                    .insert(item.record.key.clone(), item.record.offset);
            }
            state
                .records
                .insert(item.record.offset, item.record.clone());
        }
        let appended = !next.is_empty();
        for ((topic, partition), end) in next {
            if let Some(log) = self.shared.topic(&topic) {
                log.partitions[partition as usize].end.send_replace(end);
            }
        }
        if appended {
            self.shared.appended.send_modify(|count| *count += 1);
        }
        for done in appends {
            let _ = done.send(Ok(()));
        }
    }

    /// Drops records nobody needs any more: on plain topics, those every
    /// durable group reading the topic has committed and every live reader
    /// has passed (topics nobody reads durably are kept); on compacted
    /// topics, superseded records that every live reader has passed.
    async fn trim(&mut self) {
        let topics: Vec<Arc<TopicLog>> = read(&self.shared.topics).values().cloned().collect();
        let readers = lock(&self.shared.readers).clone();
        let committed = lock(&self.shared.committed).clone();
        let groups: Vec<Arc<Group>> = lock(&self.shared.groups).values().cloned().collect();
        let mut cuts = Vec::new();
        let mut compactions = Vec::new();
        for topic in &topics {
            for (index, log) in topic.partitions.iter().enumerate() {
                let partition = index as u32;
                if topic.compacted {
                    let passed = groups
                        .iter()
                        .filter_map(|group| {
                            lock(&group.positions)
                                .get(&(topic.name.to_string(), partition))
                                .copied()
                        })
                        .min()
                        .unwrap_or(u64::MAX);
                    let mut state = lock(&log.state);
                    let keep = state.superseded.split_off(&passed);
                    let dropped = std::mem::replace(&mut state.superseded, keep);
                    for offset in &dropped {
                        state.records.remove(offset);
                    }
                    if !dropped.is_empty() {
                        compactions.push((topic.name.clone(), partition, dropped));
                    }
                    continue;
                }
                let Some(durable) = readers.get(topic.name.as_ref()) else {
                    continue;
                };
                let committed_low = durable.iter().map(|group| {
                    committed
                        .get(&(group.clone(), topic.name.to_string(), partition))
                        .copied()
                        .unwrap_or(0)
                });
                let live_low = groups.iter().filter_map(|group| {
                    lock(&group.positions)
                        .get(&(topic.name.to_string(), partition))
                        .copied()
                });
                let low = committed_low.chain(live_low).min().unwrap_or(0);
                let mut state = lock(&log.state);
                if state
                    .records
                    .keys()
                    .next()
                    .is_some_and(|first| *first < low)
                {
                    state.records = state.records.split_off(&low);
                    cuts.push((topic.name.clone(), partition, low, *log.end.borrow()));
                }
            }
        }
        let Some(store) = &mut self.store else {
            return;
        };
        if cuts.is_empty() && compactions.is_empty() && self.unsaved.is_empty() {
            return;
        }
        match store.trim(&cuts, &compactions, &self.unsaved).await {
            Ok(()) => self.unsaved.clear(),
            Err(error) => tracing::warn!(%error, "cannot trim the bus log; will try again"),
        }
    }

    /// Writes the committed offsets kept in memory.
    async fn save_offsets(&mut self) {
        let Some(store) = &mut self.store else {
            return;
        };
        if self.unsaved.is_empty() {
            return;
        }
        match store.trim(&[], &[], &self.unsaved).await {
            Ok(()) => self.unsaved.clear(),
            Err(error) => tracing::warn!(%error, "cannot write committed offsets"),
        }
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

/// The SQLite file behind the log.
struct LogStore {
    connection: SqliteConnection,
    _checkpointer: checkpoint::Checkpointer,
}

impl LogStore {
    async fn migrate(&mut self) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS bus_topics (
                name TEXT PRIMARY KEY,
                partitions INTEGER NOT NULL,
                compacted INTEGER NOT NULL,
                partitioner TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS bus_records (
                topic TEXT NOT NULL,
                part INTEGER NOT NULL,
                record_offset INTEGER NOT NULL,
                record_key TEXT NOT NULL,
                headers TEXT NOT NULL,
                payload BLOB NOT NULL,
                created_at INTEGER NOT NULL,
                PRIMARY KEY (topic, part, record_offset)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS bus_log_end (
                topic TEXT NOT NULL,
                part INTEGER NOT NULL,
                next_offset INTEGER NOT NULL,
                PRIMARY KEY (topic, part)
            ) WITHOUT ROWID;
            CREATE TABLE IF NOT EXISTS bus_group_offsets (
                group_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                part INTEGER NOT NULL,
                next_offset INTEGER NOT NULL,
                PRIMARY KEY (group_id, topic, part)
            ) WITHOUT ROWID;",
        )
        .execute(&mut self.connection)
        .await?;
        // A log written before topics named their partitioner placed every
        // key with FNV-1a: its topics keep doing so.
        let has_partitioner: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pragma_table_info('bus_topics') WHERE name = 'partitioner'",
        )
        .fetch_one(&mut self.connection)
        .await?;
        if has_partitioner == 0 {
            sqlx::raw_sql(
                "ALTER TABLE bus_topics ADD COLUMN partitioner TEXT NOT NULL DEFAULT 'fnv1a'",
            )
            .execute(&mut self.connection)
            .await?;
        }
        Ok(())
    }

    async fn load(&mut self) -> anyhow::Result<Shared> {
        let shared = Shared::default();
        let topics = sqlx::query("SELECT name, partitions, compacted, partitioner FROM bus_topics")
            .fetch_all(&mut self.connection)
            .await?;
        {
            let mut map = write(&shared.topics);
            for row in topics {
                let name: String = row.try_get("name")?;
                let partitions: i64 = row.try_get("partitions")?;
                let compacted: i64 = row.try_get("compacted")?;
                let partitioner: String = row.try_get("partitioner")?;
                let partitioner = Partitioner::from_name(&partitioner).ok_or_else(|| {
                    anyhow::anyhow!(
                        "topic {name} of the bus log has an unknown partitioner {partitioner:?}"
                    )
                })?;
                map.insert(
                    name.clone(),
                    Arc::new(TopicLog::new(
                        &name,
                        partitions as u32,
                        compacted != 0,
                        partitioner,
                    )),
                );
            }
        }
        let ends = sqlx::query("SELECT topic, part, next_offset FROM bus_log_end")
            .fetch_all(&mut self.connection)
            .await?;
        for row in ends {
            let topic: String = row.try_get("topic")?;
            let part: i64 = row.try_get("part")?;
            let end: i64 = row.try_get("next_offset")?;
            if let Some(log) = shared.topic(&topic)
                && let Some(partition) = log.partitions.get(part as usize)
            {
                partition.end.send_replace(end as u64);
            }
        }
        let records = sqlx::query(
            "SELECT topic, part, record_offset, record_key, headers, payload, created_at
             FROM bus_records ORDER BY topic, part, record_offset",
        )
        .fetch_all(&mut self.connection)
        .await?;
        for row in records {
            let topic: String = row.try_get("topic")?;
            let Some(log) = shared.topic(&topic) else {
                continue;
            };
            let part: i64 = row.try_get("part")?;
            let Some(partition) = log.partitions.get(part as usize) else {
                continue;
            };
            let headers: String = row.try_get("headers")?;
            let offset: i64 = row.try_get("record_offset")?;
            let record = Record {
                topic: log.name.clone(),
                partition: part as u32,
                offset: offset as u64,
                key: row.try_get("record_key")?,
                headers: serde_json::from_str(&headers)?,
                payload: row.try_get("payload")?,
                timestamp: Timestamp::from_millis(row.try_get("created_at")?),
            };
            // The log ends after its newest record (bus_log_end holds the
            // end only of partitions trimmed empty).
            partition.end.send_if_modified(|end| {
                let after = record.offset + 1;
                (*end < after).then(|| *end = after).is_some()
            });
            let mut state = lock(&partition.state);
            if log.compacted
                && let Some(older) = state.latest.insert(record.key.clone(), record.offset)
            {
                state.superseded.insert(older);
            }
            state.records.insert(record.offset, Arc::new(record));
        }
        let offsets =
            sqlx::query("SELECT group_id, topic, part, next_offset FROM bus_group_offsets")
                .fetch_all(&mut self.connection)
                .await?;
        for row in offsets {
            let group: String = row.try_get("group_id")?;
            let topic: String = row.try_get("topic")?;
            let part: i64 = row.try_get("part")?;
            let next: i64 = row.try_get("next_offset")?;
            lock(&shared.readers)
                .entry(topic.clone())
                .or_default()
                .insert(group.clone());
            lock(&shared.committed).insert((group, topic, part as u32), next as u64);
        }
        Ok(shared)
    }

    /// Writes the records of a group commit. Up to 64 records go in one
    /// statement, which commits by itself; more go in one transaction,
    /// which costs two more round trips to SQLite's thread but writes each
    /// page once. Topic creations commit on their own before: nobody learns
    /// of a topic or a record before all of them are written, so a crash in
    /// between leaves only what its publisher will send again, which
    /// at-least-once delivery allows. The end of each
    /// partition is its newest record, so it is written only when trimming
    /// removes every record.
    async fn write(
        &mut self,
        placed: &[Placed],
        creations: &[TopicCreation],
    ) -> Result<(), sqlx::Error> {
        for (name, partitions, compacted, _) in creations {
            sqlx::query(
                "INSERT INTO bus_topics (name, partitions, compacted, partitioner)
                 VALUES (?, ?, ?, ?)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(i64::from(*partitions))
            .bind(i64::from(*compacted))
            .bind(Partitioner::Murmur2.name())
            .execute(&mut self.connection)
            .await?;
        }
        let chunks = batch::chunks(placed.len());
        if chunks.len() <= 1 {
            return self.insert(placed, chunks).await;
        }
        // Statements that commit one by one would each write the pages they
        // share (the newest page of a partition) to the log again.
        sqlx::query("BEGIN").execute(&mut self.connection).await?;
        let mut written = self.insert(placed, chunks).await;
        if written.is_ok() {
            written = sqlx::query("COMMIT")
                .execute(&mut self.connection)
                .await
                .map(drop);
        }
        if written.is_err() {
            // Leave no transaction open for the next write (after SQLite
            // rolled back by itself, this only finds none).
            let _ = sqlx::query("ROLLBACK").execute(&mut self.connection).await;
        }
        written
    }

    /// Inserts `placed`, one multi-row statement per chunk.
    async fn insert(
        &mut self,
        placed: &[Placed],
        chunks: Vec<std::ops::Range<usize>>,
    ) -> Result<(), sqlx::Error> {
        for range in chunks {
            let sql = format!(
                "INSERT INTO bus_records
                 (topic, part, record_offset, record_key, headers, payload, created_at)
                 VALUES {}",
                batch::values(range.len(), 7, Placeholders::Question)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for item in &placed[range] {
                let record = &item.record;
                let headers =
                    serde_json::to_string(&record.headers).unwrap_or_else(|_| "[]".into());
                insert = insert
                    .bind(record.topic.as_ref())
                    .bind(i64::from(record.partition))
                    .bind(record.offset as i64)
                    .bind(&record.key)
                    .bind(headers)
                    .bind(&record.payload)
                    .bind(record.timestamp.as_millis());
            }
            insert.execute(&mut self.connection).await?;
        }
        Ok(())
    }

    /// Writes committed offsets, then removes the records `cuts` and
    /// `compactions` name, in one transaction. The statements go to
    /// SQLite's thread as one script: a statement each would hold up the
    /// appends queued behind the trim for a round trip per partition.
    async fn trim(
        &mut self,
        cuts: &[(Arc<str>, u32, u64, u64)],
        compactions: &[(Arc<str>, u32, BTreeSet<u64>)],
        commits: &HashMap<(String, String, u32), u64>,
    ) -> Result<(), sqlx::Error> {
        let script = trim_script(cuts, compactions, commits);
        let mut tx = self.connection.begin().await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(script))
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }
}

/// The statements of a trim, with every value written out: numbers, and
/// topic and group names quoted as SQL strings.
fn trim_script(
    cuts: &[(Arc<str>, u32, u64, u64)],
    compactions: &[(Arc<str>, u32, BTreeSet<u64>)],
    commits: &HashMap<(String, String, u32), u64>,
) -> String {
    use std::fmt::Write;
    let mut script = String::new();
    if !commits.is_empty() {
        let rows: Vec<String> = commits
            .iter()
            .map(|((group, topic, partition), next)| {
                format!("({}, {}, {partition}, {next})", text(group), text(topic))
            })
            .collect();
        let _ = write!(
            script,
            "INSERT INTO bus_group_offsets (group_id, topic, part, next_offset) VALUES {}
             ON CONFLICT (group_id, topic, part)
             DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset);\n",
            rows.join(", ")
        );
    }
    if !cuts.is_empty() {
        // The newest record may go too: remember where each log ends.
        let rows: Vec<String> = cuts
            .iter()
            .map(|(topic, partition, _, end)| format!("({}, {partition}, {end})", text(topic)))
            .collect();
        let _ = write!(
            script,
            "INSERT INTO bus_log_end (topic, part, next_offset) VALUES {}
             ON CONFLICT (topic, part) DO UPDATE SET next_offset = excluded.next_offset;\n",
            rows.join(", ")
        );
    }
    for (topic, partition, low, _) in cuts {
        let _ = writeln!(
            script,
            "DELETE FROM bus_records WHERE topic = {} AND part = {partition} AND record_offset < {low};",
            text(topic)
        );
    }
    for (topic, partition, offsets) in compactions {
        let list: Vec<String> = offsets.iter().map(u64::to_string).collect();
        let _ = writeln!(
            script,
            "DELETE FROM bus_records WHERE topic = {} AND part = {partition} AND record_offset IN ({});",
            text(topic),
            list.join(", ")
        );
    }
    script
}

/// `value` as an SQL string literal.
fn text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;
    use crate::bus::HandlerError;
    use crate::tasks::Supervisor;

    /// Collects what it is given; fails the first `failures` batches.
    #[derive(Default)]
    struct Collect {
        seen: Mutex<Vec<(String, String)>>,
        failures: AtomicU32,
        calls: AtomicU32,
    }

    #[async_trait]
    impl Handler for Collect {
        async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                    left.checked_sub(1)
                })
                .is_ok()
            {
                return Err(HandlerError::Transient(anyhow::anyhow!("database away")));
            }
            let mut seen = lock(&self.seen);
            for record in batch {
                seen.push((
                    record.key.clone(),
                    String::from_utf8_lossy(&record.payload).into_owned(),
                ));
            }
            Ok(())
        }
    }

    impl Collect {
        fn seen(&self) -> Vec<(String, String)> {
            lock(&self.seen).clone()
        }

        async fn wait_for(&self, count: usize) -> Vec<(String, String)> {
            for _ in 0..500 {
                if lock(&self.seen).len() >= count {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            self.seen()
        }
    }

    fn record(topic: &str, key: &str, payload: &str) -> OutgoingRecord {
        OutgoingRecord {
            topic: topic.into(),
            key: key.into(),
            headers: vec![],
            payload: payload.as_bytes().to_vec(),
        }
    }

    /// Opens the durable log at `path` under a supervisor of its own.
    async fn open(path: &Path, partitions: u32) -> (MemoryBus, Supervisor) {
        let (supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::open(path, partitions, Metrics::default(), &spawner)
            .await
            .expect("the bus log opens");
        (bus, supervisor)
    }

    fn topic(name: &str, compacted: bool) -> TopicSpec {
        TopicSpec {
            name: name.into(),
            compacted,
        }
    }

    /// Stops every task of `supervisor` and waits for them.
    async fn stop(supervisor: Supervisor) {
        supervisor.trigger().trigger();
        supervisor
            .run(Duration::from_secs(5))
            .await
            .expect("clean stop");
    }

    /// A record's topic, key and payload.
    type Arrival = (String, String, Vec<u8>);

    /// Keeps the partition each key's records arrived on.
    #[derive(Default)]
    struct Placement {
        partitions: Mutex<HashMap<Arrival, u32>>,
    }

    #[async_trait]
    impl Handler for Placement {
        async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
            let mut partitions = lock(&self.partitions);
            for record in batch {
                partitions.insert(
                    (
                        record.topic.to_string(),
                        record.key.clone(),
                        record.payload.clone(),
                    ),
                    record.partition,
                );
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn new_topics_place_keys_as_kafka_does_and_a_log_from_before_keeps_its_placement() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("bus.sqlite");
        // A log as the bus wrote it before topics named their partitioner:
        // topic `old` with four partitions.
        {
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true);
            let mut connection = SqliteConnection::connect_with(&options)
                .await
                .expect("old log");
            sqlx::raw_sql(
                "CREATE TABLE bus_topics (
                    name TEXT PRIMARY KEY,
                    partitions INTEGER NOT NULL,
                    compacted INTEGER NOT NULL
                );
                INSERT INTO bus_topics VALUES ('old', 4, 0);",
            )
            .execute(&mut connection)
            .await
            .expect("old schema");
            connection.close().await.expect("closed");
        }
        let (bus, supervisor) = open(&path, 4).await;
        bus.ensure_topics(&[topic("new", false)])
            .await
            .expect("topic");
        let placement = Arc::new(Placement::default());
        bus.subscribe(Subscription::group("g", &["old", "new"]), placement.clone())
            .await
            .expect("subscribed");
        let keys: Vec<String> = (0..40).map(|n| format!("order-{n}")).collect();
        let records = keys
            .iter()
            .flat_map(|key| [record("old", key, "x"), record("new", key, "x")])
            .collect();
        bus.publish(records).await.expect("published");
        for _ in 0..500 {
            if lock(&placement.partitions).len() == 80 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let placed = lock(&placement.partitions).clone();
        assert_eq!(placed.len(), 80, "every record arrived");
        let mut differ = 0;
        for key in &keys {
            let new = placed[&("new".to_owned(), key.clone(), b"x".to_vec())];
            let old = placed[&("old".to_owned(), key.clone(), b"x".to_vec())];
            assert_eq!(new, crate::bus::partition_for(key, 4), "{key} on `new`");
            assert_eq!(old, Partitioner::Fnv1a.partition(key, 4), "{key} on `old`");
            differ += usize::from(new != old);
        }
        assert!(differ > 0, "the two placements are told apart");
        stop(supervisor).await;

        // Reopened, each topic still places keys as before.
        let (bus, supervisor) = open(&path, 4).await;
        let placement = Arc::new(Placement::default());
        bus.subscribe(Subscription::group("h", &["old", "new"]), placement.clone())
            .await
            .expect("subscribed");
        bus.publish(vec![
            record("old", "order-7", "y"),
            record("new", "order-7", "y"),
        ])
        .await
        .expect("published");
        for _ in 0..500 {
            if lock(&placement.partitions).len() == 82 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let placed = lock(&placement.partitions).clone();
        let again =
            |topic: &str| placed.get(&(topic.to_owned(), "order-7".to_owned(), b"y".to_vec()));
        assert_eq!(
            again("old"),
            Some(&Partitioner::Fnv1a.partition("order-7", 4))
        );
        assert_eq!(again("new"), Some(&crate::bus::partition_for("order-7", 4)));
        stop(supervisor).await;
    }

    #[tokio::test]
    async fn each_group_sees_every_record_and_records_of_a_key_keep_their_order() {
        let (_supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::volatile(4, Metrics::default(), &spawner);
        bus.ensure_topics(&[topic("t", false)])
            .await
            .expect("topic");
        let (first, second) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
        bus.subscribe(Subscription::group("g1", &["t"]), first.clone())
            .await
            .expect("g1");
        bus.subscribe(Subscription::group("g2", &["t"]), second.clone())
            .await
            .expect("g2");
        for round in 0..20 {
            let batch = (0..10)
                .map(|key| record("t", &format!("k{key}"), &round.to_string()))
                .collect();
            bus.publish(batch).await.expect("published");
        }
        for group in [&first, &second] {
            let seen = group.wait_for(200).await;
            assert_eq!(seen.len(), 200, "every record, once");
            for key in 0..10 {
                let order: Vec<u32> = seen
                    .iter()
                    .filter(|(k, _)| *k == format!("k{key}"))
                    .map(|(_, round)| round.parse().expect("number"))
                    .collect();
                assert_eq!(
                    order,
                    (0..20).collect::<Vec<_>>(),
                    "key k{key} in publish order"
                );
            }
        }
    }

    #[tokio::test]
    async fn members_of_one_group_share_the_partitions() {
        let (_supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::volatile(4, Metrics::default(), &spawner);
        bus.ensure_topics(&[topic("t", false)])
            .await
            .expect("topic");
        let (a, b) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
        bus.subscribe(Subscription::group("g", &["t"]), a.clone())
            .await
            .expect("a");
        bus.subscribe(Subscription::group("g", &["t"]), b.clone())
            .await
            .expect("b");
        let batch = (0..100)
            .map(|n| record("t", &format!("key-{n}"), &n.to_string()))
            .collect();
        bus.publish(batch).await.expect("published");
        for _ in 0..500 {
            if a.seen().len() + b.seen().len() >= 100 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (a, b) = (a.seen(), b.seen());
        assert_eq!(a.len() + b.len(), 100, "each record went to one member");
        assert!(!a.is_empty() && !b.is_empty(), "both members got work");
        let a_keys: HashSet<_> = a.iter().map(|(key, _)| key).collect();
        assert!(
            b.iter().all(|(key, _)| !a_keys.contains(key)),
            "a key belongs to one member"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_is_delivered_again_until_it_succeeds() {
        let (_supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::volatile(1, Metrics::default(), &spawner);
        bus.ensure_topics(&[topic("t", false)])
            .await
            .expect("topic");
        let handler = Arc::new(Collect::default());
        handler.failures.store(3, Ordering::SeqCst);
        bus.subscribe(Subscription::group("g", &["t"]), handler.clone())
            .await
            .expect("g");
        bus.publish(vec![record("t", "k", "only")])
            .await
            .expect("published");
        let seen = handler.wait_for(1).await;
        assert_eq!(seen, vec![("k".to_owned(), "only".to_owned())]);
        assert_eq!(
            handler.calls.load(Ordering::SeqCst),
            4,
            "three failures, then success"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_reading_while_publishers_append_misses_no_record() {
        let (supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::volatile(4, Metrics::default(), &spawner);
        // Three groups reading three topics at once: three readers racing
        // the writer.
        let topics = ["t0", "t1", "t2"];
        let mut handlers = Vec::new();
        for name in topics {
            bus.ensure_topics(&[topic(name, false)])
                .await
                .expect("topic");
            let handler = Arc::new(Collect::default());
            bus.subscribe(
                Subscription::group(&format!("g-{name}"), &[name]),
                handler.clone(),
            )
            .await
            .expect("group");
            handlers.push(handler);
        }
        // Busy threads beside the runtime's, so the reader is preempted at
        // every point of a round, as on a loaded machine.
        let spinning = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let spinners: Vec<_> = (0..4)
            .map(|_| {
                let spinning = spinning.clone();
                std::thread::spawn(move || {
                    while spinning.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        const PUBLISHERS: usize = 8;
        const EACH: usize = 3_000;
        let publishers = (0..PUBLISHERS).map(|publisher| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for n in 0..EACH {
                    let key = format!("{publisher}-{n}");
                    let records = topics.iter().map(|name| record(name, &key, "x")).collect();
                    bus.publish(records).await.expect("published");
                }
            })
        });
        for publisher in futures_util::future::join_all(publishers).await {
            publisher.expect("publisher");
        }
        let total = PUBLISHERS * EACH;
        for _ in 0..1_000 {
            if handlers.iter().all(|handler| handler.seen().len() >= total) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        spinning.store(false, Ordering::Relaxed);
        for spinner in spinners {
            spinner.join().expect("spinner");
        }
        for (name, handler) in topics.iter().zip(&handlers) {
            let keys: HashSet<String> = handler.seen().into_iter().map(|(key, _)| key).collect();
            assert_eq!(
                keys.len(),
                total,
                "every record published on {name} is delivered"
            );
        }
        drop(bus);
        stop(supervisor).await;
    }

    #[tokio::test]
    async fn the_log_and_committed_offsets_survive_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("bus.sqlite");

        let (bus, supervisor) = open(&path, 2).await;
        bus.ensure_topics(&[topic("t", false)])
            .await
            .expect("topic");
        let batch = (0..10)
            .map(|n| record("t", &format!("k{n}"), &n.to_string()))
            .collect();
        bus.publish(batch).await.expect("published");
        drop(bus);
        stop(supervisor).await;

        // Nobody had read them: all ten are still there after a restart.
        let (bus, supervisor) = open(&path, 2).await;
        let handler = Arc::new(Collect::default());
        // A name that needs quoting in SQL.
        let group = "o'brien";
        bus.subscribe(Subscription::group(group, &["t"]), handler.clone())
            .await
            .expect("g");
        assert_eq!(handler.wait_for(10).await.len(), 10);
        // Long enough for a trim to write the offsets and drop the records.
        tokio::time::sleep(TRIM_EVERY + Duration::from_millis(300)).await;
        assert!(bus.records("t").is_empty(), "consumed records are trimmed");
        drop(bus);
        stop(supervisor).await;

        // The group committed them: after another restart it reads only
        // what is new, and the trimmed log goes on from where it ended.
        let (bus, supervisor) = open(&path, 2).await;
        bus.publish(vec![record("t", "k1", "new")])
            .await
            .expect("published");
        let kept = bus.records("t");
        assert_eq!(kept.len(), 1);
        assert!(kept[0].offset > 0, "offsets are never reused");
        let handler = Arc::new(Collect::default());
        bus.subscribe(Subscription::group(group, &["t"]), handler.clone())
            .await
            .expect("g");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(handler.seen(), vec![("k1".to_owned(), "new".to_owned())]);
        drop(bus);
        stop(supervisor).await;
    }

    #[tokio::test]
    async fn a_group_commit_of_many_statements_survives_a_restart_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("bus.sqlite");
        let (bus, supervisor) = open(&path, 3).await;
        bus.ensure_topics(&[topic("t", false)])
            .await
            .expect("topic");
        // 300 records: five multi-row statements in one transaction.
        let batch = (0..300)
            .map(|n| record("t", &format!("k{}", n % 7), &n.to_string()))
            .collect();
        bus.publish(batch).await.expect("published");
        drop(bus);
        stop(supervisor).await;

        let (bus, supervisor) = open(&path, 3).await;
        let kept = bus.records("t");
        assert_eq!(kept.len(), 300);
        let number = |record: &Arc<Record>| -> u32 {
            String::from_utf8_lossy(&record.payload)
                .parse()
                .expect("number")
        };
        // Each key's records are still in the order they were published.
        for key in 0..7 {
            let of_key: Vec<u32> = kept
                .iter()
                .filter(|record| record.key == format!("k{key}"))
                .map(number)
                .collect();
            assert!(of_key.windows(2).all(|pair| pair[0] < pair[1]));
        }
        let mut payloads: Vec<u32> = kept.iter().map(number).collect();
        payloads.sort_unstable();
        assert_eq!(payloads, (0..300).collect::<Vec<u32>>());
        drop(bus);
        stop(supervisor).await;
    }

    #[tokio::test]
    async fn compacted_topics_keep_the_newest_record_per_key_but_live_readers_see_all() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("bus.sqlite");
        let (bus, supervisor) = open(&path, 1).await;
        bus.ensure_topics(&[topic("state", true)])
            .await
            .expect("topic");
        let live = Arc::new(Collect::default());
        bus.subscribe(Subscription::broadcast("live", &["state"]), live.clone())
            .await
            .expect("live");
        for (key, value) in [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3")] {
            bus.publish(vec![record("state", key, value)])
                .await
                .expect("published");
        }
        assert_eq!(
            live.wait_for(4).await.len(),
            4,
            "a live reader sees every change"
        );
        tokio::time::sleep(TRIM_EVERY + Duration::from_millis(300)).await;
        let late = Arc::new(Collect::default());
        bus.subscribe(Subscription::broadcast("late", &["state"]), late.clone())
            .await
            .expect("late");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut newest = late.seen();
        newest.sort();
        assert_eq!(
            newest,
            vec![("a".into(), "3".into()), ("b".into(), "1".into())]
        );
        drop(bus);
        stop(supervisor).await;

        let (bus, supervisor) = open(&path, 1).await;
        let reopened = Arc::new(Collect::default());
        bus.subscribe(
            Subscription::broadcast("again", &["state"]),
            reopened.clone(),
        )
        .await
        .expect("again");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(reopened.seen().len(), 2, "compaction is durable");
        drop(bus);
        stop(supervisor).await;
    }

    #[tokio::test]
    async fn publishing_to_an_unknown_topic_is_refused() {
        let (_supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::volatile(1, Metrics::default(), &spawner);
        let refused = bus.publish(vec![record("nope", "k", "v")]).await;
        assert!(matches!(refused, Err(BusError::UnknownTopic(name)) if name == "nope"));
    }
}
