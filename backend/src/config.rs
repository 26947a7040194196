//! Command-line flags and environment variables of `shop-backend`.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::gateway::limits::LimitSettings;
use crate::messaging::retention::RetentionSettings;
use crate::secrets::Secret;

const EXAMPLES: &str = "\
Examples:
  shop-backend                                  run the whole shop on 127.0.0.1:8080, data in ./data
  shop-backend --listen 127.0.0.1:0             pick a free port (the address is printed)
  shop-backend --pay-ttl 30s --data-dir /tmp/shop
  shop-backend --catalog catalog.toml           seed your own products on first start
  shop-backend order --database-url postgres://shop@localhost/shop --kafka-brokers localhost:9092";

/// The shop backend: gateway, order, stock and payment services.
///
/// Without a command, runs all four services in one process (embedded mode:
/// in-process bus, SQLite, nothing to install). With a command, runs one
/// service (or all) over Kafka and PostgreSQL (distributed mode).
#[derive(Debug, Parser)]
#[command(name = "shop-backend", version, about, long_about, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub embedded: EmbeddedArgs,
}

/// Distributed mode: which service this process runs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// All four services in one process, over Kafka and PostgreSQL (port 8080).
    All(DistributedArgs),
    /// The gateway: the WebSocket endpoint and the payment-return pages (port 8080).
    Gateway(DistributedArgs),
    /// The order service: order lifecycle and pay-until deadlines (port 8081: health, metrics).
    Order(DistributedArgs),
    /// The stock service: products, reservations, prices (port 8082: health, metrics).
    Stock(DistributedArgs),
    /// The payment service: checkout sessions, the webhook at /stripe/webhook and the local checkout pages (port 8083).
    Payment(DistributedArgs),
    /// Print an operator's token: it signs in to `shop admin` and the TUI as an operator, who
    /// changes the catalogue while the shop runs. Keep it secret; every change is audited under
    /// the name.
    #[command(after_help = OPERATOR_TOKEN_EXAMPLES)]
    OperatorToken(OperatorTokenArgs),
}

const OPERATOR_TOKEN_EXAMPLES: &str = "\
Examples:
  shop-backend operator-token --name alice                      embedded shop in ./data
  export SHOP_OPERATOR_TOKEN=$(shop-backend operator-token --name alice --data-dir /tmp/shop)
  shop-backend operator-token --name alice --operator-secret \"$SHOP_OPERATOR_SECRET\"   distributed";

/// Who the operator token is for, and the secret that signs it.
#[derive(Debug, Clone, Args)]
pub struct OperatorTokenArgs {
    /// The operator's name, recorded with every change they make: 1 to 64 letters, digits,
    /// '-', '_', '.' or '@'.
    #[arg(long, value_parser = parse_operator_name)]
    pub name: String,

    /// The secret the shop's gateways check operator tokens with (distributed mode, or an
    /// embedded shop started with --operator-secret) [default: the one kept in --data-dir].
    #[arg(long, env = "SHOP_OPERATOR_SECRET", hide_env_values = true)]
    pub operator_secret: Option<Secret>,

    /// Data directory of the embedded shop whose kept operator secret signs the token.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

fn parse_operator_name(name: &str) -> Result<String, String> {
    if shop_shared::catalog::is_valid_operator_name(name) {
        Ok(name.to_owned())
    } else {
        Err("an operator name is 1 to 64 letters, digits, '-', '_', '.' or '@'".into())
    }
}

/// Settings of distributed mode. Each service reads the ones it needs.
#[derive(Debug, Clone, Args)]
pub struct DistributedArgs {
    /// Address to serve [default: 127.0.0.1:8080 for gateway and all, :8081 order, :8082 stock, :8083 payment].
    #[arg(long, env = "SHOP_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Kafka bootstrap servers, comma-separated.
    #[arg(long, env = "SHOP_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Partitions of each topic this process creates (instances of a service share partitions).
    #[arg(long, env = "SHOP_KAFKA_PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(i32).range(1..=256))]
    pub kafka_partitions: i32,

    /// Replication factor of each topic this process creates.
    #[arg(long, env = "SHOP_KAFKA_REPLICATION", default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=16))]
    pub kafka_replication: i32,

    /// Longest the broker may hold a consumer's fetch while nothing new has arrived (Kafka's
    /// fetch.max.wait.ms), such as 500ms. Apache Kafka answers a fetch as soon as a record
    /// arrives, so this does not delay records: it only sets how often an idle consumer asks again.
    #[arg(long, env = "SHOP_KAFKA_FETCH_WAIT", default_value = "500ms", value_parser = parse_fetch_wait)]
    pub kafka_fetch_wait: Duration,

