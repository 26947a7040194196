//! Messages the services exchange over the bus.
//!
//! Every message travels in an [`Envelope`]: a unique event id, its type, a
//! schema version, the partition key (an order id or a sku), a timestamp and
//! the correlation id (the order id), around a JSON payload. Each topic
//! carries one enum of messages; topics are versioned by name. Commands ask a
//! service to do something; events say what happened.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{AuditEntry, CatalogChange};
use crate::domain::{Order, OrderLines, Product};
use crate::money::Currency;
use crate::protocol::ErrorCode;
use crate::time::Timestamp;

/// Topic names. A new incompatible schema gets a new topic (`….v2`).
pub mod topic {
    /// Commands for the order service (key: order id).
    pub const ORDER_COMMANDS: &str = "order.commands.v1";
    /// Full order snapshots after every change (key: order id; compacted).
    pub const ORDERS: &str = "orders.v1";
    /// Commands for the stock service (key: order id).
    pub const STOCK_COMMANDS: &str = "stock.commands.v1";
    /// Outcomes of reservations (key: order id).
    pub const STOCK_EVENTS: &str = "stock.events.v1";
    /// Product snapshots after every change (key: sku; compacted).
    pub const PRODUCTS: &str = "products.v1";
    /// Operators' changes to the catalogue, for the stock service (key: sku).
    pub const CATALOG_COMMANDS: &str = "catalog.commands.v1";
    /// What became of each catalogue change: the audit record of an applied
    /// one, or why it was refused (key: sku).
    pub const CATALOG_EVENTS: &str = "catalog.events.v1";
    /// Commands for the payment service (key: order id).
    pub const PAYMENT_COMMANDS: &str = "payment.commands.v1";
    /// What happened to payments (key: order id).
    pub const PAYMENT_EVENTS: &str = "payment.events.v1";

    /// Every topic the services use, with whether it is compacted (only the
    /// newest message per key needs keeping).
    pub const ALL: &[(&str, bool)] = &[
        (ORDER_COMMANDS, false),
        (ORDERS, true),
        (STOCK_COMMANDS, false),
        (STOCK_EVENTS, false),
        (PRODUCTS, true),
        (CATALOG_COMMANDS, false),
        (CATALOG_EVENTS, false),
        (PAYMENT_COMMANDS, false),
        (PAYMENT_EVENTS, false),
    ];

    /// The dead-letter topic of a consumer group.
    pub fn dead_letter(group: &str) -> String {
        format!("dlq.{group}.v1")
    }
}

/// A kind of message that belongs to one topic.
pub trait Message: Serialize + DeserializeOwned + Send + Sync + 'static {
    const TOPIC: &'static str;
    /// The schema version this build writes and the newest it reads.
    const SCHEMA_VERSION: u32 = 1;
    /// Partition key: messages with the same key keep their order.
    fn key(&self) -> String;
    /// The `type` of this message in its envelope.
    fn type_name(&self) -> &'static str;
}

/// The wrapper of every bus message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<M> {
    /// Unique per message; consumers record it to apply each message once.
    pub id: Uuid,
    /// `type` and `payload`.
    #[serde(flatten)]
    pub message: M,
    pub version: u32,
    pub key: String,
    pub timestamp: Timestamp,
    /// The order this message is about, to follow one saga through the logs.
    pub correlation_id: String,
}

/// A message that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("schema version {found} is newer than the newest this build reads ({supported})")]
    UnsupportedVersion { found: u32, supported: u32 },
}

impl<M: Message> Envelope<M> {
    /// Wraps `message` with a fresh event id. Ids are time-ordered
    /// (UUIDv7), so a consumer's table of applied ids grows at one end
    /// instead of at a random page per message.
    pub fn new(message: M, correlation_id: impl Into<String>) -> Self {
        Envelope {
            id: Uuid::now_v7(),
            key: message.key(),
            message,
            version: M::SCHEMA_VERSION,
            timestamp: Timestamp::now(),
            correlation_id: correlation_id.into(),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads an envelope from its JSON bytes.
    ///
    /// # Errors
    ///
    /// [`DecodeError`] when the bytes are not an envelope of this topic's
    /// messages, or carry a schema version newer than this build reads.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let envelope: Envelope<M> = serde_json::from_slice(bytes)?;
        if envelope.version > M::SCHEMA_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: envelope.version,
                supported: M::SCHEMA_VERSION,
            });
        }
        Ok(envelope)
    }
}

/// One requested line: a sku and how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub sku: String,
    pub quantity: i64,
}

/// Lets [`OrderLines::parse`] read a `&[LineItem]`.
impl<'a> From<&'a LineItem> for (&'a str, i64) {
    fn from(line: &'a LineItem) -> Self {
        (line.sku.as_str(), line.quantity)
    }
}

impl From<OrderLines> for Vec<LineItem> {
    fn from(lines: OrderLines) -> Self {
        lines
            .into_iter()
            .map(|(sku, quantity)| LineItem {
                sku: sku.into_string(),
                quantity: quantity.get(),
            })
            .collect()
    }
}

