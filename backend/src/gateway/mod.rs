//! The gateway: the WebSocket endpoint for clients and the payment-return
//! pages. It turns client commands into bus commands and answers from its
//! read models: products in memory, orders in its own projection
//! database, kept from state events.
//!
//! - [`ws`]: one client connection.
//! - [`limits`]: how much one customer may hold and how often order.
//! - [`read_model`]: products and orders, and the channels that push them.
//! - [`projection`]: the durable customer-orders table.
//! - [`pages`]: the payment-return page and its live updates.
//! - [`token`]: signed customer tokens.

pub mod limits;
pub mod pages;
pub mod projection;
pub mod read_model;
pub mod token;
pub mod ws;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use shop_shared::catalog::{AuditEntry, CatalogChange};
use shop_shared::domain::Product;
use shop_shared::domain::{
    MAX_IDEMPOTENCY_KEY_LEN, Order, OrderLines, OrderLinesError, OrderStatus,
};
use shop_shared::events::{
    CancelOrder, CatalogCommand, CatalogOutcome, ChangeCatalog, LineItem, OrderCommand, OrderState,
    PlaceOrder, topic,
};
use shop_shared::protocol::{
    ErrorCode, MAX_AUDIT_ENTRIES, OrderLineRequest, ProtocolError, ServerMessage,
};
use tokio::sync::broadcast;
use uuid::Uuid;

use crate::bus::{self, Bus, Subscription, SubscriptionHandle};
use crate::db::{Db, StoreError};
use crate::metrics::{self, GaugeSource, Metrics, Sample};
use crate::runtime::Runtime;
use crate::secrets::Secret;
use crate::service::Service;
use crate::tasks::Shutdown;
use limits::{LimitSettings, OrderLimits};
use projection::{Projection, ProjectionHandler};
use read_model::{CustomerChanges, ReadModel, ReadModelHandler};
use token::{OperatorSigner, TokenSigner};

/// How long a command waits for the services to act on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Names order ids derived from (customer, idempotency key).
const ORDER_NAMESPACE: Uuid = Uuid::from_u128(0x5e0b_7a1c_4d2e_4f60_9a3b_1c2d_3e4f_5a6b);
/// Names catalogue command ids derived from (operator, idempotency key).
const CATALOG_NAMESPACE: Uuid = Uuid::from_u128(0x5e0b_7a1c_4d2e_4f60_9a3b_1c2d_3e4f_5a6c);
/// Names the customer id an operator's session gets (it places no orders).
const OPERATOR_NAMESPACE: Uuid = Uuid::from_u128(0x5e0b_7a1c_4d2e_4f60_9a3b_1c2d_3e4f_5a6d);

/// The gateway. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    bus: Arc<dyn Bus>,
    read_model: ReadModel,
    tokens: TokenSigner,
    /// `None` when the shop has no operator secret: no operator signs in.
    operators: Option<OperatorSigner>,
    /// The catalogue replayed, and the live reader caught up with what was
    /// published before start that the projection had not stored.
    loaded: [SubscriptionHandle; 2],
    metrics: Metrics,
    limits: OrderLimits,
    /// Open client connections, for metrics.
    connections: AtomicI64,
    /// Connections close (1001, going away) when the process stops.
    shutdown: Shutdown,
    /// How long a connection may take to say hello, or stay silent.
    timeouts: ws::Timeouts,
}

/// A command the gateway refuses, with the code clients see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }

    pub fn answer(self, request_id: &str) -> ServerMessage {
        ProtocolError::new(Some(request_id.to_owned()), self.code, self.message).into_message()
    }
}

/// The secrets a gateway signs and checks tokens with.
#[derive(Debug, Clone)]
pub struct TokenSecrets {
    /// Customer tokens.
    pub customers: Secret,
    /// Operator tokens; `None` refuses every operator.
    pub operators: Option<Secret>,
}

