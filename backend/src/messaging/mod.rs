//! Messaging: what makes the services' use of the bus reliable, one layer
//! above the bus and the databases (neither of which knows the other).
//!
//! - [`outbox`]: a state change and the messages it causes commit together;
//!   a relay publishes them afterwards.
//! - [`inbox`]: the ids of messages already applied, so a redelivery
//!   changes nothing.
//! - [`Transactional`]: the one consumer skeleton every service plugs its
//!   [`UnitOfWork`] into: decode → begin → inbox (skip seen ids) → load →
//!   decide → write + outbox → commit.

pub mod inbox;
pub mod outbox;
pub mod retention;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::bus::{Handler, HandlerError, Record};
use crate::db::{Db, StoreError};
use outbox::{Outgoing, RelayHandle};

/// What one service does with a batch of fresh messages, inside the
/// transaction [`Transactional`] opens for it.
#[async_trait]
pub trait UnitOfWork: Send + Sync + 'static {
    /// A message, decoded.
    type Message: Send + Sync;
    /// What [`UnitOfWork::prepare`] found out, for [`UnitOfWork::apply`].
    type Prepared: Default + Send;

    /// Reads a record: the event id of its envelope and its message.
    ///
    /// # Errors
    ///
    /// [`HandlerError::Malformed`] for a record this service cannot read; it
    /// is dead-lettered.
    fn decode(&self, record: &Record) -> Result<(Uuid, Self::Message), HandlerError>;

    /// Work that must happen outside the transaction, before it (calls to
    /// another system, which must not hold row locks while they wait). By
    /// default nothing.
    ///
    /// # Errors
    ///
    /// As the handler's: transient failures are retried, others retried a
    /// few times and then dead-lettered.
    async fn prepare(
        &self,
        _messages: &[(Uuid, Self::Message)],
    ) -> Result<Self::Prepared, HandlerError> {
        Ok(Self::Prepared::default())
    }

    /// Loads what the fresh `messages` are about, decides, writes the
    /// changes inside `tx` and adds the messages they cause to `outgoing`.
    ///
    /// # Errors
    ///
    /// As the handler's; the transaction is rolled back.
    async fn apply(
        &self,
        tx: &mut crate::db::Tx,
        messages: Vec<Self::Message>,
        prepared: Self::Prepared,
        outgoing: &mut Outgoing,
    ) -> Result<(), HandlerError>;
}

/// The transactional consumer: applies each message at most once, in one
/// transaction per batch that also holds the messages it causes.
pub struct Transactional<U> {
    pub db: Db,
    pub relay: RelayHandle,
    pub unit: U,
}

#[async_trait]
impl<U: UnitOfWork> Handler for Transactional<U> {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        let mut messages = batch
            .iter()
            .map(|record| self.unit.decode(record))
            .collect::<Result<Vec<_>, _>>()?;
        // An id given twice in a batch is applied once, the first time.
        let mut seen = HashSet::with_capacity(messages.len());
        messages.retain(|(id, _)| seen.insert(*id));
        let prepared = self.unit.prepare(&messages).await?;
        let mut tx = self.db.begin().await?;
        let ids: Vec<Uuid> = messages.iter().map(|(id, _)| *id).collect();
        let fresh = inbox::first_time_many(&mut tx, &ids).await?;
        let messages: Vec<U::Message> = messages
            .into_iter()
            .filter_map(|(id, message)| fresh.contains(&id).then_some(message))
            .collect();
        let mut outgoing = Outgoing::default();
        self.unit
            .apply(&mut tx, messages, prepared, &mut outgoing)
            .await?;
        self.relay.commit_outgoing(tx, outgoing).await?;
        Ok(())
    }
}

