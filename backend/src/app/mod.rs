//! Wiring the services into processes.
//!
//! - [`embedded`]: all four services in one process over the in-process bus
//!   and SQLite (the default).
//! - [`distributed`]: one service (or all) per process over Kafka and
//!   PostgreSQL.
//!
//! Both build a [`Server`]: a bound listener, the routes, and supervised
//! tasks, which serves until a shutdown future completes or a task fails.

pub mod distributed;
pub mod embedded;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt;

use crate::bus::Bus;
use crate::db::Db;
use crate::metrics::Metrics;
use crate::tasks::{Spawner, Supervisor};

/// How long stopping may take before tasks are left behind.
const DRAIN: Duration = Duration::from_secs(10);

/// What every service needs from its process.
#[derive(Clone)]
pub struct Runtime {
    pub bus: Arc<dyn Bus>,
    pub metrics: Metrics,
    pub spawner: Spawner,
}

/// A bound, not yet serving process.
pub struct Server {
    listener: tokio::net::TcpListener,
    router: Router,
    supervisor: Supervisor,
    spawner: Spawner,
    address: SocketAddr,
    databases: Vec<Db>,
}

impl Server {
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Serves until `shutdown` completes (or a task fails), then stops every
    /// service, finishing the work in hand.
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
        let server = tokio::spawn(
            // Pushes and replies are small frames: send each at once rather
            // than let Nagle's algorithm hold it for the client's delayed ACK.
            axum::serve(
                self.listener.tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                }),
                self.router,
            )
            .with_graceful_shutdown(async move { stopping.triggered().await })
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
        for db in &self.databases {
            db.close().await;
        }
        tracing::info!("stopped");
        supervised
    }
}

/// Binds `listen` and returns the listener with the base URL of its pages:
/// `public_url` when set, otherwise the address bound (port 0 resolved).
pub async fn bind(
    listen: SocketAddr,
    public_url: Option<&str>,
) -> anyhow::Result<(tokio::net::TcpListener, SocketAddr, String)> {
    use anyhow::Context;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let address = listener.local_addr()?;
    let public_url = public_url.map_or_else(|| format!("http://{address}"), str::to_owned);
    Ok((listener, address, public_url))
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
