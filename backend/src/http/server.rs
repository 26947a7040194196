//! Serving a process's routes on its listener, within the connection
//! bounds every process applies (gateway, payment, order, stock alike):
//!
//! - at most `max_connections` connections at once, and at most
//!   `max_connections_per_address` from one IP address; a connection
//!   beyond either is answered `503 Service Unavailable` at once and
//!   closed, so the client knows to come back rather than wait;
//! - hyper's header-read timeout: a connection that does not send a whole
//!   request head in time (one that never sends a byte, or an idle
//!   keep-alive one) is closed;
//! - tower-http's request timeout: a request whose body and answer take
//!   longer gets `408 Request Timeout`.
//!
//! A connection stays counted while its socket is open, also after it
//! became a WebSocket: the count travels with the socket ([`Counted`]).
//! WebSocket connections have their own timeouts in the gateway
//! (`gateway::ws`).
//!
//! The accept loop is ours because the counting must happen before hyper
//! sees a connection (tower's limits see requests, and an idle socket
//! sends none) and because `axum::serve` sets no header-read timeout.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use shop_shared::sync::lock;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower_http::timeout::TimeoutLayer;

use crate::config::ConnectionArgs;
use crate::metrics::{self, GaugeSource, Metrics, Sample};

/// Refusals being answered at once; beyond this a refused connection is
/// closed without an answer, so a flood of them holds nothing.
const MAX_REFUSING: usize = 256;

/// How much of a refused connection's request is read (and thrown away)
/// before closing it, so that closing does not reset the connection
/// before the client has read the answer.
const REFUSAL_DRAIN: u64 = 64 * 1024;

/// Counts the open connections of a process, in total and per address,
/// and admits new ones within the limits. Cheap to clone.
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Inner>,
}

struct Inner {
    limits: ConnectionArgs,
    open: Mutex<Open>,
    /// Refused connections still being answered.
    refusing: AtomicUsize,
    metrics: Metrics,
}

/// An address is in `by_address` only while it has a connection open.
#[derive(Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerAddress,
}

impl Refusal {
    fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total",
            Refusal::PerAddress => "per_address",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Refusal::Total => {
                "the shop is serving as many connections as it can; try again shortly\n"
            }
            Refusal::PerAddress => {
                "too many connections from your address; close some or try again shortly\n"
            }
        }
    }
}

impl Connections {
    pub fn new(limits: ConnectionArgs, metrics: Metrics) -> Self {
        Connections {
            inner: Arc::new(Inner {
                limits,
                open: Mutex::default(),
                refusing: AtomicUsize::new(0),
                metrics,
            }),
        }
    }

    /// Counts a connection from `address` if the limits allow it.
    fn admit(&self, address: IpAddr) -> Result<Admitted, Refusal> {
        let limits = &self.inner.limits;
        let mut open = lock(&self.inner.open);
        if open.total >= limits.max_connections as usize {
            return Err(Refusal::Total);
        }
        let from_address = open.by_address.entry(address).or_default();
        if *from_address >= limits.max_connections_per_address as usize {
            return Err(Refusal::PerAddress);
        }
        *from_address += 1;
        open.total += 1;
        Ok(Admitted {
            connections: self.clone(),
            address,
        })
    }

    /// Open connections and the addresses they come from, read when
    /// `/metrics` is scraped.
    pub fn gauges(&self) -> GaugeSource {
        let connections = self.clone();
        metrics::source(move || {
            let (total, addresses) = {
                let open = lock(&connections.inner.open);
                (open.total, open.by_address.len())
            };
            async move {
                vec![
                    Sample {
                        name: "shop_http_connections",
                        help: "Open client connections (HTTP and WebSocket).",
                        labels: vec![],
                        value: total as f64,
                    },
                    Sample {
                        name: "shop_http_connection_addresses",
                        help: "Client addresses with a connection open.",
                        labels: vec![],
                        value: addresses as f64,
                    },
                ]
            }
        })
    }

