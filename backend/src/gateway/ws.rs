//! One client connection on `/ws`.
//!
//! A connection is a customer's, or an operator's when `hello` presented an
//! operator token: operators change the catalogue (`admin`, `list_audit`)
//! and see products with their stock levels; customers place and cancel
//! orders. Each is refused the other's commands with `forbidden`.
//!
//! A reader loop parses frames and answers commands; a writer task owns the
//! socket's sending half; after `hello`, a push task forwards changes of
//! products and of this customer's orders. Commands that wait on the
//! services (placing and cancelling orders) run as tasks of their own, at
//! most [`MAX_IN_FLIGHT`] at once, so the connection stays responsive. When
//! the reader ends, every other task of the connection is stopped.
//!
//! Bad frames get an `error` frame and change nothing; the connection stays
//! open. Only what breaks the WebSocket protocol itself closes it, with the
//! close code RFC 6455 (section 7.4.1) gives the violation: 1009 for a
//! message beyond the socket's hard limit (1 MiB), 1007 for a text frame
//! that is not UTF-8, 1002 for any other protocol error.
//!
//! A connection must also do its part in time ([`Timeouts`]): say hello
//! (else 1008, policy violation) and send something, if only the pong to
//! the ping a silent connection gets (else 1001, going away). How many
//! connections there may be is the listener's business (`http::server`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use shop_shared::domain::Product;
use shop_shared::protocol::{
    ClientMessage, ErrorCode, PROTOCOL_VERSION, ProtocolError, ServerMessage,
};
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::task::JoinSet;
use tokio::time::Instant;
use uuid::Uuid;

use super::Gateway;
use super::read_model::CustomerChanges;
use super::token::OperatorSigner;

/// Largest WebSocket message the socket reads at all.
const MAX_SOCKET_MESSAGE: usize = 1 << 20;

/// The read buffer of a connection and how much it gathers before writing:
/// the protocol's messages are small, and tungstenite's default of 128 KiB
/// each made a thousand idle customers cost 256 MB (the buffers grow for a
/// larger message).
const SOCKET_BUFFER: usize = 8 * 1024;
/// Messages waiting for a connection's writer.
const QUEUED_FRAMES: usize = 256;
/// A message waiting for the writer, boxed: tokio allocates a channel's
/// slots 32 at a time, and a `ServerMessage` inline is a few hundred bytes,
/// which made every connected customer's queue cost about 24 KB.
type Outgoing = Box<ServerMessage>;
/// Commands one connection may have waiting at once.
const MAX_IN_FLIGHT: usize = 32;
/// How long commands wait for a starting gateway to load its read model.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may go without doing its part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// From the upgrade to a successful `hello`; then the connection is
    /// closed with 1008 (policy violation).
    pub hello: Duration,
    /// With no frame at all from the client: after half of it the gateway
    /// pings, at the end it closes with 1001 (going away). A client that
    /// takes none of the frames sent to it for this long is dropped too.
    pub idle: Duration,
}

pub async fn upgrade(ws: WebSocketUpgrade, State(gateway): State<Gateway>) -> Response {
    ws.max_message_size(MAX_SOCKET_MESSAGE)
        .max_frame_size(MAX_SOCKET_MESSAGE)
        .read_buffer_size(SOCKET_BUFFER)
        .write_buffer_size(SOCKET_BUFFER)
        .on_upgrade(move |socket| serve(gateway, socket))
}

