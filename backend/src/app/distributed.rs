//! Distributed mode: `shop-backend gateway|order|stock|payment` runs one
//! service per process, `shop-backend all` runs the four in one process,
//! over Kafka (rdkafka) and PostgreSQL (sqlx). Any number of instances of a
//! service share its work through its Kafka consumer group.
//!
//! Each process serves `/healthz` (ready only when its database and broker
//! answer) and `/metrics`; the gateway adds `/ws` and the return pages, the
//! payment service `/stripe/webhook` and the local checkout pages.
//!
//! Unreachable brokers and databases are reported and retried, never fatal.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use super::{Runtime, Server, loopback};
use crate::bus::kafka::{KafkaBus, KafkaConfig};
use crate::bus::{Bus, TopicSpec};
use crate::config::DistributedArgs;
use crate::db::{Db, redact};
use crate::http::{Health, index_router};
use crate::metrics::{self, Metrics};
use crate::payment::local::LocalCheckoutConfig;
use crate::secrets::Secret;
use crate::stock::catalog;
use crate::tasks::{Shutdown, Supervisor};
use crate::{gateway, order, payment, stock};

/// What a distributed process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    All,
    Gateway,
    Order,
    Stock,
    Payment,
}

impl Role {
    fn default_port(self) -> u16 {
        match self {
            Role::All | Role::Gateway => 8080,
            Role::Order => 8081,
            Role::Stock => 8082,
            Role::Payment => 8083,
        }
    }

    fn runs(self, service: Role) -> bool {
        self == Role::All || self == service
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::All => "all",
            Role::Gateway => "gateway",
            Role::Order => "order",
            Role::Stock => "stock",
            Role::Payment => "payment",
        })
    }
}

/// A built, bound, not yet serving distributed process.
pub struct Node {
    server: Server,
    role: Role,
    metrics: Metrics,
}

