//! The inbox of an idempotent consumer: the ids of bus messages already
//! applied, written in the same transaction as their effects, and kept as
//! long as [`super::retention`] says a redelivery can come.

use std::collections::HashSet;

use shop_shared::time::Timestamp;
use uuid::Uuid;

use crate::db::batch;
use crate::db::{Db, StoreError, Tx, parse_column};

/// Records every id of `event_ids` as applied, in as few statements as
/// possible, and returns those applied for the first time now; the others
/// are redeliveries and must change nothing. An id given twice is new at
/// most once: the caller applies only its first occurrence.
///
/// # Errors
///
/// The insert failed; nothing is recorded then.
pub async fn first_time_many(tx: &mut Tx, event_ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
    let mut unique: Vec<Uuid> = event_ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    let now = Timestamp::now().as_millis();
    let mut fresh = HashSet::with_capacity(unique.len());
    for range in batch::chunks(unique.len()) {
        let sql = format!(
            "INSERT INTO processed_messages (event_id, processed_at) VALUES {}
             ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
            batch::values(range.len(), 2, tx.placeholders())
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

/// Which of `event_ids` were applied already, read without locking or
/// recording anything: for work that must happen before its transaction
/// (a provider call) and is skipped for redeliveries.
///
/// # Errors
///
/// The select failed.
pub async fn applied(db: &Db, event_ids: &[Uuid]) -> Result<HashSet<Uuid>, StoreError> {
    let mut connection = db.pool().acquire().await?;
    let rows = batch::fetch_in(
        &mut connection,
        event_ids.iter().map(Uuid::to_string),
        |list| format!("SELECT event_id FROM processed_messages WHERE event_id IN ({list})"),
    )
    .await?;
    rows.iter()
        .map(|row| {
            let id: String = sqlx::Row::try_get(row, "event_id")?;
            Ok(parse_column(&id, "event_id")?)
        })
        .collect()
}