async fn serve(gateway: Gateway, socket: WebSocket) {
    let _counted = gateway.connected();
    let timeouts = gateway.timeouts();
    let (mut sink, mut stream) = socket.split();
    let (out, mut outgoing) = mpsc::channel::<Outgoing>(QUEUED_FRAMES);
    // The reader asks the writer to ping a client that has gone quiet.
    let (ping, mut pings) = mpsc::channel::<()>(1);
    // The reader hands the writer the close frame of a protocol violation
    // or a timeout; dropped unused, the writer closes without a code.
    let (close, closing) = tokio::sync::oneshot::channel::<CloseFrame>();
    let mut close = Some(close);
    let writer = tokio::spawn(async move {
        // A client that takes nothing for the idle timeout is given up on.
        let limit = timeouts.idle;
        'writing: loop {
            let first = tokio::select! {
                message = outgoing.recv() => match message {
                    Some(message) => message,
                    None => break,
                },
                Some(()) = pings.recv() => {
                    if sent(limit, sink.send(Message::Ping(Default::default()))).await {
                        continue;
                    }
                    break;
                }
            };
            // Everything queued goes out in one write: fewer system calls,
            // and a busy connection catches up faster.
            let mut next = Some(first);
            let mut queued = 0;
            while let Some(message) = next.take() {
                if let Ok(text) = serde_json::to_string(&message)
                    && !sent(limit, sink.feed(Message::Text(text.into()))).await
                {
                    break 'writing;
                }
                queued += 1;
                if queued < WRITE_BATCH {
                    next = outgoing.try_recv().ok();
                }
            }
            if !sent(limit, sink.flush()).await {
                break;
            }
        }
        // The reader ends when this task does (its channel closes).
        drop(outgoing);
        if let Ok(frame) = closing.await {
            sent(limit, sink.send(Message::Close(Some(frame)))).await;
        }
        sent(limit, sink.close()).await;
    });
    let mut connection = Connection {
        gateway,
        out,
        customer: None,
        operator: None,
        tasks: JoinSet::new(),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    };
    let stopping = connection.gateway.shutdown().clone();
    let mut quiet = Quiet::new(timeouts);
    loop {
        let frame = tokio::select! {
            frame = stream.next() => match frame {
                Some(frame) => frame,
                None => break,
            },
            () = tokio::time::sleep_until(quiet.next_check(connection.customer.is_some())) => {
                match quiet.check(connection.customer.is_some()) {
                    Some(Overdue::Ping) => {
                        let _ = ping.try_send(());
                        continue;
                    }
                    Some(overdue) => {
                        tracing::debug!(?overdue, "closing a connection that kept quiet");
                        if let (Some(frame), Some(close)) = (overdue.close_frame(timeouts), close.take()) {
                            let _ = close.send(frame);
                        }
                        break;
                    }
                    None => continue,
                }
            },
            () = connection.out.closed() => break,
            _ = stopping.triggered() => {
                connection.close_going_away().await;
                if let Some(close) = close.take() {
                    let _ = close.send(CloseFrame {
                        code: close_code::AWAY,
                        reason: "the shop is stopping".into(),
                    });
                }
                break;
            }
        };
        quiet.heard();
        match frame {
            Ok(Message::Text(text)) => connection.on_text(text.as_str()).await,
            Ok(Message::Binary(_)) => {
                let message = "send JSON in text frames, not binary ones";
                let refusal = ProtocolError::new(None, ErrorCode::BadRequest, message);
                connection.send("invalid", refusal.into_message()).await;
            }
            Ok(Message::Close(_)) => break,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
            Err(error) => {
                tracing::debug!(%error, "connection ended");
                if let (Some(frame), Some(close)) = (violation(error), close.take()) {
                    let _ = close.send(frame);
                }
                break;
            }
        }
        // Reap finished command tasks so the set stays small.
        while connection.tasks.try_join_next().is_some() {}
    }
    connection.tasks.abort_all();
    drop(connection);
    drop(ping);
    drop(close);
    let _ = writer.await;
}

/// Whether `write` succeeded within `limit`.
async fn sent<E>(limit: Duration, write: impl Future<Output = Result<(), E>>) -> bool {
    matches!(tokio::time::timeout(limit, write).await, Ok(Ok(())))
}

/// What a connection that kept quiet is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overdue {
    /// Half the idle timeout without a frame: a ping asks for a pong.
    Ping,
    /// No `hello` within the hello timeout.
    Hello,
    /// No frame at all within the idle timeout.
    Idle,
}

impl Overdue {
    fn close_frame(self, timeouts: Timeouts) -> Option<CloseFrame> {
        let (code, reason) = match self {
            Overdue::Ping => return None,
            Overdue::Hello => (
                close_code::POLICY,
                format!(
                    "no hello within {}",
                    humantime::format_duration(timeouts.hello)
                ),
            ),
            Overdue::Idle => (
                close_code::AWAY,
                format!(
                    "nothing received for {}",
                    humantime::format_duration(timeouts.idle)
                ),
            ),
        };
        Some(CloseFrame {
            code,
            reason: reason.into(),
        })
    }
}

/// When a connection last sent anything, and what its silence is due.
struct Quiet {
    timeouts: Timeouts,
    opened: Instant,
    heard: Instant,
    pinged: bool,
}

impl Quiet {
    fn new(timeouts: Timeouts) -> Self {
        let now = Instant::now();
        Quiet {
            timeouts,
            opened: now,
            heard: now,
            pinged: false,
        }
    }

    /// A frame arrived.
    fn heard(&mut self) {
        self.heard = Instant::now();
        self.pinged = false;
    }

