//! What each command does, a file per command. Every command speaks only
//! the gateway's WebSocket protocol, through the client of `shop-client`.
//!
//! This file holds what they share: the [`Context`] (connecting as the
//! profile's customer, printing JSON), [`run`], which picks the command,
//! and the helpers of several commands (finding an order by id prefix,
//! saying why an order was cancelled).

mod admin;
mod cancel;
mod order;
mod orders;
mod pay;
mod product;
mod products;
mod status;
mod watch;

use std::time::Duration;

use clap::CommandFactory;
use shop_client::tokens::Tokens;
use shop_client::words::Clock;
use shop_client::{Client, ClientError, Trust, websocket_url};
use shop_shared::domain::{Order, RefundState, TimelineEvent};
use shop_shared::protocol::ErrorCode;
use tokio::time::Instant;

use crate::args::{Cli, Command, Global};
use crate::error::{CliError, Exit};
use crate::output::{Style, out};
use admin::admin;
use cancel::cancel;
use order::order;
use orders::orders;
use pay::pay;
use product::product;
use products::products;
use status::status;
use watch::watch;

/// The wait when no `--timeout` is given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What every command needs.
struct Context {
    global: Global,
    gateway: String,
    style: Style,
    /// The certificates trusted over TLS (`--ca-cert`).
    trust: Trust,
    /// The user's time zone, for times shown to people.
    clock: Clock,
}

impl Context {
    /// The profile of a customer's command.
    fn profile(&self) -> &str {
        self.global.profile.as_deref().unwrap_or("default")
    }

    fn timeout(&self) -> Duration {
        self.global.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }

    fn fail(&self, error: ClientError) -> CliError {
        CliError::from_client(error, &self.gateway)
    }

    /// Connects as this profile's customer, keeping a new customer's token.
    async fn connect(&self) -> Result<Client, CliError> {
        let tokens = Tokens::locate().map_err(|error| CliError::usage(error.to_string()))?;
        let profile = self.profile();
        // Another command becoming this profile's first customer holds the
        // claim until it is welcomed: wait for it no longer than for the shop.
        let (saved, _claim) =
            tokio::time::timeout(self.timeout(), tokens.get_or_claim(profile, &self.gateway))
                .await
                .map_err(|_| self.fail(ClientError::Timeout(self.timeout())))?
                .map_err(|error| CliError::usage(error.to_string()))?;
        let client = match self.connect_as(saved.as_deref()).await {
            Err(ClientError::Server {
                code: ErrorCode::InvalidToken,
                ..
            }) => {
                eprintln!(
                    "shop: the saved customer of profile `{profile}` is unknown to this shop (was its data reset?); \
                     continuing as a new customer"
                );
                self.connect_as(None).await
            }
            other => other,
        }
        .map_err(|error| self.fail(error))?;
        if saved.as_deref() != Some(client.token()) {
            tokens
                .save(profile, &self.gateway, client.token())
                .map_err(|error| CliError::usage(error.to_string()))?;
        }
        Ok(client.with_reply_timeout(self.timeout()))
    }

    async fn connect_as(&self, token: Option<&str>) -> Result<Client, ClientError> {
        let timeout = self.timeout();
        tokio::time::timeout(
            timeout,
            Client::connect_with(&self.gateway, token, &self.trust),
        )
        .await
        .unwrap_or(Err(ClientError::Timeout(timeout)))
    }

