//! What distributed mode runs on: the Apache Kafka broker (the test run's
//! or a test's own), a fresh PostgreSQL database per test, and a tap that
//! reads what a topic holds.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};
use uuid::Uuid;

use super::{Backend, Shop, WAIT};

/// The Apache Kafka broker of a distributed test.
pub enum Broker {
    /// The test run's broker, `SHOP_TEST_KAFKA_BROKERS`; the test keeps to
    /// its own topic prefix on it.
    Shared(String),
    /// A broker of this test's alone.
    Own(Box<OwnBroker>),
}

impl Broker {
    /// The test run's broker, or with `own` (or without one) a broker of
    /// the test's own that keeps its log in `dir`.
    pub async fn start(dir: PathBuf, own: bool) -> Broker {
        match std::env::var("SHOP_TEST_KAFKA_BROKERS") {
            Ok(brokers) if !own && !brokers.is_empty() => Broker::Shared(brokers),
            _ => {
                let mut broker = OwnBroker {
                    dir,
                    port: free_port().await,
                    controller: free_port().await,
                    child: None,
                    starts: 0,
                };
                broker.start().await;
                Broker::Own(Box::new(broker))
            }
        }
    }

    /// The bootstrap address clients use.
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::Shared(brokers) => brokers.clone(),
            Broker::Own(broker) => format!("127.0.0.1:{}", broker.port),
        }
    }
}

/// The topics of one test's shop on the test run's broker, deleted when the
/// test ends: a run creates about a thousand, and a broker that serves run
/// after run (`SHOP_TEST_KAFKA_BROKERS`) would otherwise keep them all, until
/// its heap runs out.
pub(super) struct SharedTopics {
    brokers: String,
    prefix: String,
}

impl SharedTopics {
    /// The topics `prefix` begins on `broker`, when it is the shared one.
    pub(super) fn of(broker: &Broker, prefix: &str) -> Option<SharedTopics> {
        match broker {
            Broker::Shared(brokers) => Some(SharedTopics {
                brokers: brokers.clone(),
                prefix: prefix.to_owned(),
            }),
            Broker::Own(_) => None,
        }
    }
}

impl Drop for SharedTopics {
    fn drop(&mut self) {
        let (brokers, prefix) = (self.brokers.clone(), self.prefix.clone());
        // Drop cannot await; a thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(delete_topics(&brokers, &prefix));
        })
        .join();
    }
}

/// Deletes every topic whose name begins with `prefix`; a failure leaves
/// them, as a test that could not clean up would.
async fn delete_topics(brokers: &str, prefix: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;

    let Ok(admin) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("log_level", "3")
        .create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let Ok(metadata) = admin.inner().fetch_metadata(None, Duration::from_secs(5)) else {
        return;
    };
    let names: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|topic| topic.name())
        .filter(|name| name.starts_with(prefix))
        .collect();
    if !names.is_empty() {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(5)));
        let _ = admin.delete_topics(&names, &options).await;
    }
}

/// Apache Kafka in the foreground of `scripts/kafka.sh run`, which formats
/// its log dir once and then becomes the broker's JVM, so that killing the
/// child kills the broker. Stopped and started again on the same ports and
/// log dir, it comes back with every record and committed offset.
pub struct OwnBroker {
    dir: PathBuf,
    port: u16,
    controller: u16,
    child: Option<Child>,
    /// Starts so far: each start adds one "Kafka Server started" to the log.
    starts: usize,
}

impl OwnBroker {
    /// Longest a broker may take to start: a JVM on a busy 2-core machine.
    const START: Duration = Duration::from_secs(120);