    fn hello_by(&self) -> Instant {
        self.opened + self.timeouts.hello
    }

    fn idle_by(&self) -> Instant {
        self.heard + self.timeouts.idle
    }

    fn ping_at(&self) -> Instant {
        self.heard + self.timeouts.idle / 2
    }

    /// When [`Quiet::check`] may next find something due.
    fn next_check(&self, said_hello: bool) -> Instant {
        let mut next = self.idle_by();
        if !said_hello {
            next = next.min(self.hello_by());
        }
        if !self.pinged {
            next = next.min(self.ping_at());
        }
        next
    }

    /// What is due now, if anything; a ping is due once per silence.
    fn check(&mut self, said_hello: bool) -> Option<Overdue> {
        let now = Instant::now();
        if !said_hello && now >= self.hello_by() {
            Some(Overdue::Hello)
        } else if now >= self.idle_by() {
            Some(Overdue::Idle)
        } else if !self.pinged && now >= self.ping_at() {
            self.pinged = true;
            Some(Overdue::Ping)
        } else {
            None
        }
    }
}

/// The close frame for a read that broke the WebSocket protocol; `None`
/// when the connection was lost rather than misused.
fn violation(error: axum::Error) -> Option<CloseFrame> {
    let error = error.into_inner().downcast::<tungstenite::Error>().ok()?;
    let (code, reason) = match *error {
        tungstenite::Error::Capacity(_) => (close_code::SIZE, "message too big"),
        tungstenite::Error::Utf8(_) => (close_code::INVALID, "text frame is not UTF-8"),
        tungstenite::Error::Protocol(_) => (close_code::PROTOCOL, "WebSocket protocol error"),
        _ => return None,
    };
    Some(CloseFrame {
        code,
        reason: reason.into(),
    })
}

struct Connection {
    gateway: Gateway,
    out: mpsc::Sender<Outgoing>,
    customer: Option<Uuid>,
    /// The operator's name when an operator token said hello.
    operator: Option<String>,
    /// The push task and waiting commands; aborted when the connection ends.
    tasks: JoinSet<()>,
    in_flight: Arc<Semaphore>,
}

fn error(request_id: &str, code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ProtocolError::new(Some(request_id.to_owned()), code, message).into_message()
}

/// Counts a reply to a `kind` command: `ok`, or the error code.
fn count(gateway: &Gateway, kind: &str, reply: &ServerMessage) {
    let outcome = match reply {
        ServerMessage::Error { code, .. } => code.as_str(),
        _ => "ok",
    };
    gateway.metrics().command(kind, outcome);
}

impl Connection {
    /// Tells the client the shop is stopping; the caller then ends the
    /// connection, and the writer closes the socket, so the client
    /// reconnects instead of waiting on a dead one.
    async fn close_going_away(&self) {
        let _ = self
            .out
            .send(Box::new(ServerMessage::Error {
                request_id: None,
                code: ErrorCode::Unavailable,
                message: "the shop is stopping; reconnect in a moment".into(),
            }))
            .await;
    }

    async fn send(&self, kind: &str, reply: ServerMessage) {
        count(&self.gateway, kind, &reply);
        let _ = self.out.send(Box::new(reply)).await;
    }

    async fn on_text(&mut self, text: &str) {
        match ClientMessage::parse(text) {
            Err(refusal) => self.send("invalid", refusal.into_message()).await,
            Ok(command) => {
                let kind = command.kind();
                if let Some(reply) = self.execute(command).await {
                    self.send(kind, reply).await;
                }
            }
        }
    }

