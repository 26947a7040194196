//! What each service forgets, and when. Orders, payments and the stock
//! ledger are the shop's records and are kept; what only guards against
//! repetition (the inbox's processed-message ids) or records how work was
//! done (delivered webhooks, finished checkout sessions) is deleted once it
//! can no longer matter, so a service's tables, and the cost of each
//! operation on them, stop growing with the shop's age.
//!
//! **Processed-message ids** guard against redelivery, and a message can be
//! delivered again only
//! - from a consumer group's committed offset, after a restart or a
//!   rebalance: the records a member handled but had not committed yet,
//!   which is at most one commit interval of work (Kafka's auto-commit every
//!   200 ms, the in-process bus's every 100 ms), read again first thing
//!   when the group resumes;
//! - from an outbox relay that published a message but crashed before
//!   deleting it: published again when the relay starts;
//! - by rewinding a group's offsets by hand, which this shop never does (an
//!   operator who does must keep [`RetentionSettings::inbox`] longer than
//!   the rewind).
//!
//! So an id is needed for seconds of a service's running time after it is
//! recorded. Ids are kept for [`RetentionSettings::inbox`] (5 minutes by
//! default, `--inbox-retention`), and a service prunes nothing until it has
//! run that long since it started: the redeliveries of a restart, after
//! downtime of any length, are all handled before an id of before the
//! restart can go.
//!
//! **Bookkeeping** (delivered local webhooks, checkout sessions past their
//! expiry, finished refund retries, checkout delays) is kept for
//! [`RetentionSettings::bookkeeping`] (7 days by default,
//! `--bookkeeping-retention`), for people looking into what happened;
//! Stripe webhook event ids at least 3 days, as long as Stripe retries a
//! webhook ("Stripe attempts to deliver a given event to your webhook
//! endpoint for up to 3 days", docs.stripe.com/webhooks).

use std::time::Duration;

use shop_shared::time::Timestamp;

use crate::db::{Db, StoreError};
use crate::metrics::Metrics;
use crate::service::Service;
use crate::tasks::Spawner;

/// How long what each service forgets is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Processed-message ids.
    pub inbox: Duration,
    /// Delivered webhooks, finished checkout sessions and the like.
    pub bookkeeping: Duration,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            inbox: Duration::from_secs(5 * 60),
            bookkeeping: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// How long rows of one kind are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepFor {
    /// [`RetentionSettings::inbox`].
    Inbox,
    /// [`RetentionSettings::bookkeeping`], but at least this long.
    Bookkeeping { at_least: Duration },
}

impl KeepFor {
    /// [`RetentionSettings::bookkeeping`], with no minimum of its own.
    pub const BOOKKEEPING: KeepFor = KeepFor::Bookkeeping {
        at_least: Duration::ZERO,
    };
}

/// Rows a service deletes once older than their retention.
#[derive(Debug, Clone, Copy)]
pub struct Prunable {
    /// The table, for metrics and logs.
    pub table: &'static str,
    /// Deletes at most [`CHUNK`] of the rows older than `$1` (milliseconds
    /// since the Unix epoch), through an index, and returns nothing.
    pub delete: &'static str,
    pub keep_for: KeepFor,
}

/// Most rows one statement deletes, so a prune never holds the database
/// (SQLite has one writer) for long.
pub const CHUNK: usize = 2000;

/// The inbox of every service.
pub const PROCESSED_MESSAGES: Prunable = Prunable {
    table: "processed_messages",
    delete: "DELETE FROM processed_messages WHERE event_id IN
             (SELECT event_id FROM processed_messages WHERE processed_at < $1 LIMIT 2000)",
    keep_for: KeepFor::Inbox,
};

