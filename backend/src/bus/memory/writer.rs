//! The only writer of the in-process bus's log: publishing, offset
//! commits and topic creation, in group commits, and trimming what every
//! reader has consumed.

use shop_shared::sync::{lock, read, write};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shop_shared::time::Timestamp;
use tokio::sync::{mpsc, oneshot};

use super::reader::Group;
use super::store::LogStore;
use super::{Shared, TopicLog};
use crate::bus::{BusError, OutgoingRecord, Partitioner, Record};
use crate::tasks::Shutdown;

/// How often fully consumed records are trimmed from the log. Appends wait
/// while a trim runs, and a trim's time grows with the records it removes:
/// at 200 orders/s a trim every second held them up for 8-20 ms, and the
/// orders caught behind it were the slowest hundredth; a trim every 100 ms
/// is a tenth of that (docs/performance.md).
pub(super) const TRIM_EVERY: Duration = Duration::from_millis(100);
/// How long the newest record of a key of a compacted topic stays in memory
/// after every reader passed it: most keys (orders) change a few times
/// within seconds and then seldom, so only those changed later go through
/// the file to replace their record, and memory holds the keys of the last
/// few seconds.
pub(super) const COLD_AFTER: Duration = if cfg!(test) {
    Duration::from_millis(100)
} else {
    Duration::from_secs(10)
};
/// Most write operations one group commit takes.
const MAX_OPS_PER_COMMIT: usize = 2048;

/// Records of a compacted topic's partition below an offset that memory
/// gave up: the file keeps them with the newest record of each key
/// (`bus_latest`): topic, partition, offset.
pub(super) type Freeze = (Arc<str>, u32, u64);

/// A topic to create: name, partitions, compacted, and whom to tell.
pub(super) type TopicCreation = (String, u32, bool, oneshot::Sender<Result<(), BusError>>);

pub(super) enum WriteOp {
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

/// The only task that writes the log: appends, offset commits and topic
/// creation, in group commits.
///
/// Appends are written before anyone learns of them. Offset commits are
/// kept in memory and written with the next trim (every [`TRIM_EVERY`])
/// and at shutdown: after a crash, a group may get the records of that
/// last moment again, which idempotent consumers ignore, as with Kafka's
/// periodic offset commits. A trim writes the offsets before removing any
/// record they cover.
pub(super) struct Writer {
    pub(super) shared: Arc<Shared>,
    pub(super) store: Option<LogStore>,
    pub(super) ops: mpsc::UnboundedReceiver<WriteOp>,
    pub(super) shutdown: Shutdown,
    /// Committed offsets not yet written: (group, topic, partition).
    pub(super) unsaved: HashMap<(String, String, u32), u64>,
}

/// A record placed in the log but not yet visible.
pub(super) struct Placed {
    topic: Arc<TopicLog>,
    pub(super) record: Arc<Record>,
    /// Compacted topics: the older record of the same key this supersedes.
    replaces: Option<u64>,
}

impl Writer {
    pub(super) async fn run(mut self) -> anyhow::Result<()> {
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
    /// topics, superseded records that every live reader has passed, and
    /// from memory only (the file keeps them for new readers), the newest
    /// records of their keys that every reader has passed.
    async fn trim(&mut self) {
        let topics: Vec<Arc<TopicLog>> = read(&self.shared.topics).values().cloned().collect();
        let readers = lock(&self.shared.readers).clone();
        let committed = lock(&self.shared.committed).clone();
        let groups: Vec<Arc<Group>> = lock(&self.shared.groups).values().cloned().collect();
        let mut cuts = Vec::new();
        let mut compactions = Vec::new();
        let mut freezes: Vec<Freeze> = Vec::new();
        let cold_before = Timestamp::now().as_millis()
            - i64::try_from(COLD_AFTER.as_millis()).unwrap_or(i64::MAX);
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
                    // Without a file, memory is the only copy; without a
                    // reader, nothing says what is passed. A record changed
                    // lately is likely to change again soon: it stays, so
                    // that its next change replaces it in memory rather
                    // than through the file.
                    let mut cold_below = passed.min(*log.end.borrow());
                    if let Some((&recent, _)) = state
                        .records
                        .range(..cold_below)
                        .find(|(_, record)| record.timestamp.as_millis() >= cold_before)
                    {
                        cold_below = recent;
                    }
                    if self.store.is_some() && passed != u64::MAX && cold_below > state.cold_end {
                        let hot = state.records.split_off(&cold_below);
                        let cold = std::mem::replace(&mut state.records, hot);
                        for (offset, record) in cold {
                            if state.latest.get(&record.key) == Some(&offset) {
                                state.latest.remove(&record.key);
                            }
                        }
                        state.cold_end = cold_below;
                        freezes.push((topic.name.clone(), partition, cold_below));
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
        if cuts.is_empty()
            && compactions.is_empty()
            && freezes.is_empty()
            && self.unsaved.is_empty()
        {
            return;
        }
        match store
            .trim(&cuts, &compactions, &freezes, &self.unsaved)
            .await
        {
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
        match store.trim(&[], &[], &[], &self.unsaved).await {
            Ok(()) => self.unsaved.clear(),
            Err(error) => tracing::warn!(%error, "cannot write committed offsets"),
        }
    }
}
