//! The async client of the gateway's WebSocket protocol, used by the CLI,
//! the TUI, the tests and the benchmark.
//!
//! [`Client::connect`] opens a connection and says `hello`; each command
//! method sends one frame and awaits the reply with the same request id.
//! Pushes (product and order changes) arrive on [`Client::subscribe`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use shop_shared::catalog::{AuditEntry, CatalogChange};
use shop_shared::domain::{Order, OrderStatus, Product};
use shop_shared::protocol::{
    ClientMessage, ErrorCode, OrderLineRequest, PROTOCOL_VERSION, ServerMessage,
};
use shop_shared::sync::lock;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::tls::Trust;
use uuid::Uuid;

/// How long a command waits for its reply unless told otherwise.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest wait to open the connection (TCP, TLS, the WebSocket handshake)
/// and be welcomed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// After this long without a frame from the gateway the client pings it;
/// after as long again without one, the connection counts as lost (a
/// gateway that stopped answering, a network that dropped it silently).
const LIVENESS: Duration = if cfg!(test) {
    Duration::from_millis(300)
} else {
    Duration::from_secs(15)
};

/// Why there is no secure connection, in words that say what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsProblem {
    /// Its certificate is signed by no authority this client trusts: one
    /// from a private CA needs `--ca-cert`.
    #[error("its certificate is not signed by an authority this client trusts ({0})")]
    Untrusted(String),
    #[error("its certificate has expired or is not valid yet")]
    Expired,
    #[error("its certificate is for another host ({0})")]
    WrongHost(String),
    /// `wss://` or `https://` to a port that does not speak TLS.
    #[error("it does not speak TLS on that port; use http:// or ws://")]
    NotTls,
    /// `ws://` or `http://` to a port that answers in TLS (or not in HTTP).
    #[error("it did not answer in plain HTTP; if it serves TLS, use https:// or wss://")]
    TlsOnly,
    #[error("{0}")]
    Other(String),
}

/// What can go wrong talking to the gateway.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the gateway at {url}: {reason}")]
    Connect { url: String, reason: String },
    /// The two ends did not agree on TLS: the gateway's certificate is not
    /// trusted, has expired or names another host, or one end speaks TLS
    /// and the other does not.
    #[error("no secure connection to the gateway at {url}: {problem}")]
    Tls { url: String, problem: TlsProblem },
    #[error("the connection to the gateway closed")]
    Closed,
    #[error("no answer from the gateway within {0:?}")]
    Timeout(Duration),
    /// The gateway refused the command.
    #[error("{message} ({code})")]
    Server { code: ErrorCode, message: String },
    #[error("unexpected reply from the gateway: {0}")]
    Protocol(String),
}

impl ClientError {
    /// The gateway's error code, when it refused the command.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Something the gateway pushed, or an error frame no command waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Push {
    Product(Product),
    Order(Order),
    /// An `error` frame that answers no pending command (for example one
    /// about a frame too broken to carry a request id).
    Error {
        request_id: Option<String>,
        code: ErrorCode,
        message: String,
    },
    /// The connection ended; no more pushes will come.
    Disconnected,
}

type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<ServerMessage>>>>;

/// A connected customer. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Client {
    outgoing: mpsc::UnboundedSender<WsMessage>,
    pending: Pending,
    pushes: broadcast::Sender<Push>,
    next_request: Arc<AtomicU64>,
    /// Set when the connection ends, so no command waits for a reply that
    /// cannot come.
    closed: Arc<AtomicBool>,
    customer_id: Uuid,
    token: String,
    /// The operator's name when the token was an operator's.
    operator: Option<String>,
    reply_timeout: Duration,
}

impl Client {
    /// Connects to `url` (such as `ws://127.0.0.1:8080/ws`, or
    /// `wss://shop.example/ws` over TLS trusting Mozilla's root
    /// certificates) and says hello, as the customer of `token` or, without
    /// one, as a new customer.
    ///
    /// # Errors
    ///
    /// As [`Client::connect_with`].
    pub async fn connect(url: &str, token: Option<&str>) -> Result<Client, ClientError> {
        Client::connect_with(url, token, &Trust::default()).await
    }

