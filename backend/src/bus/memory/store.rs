//! The SQLite file behind the in-process bus's log: topics, records, the
//! ends of trimmed partitions and the committed offsets of groups.

use shop_shared::sync::{lock, read, write};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use shop_shared::time::Timestamp;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteRow};
use sqlx::{Connection, Row};

use super::writer::Freeze;
use super::writer::{Placed, TopicCreation};
use super::{Shared, TopicLog};
use crate::bus::{Partitioner, Record};
use crate::db::batch::{self, Placeholders};
use crate::db::{Dialect, checkpoint, migrate};

/// The record of a row of `bus_records` (without its topic and part).
fn record_of(row: &SqliteRow, topic: &Arc<str>, partition: u32) -> anyhow::Result<Record> {
    let headers: String = row.try_get("headers")?;
    let offset: i64 = row.try_get("record_offset")?;
    Ok(Record {
        topic: topic.clone(),
        partition,
        offset: offset as u64,
        key: row.try_get("record_key")?,
        headers: serde_json::from_str(&headers)?,
        payload: row.try_get("payload")?,
        timestamp: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

/// A connection of its own that reads records kept only in the file, for
/// readers that start below what memory holds; SQLite's WAL lets it read
/// while the writer writes.
pub(super) struct ColdRecords {
    connection: tokio::sync::Mutex<SqliteConnection>,
}

impl ColdRecords {
    pub(super) async fn open(options: &SqliteConnectOptions) -> Result<Self, sqlx::Error> {
        let connection = SqliteConnection::connect_with(&options.clone().read_only(true)).await?;
        Ok(ColdRecords {
            connection: tokio::sync::Mutex::new(connection),
        })
    }

    /// Up to `limit` records of `topic`'s `partition` from offset `from`
    /// (inclusive) to `until` (exclusive), in offset order.
    pub(super) async fn read(
        &self,
        topic: &Arc<str>,
        partition: u32,
        from: u64,
        until: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<Arc<Record>>> {
        let mut connection = self.connection.lock().await;
        // Records not moved to bus_latest yet (a crash came first) are read
        // from bus_records.
        let rows = sqlx::query(
            "SELECT record_offset, record_key, headers, payload, created_at FROM (
                 SELECT record_offset, record_key, headers, payload, created_at FROM bus_latest
                 WHERE topic = ?1 AND part = ?2 AND record_offset >= ?3 AND record_offset < ?4
                 UNION ALL
                 SELECT record_offset, record_key, headers, payload, created_at FROM bus_records
                 WHERE topic = ?1 AND part = ?2 AND record_offset >= ?3 AND record_offset < ?4)
             ORDER BY record_offset LIMIT ?5",
        )
        .bind(topic.as_ref())
        .bind(i64::from(partition))
        .bind(from as i64)
        .bind(until as i64)
        .bind(limit as i64)
        .fetch_all(&mut *connection)
        .await?;
        rows.iter()
            .map(|row| record_of(row, topic, partition).map(Arc::new))
            .collect()
    }
}

/// The SQLite file behind the log.
pub(super) struct LogStore {
    pub(super) connection: SqliteConnection,
    pub(super) _checkpointer: checkpoint::Checkpointer,
}

impl LogStore {
    /// Brings the log's schema up to date (`migrations/bus`).
    pub(super) async fn migrate(&mut self) -> Result<(), sqlx::Error> {
        migrate::run::<sqlx::Sqlite>(
            &mut self.connection,
            Dialect::Sqlite,
            &[("bus", migrate::BUS)],
        )
        .await
    }

    pub(super) async fn load(&mut self) -> anyhow::Result<Shared> {
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
        let topics: Vec<Arc<TopicLog>> = read(&shared.topics).values().cloned().collect();
        for log in topics {
            // A compacted topic's records below what every durable group
            // reading it committed stay in the file: a new reader reads them
            // from there. A topic nobody reads durably is loaded whole.
            let durable = lock(&shared.readers)
                .get(log.name.as_ref())
                .cloned()
                .unwrap_or_default();
            for (index, partition) in log.partitions.iter().enumerate() {
                let part = index as u32;
                let hot_from = if log.compacted && !durable.is_empty() {
                    let committed = lock(&shared.committed);
                    durable
                        .iter()
                        .map(|group| {
                            committed
                                .get(&(group.clone(), log.name.to_string(), part))
                                .copied()
                                .unwrap_or(0)
                        })
                        .min()
                        .unwrap_or(0)
                } else {
                    0
                };
                // What memory gave up before stays given up.
                let frozen: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(record_offset) FROM bus_latest WHERE topic = ? AND part = ?",
                )
                .bind(log.name.as_ref())
                .bind(i64::from(part))
                .fetch_one(&mut self.connection)
                .await?;
                let hot_from = frozen.map_or(hot_from, |newest| hot_from.max(newest as u64 + 1));
                // The log ends after its newest record (bus_log_end holds the
                // end only of partitions trimmed empty).
                let newest: Option<i64> = sqlx::query_scalar(
                    "SELECT MAX(newest) FROM (
                         SELECT MAX(record_offset) AS newest FROM bus_records WHERE topic = ?1 AND part = ?2
                         UNION ALL
                         SELECT MAX(record_offset) FROM bus_latest WHERE topic = ?1 AND part = ?2)",
                )
                .bind(log.name.as_ref())
                .bind(i64::from(part))
                .fetch_one(&mut self.connection)
                .await?;
                if let Some(newest) = newest {
                    partition.end.send_if_modified(|end| {
                        let after = newest as u64 + 1;
                        (*end < after).then(|| *end = after).is_some()
                    });
                }
                let records = sqlx::query(
                    "SELECT record_offset, record_key, headers, payload, created_at
                     FROM bus_records WHERE topic = ? AND part = ? AND record_offset >= ?
                     ORDER BY record_offset",
                )
                .bind(log.name.as_ref())
                .bind(i64::from(part))
                .bind(hot_from as i64)
                .fetch_all(&mut self.connection)
                .await?;
                let mut state = lock(&partition.state);
                state.cold_end = hot_from;
                for row in records {
                    let record = record_of(&row, &log.name, part)?;
                    if log.compacted
                        && let Some(older) = state.latest.insert(record.key.clone(), record.offset)
                    {
                        state.superseded.insert(older);
                    }
                    state.records.insert(record.offset, Arc::new(record));
                }
            }
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
    pub(super) async fn write(
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
    pub(super) async fn trim(
        &mut self,
        cuts: &[(Arc<str>, u32, u64, u64)],
        compactions: &[(Arc<str>, u32, BTreeSet<u64>)],
        freezes: &[Freeze],
        commits: &HashMap<(String, String, u32), u64>,
    ) -> Result<(), sqlx::Error> {
        let script = trim_script(cuts, compactions, freezes, commits);
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
    freezes: &[Freeze],
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
    // Records memory gave up go to the newest-per-key table (after the
    // superseded ones are gone above), replacing older records of their keys.
    for (topic, partition, below) in freezes {
        let _ = writeln!(
            script,
            "INSERT INTO bus_latest (topic, part, record_key, record_offset, headers, payload, created_at)
             SELECT topic, part, record_key, record_offset, headers, payload, created_at FROM bus_records
             WHERE topic = {topic} AND part = {partition} AND record_offset < {below}
             ON CONFLICT (topic, part, record_key) DO UPDATE SET
                 record_offset = excluded.record_offset, headers = excluded.headers,
                 payload = excluded.payload, created_at = excluded.created_at
             WHERE excluded.record_offset > bus_latest.record_offset;
             DELETE FROM bus_records WHERE topic = {topic} AND part = {partition} AND record_offset < {below};",
            topic = text(topic)
        );
    }
    script
}

/// `value` as an SQL string literal.
fn text(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}
