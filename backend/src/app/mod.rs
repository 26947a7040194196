//! Wiring the services into processes.
//!
//! - [`embedded`]: all four services in one process over the in-process bus
//!   and SQLite (the default).
//! - [`distributed`]: one service (or all) per process over Kafka and
//!   PostgreSQL.
//!
//! Both start their services through one path, [`compose`]: embedded mode
//! is "every service, the in-process bus, SQLite"; a distributed process
//! is "these services, Kafka, PostgreSQL". Both build a [`Server`]: a
//! bound listener, the routes, and supervised tasks, which serves until a
//! shutdown future completes or a task fails.

pub mod distributed;
pub mod embedded;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::Router;

use crate::config::{ConnectionArgs, StripeArgs};
use crate::db::{Db, redact};
use crate::gateway::limits::LimitSettings;
use crate::http::server::{self, Connections};
use crate::http::tls::{self, Tls};
use crate::http::{Health, index_router};
use crate::messaging::retention::{self, RetentionSettings};
use crate::metrics;
use crate::payment::local::{LocalCheckoutConfig, WebhookTls};
use crate::runtime::Runtime;
use crate::service::Service;
use crate::stock::catalog::CatalogProduct;
use crate::tasks::{Shutdown, Spawner, Supervisor};
use crate::{gateway, order, payment, stock};

/// How long stopping may take before tasks are left behind.
const DRAIN: Duration = Duration::from_secs(10);

/// A bound, not yet serving process.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    supervisor: Supervisor,
    spawner: Spawner,
    address: SocketAddr,
    databases: Vec<Db>,
    /// Counts connections and refuses those beyond the limits.
    connections: Connections,
    /// Serves TLS with this certificate, when given one.
    tls: Option<Tls>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// `https` when it serves TLS, otherwise `http`.
    pub fn scheme(&self) -> &'static str {
        tls::scheme(self.tls.as_ref())
    }

    /// Serves until `shutdown` completes (or a task fails), then stops every
    /// service, finishing the work in hand.
    ///
    /// # Errors
    ///
    /// A supervised task failed, or stopping took longer than the drain time.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let trigger = self.supervisor.trigger();
        let stopping = self.spawner.shutdown().clone();
        let outside = tokio::spawn(async move {
            shutdown.await;
            trigger.trigger();
        });
        let server = tokio::spawn(server::serve(
            self.listener,
            self.router,
            self.connections,
            self.tls.map(|tls| tls.acceptor),
            async move { stopping.triggered().await },
        ));
        let supervised = self.supervisor.run(DRAIN).await;
        outside.abort();
        match tokio::time::timeout(server::STOP_TIMEOUT, server).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "HTTP server task failed"),
            Err(_) => tracing::warn!("HTTP server did not stop in time"),
        }
        for db in &self.databases {
            db.close().await;
        }
        tracing::info!("stopped");
        supervised
    }
}

/// Where the services of a process keep their state.
pub enum Storage {
    /// Embedded mode: a SQLite file per service (`order.sqlite`, …) in
    /// the data directory.
    Sqlite { dir: PathBuf },
    /// Distributed mode: one PostgreSQL schema per service (`shop_order`,
    /// …) at `url`, with at most `pool` connections each.
    Postgres { url: String, pool: u32 },
}

impl Storage {
    /// The database of `service`. PostgreSQL is retried until it answers
    /// or `shutdown` comes.
    async fn open(&self, service: Service, shutdown: &Shutdown) -> anyhow::Result<Db> {
        match self {
            Storage::Sqlite { dir } => {
                let path = dir.join(format!("{service}.sqlite"));
                Db::sqlite(&path)
                    .await
                    .with_context(|| format!("cannot open {}", path.display()))
            }
            Storage::Postgres { url, pool } => {
                connect_postgres(url, service.schema(), *pool, shutdown).await
            }
        }
    }
}

