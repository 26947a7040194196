//! The Kafka bus of distributed mode, through rdkafka.
//!
//! - Producer: idempotent (`acks=all`, ordered retries), keyed by order id
//!   or sku, no linger: a record goes out at once, and records queued while
//!   a request is on its way go together in the next. A publish returns once
//!   every record is acknowledged; records of one call are sent pipelined.
//! - Consumer groups: one group per service; offsets are stored only after
//!   the handler has committed its effects (`enable.auto.offset.store=false`)
//!   and committed in the background, so delivery is at-least-once. Records
//!   of different partitions in one batch are handled concurrently, records
//!   of one partition in order.
//! - Broadcast readers (the gateways' catalogue) are assigned every
//!   partition from the beginning, live readers (the gateways' order pushes)
//!   from the end; neither commits anything.
//! - Topics are created at startup through the admin API; state topics are
//!   compacted; each group gets a dead-letter topic.
//!
//! When the broker is unreachable the bus says so in the log and keeps
//! trying; nothing here gives up on the broker.

use shop_shared::sync::lock;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use shop_shared::time::Timestamp;
use tokio::sync::watch;

use super::consumer::{Consumer as Delivering, Delivery};
use super::{
    Bus, BusError, Handler, Mode, OutgoingRecord, Record, Subscription, SubscriptionHandle,
    TopicSpec,
};
use crate::metrics::Metrics;
use crate::tasks::{Shutdown, Spawner};

/// How to reach and use the Kafka cluster.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`
    pub brokers: String,
    /// Partitions of each topic created here.
    pub partitions: i32,
    pub replication: i32,
    /// Names this process in the broker's logs.
    pub client_id: String,
    /// Longest the broker may hold a fetch while nothing new arrives
    /// (`fetch.wait.max.ms`). Apache Kafka answers a waiting fetch as soon
    /// as a record arrives, so this bounds only how often an idle consumer
    /// asks again, not how late a record is seen.
    pub fetch_wait: Duration,
    /// Put before every topic name and consumer group id, so that several
    /// shops (or tests) can share one cluster without seeing each other's
    /// records: `""` for none, `"staging."` gives `staging.orders.v1`.
    /// Services, handlers and dead letters see the names without it.
    pub topic_prefix: String,
}

impl KafkaConfig {
    /// The name on the broker of the topic or group `name`.
    fn on_broker(&self, name: &str) -> String {
        format!("{}{name}", self.topic_prefix)
    }
}

/// The Kafka bus. Cheap to clone.
#[derive(Clone)]
pub struct KafkaBus {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: AdminClient<DefaultClientContext>,
    spawner: Spawner,
    metrics: Metrics,
    /// The last health probe: when, and whether the broker answered.
    health: Mutex<Option<(Instant, bool)>>,
}

const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How long a topic may take to appear in a broker's metadata after it was
/// created (librdkafka waits as long by default before it fails a record
/// for an unknown topic: `topic.metadata.propagation.max.ms`).
const TOPIC_PROPAGATION: Duration = Duration::from_secs(30);

impl KafkaBus {
    /// A bus on the cluster of `config`; connects lazily.
    ///
    /// # Errors
    ///
    /// [`BusError::Broker`] when rdkafka refuses the configuration (a malformed
    /// broker list, for instance).
    pub fn new(config: KafkaConfig, metrics: Metrics, spawner: &Spawner) -> Result<Self, BusError> {
        let producer: FutureProducer = base_config(&config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "0")
            // Kafka's standard key partitioner, as the Java client's: keys go
            // where services in any language expect them, and where the
            // in-process bus puts them (`bus::partition_for`).
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", "15000")
            .set("request.timeout.ms", "5000")
            .create()
            .map_err(broker_error)?;
        let admin: AdminClient<DefaultClientContext> =
            base_config(&config).create().map_err(broker_error)?;
        Ok(KafkaBus {
            inner: Arc::new(Inner {
                config,
                producer,
                admin,
                spawner: spawner.clone(),
                metrics,
                health: Mutex::new(None),
            }),
        })
    }

    fn shutdown(&self) -> &Shutdown {
        self.inner.spawner.shutdown()
    }