    pub(super) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kafka.log")).unwrap_or_default()
    }

    async fn start(&mut self) {
        assert!(self.child.is_none(), "the broker runs already");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/kafka.sh");
        let mut child = Command::new("bash")
            .arg(script)
            .arg("run")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(self.controller.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("bash runs scripts/kafka.sh");
        self.starts += 1;
        let deadline = tokio::time::Instant::now() + Self::START;
        while self.log().matches("Kafka Server started").count() < self.starts {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "Apache Kafka did not start ({status}). Distributed tests need it: run \
                     scripts/test.sh, which assembles it from Maven Central (Java 17 and Maven \
                     needed), or start one with `scripts/kafka.sh start DIR` and point \
                     SHOP_TEST_KAFKA_BROKERS at the address it prints. Its log:\n{}",
                    self.log()
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "Apache Kafka did not start within {:?}; its log:\n{}",
                Self::START,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
    }

    /// Kills the broker as a crash would.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("the broker runs");
        child.kill().await.expect("broker killed");
    }
}

/// A fresh PostgreSQL database, dropped at the end of the test.
pub(super) struct TestDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    fn admin_url() -> String {
        std::env::var("SHOP_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    pub(super) async fn create() -> TestDatabase {
        sqlx::any::install_default_drivers();
        let admin_url = Self::admin_url();
        let name = format!("shop_test_{}", Uuid::new_v4().simple());
        let mut admin = connect_admin(&admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("test database created");
        TestDatabase { admin_url, name }
    }

    pub(super) fn url(&self) -> String {
        match self.admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{}", self.name),
            None => format!("{}/{}", self.admin_url, self.name),
        }
    }
}

async fn connect_admin(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::AnyConnection::connect(url)
        .await
        .unwrap_or_else(|error| {
            panic!(
                "distributed tests need PostgreSQL at {url} ({error}). Start one (Debian: \
             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`), \
             or run scripts/test.sh, which does; SHOP_TEST_DATABASE_URL may name another server."
            )
        })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await; a thread with its own runtime can.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(runtime) = runtime {
                runtime.block_on(async {
                    let mut admin = connect_admin(&url).await;
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                });
            }
        })
        .join();
    }
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    listener.local_addr().expect("address").port()
}

impl Shop {
    /// The broker's address, in distributed mode.
    pub fn broker(&self) -> Option<String> {
        match &self.backend {
            Backend::Distributed { broker, .. } => Some(broker.bootstrap()),
            Backend::Embedded(_) => None,
        }
    }

    /// What this shop puts before its topic and group names, in
    /// distributed mode.
    pub fn topic_prefix(&self) -> Option<String> {
        match &self.backend {
            Backend::Distributed { topic_prefix, .. } => Some(topic_prefix.clone()),
            Backend::Embedded(_) => None,
        }
    }

    /// The broker of a shop started with [`Options::own_broker`].
    fn own_broker(&mut self) -> &mut OwnBroker {
        match &mut self.backend {
            Backend::Distributed {
                broker: Broker::Own(broker),
                ..
            } => broker,
            _ => panic!("only a distributed shop with `own_broker` may stop its broker"),
        }
    }

    /// Kills the broker with SIGKILL, as a crash would: connections reset,
    /// new ones refused.
    pub async fn stop_broker(&mut self) {
        self.own_broker().kill().await;
    }

    /// Starts the killed broker again on its ports and its log.
    pub async fn start_broker(&mut self) {
        self.own_broker().start().await;
    }
}

/// A bus handler that keeps every record it is given, to read what a topic
/// holds from the test's side.
#[derive(Default)]
pub struct Tap {
    records: std::sync::Mutex<Vec<std::sync::Arc<shop_backend::bus::Record>>>,
}

#[async_trait::async_trait]
impl shop_backend::bus::Handler for Tap {
    async fn handle(
        &self,
        batch: &[std::sync::Arc<shop_backend::bus::Record>],
    ) -> Result<(), shop_backend::bus::HandlerError> {
        self.records
            .lock()
            .expect("tap lock")
            .extend(batch.iter().cloned());
        Ok(())
    }
}

impl Tap {
    /// Every record so far.
    pub fn records(&self) -> Vec<std::sync::Arc<shop_backend::bus::Record>> {
        self.records.lock().expect("tap lock").clone()
    }

    /// The records once there are `count`, or all there are after [`WAIT`].
    pub async fn wait_for(&self, count: usize) -> Vec<std::sync::Arc<shop_backend::bus::Record>> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let records = self.records();
            if records.len() >= count || tokio::time::Instant::now() >= deadline {
                return records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
