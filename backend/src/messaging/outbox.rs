//! The transactional outbox: a state change and the messages it causes
//! commit in one transaction; the relay publishes them afterwards, in order,
//! and deletes what it published. A crash between publishing and deleting
//! publishes a message twice, with the same event id, which consumers
//! recognise (at-least-once).

use shop_shared::sync::lock;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use shop_shared::events::{Envelope, Message};
use shop_shared::time::Timestamp;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Connection, Row};
use tokio::sync::Notify;

use crate::bus::{Bus, OutgoingRecord};
use crate::db::batch;
use crate::db::{Db, Dialect, StoreError, Tx};
use crate::service::Service;
use crate::tasks::{Shutdown, Spawner};

/// Most outbox rows published in one go.
const BATCH: i64 = 512;

/// Adds `message` in a fresh envelope to the outbox, inside `tx`.
///
/// # Errors
///
/// The insert failed.
pub async fn push<M: Message>(
    tx: &mut Tx,
    message: M,
    correlation_id: &str,
) -> Result<Written, StoreError> {
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

/// Outbox rows a transaction wrote, with their ids, for
/// [`RelayHandle::commit`].
#[derive(Debug, Default)]
#[must_use = "hand the rows to RelayHandle::commit"]
pub struct Written {
    rows: Vec<(i64, OutgoingRecord)>,
}

impl Outgoing {
    /// Adds `message` in a fresh envelope.
    pub fn push<M: Message>(&mut self, message: M, correlation_id: &str) {
        self.push_envelope(&Envelope::new(message, correlation_id));
    }

    pub fn push_envelope<M: Message>(&mut self, envelope: &Envelope<M>) {
        self.records.push(OutgoingRecord::from_envelope(envelope));
    }

    /// Moves every message of `other` after these.
    pub fn append(&mut self, mut other: Outgoing) {
        self.records.append(&mut other.records);
    }

    /// Writes the messages to the outbox, inside `tx`.
    ///
    /// # Errors
    ///
    /// An insert failed, or the database returned fewer ids than rows.
    pub async fn write(self, tx: &mut Tx) -> Result<Written, StoreError> {
        let now = Timestamp::now().as_millis();
        let mut rows = Vec::with_capacity(self.records.len());
        let mut records = self.records.into_iter();
        for range in batch::chunks(records.len()) {
            let sql = format!(
                "INSERT INTO outbox (topic, msg_key, headers, payload, created_at) VALUES {} RETURNING id",
                batch::values(range.len(), 5, tx.placeholders())
            );
            let chunk: Vec<OutgoingRecord> = records.by_ref().take(range.len()).collect();
            let mut insert = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql));
            for record in &chunk {
                let headers =
                    serde_json::to_string(&record.headers).unwrap_or_else(|_| "[]".into());
                insert = insert
                    .bind(record.topic.clone())
                    .bind(record.key.clone())
                    .bind(headers)
                    .bind(String::from_utf8_lossy(&record.payload).into_owned())
                    .bind(now);
            }
            let mut ids = insert.fetch_all(&mut **tx).await?;
            if ids.len() != chunk.len() {
                // Never hand the relay fewer rows than were written.
                return Err(StoreError::Corrupt(sqlx::Error::Protocol(format!(
                    "the outbox returned {} ids for {} rows",
                    ids.len(),
                    chunk.len()
                ))));
            }
            // Rows get ascending ids in the order of the VALUES list; the
            // order RETURNING lists them in is unspecified.
            ids.sort_unstable();
            rows.extend(ids.into_iter().zip(chunk));
        }
        Ok(Written { rows })
    }
}

/// Commits transactions that wrote to the outbox and wakes the relay. Cheap
/// to clone.
///
/// On SQLite the relay publishes the rows it is handed, from memory, in
/// the order their transactions committed, and deletes them in the
/// background: the outbox is read only at start, for what a crash left
/// behind. On PostgreSQL, where other instances write to the same outbox,
/// the relay reads it.
#[derive(Clone, Default)]
pub struct RelayHandle {
    wake: Arc<Notify>,
    queue: Option<Arc<Queue>>,
}