    /// Partitions of `topic`, waiting for the broker as long as it takes.
    ///
    /// A topic just created may not be in every broker's metadata yet (in
    /// KRaft mode a broker learns of it from the metadata log a moment after
    /// the controller answered the creation), so an unknown topic is asked
    /// for again for [`TOPIC_PROPAGATION`] before it counts as missing.
    async fn partitions(&self, topic: &str) -> Result<Vec<i32>, BusError> {
        let mut backoff = Duration::from_millis(100);
        let unknown_until = Instant::now() + TOPIC_PROPAGATION;
        loop {
            let producer = self.inner.producer.clone();
            let name = topic.to_owned();
            let metadata = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(Some(&name), Duration::from_secs(5))
                    .map(|metadata| {
                        metadata
                            .topics()
                            .iter()
                            .filter(|t| t.name() == name && t.error().is_none())
                            .flat_map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
                            .collect::<Vec<i32>>()
                    })
            })
            .await
            .map_err(|error| BusError::Broker(error.to_string()))?;
            match metadata {
                Ok(partitions) if !partitions.is_empty() => return Ok(partitions),
                Ok(_) if Instant::now() >= unknown_until => {
                    return Err(BusError::UnknownTopic(topic.to_owned()));
                }
                Ok(_) => {
                    tracing::debug!(
                        topic,
                        "topic not in the broker's metadata yet; asking again"
                    );
                    if !self.shutdown().sleep(Duration::from_millis(50)).await {
                        return Err(BusError::Closed);
                    }
                }
                Err(error) => {
                    tracing::warn!(brokers = %self.inner.config.brokers, %error, "cannot reach Kafka; retrying");
                    if !self.shutdown().sleep(backoff).await {
                        return Err(BusError::Closed);
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

fn base_config(config: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("client.id", &config.client_id)
        .set("socket.nagle.disable", "true")
        .set("reconnect.backoff.max.ms", "2000")
        .set("log_level", "3");
    client
}

fn broker_error(error: KafkaError) -> BusError {
    BusError::Broker(error.to_string())
}

#[async_trait]
impl Bus for KafkaBus {
    async fn ensure_topics(&self, topics: &[TopicSpec]) -> Result<(), BusError> {
        let config = &self.inner.config;
        let names: HashMap<&String, String> = topics
            .iter()
            .map(|spec| (&spec.name, config.on_broker(&spec.name)))
            .collect();
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|spec| {
                let topic = NewTopic::new(
                    &names[&spec.name],
                    config.partitions,
                    TopicReplication::Fixed(config.replication),
                );
                if spec.compacted {
                    topic.set("cleanup.policy", "compact")
                } else {
                    topic
                }
            })
            .collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.inner.admin.create_topics(&new, &options).await {
                Ok(results) => {
                    let failed: Vec<String> = results
                        .into_iter()
                        .filter_map(|result| match result {
                            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => None,
                            Err((name, code)) => Some(format!("{name}: {code}")),
                        })
                        .collect();
                    if failed.is_empty() {
                        return Ok(());
                    }
                    tracing::warn!(brokers = %config.brokers, ?failed, "cannot create topics yet; retrying");
                }
                Err(error) => {
                    tracing::warn!(brokers = %config.brokers, %error, "cannot reach Kafka to create topics; retrying");
                }
            }
            if !self.shutdown().sleep(backoff).await {
                return Err(BusError::Closed);
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    async fn publish(&self, records: Vec<OutgoingRecord>) -> Result<(), BusError> {
        let mut deliveries = Vec::with_capacity(records.len());
        let topics: Vec<String> = records
            .iter()
            .map(|record| self.inner.config.on_broker(&record.topic))
            .collect();
        for (record, topic) in records.iter().zip(&topics) {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (key, value) in &record.headers {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let mut pending = FutureRecord::to(topic)
                .key(record.key.as_bytes())
                .payload(record.payload.as_slice())
                .headers(headers);
            loop {
                match self.inner.producer.send_result(pending) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                        pending = record;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((error, _)) => return Err(broker_error(error)),
                }
            }
        }
        for delivery in join_all(deliveries).await {
            match delivery {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(broker_error(error)),
                Err(_) => return Err(BusError::Closed),
            }
        }
        for record in &records {
            self.inner.metrics.published(&record.topic);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        subscription: Subscription,
        handler: Arc<dyn Handler>,
    ) -> Result<SubscriptionHandle, BusError> {
        if subscription.mode == Mode::Group {
            self.ensure_topics(&[TopicSpec::dead_letter(&subscription.group)])
                .await?;
        }
        let (caught_up, handle) = watch::channel(false);
        let fetch_wait = self.inner.config.fetch_wait.as_millis().max(1);
        let reader = match subscription.mode {
            Mode::Group => {
                let consumer: GroupConsumer = base_config(&self.inner.config)
                    .set("group.id", self.inner.config.on_broker(&subscription.group))
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", "200")
                    .set("enable.auto.offset.store", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("fetch.wait.max.ms", fetch_wait.to_string())
                    .set("session.timeout.ms", "6000")
                    .set("heartbeat.interval.ms", "1000")
                    .create_with_context(GroupContext {
                        group: subscription.group.clone(),
                        metrics: self.inner.metrics.clone(),
                    })
                    .map_err(broker_error)?;
                let topics: Vec<String> = subscription
                    .topics
                    .iter()
                    .map(|topic| self.inner.config.on_broker(topic))
                    .collect();
                // A member that subscribes before its broker knows a topic
                // would not read it until its next metadata refresh.
                for topic in &topics {
                    self.partitions(topic).await?;
                }
                let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
                consumer.subscribe(&topics).map_err(broker_error)?;
                // A group member is caught up once it runs; the group's
                // offsets say where it resumes.
                caught_up.send_replace(true);
                Reader {
                    bus: self.clone(),
                    consumer,
                    subscription,
                    handler,
                    targets: HashMap::new(),
                    caught_up,
                }
            }
            Mode::Broadcast | Mode::Live => {
                let live = subscription.mode == Mode::Live;
                let consumer: GroupConsumer = base_config(&self.inner.config)
                    .set(
                        "group.id",
                        self.inner.config.on_broker(&format!(
                            "{}-{}",
                            subscription.group,
                            uuid::Uuid::new_v4().simple()
                        )),
                    )
                    .set("enable.auto.commit", "false")
                    .set("auto.offset.reset", "earliest")
                    .set("fetch.wait.max.ms", fetch_wait.to_string())
                    .create_with_context(GroupContext {
                        group: subscription.group.clone(),
                        metrics: self.inner.metrics.clone(),
                    })
                    .map_err(broker_error)?;
                let mut assignment = TopicPartitionList::new();
                let mut targets = HashMap::new();
                for topic in &subscription.topics {
                    let on_broker = self.inner.config.on_broker(topic);
                    let partitions = self.partitions(&on_broker).await?;
                    let committed = match (&subscription.resume_from, live) {
                        (Some(group), true) => {
                            self.committed(group, &on_broker, &partitions).await?
                        }
                        _ => HashMap::new(),
                    };
                    for partition in partitions {
                        let (low, high) = self.watermarks(&on_broker, partition).await?;
                        // A live reader that follows a group starts where the
                        // group stands: its committed offset, or the earliest
                        // record if it committed nothing there (the group
                        // reads from there too, `auto.offset.reset=earliest`).
                        // One that follows none starts at the end as it is
                        // now: an offset rather than `Offset::End`, which
                        // librdkafka looks up only when it first fetches and
                        // so would skip what is published in between.
                        let (start, from) = match committed.get(&partition) {
                            Some(offset) => (Offset::Offset(*offset), (*offset).max(low)),
                            None if live && subscription.resume_from.is_none() => {
                                (Offset::Offset(high), high)
                            }
                            None => (Offset::Beginning, low),
                        };
                        assignment
                            .add_partition_offset(&on_broker, partition, start)
                            .map_err(broker_error)?;
                        // Caught up on reaching the end as it is now.
                        if high > from {
                            targets.insert((topic.clone(), partition), high);
                        }
                    }
                }
                consumer.assign(&assignment).map_err(broker_error)?;
                if targets.is_empty() {
                    caught_up.send_replace(true);
                }
                Reader {
                    bus: self.clone(),
                    consumer,
                    subscription,
                    handler,
                    targets,
                    caught_up,
                }
            }
        };
        let name = format!("kafka consumer {}", reader.subscription.group);
        self.inner.spawner.spawn(name, reader.run());
        Ok(SubscriptionHandle::new(handle))
    }

    async fn is_healthy(&self) -> bool {
        if let Some((at, healthy)) = *lock(&self.inner.health)
            && at.elapsed() < Duration::from_secs(1)
        {
            return healthy;
        }
        let producer = self.inner.producer.clone();
        // One topic's metadata, not the whole cluster's: on a shared cluster
        // the list of every topic can be large.
        let topic = self
            .inner
            .config
            .on_broker(shop_shared::events::topic::ORDERS);
        let healthy = tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_secs(2))
                .is_ok()
        })
        .await
        .unwrap_or(false);
        *lock(&self.inner.health) = Some((Instant::now(), healthy));
        healthy
    }
}

impl KafkaBus {
    /// The offsets `group` committed on `topic`'s `partitions` (none for a
    /// partition it committed nothing on), asked of the group's coordinator
    /// by a consumer that never joins the group.
    async fn committed(
        &self,
        group: &str,
        topic: &str,
        partitions: &[i32],
    ) -> Result<HashMap<i32, i64>, BusError> {
        let mut config = base_config(&self.inner.config);
        config
            .set("group.id", self.inner.config.on_broker(group))
            .set("enable.auto.commit", "false");
        let mut wanted = TopicPartitionList::new();
        for partition in partitions {
            wanted.add_partition(topic, *partition);
        }
        let mut backoff = Duration::from_millis(100);
        loop {
            let (config, list) = (config.clone(), wanted.clone());
            let answer = tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = config.create()?;
                consumer.committed_offsets(list, Duration::from_secs(5))
            })
            .await
            .map_err(|error| BusError::Broker(error.to_string()))?;
            match answer {
                Ok(offsets) => {
                    return Ok(offsets
                        .elements()
                        .iter()
                        .filter_map(|element| match element.offset() {
                            Offset::Offset(offset) => Some((element.partition(), offset)),
                            _ => None,
                        })
                        .collect());
                }
                Err(error) => {
                    tracing::warn!(group, topic, %error, "cannot read a group's committed offsets from Kafka; retrying");
                    if !self.shutdown().sleep(backoff).await {
                        return Err(BusError::Closed);
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// A partition's low and high watermarks: the offset of its earliest
    /// record still kept, and the offset its next record will get.
    async fn watermarks(&self, topic: &str, partition: i32) -> Result<(i64, i64), BusError> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let producer = self.inner.producer.clone();
            let name = topic.to_owned();
            let watermarks = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_watermarks(&name, partition, Duration::from_secs(5))
            })
            .await
            .map_err(|error| BusError::Broker(error.to_string()))?;
            match watermarks {
                Ok(watermarks) => return Ok(watermarks),
                Err(error) => {
                    tracing::warn!(topic, partition, %error, "cannot read offsets from Kafka; retrying");
                    if !self.shutdown().sleep(backoff).await {
                        return Err(BusError::Closed);
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Logs partition assignments, so an operator sees which instance of a
/// service reads what.
struct GroupContext {
    group: String,
    metrics: Metrics,
}

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                tracing::info!(group = %self.group, partitions = partitions.count(), "partitions assigned");
                self.metrics
                    .set_assigned_partitions(&self.group, partitions.count());
            }
            Rebalance::Revoke(partitions) => {
                tracing::info!(group = %self.group, partitions = partitions.count(), "partitions revoked");
                self.metrics.set_assigned_partitions(&self.group, 0);
            }
            Rebalance::Error(error) => {
                tracing::warn!(group = %self.group, %error, "rebalance failed")
            }
        }
    }
}

type GroupConsumer = StreamConsumer<GroupContext>;

/// Reads one subscription and hands batches to its handler.
struct Reader {
    bus: KafkaBus,
    consumer: GroupConsumer,
    subscription: Subscription,
    handler: Arc<dyn Handler>,
    /// Broadcast readers: the end of each partition when they subscribed;
    /// reaching every one means caught up.
    targets: HashMap<(String, i32), i64>,
    caught_up: watch::Sender<bool>,
}

impl Reader {
    async fn run(mut self) -> anyhow::Result<()> {
        let shutdown = self.bus.shutdown().clone();
        let group = self.subscription.group.clone();
        let durable = self.subscription.mode == Mode::Group;
        let mut failures = 0u32;
        loop {
            let first = tokio::select! {
                message = self.consumer.recv() => message,
                _ = shutdown.triggered() => break,
            };
            let prefix = self.bus.inner.config.topic_prefix.as_str();
            let mut batch = match first {
                Ok(message) => vec![owned(&message, prefix)],
                Err(error) => {
                    failures += 1;
                    if failures == 1 || failures.is_power_of_two() {
                        tracing::warn!(group, %error, "Kafka consumer error; retrying");
                    }
                    if !shutdown.sleep(Duration::from_millis(200)).await {
                        break;
                    }
                    continue;
                }
            };
            failures = 0;
            // A fetch response is queued whole: take what is already here,
            // without waiting for more.
            while batch.len() < self.subscription.max_batch {
                match self.consumer.recv().now_or_never() {
                    Some(Ok(message)) => batch.push(owned(&message, prefix)),
                    _ => break,
                }
            }
            // The whole batch goes to the handler at once, as the in-process
            // bus hands over what a member has: one transaction, however many
            // partitions it spans (records of each stay in order).
            let bus = self.bus.clone();
            let consumer = Delivering {
                group: &group,
                handler: self.handler.as_ref(),
                bus: &bus,
                shutdown: &shutdown,
                dead_letters: durable,
                metrics: &bus.inner.metrics,
            };
            if consumer.deliver(&batch).await == Delivery::Stopped {
                break;
            }
            // Each partition's last offset in the batch, and its record count.
            let mut ends: BTreeMap<(Arc<str>, u32), (u64, u64)> = BTreeMap::new();
            for record in &batch {
                let end = ends
                    .entry((record.topic.clone(), record.partition))
                    .or_default();
                *end = (record.offset, end.1 + 1);
            }
            for ((topic, partition), (last, count)) in &ends {
                self.bus.inner.metrics.consumed(&group, topic, *count);
                if durable
                    && let Err(error) = self.consumer.store_offset(
                        &self.bus.inner.config.on_broker(topic),
                        *partition as i32,
                        *last as i64,
                    )
                {
                    // The partition moved to another member meanwhile; it will
                    // deliver these records again, which is harmless.
                    tracing::debug!(group, %error, "offset not stored");
                }
                if let Some(target) = self.targets.get(&(topic.to_string(), *partition as i32))
                    && *last as i64 + 1 >= *target
                {
                    self.targets.remove(&(topic.to_string(), *partition as i32));
                    if self.targets.is_empty() {
                        self.caught_up.send_replace(true);
                    }
                }
            }
        }
        if durable && let Err(error) = self.consumer.commit_consumer_state(CommitMode::Sync) {
            tracing::debug!(group, %error, "final offset commit failed; records will be delivered again");
        }
        Ok(())
    }
}

/// The record of `message`, its topic named without the bus's `prefix`.
fn owned(message: &BorrowedMessage<'_>, prefix: &str) -> Arc<Record> {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|header| {
                    (
                        header.key.to_owned(),
                        String::from_utf8_lossy(header.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Arc::new(Record {
        topic: Arc::from(
            message
                .topic()
                .strip_prefix(prefix)
                .unwrap_or(message.topic()),
        ),
        partition: message.partition().max(0) as u32,
        offset: message.offset().max(0) as u64,
        key: String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
        headers,
        payload: message.payload().unwrap_or_default().to_vec(),
        timestamp: message
            .timestamp()
            .to_millis()
            .map_or_else(Timestamp::now, Timestamp::from_millis),
    })
}
