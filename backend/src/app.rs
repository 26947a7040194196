//! Embedded mode: the four services in one process over the in-process
//! bus, each with its SQLite database under the data directory, and the
//! local checkout. One port serves the WebSocket (`/ws`), the checkout and
//! return pages, the webhook (`/stripe/webhook`) and `/healthz`.
//!
//! `Application::build` prepares everything and binds the port (so tests
//! can start it on port 0 and ask for the address); `run_until_stopped`
//! serves until the given future completes or a task fails.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;

use crate::bus::memory::MemoryBus;
use crate::bus::{Bus, TopicSpec};
use crate::config::EmbeddedArgs;
use crate::db::{Db, outbox};
use crate::gateway;
use crate::http::{Health, index_router};
use crate::order;
use crate::payment::{
    self,
    local::{LocalCheckout, LocalCheckoutConfig},
};
use crate::secrets;
use crate::stock::{self, catalog};
use crate::tasks::{Spawner, Supervisor};

/// How long stopping may take before tasks are left behind.
const DRAIN: Duration = Duration::from_secs(10);

/// A built, bound, not yet serving embedded backend.
pub struct Application {
    listener: tokio::net::TcpListener,
    router: Router,
    supervisor: Supervisor,
    spawner: Spawner,
    address: SocketAddr,
    public_url: String,
    bus: MemoryBus,
    databases: Vec<(&'static str, Db)>,
    /// Held while running: a second backend on the same data directory
    /// would corrupt it.
    _lock: File,
}

impl Application {
    pub async fn build(config: EmbeddedArgs) -> anyhow::Result<Application> {
        let data_dir = &config.data_dir;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let lock = lock_data_dir(data_dir)?;
        let catalog = config.catalog.as_deref().map(catalog::load).transpose()?;
        let stored = secrets::load_or_create(data_dir)?;
        let token_secret = config.token_secret.clone().unwrap_or(stored.token);
        let webhook_secret = config.webhook_secret.clone().unwrap_or(stored.webhook);

        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let address = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{address}"));

        let (supervisor, spawner) = Supervisor::new();
        let bus = MemoryBus::open(&data_dir.join("bus.sqlite"), config.partitions, &spawner)
            .await
            .context("cannot open the bus log")?;
        bus.ensure_topics(&TopicSpec::all()).await?;
        let shared_bus: Arc<dyn Bus> = Arc::new(bus.clone());

        let open = |name: &str| {
            let path: PathBuf = data_dir.join(format!("{name}.sqlite"));
            async move {
                Db::sqlite(&path)
                    .await
                    .with_context(|| format!("cannot open {}", path.display()))
            }
        };
        let order_db = open("order").await?;
        let stock_db = open("stock").await?;
        let payment_db = open("payment").await?;

        stock::start(stock_db.clone(), shared_bus.clone(), catalog, &spawner).await?;
        order::start(
            order_db.clone(),
            shared_bus.clone(),
            config.pay_ttl,
            &spawner,
        )
        .await?;
        let checkout = LocalCheckout::new(
            payment_db.clone(),
            LocalCheckoutConfig {
                public_url: public_url.clone(),
                return_url: public_url.clone(),
                webhook_url: format!("http://{}/stripe/webhook", loopback(address)),
                webhook_secret: webhook_secret.clone(),
            },
        );
        let (_, payment_routes) = payment::start(
            payment_db.clone(),
            shared_bus.clone(),
            Arc::new(checkout.clone()),
            webhook_secret,
            &spawner,
        )
        .await?;
        checkout.spawn_delivery(&spawner);
        let gateway = gateway::start(shared_bus.clone(), token_secret).await?;

        let databases = vec![
            ("order", order_db),
            ("stock", stock_db),
            ("payment", payment_db),
        ];
        let health = Health {
            databases: databases.clone(),
            bus: shared_bus,
            gateway: Some(gateway.clone()),
        };
        let router = Router::new()
            .merge(gateway.router())
            .merge(payment_routes)
            .merge(checkout.router())
            .merge(health.router())
            .merge(index_router());

        Ok(Application {
            listener,
            router,
            supervisor,
            spawner,
            address,
            public_url,
            bus,
            databases,
            _lock: lock,
        })
    }

    /// The address the backend listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The base of checkout and return URLs.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The in-process bus, for tests that redeliver messages.
    pub fn bus(&self) -> &MemoryBus {
        &self.bus
    }

    /// A handle that reports whether every message has been handled, for
    /// tests. Cheap to clone; usable while the application runs.
    pub fn idleness(&self) -> Idleness {
        Idleness {
            bus: self.bus.clone(),
            databases: self.databases.iter().map(|(_, db)| db.clone()).collect(),
        }
    }

    /// Serves until `shutdown` completes (or a task fails), then stops
    /// every service, finishing the work in hand.
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
        let server_stopping = stopping.clone();
        let server = tokio::spawn(
            axum::serve(self.listener, self.router)
                .with_graceful_shutdown(async move { server_stopping.triggered().await })
                .into_future(),
        );
        let supervised = self.supervisor.run(DRAIN).await;
        outside.abort();
        match tokio::time::timeout(Duration::from_secs(5), server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(error))) => tracing::warn!(%error, "HTTP server stopped with an error"),
            Ok(Err(error)) => tracing::warn!(%error, "HTTP server task failed"),
            Err(_) => tracing::warn!("HTTP server did not stop in time"),
        }
        for (_, db) in &self.databases {
            db.close().await;
        }
        tracing::info!("stopped");
        supervised
    }
}

/// Whether an application has handled every message it holds.
#[derive(Clone)]
pub struct Idleness {
    bus: MemoryBus,
    databases: Vec<Db>,
}

impl Idleness {
    /// True when no outbox holds a message and every subscriber has handled
    /// every record on the bus.
    pub async fn is_idle(&self) -> bool {
        for db in &self.databases {
            if outbox::pending(db)
                .await
                .map_or(true, |pending| pending > 0)
            {
                return false;
            }
        }
        self.bus.is_idle()
    }

    /// Waits until [`Idleness::is_idle`] holds twice in a row, 50 ms apart.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                if self.is_idle().await {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if self.is_idle().await {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }
}

/// Where to reach `address` from this machine: the loopback address when
/// it listens on all interfaces.
fn loopback(address: SocketAddr) -> SocketAddr {
    let mut reachable = address;
    if address.ip().is_unspecified() {
        reachable.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    reachable
}

/// Takes the data directory's lock file, or says who holds it.
fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<File> {
    let path = dir.join("LOCK");
    let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another shop-backend is already using the data directory {}; stop it or pass a different --data-dir",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}
