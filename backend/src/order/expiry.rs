//! The deadline sweep: a RESERVED order whose pay-until deadline has passed
//! asks the payment service to close its checkout session (and is cancelled
//! when the provider confirms nothing was paid); one whose grace period ran
//! out is cancelled (NOT_PAID). See
//! [`OrderRecord::deadline`](super::domain::OrderRecord::deadline).
//!
//! Deadlines live in the database, so they hold across restarts: the sweep
//! finds every passed deadline, including those that passed while the
//! process was down. It sleeps until the next deadline (at most a second),
//! and several instances split the work through row locks.

use std::time::Duration;

use shop_shared::time::Timestamp;

use super::handler::Orders;
use super::store;
use crate::db::Db;
use crate::messaging::outbox::RelayHandle;
use crate::tasks::Shutdown;

/// Most orders expired in one transaction.
const BATCH: i64 = 200;
/// Longest sleep between sweeps; a restart or a new deadline is found by then.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// Runs the sweep until `shutdown`; `grace` is how long after its deadline
/// an order waits for a payment made in time.
///
/// # Errors
///
/// Never while running: failed sweeps are logged and retried with backoff;
/// returns when `shutdown` comes.
pub async fn run(
    db: Db,
    relay: RelayHandle,
    grace: Duration,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let mut backoff = Duration::from_millis(100);
    loop {
        let pause = match sweep(&db, &relay, grace).await {
            Ok(true) => Duration::ZERO,
            Ok(false) => {
                backoff = Duration::from_millis(100);
                match store::next_deadline(&db).await {
                    Ok(Some(next)) => next.remaining_from(Timestamp::now()).min(MAX_SLEEP),
                    Ok(None) => MAX_SLEEP,
                    Err(error) => {
                        tracing::warn!(%error, "cannot read the next deadline");
                        MAX_SLEEP
                    }
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "expiry sweep failed; retrying"
                );
                backoff = (backoff * 2).min(Duration::from_secs(5));
                backoff
            }
        };
        if !shutdown.sleep(pause).await {
            return Ok(());
        }
    }
}

/// Acts on one batch of due orders. Returns true when the batch was full,
/// so more may be waiting.
async fn sweep(db: &Db, relay: &RelayHandle, grace: Duration) -> anyhow::Result<bool> {
    let now = Timestamp::now();
    let mut tx = db.begin().await?;
    let ids = store::expired(&mut tx, now, BATCH).await?;
    if ids.is_empty() {
        tx.rollback().await?;
        return Ok(false);
    }
    let mut orders = Orders::load(&mut tx, &ids).await?;
    for id in &ids {
        orders.decide(*id, |order| order.deadline(now, grace))?;
    }
    let outgoing = orders.write(&mut tx).await?;
    relay.commit_outgoing(tx, outgoing).await?;
    tracing::info!(due = ids.len(), "orders past their deadline");
    Ok(ids.len() as i64 == BATCH)
}