    /// Connects again after the connection dropped (the shop restarting,
    /// say), with pauses growing from 250 ms to 5 s, until it works or
    /// `until` passes (`None`: no end). `None` when `until` passed first.
    ///
    /// # Errors
    ///
    /// A failure that waiting does not mend (a refused token, an untrusted
    /// certificate), as [`Context::connect`].
    async fn reconnect(&self, until: Option<Instant>) -> Result<Option<Client>, CliError> {
        let mut pause = Duration::from_millis(250);
        loop {
            let next = Instant::now() + pause;
            if until.is_some_and(|until| next >= until) {
                return Ok(None);
            }
            tokio::time::sleep_until(next).await;
            let attempt = match until {
                Some(until) => tokio::time::timeout_at(until, self.connect())
                    .await
                    .unwrap_or_else(|_| Err(self.fail(ClientError::Timeout(self.timeout())))),
                None => self.connect().await,
            };
            match attempt {
                Ok(client) => return Ok(Some(client)),
                Err(error) if error.exit == Exit::Unreachable || error.exit == Exit::Timeout => {
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Prints `value` as one JSON object.
    fn json(&self, value: &impl serde::Serialize) -> Result<(), CliError> {
        out!("{}", serde_json::to_string(value).unwrap_or_default())
    }
}

pub async fn run(cli: Cli, clock: Clock) -> Result<(), CliError> {
    let trust = Trust::new(cli.global.ca_cert.as_deref())
        .map_err(|error| CliError::usage(error.to_string()))?;
    let context = Context {
        trust,
        clock,
        gateway: websocket_url(&cli.global.gateway),
        global: cli.global,
        style: Style::detect(),
    };
    match cli.command {
        Command::Products { category, search } => {
            products(&context, category.as_deref(), search.as_deref()).await
        }
        Command::Product { sku } => product(&context, &sku).await,
        Command::Admin { command } => admin(&context, command).await,
        Command::Order {
            lines,
            idempotency_key,
        } => order(&context, &lines, idempotency_key).await,
        Command::Orders => orders(&context).await,
        Command::Status { order } => status(&context, &order).await,
        Command::Pay { order, open, wait } => pay(&context, &order, open, wait).await,
        Command::Cancel { order } => cancel(&context, &order).await,
        Command::Watch => watch(&context).await,
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "shop", &mut script);
            crate::output::write(format_args!("{}", String::from_utf8_lossy(&script)))
        }
    }
}

/// The error for a cancelled order, saying why, and what became of a
/// payment that came anyway.
fn cancelled(order: &Order) -> CliError {
    cancelled_with(order, "")
}

/// The error for a cancelled order the customer may have paid for: says
/// why, and whether money was or will be given back.
fn cancelled_after_paying(order: &Order) -> CliError {
    cancelled_with(
        order,
        "; no payment has reached the shop so far; a payment still on its way (one settling after the deadline) is refunded when it comes",
    )
}

/// The error for a cancelled order; `unpaid` is said when no payment is
/// known.
fn cancelled_with(order: &Order, unpaid: &str) -> CliError {
    let reason = order
        .cancel_reason
        .map_or("cancelled", |reason| reason.describe());
    let detail = order
        .timeline
        .iter()
        .rev()
        .find(|entry| entry.event == TimelineEvent::Cancelled)
        .and_then(|entry| entry.detail.clone())
        .filter(|detail| detail != reason)
        .map(|detail| crate::output::safe(&detail).into_owned());
    let detail = detail
        .map(|detail| format!(" ({detail})"))
        .unwrap_or_default();
    let refunded = match &order.refund {
        _ if order.refunded => "; the payment was refunded".to_owned(),
        Some(RefundState::Pending { .. }) => format!(
            "; your payment will be refunded: {}",
            order
                .refund
                .as_ref()
                .map(RefundState::describe)
                .unwrap_or_default()
        ),
        Some(RefundState::Failed { reason }) => format!(
            "; your payment was NOT refunded: the refund failed ({reason}) and the shop has to give it back by hand"
        ),
        None => unpaid.to_owned(),
    };
    CliError::new(
        Exit::Cancelled,
        format!(
            "order {} was cancelled: {reason}{detail}{refunded}",
            order.short_id()
        ),
    )
}

/// The order an id or unique id prefix names, among this customer's.
async fn resolve(context: &Context, client: &Client, text: &str) -> Result<Order, CliError> {
    let wanted: String = text
        .trim()
        .to_ascii_lowercase()
        .chars()
        .filter(|c| *c != '-')
        .collect();
    if wanted.is_empty() || !wanted.chars().all(|c| c.is_ascii_hexdigit()) || wanted.len() > 32 {
        return Err(CliError::usage(format!(
            "`{text}` is not an order id; `shop orders` lists yours"
        )));
    }
    let orders = client.orders().await.map_err(|error| context.fail(error))?;
    let matching: Vec<Order> = orders
        .into_iter()
        .filter(|order| order.id.simple().to_string().starts_with(&wanted))
        .collect();
    match matching.len() {
        0 => Err(CliError::usage(format!(
            "no order of yours starts with `{text}`; `shop orders` lists them"
        ))),
        1 => Ok(matching
            .into_iter()
            .next()
            .unwrap_or_else(|| unreachable!("one element"))),
        many => {
            let ids: Vec<String> = matching
                .iter()
                .take(5)
                .map(|order| order.id.simple().to_string()[..12].to_owned())
                .collect();
            Err(CliError::usage(format!(
                "`{text}` matches {many} of your orders ({}…); type more of the id",
                ids.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cancelled_order() -> Order {
        serde_json::from_value(serde_json::json!({
            "id": "0b5e6f1a-7c2d-5e3f-9a4b-6c7d8e9f0a1b", "status": "CANCELLED",
            "cancel_reason": "NOT_PAID", "lines": [], "currency": "EUR", "total": 450000,
            "pay_until": null, "checkout_url": null, "refunded": false,
            "created_at": "2026-11-24T10:00:00.000Z", "updated_at": "2026-11-24T10:00:00.000Z",
            "version": 3, "timeline": []
        }))
        .expect("an order")
    }

    #[test]
    fn pay_wait_ending_cancelled_says_whether_money_was_or_will_be_refunded() {
        let mut order = cancelled_order();
        let message = cancelled_after_paying(&order).message;
        assert!(
            message.ends_with("no payment has reached the shop so far; a payment still on its way (one settling after the deadline) is refunded when it comes"),
            "{message}"
        );
        order.refund = Some(RefundState::Pending { reason: None });
        let message = cancelled_after_paying(&order).message;
        assert!(
            message.ends_with("; your payment will be refunded: refund pending"),
            "{message}"
        );
        order.refund = Some(RefundState::Failed {
            reason: "charge disputed".into(),
        });
        let message = cancelled_after_paying(&order).message;
        assert!(
            message.contains("your payment was NOT refunded: the refund failed (charge disputed)"),
            "{message}"
        );
        order.refund = None;
        order.refunded = true;
        let message = cancelled_after_paying(&order).message;
        assert!(message.ends_with("; the payment was refunded"), "{message}");
        assert_eq!(cancelled(&order).exit, Exit::Cancelled);
    }
}