impl From<StoreError> for HandlerError {
    fn from(error: StoreError) -> HandlerError {
        match error {
            StoreError::Transient(_) => HandlerError::Transient(error.into()),
            StoreError::Conflict(_) | StoreError::Corrupt(_) => HandlerError::Failed(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use shop_shared::sync::lock;
    use shop_shared::time::Timestamp;

    use super::outbox::tests::{cancel, published, wait_until};
    use super::*;
    use crate::bus::memory::MemoryBus;
    use crate::bus::{Bus, TopicSpec};
    use crate::db::Tx;
    use crate::metrics::Metrics;
    use crate::service::Service;
    use crate::tasks::Supervisor;

    /// Reads a record's payload as a message id, applies it by noting it
    /// and sending a cancel command for it; fails on demand.
    #[derive(Default)]
    struct Noting {
        applied: Mutex<Vec<Uuid>>,
        fail: AtomicBool,
    }

    #[async_trait]
    impl UnitOfWork for Arc<Noting> {
        type Message = Uuid;
        type Prepared = ();

        fn decode(&self, record: &Record) -> Result<(Uuid, Uuid), HandlerError> {
            let text = String::from_utf8_lossy(&record.payload);
            let id = text
                .parse()
                .map_err(|_| HandlerError::Malformed(format!("not an id: {text}")))?;
            Ok((id, id))
        }

        async fn apply(
            &self,
            _tx: &mut Tx,
            messages: Vec<Uuid>,
            _prepared: (),
            outgoing: &mut Outgoing,
        ) -> Result<(), HandlerError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(HandlerError::Failed(anyhow::anyhow!("refused on purpose")));
            }
            for id in &messages {
                outgoing.push(cancel(*id), &id.to_string());
            }
            lock(&self.applied).extend(messages);
            Ok(())
        }
    }

    fn records(ids: &[Uuid]) -> Vec<Arc<Record>> {
        ids.iter()
            .enumerate()
            .map(|(offset, id)| {
                Arc::new(Record {
                    topic: "in".into(),
                    partition: 0,
                    offset: offset as u64,
                    key: id.to_string(),
                    headers: Vec::new(),
                    payload: id.to_string().into_bytes(),
                    timestamp: Timestamp::now(),
                })
            })
            .collect()
    }

    #[tokio::test]
    async fn each_message_is_applied_once_and_what_it_causes_is_published_after_commit() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Db::sqlite(&dir.path().join("order.sqlite"))
            .await
            .expect("db");
        db.migrate(Service::Order).await.expect("migrate");
        let (supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::volatile(1, Metrics::default(), &spawner);
        bus.ensure_topics(&TopicSpec::all()).await.expect("topics");
        let relay =
            outbox::start_relay(Service::Order, db.clone(), Arc::new(bus.clone()), &spawner)
                .await
                .expect("relay");
        let unit = Arc::new(Noting::default());
        let consumer = Transactional {
            db: db.clone(),
            relay,
            unit: unit.clone(),
        };
        let [a, b, c, d] = [1, 2, 3, 4].map(Uuid::from_u128);

        // Given a batch naming `a` twice, then a redelivery of `b` with `c`.
        consumer
            .handle(&records(&[a, a, b]))
            .await
            .expect("first batch");
        consumer
            .handle(&records(&[b, c]))
            .await
            .expect("second batch");
        assert_eq!(*lock(&unit.applied), vec![a, b, c], "each id applied once");

        // A batch whose work fails leaves no trace: applied when it works.
        unit.fail.store(true, Ordering::SeqCst);
        assert!(matches!(
            consumer.handle(&records(&[d])).await,
            Err(HandlerError::Failed(_))
        ));
        unit.fail.store(false, Ordering::SeqCst);
        consumer
            .handle(&records(&[d]))
            .await
            .expect("retried batch");
        assert_eq!(*lock(&unit.applied), vec![a, b, c, d]);

        // A record that cannot be read fails the batch as malformed.
        let mut bad = records(&[a]);
        bad.push(Arc::new(Record {
            payload: b"not an id".to_vec(),
            ..(*bad[0]).clone()
        }));
        assert!(matches!(
            consumer.handle(&bad).await,
            Err(HandlerError::Malformed(_))
        ));

        wait_until("the caused messages are published", async || {
            published(&bus).len() >= 4
        })
        .await;
        assert_eq!(
            published(&bus),
            vec![a, b, c, d],
            "caused messages, in order"
        );
        supervisor.trigger().trigger();
        supervisor.run(Duration::from_secs(5)).await.expect("stops");
    }
}