    /// Put before every topic and consumer group name, so that several shops (or test runs) share
    /// one Kafka cluster without seeing each other: `staging.` gives `staging.orders.v1`. Letters,
    /// digits, '.', '_' and '-', at most 100.
    #[arg(long, env = "SHOP_KAFKA_TOPIC_PREFIX", default_value = "", value_parser = parse_topic_prefix)]
    pub kafka_topic_prefix: String,

    /// PostgreSQL URL of the service's database (order, stock, payment, all).
    /// Each service keeps its tables in a schema of its own (shop_order, shop_stock, shop_payment),
    /// so services never share tables even when they share a database.
    #[arg(long, env = "SHOP_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Connections in each service's database pool.
    #[arg(long, env = "SHOP_DATABASE_POOL", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=200))]
    pub database_pool: u32,

    /// Order service: how long a RESERVED order waits for payment, such as 5m or 3s.
    #[arg(long, env = "SHOP_PAY_TTL", default_value = "5m", value_parser = parse_ttl)]
    pub pay_ttl: Duration,

    /// Order service: how long after the pay-until deadline an order still waits for a payment
    /// the provider accepted in time (a delayed payment settling, or its webhook late) before it
    /// is cancelled and such a payment refunded, such as 5m.
    #[arg(long, env = "SHOP_SETTLE_GRACE", default_value = "5m", value_parser = parse_grace)]
    pub settle_grace: Duration,

    /// Stock service: TOML catalogue to seed; without it, an empty shop gets three products.
    #[arg(long, env = "SHOP_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Base URL browsers use to reach this process (the payment service's checkout pages) [default: http://<listen address>].
    #[arg(long, env = "SHOP_PUBLIC_URL", value_parser = parse_url)]
    pub public_url: Option<String>,

    /// Payment service: base URL of the gateway, where customers land after paying [default: http://127.0.0.1:8080, or the public URL with all].
    #[arg(long, env = "SHOP_GATEWAY_URL", value_parser = parse_url)]
    pub gateway_url: Option<String>,

    /// Payment service: where the local checkout delivers its webhooks [default: http://<listen address>/stripe/webhook].
    #[arg(long, env = "SHOP_WEBHOOK_URL", value_parser = parse_url)]
    pub webhook_url: Option<String>,

    /// Gateway: secret that signs customer tokens; every gateway of a shop needs the same one.
    #[arg(long, env = "SHOP_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<Secret>,

    /// Gateway: secret that signs operator tokens (`shop-backend operator-token`); every gateway
    /// of a shop needs the same one. Without it no operator can sign in.
    #[arg(long, env = "SHOP_OPERATOR_SECRET", hide_env_values = true)]
    pub operator_secret: Option<Secret>,

    /// Payment service: secret that signs and verifies the local checkout's webhooks.
    #[arg(long, env = "SHOP_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,

    /// Payment service, test hook: holds every local checkout webhook back until this long after it was queued
    /// (such as 2s), to show what happens while delivery lags. 0 (the default) sends at once.
    #[arg(long, env = "SHOP_LOCAL_CHECKOUT_WEBHOOK_DELAY", default_value = "0s", value_parser = parse_webhook_delay, hide = true)]
    pub local_checkout_webhook_delay: Duration,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub stripe: StripeArgs,

    #[command(flatten)]
    pub connections: ConnectionArgs,
}

/// Settings of embedded mode: all four services in one process.
#[derive(Debug, Clone, Args)]
pub struct EmbeddedArgs {
    /// Address to listen on. Port 0 picks a free port; the chosen address is printed.
    #[arg(long, env = "SHOP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Directory of the SQLite databases, the bus log and the secrets.
    #[arg(long, env = "SHOP_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// How long a RESERVED order waits for payment, such as 5m, 90s or 3s.
    #[arg(long, env = "SHOP_PAY_TTL", default_value = "5m", value_parser = parse_ttl)]
    pub pay_ttl: Duration,

    /// How long after the pay-until deadline an order still waits for a payment the provider
    /// accepted in time (a delayed payment settling, or its webhook late) before it is cancelled
    /// and such a payment refunded, such as 5m.
    #[arg(long, env = "SHOP_SETTLE_GRACE", default_value = "5m", value_parser = parse_grace)]
    pub settle_grace: Duration,

    /// TOML catalogue to seed (see README); without it, an empty shop gets
    /// three products.
    #[arg(long, env = "SHOP_CATALOG")]
    pub catalog: Option<PathBuf>,

    /// Base URL browsers use to reach this backend, for checkout and return
    /// links [default: http://<listen address>].
    #[arg(long, env = "SHOP_PUBLIC_URL", value_parser = parse_url)]
    pub public_url: Option<String>,

    /// Partitions of each bus topic when it is created; more lets consumers
    /// work in parallel. A topic keeps its count afterwards, as in Kafka.
    #[arg(long, env = "SHOP_PARTITIONS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub partitions: u32,

    /// Secret that signs customer tokens [default: generated and kept in the data directory].
    #[arg(long, env = "SHOP_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<Secret>,

