//! Embedded mode: the four services in one process over the in-process
//! bus, each with its SQLite database under the data directory, and the
//! local checkout. One port serves the WebSocket (`/ws`), the checkout and
//! return pages, the webhook (`/stripe/webhook`), `/healthz` and `/metrics`.
//!
//! `Application::build` prepares everything and binds the port (so tests
//! can start it on port 0 and ask for the address); `run_until_stopped`
//! serves until the given future completes or a task fails.

use std::fs::File;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{Server, Settings, Storage};
use crate::bus::memory::MemoryBus;
use crate::bus::{Bus, TopicSpec};
use crate::config::EmbeddedArgs;
use crate::db::Db;
use crate::gateway::TokenSecrets;
use crate::http::tls::Tls;
use crate::messaging::outbox;
use crate::metrics::Metrics;
use crate::payment::local::LocalCheckoutConfig;
use crate::runtime::Runtime;
use crate::secrets;
use crate::service::Service;
use crate::stock::catalog;
use crate::tasks::Supervisor;

/// A built, bound, not yet serving embedded backend.
pub struct Application {
    server: Server,
    public_url: String,
    bus: MemoryBus,
    metrics: Metrics,
    /// Held while running: a second backend on the same data directory
    /// would corrupt it.
    _lock: File,
}

impl Application {
    /// Prepares every service and binds the port, without serving yet.
    ///
    /// # Errors
    ///
    /// The data directory cannot be created or locked (another backend uses
    /// it), the catalogue or secrets cannot be read, the port cannot be bound,
    /// or a database, the bus log or a service cannot start.
    pub async fn build(config: EmbeddedArgs) -> anyhow::Result<Application> {
        // Secrets given by flag are checked before anything is written.
        let token_secret = config
            .token_secret
            .as_ref()
            .map(|secret| secrets::given_secret(secret, "--token-secret", "SHOP_TOKEN_SECRET"))
            .transpose()?;
        let operator_secret = config
            .operator_secret
            .as_ref()
            .map(secrets::operator_secret)
            .transpose()?;
        let webhook_secret = config
            .webhook_secret
            .as_ref()
            .map(|secret| secrets::given_secret(secret, "--webhook-secret", "SHOP_WEBHOOK_SECRET"))
            .transpose()?;
        let data_dir = &config.data_dir;
        create_data_dir(data_dir)?;
        let lock = lock_data_dir(data_dir)?;
        let catalog = config.catalog.as_deref().map(catalog::load).transpose()?;
        let stored = secrets::load_or_create(data_dir)?;
        let tokens = TokenSecrets {
            customers: token_secret.unwrap_or(stored.token),
            operators: Some(operator_secret.unwrap_or(stored.operator)),
        };
        let webhook_secret = webhook_secret.unwrap_or(stored.webhook);

        let tls = Tls::load(&config.connections.tls)?;
        let (listener, address, public_url) =
            super::bind(config.listen, config.public_url.as_deref(), tls.as_ref()).await?;
        let (webhook_url, webhook_tls) = super::own_webhook(address, tls.as_ref());

        let (supervisor, spawner) = Supervisor::new();
        let metrics = Metrics::default();
        let bus = MemoryBus::open(
            &data_dir.join("bus.sqlite"),
            config.partitions,
            metrics.clone(),
            &spawner,
        )
        .await
        .context("cannot open the bus log")?;
        bus.ensure_topics(&TopicSpec::all()).await?;
        let runtime = Runtime {
            bus: Arc::new(bus.clone()),
            metrics: metrics.clone(),
            spawner: spawner.clone(),
        };

        let composed = super::compose(
            &Service::ALL,
            &runtime,
            &Storage::Sqlite {
                dir: data_dir.clone(),
            },
            Settings {
                pay_ttl: config.pay_ttl,
                settle_grace: config.settle_grace,
                catalog,
                stripe: config.stripe.clone(),
                tokens,
                limits: config.limits.settings(),
                retention: config.retention.settings(),
                local_checkout: LocalCheckoutConfig {
                    public_url: public_url.clone(),
                    return_url: public_url.clone(),
                    webhook_url,
                    webhook_tls,
                    webhook_secret,
                    webhook_delay: config.local_checkout_webhook_delay,
                },
                connections: config.connections.clone(),
            },
        )
        .await?;

        Ok(Application {
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
            public_url,
            bus,
            metrics,
            _lock: lock,
        })
    }

    /// The address the backend listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `https` when it serves TLS, otherwise `http`.
    pub fn scheme(&self) -> &'static str {
        self.server.scheme()
    }

    /// The base of checkout and return URLs.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The in-process bus, for tests that redeliver messages.
    pub fn bus(&self) -> &MemoryBus {
        &self.bus
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A handle that reports whether every message has been handled, for
    /// tests. Cheap to clone; usable while the application runs.
    pub fn idleness(&self) -> Idleness {
        Idleness {
            bus: self.bus.clone(),
            databases: self.server.databases.clone(),
        }
    }

    /// Serves until `shutdown` completes (or a task fails), then stops.
    ///
    /// # Errors
    ///
    /// A service's task failed, or stopping left tasks running.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.server.run_until_stopped(shutdown).await
    }

    /// Serves in a task of its own until [`Running::stop`] is called or
    /// the handle is dropped: for tests and tools that embed the shop.
    pub fn spawn(self) -> Running {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = tokio::spawn(self.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Running { stop, done }
    }
}

/// An [`Application`] serving in the background; dropping it stops it.
pub struct Running {
    /// Dropped, it tells the application to stop.
    stop: tokio::sync::oneshot::Sender<()>,
    done: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    /// Stops the application and waits until it has.
    ///
    /// # Errors
    ///
    /// The application failed while running or stopping (as
    /// [`Application::run_until_stopped`]), or its task panicked.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Running { stop, done } = self;
        drop(stop);
        done.await.context("the application's task failed")?
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

/// Takes the data directory's lock file, or says who holds it.
/// Creates the data directory, readable by this user only (mode 0700 on
/// Unix, as PostgreSQL keeps its own): the databases in it hold every
/// customer's orders and payments. An existing directory is left as it is,
/// with a warning when other users can read it.
fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let cannot = || format!("cannot create the data directory {}", dir.display());
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(cannot)?;
        let mode = std::fs::metadata(dir)
            .with_context(cannot)?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %dir.display(),
                mode = format!("{mode:o}"),
                "other users can read the data directory, whose databases hold customers' orders and payments: `chmod 700` it"
            );
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).with_context(cannot)?;
    Ok(())
}

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