/// A line as the stock service priced it when reserving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PricedLine {
    pub sku: String,
    pub name: String,
    pub quantity: i64,
    /// Price of one unit at reservation, in minor units.
    pub unit_price: i64,
}

/// Names one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRef {
    pub order_id: Uuid,
}

macro_rules! message_enum {
    ($name:ident, $topic:expr, key: |$m:ident| $key:expr, { $($(#[$vmeta:meta])* $variant:ident($payload:ty)),+ $(,)? }) => {
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "type", content = "payload")]
        pub enum $name {
            $($(#[$vmeta])* $variant($payload)),+
        }

        impl Message for $name {
            const TOPIC: &'static str = $topic;
            fn key(&self) -> String {
                match self {
                    $($name::$variant($m) => $key),+
                }
            }
            fn type_name(&self) -> &'static str {
                match self {
                    $($name::$variant(_) => stringify!($variant)),+
                }
            }
        }
    };
}

// ---- order service ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    /// Derived by the gateway from the customer and the idempotency key, so
    /// a retried command names the same order.
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub idempotency_key: String,
    pub lines: Vec<LineItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelOrder {
    pub order_id: Uuid,
    /// Checked against the order's owner.
    pub customer_id: Uuid,
}

message_enum!(OrderCommand, topic::ORDER_COMMANDS, key: |m| m.order_id.to_string(), {
    PlaceOrder(PlaceOrder),
    CancelOrder(CancelOrder),
});

/// The whole order after a change, for read models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderState {
    pub customer_id: Uuid,
    /// The provider's checkout session, which the payment-return page checks.
    pub checkout_session_id: Option<String>,
    pub order: Order,
}

message_enum!(OrderEvent, topic::ORDERS, key: |m| m.order.id.to_string(), {
    OrderUpdated(OrderState),
});

// ---- stock service ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveStock {
    pub order_id: Uuid,
    pub lines: Vec<LineItem>,
}

message_enum!(StockCommand, topic::STOCK_COMMANDS, key: |m| m.order_id.to_string(), {
    ReserveStock(ReserveStock),
    /// Give reserved units back (cancelled or expired order).
    ReleaseStock(OrderRef),
    /// Turn reserved units into sold ones (paid order).
    CommitStock(OrderRef),
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReserved {
    pub order_id: Uuid,
    pub currency: Currency,
    pub lines: Vec<PricedLine>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockRejected {
    pub order_id: Uuid,
    /// Skus that had too few units (or do not exist).
    pub unavailable: Vec<String>,
    /// Skus an operator withdrew from sale.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub withdrawn: Vec<String>,
}

message_enum!(StockEvent, topic::STOCK_EVENTS, key: |m| m.order_id.to_string(), {
    StockReserved(StockReserved),
    StockRejected(StockRejected),
});

message_enum!(ProductEvent, topic::PRODUCTS, key: |m| m.sku.clone(), {
    ProductUpdated(Product),
});

/// An operator's change, as the gateway checked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeCatalog {
    /// Derived by the gateway from the operator and the idempotency key, so
    /// a retried command names the same change.
    pub command_id: Uuid,
    /// Names this sending of the command: its answer carries it, so that
    /// of two sendings under one command id (a retry, or another change
    /// under the same key racing it) each gets the answer to its own.
    #[serde(default)]
    pub attempt: Uuid,
    pub operator: String,
    pub change: CatalogChange,
}

message_enum!(CatalogCommand, topic::CATALOG_COMMANDS, key: |m| m.change.sku().to_owned(), {
    ChangeCatalog(ChangeCatalog),
});

/// An applied change: its audit record and the product after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogChanged {
    /// The [`ChangeCatalog::attempt`] answered.
    #[serde(default)]
    pub attempt: Uuid,
    pub entry: AuditEntry,
    pub product: Product,
}

/// A change the stock service refused; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogChangeRefused {
    /// The [`ChangeCatalog::attempt`] answered.
    #[serde(default)]
    pub attempt: Uuid,
    pub command_id: Uuid,
    pub operator: String,
    pub sku: String,
    /// As the operator's client is told.
    pub code: ErrorCode,
    pub message: String,
}

message_enum!(CatalogEvent, topic::CATALOG_EVENTS, key: |m| match m {
    CatalogOutcome::Changed(changed) => changed.entry.sku.clone(),
    CatalogOutcome::Refused(refused) => refused.sku.clone(),
}, {
    CatalogChangeDecided(CatalogOutcome),
});

/// What became of one catalogue change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CatalogOutcome {
    Changed(Box<CatalogChanged>),
    Refused(CatalogChangeRefused),
}

impl CatalogOutcome {
    /// The command this answers.
    pub fn command_id(&self) -> Uuid {
        match self {
            CatalogOutcome::Changed(changed) => changed.entry.command_id,
            CatalogOutcome::Refused(refused) => refused.command_id,
        }
    }

    /// The sending of the command this answers.
    pub fn attempt(&self) -> Uuid {
        match self {
            CatalogOutcome::Changed(changed) => changed.attempt,
            CatalogOutcome::Refused(refused) => refused.attempt,
        }
    }