/// Rows committed but not yet published, in commit order.
#[derive(Default)]
struct Queue {
    /// Held from before a commit until its rows are queued, so rows queue
    /// in the order their transactions committed.
    turn: tokio::sync::Mutex<()>,
    pending: std::sync::Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    rows: Vec<(i64, OutgoingRecord)>,
    /// A commit failed (whether it took effect is unknown) or publishing
    /// did: the relay reads the outbox itself.
    reread: bool,
}

impl RelayHandle {
    /// Writes `outgoing` to the outbox inside `tx`, commits, and has the
    /// relay publish the messages.
    ///
    /// # Errors
    ///
    /// As [`Outgoing::write`] and [`RelayHandle::commit`].
    pub async fn commit_outgoing(&self, mut tx: Tx, outgoing: Outgoing) -> Result<(), StoreError> {
        let written = outgoing.write(&mut tx).await?;
        self.commit(tx, written).await
    }

    /// Commits `tx`, which wrote `written` to the outbox, and has the relay
    /// publish those rows.
    ///
    /// # Errors
    ///
    /// The commit failed; whether it took effect is unknown, so the relay
    /// reads the outbox itself next time.
    pub async fn commit(&self, tx: Tx, written: Written) -> Result<(), StoreError> {
        let Some(queue) = &self.queue else {
            tx.commit().await?;
            self.wake.notify_one();
            return Ok(());
        };
        let _turn = queue.turn.lock().await;
        let committed = tx.commit().await;
        {
            let mut pending = lock(&queue.pending);
            match committed {
                Ok(()) => pending.rows.extend(written.rows),
                Err(_) => pending.reread = true,
            }
        }
        self.wake.notify_one();
        committed
    }
}

/// Starts the relay of `db`'s outbox onto `bus`, once it has published what
/// the outbox holds (rows an earlier run left behind, or rows written
/// before the service started).
///
/// # Errors
///
/// On SQLite, what an earlier run left in the outbox could not be read or
/// published.
pub async fn start_relay(
    service: Service,
    db: Db,
    bus: Arc<dyn Bus>,
    spawner: &Spawner,
) -> anyhow::Result<RelayHandle> {
    let handle = match db.dialect() {
        Dialect::Sqlite => {
            flush(&db, bus.as_ref()).await?;
            RelayHandle {
                wake: Arc::default(),
                queue: Some(Arc::default()),
            }
        }
        Dialect::Postgres => RelayHandle::default(),
    };
    let relay = Relay {
        service,
        db,
        bus,
        wake: handle.wake.clone(),
        shutdown: spawner.shutdown().clone(),
    };
    let task = match handle.queue.clone() {
        Some(queue) => relay.run_from_memory(queue).boxed(),
        None => relay.run().boxed(),
    };
    spawner.spawn(format!("{service}-outbox-relay"), task);
    Ok(handle)
}

struct Relay {
    service: Service,
    db: Db,
    bus: Arc<dyn Bus>,
    wake: Arc<Notify>,
    shutdown: Shutdown,
}

/// How long published rows may wait to be deleted in one statement.
const DELETE_AFTER: Duration = Duration::from_millis(100);

