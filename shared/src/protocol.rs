//! The WebSocket protocol between clients and the gateway, version 1.
//!
//! Every frame is one JSON object with a `type`. Client commands carry a
//! client-chosen `request_id`; the reply to a command carries the same
//! `request_id`. Pushes (`product_updated`, `order_updated`) carry none.
//! The first command on a connection is `hello`, which names the protocol
//! version and presents the customer's token (or asks for a new one).
//! `docs/protocol.md` shows every message with an example.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::catalog::{AuditEntry, CatalogChange};
use crate::domain::{Order, Product};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest text frame the gateway reads; larger ones get `frame_too_large`.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// Longest request id a client may choose.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Opens the session: with `token` to be a known customer again, without
    /// to become a new one.
    Hello {
        request_id: String,
        protocol: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    ListProducts {
        request_id: String,
    },
    /// Places one order. Sending the same `idempotency_key` again names the
    /// same order instead of creating a second one.
    PlaceOrder {
        request_id: String,
        idempotency_key: String,
        lines: Vec<OrderLineRequest>,
    },
    ListOrders {
        request_id: String,
    },
    GetOrder {
        request_id: String,
        order_id: String,
    },
    CancelOrder {
        request_id: String,
        order_id: String,
    },
    Ping {
        request_id: String,
    },
    /// Operators only: changes the catalogue. Sending the same
    /// `idempotency_key` again applies the change once and answers the
    /// same.
    Admin {
        request_id: String,
        idempotency_key: String,
        command: CatalogChange,
    },
    /// Operators only: the newest catalogue changes (at most
    /// [`MAX_AUDIT_ENTRIES`]), of one product when `sku` is given.
    ListAudit {
        request_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sku: Option<String>,
    },
}

/// Most audit entries one `list_audit` answers with.
pub const MAX_AUDIT_ENTRIES: usize = 1_000;

impl ClientMessage {
    pub fn request_id(&self) -> &str {
        match self {
            ClientMessage::Hello { request_id, .. }
            | ClientMessage::ListProducts { request_id }
            | ClientMessage::PlaceOrder { request_id, .. }
            | ClientMessage::ListOrders { request_id }
            | ClientMessage::GetOrder { request_id, .. }
            | ClientMessage::CancelOrder { request_id, .. }
            | ClientMessage::Ping { request_id }
            | ClientMessage::Admin { request_id, .. }
            | ClientMessage::ListAudit { request_id, .. } => request_id,
        }
    }

    /// This command's `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            ClientMessage::Hello { .. } => "hello",
            ClientMessage::ListProducts { .. } => "list_products",
            ClientMessage::PlaceOrder { .. } => "place_order",
            ClientMessage::ListOrders { .. } => "list_orders",
            ClientMessage::GetOrder { .. } => "get_order",
            ClientMessage::CancelOrder { .. } => "cancel_order",
            ClientMessage::Ping { .. } => "ping",
            ClientMessage::Admin { .. } => "admin",
            ClientMessage::ListAudit { .. } => "list_audit",
        }
    }

    /// The `type` names a client may send.
    pub const TYPES: &'static [&'static str] = &[
        "hello",
        "list_products",
        "place_order",
        "list_orders",
        "get_order",
        "cancel_order",
        "ping",
        "admin",
        "list_audit",
    ];

    /// Reads one text frame. On failure the error keeps whatever
    /// `request_id` could be read, so the reply can still be matched.
    ///
    /// # Errors
    ///
    /// [`ProtocolError`] for a frame over [`MAX_FRAME_BYTES`], text that is not
    /// JSON, an unknown `type`, or fields that do not fit it.
    pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
        if text.len() > MAX_FRAME_BYTES {
            return Err(ProtocolError::new(
                None,
                ErrorCode::FrameTooLarge,
                format!(
                    "frame of {} bytes is larger than the limit of {MAX_FRAME_BYTES} bytes",
                    text.len()
                ),
            ));
        }
        let value: serde_json::Value = serde_json::from_str(text).map_err(|error| {
            ProtocolError::new(
                None,
                ErrorCode::BadRequest,
                format!("malformed JSON: {error}"),
            )
        })?;
        let Some(object) = value.as_object() else {
            return Err(ProtocolError::new(
                None,
                ErrorCode::BadRequest,
                "a frame must be a JSON object with a \"type\"",
            ));
        };
        let request_id = object
            .get("request_id")
            .and_then(|id| id.as_str())
            .filter(|id| id.len() <= MAX_REQUEST_ID_LEN)
            .map(str::to_owned);
        let kind = match object.get("type") {
            Some(serde_json::Value::String(kind)) => kind.as_str(),
            _ => {
                return Err(ProtocolError::new(
                    request_id,
                    ErrorCode::BadRequest,
                    "a frame must have a string field \"type\"",
                ));
            }
        };
        if !Self::TYPES.contains(&kind) {
            return Err(ProtocolError::new(
                request_id,
                ErrorCode::UnknownCommand,
                format!(
                    "unknown command `{}`; known commands: {}",
                    kind.chars().take(64).collect::<String>(),
                    Self::TYPES.join(", ")
                ),
            ));
        }
        let kind = kind.to_owned();
        let message: ClientMessage = serde_json::from_value(value).map_err(|error| {
            ProtocolError::new(
                request_id.clone(),
                ErrorCode::BadRequest,
                format!("invalid `{kind}`: {error}"),
            )
        })?;
        if request_id.is_none() {
            return Err(ProtocolError::new(
                None,
                ErrorCode::BadRequest,
                format!("`request_id` must be a string of at most {MAX_REQUEST_ID_LEN} characters"),
            ));
        }
        Ok(message)
    }
}