    /// Secret that signs operator tokens (`shop-backend operator-token`) [default: generated and
    /// kept in the data directory].
    #[arg(long, env = "SHOP_OPERATOR_SECRET", hide_env_values = true)]
    pub operator_secret: Option<Secret>,

    /// Secret that signs checkout webhooks [default: generated and kept in the data directory].
    #[arg(long, env = "SHOP_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<Secret>,

    /// Test hook: holds every local checkout webhook back until this long after it was queued
    /// (such as 2s), to show what happens while delivery lags. 0 (the default) sends at once.
    #[arg(long, env = "SHOP_LOCAL_CHECKOUT_WEBHOOK_DELAY", default_value = "0s", value_parser = parse_webhook_delay, hide = true)]
    pub local_checkout_webhook_delay: Duration,

    #[command(flatten)]
    pub limits: LimitArgs,

    #[command(flatten)]
    pub retention: RetentionArgs,

    #[command(flatten)]
    pub stripe: StripeArgs,

    #[command(flatten)]
    pub connections: ConnectionArgs,
}

impl EmbeddedArgs {
    /// The flags' defaults, but on a free loopback port with its data in
    /// `data_dir`: a shop of its own, as tests and tools start in-process.
    pub fn local(data_dir: PathBuf) -> Self {
        EmbeddedArgs {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            pay_ttl: Duration::from_secs(5 * 60),
            settle_grace: Duration::from_secs(5 * 60),
            catalog: None,
            public_url: None,
            partitions: 4,
            token_secret: None,
            operator_secret: None,
            webhook_secret: None,
            limits: LimitArgs::default(),
            retention: RetentionArgs::default(),
            local_checkout_webhook_delay: Duration::ZERO,
            stripe: StripeArgs::default(),
            connections: ConnectionArgs::default(),
        }
    }
}

/// Bounds on what clients can make a process hold: connections, and how
/// long a connection may stay without doing its part. Every process
/// applies them to its one listener (WebSocket, pages, webhook, health and
/// metrics alike); the WebSocket ones matter only where the gateway runs.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ConnectionArgs {
    /// Most connections (HTTP and WebSocket) served at once; more are refused with
    /// 503 Service Unavailable. Keep it below the open-files limit (ulimit -n).
    #[arg(long, env = "SHOP_MAX_CONNECTIONS", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,

    /// Most connections from one IP address at once; more are refused with 503. Behind a
    /// reverse proxy every client has the proxy's address: set it to --max-connections there.
    #[arg(long, env = "SHOP_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections_per_address: u32,

    /// How long a connection may take to send a request's headers; it also closes a
    /// keep-alive connection that sends no next request, and one that never sends a byte.
    #[arg(long, env = "SHOP_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_limit_timeout)]
    pub header_read_timeout: Duration,

    /// How long an HTTP request may take, its body read and answered; then it gets
    /// 408 Request Timeout. (A WebSocket or an event stream, once open, is not a request.)
    #[arg(long, env = "SHOP_REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_limit_timeout)]
    pub request_timeout: Duration,

    /// How long a new WebSocket connection has to say hello; then it is closed with 1008
    /// (policy violation).
    #[arg(long, env = "SHOP_HELLO_TIMEOUT", default_value = "10s", value_parser = parse_limit_timeout)]
    pub hello_timeout: Duration,

    /// How long a WebSocket connection may send nothing at all: after half of it the gateway
    /// pings, and with no frame (not even the pong) by the end, closes it with 1001 (going away).
    #[arg(long, env = "SHOP_WS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_limit_timeout)]
    pub ws_idle_timeout: Duration,

    #[command(flatten)]
    pub tls: TlsArgs,
}

/// Serving TLS on the process's listener (HTTPS and WSS), for a shop
/// without a TLS-terminating proxy in front.
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct TlsArgs {
    /// Serve HTTPS and WSS with this certificate chain (PEM, the server's certificate first);
    /// needs --tls-key. The listener then speaks only TLS, and links default to https://.
    #[arg(long, env = "SHOP_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "SHOP_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl Default for ConnectionArgs {
    /// The flags' defaults (a test checks that the two agree).
    fn default() -> Self {
        ConnectionArgs {
            max_connections: 1000,
            max_connections_per_address: 100,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            hello_timeout: Duration::from_secs(10),
            ws_idle_timeout: Duration::from_secs(60),
            tls: TlsArgs::default(),
        }
    }
}

/// How much one customer may hold and how often they may order (the
/// gateway checks both; see docs/security.md).
#[derive(Debug, Clone, Copy, Args)]
pub struct LimitArgs {
    /// Gateway: most units one customer may hold at once in unpaid (NEW or RESERVED) orders;
    /// an order that would go over is refused with `hold_limit`. 0 switches the limit off.
    #[arg(long, env = "SHOP_HOLD_LIMIT", default_value_t = 100)]
    pub hold_limit: u32,

