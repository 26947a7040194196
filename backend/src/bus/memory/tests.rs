//! Tests of the in-process bus: ordering, groups, redelivery, durability,
//! compaction and the partitioners of old and new logs.

use std::sync::atomic::{AtomicU32, Ordering};

use super::writer::TRIM_EVERY;
use super::*;
use crate::bus::HandlerError;
use crate::tasks::Supervisor;

/// Collects what it is given; fails the first `failures` batches.
#[derive(Default)]
struct Collect {
    seen: Mutex<Vec<(String, String)>>,
    failures: AtomicU32,
    calls: AtomicU32,
}

#[async_trait]
impl Handler for Collect {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok()
        {
            return Err(HandlerError::Transient(anyhow::anyhow!("database away")));
        }
        let mut seen = lock(&self.seen);
        for record in batch {
            seen.push((
                record.key.clone(),
                String::from_utf8_lossy(&record.payload).into_owned(),
            ));
        }
        Ok(())
    }
}

impl Collect {
    fn seen(&self) -> Vec<(String, String)> {
        lock(&self.seen).clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<(String, String)> {
        for _ in 0..500 {
            if lock(&self.seen).len() >= count {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.seen()
    }
}

fn record(topic: &str, key: &str, payload: &str) -> OutgoingRecord {
    OutgoingRecord {
        topic: topic.into(),
        key: key.into(),
        headers: vec![],
        payload: payload.as_bytes().to_vec(),
    }
}

/// Opens the durable log at `path` under a supervisor of its own.
async fn open(path: &Path, partitions: u32) -> (MemoryBus, Supervisor) {
    let (supervisor, spawner) = Supervisor::new();
    let bus = MemoryBus::open(path, partitions, Metrics::default(), &spawner)
        .await
        .expect("the bus log opens");
    (bus, supervisor)
}

fn topic(name: &str, compacted: bool) -> TopicSpec {
    TopicSpec {
        name: name.into(),
        compacted,
    }
}

/// Stops every task of `supervisor` and waits for them.
async fn stop(supervisor: Supervisor) {
    supervisor.trigger().trigger();
    supervisor
        .run(Duration::from_secs(5))
        .await
        .expect("clean stop");
}

/// A record's topic, key and payload.
type Arrival = (String, String, Vec<u8>);

/// Keeps the partition each key's records arrived on.
#[derive(Default)]
struct Placement {
    partitions: Mutex<HashMap<Arrival, u32>>,
}

#[async_trait]
impl Handler for Placement {
    async fn handle(&self, batch: &[Arc<Record>]) -> Result<(), HandlerError> {
        let mut partitions = lock(&self.partitions);
        for record in batch {
            partitions.insert(
                (
                    record.topic.to_string(),
                    record.key.clone(),
                    record.payload.clone(),
                ),
                record.partition,
            );
        }
        Ok(())
    }
}

#[tokio::test]
async fn new_topics_place_keys_as_kafka_does_and_a_log_from_before_keeps_its_placement() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bus.sqlite");
    // A log as the bus wrote it before topics named their partitioner:
    // topic `old` with four partitions.
    {
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut connection = SqliteConnection::connect_with(&options)
            .await
            .expect("old log");
        sqlx::raw_sql(
            "CREATE TABLE bus_topics (
                name TEXT PRIMARY KEY,
                partitions INTEGER NOT NULL,
                compacted INTEGER NOT NULL
            );
            INSERT INTO bus_topics VALUES ('old', 4, 0);",
        )
        .execute(&mut connection)
        .await
        .expect("old schema");
        connection.close().await.expect("closed");
    }
    let (bus, supervisor) = open(&path, 4).await;
    bus.ensure_topics(&[topic("new", false)])
        .await
        .expect("topic");
    let placement = Arc::new(Placement::default());
    bus.subscribe(Subscription::group("g", &["old", "new"]), placement.clone())
        .await
        .expect("subscribed");
    let keys: Vec<String> = (0..40).map(|n| format!("order-{n}")).collect();
    let records = keys
        .iter()
        .flat_map(|key| [record("old", key, "x"), record("new", key, "x")])
        .collect();
    bus.publish(records).await.expect("published");
    for _ in 0..500 {
        if lock(&placement.partitions).len() == 80 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let placed = lock(&placement.partitions).clone();
    assert_eq!(placed.len(), 80, "every record arrived");
    let mut differ = 0;
    for key in &keys {
        let new = placed[&("new".to_owned(), key.clone(), b"x".to_vec())];
        let old = placed[&("old".to_owned(), key.clone(), b"x".to_vec())];
        assert_eq!(new, crate::bus::partition_for(key, 4), "{key} on `new`");
        assert_eq!(old, Partitioner::Fnv1a.partition(key, 4), "{key} on `old`");
        differ += usize::from(new != old);
    }
    assert!(differ > 0, "the two placements are told apart");
    stop(supervisor).await;

    // Reopened, each topic still places keys as before.
    let (bus, supervisor) = open(&path, 4).await;
    let placement = Arc::new(Placement::default());
    bus.subscribe(Subscription::group("h", &["old", "new"]), placement.clone())
        .await
        .expect("subscribed");
    bus.publish(vec![
        record("old", "order-7", "y"),
        record("new", "order-7", "y"),
    ])
    .await
    .expect("published");
    for _ in 0..500 {
        if lock(&placement.partitions).len() == 82 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let placed = lock(&placement.partitions).clone();
    let again = |topic: &str| placed.get(&(topic.to_owned(), "order-7".to_owned(), b"y".to_vec()));
    assert_eq!(
        again("old"),
        Some(&Partitioner::Fnv1a.partition("order-7", 4))
    );
    assert_eq!(again("new"), Some(&crate::bus::partition_for("order-7", 4)));
    stop(supervisor).await;
}

#[tokio::test]
async fn each_group_sees_every_record_and_records_of_a_key_keep_their_order() {
    let (_supervisor, spawner) = Supervisor::new();
    let bus = MemoryBus::volatile(4, Metrics::default(), &spawner);
    bus.ensure_topics(&[topic("t", false)])
        .await
        .expect("topic");
    let (first, second) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
    bus.subscribe(Subscription::group("g1", &["t"]), first.clone())
        .await
        .expect("g1");
    bus.subscribe(Subscription::group("g2", &["t"]), second.clone())
        .await
        .expect("g2");
    for round in 0..20 {
        let batch = (0..10)
            .map(|key| record("t", &format!("k{key}"), &round.to_string()))
            .collect();
        bus.publish(batch).await.expect("published");
    }
    for group in [&first, &second] {
        let seen = group.wait_for(200).await;
        assert_eq!(seen.len(), 200, "every record, once");
        for key in 0..10 {
            let order: Vec<u32> = seen
                .iter()
                .filter(|(k, _)| *k == format!("k{key}"))
                .map(|(_, round)| round.parse().expect("number"))
                .collect();
            assert_eq!(
                order,
                (0..20).collect::<Vec<_>>(),
                "key k{key} in publish order"
            );
        }
    }
}

#[tokio::test]
async fn members_of_one_group_share_the_partitions() {
    let (_supervisor, spawner) = Supervisor::new();
    let bus = MemoryBus::volatile(4, Metrics::default(), &spawner);
    bus.ensure_topics(&[topic("t", false)])
        .await
        .expect("topic");
    let (a, b) = (Arc::new(Collect::default()), Arc::new(Collect::default()));
    bus.subscribe(Subscription::group("g", &["t"]), a.clone())
        .await
        .expect("a");
    bus.subscribe(Subscription::group("g", &["t"]), b.clone())
        .await
        .expect("b");
    let batch = (0..100)
        .map(|n| record("t", &format!("key-{n}"), &n.to_string()))
        .collect();
    bus.publish(batch).await.expect("published");
    for _ in 0..500 {
        if a.seen().len() + b.seen().len() >= 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (a, b) = (a.seen(), b.seen());
    assert_eq!(a.len() + b.len(), 100, "each record went to one member");
    assert!(!a.is_empty() && !b.is_empty(), "both members got work");
    let a_keys: HashSet<_> = a.iter().map(|(key, _)| key).collect();
    assert!(
        b.iter().all(|(key, _)| !a_keys.contains(key)),
        "a key belongs to one member"
    );
}

#[tokio::test]
async fn a_failed_batch_is_delivered_again_until_it_succeeds() {
    let (_supervisor, spawner) = Supervisor::new();
    let bus = MemoryBus::volatile(1, Metrics::default(), &spawner);
    bus.ensure_topics(&[topic("t", false)])
        .await
        .expect("topic");
    let handler = Arc::new(Collect::default());
    handler.failures.store(3, Ordering::SeqCst);
    bus.subscribe(Subscription::group("g", &["t"]), handler.clone())
        .await
        .expect("g");
    bus.publish(vec![record("t", "k", "only")])
        .await
        .expect("published");
    let seen = handler.wait_for(1).await;
    assert_eq!(seen, vec![("k".to_owned(), "only".to_owned())]);
    assert_eq!(
        handler.calls.load(Ordering::SeqCst),
        4,
        "three failures, then success"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reading_while_publishers_append_misses_no_record() {
    let (supervisor, spawner) = Supervisor::new();
    let bus = MemoryBus::volatile(4, Metrics::default(), &spawner);
    // Three groups reading three topics at once: three readers racing
    // the writer.
    let topics = ["t0", "t1", "t2"];
    let mut handlers = Vec::new();
    for name in topics {
        bus.ensure_topics(&[topic(name, false)])
            .await
            .expect("topic");
        let handler = Arc::new(Collect::default());
        bus.subscribe(
            Subscription::group(&format!("g-{name}"), &[name]),
            handler.clone(),
        )
        .await
        .expect("group");
        handlers.push(handler);
    }
    // Busy threads beside the runtime's, so the reader is preempted at
    // every point of a round, as on a loaded machine.
    let spinning = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let spinners: Vec<_> = (0..4)
        .map(|_| {
            let spinning = spinning.clone();
            std::thread::spawn(move || {
                while spinning.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            })
        })
        .collect();
    const PUBLISHERS: usize = 8;
    const EACH: usize = 3_000;
    let publishers = (0..PUBLISHERS).map(|publisher| {
        let bus = bus.clone();
        tokio::spawn(async move {
            for n in 0..EACH {
                let key = format!("{publisher}-{n}");
                let records = topics.iter().map(|name| record(name, &key, "x")).collect();
                bus.publish(records).await.expect("published");
            }
        })
    });
    for publisher in futures_util::future::join_all(publishers).await {
        publisher.expect("publisher");
    }
    let total = PUBLISHERS * EACH;
    for _ in 0..1_000 {
        if handlers.iter().all(|handler| handler.seen().len() >= total) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    spinning.store(false, Ordering::Relaxed);
    for spinner in spinners {
        spinner.join().expect("spinner");
    }
    for (name, handler) in topics.iter().zip(&handlers) {
        let keys: HashSet<String> = handler.seen().into_iter().map(|(key, _)| key).collect();
        assert_eq!(
            keys.len(),
            total,
            "every record published on {name} is delivered"
        );
    }
    drop(bus);
    stop(supervisor).await;
}

#[tokio::test]
async fn the_log_and_committed_offsets_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bus.sqlite");

    let (bus, supervisor) = open(&path, 2).await;
    bus.ensure_topics(&[topic("t", false)])
        .await
        .expect("topic");
    let batch = (0..10)
        .map(|n| record("t", &format!("k{n}"), &n.to_string()))
        .collect();
    bus.publish(batch).await.expect("published");
    drop(bus);
    stop(supervisor).await;

    // Nobody had read them: all ten are still there after a restart.
    let (bus, supervisor) = open(&path, 2).await;
    let handler = Arc::new(Collect::default());
    // A name that needs quoting in SQL.
    let group = "o'brien";
    bus.subscribe(Subscription::group(group, &["t"]), handler.clone())
        .await
        .expect("g");
    assert_eq!(handler.wait_for(10).await.len(), 10);
    // Long enough for a trim to write the offsets and drop the records.
    tokio::time::sleep(TRIM_EVERY + Duration::from_millis(300)).await;
    assert!(bus.records("t").is_empty(), "consumed records are trimmed");
    drop(bus);
    stop(supervisor).await;

    // The group committed them: after another restart it reads only
    // what is new, and the trimmed log goes on from where it ended.
    let (bus, supervisor) = open(&path, 2).await;
    bus.publish(vec![record("t", "k1", "new")])
        .await
        .expect("published");
    let kept = bus.records("t");
    assert_eq!(kept.len(), 1);
    assert!(kept[0].offset > 0, "offsets are never reused");
    let handler = Arc::new(Collect::default());
    bus.subscribe(Subscription::group(group, &["t"]), handler.clone())
        .await
        .expect("g");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(handler.seen(), vec![("k1".to_owned(), "new".to_owned())]);
    drop(bus);
    stop(supervisor).await;
}

#[tokio::test]
async fn a_group_commit_of_many_statements_survives_a_restart_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bus.sqlite");
    let (bus, supervisor) = open(&path, 3).await;
    bus.ensure_topics(&[topic("t", false)])
        .await
        .expect("topic");
    // 300 records: five multi-row statements in one transaction.
    let batch = (0..300)
        .map(|n| record("t", &format!("k{}", n % 7), &n.to_string()))
        .collect();
    bus.publish(batch).await.expect("published");
    drop(bus);
    stop(supervisor).await;

    let (bus, supervisor) = open(&path, 3).await;
    let kept = bus.records("t");
    assert_eq!(kept.len(), 300);
    let number = |record: &Arc<Record>| -> u32 {
        String::from_utf8_lossy(&record.payload)
            .parse()
            .expect("number")
    };
    // Each key's records are still in the order they were published.
    for key in 0..7 {
        let of_key: Vec<u32> = kept
            .iter()
            .filter(|record| record.key == format!("k{key}"))
            .map(number)
            .collect();
        assert!(of_key.windows(2).all(|pair| pair[0] < pair[1]));
    }
    let mut payloads: Vec<u32> = kept.iter().map(number).collect();
    payloads.sort_unstable();
    assert_eq!(payloads, (0..300).collect::<Vec<u32>>());
    drop(bus);
    stop(supervisor).await;
}

/// Publishes `payload` to topic `t` under four keys.
async fn publish_four(bus: &MemoryBus, payload: &str) {
    let batch = (0..4)
        .map(|n| record("t", &format!("k{n}"), payload))
        .collect();
    bus.publish(batch).await.expect("published");
}

/// A live reader of topic `t` that follows `group`, once it caught up.
async fn live_following(bus: &MemoryBus, group: &str) -> Arc<Collect> {
    let seen = Arc::new(Collect::default());
    bus.subscribe(Subscription::live("live", &["t"], group), seen.clone())
        .await
        .expect("live")
        .caught_up()
        .await;
    seen
}

/// A live reader that follows a group starts where the group stands: at
/// the earliest record where the group committed nothing, at its committed
/// offset where it did; never at the end, which would skip what the group
/// has not read yet.
#[tokio::test]
async fn a_live_reader_starts_where_the_group_it_follows_stands() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bus.sqlite");
    let (bus, supervisor) = open(&path, 2).await;
    bus.ensure_topics(&[topic("t", false)])
        .await
        .expect("topic");
    publish_four(&bus, "before").await;
    let before = live_following(&bus, "projection").await;
    assert_eq!(before.seen().len(), 4, "what the group has not read yet");

    let group = Arc::new(Collect::default());
    bus.subscribe(Subscription::group("projection", &["t"]), group.clone())
        .await
        .expect("group");
    assert_eq!(group.wait_for(4).await.len(), 4);
    // Long enough for a trim to write the group's offsets.
    tokio::time::sleep(TRIM_EVERY + Duration::from_millis(300)).await;
    drop(bus);
    stop(supervisor).await;

    let (bus, supervisor) = open(&path, 2).await;
    publish_four(&bus, "after").await;
    let after = live_following(&bus, "projection").await;
    let payloads: Vec<String> = after.seen().into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        payloads,
        vec!["after"; 4],
        "only what the group has not committed"
    );
    drop(bus);
    stop(supervisor).await;
}

#[tokio::test]
async fn compacted_topics_keep_the_newest_record_per_key_but_live_readers_see_all() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bus.sqlite");
    let (bus, supervisor) = open(&path, 1).await;
    bus.ensure_topics(&[topic("state", true)])
        .await
        .expect("topic");
    let live = Arc::new(Collect::default());
    bus.subscribe(Subscription::broadcast("live", &["state"]), live.clone())
        .await
        .expect("live");
    for (key, value) in [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3")] {
        bus.publish(vec![record("state", key, value)])
            .await
            .expect("published");
    }
    assert_eq!(
        live.wait_for(4).await.len(),
        4,
        "a live reader sees every change"
    );
    tokio::time::sleep(TRIM_EVERY + Duration::from_millis(300)).await;
    let late = Arc::new(Collect::default());
    bus.subscribe(Subscription::broadcast("late", &["state"]), late.clone())
        .await
        .expect("late");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut newest = late.seen();
    newest.sort();
    assert_eq!(
        newest,
        vec![("a".into(), "3".into()), ("b".into(), "1".into())]
    );
    drop(bus);
    stop(supervisor).await;

    let (bus, supervisor) = open(&path, 1).await;
    let reopened = Arc::new(Collect::default());
    bus.subscribe(
        Subscription::broadcast("again", &["state"]),
        reopened.clone(),
    )
    .await
    .expect("again");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(reopened.seen().len(), 2, "compaction is durable");
    drop(bus);
    stop(supervisor).await;
}

/// The newest payload of each key a new broadcast reader of `topic` sees.
async fn newest_seen(bus: &MemoryBus, topic: &str, count: usize) -> HashMap<String, String> {
    let reader = Arc::new(Collect::default());
    bus.subscribe(Subscription::broadcast("reader", &[topic]), reader.clone())
        .await
        .expect("reader");
    reader.wait_for(count).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    reader.seen().into_iter().collect()
}

#[tokio::test]
async fn a_compacted_topic_keeps_in_memory_only_what_a_reader_still_needs() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("bus.sqlite");
    let (bus, supervisor) = open(&path, 2).await;
    bus.ensure_topics(&[topic("state", true)])
        .await
        .expect("topic");
    let keeper = Arc::new(Collect::default());
    bus.subscribe(Subscription::group("keeper", &["state"]), keeper.clone())
        .await
        .expect("keeper");
    for version in ["1", "2"] {
        let records = (0..100)
            .map(|n| record("state", &format!("k{n}"), version))
            .collect();
        bus.publish(records).await.expect("published");
    }
    assert_eq!(keeper.wait_for(200).await.len(), 200);
    tokio::time::sleep(TRIM_EVERY * 3).await;
    assert_eq!(
        bus.records_in_memory(),
        0,
        "every reader passed them: the file alone keeps them"
    );
    let newest = newest_seen(&bus, "state", 100).await;
    assert_eq!(newest.len(), 100, "a new reader reads them from the file");
    assert!(newest.values().all(|value| value == "2"), "{newest:?}");

    // A new record of a key whose older one is in the file only replaces it
    // there too.
    bus.publish(vec![record("state", "k7", "3")])
        .await
        .expect("published");
    keeper.wait_for(201).await;
    tokio::time::sleep(TRIM_EVERY * 3).await;
    drop(bus);
    stop(supervisor).await;
    let (_, stored_keys) = {
        let mut connection = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("log");
        let rows: Vec<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT record_key, payload FROM bus_latest WHERE topic = 'state'
             UNION ALL SELECT record_key, payload FROM bus_records WHERE topic = 'state'
             ORDER BY record_key",
        )
        .fetch_all(&mut connection)
        .await
        .expect("rows");
        ((), rows)
    };
    assert_eq!(stored_keys.len(), 100, "one record per key in the file");
    assert!(stored_keys.contains(&("k7".to_owned(), b"3".to_vec())));