    /// The reply to `command`, or `None` when a task of its own answers.
    async fn execute(&mut self, command: ClientMessage) -> Option<ServerMessage> {
        let request_id = command.request_id().to_owned();
        if let ClientMessage::Hello {
            protocol, token, ..
        } = command
        {
            return Some(self.hello(&request_id, protocol, token.as_deref()));
        }
        let Some(customer) = self.customer else {
            let message = r#"say hello first: {"type":"hello","request_id":"1","protocol":1}"#;
            return Some(error(&request_id, ErrorCode::NotAuthenticated, message));
        };
        if matches!(command, ClientMessage::Ping { .. }) {
            return Some(ServerMessage::Pong { request_id });
        }
        if tokio::time::timeout(READY_TIMEOUT, self.gateway.ready())
            .await
            .is_err()
        {
            let message = "the gateway is still loading the shop's state; try again shortly";
            return Some(error(&request_id, ErrorCode::Unavailable, message));
        }
        let gateway = &self.gateway;
        let forbidden = match (&command, &self.operator) {
            (ClientMessage::Admin { .. } | ClientMessage::ListAudit { .. }, None) => Some(
                "operator commands need an operator's token (shop-backend operator-token); a customer's token never has them",
            ),
            (ClientMessage::PlaceOrder { .. } | ClientMessage::CancelOrder { .. }, Some(_)) => {
                Some("an operator's session places and cancels no orders; shop as a customer")
            }
            _ => None,
        };
        if let Some(message) = forbidden {
            return Some(error(&request_id, ErrorCode::Forbidden, message));
        }
        match command {
            ClientMessage::ListProducts { .. } => Some(ServerMessage::Products {
                request_id,
                products: if self.operator.is_some() {
                    gateway.read_model().products()
                } else {
                    gateway.read_model().customer_products()
                },
            }),
            ClientMessage::Admin {
                idempotency_key,
                command,
                ..
            } => {
                let operator = self.operator.clone().unwrap_or_default();
                let id = request_id.clone();
                self.spawn_command("admin", &id, move |gateway| async move {
                    match gateway
                        .change_catalog(&operator, &idempotency_key, command)
                        .await
                    {
                        Ok((entry, product)) => ServerMessage::CatalogChanged {
                            request_id,
                            entry,
                            product,
                        },
                        Err(refusal) => refusal.answer(&request_id),
                    }
                })
            }
            ClientMessage::ListAudit { sku, .. } => {
                Some(match gateway.audit(sku.as_deref()).await {
                    Ok(entries) => ServerMessage::Audit {
                        request_id,
                        entries,
                    },
                    Err(refusal) => refusal.answer(&request_id),
                })
            }
            ClientMessage::ListOrders { .. } => {
                Some(match gateway.customer_orders(customer).await {
                    Ok(orders) => ServerMessage::Orders { request_id, orders },
                    Err(refusal) => refusal.answer(&request_id),
                })
            }
            ClientMessage::GetOrder { order_id, .. } => {
                Some(match gateway.find_order(customer, &order_id).await {
                    Ok(state) => ServerMessage::Order {
                        request_id,
                        order: state.order.clone(),
                    },
                    Err(refusal) => refusal.answer(&request_id),
                })
            }
            ClientMessage::PlaceOrder {
                idempotency_key,
                lines,
                ..
            } => {
                let id = request_id.clone();
                self.spawn_command("place_order", &id, move |gateway| async move {
                    match gateway
                        .place_order(customer, &idempotency_key, &lines)
                        .await
                    {
                        Ok(order) => ServerMessage::OrderPlaced { request_id, order },
                        Err(refusal) => refusal.answer(&request_id),
                    }
                })
            }
            ClientMessage::CancelOrder { order_id, .. } => {
                let id = request_id.clone();
                self.spawn_command("cancel_order", &id, move |gateway| async move {
                    match gateway.cancel_order(customer, &order_id).await {
                        Ok(order) => ServerMessage::Order { request_id, order },
                        Err(refusal) => refusal.answer(&request_id),
                    }
                })
            }
            ClientMessage::Hello { .. } | ClientMessage::Ping { .. } => None,
        }
    }