    /// [`Client::connect`], trusting the certificates of `trust` for
    /// `wss://` URLs.
    ///
    /// # Errors
    ///
    /// [`ClientError::Connect`] when the WebSocket cannot be opened;
    /// [`ClientError::Tls`] when the TLS handshake fails (most often: the
    /// gateway's certificate is not trusted); [`ClientError::Server`] when
    /// the gateway refuses the hello (`invalid_token` for a token it does
    /// not know, `unsupported_protocol`); otherwise those of
    /// [`Client::request`].
    pub async fn connect_with(
        url: &str,
        token: Option<&str>,
        trust: &Trust,
    ) -> Result<Client, ClientError> {
        Client::open_within(CONNECT_TIMEOUT, url, token, trust).await
    }

    async fn open_within(
        limit: Duration,
        url: &str,
        token: Option<&str>,
        trust: &Trust,
    ) -> Result<Client, ClientError> {
        tokio::time::timeout(limit, Client::open(url, token, trust))
            .await
            .unwrap_or(Err(ClientError::Timeout(limit)))
    }

    async fn open(url: &str, token: Option<&str>, trust: &Trust) -> Result<Client, ClientError> {
        // Commands and replies are small frames: send them at once rather
        // than let Nagle's algorithm hold them for the peer's delayed ACK.
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            true,
            Some(trust.connector()),
        )
        .await
        .map_err(|error| match tls_problem(url, &error) {
            Some(problem) => ClientError::Tls {
                url: url.to_owned(),
                problem,
            },
            None => ClientError::Connect {
                url: url.to_owned(),
                reason: error.to_string(),
            },
        })?;
        let (mut sink, mut stream) = socket.split();
        let (outgoing, mut outgoing_rx) = mpsc::unbounded_channel::<WsMessage>();
        let pending: Pending = Arc::default();
        let (pushes, _) = broadcast::channel(4096);

        tokio::spawn(async move {
            // Everything queued goes out in one write.
            'writing: while let Some(first) = outgoing_rx.recv().await {
                let mut next = Some(first);
                while let Some(frame) = next.take() {
                    if sink.feed(frame).await.is_err() {
                        break 'writing;
                    }
                    next = outgoing_rx.try_recv().ok();
                }
                if sink.flush().await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });

        let closed = Arc::new(AtomicBool::new(false));
        let reader_closed = closed.clone();
        let reader_pending = pending.clone();
        let reader_pushes = pushes.clone();
        // Weak: once every `Client` is dropped the writer's channel closes
        // and the connection with it; answering a ping must not keep it.
        let pong = outgoing.downgrade();
        let send_pong = move |frame: WsMessage| {
            if let Some(pong) = pong.upgrade() {
                let _ = pong.send(frame);
            }
        };
        tokio::spawn(async move {
            let mut pinged = false;
            loop {
                let frame = match tokio::time::timeout(LIVENESS, stream.next()).await {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    // Silent for two rounds, the ping unanswered: gone.
                    Err(_) if pinged => break,
                    Err(_) => {
                        pinged = true;
                        send_pong(WsMessage::Ping(Default::default()));
                        continue;
                    }
                };
                pinged = false;
                let text = match frame {
                    Ok(WsMessage::Text(text)) => text,
                    Ok(WsMessage::Ping(data)) => {
                        send_pong(WsMessage::Pong(data));
                        continue;
                    }
                    Ok(WsMessage::Close(_)) | Err(_) => break,
                    Ok(_) => continue,
                };
                let Ok(message) = serde_json::from_str::<ServerMessage>(&text) else {
                    tracing::warn!(frame = %text, "ignoring a frame this client does not understand");
                    continue;
                };
                dispatch(message, &reader_pending, &reader_pushes);
            }
            // Dropping the senders fails every command still waiting.
            reader_closed.store(true, Ordering::SeqCst);
            lock(&reader_pending).clear();
            let _ = reader_pushes.send(Push::Disconnected);
        });