    /// Gateway: most orders one customer may place per minute on each gateway instance (a burst
    /// of that many, then one every 60/N seconds); more are refused with `rate_limited`.
    /// 0 switches the limit off.
    #[arg(long, env = "SHOP_ORDER_RATE", default_value_t = 30)]
    pub order_rate: u32,
}

impl Default for LimitArgs {
    /// The flags' defaults.
    fn default() -> Self {
        LimitArgs {
            hold_limit: 100,
            order_rate: 30,
        }
    }
}

impl LimitArgs {
    pub fn settings(&self) -> LimitSettings {
        LimitSettings {
            hold_limit: NonZeroU32::new(self.hold_limit),
            orders_per_minute: NonZeroU32::new(self.order_rate),
        }
    }
}

/// How long what only guards or records the work is kept (see
/// docs/architecture.md, Retention); orders, payments and the stock ledger
/// are always kept.
#[derive(Debug, Clone, Copy, Args)]
pub struct RetentionArgs {
    /// How long each service remembers the ids of the messages it applied, against redelivery
    /// (a redelivery comes within a second of a service's running time; nothing is pruned until
    /// a service has run this long since it started), such as 5m. From 1s to 30 days.
    #[arg(long, env = "SHOP_INBOX_RETENTION", default_value = "5m", value_parser = parse_retention)]
    pub inbox_retention: Duration,

    /// How long bookkeeping is kept: delivered local webhooks, checkout sessions past their
    /// expiry, finished refund retries (Stripe event ids at least 3 days, as Stripe retries),
    /// such as 7d. From 1s to 365 days.
    #[arg(long, env = "SHOP_BOOKKEEPING_RETENTION", default_value = "7d", value_parser = parse_bookkeeping_retention)]
    pub bookkeeping_retention: Duration,
}

impl Default for RetentionArgs {
    /// The flags' defaults.
    fn default() -> Self {
        let settings = RetentionSettings::default();
        RetentionArgs {
            inbox_retention: settings.inbox,
            bookkeeping_retention: settings.bookkeeping,
        }
    }
}

impl RetentionArgs {
    pub fn settings(&self) -> RetentionSettings {
        RetentionSettings {
            inbox: self.inbox_retention,
            bookkeeping: self.bookkeeping_retention,
        }
    }
}

/// Reads an inbox retention: from 1s to 30 days.
///
/// # Errors
///
/// A message for a duration humantime cannot read, or one out of range.
pub fn parse_retention(text: &str) -> Result<Duration, String> {
    parse_between(
        text,
        "the inbox retention",
        Duration::from_secs(1),
        Duration::from_secs(30 * 24 * 3600),
        "1s to 30 days",
    )
}

/// Reads a bookkeeping retention: from 1s to 365 days.
///
/// # Errors
///
/// A message for a duration humantime cannot read, or one out of range.
pub fn parse_bookkeeping_retention(text: &str) -> Result<Duration, String> {
    parse_between(
        text,
        "the bookkeeping retention",
        Duration::from_secs(1),
        Duration::from_secs(365 * 24 * 3600),
        "1s to 365 days",
    )
}

fn parse_between(
    text: &str,
    what: &str,
    low: Duration,
    high: Duration,
    range: &str,
) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 5m or 7d: {error}"))?;
    if duration < low || duration > high {
        return Err(format!("`{text}` is out of range: {what} is from {range}"));
    }
    Ok(duration)
}

/// Stripe's API.
const STRIPE_API: &str = "https://api.stripe.com";

/// Real Stripe Checkout instead of the local checkout: set both keys.
#[derive(Debug, Clone, Args)]
pub struct StripeArgs {
    /// Stripe secret key (sk_test_… in test mode): pay through Stripe Checkout.
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    pub stripe_secret_key: Option<Secret>,

    /// Signing secret of the Stripe webhook endpoint (whsec_…), to verify Stripe's webhooks.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub stripe_webhook_secret: Option<Secret>,

    /// Base URL of the Stripe API (change only to test against a stand-in).
    #[arg(long, env = "STRIPE_API_BASE", default_value = STRIPE_API, value_parser = parse_url)]
    pub stripe_api_base: String,
}

impl Default for StripeArgs {
    /// Not configured: the local checkout.
    fn default() -> Self {
        StripeArgs {
            stripe_secret_key: None,
            stripe_webhook_secret: None,
            stripe_api_base: STRIPE_API.into(),
        }
    }
}

