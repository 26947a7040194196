//! The SSH server: the listener, the caps on connections, and each
//! connection's task, all ending when the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use russh::keys::{HashAlg, PrivateKey};
use russh::server::run_stream;
use russh::{Disconnect, MethodKind, MethodSet};
use shop_client::words::Clock;
use shop_client::{Trust, websocket_url};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use crate::connection::{Connection, GRACE, Lifecycle};
use crate::host_key::{self, HostKeyError};
use crate::limits::{Limits, Permit};
use crate::terminal::stopped;

/// What every session needs, shared by all.
pub struct Shared {
    /// The gateway's WebSocket address.
    pub gateway: String,
    /// Where each key's customer token is kept (`Tokens::in_dir`).
    pub tokens_dir: PathBuf,
    pub trust: Trust,
    pub clock: Clock,
    pub idle_timeout: Duration,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    #[error("{0}")]
    Trust(String),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
}

/// The SSH server, bound and ready to serve.
pub struct Server {
    listener: TcpListener,
    address: SocketAddr,
    ssh: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    limits: Limits,
    login_timeout: Duration,
    fingerprint: String,
}

impl Server {
    /// Loads (or makes) the host key in the data directory and binds the
    /// listener. `clock` is the time zone sessions show times in.
    ///
    /// # Errors
    ///
    /// [`StartError`]: the host key cannot be read, made or trusted, the
    /// CA certificate cannot be read, or the address cannot be bound.
    pub async fn build(config: Config, clock: Clock) -> Result<Server, StartError> {
        let dir = config.data_dir.join("ssh");
        let key = host_key::load_or_create(&dir.join("host_ed25519_key"))?;
        let trust = Trust::new(config.ca_cert.as_deref())
            .map_err(|error| StartError::Trust(error.to_string()))?;
        let cannot_listen = |source| StartError::Listen {
            address: config.listen,
            source,
        };
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(cannot_listen)?;
        let address = listener.local_addr().map_err(cannot_listen)?;
        Ok(Server {
            listener,
            address,
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            ssh: Arc::new(ssh_config(key)),
            shared: Arc::new(Shared {
                gateway: websocket_url(&config.gateway),
                tokens_dir: dir,
                trust,
                clock,
                idle_timeout: config.idle_timeout,
            }),
            limits: Limits::new(config.max_sessions, config.max_sessions_per_address),
            login_timeout: config.login_timeout,
        })
    }

    /// The address it listens on (the port chosen, for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// The host key's fingerprint, as clients show it (`SHA256:…`).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Serves until `shutdown` completes; then every session is told and
    /// ends (its customer's terminal restored), and the connections close.
    /// A failed accept (out of file descriptors) is logged and serving
    /// goes on.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        let (stop, stopping) = watch::channel(false);
        let mut connections = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((socket, peer)) => match self.limits.admit(peer.ip()) {
                        Ok(permit) => {
                            connections.spawn(serve(
                                socket,
                                peer,
                                permit,
                                self.ssh.clone(),
                                self.shared.clone(),
                                stopping.clone(),
                                self.login_timeout,
                            ));
                        }
                        Err(refused) => {
                            tracing::warn!(%peer, %refused, "turned a connection away");
                            connections.spawn(turn_away(socket, refused.to_string()));
                        }
                    },
                    Err(error) => {
                        // Out of file descriptors, most likely: wait for some to close.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = connections.join_next() => {
                    if let Err(error) = done
                        && error.is_panic()
                    {
                        tracing::error!(%error, "an SSH connection's task panicked");
                    }
                }
            }
        }
        tracing::info!(
            sessions = self.limits.held(),
            "stopping: ending every session"
        );
        drop(self.listener);
        let _ = stop.send(true);
        let drained = tokio::time::timeout(GRACE * 2, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            connections.abort_all();
        }
    }
}

fn ssh_config(key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard(
            format!("SSH-2.0-shop-ssh_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        keys: vec![key],
        auth_rejection_time: Duration::from_millis(500),
        // OpenSSH asks with `none` first: no need to make it wait.
        auth_rejection_time_initial: Some(Duration::ZERO),
        max_auth_attempts: 6,
        // A dropped connection is noticed within a minute.
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 3,
        // Silence before logging in meets the login deadline; after it,
        // the keepalives above and the idle timeout. russh's own timer
        // would also close a shop whose screen has not changed for that long.
        inactivity_timeout: None,
        nodelay: true,
        ..Default::default()
    }
}

/// Tells a connection over a cap why (a line before any SSH: a client shows
/// it, or at least closes), and closes it.
async fn turn_away(mut socket: TcpStream, why: String) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = socket
            .write_all(format!("shop-ssh: {why}\r\n").as_bytes())
            .await;
        let _ = socket.shutdown().await;
    })
    .await;
}

/// One connection, from the SSH handshake to its close: cut when it has not
/// logged in and started the shop within `login_timeout`, or lingers after
/// its shop ended; told to end when the server stops.
async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    _permit: Permit,
    ssh: Arc<russh::server::Config>,
    shared: Arc<Shared>,
    mut stopping: watch::Receiver<bool>,
    login_timeout: Duration,
) {
    let lifecycle = Arc::new(Lifecycle::default());
    let handler = Connection::new(peer, shared, lifecycle.clone(), stopping.clone());
    let deadline = tokio::time::Instant::now() + login_timeout;
    let session = match tokio::time::timeout_at(deadline, run_stream(ssh, socket, handler)).await {
        Ok(Ok(session)) => session,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "SSH handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "no SSH handshake in time");
            return;
        }
    };
    let handle = session.handle();
    tokio::pin!(session);
    let login = tokio::time::sleep_until(deadline);
    tokio::pin!(login);
    let (mut cut, mut deadline_passed) = (false, false);
    loop {
        tokio::select! {
            ended = &mut session => {
                if let Err(error) = ended {
                    tracing::debug!(%peer, %error, "connection ended");
                }
                return;
            }
            // The guard is read when the select starts, not when the time
            // comes: whether the shop started is checked then.
            () = &mut login, if !deadline_passed => {
                deadline_passed = true;
                if !cut && !lifecycle.started.load(Ordering::Acquire) {
                    tracing::info!(%peer, "did not log in and open the shop in time");
                    cut = true;
                    let _ = handle
                        .disconnect(
                            Disconnect::ByApplication,
                            "log in with an SSH key in time".into(),
                            String::new(),
                        )
                        .await;
                }
            }
            () = lifecycle.ended.notified(), if !cut => {
                // The client leaves once the channel is closed; one that
                // lingers is cut.
                if tokio::time::timeout(GRACE, &mut session).await.is_err() {
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, "the shop session ended".into(), String::new())
                        .await;
                }
                return;
            }
            () = stopped(&mut stopping), if !cut => {
                // Its shop is ending by itself and closing the channel; the
                // client then leaves. Cut only a connection that lingers.
                if tokio::time::timeout(GRACE, &mut session).await.is_err() {
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, "the server is stopping".into(), String::new())
                        .await;
                }
                return;
            }
        }
    }
}