/// Starts the gateway on its database `db`: migrates it, keeps the
/// customer-orders projection and the audit log as a member of the
/// `gateway` consumer group, replays the catalogue and follows order
/// changes and catalogue decisions live, and has the order limits forget
/// idle customers every minute. Its WebSocket connections get `timeouts`.
///
/// # Errors
///
/// The database cannot be migrated, or the bus refused a subscription.
pub async fn start(
    runtime: &Runtime,
    db: Db,
    secrets: TokenSecrets,
    limits: LimitSettings,
    timeouts: ws::Timeouts,
) -> anyhow::Result<Gateway> {
    db.migrate(Service::Gateway).await?;
    let projection = Projection::new(db);
    let read_model = ReadModel::new(projection.clone());
    let bus = runtime.bus.clone();
    let handler = Arc::new(ReadModelHandler {
        model: read_model.clone(),
    });
    // Live from where the projection's group committed, before the group
    // starts: every change the projection may not hold yet is seen here,
    // also those made while no gateway ran.
    let live = bus
        .subscribe(
            Subscription::live(
                &format!("{}-live", Service::Gateway.group()),
                &[topic::ORDERS, topic::CATALOG_EVENTS],
                Service::Gateway.group(),
            ),
            handler.clone(),
        )
        .await?;
    let catalogue = bus
        .subscribe(
            Subscription::broadcast(Service::Gateway.group(), &[topic::PRODUCTS]),
            handler,
        )
        .await?;
    bus.subscribe(
        Subscription::group(
            Service::Gateway.group(),
            &[topic::ORDERS, topic::CATALOG_EVENTS],
        ),
        Arc::new(ProjectionHandler {
            projection,
            model: read_model.clone(),
        }),
    )
    .await?;
    let loaded = [catalogue, live];
    let gateway = Gateway {
        inner: Arc::new(Inner {
            bus,
            read_model,
            tokens: TokenSigner::new(secrets.customers),
            operators: secrets.operators.map(OperatorSigner::new),
            loaded,
            metrics: runtime.metrics.clone(),
            limits: OrderLimits::new(limits),
            connections: AtomicI64::new(0),
            shutdown: runtime.spawner.shutdown().clone(),
            timeouts,
        }),
    };
    let forgetting = gateway.clone();
    let shutdown = runtime.spawner.shutdown().clone();
    runtime
        .spawner
        .spawn("gateway-order-limits-forget-idle", async move {
            while shutdown.sleep(limits::FORGET_IDLE_EVERY).await {
                forgetting.inner.limits.forget_idle();
            }
            Ok(())
        });
    Ok(gateway)
}