    /// Answers a refused connection `503` and closes it, in a task of its
    /// own; or closes it at once when many refusals are being answered.
    fn refuse(&self, mut stream: TcpStream, why: Refusal) {
        self.inner.metrics.connection_refused(why.label());
        let refusing = &self.inner.refusing;
        if refusing.fetch_add(1, Ordering::Relaxed) >= MAX_REFUSING {
            refusing.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        let connections = self.clone();
        let linger = self.inner.limits.header_read_timeout;
        tokio::spawn(async move {
            let body = why.message();
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
                 retry-after: 5\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(linger, async {
                stream.write_all(answer.as_bytes()).await?;
                stream.shutdown().await?;
                // Read what the client sent until it closes, so that
                // closing does not reset the connection under the answer.
                let mut sink = tokio::io::sink();
                tokio::io::copy(&mut (&mut stream).take(REFUSAL_DRAIN), &mut sink).await
            })
            .await;
            connections.inner.refusing.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// A connection counted until dropped.
struct Admitted {
    connections: Connections,
    address: IpAddr,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = lock(&self.connections.inner.open);
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

/// A socket that counts as an open connection as long as it exists, also
/// once hyper has handed it to a WebSocket.
struct Counted {
    // Fields drop in order: the count goes before the socket closes, so a
    // client that sees the close finds the connection no longer counted.
    _admitted: Admitted,
    stream: TcpStream,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// Serves `router` on `listener` within the limits `connections` keeps,
/// over TLS when `tls` is given, until `shutdown` completes; then stops
/// accepting, lets every connection finish its request in hand, and
/// returns once they have (WebSockets end on the process's own shutdown
/// signal).
///
/// Over TLS a refused connection is closed without an answer (a `503`
/// would first cost a handshake), and the handshake must be done within
/// the header-read timeout, as a request head must.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    connections: Connections,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send,
) {
    let limits = connections.inner.limits.clone();
    let router = router.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        limits.request_timeout,
    ));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    // Dropped, it asks every connection to finish; `closed` tells when all
    // have.
    let (stop, stopping) = watch::channel(());
    let mut listener = listener;
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, remote): (TcpStream, SocketAddr) = tokio::select! {
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        // Pushes and replies are small frames: send each at once rather
        // than let Nagle's algorithm hold it for the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let admitted = match connections.admit(remote.ip()) {
            Ok(admitted) => admitted,
            Err(why) if tls.is_some() => {
                tracing::debug!(%remote, reason = why.label(), "TLS connection refused");
                connections.inner.metrics.connection_refused(why.label());
                continue;
            }
            Err(why) => {
                tracing::debug!(%remote, reason = why.label(), "connection refused");
                connections.refuse(stream, why);
                continue;
            }
        };
        let counted = Counted {
            _admitted: admitted,
            stream,
        };
        let (http, router, stopping) = (http.clone(), router.clone(), stopping.clone());
        match &tls {
            None => {
                tokio::spawn(serve_connection(counted, http, router, stopping, remote));
            }
            Some(acceptor) => {
                let (acceptor, handshake) = (acceptor.clone(), limits.header_read_timeout);
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake, acceptor.accept(counted)).await {
                        Ok(Ok(secured)) => {
                            serve_connection(secured, http, router, stopping, remote).await;
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(%remote, %error, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                });
            }
        }
    }
    drop(listener);
    drop(stopping);
    let _ = stop.send(());
    stop.closed().await;
}

/// Serves one connection's requests (and a WebSocket it upgrades to) until
/// it ends, finishing the request in hand when `stopping` changes.
async fn serve_connection<I>(
    io: I,
    http: hyper::server::conn::http1::Builder,
    router: Router,
    mut stopping: watch::Receiver<()>,
    remote: SocketAddr,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(router))
        .with_upgrades();
    let mut connection = pin!(connection);
    let mut finishing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%remote, %error, "connection ended with an error");
                }
                break;
            }
            _ = stopping.changed(), if !finishing => {
                finishing = true;
                connection.as_mut().graceful_shutdown();
            }
        }
    }
}

/// How long [`serve`] may take to stop before it is left behind.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn connections(total: u32, per_address: u32) -> Connections {
        Connections::new(
            ConnectionArgs {
                max_connections: total,
                max_connections_per_address: per_address,
                ..ConnectionArgs::default()
            },
            Metrics::default(),
        )
    }

    fn open(connections: &Connections) -> (usize, usize) {
        let open = lock(&connections.inner.open);
        (open.total, open.by_address.len())
    }

    #[test]
    fn admits_within_both_limits_and_forgets_addresses_that_leave() {
        let connections = connections(3, 2);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = connections.admit(a).expect("first from a");
        let second = connections.admit(a).expect("second from a");
        assert_eq!(connections.admit(a).err(), Some(Refusal::PerAddress));
        let third = connections.admit(b).expect("b has its own count");
        assert_eq!(
            connections.admit(IpAddr::from([10, 0, 0, 3])).err(),
            Some(Refusal::Total)
        );
        assert_eq!(open(&connections), (3, 2));
        drop(first);
        assert!(
            connections.admit(a).is_ok(),
            "a slot freed, and freed again"
        );
        drop((second, third));
        assert_eq!(open(&connections), (0, 0), "no address is remembered");
    }
}
