//! The transactional outbox: a state change and the messages it causes
//! commit in one transaction; the relay publishes them afterwards, in order,
//! and deletes what it published. A crash between publishing and deleting
//! publishes a message twice, with the same event id, which consumers
//! recognise (at-least-once).

use std::sync::Arc;
use std::time::Duration;

use shop_shared::events::{Envelope, Message};
use shop_shared::time::Timestamp;
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use tokio::sync::Notify;

use super::batch::{self, Placeholders};
use super::{Db, Dialect, Tx, inbox};
use crate::bus::{Bus, OutgoingRecord};
use crate::tasks::{Shutdown, Spawner};

/// Most outbox rows published in one go.
const BATCH: i64 = 512;

/// Adds `message` in a fresh envelope to the outbox, inside `tx`.
pub async fn push<M: Message>(
    tx: &mut Tx,
    message: M,
    correlation_id: &str,
) -> Result<(), sqlx::Error> {
    let mut outgoing = Outgoing::default();
    outgoing.push(message, correlation_id);
    outgoing.write(tx).await
}

/// The messages a transaction publishes, gathered while it decides and
/// written to the outbox together, in order, before it commits.
#[derive(Debug, Default)]
pub struct Outgoing {
    records: Vec<OutgoingRecord>,
}

impl Outgoing {
    /// Adds `message` in a fresh envelope.
    pub fn push<M: Message>(&mut self, message: M, correlation_id: &str) {
        self.push_envelope(&Envelope::new(message, correlation_id));
    }

    pub fn push_envelope<M: Message>(&mut self, envelope: &Envelope<M>) {
        self.records.push(OutgoingRecord::from_envelope(envelope));
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Writes the messages to the outbox, inside `tx`.
    pub async fn write(self, tx: &mut Tx) -> Result<(), sqlx::Error> {
        let now = Timestamp::now().as_millis();
        for range in batch::chunks(self.records.len()) {
            let sql = format!(
                "INSERT INTO outbox (topic, msg_key, headers, payload, created_at) VALUES {}",
                batch::values(range.len(), 5, Placeholders::Numbered)
            );
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(sql));
            for record in &self.records[range] {
                let headers =
                    serde_json::to_string(&record.headers).unwrap_or_else(|_| "[]".into());
                insert = insert
                    .bind(record.topic.clone())
                    .bind(record.key.clone())
                    .bind(headers)
                    .bind(String::from_utf8_lossy(&record.payload).into_owned())
                    .bind(now);
            }
            insert.execute(&mut **tx).await?;
        }
        Ok(())
    }
}

/// Wakes a service's relay after a commit. Cheap to clone.
#[derive(Clone, Default)]
pub struct RelayHandle {
    wake: Arc<Notify>,
}