impl StripeArgs {
    /// The Stripe key and webhook secret, when Stripe is configured; an
    /// error when only one of them is, or one is not what Stripe issues.
    ///
    /// # Errors
    ///
    /// Only one of the two keys is set, or a key does not look like one Stripe
    /// issues (`sk_…`, `whsec_…`); the message says which.
    pub fn keys(&self) -> Result<Option<(Secret, Secret)>, String> {
        let nonempty =
            |secret: &Option<Secret>| secret.clone().filter(|secret| !secret.expose().is_empty());
        let (key, webhook) = match (
            nonempty(&self.stripe_secret_key),
            nonempty(&self.stripe_webhook_secret),
        ) {
            (Some(key), Some(webhook)) => (key, webhook),
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(
                    "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: set both \
                     to use Stripe (the webhook secret is shown by `stripe listen` or in the \
                     dashboard's webhook settings)"
                        .into(),
                );
            }
            (None, Some(_)) => {
                return Err(
                    "STRIPE_WEBHOOK_SECRET is set but STRIPE_SECRET_KEY is not: set both to use Stripe"
                        .into(),
                );
            }
        };
        // The values themselves are never echoed: they are secrets.
        if !["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
            .iter()
            .any(|prefix| key.expose().starts_with(prefix))
        {
            return Err(
                "STRIPE_SECRET_KEY is not a Stripe secret key: it starts with sk_test_ \
                 (or rk_test_ for a restricted key); find it under Developers → API keys"
                    .into(),
            );
        }
        if !webhook.expose().starts_with("whsec_") {
            return Err("STRIPE_WEBHOOK_SECRET is not a webhook signing secret: it starts with \
                 whsec_ (printed by `stripe listen`, or shown with the dashboard's webhook endpoint)"
                .into());
        }
        Ok(Some((key, webhook)))
    }

    /// `live` when the key moves real money, else `test`.
    pub fn mode(&self) -> &'static str {
        let live = self
            .stripe_secret_key
            .as_ref()
            .is_some_and(|key| key.expose().contains("_live_"));
        if live { "live" } else { "test" }
    }
}

/// Reads a pay TTL: at least a second, at most a day.
///
/// # Errors
///
/// A message for a duration humantime cannot read, or one below a second or
/// above a day.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let ttl = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 5m, 90s or 3s: {error}"))?;
    if ttl < Duration::from_secs(1) {
        return Err(format!("`{text}` is too short: the pay TTL is at least 1s"));
    }
    if ttl > Duration::from_secs(24 * 3600) {
        return Err(format!("`{text}` is too long: the pay TTL is at most 24h"));
    }
    Ok(ttl)
}

/// Reads a settle grace: a duration from 1s to 7 days (Stripe's delayed
/// payment methods take days to settle).
///
/// # Errors
///
/// A message for a duration humantime cannot read, or one outside 1s to 7
/// days.
pub fn parse_grace(text: &str) -> Result<Duration, String> {
    let grace = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 5m or 30s: {error}"))?;
    if grace < Duration::from_secs(1) || grace > Duration::from_secs(7 * 24 * 3600) {
        return Err(format!(
            "`{text}` is out of range: the settle grace is from 1s to 7 days"
        ));
    }
    Ok(grace)
}

/// Reads a connection timeout: from 100ms to an hour.
///
/// # Errors
///
/// A message for a duration humantime cannot read, or one outside 100ms to
/// 1h.
pub fn parse_limit_timeout(text: &str) -> Result<Duration, String> {
    let timeout = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 10s or 1m: {error}"))?;
    if timeout < Duration::from_millis(100) || timeout > Duration::from_secs(3600) {
        return Err(format!(
            "`{text}` is out of range: a connection timeout is from 100ms to 1h"
        ));
    }
    Ok(timeout)
}

/// Reads a Kafka fetch wait: from 1ms to 5s.
///
/// # Errors
///
/// A message for a duration humantime cannot read, or one outside 1ms to 5s.
pub fn parse_fetch_wait(text: &str) -> Result<Duration, String> {
    let wait = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 20ms or 1s: {error}"))?;
    if wait < Duration::from_millis(1) || wait > Duration::from_secs(5) {
        return Err(format!(
            "`{text}` is out of range: the fetch wait is from 1ms to 5s"
        ));
    }
    Ok(wait)
}

/// Reads the local checkout's webhook delay: from 0 to an hour.
///
/// # Errors
///
/// A message for a duration humantime cannot read, or one above an hour.
pub fn parse_webhook_delay(text: &str) -> Result<Duration, String> {
    let delay = humantime::parse_duration(text)
        .map_err(|error| format!("`{text}` is not a duration such as 0s, 500ms or 2s: {error}"))?;
    if delay > Duration::from_secs(3600) {
        return Err(format!(
            "`{text}` is too long: the webhook delay is at most 1h"
        ));
    }
    Ok(delay)
}

