//! The payment-return page, where the browser lands after the checkout:
//! `GET /orders/{id}/return?session_id=…` shows the order's status and
//! updates it live from `GET /orders/{id}/events` (Server-Sent Events);
//! `GET /orders/{id}/status` answers the same as JSON for scripts.
//!
//! The page is reached from the checkout, not from a logged-in client, so
//! the checkout session id in the URL is the credential: it must match the
//! order's session, or the order is reported as unknown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use shop_shared::domain::{Order, OrderStatus};
use shop_shared::events::OrderState;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::Gateway;
use super::read_model::CustomerChanges;
use crate::http::html::{escape, page};

#[derive(Debug, Deserialize)]
pub struct SessionQuery {
    #[serde(default)]
    session_id: Option<String>,
    /// `complete` when the checkout sent the customer here after taking
    /// the payment (its success URL; `payment::provider::ReturnUrls`).
    #[serde(default)]
    checkout: Option<String>,
}

impl SessionQuery {
    fn paid_at_checkout(&self) -> bool {
        self.checkout.as_deref() == Some("complete")
    }
}

/// The order `id` if `session` is its checkout session.
async fn order_for(gateway: &Gateway, id: &str, session: &SessionQuery) -> Option<Arc<OrderState>> {
    let _ = tokio::time::timeout(Duration::from_secs(10), gateway.ready()).await;
    let id = Uuid::try_parse(id).ok()?;
    let state = gateway.read_model().order(id).await.ok()??;
    let session = session.session_id.as_deref()?;
    (state.checkout_session_id.as_deref() == Some(session)).then_some(state)
}

fn unknown() -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "Unknown order",
            "<h1>Unknown order</h1><p>This link does not name an order of this shop.</p>",
        ),
    )
        .into_response()
}

/// What the page says for each status; `paid_at_checkout` when the
/// customer comes from paying (the payment is then being confirmed).
fn message(order: &Order, paid_at_checkout: bool) -> String {
    match order.status {
        OrderStatus::New => "Reserving your items…".into(),
        OrderStatus::Reserved if paid_at_checkout => "Payment received, confirming…".into(),
        OrderStatus::Reserved => "Waiting for your payment…".into(),
        OrderStatus::Paid => "Paid — thank you!".into(),
        OrderStatus::Cancelled => {
            let reason = order
                .cancel_reason
                .map_or("cancelled", |reason| reason.describe());
            let refund = if order.refunded {
                " Your payment was refunded."
            } else {
                ""
            };
            format!("Cancelled: {reason}.{refund}")
        }
    }
}

