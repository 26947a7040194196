//! Delivery of a batch to a handler, the same on every bus.
//!
//! - Transient failures (the database is down, busy or deadlocked) are
//!   retried with backoff until they pass or the process stops: the records
//!   are fine, the infrastructure is not.
//! - When a batch fails otherwise, its records are retried one at a time, so
//!   one bad record cannot hold back the others.
//! - A record that still fails after [`MAX_ATTEMPTS`], or that cannot be read
//!   at all, goes to the group's dead-letter topic with the reason in its
//!   headers, and its partition moves on.

use std::sync::Arc;
use std::time::Duration;

use super::{Bus, Handler, HandlerError, OutgoingRecord, Record, header};
use crate::metrics::Metrics;
use crate::tasks::Shutdown;

/// Attempts at a failing record before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How delivering a batch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Every record was processed or dead-lettered: commit past the batch.
    Done,
    /// Shutdown came first: commit nothing; the batch is delivered again.
    Stopped,
}

/// Where a consumer sends what it gives up on.
pub struct Consumer<'a> {
    pub group: &'a str,
    pub handler: &'a dyn Handler,
    pub bus: &'a dyn Bus,
    pub shutdown: &'a Shutdown,
    /// False for broadcast readers, which have no dead-letter topic: a
    /// record they cannot process is logged and skipped.
    pub dead_letters: bool,
    pub metrics: &'a Metrics,
}