        let mut client = Client {
            outgoing,
            pending,
            pushes,
            next_request: Arc::new(AtomicU64::new(1)),
            closed,
            customer_id: Uuid::nil(),
            token: String::new(),
            operator: None,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
        };
        let request_id = client.next_request_id();
        let reply = client
            .request(ClientMessage::Hello {
                request_id,
                protocol: PROTOCOL_VERSION,
                token: token.map(str::to_owned),
            })
            .await?;
        match reply {
            ServerMessage::Welcome {
                customer_id,
                token,
                operator,
                ..
            } => {
                client.customer_id = customer_id;
                client.token = token;
                client.operator = operator;
                Ok(client)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Waits at most `timeout` for each reply from now on.
    pub fn with_reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    pub fn customer_id(&self) -> Uuid {
        self.customer_id
    }

    /// The token to pass to [`Client::connect`] to be this customer again.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The operator's name when an operator's token said hello: the session
    /// may change the catalogue ([`Client::admin`]) and places no orders.
    pub fn operator(&self) -> Option<&str> {
        self.operator.as_deref()
    }

    /// Changes the catalogue, as an operator. The same `idempotency_key`
    /// always names the same change: sent again, it is applied once and
    /// answered the same. Returns the change's audit record and the
    /// product after it.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with the gateway's code: `forbidden` for a
    /// customer's session, `invalid_change`, `unknown_sku`,
    /// `product_exists`, `not_enough_stock`, `idempotency_key_reused`;
    /// otherwise those of [`Client::request`].
    pub async fn admin(
        &self,
        idempotency_key: &str,
        change: CatalogChange,
    ) -> Result<(AuditEntry, Product), ClientError> {
        let request_id = self.next_request_id();
        let command = ClientMessage::Admin {
            request_id,
            idempotency_key: idempotency_key.to_owned(),
            command: change,
        };
        match self.request(command).await? {
            ServerMessage::CatalogChanged { entry, product, .. } => Ok((entry, product)),
            other => Err(unexpected(other)),
        }
    }

    /// The newest catalogue changes, of `sku` only when given, newest first.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `forbidden` for a customer's session;
    /// otherwise those of [`Client::request`].
    pub async fn audit(&self, sku: Option<&str>) -> Result<Vec<AuditEntry>, ClientError> {
        let request_id = self.next_request_id();
        let command = ClientMessage::ListAudit {
            request_id,
            sku: sku.map(str::to_owned),
        };
        match self.request(command).await? {
            ServerMessage::Audit { entries, .. } => Ok(entries),
            other => Err(unexpected(other)),
        }
    }

    /// Live pushes from now on. Subscribe before sending a command whose
    /// effects you want to watch.
    pub fn subscribe(&self) -> broadcast::Receiver<Push> {
        self.pushes.subscribe()
    }

    /// What the shop sells, with the quantities available now.
    ///
    /// # Errors
    ///
    /// Those of [`Client::request`].
    pub async fn products(&self) -> Result<Vec<Product>, ClientError> {
        let request_id = self.next_request_id();
        match self
            .request(ClientMessage::ListProducts { request_id })
            .await?
        {
            ServerMessage::Products { products, .. } => Ok(products),
            other => Err(unexpected(other)),
        }
    }

    /// Places an order of `(sku, quantity)` lines. The same
    /// `idempotency_key` always names the same order. The lines go as they
    /// are, unchecked, so that tests can send what a gateway must refuse.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with the gateway's code when it refuses the
    /// order (`unknown_sku`, `invalid_quantity`, …); otherwise those of
    /// [`Client::request`].
    pub async fn place_order(
        &self,
        lines: &[(&str, i64)],
        idempotency_key: &str,
    ) -> Result<Order, ClientError> {
        let request_id = self.next_request_id();
        let lines = lines
            .iter()
            .map(|(sku, quantity)| OrderLineRequest {
                sku: (*sku).to_owned(),
                quantity: *quantity,
            })
            .collect();
        let command = ClientMessage::PlaceOrder {
            request_id,
            idempotency_key: idempotency_key.to_owned(),
            lines,
        };
        match self.request(command).await? {
            ServerMessage::OrderPlaced { order, .. } => Ok(order),
            other => Err(unexpected(other)),
        }
    }

    /// This customer's orders, newest first.
    ///
    /// # Errors
    ///
    /// Those of [`Client::request`].
    pub async fn orders(&self) -> Result<Vec<Order>, ClientError> {
        let request_id = self.next_request_id();
        match self
            .request(ClientMessage::ListOrders { request_id })
            .await?
        {
            ServerMessage::Orders { orders, .. } => Ok(orders),
            other => Err(unexpected(other)),
        }
    }

    /// One order of this customer.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `order_not_found` when this customer has
    /// no such order; otherwise those of [`Client::request`].
    pub async fn order(&self, order_id: &str) -> Result<Order, ClientError> {
        let request_id = self.next_request_id();
        let command = ClientMessage::GetOrder {
            request_id,
            order_id: order_id.to_owned(),
        };
        match self.request(command).await? {
            ServerMessage::Order { order, .. } => Ok(order),
            other => Err(unexpected(other)),
        }
    }

    /// Cancels an unpaid order and returns it as cancelled.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] with `order_not_found` or
    /// `order_not_cancellable` (paid or cancelled already); otherwise those
    /// of [`Client::request`].
    pub async fn cancel_order(&self, order_id: &str) -> Result<Order, ClientError> {
        let request_id = self.next_request_id();
        let command = ClientMessage::CancelOrder {
            request_id,
            order_id: order_id.to_owned(),
        };
        match self.request(command).await? {
            ServerMessage::Order { order, .. } => Ok(order),
            other => Err(unexpected(other)),
        }
    }

    /// Checks that the gateway answers.
    ///
    /// # Errors
    ///
    /// Those of [`Client::request`].
    pub async fn ping(&self) -> Result<(), ClientError> {
        let request_id = self.next_request_id();
        match self.request(ClientMessage::Ping { request_id }).await? {
            ServerMessage::Pong { .. } => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until order `order_id` satisfies `done`, or `timeout` passes.
    /// Looks at the current state first, so an update that came before the
    /// call is not missed.
    ///
    /// # Errors
    ///
    /// [`ClientError::Timeout`] when `timeout` passes first,
    /// [`ClientError::Closed`] when the connection ends, and those of
    /// [`Client::order`] but `order_not_found` (an order not stored yet is
    /// waited for).
    pub async fn wait_for_order(
        &self,
        order_id: Uuid,
        timeout: Duration,
        done: impl Fn(&Order) -> bool,
    ) -> Result<Order, ClientError> {
        let mut pushes = self.subscribe();
        let id = order_id.to_string();
        let wait = async {
            match self.order(&id).await {
                Ok(order) if done(&order) => return Ok(order),
                Ok(_) => {}
                Err(ClientError::Server {
                    code: ErrorCode::OrderNotFound,
                    ..
                }) => {}
                Err(error) => return Err(error),
            }
            loop {
                match pushes.recv().await {
                    Ok(Push::Order(order)) if order.id == order_id && done(&order) => {
                        return Ok(order);
                    }
                    Ok(Push::Disconnected) | Err(broadcast::error::RecvError::Closed) => {
                        return Err(ClientError::Closed);
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Ok(order) = self.order(&id).await
                            && done(&order)
                        {
                            return Ok(order);
                        }
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| ClientError::Timeout(timeout))?
    }

    /// Waits until the order is RESERVED with a checkout URL, or final.
    ///
    /// # Errors
    ///
    /// Those of [`Client::wait_for_order`].
    pub async fn wait_for_checkout(
        &self,
        order_id: Uuid,
        timeout: Duration,
    ) -> Result<Order, ClientError> {
        self.wait_for_order(order_id, timeout, |order| {
            order.checkout_url.is_some() || order.status.is_final()
        })
        .await
    }

    /// Waits until the order has a status in `statuses`.
    ///
    /// # Errors
    ///
    /// Those of [`Client::wait_for_order`].
    pub async fn wait_for_status(
        &self,
        order_id: Uuid,
        statuses: &[OrderStatus],
        timeout: Duration,
    ) -> Result<Order, ClientError> {
        self.wait_for_order(order_id, timeout, |order| statuses.contains(&order.status))
            .await
    }

    /// Sends a raw text frame, for testing how the gateway treats bad input.
    /// Any reply arrives as a [`Push::Error`] or through a pending command.
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] when the connection has ended.
    pub fn send_raw(&self, text: impl Into<String>) -> Result<(), ClientError> {
        self.outgoing
            .send(WsMessage::text(text.into()))
            .map_err(|_| ClientError::Closed)
    }

    /// A fresh request id for a command of this connection.
    pub fn next_request_id(&self) -> String {
        self.next_request
            .fetch_add(1, Ordering::Relaxed)
            .to_string()
    }

    /// Sends one command and awaits its reply; an `error` reply becomes
    /// [`ClientError::Server`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Closed`] when the connection has ended or ends before
    /// the reply; [`ClientError::Timeout`] when no reply comes within the
    /// reply timeout ([`Client::with_reply_timeout`]);
    /// [`ClientError::Server`] when the reply is an `error` frame;
    /// [`ClientError::Protocol`] when the command cannot be encoded. The
    /// command methods add [`ClientError::Protocol`] for a reply of the
    /// wrong type.
    pub async fn request(&self, command: ClientMessage) -> Result<ServerMessage, ClientError> {
        let request_id = command.request_id().to_owned();
        let (reply_tx, reply_rx) = oneshot::channel();
        lock(&self.pending).insert(request_id.clone(), reply_tx);
        if self.closed.load(Ordering::SeqCst) {
            lock(&self.pending).remove(&request_id);
            return Err(ClientError::Closed);
        }
        let text = serde_json::to_string(&command)
            .map_err(|error| ClientError::Protocol(error.to_string()))?;
        if self.outgoing.send(WsMessage::text(text)).is_err() {
            lock(&self.pending).remove(&request_id);
            return Err(ClientError::Closed);
        }
        let reply = match tokio::time::timeout(self.reply_timeout, reply_rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(ClientError::Closed),
            Err(_) => {
                lock(&self.pending).remove(&request_id);
                return Err(ClientError::Timeout(self.reply_timeout));
            }
        };
        match reply {
            ServerMessage::Error { code, message, .. } => {
                Err(ClientError::Server { code, message })
            }
            reply => Ok(reply),
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Closes the connection.
    pub fn close(&self) {
        let _ = self.outgoing.send(WsMessage::Close(None));
    }
}

fn dispatch(message: ServerMessage, pending: &Pending, pushes: &broadcast::Sender<Push>) {
    if let Some(request_id) = message.request_id()
        && let Some(waiter) = lock(pending).remove(request_id)
    {
        let _ = waiter.send(message);
        return;
    }
    let push = match message {
        ServerMessage::ProductUpdated { product } => Push::Product(product),
        ServerMessage::OrderUpdated { order } => Push::Order(order),
        ServerMessage::Error {
            request_id,
            code,
            message,
        } => Push::Error {
            request_id,
            code,
            message,
        },
        other => {
            tracing::debug!(?other, "reply for a command nobody waits for any more");
            return;
        }
    };
    let _ = pushes.send(push);
}

fn unexpected(reply: ServerMessage) -> ClientError {
    ClientError::Protocol(format!("{reply:?}"))
}

/// The WebSocket URL for a gateway given as `http://host:port`,
/// `ws://host:port`, or `host:port` (with or without the `/ws` path).
/// What went wrong with TLS, when `error` (connecting to `url`) is about it.
fn tls_problem(url: &str, error: &tokio_tungstenite::tungstenite::Error) -> Option<TlsProblem> {
    use rustls::{CertificateError, Error as Rustls};
    use tokio_tungstenite::tungstenite::Error;
    let rustls = match error {
        Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<Rustls>()),
        _ => None,
    };
    Some(match (error, rustls) {
        (_, Some(Rustls::InvalidCertificate(certificate))) => match certificate {
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsProblem::Expired,
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsProblem::WrongHost(certificate.to_string())
            }
            CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                TlsProblem::Untrusted(certificate.to_string())
            }
            other => TlsProblem::Other(format!("invalid peer certificate: {other}")),
        },
        (_, Some(Rustls::InvalidMessage(_) | Rustls::InappropriateMessage { .. })) => {
            TlsProblem::NotTls
        }
        (_, Some(other)) => TlsProblem::Other(other.to_string()),
        (Error::Tls(tls), None) => TlsProblem::Other(tls.to_string()),
        (Error::HttpFormat(_) | Error::Protocol(_), None) if url.starts_with("ws://") => {
            TlsProblem::TlsOnly
        }
        _ => return None,
    })
}

/// Whether `host` (as in a URL: `[::1]`, `LOCALHOST.`) names this machine
/// only: `localhost` and its subdomains, the loopback addresses, and the
/// unspecified address a server listening everywhere prints.
pub(crate) fn names_this_machine(host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

/// Checks that `gateway` names a gateway the way [`websocket_url`] reads:
/// `http://`, `https://`, `ws://`, `wss://` or no scheme (`host:port`), and
/// a host. Returns it unchanged: for clap's `value_parser`, so a mistyped
/// `--gateway` is a usage error rather than a gateway that cannot be
/// reached.
///
/// # Errors
///
/// A sentence naming what is wrong: another scheme (`ftp://…`), or no host.
pub fn check_gateway(gateway: &str) -> Result<String, String> {
    let trimmed = gateway.trim();
    let rest = match trimmed.split_once("://") {
        Some((scheme, rest)) => {
            if !matches!(
                scheme.to_ascii_lowercase().as_str(),
                "http" | "https" | "ws" | "wss"
            ) {
                return Err(format!(
                    "`{scheme}://` is not a way to reach a gateway: use http://, https://, ws:// or wss:// (or host:port)"
                ));
            }
            rest
        }
        None => trimmed,
    };
    if rest.split('/').next().unwrap_or_default().is_empty() {
        return Err("names no host: use http://host:port".to_owned());
    }
    Ok(gateway.to_owned())
}

/// The WebSocket URL of the gateway named `gateway`: `http://host:port`,
/// `https://…` (TLS), `ws://…/ws`, `wss://…/ws` or a bare `host:port`.
pub fn websocket_url(gateway: &str) -> String {
    let trimmed = gateway.trim().trim_end_matches('/');
    // Schemes are case-insensitive (RFC 3986 §3.1).
    let with_scheme = match trimmed.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => format!("ws://{rest}"),
            "https" | "wss" => format!("wss://{rest}"),
            _ => trimmed.to_owned(),
        },
        None => format!("ws://{trimmed}"),
    };
    if with_scheme.ends_with("/ws") {
        with_scheme
    } else {
        format!("{with_scheme}/ws")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type ServerSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

    /// A gateway on a free port that welcomes one client, then hands the
    /// connection to `then`. Returns its URL.
    async fn welcomes<F, Fut>(then: F) -> String
    where
        F: FnOnce(ServerSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port");
        let url = format!("ws://{}/ws", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("a client");
            let mut socket = tokio_tungstenite::accept_async(tcp)
                .await
                .expect("handshake");
            let Some(Ok(WsMessage::Text(hello))) = socket.next().await else {
                return;
            };
            let hello: serde_json::Value = serde_json::from_str(&hello).expect("JSON");
            let welcome = ServerMessage::Welcome {
                request_id: hello["request_id"].as_str().unwrap_or_default().to_owned(),
                protocol: PROTOCOL_VERSION,
                customer_id: Uuid::nil(),
                token: "t".into(),
                operator: None,
            };
            let text = serde_json::to_string(&welcome).expect("JSON");
            socket.send(WsMessage::text(text)).await.expect("sent");
            then(socket).await;
        });
        url
    }

    /// A gateway that welcomes one client and then holds the connection
    /// without reading or writing anything more: a process stopped, a
    /// network gone silent.
    async fn falls_silent() -> String {
        welcomes(|socket| async move {
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(socket);
        })
        .await
    }

    #[tokio::test]
    async fn dropping_every_handle_closes_the_connection() {
        let (ended, ended_rx) = oneshot::channel();
        let url = welcomes(|mut socket| async move {
            // Pings from the gateway are answered while the client lives.
            socket
                .send(WsMessage::Ping(Default::default()))
                .await
                .expect("pinged");
            while let Some(Ok(frame)) = socket.next().await {
                if frame.is_close() {
                    break;
                }
            }
            let _ = ended.send(());
        })
        .await;
        let client = Client::connect(&url, None).await.expect("welcomed");
        let copy = client.clone();
        drop(client);
        drop(copy);
        let closed = tokio::time::timeout(Duration::from_secs(5), ended_rx).await;
        assert!(
            matches!(closed, Ok(Ok(()))),
            "the gateway still holds the connection of a dropped client"
        );
    }

    #[tokio::test]
    async fn a_gateway_that_stops_answering_counts_as_lost() {
        let client = Client::connect(&falls_silent().await, None)
            .await
            .expect("welcomed");
        let mut pushes = client.subscribe();
        let lost = tokio::time::timeout(Duration::from_secs(5), async {
            while let Ok(push) = pushes.recv().await {
                if matches!(push, Push::Disconnected) {
                    return;
                }
            }
        })
        .await;
        assert!(lost.is_ok(), "still 'connected' to a silent gateway");
    }

    #[tokio::test]
    async fn connecting_to_a_port_that_never_answers_times_out() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        let url = format!("ws://{}/ws", listener.local_addr().expect("address"));
        let limit = Duration::from_millis(300);
        let outcome = Client::open_within(limit, &url, None, &Trust::default()).await;
        assert!(
            matches!(outcome, Err(ClientError::Timeout(after)) if after == limit),
            "{:?}",
            outcome.err()
        );
        drop(listener);
    }

    #[test]
    fn a_gateway_named_another_way_is_refused_by_name() {
        for good in [
            "127.0.0.1:8080",
            "http://localhost:8080/",
            "HTTPS://shop.example",
            "ws://h:1/ws",
            "wss://h/ws",
        ] {
            assert_eq!(check_gateway(good).as_deref(), Ok(good), "{good}");
        }
        let refused = check_gateway("ftp://x").expect_err("ftp");
        assert!(refused.contains("`ftp://`"), "{refused}");
        assert!(refused.contains("http://"), "{refused}");
        for hostless in ["", "http://", "https:///ws", "/ws"] {
            let refused = check_gateway(hostless).expect_err(hostless);
            assert!(refused.contains("no host"), "{hostless}: {refused}");
        }
    }

    #[test]
    fn websocket_url_accepts_the_usual_ways_to_name_a_gateway() {
        assert_eq!(websocket_url("127.0.0.1:8080"), "ws://127.0.0.1:8080/ws");
        assert_eq!(
            websocket_url("http://localhost:8080/"),
            "ws://localhost:8080/ws"
        );
        assert_eq!(
            websocket_url("https://shop.example"),
            "wss://shop.example/ws"
        );
        assert_eq!(websocket_url("ws://h:1/ws"), "ws://h:1/ws");
        assert_eq!(
            websocket_url("HTTPS://LOCALHOST:8443"),
            "wss://LOCALHOST:8443/ws"
        );
    }
}