impl Relay {
    /// Reads the outbox and publishes what it finds, whenever woken and at
    /// least every 50 ms, as the instance holding the relay's lock.
    async fn run(self) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(50);
        let mut leader: Option<Leader> = None;
        loop {
            match self.lead_and_flush(&mut leader).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(error) => {
                    self.failed(&error);
                    if let Some(leader) = leader.take() {
                        // Closing the connection gives up the lock, so another
                        // instance may take over.
                        let _ = leader.connection.close().await;
                    }
                    if !self.shutdown.sleep(backoff).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
                _ = self.shutdown.triggered() => {
                    if let Some(mut leader) = leader.take() {
                        let _ = leader.delete_published().await;
                    }
                    return Ok(());
                }
            }
        }
    }

    /// Publishes the rows commits hand over, in commit order, and deletes
    /// them at most [`DELETE_AFTER`] later. A crash before the delete
    /// publishes them again at the next start, with the same event ids.
    async fn run_from_memory(self, queue: Arc<Queue>) -> anyhow::Result<()> {
        let mut backoff = Duration::from_millis(50);
        let mut unpublished: Vec<(i64, OutgoingRecord)> = Vec::new();
        let mut published: Vec<i64> = Vec::new();
        let mut oldest_published: Option<tokio::time::Instant> = None;
        loop {
            let reread = {
                let mut pending = lock(&queue.pending);
                unpublished.append(&mut pending.rows);
                std::mem::take(&mut pending.reread)
            };
            let outcome = async {
                if reread {
                    // Published rows go first, or they would be published
                    // again after newer ones; the rest are all in the outbox.
                    delete(&self.db, &mut published).await?;
                    unpublished.clear();
                    flush(&self.db, self.bus.as_ref()).await?;
                } else if !unpublished.is_empty() {
                    let (ids, records): (Vec<i64>, Vec<OutgoingRecord>) =
                        std::mem::take(&mut unpublished).into_iter().unzip();
                    if let Err(error) = self.bus.publish(records).await {
                        // The rows are in the outbox: the retry reads them
                        // from there, in order, with those committed since.
                        lock(&queue.pending).reread = true;
                        return Err(error.into());
                    }
                    published.extend(ids);
                    oldest_published.get_or_insert_with(tokio::time::Instant::now);
                }
                let due = oldest_published.is_some_and(|since| since.elapsed() >= DELETE_AFTER);
                if due || published.len() >= BATCH as usize {
                    delete(&self.db, &mut published).await?;
                    oldest_published = None;
                }
                anyhow::Ok(())
            }
            .await;
            match outcome {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(error) => {
                    self.failed(&error);
                    if reread {
                        lock(&queue.pending).reread = true;
                    }
                    if !self.shutdown.sleep(backoff).await {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            }
            let delete_in =
                oldest_published.map(|since| DELETE_AFTER.saturating_sub(since.elapsed()));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(delete_in.unwrap_or(Duration::from_secs(3600))) => {}
                _ = self.shutdown.triggered() => {
                    let _ = delete(&self.db, &mut published).await;
                    return Ok(());
                }
            }
        }
    }

    fn failed(&self, error: &anyhow::Error) {
        tracing::warn!(
            service = %self.service,
            error = format!("{error:#}"),
            "outbox relay failed; retrying"
        );
    }

    /// On PostgreSQL several instances of a service share one outbox, and
    /// publishing it from two places at once could reorder a key's messages:
    /// only the instance holding the relay's advisory lock publishes, on the
    /// connection that holds the lock, so losing the connection loses both.
    async fn lead_and_flush(&self, leader: &mut Option<Leader>) -> anyhow::Result<()> {
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
            // This connection only reads the outbox and deletes what was
            // published. A delete lost in a crash publishes its rows again,
            // with the same event ids, which consumers ignore: it need not
            // wait for the log to reach the disk before the next rows go.
            sqlx::query("SET synchronous_commit TO off")
                .execute(&mut connection)
                .await?;
            // The outbox is a queue: between two vacuums its heap is mostly
            // rows already deleted, and the planner, which counts few live
            // rows, would read all of them (a sequential scan and a sort)
            // on every cycle, milliseconds a time once the heap has grown.
            // The primary key's index leads to the oldest live rows directly.
            sqlx::query("SET enable_seqscan TO off")
                .execute(&mut connection)
                .await?;
            tracing::info!(
                service = %self.service,
                "this instance now relays the outbox"
            );
            *leader = Some(Leader {
                connection,
                published: Vec::new(),
            });
        }
        match leader {
            Some(leader) => leader.flush(self.bus.as_ref()).await,
            None => Ok(()),
        }
    }
}

/// The PostgreSQL relay's connection, which holds the relay's lock, and
/// the rows it published and has yet to delete.
struct Leader {
    connection: AnyConnection,
    /// Deleted by the next statement the relay runs, in at most 50 ms: a
    /// crash before that publishes them again, with the same event ids.
    published: Vec<i64>,
}