    /// Runs a command that waits on the services in a task of its own;
    /// returns the refusal when too many already wait.
    fn spawn_command<F, Fut>(
        &mut self,
        kind: &'static str,
        request_id: &str,
        command: F,
    ) -> Option<ServerMessage>
    where
        F: FnOnce(Gateway) -> Fut,
        Fut: std::future::Future<Output = ServerMessage> + Send + 'static,
    {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            let message =
                format!("at most {MAX_IN_FLIGHT} commands may wait at once on one connection");
            return Some(error(request_id, ErrorCode::TooManyRequests, message));
        };
        let out = self.out.clone();
        let gateway = self.gateway.clone();
        let work = command(gateway.clone());
        self.tasks.spawn(async move {
            let reply = work.await;
            count(&gateway, kind, &reply);
            let _ = out.send(Box::new(reply)).await;
            drop(permit);
        });
        None
    }

    fn hello(&mut self, request_id: &str, protocol: u32, token: Option<&str>) -> ServerMessage {
        if self.customer.is_some() {
            return error(
                request_id,
                ErrorCode::BadRequest,
                "this connection already said hello",
            );
        }
        if protocol != PROTOCOL_VERSION {
            let message =
                format!("this gateway speaks protocol {PROTOCOL_VERSION}, not {protocol}");
            return error(request_id, ErrorCode::UnsupportedProtocol, message);
        }
        if let Some(token) = token.filter(|token| OperatorSigner::is_operator_token(token)) {
            return self.operator_hello(request_id, token);
        }
        let customer = match token {
            Some(token) => match self.gateway.tokens().verify(token) {
                Ok(customer) => customer,
                Err(invalid) => {
                    let message =
                        format!("{invalid}; say hello without a token to become a new customer");
                    return error(request_id, ErrorCode::InvalidToken, message);
                }
            },
            None => Uuid::new_v4(),
        };
        tracing::debug!(customer_id = %customer, "customer connected");
        self.start_session(customer, None);
        ServerMessage::Welcome {
            request_id: request_id.to_owned(),
            protocol: PROTOCOL_VERSION,
            customer_id: customer,
            token: self.gateway.tokens().issue(customer),
            operator: None,
        }
    }

    /// `hello` with an operator's token.
    fn operator_hello(&mut self, request_id: &str, token: &str) -> ServerMessage {
        let Some(operators) = self.gateway.operators() else {
            let message = "this shop takes no operator tokens: it runs without an operator secret (--operator-secret)";
            return error(request_id, ErrorCode::InvalidToken, message);
        };
        let name = match operators.verify(token) {
            Ok(name) => name,
            Err(invalid) => {
                let message =
                    format!("{invalid}; shop-backend operator-token issues an operator's token");
                return error(request_id, ErrorCode::InvalidToken, message);
            }
        };
        let session = Gateway::operator_session_id(&name);
        tracing::info!(operator = %name, "operator connected");
        self.start_session(session, Some(name.clone()));
        ServerMessage::Welcome {
            request_id: request_id.to_owned(),
            protocol: PROTOCOL_VERSION,
            customer_id: session,
            token: token.to_owned(),
            operator: Some(name),
        }
    }

    /// Says hello as `customer` (or an operator's session) and starts
    /// pushing changes: every product change to operators, what customers
    /// can see to customers.
    fn start_session(&mut self, customer: Uuid, operator: Option<String>) {
        self.customer = Some(customer);
        // Subscribe before the welcome goes out, so no change is missed.
        let model = self.gateway.read_model();
        let products = if operator.is_some() {
            model.product_changes()
        } else {
            model.customer_product_changes()
        };
        let changes = (products, model.customer_changes(customer));
        self.tasks.spawn(push_changes(
            self.gateway.clone(),
            customer,
            operator.is_some(),
            changes,
            self.out.clone(),
        ));
        self.operator = operator;
    }
}

/// Most frames written to a socket at once.
const WRITE_BATCH: usize = 64;

/// Forwards product changes and this customer's order changes. A
/// connection too slow to keep up gets the current state of what changed
/// instead of every change it missed: products it has not seen at their
/// newest version, and its orders.
async fn push_changes(
    gateway: Gateway,
    customer: Uuid,
    operator: bool,
    (mut products, mut orders): (broadcast::Receiver<Product>, CustomerChanges),
    out: mpsc::Sender<Outgoing>,
) {
    let model = gateway.read_model().clone();
    // The version of each product pushed to this connection, so a product
    // is never pushed twice at the same version.
    let mut sent: HashMap<String, i64> = HashMap::new();
    let mut newer = |product: &Product| {
        let known = sent.entry(product.sku.clone()).or_insert(i64::MIN);
        let newer = product.version > *known;
        *known = (*known).max(product.version);
        newer
    };
    loop {
        let messages = tokio::select! {
            change = products.recv() => match change {
                Ok(product) => newer(&product)
                    .then_some(ServerMessage::ProductUpdated { product })
                    .into_iter()
                    .collect(),
                Err(broadcast::error::RecvError::Lagged(_)) => if operator {
                        model.products()
                    } else {
                        model.customer_products()
                    }
                    .into_iter()
                    .filter(|product| newer(product))
                    .map(|product| ServerMessage::ProductUpdated { product })
                    .collect(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            change = orders.recv() => match change {
                Ok(state) => vec![ServerMessage::OrderUpdated { order: state.order.clone() }],
                Err(broadcast::error::RecvError::Lagged(_)) => model
                    .customer_orders(customer)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .map(|order| ServerMessage::OrderUpdated { order })
                    .collect(),
                Err(broadcast::error::RecvError::Closed) => return,
            },
        };
        for message in messages {
            if out.send(Box::new(message)).await.is_err() {
                return;
            }
        }
    }
}
