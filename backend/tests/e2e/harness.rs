//! Starts the real shop and drives it as customers do: through the
//! WebSocket client of `shop-client` and plain HTTP.
//!
//! - Embedded mode: one `shop-backend` process on a free port with a fresh
//!   data directory.
//! - Distributed mode: Apache Kafka, a fresh PostgreSQL database, and the
//!   four services as separate processes. Tests share the broker of the test
//!   run (`SHOP_TEST_KAFKA_BROKERS`, which `scripts/test.sh` starts), each
//!   under a topic and consumer-group prefix of its own; a test that stops
//!   the broker, or a run without a shared one, starts its own broker with
//!   `scripts/kafka.sh run`.
//!
//! Distributed mode needs Apache Kafka (assembled by `scripts/kafka.sh` with
//! Java and Maven) and a PostgreSQL server; when one is missing the test
//! fails and says how to get it (`scripts/test.sh` provides both).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use shop_client::{Client, Push, websocket_url};
use shop_shared::domain::{CancelReason, Order, OrderStatus, Product, TimelineEvent};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::broadcast;
use uuid::Uuid;

/// How long a test waits for the shop to reach an expected state.
pub const WAIT: Duration = Duration::from_secs(30);

pub const GOOD_CARD: &str = "4242 4242 4242 4242";
pub const DECLINED_CARD: &str = "4000 0000 0000 0002";
/// A delayed payment method of the local checkout: settles a few seconds
/// after checkout.
pub const DELAYED_CARD: &str = "4000 0000 0000 1000";

/// Products in the reference catalogue.
const REFERENCE_PRODUCTS: usize = 3;

/// The webhook secret distributed tests give the payment service.
const TEST_WEBHOOK_SECRET: &str = "whsec_distributed_test_secret";

/// Which way the shop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Embedded,
    Distributed,
}

/// How to start the shop.
#[derive(Clone)]
pub struct Options {
    pub pay_ttl: &'static str,
    /// TOML catalogue text; the reference shop when absent.
    pub catalog: Option<String>,
    /// Pay through Stripe (a stand-in for its API) instead of the local
    /// checkout.
    pub stripe: Option<StripeKeys>,
    /// Distributed mode: a Kafka broker of the test's own, which it may stop
    /// and start, instead of the test run's shared one.
    pub own_broker: bool,
}

impl Options {
    /// The defaults, with orders payable for `ttl` (`"2s"`, …).
    pub fn paying_within(ttl: &'static str) -> Options {
        Options {
            pay_ttl: ttl,
            ..Options::default()
        }
    }
}

/// Where the Stripe API is and the keys to use it.
#[derive(Clone)]
pub struct StripeKeys {
    pub api_base: String,
    pub secret_key: String,
    pub webhook_secret: String,
}

impl StripeKeys {
    fn env(&self) -> Vec<(String, String)> {
        vec![
            ("STRIPE_API_BASE".to_owned(), self.api_base.clone()),
            ("STRIPE_SECRET_KEY".to_owned(), self.secret_key.clone()),
            (
                "STRIPE_WEBHOOK_SECRET".to_owned(),
                self.webhook_secret.clone(),
            ),
        ]
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            pay_ttl: "5m",
            catalog: None,
            stripe: None,
            own_broker: false,
        }
    }
}

/// A service of distributed mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Gateway,
    Order,
    Stock,
    Payment,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Gateway,
        Service::Stock,
        Service::Order,
        Service::Payment,
    ];

    fn name(self) -> &'static str {
        match self {
            Service::Gateway => "gateway",
            Service::Order => "order",
            Service::Stock => "stock",
            Service::Payment => "payment",
        }
    }
}

