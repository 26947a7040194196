//! The inbox of an idempotent consumer: the ids of bus messages already
//! applied, written in the same transaction as their effects.

use std::collections::HashSet;

use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::batch::{self, Placeholders};
use super::{Tx, parse_column};

/// How long applied message ids are remembered: longer than any bus keeps
/// a message for redelivery (Kafka's default retention is 7 days).
pub const REMEMBER_FOR: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);

/// Records `event_id` as applied. Returns false when it already was: the
/// message is a redelivery and must change nothing.
pub async fn first_time(tx: &mut Tx, event_id: Uuid) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO processed_messages (event_id, processed_at) VALUES ($1, $2)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(event_id.to_string())
    .bind(Timestamp::now().as_millis())
    .execute(&mut **tx)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Records every id of `event_ids` as applied, in as few statements as
/// possible, and returns those applied for the first time now; the others
/// are redeliveries and must change nothing. An id given twice is new at
/// most once: the caller applies only its first occurrence.
pub async fn first_time_many(
    tx: &mut Tx,
    event_ids: &[Uuid],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    let mut unique: Vec<Uuid> = event_ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let now = Timestamp::now().as_millis();
    let mut fresh = HashSet::with_capacity(unique.len());
    for range in batch::chunks(unique.len()) {
        let sql = format!(
            "INSERT INTO processed_messages (event_id, processed_at) VALUES {}
             ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            batch::values(range.len(), 2, Placeholders::of(tx))
        );
        let mut insert = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for id in &unique[range] {
            insert = insert.bind(id.to_string()).bind(now);
        }
        for id in insert.fetch_all(&mut **tx).await? {
            fresh.insert(parse_column(&id, "event_id")?);
        }
    }
    Ok(fresh)
}

/// Forgets ids older than [`REMEMBER_FOR`].
pub async fn prune(db: &super::Db) -> Result<u64, sqlx::Error> {
    let cutoff = Timestamp::now().as_millis() - REMEMBER_FOR.as_millis() as i64;
    let deleted = sqlx::query("DELETE FROM processed_messages WHERE processed_at < $1")
        .bind(cutoff)
        .execute(db.pool())
        .await?;
    Ok(deleted.rows_affected())
}