impl Gateway {
    /// `/ws` and the payment-return pages.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/ws", get(ws::upgrade))
            .route("/orders/{order_id}/return", get(pages::return_page))
            .route("/orders/{order_id}/status", get(pages::status))
            .route("/orders/{order_id}/events", get(pages::events))
            .with_state(self.clone())
    }

    pub fn read_model(&self) -> &ReadModel {
        &self.inner.read_model
    }

    pub fn tokens(&self) -> &TokenSigner {
        &self.inner.tokens
    }

    /// Verifies operator tokens; `None` when the shop has no operator
    /// secret.
    pub fn operators(&self) -> Option<&OperatorSigner> {
        self.inner.operators.as_ref()
    }

    /// The customer id of an operator's session: stable per name, never a
    /// customer's (another namespace).
    pub fn operator_session_id(name: &str) -> Uuid {
        Uuid::new_v5(&OPERATOR_NAMESPACE, name.as_bytes())
    }

    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Fires when the process stops.
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    pub fn timeouts(&self) -> ws::Timeouts {
        self.inner.timeouts
    }

    /// Counts a connection while the returned guard lives.
    pub fn connected(&self) -> ConnectionGuard {
        self.inner.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            gateway: self.clone(),
        }
    }

    /// Open connections and what the read models hold, read when scraped.
    pub fn gauges(&self) -> GaugeSource {
        let gateway = self.clone();
        metrics::source(move || {
            let gateway = gateway.clone();
            async move {
                let model = gateway.read_model();
                vec![
                    Sample {
                        name: "shop_gateway_connections",
                        help: "Open client connections.",
                        labels: vec![],
                        value: gateway.inner.connections.load(Ordering::Relaxed) as f64,
                    },
                    Sample {
                        name: "shop_gateway_read_model_loaded",
                        help: "1 once the read models hold everything published before start.",
                        labels: vec![],
                        value: if gateway.is_ready() { 1.0 } else { 0.0 },
                    },
                    Sample {
                        name: "shop_gateway_rate_limited_customers",
                        help: "Customers the order rate limiter keeps state for (those who ordered within the last minute or so).",
                        labels: vec![],
                        value: gateway.inner.limits.rate_limited_customers() as f64,
                    },
                    Sample {
                        name: "shop_gateway_customer_channels",
                        help: "Customers with a change channel: someone listens for their orders now.",
                        labels: vec![],
                        value: model.customer_channels() as f64,
                    },
                    Sample {
                        name: "shop_gateway_recent_orders",
                        help: "Order snapshots seen live that the projection may not hold yet (bounded).",
                        labels: vec![],
                        value: model.recent_orders() as f64,
                    },
                    Sample {
                        name: "shop_gateway_products",
                        help: "Products in the read model.",
                        labels: vec![],
                        value: model.products().len() as f64,
                    },
                ]
            }
        })
    }

    /// Waits until the catalogue is replayed and what the projection had
    /// not stored at start is read.
    pub async fn ready(&self) {
        for loaded in &self.inner.loaded {
            loaded.caught_up().await;
        }
    }

    pub fn is_ready(&self) -> bool {
        self.inner
            .loaded
            .iter()
            .all(SubscriptionHandle::is_caught_up)
    }

    /// `customer`'s order named by `order_id`.
    ///
    /// # Errors
    ///
    /// `order_not_found` when `order_id` is not an order id, or names no order
    /// of `customer`'s; `unavailable` when the projection cannot be read.
    pub async fn find_order(
        &self,
        customer: Uuid,
        order_id: &str,
    ) -> Result<Arc<OrderState>, Refusal> {
        let not_found = || Refusal::new(ErrorCode::OrderNotFound, format!("no order {order_id}"));
        let id = Uuid::try_parse(order_id.trim()).map_err(|_| not_found())?;
        self.inner
            .read_model
            .customer_order(customer, id)
            .await
            .map_err(unreadable)?
            .ok_or_else(not_found)
    }

    /// `customer`'s orders, newest first.
    ///
    /// # Errors
    ///
    /// `unavailable` when the projection cannot be read.
    pub async fn customer_orders(&self, customer: Uuid) -> Result<Vec<Order>, Refusal> {
        self.inner
            .read_model
            .customer_orders(customer)
            .await
            .map_err(unreadable)
    }

    /// Places an order and returns it once the order service has stored it.
    ///
    /// # Errors
    ///
    /// A refusal with the code the client sees: invalid lines (`invalid_order`,
    /// with the first rule broken), an idempotency key that is too long,
    /// `hold_limit` or `rate_limited` when the order is over one of the
    /// customer's [`limits`] (nothing is sent then), or `unavailable` when the
    /// order service has not stored the order in time or the bus refuses the
    /// command.
    pub async fn place_order(
        &self,
        customer: Uuid,
        idempotency_key: &str,
        lines: &[OrderLineRequest],
    ) -> Result<Order, Refusal> {
        let model = &self.inner.read_model;
        let lines = validate_order(idempotency_key, lines, |sku| model.product(sku).is_some())?;
        let order_id = Uuid::new_v5(
            &ORDER_NAMESPACE,
            format!("{customer}/{idempotency_key}").as_bytes(),
        );
        let same_lines = |state: &OrderState| {
            state
                .order
                .lines
                .iter()
                .map(|line| (line.sku.as_str(), line.quantity))
                .eq(lines.iter().map(|line| (line.sku.as_str(), line.quantity)))
        };
        let reused = || {
            Refusal::new(
                ErrorCode::IdempotencyKeyReused,
                "this idempotency key names an earlier order with other lines; use a new key for a new order",
            )
        };
        // Listen before looking: a change after the lookup is then heard, and
        // one before it is in what the lookup reads.
        let changes = model.customer_changes(customer);
        if let Some(existing) = model
            .customer_order(customer, order_id)
            .await
            .map_err(unreadable)?
        {
            return if same_lines(&existing) {
                Ok(existing.order.clone())
            } else {
                Err(reused())
            };
        }
        // A retry of a stored order (above) is answered whatever the limits
        // and listings.
        if let Some(line) = lines
            .iter()
            .find(|line| model.product(&line.sku).is_some_and(|p| !p.is_listed()))
        {
            return Err(Refusal::new(
                ErrorCode::ProductWithdrawn,
                format!(
                    "{} is withdrawn from sale and takes no new orders",
                    line.sku
                ),
            ));
        }
        let units = lines
            .iter()
            .map(|line| u64::try_from(line.quantity).unwrap_or(0))
            .sum();
        let held = if self.inner.limits.limits_holdings() {
            model.held_units(customer).await.map_err(unreadable)?
        } else {
            0
        };
        let _hold = self.inner.limits.admit(customer, held, units)?;
        let command = OrderCommand::PlaceOrder(PlaceOrder {
            order_id,
            customer_id: customer,
            idempotency_key: idempotency_key.to_owned(),
            lines: lines.clone(),
        });
        self.send(command, order_id).await?;
        let Some(state) = self.await_order(changes, order_id, |_| true).await else {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the order service has not confirmed the order yet; send the same command again (same idempotency key) to learn its fate",
            ));
        };
        if same_lines(&state) {
            Ok(state.order.clone())
        } else {
            Err(reused())
        }
    }

    /// Cancels an unpaid order and returns it once cancelled.
    ///
    /// # Errors
    ///
    /// `order_not_found`, `not_cancellable` for a paid or cancelled order, or
    /// `unavailable` when the order service has not confirmed in time.
    pub async fn cancel_order(&self, customer: Uuid, order_id: &str) -> Result<Order, Refusal> {
        // Listen before looking, as for a new order.
        let changes = self.inner.read_model.customer_changes(customer);
        let state = self.find_order(customer, order_id).await?;
        let order = &state.order;
        if order.status.is_final() {
            return Err(not_cancellable(order));
        }
        let command = OrderCommand::CancelOrder(CancelOrder {
            order_id: order.id,
            customer_id: customer,
        });
        self.send(command, order.id).await?;
        match self
            .await_order(changes, order.id, |state| state.order.status.is_final())
            .await
        {
            Some(state) if state.order.status == OrderStatus::Cancelled => Ok(state.order.clone()),
            Some(state) => Err(not_cancellable(&state.order)),
            None => Err(Refusal::new(
                ErrorCode::Unavailable,
                "the order service has not confirmed the cancellation yet; the order may still be cancelled",
            )),
        }
    }

    /// Applies an operator's change to the catalogue through the stock
    /// service and returns its audit record and the product after it. The
    /// same operator and idempotency key name the same change: sent again,
    /// it is applied once and answered the same.
    ///
    /// # Errors
    ///
    /// `invalid_idempotency_key`; `invalid_change` for a field that breaks a
    /// rule (nothing is sent then); the stock service's refusal
    /// (`unknown_sku`, `product_exists`, `not_enough_stock`,
    /// `idempotency_key_reused`, `invalid_change`); `unavailable` when it
    /// has not decided in time or the bus refuses the command.
    pub async fn change_catalog(
        &self,
        operator: &str,
        idempotency_key: &str,
        change: CatalogChange,
    ) -> Result<(AuditEntry, Product), Refusal> {
        check_idempotency_key(idempotency_key)?;
        change
            .validate()
            .map_err(|invalid| Refusal::new(ErrorCode::InvalidChange, invalid.0))?;
        let command_id = Uuid::new_v5(
            &CATALOG_NAMESPACE,
            format!("{operator}/{idempotency_key}").as_bytes(),
        );
        // Listen before sending, so the answer cannot pass unseen.
        let mut outcomes = self.inner.read_model.catalog_outcomes();
        let attempt = Uuid::new_v4();
        let command = CatalogCommand::ChangeCatalog(ChangeCatalog {
            command_id,
            attempt,
            operator: operator.to_owned(),
            change,
        });
        tracing::info!(%command_id, operator, "operator command sent to the stock service");
        bus::publish_messages(
            self.inner.bus.as_ref(),
            vec![(command, command_id.to_string())],
        )
        .await
        .map_err(|error| {
            tracing::error!(%error, %command_id, "cannot publish an operator command");
            Refusal::new(
                ErrorCode::Unavailable,
                "the shop cannot take commands right now; try again shortly",
            )
        })?;
        let wait = async {
            loop {
                match outcomes.recv().await {
                    Ok(outcome) if outcome.attempt() == attempt => return Some(outcome),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        let Some(outcome) = tokio::time::timeout(COMMAND_TIMEOUT, wait)
            .await
            .ok()
            .flatten()
        else {
            return Err(Refusal::new(
                ErrorCode::Unavailable,
                "the stock service has not decided on the change yet; send the same command again (same idempotency key) to learn what became of it",
            ));
        };
        match &*outcome {
            CatalogOutcome::Changed(changed) => {
                Ok((changed.entry.clone(), changed.product.clone()))
            }
            CatalogOutcome::Refused(refused) => {
                Err(Refusal::new(refused.code, refused.message.clone()))
            }
        }
    }

    /// The newest catalogue changes, of `sku` only when given.
    ///
    /// # Errors
    ///
    /// `unavailable` when the audit log cannot be read.
    pub async fn audit(&self, sku: Option<&str>) -> Result<Vec<AuditEntry>, Refusal> {
        self.inner
            .read_model
            .audit(sku, MAX_AUDIT_ENTRIES)
            .await
            .map_err(unreadable)
    }

    #[tracing::instrument(name = "gateway", skip(self, command), fields(%order_id))]
    async fn send(&self, command: OrderCommand, order_id: Uuid) -> Result<(), Refusal> {
        tracing::info!(%order_id, command = shop_shared::events::Message::type_name(&command), "client command sent to the order service");
        bus::publish_messages(
            self.inner.bus.as_ref(),
            vec![(command, order_id.to_string())],
        )
        .await
        .map_err(|error| {
            tracing::error!(%error, %order_id, "cannot publish a client command");
            Refusal::new(
                ErrorCode::Unavailable,
                "the shop cannot take commands right now; try again shortly",
            )
        })
    }

    /// Waits up to [`COMMAND_TIMEOUT`] until order `id` satisfies `done`,
    /// hearing of its changes through `changes`, which the caller took
    /// before it last read the order (so no change falls between the two).
    async fn await_order(
        &self,
        mut changes: CustomerChanges,
        id: Uuid,
        done: impl Fn(&OrderState) -> bool,
    ) -> Option<Arc<OrderState>> {
        let model = &self.inner.read_model;
        let current = || async {
            model
                .order(id)
                .await
                .ok()
                .flatten()
                .filter(|state| done(state))
        };
        let wait = async {
            loop {
                match changes.recv().await {
                    Ok(state) if state.order.id == id && done(&state) => return Some(state),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(state) = current().await {
                            return Some(state);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        };
        tokio::time::timeout(COMMAND_TIMEOUT, wait)
            .await
            .ok()
            .flatten()
    }
}

/// Counts an open connection until dropped.
pub struct ConnectionGuard {
    gateway: Gateway,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.gateway
            .inner
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// The refusal when the projection cannot be read.
fn unreadable(error: StoreError) -> Refusal {
    tracing::error!(%error, "cannot read the gateway's order projection");
    Refusal::new(
        ErrorCode::Unavailable,
        "the shop cannot read orders right now; try again shortly",
    )
}

fn not_cancellable(order: &Order) -> Refusal {
    Refusal::new(
        ErrorCode::OrderNotCancellable,
        format!(
            "order {} is {} and can no longer be cancelled",
            order.short_id(),
            order.status
        ),
    )
}

/// Checks a place command; returns its lines as the bus carries them.
///
/// # Errors
///
/// A [`Refusal`] with the code of the first thing wrong: the idempotency
/// key, then the lines as [`OrderLines::parse_known`] reads them, where
/// `known_sku` says which skus the shop sells.
pub fn validate_order(
    idempotency_key: &str,
    lines: &[OrderLineRequest],
    known_sku: impl Fn(&str) -> bool,
) -> Result<Vec<LineItem>, Refusal> {
    check_idempotency_key(idempotency_key)?;
    let lines = OrderLines::parse_known(lines, |sku| known_sku(sku.as_str()))?;
    Ok(lines.into())
}

/// An idempotency key is 1 to 128 printable characters.
fn check_idempotency_key(key: &str) -> Result<(), Refusal> {
    if key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_LEN || key.chars().any(char::is_control) {
        return Err(Refusal::new(
            ErrorCode::InvalidIdempotencyKey,
            format!(
                "the idempotency key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable characters"
            ),
        ));
    }
    Ok(())
}

/// Every way the lines of an order can be wrong has its own code.
impl From<OrderLinesError> for Refusal {
    fn from(error: OrderLinesError) -> Self {
        let code = match &error {
            OrderLinesError::Empty => ErrorCode::EmptyOrder,
            OrderLinesError::TooMany(_) => ErrorCode::TooManyLines,
            OrderLinesError::InvalidSku(_) | OrderLinesError::UnknownSku(_) => {
                ErrorCode::UnknownSku
            }
            OrderLinesError::DuplicateSku(_) => ErrorCode::DuplicateSku,
            OrderLinesError::InvalidQuantity { .. } => ErrorCode::InvalidQuantity,
        };
        Refusal::new(code, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(sku: &str, quantity: i64) -> OrderLineRequest {
        OrderLineRequest {
            sku: sku.into(),
            quantity,
        }
    }

    fn code_of(key: &str, lines: &[OrderLineRequest]) -> Option<ErrorCode> {
        validate_order(key, lines, |sku| sku.starts_with("SKU-"))
            .err()
            .map(|refusal| refusal.code)
    }

    #[test]
    fn accepts_a_valid_order() {
        let items = validate_order("k", &[line("SKU-001", 2), line("SKU-002", 1000)], |_| true)
            .expect("valid");
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].quantity, 1000);
    }

    #[test]
    fn every_kind_of_bad_order_gets_its_own_code() {
        assert_eq!(code_of("k", &[]), Some(ErrorCode::EmptyOrder));
        assert_eq!(
            code_of("k", &[line("NOPE", 1)]),
            Some(ErrorCode::UnknownSku)
        );
        assert_eq!(
            code_of("k", &[line("SKU-001", 0)]),
            Some(ErrorCode::InvalidQuantity)
        );
        assert_eq!(
            code_of("k", &[line("SKU-001", -3)]),
            Some(ErrorCode::InvalidQuantity)
        );
        assert_eq!(
            code_of("k", &[line("SKU-001", 1001)]),
            Some(ErrorCode::InvalidQuantity)
        );
        assert_eq!(
            code_of("k", &[line("SKU-001", i64::MAX)]),
            Some(ErrorCode::InvalidQuantity)
        );
        assert_eq!(
            code_of("k", &[line("SKU-001", 1), line("SKU-001", 1)]),
            Some(ErrorCode::DuplicateSku)
        );
        let many: Vec<_> = (0..21).map(|n| line(&format!("SKU-{n}"), 1)).collect();
        assert_eq!(code_of("k", &many), Some(ErrorCode::TooManyLines));
        assert_eq!(
            code_of("k", &[line("SKU 001", 1)]),
            Some(ErrorCode::UnknownSku)
        );
        assert_eq!(
            code_of("k", &[line("NOPE", 0)]),
            Some(ErrorCode::UnknownSku),
            "an unknown sku is reported before its quantity"
        );
        assert_eq!(
            code_of("", &[line("SKU-001", 1)]),
            Some(ErrorCode::InvalidIdempotencyKey)
        );
        assert_eq!(
            code_of(&"k".repeat(129), &[line("SKU-001", 1)]),
            Some(ErrorCode::InvalidIdempotencyKey)
        );
    }

    #[test]
    fn a_bad_order_is_refused_with_a_message_that_names_what_is_wrong() {
        let message_of = |lines: &[OrderLineRequest]| {
            validate_order("k", lines, |sku| sku.starts_with("SKU-"))
                .err()
                .map(|refusal| refusal.message)
        };
        assert_eq!(
            message_of(&[]).as_deref(),
            Some("an order needs at least one line")
        );
        let many: Vec<_> = (0..21).map(|n| line(&format!("SKU-{n}"), 1)).collect();
        assert_eq!(
            message_of(&many).as_deref(),
            Some("an order has at most 20 lines, not 21")
        );
        assert_eq!(
            message_of(&[line("NOPE", 1)]).as_deref(),
            Some("unknown sku \"NOPE\"")
        );
        let long = format!("SKU {}", "x".repeat(100));
        assert_eq!(
            message_of(&[line(&long, 1)]),
            Some(format!("unknown sku {:?}", &long[..64]))
        );
        assert_eq!(
            message_of(&[line("SKU-001", 1), line("SKU-001", 1)]).as_deref(),
            Some("sku SKU-001 appears on two lines; put the whole quantity on one line")
        );
        assert_eq!(
            message_of(&[line("SKU-001", 1001)]).as_deref(),
            Some("quantity of SKU-001 must be between 1 and 1000, not 1001")
        );
        assert_eq!(
            validate_order("", &[line("SKU-001", 1)], |_| true)
                .err()
                .map(|refusal| refusal.message)
                .as_deref(),
            Some("the idempotency key must be 1 to 128 printable characters")
        );
    }
}
