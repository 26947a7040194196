//! The checkout page: `GET /checkout/{id}` shows it in whatever state the
//! session is; `POST` takes the card form. A session that is closed for
//! good (expired, its payment failed or refunded: the order is cancelled)
//! answers `410 Gone` to both, as docs/protocol.md promises.

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use shop_shared::domain::short_id;
use shop_shared::time::Timestamp;

use super::LocalCheckout;
use super::card::{CardForm, CardOutcome, check_card, today};
use super::sessions::{Session, SessionState, Settlement};
use crate::db::StoreError;
use crate::http::html::{escape, page};

pub(super) async fn show(
    State(checkout): State<LocalCheckout>,
    Path(session_id): Path<String>,
) -> Response {
    match checkout.session(&session_id).await {
        Ok(Some(session)) => render(&session, None, &CardForm::default()),
        Ok(None) => not_found(),
        Err(error) => server_error(error),
    }
}

pub(super) async fn pay(
    State(checkout): State<LocalCheckout>,
    Path(session_id): Path<String>,
    Form(form): Form<CardForm>,
) -> Response {
    let session = match checkout.session(&session_id).await {
        Ok(Some(session)) => session,
        Ok(None) => return not_found(),
        Err(error) => return server_error(error),
    };
    if !session.takes_payment(Timestamp::now()) {
        return render(&session, None, &form);
    }
    match check_card(&form, today()) {
        Err(message) => render_with(&session, StatusCode::UNPROCESSABLE_ENTITY, &message, &form),
        Ok(CardOutcome::Declined(message)) => {
            tracing::info!(order_id = %session.order_id, "local checkout: card declined");
            render_with(&session, StatusCode::PAYMENT_REQUIRED, message, &form)
        }
        Ok(outcome @ (CardOutcome::Approved | CardOutcome::Delayed { .. })) => {
            let settlement = match outcome {
                CardOutcome::Delayed { succeeds } => Settlement::Later { succeeds },
                _ => Settlement::Now,
            };
            match checkout.complete(&session, settlement).await {
                Ok(true) => Redirect::to(&session.success_url()).into_response(),
                Ok(false) => match checkout.session(&session_id).await {
                    Ok(Some(session)) => render(&session, None, &form),
                    Ok(None) => not_found(),
                    Err(error) => server_error(error),
                },
                Err(error) => server_error(error),
            }
        }
    }
}

fn render_with(session: &Session, status: StatusCode, message: &str, form: &CardForm) -> Response {
    let mut response = render(session, Some(message), form);
    *response.status_mut() = status;
    response
}

/// The checkout page for `session` in whatever state it is.
fn render(session: &Session, error: Option<&str>, form: &CardForm) -> Response {
    let order = short_id(&session.order_id);
    let mut rows = String::new();
    for line in &session.lines {
        let amount = line.unit_price.saturating_mul(line.quantity);
        rows.push_str(&format!(
            "<tr><td>{} × {}</td><td class=\"amount\">{}</td></tr>",
            line.quantity,
            escape(&line.name),
            escape(&session.currency.format(amount))
        ));
    }
    rows.push_str(&format!(
        "<tr class=\"total\"><td>Total</td><td class=\"amount\" id=\"total\">{}</td></tr>",
        escape(&session.currency.format(session.amount))
    ));
    let summary = format!("<h1>Pay order {order}</h1><table>{rows}</table>");
    let now = Timestamp::now();
    // A session closed without a payment that stands belongs to a
    // cancelled order: `410 Gone`, for the page and for a card posted to it.
    let (status, body) = if session.state == SessionState::Failed {
        (
            StatusCode::GONE,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Payment failed</p><p>The payment did not go through, so nothing was charged and the order was cancelled. <a href=\"{}\">See the order</a>.</p>",
                escape(&session.success_url())
            ),
        )
    } else if session.state == SessionState::Refunded {
        (
            StatusCode::GONE,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Refunded</p><p>The payment arrived after the order was cancelled, so it was refunded in full. <a href=\"{}\">See the order</a>.</p>",
                escape(&session.success_url())
            ),
        )
    } else if matches!(session.state, SessionState::Settling { .. }) {
        (
            StatusCode::OK,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Processing</p><p>The payment is being confirmed; this takes a few seconds. <a href=\"{}\">Follow the order</a>.</p>",
                escape(&session.success_url())
            ),
        )
    } else if session.state == SessionState::Paid {
        (
            StatusCode::OK,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Paid</p><p>This order is paid. <a href=\"{}\">See the order</a>.</p>",
                escape(&session.success_url())
            ),
        )
    } else if session.is_expired(now) {
        (
            StatusCode::GONE,
            format!(
                "{summary}<p class=\"status\" id=\"state\">Expired</p><p>This checkout has expired: the order was cancelled or its deadline to pay passed. Nothing was charged.</p>"
            ),
        )
    } else {
        let error = error
            .map(|message| {
                format!(
                    "<p class=\"error\" id=\"error\" role=\"alert\">{}</p>",
                    escape(message)
                )
            })
            .unwrap_or_default();
        (
            StatusCode::OK,
            format!(
                r#"{summary}{error}
<form method="post" id="pay">
  <label for="card_number">Card number</label>
  <input id="card_number" name="card_number" inputmode="numeric" autocomplete="cc-number" placeholder="4242 4242 4242 4242" required>
  <label for="expiry">Expiry (MM/YY)</label>
  <input id="expiry" name="expiry" autocomplete="cc-exp" placeholder="12/34" value="{expiry}" required>
  <label for="cvc">CVC</label>
  <input id="cvc" name="cvc" inputmode="numeric" autocomplete="cc-csc" placeholder="123" required>
  <label for="name">Name on card</label>
  <input id="name" name="name" autocomplete="cc-name" value="{name}" required>
  <button type="submit" id="submit">Pay {total}</button>
</form>
<p class="note">Local test checkout: no money moves. 4242 4242 4242 4242 succeeds, 4000 0000 0000 0002 is declined;
4000 0000 0000 1000 and 4000 0000 0000 2008 act as delayed payment methods that settle, or fail, a few seconds later.
Any future expiry and any CVC. Pay before {deadline}.</p>"#,
                expiry = escape(&form.expiry),
                name = escape(&form.name),
                total = escape(&session.currency.format(session.amount)),
                deadline = escape(&session.expires_at.to_string()),
            ),
        )
    };
    (status, page(&format!("Pay order {order}"), &body)).into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "No such checkout",
            "<h1>No such checkout</h1><p>This checkout link is not known here.</p>",
        ),
    )
        .into_response()
}

fn server_error(error: StoreError) -> Response {
    tracing::error!(%error, "local checkout page failed");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        page(
            "Something went wrong",
            "<h1>Something went wrong</h1><p>Try again in a moment.</p>",
        ),
    )
        .into_response()
}