impl Leader {
    /// Publishes what the outbox holds, oldest first. Each statement
    /// deletes what the one before it published and reads the next rows:
    /// one round trip per batch, and one statement text however many rows
    /// it names (a list bound as one text parameter), which the driver
    /// prepares once.
    async fn flush(&mut self, bus: &dyn Bus) -> anyhow::Result<()> {
        loop {
            let published = id_list(&self.published);
            let rows = sqlx::query(
                "WITH published AS (
                     DELETE FROM outbox WHERE id = ANY(CAST(string_to_array($1, ',') AS BIGINT[]))
                 )
                 SELECT id, topic, msg_key, headers, payload FROM outbox
                 WHERE NOT (id = ANY(CAST(string_to_array($1, ',') AS BIGINT[])))
                 ORDER BY id LIMIT $2",
            )
            .bind(published)
            .bind(BATCH)
            .fetch_all(&mut self.connection)
            .await?;
            self.published.clear();
            if rows.is_empty() {
                return Ok(());
            }
            let (ids, records) = decode_rows(&rows)?;
            bus.publish(records).await?;
            // Only the rows just published: a row with a lower id may still
            // be uncommitted in another transaction.
            self.published = ids;
            if rows.len() < BATCH as usize {
                return Ok(());
            }
        }
    }

    /// Deletes what was published, before the relay stops.
    async fn delete_published(&mut self) -> Result<(), sqlx::Error> {
        let list = id_list(&self.published);
        sqlx::query(
            "DELETE FROM outbox WHERE id = ANY(CAST(string_to_array($1, ',') AS BIGINT[]))",
        )
        .bind(list)
        .execute(&mut self.connection)
        .await?;
        self.published.clear();
        Ok(())
    }
}

/// Deletes the outbox rows `ids` names, which were published, and empties it.
async fn delete(db: &Db, ids: &mut Vec<i64>) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(BATCH as usize) {
        let list = id_list(chunk);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM outbox WHERE id IN ({list})"
        )))
        .execute(db.pool())
        .await?;
    }
    ids.clear();
    Ok(())
}

/// The advisory lock key of a service's relay.
fn lock_key(service: Service) -> i64 {
    let mut hash: i64 = 0x4f55_5442_4f58; // "OUTBOX"
    for byte in format!("outbox-relay:{service}").bytes() {
        hash = hash.wrapping_mul(31).wrapping_add(i64::from(byte));
    }
    hash
}

/// Publishes every row in `db`'s outbox to `bus`, oldest first, deleting
/// what was published. Queries go through the pool, so no connection is
/// held while publishing (a SQLite pool has only one).
///
/// # Errors
///
/// The outbox could not be read or emptied, or the bus refused a record.
pub async fn flush(db: &Db, bus: &dyn Bus) -> anyhow::Result<()> {
    flush_from(db.pool(), bus).await
}

async fn flush_from(pool: &AnyPool, bus: &dyn Bus) -> anyhow::Result<()> {
    loop {
        let rows = sqlx::query(
            "SELECT id, topic, msg_key, headers, payload FROM outbox ORDER BY id LIMIT $1",
        )
        .bind(BATCH)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            return Ok(());
        }
        let (ids, records) = decode_rows(&rows)?;
        bus.publish(records).await?;
        // Only the rows just published: a row with a lower id may still be
        // uncommitted in another transaction.
        let list = id_list(&ids);
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM outbox WHERE id IN ({list})"
        )))
        .execute(pool)
        .await?;
        if rows.len() < BATCH as usize {
            return Ok(());
        }
    }
}

/// `ids` as `1,2,3`.
fn id_list(ids: &[i64]) -> String {
    ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",")
}

