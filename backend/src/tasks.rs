//! Shutdown signalling and supervision of background tasks.
//!
//! Every long-running task (consumers, relays, sweeps, the bus writer) is
//! spawned through a [`Spawner`], which hands its join handle to the
//! [`Supervisor`]. A task that fails or panics is logged and stops the whole
//! process, so a broken service is noticed instead of silently missing.
//! Tasks end when the shared [`Shutdown`] fires.

use std::future::Future;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Fires once, when the process should stop. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    receiver: watch::Receiver<bool>,
}

/// Triggers the [`Shutdown`] it was made with.
#[derive(Clone, Debug)]
pub struct ShutdownTrigger {
    sender: std::sync::Arc<watch::Sender<bool>>,
}

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (sender, receiver) = watch::channel(false);
        (
            ShutdownTrigger {
                sender: std::sync::Arc::new(sender),
            },
            Shutdown { receiver },
        )
    }

    pub fn is_triggered(&self) -> bool {
        *self.receiver.borrow()
    }

    /// Completes when shutdown has been triggered.
    pub async fn triggered(&self) {
        let mut receiver = self.receiver.clone();
        // An error means every trigger is gone, which also means stop.
        let _ = receiver.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration`; returns false if shutdown came first.
    pub async fn sleep(&self, duration: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(duration) => true,
            _ = self.triggered() => false,
        }
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        self.sender.send_replace(true);
    }
}

type Named = (String, JoinHandle<anyhow::Result<()>>);

/// Spawns supervised tasks. Cheap to clone.
#[derive(Clone)]
pub struct Spawner {
    handles: mpsc::UnboundedSender<Named>,
    shutdown: Shutdown,
}

impl Spawner {
    /// Runs `task` under supervision. `name` appears in logs if it fails.
    pub fn spawn<F>(&self, name: impl Into<String>, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.into();
        let handle = tokio::spawn(task);
        if self.handles.send((name.clone(), handle)).is_err() {
            tracing::debug!(task = %name, "supervisor already gone; task runs unsupervised");
        }
    }

    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }
}

/// Owns the handles of every spawned task.
pub struct Supervisor {
    handles: mpsc::UnboundedReceiver<Named>,
    trigger: ShutdownTrigger,
    shutdown: Shutdown,
}

impl Supervisor {
    pub fn new() -> (Supervisor, Spawner) {
        let (trigger, shutdown) = Shutdown::new();
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Supervisor {
                handles: receiver,
                trigger,
                shutdown: shutdown.clone(),
            },
            Spawner {
                handles: sender,
                shutdown,
            },
        )
    }

    pub fn trigger(&self) -> ShutdownTrigger {
        self.trigger.clone()
    }

    /// Watches the tasks until shutdown, then waits up to `drain` for them to
    /// finish. Returns an error naming the first task that failed.
    ///
    /// # Errors
    ///
    /// The first task that failed (by name), or tasks still running after
    /// `drain`.
    pub async fn run(mut self, drain: Duration) -> anyhow::Result<()> {
        let mut running = FuturesUnordered::new();
        let mut failure: Option<anyhow::Error> = None;
        let watch = |(name, handle): Named| async move { (name, handle.await) };
        loop {
            tokio::select! {
                Some(named) = self.handles.recv() => running.push(watch(named)),
                Some((name, outcome)) = running.next(), if !running.is_empty() => {
                    if let Some(error) = failed(&name, outcome) {
                        if failure.is_none() {
                            failure = Some(error);
                        }
                        self.trigger.trigger();
                    }
                }
                _ = self.shutdown.triggered() => break,
            }
        }
        while let Ok(named) = self.handles.try_recv() {
            running.push(watch(named));
        }
        let finish = async {
            while let Some((name, outcome)) = running.next().await {
                if let Some(error) = failed(&name, outcome)
                    && failure.is_none()
                {
                    failure = Some(error);
                }
            }
        };
        if tokio::time::timeout(drain, finish).await.is_err() {
            tracing::warn!(?drain, "some tasks did not stop in time; leaving them");
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn failed(
    name: &str,
    outcome: Result<anyhow::Result<()>, tokio::task::JoinError>,
) -> Option<anyhow::Error> {
    match outcome {
        Ok(Ok(())) => {
            tracing::debug!(task = name, "task finished");
            None
        }
        Ok(Err(error)) => {
            tracing::error!(task = name, error = format!("{error:#}"), "task failed");
            Some(error.context(format!("task {name} failed")))
        }
        Err(join) if join.is_cancelled() => None,
        Err(join) => {
            tracing::error!(task = name, "task panicked: {join}");
            Some(anyhow::anyhow!("task {name} panicked: {join}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failing_task_stops_everything_and_is_reported() {
        let (supervisor, spawner) = Supervisor::new();
        let shutdown = spawner.shutdown().clone();
        spawner.spawn("waits", async move {
            shutdown.triggered().await;
            Ok(())
        });
        spawner.spawn("breaks", async { Err(anyhow::anyhow!("disk on fire")) });
        let outcome = supervisor.run(Duration::from_secs(5)).await;
        let message = format!("{:#}", outcome.expect_err("failure is reported"));
        assert!(
            message.contains("breaks") && message.contains("disk on fire"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn shutdown_waits_for_tasks_to_finish() {
        let (supervisor, spawner) = Supervisor::new();
        let shutdown = spawner.shutdown().clone();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        spawner.spawn("worker", async move {
            shutdown.triggered().await;
            let _ = done_tx.send(());
            Ok(())
        });
        supervisor.trigger().trigger();
        supervisor
            .run(Duration::from_secs(5))
            .await
            .expect("clean stop");
        assert!(done_rx.await.is_ok(), "the worker saw the shutdown");
    }
}