/// One requested line. `quantity` is signed so that a negative number gets
/// the error `invalid_quantity` rather than a parse error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLineRequest {
    pub sku: String,
    pub quantity: i64,
}

/// Lets [`OrderLines::parse`](crate::domain::OrderLines::parse) read a
/// `&[OrderLineRequest]`.
impl<'a> From<&'a OrderLineRequest> for (&'a str, i64) {
    fn from(line: &'a OrderLineRequest) -> Self {
        (line.sku.as_str(), line.quantity)
    }
}

/// A frame from the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Reply to `hello`. Keep `token` to be the same customer next time.
    /// With an operator's token, `operator` names the operator, who may
    /// send `admin` and `list_audit` but places no orders.
    Welcome {
        request_id: String,
        protocol: u32,
        customer_id: Uuid,
        token: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        operator: Option<String>,
    },
    Products {
        request_id: String,
        products: Vec<Product>,
    },
    /// Reply to `place_order`: the order as stored (usually NEW).
    OrderPlaced {
        request_id: String,
        order: Order,
    },
    Orders {
        request_id: String,
        orders: Vec<Order>,
    },
    /// Reply to `get_order` and `cancel_order`.
    Order {
        request_id: String,
        order: Order,
    },
    Pong {
        request_id: String,
    },
    /// Reply to `admin`: what the change did, and the product after it.
    CatalogChanged {
        request_id: String,
        entry: AuditEntry,
        product: Product,
    },
    /// Reply to `list_audit`: newest first.
    Audit {
        request_id: String,
        entries: Vec<AuditEntry>,
    },
    /// A command failed; nothing changed. `request_id` is absent when the
    /// frame was too broken to read one.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<String>,
        code: ErrorCode,
        message: String,
    },
    /// Push: a product's available quantity (or price) changed.
    ProductUpdated {
        product: Product,
    },
    /// Push: one of this customer's orders changed.
    OrderUpdated {
        order: Order,
    },
}

impl ServerMessage {
    /// The request this frame answers; `None` for pushes.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ServerMessage::Welcome { request_id, .. }
            | ServerMessage::Products { request_id, .. }
            | ServerMessage::OrderPlaced { request_id, .. }
            | ServerMessage::Orders { request_id, .. }
            | ServerMessage::Order { request_id, .. }
            | ServerMessage::Pong { request_id }
            | ServerMessage::CatalogChanged { request_id, .. }
            | ServerMessage::Audit { request_id, .. } => Some(request_id),
            ServerMessage::Error { request_id, .. } => request_id.as_deref(),
            ServerMessage::ProductUpdated { .. } | ServerMessage::OrderUpdated { .. } => None,
        }
    }
}

/// What went wrong with a command. Stable names clients may match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, not an object, a missing or mistyped field.
    BadRequest,
    UnknownCommand,
    UnsupportedProtocol,
    /// A command before `hello`.
    NotAuthenticated,
    /// The token was not issued by this shop or was altered.
    InvalidToken,
    UnknownSku,
    /// A quantity outside 1..=1000.
    InvalidQuantity,
    EmptyOrder,
    TooManyLines,
    /// The same sku on two lines of one order.
    DuplicateSku,
    InvalidIdempotencyKey,
    /// The idempotency key names an order with other lines.
    IdempotencyKeyReused,
    FrameTooLarge,
    /// No such order for this customer (another customer's orders look the
    /// same as ones that do not exist).
    OrderNotFound,
    /// The order is already PAID or CANCELLED.
    OrderNotCancellable,
    /// Too many commands in flight on this connection.
    TooManyRequests,
    /// The order would take this customer's units in unpaid (`NEW` or
    /// `RESERVED`) orders over the shop's hold limit; paying or cancelling
    /// one gets under it.
    HoldLimit,
    /// This customer placed as many orders as the shop allows per minute;
    /// the message says how many seconds to wait.
    RateLimited,
    /// The backend is starting or a service is not answering; retry.
    Unavailable,
    /// An operator command from a customer, or an order from an operator.
    Forbidden,
    /// The product was withdrawn by an operator and takes no new orders.
    ProductWithdrawn,
    /// An operator command whose fields break a rule (the message names it).
    InvalidChange,
    /// `add_product` for a sku the shop has.
    ProductExists,
    /// A write-off of more units than are available.
    NotEnoughStock,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownCommand => "unknown_command",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::UnknownSku => "unknown_sku",
            ErrorCode::InvalidQuantity => "invalid_quantity",
            ErrorCode::EmptyOrder => "empty_order",
            ErrorCode::TooManyLines => "too_many_lines",
            ErrorCode::DuplicateSku => "duplicate_sku",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::OrderNotFound => "order_not_found",
            ErrorCode::OrderNotCancellable => "order_not_cancellable",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::HoldLimit => "hold_limit",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::ProductWithdrawn => "product_withdrawn",
            ErrorCode::InvalidChange => "invalid_change",
            ErrorCode::ProductExists => "product_exists",
            ErrorCode::NotEnoughStock => "not_enough_stock",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command the gateway refuses, as sent back in an `error` frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProtocolError {
    pub request_id: Option<String>,
    pub code: ErrorCode,
    pub message: String,
}

