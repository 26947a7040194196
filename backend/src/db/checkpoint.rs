//! WAL checkpoints on a connection of their own.
//!
//! SQLite copies the write-ahead log back into the database file in a
//! checkpoint, and by default the connection whose commit fills the log
//! does it, syncing the file to disk while every statement queued behind it
//! waits. Here that connection checkpoints only when the log has grown far
//! beyond the usual size (a safety net), and a second connection checkpoints
//! in the background every [`EVERY`]: passively, so writers never wait for
//! it.

use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::oneshot;

/// How often the background connection checkpoints.
pub const EVERY: Duration = Duration::from_millis(250);

/// Run by a writing connection: it lets the log grow to 16,384 pages
/// (64 MiB) before it checkpoints by itself; SQLite's default is 1,000.
pub const FOREGROUND_PRAGMA: &str = "PRAGMA wal_autocheckpoint = 16384";

/// Stops the background checkpoints when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    _stop: oneshot::Sender<()>,
}

/// Opens a second connection to the database of `options` and checkpoints
/// its log every [`EVERY`] until the returned handle is dropped.
pub async fn start(options: &SqliteConnectOptions) -> Result<Checkpointer, sqlx::Error> {
    let mut connection: SqliteConnection = options.connect().await?;
    let (stop, mut stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stopped => break,
                _ = tick.tick() => {}
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut connection)
                .await
            {
                tracing::warn!(%error, "background WAL checkpoint failed; the writer checkpoints itself");
            }
        }
        let _ = connection.close().await;
    });
    Ok(Checkpointer { _stop: stop })
}