/// Reads a topic prefix: what Kafka allows in a topic name (letters,
/// digits, `.`, `_`, `-`; `org.apache.kafka.common.internals.Topic`), at
/// most 100 characters so that every prefixed name stays under Kafka's 249.
///
/// # Errors
///
/// A message naming the first character Kafka refuses, or the length.
pub fn parse_topic_prefix(text: &str) -> Result<String, String> {
    if text.len() > 100 {
        return Err(format!(
            "the topic prefix is {} characters long; at most 100",
            text.len()
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "`{text}` has {bad:?}: a topic prefix has only letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(text.to_owned())
}

/// Reads a base URL: http(s), no trailing slash.
///
/// # Errors
///
/// A message when the text is not an http(s) URL.
pub fn parse_url(text: &str) -> Result<String, String> {
    let trimmed = text.trim().trim_end_matches('/');
    if !(trimmed.starts_with("http://") || trimmed.starts_with("https://")) || trimmed.len() < 10 {
        return Err(format!(
            "`{text}` is not a base URL such as http://localhost:8080"
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_shop_has_the_flags_defaults_on_a_free_port() {
        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            embedded: EmbeddedArgs,
        }
        let parsed = Flags::try_parse_from(["shop-backend", "--listen", "127.0.0.1:0"])
            .expect("flags parse")
            .embedded;
        let local = EmbeddedArgs::local(PathBuf::from("./data"));
        assert_eq!(format!("{local:?}"), format!("{parsed:?}"));
    }

    #[test]
    fn pay_ttl_takes_human_durations_within_bounds() {
        assert_eq!(parse_ttl("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_ttl("3s"), Ok(Duration::from_secs(3)));
        assert!(parse_ttl("500ms").is_err());
        assert!(parse_ttl("2days").is_err());
        assert!(parse_ttl("soon").is_err());
        assert_eq!(parse_grace("30s"), Ok(Duration::from_secs(30)));
        assert!(parse_grace("500ms").is_err());
        assert!(parse_grace("8days").is_err());
    }

    #[test]
    fn the_webhook_delay_is_hidden_and_off_unless_asked_for() {
        use clap::CommandFactory;
        let cli = Cli::try_parse_from(["shop-backend"]).expect("no flags needed");
        assert_eq!(cli.embedded.local_checkout_webhook_delay, Duration::ZERO);
        let cli = Cli::try_parse_from(["shop-backend", "--local-checkout-webhook-delay", "2s"])
            .expect("parses");
        assert_eq!(
            cli.embedded.local_checkout_webhook_delay,
            Duration::from_secs(2)
        );
        let Some(Command::Payment(args)) = Cli::try_parse_from([
            "shop-backend",
            "payment",
            "--local-checkout-webhook-delay",
            "1500ms",
        ])
        .expect("parses")
        .command
        else {
            panic!("payment")
        };
        assert_eq!(
            args.local_checkout_webhook_delay,
            Duration::from_millis(1500)
        );
        assert!(parse_webhook_delay("2h").is_err());
        assert!(parse_webhook_delay("later").is_err());
        let help = Cli::command().render_long_help().to_string();
        assert!(
            !help.contains("webhook-delay"),
            "a test hook stays out of --help"
        );
    }

    #[test]
    fn defaults_need_no_flags() {
        let cli = Cli::try_parse_from(["shop-backend"]).expect("no flags needed");
        assert_eq!(cli.embedded.listen, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(cli.embedded.pay_ttl, Duration::from_secs(300));
        assert_eq!(cli.embedded.data_dir, PathBuf::from("./data"));
        assert_eq!(
            cli.embedded.limits.settings(),
            LimitSettings {
                hold_limit: NonZeroU32::new(100),
                orders_per_minute: NonZeroU32::new(30),
            }
        );
    }

    #[test]
    fn order_limits_are_settings_of_both_modes_and_zero_switches_them_off() {
        let cli = Cli::try_parse_from(["shop-backend", "--hold-limit", "5", "--order-rate", "0"])
            .expect("parses");
        assert_eq!(
            cli.embedded.limits.settings(),
            LimitSettings {
                hold_limit: NonZeroU32::new(5),
                orders_per_minute: None,
            }
        );
        let Some(Command::Gateway(args)) =
            Cli::try_parse_from(["shop-backend", "gateway", "--order-rate", "2"])
                .expect("parses")
                .command
        else {
            panic!("gateway")
        };
        assert_eq!(args.limits.order_rate, 2);
        assert_eq!(args.limits.hold_limit, 100, "default");
        assert!(Cli::try_parse_from(["shop-backend", "--hold-limit", "-1"]).is_err());
    }

    #[test]
    fn retention_is_a_setting_of_both_modes_with_documented_defaults_and_bounds() {
        let cli = Cli::try_parse_from(["shop-backend"]).expect("no flags needed");
        assert_eq!(
            cli.embedded.retention.settings(),
            RetentionSettings {
                inbox: Duration::from_secs(300),
                bookkeeping: Duration::from_secs(7 * 24 * 3600),
            }
        );
        let Some(Command::Payment(args)) = Cli::try_parse_from([
            "shop-backend",
            "payment",
            "--inbox-retention",
            "1h",
            "--bookkeeping-retention",
            "30d",
        ])
        .expect("parses")
        .command
        else {
            panic!("payment")
        };
        assert_eq!(args.retention.inbox_retention, Duration::from_secs(3600));
        assert_eq!(
            args.retention.bookkeeping_retention,
            Duration::from_secs(30 * 24 * 3600)
        );
        for bad in ["0s", "31d", "soon"] {
            let error = Cli::try_parse_from(["shop-backend", "--inbox-retention", bad])
                .expect_err("refused")
                .to_string();
            assert!(
                error.contains("inbox retention") || error.contains("not a duration"),
                "{error}"
            );
        }
    }

    #[test]
    fn connection_limits_have_defaults_in_both_modes_and_refuse_nonsense() {
        let embedded = Cli::try_parse_from(["shop-backend"]).expect("no flags needed");
        assert_eq!(embedded.embedded.connections, ConnectionArgs::default());
        let Some(Command::Gateway(args)) = Cli::try_parse_from([
            "shop-backend",
            "gateway",
            "--max-connections",
            "100",
            "--max-connections-per-address",
            "10",
            "--header-read-timeout",
            "2s",
            "--hello-timeout",
            "500ms",
            "--ws-idle-timeout",
            "1m",
        ])
        .expect("parses")
        .command
        else {
            panic!("gateway")
        };
        assert_eq!(
            args.connections,
            ConnectionArgs {
                max_connections: 100,
                max_connections_per_address: 10,
                header_read_timeout: Duration::from_secs(2),
                request_timeout: Duration::from_secs(30),
                hello_timeout: Duration::from_millis(500),
                ws_idle_timeout: Duration::from_secs(60),
                tls: TlsArgs::default(),
            }
        );
        for bad in [
            ["--tls-cert", "cert.pem"],
            ["--tls-key", "key.pem"],
            ["--max-connections", "0"],
            ["--max-connections-per-address", "0"],
            ["--header-read-timeout", "10ms"],
            ["--ws-idle-timeout", "2h"],
            ["--hello-timeout", "never"],
        ] {
            assert!(
                Cli::try_parse_from(["shop-backend", bad[0], bad[1]]).is_err(),
                "{bad:?} is refused"
            );
        }
    }

    #[test]
    fn distributed_services_are_subcommands_with_their_own_settings() {
        let cli = Cli::try_parse_from([
            "shop-backend",
            "order",
            "--database-url",
            "postgres://localhost/shop",
            "--kafka-brokers",
            "k1:9092,k2:9092",
            "--pay-ttl",
            "30s",
        ])
        .expect("parses");
        let Some(Command::Order(args)) = cli.command else {
            panic!("order")
        };
        assert_eq!(args.kafka_brokers, "k1:9092,k2:9092");
        assert_eq!(args.pay_ttl, Duration::from_secs(30));
        assert_eq!(args.kafka_fetch_wait, Duration::from_millis(500), "default");
        assert_eq!(args.kafka_topic_prefix, "", "no prefix by default");
        let Some(Command::Stock(args)) =
            Cli::try_parse_from(["shop-backend", "stock", "--kafka-fetch-wait", "5ms"])
                .expect("parses")
                .command
        else {
            panic!("stock")
        };
        assert_eq!(args.kafka_fetch_wait, Duration::from_millis(5));
        for bad in ["0ms", "10s", "soon"] {
            assert!(
                Cli::try_parse_from(["shop-backend", "stock", "--kafka-fetch-wait", bad]).is_err(),
                "{bad} is refused"
            );
        }
        let Some(Command::Gateway(args)) = Cli::try_parse_from([
            "shop-backend",
            "gateway",
            "--kafka-topic-prefix",
            "staging-2.",
        ])
        .expect("parses")
        .command
        else {
            panic!("gateway")
        };
        assert_eq!(args.kafka_topic_prefix, "staging-2.");
        let long = "p".repeat(101);
        for bad in ["a b", "orders/", "é.", long.as_str()] {
            let error = Cli::try_parse_from(["shop-backend", "stock", "--kafka-topic-prefix", bad])
                .expect_err("refused");
            assert!(error.to_string().contains("prefix"), "{bad}: {error}");
        }
        assert!(
            Cli::try_parse_from(["shop-backend", "--data-dir", "x", "order"]).is_err(),
            "modes do not mix"
        );
    }

    /// No Docker engine runs where the tests run, so docker-compose.yml is
    /// checked against the program instead: every service's command parses,
    /// every SHOP_ variable is one the program reads, and each service gets
    /// the settings it cannot start without.
    #[test]
    fn docker_compose_matches_the_programs_settings() {
        use clap::CommandFactory;
        let compose = include_str!("../../docker-compose.yml");
        let known: std::collections::HashSet<String> = Cli::command()
            .get_subcommands()
            .flat_map(|command| {
                command
                    .get_arguments()
                    .filter_map(|arg| arg.get_env())
                    .collect::<Vec<_>>()
            })
            .map(|env| env.to_string_lossy().into_owned())
            .collect();
        // (role, SHOP_ variables set for it), in file order.
        let mut roles: Vec<(String, Vec<String>)> = Vec::new();
        for line in compose.lines() {
            let trimmed = line.trim();
            if let Some(array) = trimmed.strip_prefix("command: ") {
                let args: Vec<String> =
                    serde_json::from_str(array).expect("command is a JSON array");
                let mut argv = vec!["shop-backend".to_owned()];
                argv.extend(args.iter().cloned());
                let cli =
                    Cli::try_parse_from(&argv).unwrap_or_else(|error| panic!("{argv:?}: {error}"));
                assert!(cli.command.is_some(), "{argv:?} runs a distributed service");
                roles.push((args[0].clone(), Vec::new()));
            }
            if let Some((name, _)) = trimmed.split_once(':')
                && name.starts_with("SHOP_")
            {
                assert!(
                    known.contains(name),
                    "docker-compose.yml sets {name}, which shop-backend does not read"
                );
                if let Some((_, env)) = roles.last_mut() {
                    env.push(name.to_owned());
                }
            }
        }
        let names: Vec<&str> = roles.iter().map(|(role, _)| role.as_str()).collect();
        assert_eq!(names, ["gateway", "order", "stock", "payment"]);
        // Users run the Kafka that the tests and benchmarks run.
        let pom = include_str!("../../scripts/kafka/pom.xml");
        let tested = pom
            .split_once("<kafka.version>")
            .and_then(|(_, rest)| rest.split_once("</kafka.version>"))
            .map(|(version, _)| version)
            .expect("scripts/kafka/pom.xml names kafka.version");
        assert!(
            compose.contains(&format!("image: apache/kafka:{tested}\n")),
            "docker-compose.yml runs a Kafka other than the tested {tested}"
        );
        for (role, env) in &roles {
            let has = |name: &str| env.iter().any(|set| set == name);
            assert!(has("SHOP_KAFKA_BROKERS"), "{role} needs the brokers");
            match role.as_str() {
                "gateway" => assert!(has("SHOP_TOKEN_SECRET") && has("SHOP_OPERATOR_SECRET")),
                "payment" => assert!(
                    has("SHOP_DATABASE_URL")
                        && has("SHOP_WEBHOOK_SECRET")
                        && has("SHOP_GATEWAY_URL")
                ),
                _ => assert!(has("SHOP_DATABASE_URL"), "{role} needs its database"),
            }
        }
    }

    #[test]
    fn stripe_needs_both_keys_and_refuses_values_stripe_never_issues() {
        let args = |key: Option<&str>, webhook: Option<&str>| StripeArgs {
            stripe_secret_key: key.map(|key| Secret::new(key.to_owned())),
            stripe_webhook_secret: webhook.map(|webhook| Secret::new(webhook.to_owned())),
            stripe_api_base: STRIPE_API.into(),
        };
        assert!(matches!(args(None, None).keys(), Ok(None)));
        assert!(matches!(args(Some(""), Some("")).keys(), Ok(None)));
        let both = args(Some("sk_test_abc"), Some("whsec_def"))
            .keys()
            .expect("valid")
            .expect("configured");
        assert_eq!(
            (both.0.expose(), both.1.expose()),
            ("sk_test_abc", "whsec_def")
        );
        assert_eq!(args(Some("sk_test_abc"), None).mode(), "test");
        assert_eq!(args(Some("rk_live_abc"), None).mode(), "live");

        let error = args(Some("sk_test_abc"), None).keys().expect_err("half");
        assert!(error.contains("STRIPE_WEBHOOK_SECRET is not"), "{error}");
        let error = args(None, Some("whsec_def")).keys().expect_err("half");
        assert!(error.contains("STRIPE_SECRET_KEY is not"), "{error}");
        let error = args(Some("pk_test_public"), Some("whsec_def"))
            .keys()
            .expect_err("a publishable key");
        assert!(error.contains("not a Stripe secret key"), "{error}");
        assert!(!error.contains("pk_test_public"), "the value is not echoed");
        let error = args(Some("sk_test_abc"), Some("sk_test_abc"))
            .keys()
            .expect_err("the API key twice");
        assert!(error.contains("not a webhook signing secret"), "{error}");
        assert!(!error.contains("sk_test_abc"), "the value is not echoed");
    }

    #[test]
    fn public_url_must_be_http() {
        assert_eq!(
            parse_url("http://shop.example/"),
            Ok("http://shop.example".into())
        );
        assert!(parse_url("shop.example").is_err());
    }
}