impl RelayHandle {
    /// Tells the relay there is something to publish.
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// Starts the relay of `db`'s outbox onto `bus`.
pub fn spawn_relay(
    service: &'static str,
    db: Db,
    bus: Arc<dyn Bus>,
    spawner: &Spawner,
) -> RelayHandle {
    let handle = RelayHandle::default();
    let relay = Relay {
        service,
        db,
        bus,
        wake: handle.wake.clone(),
        shutdown: spawner.shutdown().clone(),
    };
    spawner.spawn(format!("{service}-outbox-relay"), relay.run());
    handle
}

struct Relay {
    service: &'static str,
    db: Db,
    bus: Arc<dyn Bus>,
    wake: Arc<Notify>,
    shutdown: Shutdown,
}

impl Relay {
    async fn run(self) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(50);
        let mut last_prune = std::time::Instant::now();
        let mut leader: Option<AnyConnection> = None;
        let poll = match self.db.dialect() {
            // One process owns a SQLite database; its commits wake the relay.
            Dialect::Sqlite => Duration::from_millis(500),
            // Other instances write too, and only the leader relays.
            Dialect::Postgres => Duration::from_millis(50),
        };
        loop {
            let outcome = match self.db.dialect() {
                Dialect::Sqlite => flush(&self.db, self.bus.as_ref()).await,
                Dialect::Postgres => self.lead_and_flush(&mut leader).await,
            };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(error) => {
                    tracing::warn!(
                        service = self.service,
                        error = format!("{error:#}"),
                        "outbox relay failed; retrying"
                    );
                    if let Some(connection) = leader.take() {
                        // Closing the connection gives up the lock, so another
                        // instance may take over.
                        let _ = connection.close().await;
                    }
                    if !self.shutdown.sleep(backoff).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            if last_prune.elapsed() > Duration::from_secs(3600) {
                last_prune = std::time::Instant::now();
                if let Err(error) = inbox::prune(&self.db).await {
                    tracing::warn!(service = self.service, %error, "cannot prune processed message ids");
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                _ = self.shutdown.triggered() => return Ok(()),
            }
        }
    }

    /// On PostgreSQL several instances of a service share one outbox, and
    /// publishing it from two places at once could reorder a key's messages:
    /// only the instance holding the relay's advisory lock publishes, on the
    /// connection that holds the lock, so losing the connection loses both.
    async fn lead_and_flush(&self, leader: &mut Option<AnyConnection>) -> anyhow::Result<()> {
        if leader.is_none() {
            let mut connection = self.db.pool().acquire().await?.detach();
            let key = lock_key(self.service);
            let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                .bind(key)
                .fetch_one(&mut connection)
                .await?;
            if !acquired {
                let _ = connection.close().await;
                return Ok(());
            }
            tracing::info!(
                service = self.service,
                "this instance now relays the outbox"
            );
            *leader = Some(connection);
        }
        match leader {
            Some(connection) => flush_on(connection, self.bus.as_ref()).await,
            None => Ok(()),
        }
    }
}

/// The advisory lock key of a service's relay.
fn lock_key(service: &str) -> i64 {
    let mut hash: i64 = 0x4f55_5442_4f58; // "OUTBOX"
    for byte in format!("outbox-relay:{service}").bytes() {
        hash = hash.wrapping_mul(31).wrapping_add(i64::from(byte));
    }
    hash
}

/// Publishes every row in `db`'s outbox to `bus`, oldest first, deleting
/// what was published. Queries go through the pool, so no connection is
/// held while publishing (a SQLite pool has only one).
pub async fn flush(db: &Db, bus: &dyn Bus) -> anyhow::Result<()> {
    flush_from(Source::Pool(db.pool()), bus).await
}

async fn flush_on(connection: &mut AnyConnection, bus: &dyn Bus) -> anyhow::Result<()> {
    flush_from(Source::Connection(connection), bus).await
}

/// Where the relay reads and deletes outbox rows.
enum Source<'a> {
    Pool(&'a AnyPool),
    Connection(&'a mut AnyConnection),
}

async fn flush_from(mut source: Source<'_>, bus: &dyn Bus) -> anyhow::Result<()> {
    loop {
        let select = sqlx::query(
            "SELECT id, topic, msg_key, headers, payload FROM outbox ORDER BY id LIMIT $1",
        )
        .bind(BATCH);
        let rows = match &mut source {
            Source::Pool(pool) => select.fetch_all(*pool).await?,
            Source::Connection(connection) => select.fetch_all(&mut **connection).await?,
        };
        if rows.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut records = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.try_get::<i64, _>("id")?);
            let headers: String = row.try_get("headers")?;
            let payload: String = row.try_get("payload")?;
            records.push(OutgoingRecord {
                topic: row.try_get("topic")?,
                key: row.try_get("msg_key")?,
                headers: serde_json::from_str(&headers)?,
                payload: payload.into_bytes(),
            });
        }
        bus.publish(records).await?;
        // Only the rows just published: a row with a lower id may still be
        // uncommitted in another transaction.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let delete = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM outbox WHERE id IN ({list})"
        )));
        match &mut source {
            Source::Pool(pool) => delete.execute(*pool).await?,
            Source::Connection(connection) => delete.execute(&mut **connection).await?,
        };
        if rows.len() < BATCH as usize {
            return Ok(());
        }
    }
}

/// How many messages wait in `db`'s outbox (for tests and health).
pub async fn pending(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox")
        .fetch_one(db.pool())
        .await
}