    // A restart loads none of what the durable group committed.
    let (bus, supervisor) = open(&path, 2).await;
    assert_eq!(bus.records_in_memory(), 0, "nothing replayed into memory");
    let newest = newest_seen(&bus, "state", 100).await;
    assert_eq!(newest.len(), 100);
    assert_eq!(newest.get("k7").map(String::as_str), Some("3"));
    let keeper = Arc::new(Collect::default());
    bus.subscribe(Subscription::group("keeper", &["state"]), keeper.clone())
        .await
        .expect("keeper again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        keeper.seen().is_empty(),
        "the durable group resumes where it was: {:?}",
        keeper.seen()
    );
    drop(bus);
    stop(supervisor).await;
}

#[tokio::test]
async fn publishing_to_an_unknown_topic_is_refused() {
    let (_supervisor, spawner) = Supervisor::new();
    let bus = MemoryBus::volatile(1, Metrics::default(), &spawner);
    let refused = bus.publish(vec![record("nope", "k", "v")]).await;
    assert!(matches!(refused, Err(BusError::UnknownTopic(name)) if name == "nope"));
}

/// The schema of the bus log as the first version of the bus wrote it,
/// before topics named their partitioner and before `schema_migrations`.
const FIRST_LOG_SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS bus_topics (
        name TEXT PRIMARY KEY,
        partitions INTEGER NOT NULL,
        compacted INTEGER NOT NULL
    );
    CREATE TABLE IF NOT EXISTS bus_records (
        topic TEXT NOT NULL,
        part INTEGER NOT NULL,
        record_offset INTEGER NOT NULL,
        record_key TEXT NOT NULL,
        headers TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (topic, part, record_offset)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS bus_log_end (
        topic TEXT NOT NULL,
        part INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (topic, part)
    ) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS bus_group_offsets (
        group_id TEXT NOT NULL,
        topic TEXT NOT NULL,
        part INTEGER NOT NULL,
        next_offset INTEGER NOT NULL,
        PRIMARY KEY (group_id, topic, part)
    ) WITHOUT ROWID;";

/// The table of topics as the bus wrote it once topics named their
/// partitioner, still without `schema_migrations`; its other tables were
/// those of [`FIRST_LOG_SCHEMA`].
const PARTITIONER_TOPICS: &str = "
    CREATE TABLE bus_topics (
        name TEXT PRIMARY KEY,
        partitions INTEGER NOT NULL,
        compacted INTEGER NOT NULL,
        partitioner TEXT NOT NULL
    );";

/// Runs `sql` on the SQLite file at `path`, creating it if needed.
async fn write_log(path: &Path, sql: &'static str) {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .expect("log file");
    sqlx::raw_sql(sql)
        .execute(&mut connection)
        .await
        .expect("log written");
    connection.close().await.expect("closed");
}

/// What the log file at `path` says: each topic's stored partitioner, and
/// the bus migrations it records, in order.
async fn stored(path: &Path) -> (Vec<(String, String)>, Vec<(i64, String)>) {
    let options = SqliteConnectOptions::new().filename(path);
    let mut connection = SqliteConnection::connect_with(&options)
        .await
        .expect("log file");
    let partitioners = sqlx::query_as("SELECT name, partitioner FROM bus_topics ORDER BY name")
        .fetch_all(&mut connection)
        .await
        .expect("topics");
    let migrations = sqlx::query_as(
        "SELECT version, name FROM schema_migrations WHERE scope = 'bus' ORDER BY version",
    )
    .fetch_all(&mut connection)
    .await
    .expect("migrations");
    connection.close().await.expect("closed");
    (partitioners, migrations)
}

/// Both bus migrations, as `schema_migrations` lists them.
fn bus_migrations() -> Vec<(i64, String)> {
    vec![
        (1, "0001_log".to_owned()),
        (2, "0002_topic_partitioner".to_owned()),
        (3, "0003_compacted_latest".to_owned()),
    ]
}

/// The partitioner topic `name` of `bus` places keys with.
fn partitioner_of(bus: &MemoryBus, name: &str) -> Partitioner {
    bus.inner.shared.topic(name).expect("topic").partitioner
}

#[tokio::test]
async fn a_log_of_the_first_schema_keeps_its_records_offsets_and_fnv1a_placement() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bus.sqlite");
    write_log(&path, FIRST_LOG_SCHEMA).await;
    write_log(
        &path,
        "INSERT INTO bus_topics VALUES ('old', 4, 0);
         INSERT INTO bus_records VALUES
             ('old', 0, 0, 'a', '[]', X'6669727374', 1700000000000),
             ('old', 0, 1, 'a', '[[\"trace\",\"t-1\"]]', X'7365636F6E64', 1700000000001),
             ('old', 3, 0, 'b', '[]', X'7468697264', 1700000000002);
         INSERT INTO bus_log_end VALUES ('old', 2, 5);
         INSERT INTO bus_group_offsets VALUES ('g', 'old', 2, 5);",
    )
    .await;

    let (bus, supervisor) = open(&path, 4).await;
    let kept: Vec<_> = bus
        .records("old")
        .iter()
        .map(|record| {
            (
                record.partition,
                record.offset,
                record.key.clone(),
                record.headers.clone(),
                String::from_utf8_lossy(&record.payload).into_owned(),
            )
        })
        .collect();
    assert_eq!(
        kept,
        vec![
            (0, 0, "a".to_owned(), vec![], "first".to_owned()),
            (
                0,
                1,
                "a".to_owned(),
                vec![("trace".to_owned(), "t-1".to_owned())],
                "second".to_owned()
            ),
            (3, 0, "b".to_owned(), vec![], "third".to_owned()),
        ],
        "every record survives the upgrade"
    );
    assert_eq!(
        lock(&bus.inner.shared.committed)
            .get(&("g".to_owned(), "old".to_owned(), 2))
            .copied(),
        Some(5),
        "committed offsets survive the upgrade"
    );
    let topic = bus.inner.shared.topic("old").expect("topic");
    assert_eq!(
        *topic.partitions[2].end.borrow(),
        5,
        "a partition trimmed empty still ends where it did"
    );
    assert_eq!(partitioner_of(&bus, "old"), Partitioner::Fnv1a);
    bus.publish(vec![record("old", "order-7", "fourth")])
        .await
        .expect("published");
    let appended = bus
        .records("old")
        .into_iter()
        .find(|record| record.key == "order-7")
        .expect("appended");
    assert_eq!(
        appended.partition,
        Partitioner::Fnv1a.partition("order-7", 4),
        "new records of an old topic are placed as before"
    );
    drop(bus);
    stop(supervisor).await;

    let (partitioners, migrations) = stored(&path).await;
    assert_eq!(partitioners, vec![("old".to_owned(), "fnv1a".to_owned())]);
    assert_eq!(migrations, bus_migrations());

    // Opened again, nothing is migrated twice and nothing is lost.
    let (bus, supervisor) = open(&path, 4).await;
    assert_eq!(bus.records("old").len(), 4);
    assert_eq!(partitioner_of(&bus, "old"), Partitioner::Fnv1a);
    drop(bus);
    stop(supervisor).await;
    assert_eq!(stored(&path).await.1, bus_migrations());
}

