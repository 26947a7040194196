//! The domain vocabulary every part of shop speaks: products, orders, their
//! statuses, and the limits on what a customer may ask for.
//!
//! [`Sku`], [`Quantity`] and [`OrderLines`] (in `domain/lines.rs`) hold
//! those limits: input becomes one of them at the edge.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::money::Currency;
use crate::time::Timestamp;

mod lines;

pub use lines::{OrderLines, OrderLinesError, Quantity, QuantityError, Sku, SkuError};

/// Most lines one order may have.
pub const MAX_LINES: usize = 20;
/// Most units of one sku one line may ask for.
pub const MAX_QUANTITY: i64 = 1_000;
/// Longest sku the shop accepts.
pub const MAX_SKU_LEN: usize = 64;
/// Longest idempotency key a client may send.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// A product as customers see it, with its live available quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub sku: String,
    pub name: String,
    /// Plain text, possibly several lines; empty (and left out of JSON)
    /// when there is none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Empty (and left out of JSON) when the product has none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub category: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// Price of one unit in minor units of `currency`.
    pub unit_price: i64,
    pub currency: Currency,
    pub available: i64,
    /// False once an operator withdrew the product: it takes no new
    /// orders. Left out of JSON while true.
    #[serde(default = "listed", skip_serializing_if = "is_true")]
    pub listed: bool,
    /// Where every unit is: on the bus and for operators; customers are
    /// sent none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockLevels>,
    /// Grows with every change of this product; a consumer keeps the newest.
    pub version: i64,
}

fn listed() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

impl Product {
    /// The product without what only operators see.
    pub fn for_customers(&self) -> Product {
        Product {
            stock: None,
            ..self.clone()
        }
    }

    /// Whether new orders of it are taken: listed, whatever the units.
    pub fn is_listed(&self) -> bool {
        self.listed
    }
}

/// Where a product's units are. They only move between these, and
/// `available + reserved + sold + written_off = received` always holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevels {
    /// Held by unpaid orders.
    pub reserved: i64,
    pub sold: i64,
    /// Lost to breakage or theft, by an operator's write-off.
    pub written_off: i64,
    /// Every unit that ever came in: the first stock and every restock.
    pub received: i64,
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Stored, stock not reserved yet.
    New,
    /// Stock reserved until `pay_until`.
    Reserved,
    Paid,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::New => "NEW",
            OrderStatus::Reserved => "RESERVED",
            OrderStatus::Paid => "PAID",
            OrderStatus::Cancelled => "CANCELLED",
        }
    }

    /// PAID and CANCELLED never change again.
    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Paid | OrderStatus::Cancelled)
    }
}

impl FromStr for OrderStatus {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "NEW" => Ok(OrderStatus::New),
            "RESERVED" => Ok(OrderStatus::Reserved),
            "PAID" => Ok(OrderStatus::Paid),
            "CANCELLED" => Ok(OrderStatus::Cancelled),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an order was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CancelReason {
    /// Some line could not be reserved; nothing was.
    OutOfStock,
    /// A product of the order was withdrawn from sale before the order
    /// could be reserved; nothing was.
    ProductWithdrawn,
    /// The pay-until deadline passed.
    NotPaid,
    ByCustomer,
    /// The payment provider refused or failed the payment.
    PaymentFailed,
    /// The pay-until deadline passed before the payment provider could
    /// open a checkout session: nobody was ever offered a way to pay.
    ProviderUnavailable,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::OutOfStock => "OUT_OF_STOCK",
            CancelReason::ProductWithdrawn => "PRODUCT_WITHDRAWN",
            CancelReason::NotPaid => "NOT_PAID",
            CancelReason::ByCustomer => "BY_CUSTOMER",
            CancelReason::PaymentFailed => "PAYMENT_FAILED",
            CancelReason::ProviderUnavailable => "PROVIDER_UNAVAILABLE",
        }
    }

    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            CancelReason::OutOfStock => "not enough stock for every line, so nothing was reserved",
            CancelReason::ProductWithdrawn => {
                "a product was withdrawn from sale before the order was reserved, so nothing was"
            }
            CancelReason::NotPaid => "the order was not paid before its deadline",
            CancelReason::ByCustomer => "cancelled by the customer",
            CancelReason::PaymentFailed => "the payment failed",
            CancelReason::ProviderUnavailable => {
                "the payment provider was unavailable until the deadline, so no checkout was offered"
            }
        }
    }
}

