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