    /// The same answer, to another sending of the command.
    pub fn answering(mut self, attempt: Uuid) -> CatalogOutcome {
        match &mut self {
            CatalogOutcome::Changed(changed) => changed.attempt = attempt,
            CatalogOutcome::Refused(refused) => refused.attempt = attempt,
        }
        self
    }
}

// ---- payment service ----

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePayment {
    pub order_id: Uuid,
    pub customer_id: Uuid,
    pub currency: Currency,
    /// Minor units; the sum of the lines.
    pub amount: i64,
    pub lines: Vec<PricedLine>,
    pub pay_until: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPayment {
    pub order_id: Uuid,
    pub reason: String,
}

message_enum!(PaymentCommand, topic::PAYMENT_COMMANDS, key: |m| m.order_id.to_string(), {
    CreatePayment(CreatePayment),
    /// The order no longer takes payment: close its checkout session.
    CancelPayment(OrderRef),
    RefundPayment(RefundPayment),
    /// The order's pay-until deadline passed: close its checkout session
    /// with the provider and say how it closed, [`CheckoutExpired`] when
    /// unpaid, [`PaymentSucceeded`] when the customer paid in time. As
    /// Stripe advises, the order is not cancelled before the provider
    /// confirms that nothing was paid
    /// (<https://docs.stripe.com/api/checkout/sessions/expire>).
    ExpireCheckout(OrderRef),
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutReady {
    pub order_id: Uuid,
    pub session_id: String,
    pub checkout_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    pub order_id: Uuid,
    pub session_id: String,
    /// In minor units of `currency`.
    pub amount: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub order_id: Uuid,
    /// For the customer: why the payment could not be taken.
    pub reason: String,
}

/// The provider confirmed that the order's checkout session closed
/// unpaid: it takes no payment any more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutExpired {
    pub order_id: Uuid,
    pub session_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    pub order_id: Uuid,
    /// In minor units of `currency`.
    pub amount: i64,
    pub currency: Currency,
}

/// The payment provider could not open a checkout session (it is
/// unavailable); the payment service keeps trying and says so once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutDelayed {
    pub order_id: Uuid,
    /// For the customer: what the provider answered.
    pub reason: String,
}

/// The provider did not give a late payment back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFailed {
    pub order_id: Uuid,
    /// For the customer: what the provider answered.
    pub reason: String,
    /// When the payment service tries again; `None` once it has stopped
    /// trying and the refund needs a person.
    pub retry_at: Option<Timestamp>,
}

message_enum!(PaymentEvent, topic::PAYMENT_EVENTS, key: |m| m.order_id.to_string(), {
    CheckoutReady(CheckoutReady),
    PaymentSucceeded(PaymentSucceeded),
    PaymentFailed(PaymentFailed),
    PaymentRefunded(PaymentRefunded),
    CheckoutExpired(CheckoutExpired),
    CheckoutDelayed(CheckoutDelayed),
    RefundFailed(RefundFailed),
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_carries_type_payload_and_metadata_as_json() {
        let order_id = Uuid::nil();
        let envelope = Envelope::new(
            StockCommand::ReleaseStock(OrderRef { order_id }),
            order_id.to_string(),
        );
        let json: serde_json::Value =
            serde_json::from_slice(&envelope.to_json()).expect("valid JSON");
        assert_eq!(json["type"], "ReleaseStock");
        assert_eq!(json["payload"]["order_id"], order_id.to_string());
        assert_eq!(json["version"], 1);
        assert_eq!(json["key"], order_id.to_string());
        assert_eq!(json["correlation_id"], order_id.to_string());
        let back = Envelope::<StockCommand>::from_json(&envelope.to_json()).expect("decodes");
        assert_eq!(back, envelope);
    }

    #[test]
    fn event_ids_are_unique_and_ordered_by_creation() {
        let ids: Vec<String> = (0..2_000)
            .map(|_| {
                Envelope::new(
                    StockCommand::CommitStock(OrderRef {
                        order_id: Uuid::nil(),
                    }),
                    "c",
                )
                .id
                .to_string()
            })
            .collect();
        // Strictly ascending as text, as the inbox's index stores them.
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]));
    }

    #[test]
    fn unknown_types_and_newer_schemas_are_refused() {
        let mut json: serde_json::Value = serde_json::from_slice(
            &Envelope::new(
                StockCommand::CommitStock(OrderRef {
                    order_id: Uuid::nil(),
                }),
                "x",
            )
            .to_json(),
        )
        .expect("valid JSON");
        json["version"] = 2.into();
        let bytes = serde_json::to_vec(&json).expect("serializes");
        assert!(matches!(
            Envelope::<StockCommand>::from_json(&bytes),
            Err(DecodeError::UnsupportedVersion { found: 2, .. })
        ));
        json["version"] = 1.into();
        json["type"] = "ShipIt".into();
        let bytes = serde_json::to_vec(&json).expect("serializes");
        assert!(matches!(
            Envelope::<StockCommand>::from_json(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }
}