#[tokio::test]
async fn a_log_whose_topics_name_their_partitioner_is_recognised_without_migrating_it_again() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bus.sqlite");
    write_log(&path, PARTITIONER_TOPICS).await;
    write_log(&path, FIRST_LOG_SCHEMA).await;
    write_log(
        &path,
        "INSERT INTO bus_topics VALUES ('new', 2, 0, 'murmur2'), ('old', 2, 1, 'fnv1a');
         INSERT INTO bus_records VALUES ('new', 1, 5, 'k', '[]', X'76', 1700000000000);
         INSERT INTO bus_log_end VALUES ('old', 0, 9);",
    )
    .await;

    let (bus, supervisor) = open(&path, 2).await;
    assert_eq!(partitioner_of(&bus, "new"), Partitioner::Murmur2);
    assert_eq!(partitioner_of(&bus, "old"), Partitioner::Fnv1a);
    let kept = bus.records("new");
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].partition, kept[0].offset), (1, 5));
    // A key of partition 0, which a trim emptied at offset 9.
    let key = (0..)
        .map(|n| format!("k{n}"))
        .find(|key| Partitioner::Fnv1a.partition(key, 2) == 0)
        .expect("a key of partition 0");
    bus.publish(vec![record("old", &key, "v")])
        .await
        .expect("published");
    let appended = bus.records("old");
    assert_eq!(appended.len(), 1);
    assert_eq!(
        (appended[0].partition, appended[0].offset),
        (0, 9),
        "an old topic places keys with FNV-1a and goes on from where it ended"
    );
    drop(bus);
    stop(supervisor).await;

    let (partitioners, migrations) = stored(&path).await;
    assert_eq!(
        partitioners,
        vec![
            ("new".to_owned(), "murmur2".to_owned()),
            ("old".to_owned(), "fnv1a".to_owned())
        ]
    );
    assert_eq!(migrations, bus_migrations());
}

#[tokio::test]
async fn a_fresh_log_creates_its_topics_with_murmur2() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("bus.sqlite");
    let (bus, supervisor) = open(&path, 4).await;
    bus.ensure_topics(&[topic("fresh", false)])
        .await
        .expect("topic");
    assert_eq!(partitioner_of(&bus, "fresh"), Partitioner::Murmur2);
    drop(bus);
    stop(supervisor).await;

    let (partitioners, migrations) = stored(&path).await;
    assert_eq!(
        partitioners,
        vec![("fresh".to_owned(), "murmur2".to_owned())]
    );
    assert_eq!(migrations, bus_migrations());
    let (bus, supervisor) = open(&path, 4).await;
    assert_eq!(partitioner_of(&bus, "fresh"), Partitioner::Murmur2);
    drop(bus);
    stop(supervisor).await;
}