impl Consumer<'_> {
    pub async fn deliver(&self, batch: &[Arc<Record>]) -> Delivery {
        let first_error = match self.handle_until_not_transient(batch).await {
            Some(Err(error)) => {
                self.metrics.handler_failed(self.group);
                error
            }
            None => return Delivery::Stopped,
            Some(Ok(())) => return Delivery::Done,
        };
        if batch.len() == 1 {
            return self.deliver_one(&batch[0], Some(first_error)).await;
        }
        tracing::warn!(
            group = self.group,
            records = batch.len(),
            error = %first_error,
            "batch failed; retrying its records one by one"
        );
        for record in batch {
            if self.deliver_one(record, None).await == Delivery::Stopped {
                return Delivery::Stopped;
            }
        }
        Delivery::Done
    }

    async fn deliver_one(&self, record: &Arc<Record>, mut error: Option<HandlerError>) -> Delivery {
        let mut attempts = u32::from(error.is_some());
        let mut backoff = FIRST_BACKOFF;
        loop {
            match error.take() {
                Some(HandlerError::Malformed(reason)) => {
                    return self.dead_letter(record, &reason, attempts.max(1)).await;
                }
                Some(failure) if attempts >= MAX_ATTEMPTS => {
                    return self
                        .dead_letter(record, &failure.to_string(), attempts)
                        .await;
                }
                Some(failure) => {
                    tracing::warn!(
                        group = self.group,
                        topic = %record.topic,
                        offset = record.offset,
                        attempt = attempts,
                        error = %failure,
                        "record failed; retrying"
                    );
                    if !self.shutdown.sleep(backoff).await {
                        return Delivery::Stopped;
                    }
                    backoff = (backoff * 4).min(MAX_BACKOFF);
                }
                None => {}
            }
            match self
                .handle_until_not_transient(std::slice::from_ref(record))
                .await
            {
                None => return Delivery::Stopped,
                Some(Ok(())) => return Delivery::Done,
                Some(Err(failure)) => {
                    self.metrics.handler_failed(self.group);
                    attempts += 1;
                    error = Some(failure);
                }
            }
        }
    }

    /// Calls the handler until it answers something other than a transient
    /// failure; `None` if shutdown came first.
    async fn handle_until_not_transient(
        &self,
        batch: &[Arc<Record>],
    ) -> Option<Result<(), HandlerError>> {
        let mut backoff = FIRST_BACKOFF;
        let mut failures = 0u32;
        loop {
            if self.shutdown.is_triggered() {
                return None;
            }
            match self.handler.handle(batch).await {
                Err(HandlerError::Transient(error)) => {
                    self.metrics.handler_failed(self.group);
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(
                            group = self.group,
                            failures,
                            error = format!("{error:#}"),
                            "transient failure; retrying until it passes"
                        );
                    }
                    if !self.shutdown.sleep(backoff).await {
                        return None;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                outcome => return Some(outcome),
            }
        }
    }

    async fn dead_letter(&self, record: &Record, reason: &str, attempts: u32) -> Delivery {
        if !self.dead_letters {
            tracing::error!(
                group = self.group,
                topic = %record.topic,
                offset = record.offset,
                reason,
                "skipping a record this reader cannot process"
            );
            return Delivery::Done;
        }
        tracing::error!(
            group = self.group,
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            key = %record.key,
            reason,
            "giving up on a record; moving it to the dead-letter topic"
        );
        let mut dead = OutgoingRecord::from_record(record);
        dead.topic = shop_shared::events::topic::dead_letter(self.group);
        dead.headers.extend([
            (header::DLQ_REASON.to_owned(), reason.to_owned()),
            (header::DLQ_TOPIC.to_owned(), record.topic.to_string()),
            (
                header::DLQ_PARTITION.to_owned(),
                record.partition.to_string(),
            ),
            (header::DLQ_OFFSET.to_owned(), record.offset.to_string()),
            (header::DLQ_GROUP.to_owned(), self.group.to_owned()),
            (header::DLQ_ATTEMPTS.to_owned(), attempts.to_string()),
        ]);
        let mut backoff = FIRST_BACKOFF;
        loop {
            match self.bus.publish(vec![dead.clone()]).await {
                Ok(()) => {
                    self.metrics.dead_lettered(self.group);
                    return Delivery::Done;
                }
                Err(error) => {
                    tracing::warn!(group = self.group, %error, "cannot publish a dead letter yet");
                    if !self.shutdown.sleep(backoff).await {
                        return Delivery::Stopped;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    use async_trait::async_trait;

    use super::*;
    use crate::bus::memory::MemoryBus;
    use crate::bus::{Subscription, TopicSpec};
    use crate::tasks::Supervisor;

    /// Fails every batch holding the record `poison`; keeps the others.
    #[derive(Default)]
    struct Picky {
        kept: Mutex<Vec<String>>,
        poison_attempts: AtomicU32,
    }

    #[async_trait]
    impl Handler for Picky {
        async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
            if batch.iter().any(|record| record.payload == b"poison") {
                if batch.len() == 1 {
                    self.poison_attempts.fetch_add(1, Ordering::SeqCst);
                }
                return Err(HandlerError::Failed(anyhow::anyhow!(
                    "cannot apply this one"
                )));
            }
            let mut kept = self.kept.lock().expect("lock");
            kept.extend(
                batch
                    .iter()
                    .map(|record| String::from_utf8_lossy(&record.payload).into_owned()),
            );
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_record_that_keeps_failing_is_dead_lettered_and_its_batch_mates_are_kept() {
        let (_supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::volatile(1, Metrics::default(), &spawner);
        bus.ensure_topics(&[TopicSpec {
            name: "t".into(),
            compacted: false,
        }])
        .await
        .expect("topic");
        let records = ["a", "poison", "b"]
            .iter()
            .map(|payload| OutgoingRecord {
                topic: "t".into(),
                key: "same-key".into(),
                headers: vec![],
                payload: payload.as_bytes().to_vec(),
            })
            .collect();
        // Published before subscribing, so they arrive as one batch.
        bus.publish(records).await.expect("published");
        let handler = Arc::new(Picky::default());
        bus.subscribe(Subscription::group("g", &["t"]), handler.clone())
            .await
            .expect("subscribed");
        let dead = loop {
            let dead = bus.records("dlq.g.v1");
            if !dead.is_empty() {
                break dead;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            *handler.kept.lock().expect("lock"),
            vec!["a".to_owned(), "b".to_owned()]
        );
        assert_eq!(handler.poison_attempts.load(Ordering::SeqCst), MAX_ATTEMPTS);
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].payload, b"poison");
        assert_eq!(dead[0].header(header::DLQ_ATTEMPTS), Some("3"));
        assert!(
            dead[0]
                .header(header::DLQ_REASON)
                .is_some_and(|r| r.contains("cannot apply"))
        );
    }
}
