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
//!
//! `process` starts and stops the backend processes, `infrastructure`
//! provides Kafka and PostgreSQL, and `customer` holds what tests do as
//! customers; the tests use them through this module.

mod customer;
mod infrastructure;
mod process;
mod socket;

use std::ffi::OsString;
use std::time::Duration;

use shop_client::websocket_url;
use uuid::Uuid;

pub use customer::{
    DECLINED_CARD, DELAYED_CARD, GOOD_CARD, Pushes, available, place, reserve, wait_available,
    wait_payment_failed, wait_refunded, wait_status,
};
pub use infrastructure::{Broker, Tap};
use infrastructure::{SharedTopics, TestDatabase};
use process::Process;
pub use process::Service;
pub use socket::{Socket, close_code};

/// How long a test waits for the shop to reach an expected state.
pub const WAIT: Duration = Duration::from_secs(30);

/// Products in the reference catalogue.
const REFERENCE_PRODUCTS: usize = 3;

/// The webhook secret distributed tests give the payment service.
const TEST_WEBHOOK_SECRET: &str = "whsec_distributed_test_secret";

/// The operator secret distributed tests give the gateway.
const TEST_OPERATOR_SECRET: &str = "distributed-test-operator-secret";

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
    /// How long after the deadline an order waits for a payment made in time.
    pub settle_grace: &'static str,
    /// Holds the local checkout's webhooks back by this long (`"5s"`, …).
    pub webhook_delay: Option<&'static str>,
    /// More settings, as environment variables of every backend process
    /// (`SHOP_MAX_CONNECTIONS`, …).
    pub env: Vec<(&'static str, String)>,
}

impl Options {
    fn extra_env(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }

    /// The defaults, with orders payable for `ttl` (`"2s"`, …).
    pub fn paying_within(ttl: &'static str) -> Options {
        Options {
            pay_ttl: ttl,
            ..Options::default()
        }
    }

    /// The defaults, with more settings as environment variables.
    pub fn with_env(env: &[(&'static str, &str)]) -> Options {
        Options {
            env: env
                .iter()
                .map(|(name, value)| (*name, (*value).to_owned()))
                .collect(),
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
            settle_grace: "5m",
            webhook_delay: None,
            env: Vec::new(),
        }
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
        /// Declared after the services, so dropped after they were killed.
        _topics: Option<SharedTopics>,
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
        let mut settings = vec![(
            "SHOP_SETTLE_GRACE".to_owned(),
            options.settle_grace.to_owned(),
        )];
        if let Some(delay) = options.webhook_delay {
            settings.push((
                "SHOP_LOCAL_CHECKOUT_WEBHOOK_DELAY".to_owned(),
                delay.to_owned(),
            ));
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
                let stripe_env = options.stripe.as_ref().map(StripeKeys::env);
                let mut process = Process {
                    name: "shop-backend".into(),
                    args,
                    env: [
                        settings,
                        stripe_env.unwrap_or_default(),
                        options.extra_env(),
                    ]
                    .concat(),
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
                    (
                        "SHOP_OPERATOR_SECRET".to_owned(),
                        TEST_OPERATOR_SECRET.to_owned(),
                    ),
                    ("SHOP_PAY_TTL".to_owned(), options.pay_ttl.to_owned()),
                ];
                let stripe_env = options.stripe.as_ref().map(StripeKeys::env);
                let env = [
                    env,
                    settings,
                    stripe_env.unwrap_or_default(),
                    options.extra_env(),
                ]
                .concat();
                let mut services: Vec<(Service, Process)> = Vec::new();
                let mut gateway_url = String::new();
                for service in process::START_ORDER {
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
                    _topics: SharedTopics::of(&broker, &topic_prefix),
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

    /// The data directory of the embedded backend.
    pub fn data_dir(&self) -> std::path::PathBuf {
        assert_eq!(self.mode, Mode::Embedded, "one data directory per shop");
        self.dir.path().join("data")
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
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
