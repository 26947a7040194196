//! The inbox of an idempotent consumer: the ids of bus messages already
//! applied, written in the same transaction as their effects.

use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::Tx;

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

/// Forgets ids older than [`REMEMBER_FOR`].
pub async fn prune(db: &super::Db) -> Result<u64, sqlx::Error> {
    let cutoff = Timestamp::now().as_millis() - REMEMBER_FOR.as_millis() as i64;
    let deleted = sqlx::query("DELETE FROM processed_messages WHERE processed_at < $1")
        .bind(cutoff)
        .execute(db.pool())
        .await?;
    Ok(deleted.rows_affected())
}