impl Node {
    pub async fn build(role: Role, args: DistributedArgs) -> anyhow::Result<Node> {
        let needs_database = role != Role::Gateway;
        let database_url = match (&args.database_url, needs_database) {
            (Some(url), _) => Some(url.clone()),
            (None, false) => None,
            (None, true) => anyhow::bail!(
                "the {role} service needs a PostgreSQL database: pass --database-url or set SHOP_DATABASE_URL, \
                 for example postgres://shop:shop@localhost:5432/shop"
            ),
        };
        let token_secret = required_secret(
            role.runs(Role::Gateway),
            &args.token_secret,
            "--token-secret",
            "SHOP_TOKEN_SECRET",
        )?;
        // The local checkout signs its webhooks with this; Stripe brings its own.
        let stripe = args.stripe.keys().map_err(anyhow::Error::msg)?;
        let webhook_secret = required_secret(
            role.runs(Role::Payment) && stripe.is_none(),
            &args.webhook_secret,
            "--webhook-secret",
            "SHOP_WEBHOOK_SECRET",
        )?;
        let catalog = args.catalog.as_deref().map(catalog::load).transpose()?;

        let listen = args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], role.default_port())));
        let (listener, address, public_url) =
            super::bind(listen, args.public_url.as_deref()).await?;

        let (supervisor, spawner) = Supervisor::new();
        let metrics = Metrics::default();
        let bus = KafkaBus::new(
            KafkaConfig {
                brokers: args.kafka_brokers.clone(),
                partitions: args.kafka_partitions,
                replication: args.kafka_replication,
                client_id: format!("shop-{role}"),
                fetch_wait: args.kafka_fetch_wait,
                topic_prefix: args.kafka_topic_prefix.clone(),
            },
            metrics.clone(),
            &spawner,
        )?;
        tracing::info!(%role, brokers = %args.kafka_brokers, topic_prefix = %args.kafka_topic_prefix, "connecting to Kafka");
        bus.ensure_topics(&TopicSpec::all()).await?;
        let runtime = Runtime {
            bus: Arc::new(bus),
            metrics: metrics.clone(),
            spawner: spawner.clone(),
        };

        let shutdown = spawner.shutdown().clone();
        let connect = |schema: &'static str| {
            let url = database_url.clone().unwrap_or_default();
            let shutdown = shutdown.clone();
            async move { connect_postgres(&url, schema, args.database_pool, &shutdown).await }
        };
        let mut databases: Vec<(&'static str, Db)> = Vec::new();
        let mut gauges = Vec::new();
        let mut router = Router::new();

        if role.runs(Role::Stock) {
            let db = connect("shop_stock").await?;
            gauges.push(stock::start(&runtime, db.clone(), catalog).await?);
            databases.push(("stock", db));
        }
        if role.runs(Role::Order) {
            let db = connect("shop_order").await?;
            gauges.push(order::start(&runtime, db.clone(), args.pay_ttl).await?);
            databases.push(("order", db));
        }
        if role.runs(Role::Payment) {
            let db = connect("shop_payment").await?;
            let gateway_url = args.gateway_url.clone().unwrap_or_else(|| match role {
                Role::All => public_url.clone(),
                _ => "http://127.0.0.1:8080".into(),
            });
            let webhook_url = args
                .webhook_url
                .clone()
                .unwrap_or_else(|| format!("http://{}/stripe/webhook", loopback(address)));
            let choice = payment::choose(
                &args.stripe,
                &db,
                LocalCheckoutConfig {
                    public_url: public_url.clone(),
                    return_url: gateway_url,
                    webhook_url,
                    webhook_secret: webhook_secret.clone().unwrap_or_else(|| Secret::new("")),
                },
            )?;
            let payment =
                payment::start(&runtime, db.clone(), choice.provider, choice.webhook_secret)
                    .await?;
            router = router.merge(payment.routes);
            if let Some(checkout) = &choice.local {
                checkout.spawn_delivery(&spawner);
                router = router.merge(checkout.router());
            }
            gauges.push(payment.gauges);
            databases.push(("payment", db));
        }
        let mut gateway_handle = None;
        if role.runs(Role::Gateway) {
            let gateway =
                gateway::start(&runtime, token_secret.unwrap_or_else(|| Secret::new(""))).await?;
            router = router.merge(gateway.router()).merge(index_router());
            gauges.push(gateway.gauges());
            gateway_handle = Some(gateway);
        }

        let health = Health {
            databases: databases.clone(),
            bus: runtime.bus.clone(),
            gateway: gateway_handle,
        };
        let router = router
            .merge(health.router())
            .merge(metrics::router(metrics.clone(), gauges));
        Ok(Node {
            server: Server {
                listener,
                router,
                supervisor,
                spawner,
                address,
                databases: databases.into_iter().map(|(_, db)| db).collect(),
            },
            role,
            metrics,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves until `shutdown` completes (or a task fails), then stops.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.server.run_until_stopped(shutdown).await
    }
}

/// A secret the role needs; a clear error when it is missing.
fn required_secret(
    needed: bool,
    secret: &Option<Secret>,
    flag: &str,
    env: &str,
) -> anyhow::Result<Option<Secret>> {
    match (needed, secret) {
        (false, _) => Ok(None),
        (true, Some(secret)) if !secret.expose().is_empty() => Ok(Some(secret.clone())),
        (true, _) => anyhow::bail!(
            "pass {flag} or set {env}: every instance needs the same secret (make one with `openssl rand -hex 32`)"
        ),
    }
}

/// Connects to PostgreSQL, retrying until it answers or shutdown.
async fn connect_postgres(
    url: &str,
    schema: &'static str,
    pool: u32,
    shutdown: &Shutdown,
) -> anyhow::Result<Db> {
    let mut backoff = Duration::from_millis(200);
    loop {
        match Db::postgres(url, schema, pool).await {
            Ok(db) => return Ok(db),
            Err(error @ (sqlx::Error::Configuration(_) | sqlx::Error::InvalidArgument(_))) => {
                return Err(
                    anyhow::Error::new(error).context(format!("bad database URL {}", redact(url)))
                );
            }
            Err(error) => {
                tracing::warn!(database = %redact(url), schema, %error, "cannot reach PostgreSQL; retrying");
                if !shutdown.sleep(backoff).await {
                    anyhow::bail!("stopped while waiting for PostgreSQL");
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