impl ProtocolError {
    pub fn new(request_id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        ProtocolError {
            request_id,
            code,
            message: message.into(),
        }
    }

    pub fn into_message(self) -> ServerMessage {
        ServerMessage::Error {
            request_id: self.request_id,
            code: self.code,
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(text: &str) -> ProtocolError {
        match ClientMessage::parse(text) {
            Ok(message) => panic!("{text} parsed as {message:?}"),
            Err(error) => error,
        }
    }

    #[test]
    fn parses_every_command() {
        let parsed = ClientMessage::parse(
            r#"{"type":"place_order","request_id":"r1","idempotency_key":"k","lines":[{"sku":"SKU-001","quantity":2}]}"#,
        );
        assert_eq!(
            parsed,
            Ok(ClientMessage::PlaceOrder {
                request_id: "r1".into(),
                idempotency_key: "k".into(),
                lines: vec![OrderLineRequest {
                    sku: "SKU-001".into(),
                    quantity: 2
                }],
            })
        );
        let hello = ClientMessage::parse(r#"{"type":"hello","request_id":"1","protocol":1}"#);
        assert_eq!(
            hello,
            Ok(ClientMessage::Hello {
                request_id: "1".into(),
                protocol: 1,
                token: None
            })
        );
    }

    #[test]
    fn malformed_frames_get_typed_errors_that_keep_the_request_id() {
        assert_eq!(error_of("{not json").code, ErrorCode::BadRequest);
        assert_eq!(error_of("[1,2]").code, ErrorCode::BadRequest);
        let unknown = error_of(r#"{"type":"drop_tables","request_id":"r9"}"#);
        assert_eq!(unknown.code, ErrorCode::UnknownCommand);
        assert_eq!(unknown.request_id.as_deref(), Some("r9"));
        let missing = error_of(r#"{"type":"place_order","request_id":"r2","lines":[]}"#);
        assert_eq!(missing.code, ErrorCode::BadRequest);
        assert_eq!(missing.request_id.as_deref(), Some("r2"));
        assert!(
            missing.message.contains("idempotency_key"),
            "{}",
            missing.message
        );
        let huge = error_of(&format!(
            r#"{{"type":"ping","request_id":"x","pad":"{}"}}"#,
            "a".repeat(MAX_FRAME_BYTES)
        ));
        assert_eq!(huge.code, ErrorCode::FrameTooLarge);
        let fractional = error_of(
            r#"{"type":"place_order","request_id":"r3","idempotency_key":"k","lines":[{"sku":"A","quantity":1.5}]}"#,
        );
        assert_eq!(fractional.code, ErrorCode::BadRequest);
    }

    /// Every JSON example in docs/protocol.md is a real frame: it parses as a
    /// client or server message and serializes back to exactly itself.
    #[test]
    fn every_example_in_the_protocol_document_is_a_valid_frame() {
        let document = include_str!("../../docs/protocol.md");
        let blocks: Vec<&str> = document
            .split("```json")
            .skip(1)
            .filter_map(|rest| rest.split("```").next())
            .collect();
        assert!(blocks.len() >= 15, "found only {} examples", blocks.len());
        let mut client = 0;
        let mut server = 0;
        for block in blocks {
            let value: serde_json::Value =
                serde_json::from_str(block).unwrap_or_else(|error| panic!("{error}: {block}"));
            if let Ok(message) = serde_json::from_value::<ClientMessage>(value.clone()) {
                assert_eq!(serde_json::to_value(&message).ok(), Some(value), "{block}");
                client += 1;
            } else {
                let message: ServerMessage =
                    serde_json::from_value(value.clone()).unwrap_or_else(|error| {
                        panic!("neither client nor server frame ({error}): {block}")
                    });
                assert_eq!(serde_json::to_value(&message).ok(), Some(value), "{block}");
                server += 1;
            }
        }
        let commands = ClientMessage::TYPES.len();
        assert!(
            client >= commands,
            "every command has an example ({client} of {commands})"
        );
        assert!(server >= 8, "replies and pushes have examples");
    }

    #[test]
    fn server_messages_serialize_with_snake_case_types() {
        let error = ServerMessage::Error {
            request_id: Some("7".into()),
            code: ErrorCode::UnknownSku,
            message: "no".into(),
        };
        let json = serde_json::to_value(&error).expect("serializes");
        assert_eq!(json["type"], "error");
        assert_eq!(json["code"], "unknown_sku");
        assert_eq!(error.request_id(), Some("7"));
    }
}