/// One `shop-backend` process, restartable on the same port.
struct Process {
    name: String,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    async fn spawn(&mut self) {
        let mut command = Command::new(env!("CARGO_BIN_EXE_shop-backend"));
        command
            .args(&self.args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .env("SHOP_LOG", "info,shop_backend=debug,sqlx=warn")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log file");
        command.stderr(log);
        let mut child = command.spawn().expect("shop-backend starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} printed no address in time; log:\n{}",
                    self.name,
                    self.log_text()
                )
            })
            .expect("stdout readable")
            .unwrap_or_else(|| {
                panic!(
                    "{} exited before listening; log:\n{}",
                    self.name,
                    self.log_text()
                )
            });
        let address = first
            .split("http://")
            .nth(1)
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .trim()
            .to_owned();
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.port = address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("port");
        self.child = Some(child);
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn terminate(&mut self) {
        let mut child = self.child.take().expect("running");
        let pid = child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} did not stop on SIGTERM; log:\n{}",
                    self.name,
                    self.log_text()
                )
            })
            .expect("wait");
        assert!(
            exit.success(),
            "{} exited with {exit} on SIGTERM; log:\n{}",
            self.name,
            self.log_text()
        );
    }

    async fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().await.expect("killed");
    }

    /// Waits until `/healthz` answers 200.
    async fn wait_healthy(&self, http: &reqwest::Client) {
        let url = format!("{}/healthz", self.base());
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} never became healthy; log:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

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

    fn log(&self) -> String {
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
struct TestDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    fn admin_url() -> String {
        std::env::var("SHOP_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
    }

    async fn create() -> TestDatabase {
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

    fn url(&self) -> String {
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

/// The processes of one test's shop.
enum Backend {
    Embedded(Process),
    Distributed {
        broker: Broker,
        /// Before every topic and consumer group of this test's shop.
        topic_prefix: String,
        services: Vec<(Service, Process)>,
        _database: TestDatabase,
    },
}

/// A running shop.
pub struct Shop {
    pub mode: Mode,
    pub base: String,
    pub ws_url: String,
    dir: tempfile::TempDir,
    backend: Backend,
    http: reqwest::Client,
    stripe: Option<StripeKeys>,
}

async fn free_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("free port");
    listener.local_addr().expect("address").port()
}

impl Shop {
    pub async fn start(mode: Mode) -> Shop {
        Shop::start_with(mode, Options::default()).await
    }

    pub async fn start_with(mode: Mode, options: Options) -> Shop {
        let dir = tempfile::tempdir().expect("temporary directory");
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("HTTP client");
        let mut catalog_args: Vec<OsString> = Vec::new();
        if let Some(catalog) = &options.catalog {
            let path = dir.path().join("catalog.toml");
            std::fs::write(&path, catalog).expect("catalogue written");
            catalog_args = vec!["--catalog".into(), path.into()];
        }
        let backend = match mode {
            Mode::Embedded => {
                let mut args: Vec<OsString> = vec![
                    "--data-dir".into(),
                    dir.path().join("data").into(),
                    "--pay-ttl".into(),
                    options.pay_ttl.into(),
                ];
                args.extend(catalog_args);
                let env = options.stripe.as_ref().map(StripeKeys::env);
                let mut process = Process {
                    name: "shop-backend".into(),
                    args,
                    env: env.unwrap_or_default(),
                    port: 0,
                    log: dir.path().join("backend.log"),
                    child: None,
                };
                process.spawn().await;
                process.wait_healthy(&http).await;
                Backend::Embedded(process)
            }
            Mode::Distributed => {
                let database = TestDatabase::create().await;
                let topic_prefix = format!("test-{}.", Uuid::new_v4().simple());
                let broker = Broker::start(dir.path().join("kafka"), options.own_broker).await;
                let env = vec![
                    ("SHOP_KAFKA_BROKERS".to_owned(), broker.bootstrap()),
                    ("SHOP_KAFKA_TOPIC_PREFIX".to_owned(), topic_prefix.clone()),
                    ("SHOP_DATABASE_URL".to_owned(), database.url()),
                    ("SHOP_DATABASE_POOL".to_owned(), "4".to_owned()),
                    (
                        "SHOP_TOKEN_SECRET".to_owned(),
                        "distributed-test-token-secret".to_owned(),
                    ),
                    (
                        "SHOP_WEBHOOK_SECRET".to_owned(),
                        TEST_WEBHOOK_SECRET.to_owned(),
                    ),
                    ("SHOP_PAY_TTL".to_owned(), options.pay_ttl.to_owned()),
                ];
                let stripe_env = options.stripe.as_ref().map(StripeKeys::env);
                let env = [env, stripe_env.unwrap_or_default()].concat();
                let mut services: Vec<(Service, Process)> = Vec::new();
                let mut gateway_url = String::new();
                for service in Service::ALL {
                    let mut args: Vec<OsString> = vec![service.name().into()];
                    if service == Service::Stock {
                        args.extend(catalog_args.iter().cloned());
                    }
                    if service == Service::Payment {
                        args.extend(["--gateway-url".into(), gateway_url.clone().into()]);
                    }
                    let mut process = Process {
                        name: service.name().into(),
                        args,
                        env: env.clone(),
                        port: 0,
                        log: dir.path().join(format!("{}.log", service.name())),
                        child: None,
                    };
                    process.spawn().await;
                    if service == Service::Gateway {
                        gateway_url = process.base();
                    }
                    services.push((service, process));
                }
                for (_, process) in &services {
                    process.wait_healthy(&http).await;
                }
                Backend::Distributed {
                    broker,
                    topic_prefix,
                    services,
                    _database: database,
                }
            }
        };
        let base = match &backend {
            Backend::Embedded(process) => process.base(),
            Backend::Distributed { services, .. } => services[0].1.base(),
        };
        let shop = Shop {
            mode,
            ws_url: websocket_url(&base),
            base,
            dir,
            backend,
            http,
            stripe: options.stripe,
        };
        let products = options
            .catalog
            .as_deref()
            .map_or(REFERENCE_PRODUCTS, |catalog| {
                catalog.matches("[[products]]").count()
            });
        shop.wait_for_catalogue(products).await;
        shop
    }

    /// Waits until the gateway knows all `count` products (in distributed
    /// mode the stock service publishes them one by one after starting).
    async fn wait_for_catalogue(&self, count: usize) {
        let client = self.customer().await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while client.products().await.expect("products").len() < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the catalogue never fully reached the gateway"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        client.close();
    }

    fn processes(&mut self) -> Vec<&mut Process> {
        match &mut self.backend {
            Backend::Embedded(process) => vec![process],
            Backend::Distributed { services, .. } => {
                services.iter_mut().map(|(_, process)| process).collect()
            }
        }
    }

    /// The first instance of `service` (distributed mode).
    fn service(&mut self, service: Service) -> &mut Process {
        match &mut self.backend {
            Backend::Distributed { services, .. } => services
                .iter_mut()
                .find(|(which, _)| *which == service)
                .map(|(_, process)| process)
                .expect("service exists"),
            Backend::Embedded(_) => {
                panic!("services are separate processes only in distributed mode")
            }
        }
    }

    /// Everything the backend processes logged so far.
    pub fn log(&self) -> String {
        let mut logs = String::new();
        let processes: Vec<&Process> = match &self.backend {
            Backend::Embedded(process) => vec![process],
            Backend::Distributed { services, .. } => {
                services.iter().map(|(_, process)| process).collect()
            }
        };
        for process in processes {
            logs.push_str(&format!(
                "==== {} ====\n{}",
                process.name,
                process.log_text()
            ));
        }
        if let Backend::Distributed {
            broker: Broker::Own(broker),
            ..
        } = &self.backend
        {
            logs.push_str(&format!("==== kafka ====\n{}", broker.log()));
        }
        logs
    }

    /// The webhook signing secret of the backend.
    pub fn webhook_secret(&self) -> String {
        if let Some(stripe) = &self.stripe {
            return stripe.webhook_secret.clone();
        }
        match self.mode {
            Mode::Distributed => TEST_WEBHOOK_SECRET.to_owned(),
            Mode::Embedded => {
                let path = self.dir.path().join("data").join("secrets.json");
                let text = std::fs::read_to_string(&path).expect("secrets file");
                let secrets: serde_json::Value = serde_json::from_str(&text).expect("secrets JSON");
                secrets["webhook_secret"]
                    .as_str()
                    .expect("webhook secret")
                    .to_owned()
            }
        }
    }

    /// Where provider webhooks go: `/stripe/webhook` of the payment service.
    pub fn webhook_url(&self) -> String {
        let base = match &self.backend {
            Backend::Embedded(process) => process.base(),
            Backend::Distributed { services, .. } => services
                .iter()
                .find(|(service, _)| *service == Service::Payment)
                .map(|(_, process)| process.base())
                .expect("payment service"),
        };
        format!("{base}/stripe/webhook")
    }

    /// The base URLs of every backend process, for `/healthz` and `/metrics`.
    pub fn process_urls(&self) -> Vec<String> {
        match &self.backend {
            Backend::Embedded(process) => vec![process.base()],
            Backend::Distributed { services, .. } => services
                .iter()
                .filter(|(_, process)| process.child.is_some())
                .map(|(_, process)| process.base())
                .collect(),
        }
    }

    /// Waits until the payment service has heard from the checkout that a
    /// session it closed itself (a cancelled order's) is expired, as Stripe
    /// announces one expired through its API: from then on the session
    /// takes no payment. `count` such sessions in all.
    pub async fn wait_sessions_closed(&self, count: f64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self
            .metric(
                "shop_webhooks_total",
                &[("outcome", "session_already_closed")],
            )
            .await
            < count
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no checkout.session.expired arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The sum of metric `name` over every backend process, counting the
    /// series whose labels include each of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.metric_per_process(name, labels).await.iter().sum()
    }

    /// Metric `name` of each backend process (summed over the series whose
    /// labels include each of `labels`), in process order.
    pub async fn metric_per_process(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let mut values = Vec::new();
        for base in self.process_urls() {
            let text = self
                .http
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("metrics answer")
                .text()
                .await
                .expect("metrics text");
            let mut total = 0.0;
            for line in text.lines().filter(|line| !line.starts_with('#')) {
                let Some((series, value)) = line.rsplit_once(' ') else {
                    continue;
                };
                let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
                if metric == name
                    && labels
                        .iter()
                        .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\"")))
                {
                    total += value.parse::<f64>().unwrap_or(0.0);
                }
            }
            values.push(total);
        }
        values
    }

    /// The services of the processes [`Shop::process_urls`] names, in order.
    pub fn process_services(&self) -> Vec<Service> {
        match &self.backend {
            Backend::Embedded(_) => Vec::new(),
            Backend::Distributed { services, .. } => services
                .iter()
                .filter(|(_, process)| process.child.is_some())
                .map(|(service, _)| *service)
                .collect(),
        }
    }

    /// Whether every backend process answers `/healthz` with 200.
    pub async fn all_healthy(&self) -> bool {
        for base in self.process_urls() {
            match self.http.get(format!("{base}/healthz")).send().await {
                Ok(response) if response.status() == 200 => {}
                _ => return false,
            }
        }
        true
    }

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

    /// A new customer.
    pub async fn customer(&self) -> Client {
        Client::connect(&self.ws_url, None)
            .await
            .expect("customer connects")
    }

    /// The customer of `token`, connecting again.
    pub async fn returning(&self, token: &str) -> Client {
        Client::connect(&self.ws_url, Some(token))
            .await
            .expect("customer reconnects")
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Submits the checkout form at `checkout_url` with `card`.
    pub async fn pay(&self, checkout_url: &str, card: &str) -> reqwest::Response {
        self.http
            .post(checkout_url)
            .form(&[
                ("card_number", card),
                ("expiry", "12/34"),
                ("cvc", "123"),
                ("name", "Test Buyer"),
            ])
            .send()
            .await
            .expect("checkout answers")
    }

    /// Stops every backend process with SIGTERM and waits for it to exit.
    pub async fn stop(&mut self) {
        for process in self.processes() {
            process.terminate().await;
        }
    }

    /// Kills every backend process with SIGKILL, as a crash would.
    pub async fn kill(&mut self) {
        for process in self.processes() {
            process.kill().await;
        }
    }

    /// Starts every backend process again on the same ports and data.
    pub async fn restart(&mut self) {
        let http = self.http.clone();
        for process in self.processes() {
            assert!(process.child.is_none(), "stop or kill first");
            process.spawn().await;
        }
        for process in self.processes() {
            process.wait_healthy(&http).await;
        }
    }

    /// Kills one service with SIGKILL (distributed mode).
    pub async fn kill_service(&mut self, service: Service) {
        self.service(service).kill().await;
    }

    /// Starts a killed service again on its port (distributed mode).
    pub async fn restart_service(&mut self, service: Service) {
        let http = self.http.clone();
        let process = self.service(service);
        process.spawn().await;
        process.wait_healthy(&http).await;
    }

    /// Starts one more instance of `service` (distributed mode).
    pub async fn add_instance(&mut self, service: Service) {
        let http = self.http.clone();
        let Backend::Distributed { services, .. } = &mut self.backend else {
            panic!("instances exist only in distributed mode");
        };
        let (_, first) = services
            .iter()
            .find(|(which, _)| *which == service)
            .expect("service exists");
        let count = services
            .iter()
            .filter(|(which, _)| *which == service)
            .count();
        let mut process = Process {
            name: format!("{}-{}", service.name(), count + 1),
            args: first.args.clone(),
            env: first.env.clone(),
            port: 0,
            log: self
                .dir
                .path()
                .join(format!("{}-{}.log", service.name(), count + 1)),
            child: None,
        };
        process.spawn().await;
        process.wait_healthy(&http).await;
        services.push((service, process));
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

impl Drop for Shop {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- backend logs (last lines) ----");
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            for line in lines.iter().skip(lines.len().saturating_sub(150)) {
                eprintln!("{line}");
            }
        }
    }
}

/// Runs each named scenario (an `async fn(Mode)`) as two tests, one per
/// mode, in modules `embedded` and `distributed`.
#[macro_export]
macro_rules! in_both_modes {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::harness::Mode::Embedded).await
                }
            )*
        }
        mod distributed {
            $(
                #[tokio::test]
                async fn $scenario() {
                    super::$scenario($crate::harness::Mode::Distributed).await
                }
            )*
        }
    };
}

