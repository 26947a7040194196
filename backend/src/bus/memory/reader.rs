//! The consumer side of the in-process bus: group membership, and the
//! reader of each group, which fetches what is new in every partition and
//! commits the group's offsets as its members handle records.

use shop_shared::sync::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::writer::WriteOp;
use super::{MemoryBus, TopicLog};
use crate::bus::consumer::{Consumer, Delivery};
use crate::bus::{
    Bus, BusError, Handler, Mode, Record, Subscription, SubscriptionHandle, TopicSpec,
};
use crate::tasks::Shutdown;

pub(super) struct Group {
    name: String,
    durable: bool,
    pub(super) topics: Vec<String>,
    members: Mutex<Vec<Arc<dyn Handler>>>,
    members_changed: watch::Sender<usize>,
    /// Next offset to deliver per (topic, partition), for idleness checks.
    pub(super) positions: Mutex<HashMap<(String, u32), u64>>,
}

impl MemoryBus {
    fn group(&self, subscription: &Subscription) -> Result<(Arc<Group>, bool), BusError> {
        let mut groups = lock(&self.inner.shared.groups);
        let name = match subscription.mode {
            Mode::Group => subscription.group.clone(),
            Mode::Broadcast | Mode::Live => {
                format!("{}-{}", subscription.group, uuid::Uuid::new_v4().simple())
            }
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

    /// Adds `handler` to the members of its group; a new group gets a
    /// reader, which starts each partition at the group's committed offset.
    pub(super) async fn join(
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
                let start = if subscription.mode == Mode::Live && subscription.resume_from.is_none()
                {
                    target
                } else {
                    let state = lock(&log.state);
                    // Below the records in memory, the file may hold more.
                    let earliest = if state.cold_end > 0 {
                        0
                    } else {
                        state.records.keys().next().copied().unwrap_or(target)
                    };
                    // A live reader starts where the group it follows
                    // stands, and that group starts where it committed, or
                    // at the earliest record if it committed nothing.
                    let follows = match subscription.mode {
                        Mode::Live => subscription.resume_from.clone(),
                        _ => group.durable.then(|| group.name.clone()),
                    };
                    let committed = follows.and_then(|name| {
                        lock(&self.inner.shared.committed)
                            .get(&(name, topic.name.to_string(), partition))
                            .copied()
                    });
                    committed
                        .unwrap_or(earliest)
                        .max(earliest.min(target))
                        .min(target)
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
            let portions = match self.gather_cold(members.len()).await {
                Some(portions) => portions,
                None => self.gather(members.len()),
            };
            if portions.is_empty() {
                // The file could not be read just now; the cursor stays.
                continue;
            }
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

    /// Records of the first partition whose cursor is below what memory
    /// holds, read from the file and given to the member the partition
    /// belongs to; `None` when every cursor is within memory.
    async fn gather_cold(&mut self, members: usize) -> Option<Vec<Portion>> {
        let cold = self.bus.inner.shared.cold.as_ref()?;
        for index in 0..self.cursors.len() {
            let cursor = &self.cursors[index];
            let log = &cursor.topic.partitions[cursor.partition as usize];
            let cold_end = lock(&log.state).cold_end;
            if cursor.position >= cold_end {
                continue;
            }
            let records = match cold
                .read(
                    &cursor.topic.name,
                    cursor.partition,
                    cursor.position,
                    cold_end,
                    self.max_batch,
                )
                .await
            {
                Ok(records) => records,
                Err(error) => {
                    tracing::warn!(group = %self.group.name, %error, "cannot read the bus log; will try again");
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    return Some(Vec::new());
                }
            };
            if records.is_empty() {
                // What was below is compacted away.
                self.cursors[index].position = cold_end;
                self.advanced(index);
                continue;
            }
            let mut portions: Vec<Portion> = (0..members).map(|_| Vec::new()).collect();
            let member = self.cursors[index].partition as usize % members;
            portions[member].push((index, records));
            return Some(portions);
        }
        None
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
                if cursor.position < state.cold_end {
                    // Evicted meanwhile: the next round reads the file.
                    continue;
                }
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