/// The ids and records of outbox rows.
fn decode_rows(rows: &[AnyRow]) -> anyhow::Result<(Vec<i64>, Vec<OutgoingRecord>)> {
    let mut ids = Vec::with_capacity(rows.len());
    let mut records = Vec::with_capacity(rows.len());
    for row in rows {
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
    Ok((ids, records))
}

/// How many messages wait in `db`'s outbox (for tests and health).
///
/// # Errors
///
/// The count failed.
pub async fn pending(db: &Db) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM outbox")
        .fetch_one(db.pool())
        .await?)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::bus::TopicSpec;
    use crate::bus::memory::MemoryBus;
    use crate::metrics::Metrics;
    use crate::tasks::Supervisor;
    use shop_shared::events::{CancelOrder, OrderCommand, topic};
    use uuid::Uuid;

    /// A cancel command for `order_id`: a message to publish in tests.
    pub(in crate::messaging) fn cancel(order_id: Uuid) -> OrderCommand {
        OrderCommand::CancelOrder(CancelOrder {
            order_id,
            customer_id: Uuid::nil(),
        })
    }

    /// The order ids of the commands on the bus, in log order.
    pub(in crate::messaging) fn published(bus: &MemoryBus) -> Vec<Uuid> {
        bus.records(topic::ORDER_COMMANDS)
            .iter()
            .map(|record| {
                let envelope = Envelope::<OrderCommand>::from_json(&record.payload).expect("json");
                let OrderCommand::CancelOrder(command) = envelope.message else {
                    panic!("not a cancel command");
                };
                command.order_id
            })
            .collect()
    }

    pub(in crate::messaging) async fn wait_until(what: &str, mut done: impl AsyncFnMut() -> bool) {
        for _ in 0..300 {
            if done().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting until {what}");
    }

    /// The order service's SQLite database, migrated, in `dir`.
    async fn order_db(dir: &std::path::Path) -> Db {
        let db = Db::sqlite(&dir.join("order.sqlite")).await.expect("db");
        db.migrate(Service::Order).await.expect("migrate");
        db
    }

    #[tokio::test]
    async fn the_sqlite_relay_publishes_what_was_left_first_then_every_commit_in_order_and_empties_the_outbox()
     {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = order_db(dir.path()).await;
        let (supervisor, spawner) = Supervisor::new();
        // One partition: the log order is the publishing order.
        let bus = MemoryBus::volatile(1, Metrics::default(), &spawner);
        bus.ensure_topics(&TopicSpec::all()).await.expect("topics");

        // A row an earlier run committed but did not publish.
        let left = Uuid::new_v4();
        let mut tx = db.begin().await.expect("begin");
        let _ = push(&mut tx, cancel(left), "left").await.expect("push");
        tx.commit().await.expect("commit");

        let relay = start_relay(Service::Order, db.clone(), Arc::new(bus.clone()), &spawner)
            .await
            .expect("relay");
        assert_eq!(
            published(&bus),
            vec![left],
            "published before the relay starts"
        );

        let mut expected = vec![left];
        for _ in 0..20 {
            let mut tx = db.begin().await.expect("begin");
            let mut outgoing = Outgoing::default();
            for _ in 0..3 {
                let id = Uuid::new_v4();
                outgoing.push(cancel(id), "test");
                expected.push(id);
            }
            let written = outgoing.write(&mut tx).await.expect("write");
            relay.commit(tx, written).await.expect("commit");
        }
        // Concurrent commits are each published once.
        let concurrent: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
        futures_util::future::join_all(concurrent.iter().map(|id| {
            let (db, relay) = (db.clone(), relay.clone());
            async move {
                let mut tx = db.begin().await.expect("begin");
                let written = push(&mut tx, cancel(*id), "test").await.expect("push");
                relay.commit(tx, written).await.expect("commit");
            }
        }))
        .await;

        wait_until("every message is published", async || {
            published(&bus).len() >= expected.len() + concurrent.len()
        })
        .await;
        let all = published(&bus);
        assert_eq!(all[..expected.len()], expected[..], "commit order");
        let mut rest = all[expected.len()..].to_vec();
        rest.sort();
        let mut concurrent = concurrent;
        concurrent.sort();
        assert_eq!(rest, concurrent, "each concurrent commit exactly once");
        wait_until("the outbox is emptied", async || {
            pending(&db).await.expect("count") == 0
        })
        .await;

        supervisor.trigger().trigger();
        supervisor.run(Duration::from_secs(5)).await.expect("stops");
    }

    #[tokio::test]
    async fn what_the_bus_refused_is_published_once_it_accepts() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = order_db(dir.path()).await;
        let (supervisor, spawner) = Supervisor::new();
        // No topics yet: every publish fails.
        let bus = MemoryBus::volatile(1, Metrics::default(), &spawner);
        let relay = start_relay(Service::Order, db.clone(), Arc::new(bus.clone()), &spawner)
            .await
            .expect("relay");
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
        for id in &ids {
            let mut tx = db.begin().await.expect("begin");
            let written = push(&mut tx, cancel(*id), "test").await.expect("push");
            relay.commit(tx, written).await.expect("commit");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(pending(&db).await.expect("count"), 3, "kept while refused");

        bus.ensure_topics(&TopicSpec::all()).await.expect("topics");
        wait_until("the outbox is emptied", async || {
            pending(&db).await.expect("count") == 0
        })
        .await;
        assert_eq!(published(&bus), ids, "each once, in commit order");

        supervisor.trigger().trigger();
        supervisor.run(Duration::from_secs(5)).await.expect("stops");
    }
}