/// How often a service prunes: a tenth of the inbox retention, between a
/// second and a minute.
fn every(settings: RetentionSettings) -> Duration {
    (settings.inbox / 10).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Prunes `service`'s `prunables` in `db` for as long as the process runs,
/// starting once it has run for [`RetentionSettings::inbox`].
pub fn spawn(
    spawner: &Spawner,
    service: Service,
    db: Db,
    settings: RetentionSettings,
    prunables: Vec<Prunable>,
    metrics: Metrics,
) {
    let shutdown = spawner.shutdown().clone();
    spawner.spawn(format!("{service}-retention"), async move {
        if !shutdown.sleep(settings.inbox).await {
            return Ok(());
        }
        loop {
            for prunable in &prunables {
                match prune(&db, prunable, settings, Timestamp::now()).await {
                    Ok(0) => {}
                    Ok(deleted) => {
                        metrics.add(
                            "shop_pruned_rows_total",
                            &[("service", service.name()), ("table", prunable.table)],
                            deleted,
                        );
                        tracing::debug!(%service, table = prunable.table, deleted, "pruned");
                    }
                    Err(error) => {
                        tracing::warn!(%service, table = prunable.table, %error, "cannot prune; will try again");
                    }
                }
            }
            if !shutdown.sleep(every(settings)).await {
                return Ok(());
            }
        }
    });
}

/// Deletes `prunable`'s rows older than its retention at `now`, a chunk at
/// a time; returns how many went.
///
/// # Errors
///
/// A delete failed; the chunks before it stay deleted.
pub async fn prune(
    db: &Db,
    prunable: &Prunable,
    settings: RetentionSettings,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let keep = match prunable.keep_for {
        KeepFor::Inbox => settings.inbox,
        KeepFor::Bookkeeping { at_least } => settings.bookkeeping.max(at_least),
    };
    let cutoff = now.as_millis() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    let mut deleted = 0;
    loop {
        let chunk = sqlx::query(prunable.delete)
            .bind(cutoff)
            .execute(db.pool())
            .await?
            .rows_affected();
        deleted += chunk;
        if chunk < CHUNK as u64 {
            return Ok(deleted);
        }
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;
    const DAY: i64 = 24 * 60 * MINUTE;

    async fn payment_db() -> (Db, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temporary folder");
        let db = Db::sqlite(&dir.path().join("payment.sqlite"))
            .await
            .expect("database");
        db.migrate(Service::Payment).await.expect("migrations");
        (db, dir)
    }

    async fn ids(db: &Db, sql: &str) -> Vec<String> {
        sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(db.pool())
            .await
            .expect("select")
    }

    async fn run(db: &Db, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(db.pool())
            .await
            .expect("statement");
    }

    #[tokio::test]
    async fn only_what_is_older_than_its_retention_goes_and_records_stay() {
        let (db, _dir) = payment_db().await;
        let now = Timestamp::from_millis(100 * DAY);
        let at = |ago: i64| now.as_millis() - ago;
        run(&db, &format!(
            "INSERT INTO processed_messages (event_id, processed_at) VALUES ('old', {}), ('recent', {});
             INSERT INTO webhook_events (event_id, event_type, received_at) VALUES
                 ('two-days', 't', {}), ('four-days', 't', {});
             INSERT INTO local_webhook_deliveries (event_id, payload, next_attempt_at, delivered_at, created_at) VALUES
                 ('delivered', '{{}}', 0, {}, 0), ('undelivered', '{{}}', 0, NULL, 0);
             INSERT INTO payments (order_id, customer_id, provider, session_id, checkout_url, status, amount, currency, created_at, updated_at)
                 VALUES ('o', 'c', 'local', 's', 'u', 'PAID', 1, 'EUR', 0, 0);",
            at(10 * MINUTE), at(MINUTE), at(2 * DAY), at(4 * DAY), at(2 * DAY),
        ))
        .await;
        let settings = RetentionSettings {
            inbox: Duration::from_secs(5 * 60),
            bookkeeping: Duration::from_secs(24 * 3600),
        };
        let mut prunables = vec![PROCESSED_MESSAGES];
        prunables.extend_from_slice(crate::payment::PRUNABLE);
        let mut deleted = 0;
        for prunable in &prunables {
            deleted += prune(&db, prunable, settings, now).await.expect("pruned");
        }
        assert_eq!(deleted, 3);
        assert_eq!(
            ids(&db, "SELECT event_id FROM processed_messages").await,
            ["recent"]
        );
        assert_eq!(
            ids(&db, "SELECT event_id FROM webhook_events").await,
            ["two-days"],
            "Stripe event ids stay 3 days, however short the bookkeeping retention"
        );
        assert_eq!(
            ids(&db, "SELECT event_id FROM local_webhook_deliveries").await,
            ["undelivered"],
            "a webhook still to deliver is never pruned"
        );
        assert_eq!(
            ids(&db, "SELECT order_id FROM payments").await,
            ["o"],
            "payments are records"
        );
    }

    #[tokio::test]
    async fn a_large_backlog_goes_in_chunks() {
        let (db, _dir) = payment_db().await;
        let rows: Vec<String> = (0..(CHUNK * 2 + 7))
            .map(|n| format!("('id-{n}', 0)"))
            .collect();
        run(
            &db,
            &format!(
                "INSERT INTO processed_messages (event_id, processed_at) VALUES {}",
                rows.join(", ")
            ),
        )
        .await;
        let deleted = prune(
            &db,
            &PROCESSED_MESSAGES,
            RetentionSettings::default(),
            Timestamp::now(),
        )
        .await
        .expect("pruned");
        assert_eq!(deleted, (CHUNK * 2 + 7) as u64);
    }
}