impl FromStr for CancelReason {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "OUT_OF_STOCK" => Ok(CancelReason::OutOfStock),
            "PRODUCT_WITHDRAWN" => Ok(CancelReason::ProductWithdrawn),
            "NOT_PAID" => Ok(CancelReason::NotPaid),
            "BY_CUSTOMER" => Ok(CancelReason::ByCustomer),
            "PAYMENT_FAILED" => Ok(CancelReason::PaymentFailed),
            "PROVIDER_UNAVAILABLE" => Ok(CancelReason::ProviderUnavailable),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

impl fmt::Display for CancelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored name (status, reason, event) that this version does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown name `{0}`")]
pub struct UnknownName(pub String);

/// One line of an order. Name and prices are filled in by the stock service
/// when it reserves the line, so they are absent on orders never reserved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    pub name: Option<String>,
    /// Minor units, as priced at reservation time.
    pub unit_price: Option<i64>,
    /// `unit_price × quantity`, minor units.
    pub amount: Option<i64>,
}

/// Something that happened to an order, for its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TimelineEvent {
    Created,
    Reserved,
    CheckoutReady,
    Paid,
    Cancelled,
    Refunded,
    /// The pay-until deadline passed with a checkout session open: the
    /// session is being closed, and a payment the provider accepted before
    /// it closed still counts.
    DeadlinePassed,
    /// The payment provider could not open a checkout session yet.
    CheckoutDelayed,
    /// A payment came after the order was cancelled; it is being given back.
    RefundRequested,
    /// The provider refused to give the payment back; it is tried again.
    RefundRefused,
    /// The provider kept refusing; the shop stopped trying.
    RefundFailed,
}

impl TimelineEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            TimelineEvent::Created => "created",
            TimelineEvent::Reserved => "reserved",
            TimelineEvent::CheckoutReady => "checkout_ready",
            TimelineEvent::Paid => "paid",
            TimelineEvent::Cancelled => "cancelled",
            TimelineEvent::Refunded => "refunded",
            TimelineEvent::DeadlinePassed => "deadline_passed",
            TimelineEvent::CheckoutDelayed => "checkout_delayed",
            TimelineEvent::RefundRequested => "refund_requested",
            TimelineEvent::RefundRefused => "refund_refused",
            TimelineEvent::RefundFailed => "refund_failed",
        }
    }
}

impl FromStr for TimelineEvent {
    type Err = UnknownName;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "created" => Ok(TimelineEvent::Created),
            "reserved" => Ok(TimelineEvent::Reserved),
            "checkout_ready" => Ok(TimelineEvent::CheckoutReady),
            "paid" => Ok(TimelineEvent::Paid),
            "cancelled" => Ok(TimelineEvent::Cancelled),
            "refunded" => Ok(TimelineEvent::Refunded),
            "deadline_passed" => Ok(TimelineEvent::DeadlinePassed),
            "checkout_delayed" => Ok(TimelineEvent::CheckoutDelayed),
            "refund_requested" => Ok(TimelineEvent::RefundRequested),
            "refund_refused" => Ok(TimelineEvent::RefundRefused),
            "refund_failed" => Ok(TimelineEvent::RefundFailed),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub at: Timestamp,
    pub event: TimelineEvent,
    /// A few words more, such as the cancel reason.
    pub detail: Option<String>,
}

/// An order as its customer sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: Uuid,
    pub status: OrderStatus,
    pub cancel_reason: Option<CancelReason>,
    pub lines: Vec<OrderLine>,
    /// Set once the stock service has priced the order.
    pub currency: Option<Currency>,
    /// Sum of the line amounts in minor units; set once priced.
    pub total: Option<i64>,
    /// Deadline to pay a RESERVED order.
    pub pay_until: Option<Timestamp>,
    /// Hosted checkout page; set shortly after the order is RESERVED.
    pub checkout_url: Option<String>,
    /// True once a payment that arrived too late was refunded.
    pub refunded: bool,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Grows with every change; a consumer keeps the newest.
    pub version: i64,
    pub timeline: Vec<TimelineEntry>,
    /// Why a RESERVED order has no checkout page yet: what the payment
    /// provider answered while it could not open one (the shop keeps
    /// trying). `None` otherwise.
    #[serde(default)]
    pub checkout_delay: Option<String>,
    /// A refund of a late payment that has not gone through (yet); `None`
    /// when there is none or once `refunded`.
    #[serde(default)]
    pub refund: Option<RefundState>,
}

