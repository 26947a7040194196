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

use std::net::SocketAddr;
use std::sync::Arc;

use super::{Server, Settings, Storage};
use crate::bus::kafka::{KafkaBus, KafkaConfig};
use crate::bus::{Bus, TopicSpec};
use crate::config::DistributedArgs;
use crate::gateway::TokenSecrets;
use crate::http::tls::Tls;
use crate::metrics::Metrics;
use crate::payment::local::LocalCheckoutConfig;
use crate::runtime::Runtime;
use crate::secrets::Secret;
use crate::service::Service;
use crate::stock::catalog;
use crate::tasks::Supervisor;

/// A built, bound, not yet serving distributed process.
pub struct Node {
    server: Server,
    label: String,
    metrics: Metrics,
}

/// What a process of `services` is called in logs and client ids: `all`,
/// or the service's name.
fn label(services: &[Service]) -> String {
    if Service::ALL
        .iter()
        .all(|service| services.contains(service))
    {
        "all".into()
    } else {
        services
            .iter()
            .map(|service| service.name())
            .collect::<Vec<_>>()
            .join("+")
    }
}

impl Node {
    /// Builds a process running `services` (all four for `shop-backend
    /// all`) and binds its port; connecting waits for Kafka and
    /// PostgreSQL as long as they take.
    ///
    /// # Errors
    ///
    /// A setting is missing or wrong (database URL, secrets, catalogue),
    /// the port cannot be bound, or a service cannot start.
    pub async fn build(services: &[Service], args: DistributedArgs) -> anyhow::Result<Node> {
        let label = label(services);
        let runs = |service: Service| services.contains(&service);
        let database_url = match &args.database_url {
            Some(url) => url.clone(),
            None => anyhow::bail!(
                "the {label} service needs a PostgreSQL database: pass --database-url or set SHOP_DATABASE_URL, \
                 for example postgres://shop:shop@localhost:5432/shop"
            ),
        };
        let token_secret = required_secret(
            runs(Service::Gateway),
            &args.token_secret,
            "--token-secret",
            "SHOP_TOKEN_SECRET",
        )?;
        let operator_secret = args
            .operator_secret
            .as_ref()
            .filter(|secret| runs(Service::Gateway) && !secret.expose().is_empty())
            .map(crate::secrets::operator_secret)
            .transpose()?;
        if runs(Service::Gateway) && operator_secret.is_none() {
            tracing::warn!(
                "no operator secret (--operator-secret, SHOP_OPERATOR_SECRET): operators cannot sign in to change the catalogue"
            );
        }
        // The local checkout signs its webhooks with this; Stripe brings its own.
        let stripe = args.stripe.keys().map_err(anyhow::Error::msg)?;
        let webhook_secret = required_secret(
            runs(Service::Payment) && stripe.is_none(),
            &args.webhook_secret,
            "--webhook-secret",
            "SHOP_WEBHOOK_SECRET",
        )?;
        let catalog = args.catalog.as_deref().map(catalog::load).transpose()?;

        let port = if runs(Service::Gateway) {
            Service::Gateway.default_port()
        } else {
            services
                .first()
                .map_or(Service::Gateway.default_port(), |service| {
                    service.default_port()
                })
        };
        let listen = args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)));
        let tls = Tls::load(&args.connections.tls)?;
        let (listener, address, public_url) =
            super::bind(listen, args.public_url.as_deref(), tls.as_ref()).await?;

        let (supervisor, spawner) = Supervisor::new();
        let metrics = Metrics::default();
        let bus = KafkaBus::new(
            KafkaConfig {
                brokers: args.kafka_brokers.clone(),
                partitions: args.kafka_partitions,
                replication: args.kafka_replication,
                client_id: format!("shop-{label}"),
                fetch_wait: args.kafka_fetch_wait,
                topic_prefix: args.kafka_topic_prefix.clone(),
            },
            metrics.clone(),
            &spawner,
        )?;
        tracing::info!(services = %label, brokers = %args.kafka_brokers, topic_prefix = %args.kafka_topic_prefix, "connecting to Kafka");
        bus.ensure_topics(&TopicSpec::all()).await?;
        let runtime = Runtime {
            bus: Arc::new(bus),
            metrics: metrics.clone(),
            spawner: spawner.clone(),
        };

        let gateway_url = args.gateway_url.clone().unwrap_or_else(|| {
            if runs(Service::Gateway) {
                public_url.clone()
            } else {
                "http://127.0.0.1:8080".into()
            }
        });
        let (webhook_url, webhook_tls) = match &args.webhook_url {
            Some(url) => (url.clone(), None),
            None => super::own_webhook(address, tls.as_ref()),
        };
        let composed = super::compose(
            services,
            &runtime,
            &Storage::Postgres {
                url: database_url,
                pool: args.database_pool,
            },
            Settings {
                pay_ttl: args.pay_ttl,
                settle_grace: args.settle_grace,
                catalog,
                stripe: args.stripe.clone(),
                tokens: TokenSecrets {
                    customers: token_secret.unwrap_or_else(|| Secret::new("")),
                    operators: operator_secret,
                },
                limits: args.limits.settings(),
                retention: args.retention.settings(),
                local_checkout: LocalCheckoutConfig {
                    public_url: public_url.clone(),
                    return_url: gateway_url,
                    webhook_url,
                    webhook_tls,
                    webhook_secret: webhook_secret.unwrap_or_else(|| Secret::new("")),
                    webhook_delay: args.local_checkout_webhook_delay,
                },
                connections: args.connections.clone(),
            },
        )
        .await?;
        Ok(Node {
            server: Server {
                listener,
                router: composed.router,
                supervisor,
                spawner,
                address,
                databases: composed.databases,
                connections: composed.connections,
                tls,
            },
            label,
            metrics,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `https` when it serves TLS, otherwise `http`.
    pub fn scheme(&self) -> &'static str {
        self.server.scheme()
    }

    /// `all`, or the name of the service this process runs.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Serves until `shutdown` completes (or a task fails), then stops.
    ///
    /// # Errors
    ///
    /// A service's task failed, or stopping left tasks running.
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.server.run_until_stopped(shutdown).await
    }
}

/// A secret the process needs; a clear error when it is missing.
fn required_secret(
    needed: bool,
    secret: &Option<Secret>,
    flag: &str,
    env: &str,
) -> anyhow::Result<Option<Secret>> {
    match (needed, secret) {
        (false, _) => Ok(None),
        (true, Some(secret)) if !secret.expose().is_empty() => {
            crate::secrets::given_secret(secret, flag, env).map(Some)
        }
        (true, _) => anyhow::bail!(
            "pass {flag} or set {env}: every instance needs the same secret (make one with `openssl rand -hex 32`)"
        ),
    }
}