/// Connects to PostgreSQL, retrying until it answers or shutdown.
async fn connect_postgres(
    url: &str,
    schema: &str,
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

/// What the services of a process are configured with.
pub struct Settings {
    /// How long customers have to pay a reserved order.
    pub pay_ttl: Duration,
    /// How long after the deadline an order waits for a payment made in time.
    pub settle_grace: Duration,
    /// The catalogue file's products, if one was given.
    pub catalog: Option<Vec<CatalogProduct>>,
    pub stripe: StripeArgs,
    /// Sign the gateway's customer and operator tokens.
    pub tokens: gateway::TokenSecrets,
    /// What one customer may hold and how often they may order.
    pub limits: LimitSettings,
    /// How long what each service forgets is kept.
    pub retention: RetentionSettings,
    /// Where the local checkout lives and whom it tells (when Stripe is not
    /// configured).
    pub local_checkout: LocalCheckoutConfig,
    /// The process's connection limits and timeouts.
    pub connections: ConnectionArgs,
}

/// The services of a process, started.
pub struct Composed {
    /// Every route: the services', `/healthz` and `/metrics`.
    pub router: Router,
    pub databases: Vec<Db>,
    /// Admits connections within the limits; its gauges are in `/metrics`.
    pub connections: Connections,
}

/// Starts `services`, in the order of [`Service::ALL`], on `runtime` and
/// `storage`: the one path that wires embedded and distributed mode.
///
/// # Errors
///
/// A database could not be opened (or its URL is wrong), or a service
/// could not start.
pub async fn compose(
    services: &[Service],
    runtime: &Runtime,
    storage: &Storage,
    mut settings: Settings,
) -> anyhow::Result<Composed> {
    let mut router = Router::new();
    let connections = Connections::new(settings.connections.clone(), runtime.metrics.clone());
    let mut gauges = vec![connections.gauges()];
    gauges.extend(runtime.bus.gauges());
    let mut health = Health::default();
    let mut databases = Vec::new();
    let bus = runtime.bus.clone();
    health.check("bus", move || {
        let bus = bus.clone();
        async move { bus.is_healthy().await }
    });
    for service in Service::ALL.into_iter().filter(|s| services.contains(s)) {
        let db = storage.open(service, runtime.spawner.shutdown()).await?;
        let check = db.clone();
        health.check(format!("{service}_database"), move || {
            let db = check.clone();
            async move { db.is_healthy().await }
        });
        databases.push(db.clone());
        let prunable = match service {
            Service::Payment => payment::PRUNABLE.to_vec(),
            _ => Vec::new(),
        };
        retention::spawn(
            &runtime.spawner,
            service,
            db.clone(),
            settings.retention,
            [vec![retention::PROCESSED_MESSAGES], prunable].concat(),
            runtime.metrics.clone(),
        );
        match service {
            Service::Stock => {
                gauges.push(stock::start(runtime, db, settings.catalog.take()).await?);
            }
            Service::Order => {
                gauges.push(
                    order::start(runtime, db, settings.pay_ttl, settings.settle_grace).await?,
                );
            }
            Service::Payment => {
                let choice =
                    payment::choose(&settings.stripe, &db, settings.local_checkout.clone())?;
                let started =
                    payment::start(runtime, db, choice.provider, choice.webhook_secret).await?;
                router = router.merge(started.routes);
                if let Some(checkout) = &choice.local {
                    checkout.spawn_delivery(&runtime.spawner);
                    router = router.merge(checkout.router());
                }
                gauges.push(started.gauges);
            }
            Service::Gateway => {
                let timeouts = gateway::ws::Timeouts {
                    hello: settings.connections.hello_timeout,
                    idle: settings.connections.ws_idle_timeout,
                };
                let gateway = gateway::start(
                    runtime,
                    db,
                    settings.tokens.clone(),
                    settings.limits,
                    timeouts,
                )
                .await?;
                router = router.merge(gateway.router()).merge(index_router());
                gauges.push(gateway.gauges());
                let ready = gateway.clone();
                health.check("read_model_loaded", move || {
                    let ready = ready.is_ready();
                    async move { ready }
                });
            }
        }
    }
    let router = router
        .merge(health.router())
        .merge(metrics::router(runtime.metrics.clone(), gauges));
    Ok(Composed {
        router,
        databases,
        connections,
    })
}

/// Binds `listen` and returns the listener with the base URL of its pages:
/// `public_url` when set, otherwise the address bound (port 0 resolved).
///
/// # Errors
///
/// The address cannot be bound (in use, or not this machine's).
pub async fn bind(
    listen: SocketAddr,
    public_url: Option<&str>,
    tls: Option<&Tls>,
) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr, String)> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let public_url = public_url.map_or_else(
        || format!("{}://{address}", tls::scheme(tls)),
        str::to_owned,
    );
    Ok((listener, address, public_url))
}

/// Where the local checkout delivers webhooks when the endpoint is its own
/// process (listening on `address`): the loopback address, over TLS when
/// the process serves it, then trusting exactly the certificate it serves.
pub fn own_webhook(address: SocketAddr, tls: Option<&Tls>) -> (String, Option<WebhookTls>) {
    (
        format!(
            "{}://{}/stripe/webhook",
            tls::scheme(tls),
            loopback(address)
        ),
        tls.map(|tls| WebhookTls {
            certificate: tls.certificates[0].clone(),
        }),
    )
}

/// Where to reach `address` from this machine: the loopback address when
/// it listens on all interfaces.
pub fn loopback(address: SocketAddr) -> SocketAddr {
    let mut reachable = address;
    if address.ip().is_unspecified() {
        reachable.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    reachable
}