impl Order {
    /// The order id in the short form people type (first 8 hex digits).
    pub fn short_id(&self) -> String {
        short_id(&self.id)
    }

    /// `waiting for the payment provider: <reason>` while no checkout page
    /// can be opened.
    pub fn provider_wait(&self) -> Option<String> {
        self.checkout_delay
            .as_deref()
            .map(|reason| format!("waiting for the payment provider: {reason}"))
    }
}

/// Where giving back a payment that came after its order was cancelled
/// stands, while it has not gone through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefundState {
    /// Under way; `reason` is what the provider answered when it refused
    /// the last attempt, if it did. The shop tries again.
    Pending { reason: Option<String> },
    /// The provider kept refusing and the shop stopped trying: the money
    /// was not given back, a person has to.
    Failed { reason: String },
}

impl RefundState {
    /// `refund pending`, `refund pending (<the provider's answer>;
    /// retrying)`, `refund failed: <the provider's answer>`.
    pub fn describe(&self) -> String {
        match self {
            RefundState::Pending { reason: None } => "refund pending".to_owned(),
            RefundState::Pending {
                reason: Some(reason),
            } => format!("refund pending ({reason}; retrying)"),
            RefundState::Failed { reason } => format!("refund failed: {reason}"),
        }
    }
}

/// First 8 hex digits of an id, as shown in tables.
pub fn short_id(id: &Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// Whether `sku` has the shape of a sku: 1 to 64 letters, digits, `-`, `_`
/// or `.`. The rule [`Sku::parse`] applies; at an edge, parse instead.
pub fn is_valid_sku(sku: &str) -> bool {
    !sku.is_empty()
        && sku.len() <= MAX_SKU_LEN
        && sku
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_reasons_use_their_documented_names() {
        assert_eq!(
            serde_json::to_string(&OrderStatus::Reserved)
                .ok()
                .as_deref(),
            Some("\"RESERVED\"")
        );
        assert_eq!(
            serde_json::to_string(&CancelReason::OutOfStock)
                .ok()
                .as_deref(),
            Some("\"OUT_OF_STOCK\"")
        );
        for status in [
            OrderStatus::New,
            OrderStatus::Reserved,
            OrderStatus::Paid,
            OrderStatus::Cancelled,
        ] {
            assert_eq!(status.as_str().parse(), Ok(status));
        }
        for reason in [
            CancelReason::OutOfStock,
            CancelReason::NotPaid,
            CancelReason::ByCustomer,
            CancelReason::PaymentFailed,
            CancelReason::ProviderUnavailable,
        ] {
            assert_eq!(reason.as_str().parse(), Ok(reason));
        }
        assert!("SHIPPED".parse::<OrderStatus>().is_err());
        for event in [
            TimelineEvent::Created,
            TimelineEvent::Reserved,
            TimelineEvent::CheckoutReady,
            TimelineEvent::Paid,
            TimelineEvent::Cancelled,
            TimelineEvent::Refunded,
            TimelineEvent::CheckoutDelayed,
            TimelineEvent::RefundRequested,
            TimelineEvent::RefundRefused,
            TimelineEvent::RefundFailed,
        ] {
            assert_eq!(event.as_str().parse(), Ok(event));
            assert_eq!(
                serde_json::to_string(&event).ok(),
                Some(format!("\"{}\"", event.as_str()))
            );
        }
    }

    #[test]
    fn refund_states_read_as_their_documented_json_and_describe_themselves() {
        let pending = RefundState::Pending {
            reason: Some("charge disputed".into()),
        };
        assert_eq!(
            serde_json::to_value(&pending).ok(),
            Some(serde_json::json!({"state": "PENDING", "reason": "charge disputed"}))
        );
        assert_eq!(
            pending.describe(),
            "refund pending (charge disputed; retrying)"
        );
        let failed = RefundState::Failed {
            reason: "charge disputed".into(),
        };
        assert_eq!(failed.describe(), "refund failed: charge disputed");
        assert_eq!(
            RefundState::Pending { reason: None }.describe(),
            "refund pending"
        );
    }

    #[test]
    fn sku_shape_is_checked() {
        assert!(is_valid_sku("SKU-001"));
        assert!(is_valid_sku("a.b_c"));
        assert!(!is_valid_sku(""));
        assert!(!is_valid_sku("SKU 001"));
        assert!(!is_valid_sku(&"x".repeat(65)));
    }
}