/// The product `sku` as `client` sees it now.
pub async fn product(client: &Client, sku: &str) -> Product {
    client
        .products()
        .await
        .expect("products")
        .into_iter()
        .find(|product| product.sku == sku)
        .unwrap_or_else(|| panic!("no product {sku}"))
}

pub async fn available(client: &Client, sku: &str) -> i64 {
    product(client, sku).await.available
}

/// Waits until `sku` has `expected` units available: stock changes reach
/// clients on their own topic, shortly before or after the order's status.
pub async fn wait_available(client: &Client, sku: &str, expected: i64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = available(client, sku).await;
        if now == expected {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{sku} stayed at {now} units available instead of {expected}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Places an order with a fresh idempotency key.
pub async fn place(client: &Client, lines: &[(&str, i64)]) -> Order {
    client
        .place_order(lines, &Uuid::new_v4().to_string())
        .await
        .expect("order placed")
}

/// Places an order and waits until it is RESERVED with a checkout URL.
pub async fn reserve(client: &Client, lines: &[(&str, i64)]) -> Order {
    let order = place(client, lines).await;
    let order = client
        .wait_for_checkout(order.id, WAIT)
        .await
        .expect("checkout ready");
    assert_eq!(order.status, OrderStatus::Reserved, "{order:?}");
    order
}

pub async fn wait_status(client: &Client, order: &Order, status: OrderStatus) -> Order {
    client
        .wait_for_status(order.id, &[status], WAIT)
        .await
        .unwrap_or_else(|error| panic!("order {} never became {status}: {error}", order.id))
}

/// Waits until `order` is cancelled because its payment failed; returns
/// the reason the customer is shown.
pub async fn wait_payment_failed(client: &Client, order: &Order) -> String {
    let cancelled = wait_status(client, order, OrderStatus::Cancelled).await;
    assert_eq!(
        cancelled.cancel_reason,
        Some(CancelReason::PaymentFailed),
        "{cancelled:?}"
    );
    let last = cancelled.timeline.last().expect("a timeline");
    assert_eq!(last.event, TimelineEvent::Cancelled);
    last.detail.clone().expect("a reason")
}

/// Waits until order `id` shows that its payment was refunded.
pub async fn wait_refunded(client: &Client, id: Uuid) -> Order {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let order = client.order(&id.to_string()).await.expect("order");
        if order.refunded {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "order {id} was never refunded: {order:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Everything pushed to a client, gathered as it arrives.
pub struct Pushes {
    receiver: broadcast::Receiver<Push>,
    pub seen: Vec<Push>,
}

impl Pushes {
    pub fn new(client: &Client) -> Pushes {
        Pushes {
            receiver: client.subscribe(),
            seen: Vec::new(),
        }
    }

    /// Takes in whatever has arrived, waiting `quiet` for more.
    pub async fn collect(&mut self, quiet: Duration) {
        while let Ok(Ok(push)) = tokio::time::timeout(quiet, self.receiver.recv()).await {
            self.seen.push(push);
        }
    }

    /// The pushed versions of order `id`.
    pub fn orders(&self, id: Uuid) -> Vec<Order> {
        self.seen
            .iter()
            .filter_map(|push| match push {
                Push::Order(order) if order.id == id => Some(order.clone()),
                _ => None,
            })
            .collect()
    }

    /// The statuses order `id` was pushed in, without repeats.
    pub fn statuses(&self, id: Uuid) -> Vec<OrderStatus> {
        let mut statuses: Vec<OrderStatus> = Vec::new();
        for order in self.orders(id) {
            if statuses.last() != Some(&order.status) {
                statuses.push(order.status);
            }
        }
        statuses
    }

    /// The available quantities pushed for `sku`, in order.
    pub fn availability(&self, sku: &str) -> Vec<i64> {
        self.seen
            .iter()
            .filter_map(|push| match push {
                Push::Product(product) if product.sku == sku => Some(product.available),
                _ => None,
            })
            .collect()
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