pub async fn return_page(
    State(gateway): State<Gateway>,
    Path(order_id): Path<String>,
    Query(query): Query<SessionQuery>,
) -> Response {
    let Some(state) = order_for(&gateway, &order_id, &query).await else {
        return unknown();
    };
    let order = &state.order;
    let currency = order.currency;
    let mut rows = String::new();
    for line in &order.lines {
        let amount = match (line.amount, currency) {
            (Some(amount), Some(currency)) => currency.format(amount),
            _ => String::new(),
        };
        let name = line.name.as_deref().unwrap_or(&line.sku);
        rows.push_str(&format!(
            "<tr><td>{} × {}</td><td class=\"amount\">{}</td></tr>",
            line.quantity,
            escape(name),
            escape(&amount)
        ));
    }
    if let (Some(total), Some(currency)) = (order.total, currency) {
        rows.push_str(&format!(
            "<tr class=\"total\"><td>Total</td><td class=\"amount\">{}</td></tr>",
            escape(&currency.format(total))
        ));
    }
    let checkout = order
        .checkout_url
        .as_deref()
        .filter(|_| order.status == OrderStatus::Reserved && !query.paid_at_checkout())
        .map(|url| format!("<a href=\"{}\">Back to the checkout</a>", escape(url)))
        .unwrap_or_default();
    let session = query.session_id.as_deref().unwrap_or_default();
    let events_url = format!(
        "/orders/{}/events?session_id={}",
        order.id,
        percent_encode(session)
    );
    let body = format!(
        r#"<h1>Order {short}</h1>
<p class="status" id="status">{status}</p>
<p id="message">{message}</p>
<p id="checkout">{checkout}</p>
<table>{rows}</table>
<p class="note">This page updates by itself.</p>
<noscript><meta http-equiv="refresh" content="3"></noscript>
<script>
const statusEl = document.getElementById('status');
const messageEl = document.getElementById('message');
const checkoutEl = document.getElementById('checkout');
const paidAtCheckout = {paid_at_checkout};
const reasons = {{
  OUT_OF_STOCK: 'not enough stock for every line, so nothing was reserved',
  NOT_PAID: 'the order was not paid before its deadline',
  BY_CUSTOMER: 'cancelled by the customer',
  PAYMENT_FAILED: 'the payment failed',
  PROVIDER_UNAVAILABLE: 'the payment provider was unavailable until the deadline, so no checkout was offered',
}};
function describe(order) {{
  switch (order.status) {{
    case 'NEW': return 'Reserving your items…';
    case 'RESERVED': return paidAtCheckout ? 'Payment received, confirming…' : 'Waiting for your payment…';
    case 'PAID': return 'Paid — thank you!';
    default: return 'Cancelled: ' + (reasons[order.cancel_reason] || 'cancelled') + '.' +
      (order.refunded ? ' Your payment was refunded.' : '');
  }}
}}
const source = new EventSource({events_url});
source.addEventListener('order', (event) => {{
  const order = JSON.parse(event.data);
  statusEl.textContent = order.status;
  messageEl.textContent = describe(order);
  if (order.status !== 'RESERVED') checkoutEl.textContent = '';
  if (order.status === 'PAID' || order.refunded) source.close();
}});
</script>"#,
        short = order.short_id(),
        status = order.status,
        message = escape(&message(order, query.paid_at_checkout())),
        paid_at_checkout = query.paid_at_checkout(),
        events_url = serde_json::to_string(&events_url).unwrap_or_else(|_| "\"\"".into()),
    );
    page(&format!("Order {}", order.short_id()), &body).into_response()
}

pub async fn status(
    State(gateway): State<Gateway>,
    Path(order_id): Path<String>,
    Query(query): Query<SessionQuery>,
) -> Response {
    match order_for(&gateway, &order_id, &query).await {
        Some(state) => Json(state.order.clone()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": { "type": "order_not_found", "message": "no such order for this session" } })),
        )
            .into_response(),
    }
}

/// The order now, then every change, as `order` events; ends once the
/// order is paid, or cancelled and refunded (a cancelled order may still
/// have a late payment refunded).
pub async fn events(
    State(gateway): State<Gateway>,
    Path(order_id): Path<String>,
    Query(query): Query<SessionQuery>,
) -> Response {
    let Some(state) = order_for(&gateway, &order_id, &query).await else {
        return unknown();
    };
    let changes = gateway.read_model().customer_changes(state.customer_id);
    let stream = order_events(gateway, state, changes);
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn order_events(
    gateway: Gateway,
    first: Arc<OrderState>,
    changes: CustomerChanges,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let id = first.order.id;
    let start = (Some(first.order.clone()), changes, false);
    futures_util::stream::unfold(start, move |(pending, mut changes, finished)| {
        let gateway = gateway.clone();
        async move {
            if finished {
                return None;
            }
            let order = match pending {
                Some(order) => order,
                None => loop {
                    match changes.recv().await {
                        Ok(state) if state.order.id == id => break state.order.clone(),
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => {
                            if let Ok(Some(state)) = gateway.read_model().order(id).await {
                                break state.order.clone();
                            }
                        }
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                },
            };
            // A cancelled order may still see a late payment refunded.
            let finished = order.status == OrderStatus::Paid || order.refunded;
            let event = Event::default()
                .event("order")
                .data(serde_json::to_string(&order).unwrap_or_default());
            Some((Ok(event), (None, changes, finished)))
        }
    })
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}
