//! `shop pay`: the checkout page of an order; with `--wait`, the wait for
//! its payment.

use std::time::Duration;

use shop_client::ClientError;
use shop_shared::domain::OrderStatus;
use shop_shared::time::Timestamp;

use super::{Context, DEFAULT_TIMEOUT, cancelled, cancelled_after_paying, resolve};
use crate::error::{CliError, Exit};
use crate::output::{countdown, duration, money, out};

/// How long `pay --wait` keeps waiting after the deadline for the shop to
/// record the expiry.
const DEADLINE_GRACE: Duration = Duration::from_secs(30);

pub(super) async fn pay(
    context: &Context,
    text: &str,
    open: bool,
    wait: bool,
) -> Result<(), CliError> {
    let client = context.connect().await?;
    let mut order = resolve(context, &client, text).await?;
    if order.status == OrderStatus::New
        || (order.status == OrderStatus::Reserved && order.checkout_url.is_none())
    {
        order = match client.wait_for_checkout(order.id, context.timeout()).await {
            Ok(order) => order,
            Err(ClientError::Timeout(_)) => {
                let latest = client
                    .order(&order.id.to_string())
                    .await
                    .map_err(|error| context.fail(error))?;
                let why = latest
                    .provider_wait()
                    .unwrap_or_else(|| "it is not reserved yet".to_owned());
                return Err(CliError::new(
                    Exit::Timeout,
                    format!(
                        "order {} has no checkout page yet ({why}); try again shortly",
                        order.short_id()
                    ),
                ));
            }
            Err(error) => return Err(context.fail(error)),
        };
    }
    match order.status {
        OrderStatus::Paid => {
            if context.global.json {
                context.json(&order)?;
            } else {
                out!("Order {} is already paid.", order.short_id())?;
            }
            return Ok(());
        }
        OrderStatus::Cancelled => {
            if context.global.json {
                context.json(&order)?;
            }
            return Err(cancelled(&order));
        }
        OrderStatus::New | OrderStatus::Reserved => {}
    }
    let Some(url) = order.checkout_url.clone() else {
        return Err(CliError::new(
            Exit::Timeout,
            format!(
                "order {} has no checkout page yet; try again shortly",
                order.short_id()
            ),
        ));
    };
    if !context.global.json {
        out!("{url}")?;
    }
    if open && let Err(problem) = shop_client::browser::open(&url).await {
        eprintln!("shop: could not open a browser ({problem}); open this URL yourself: {url}");
    }
    if !wait {
        if context.global.json {
            context.json(&order)?;
        }
        return Ok(());
    }
    let now = Timestamp::now();
    let timeout = context.global.timeout.unwrap_or_else(|| {
        order.pay_until.map_or(DEFAULT_TIMEOUT, |deadline| {
            deadline.remaining_from(now) + DEADLINE_GRACE
        })
    });
    if !context.global.json {
        let left = order
            .pay_until
            .map_or("-".into(), |deadline| countdown(deadline, now));
        eprintln!(
            "Waiting for the payment of order {} (pay within {left})…",
            order.short_id()
        );
    }
    let outcome = client
        .wait_for_order(order.id, timeout, |order| order.status.is_final())
        .await;
    let order = match outcome {
        Ok(order) => order,
        Err(ClientError::Timeout(after)) => {
            return Err(CliError::new(
                Exit::Timeout,
                format!(
                    "order {} was not paid within {}",
                    order.short_id(),
                    duration(after)
                ),
            ));
        }
        Err(error) => return Err(context.fail(error)),
    };
    if context.global.json {
        context.json(&order)?;
    }
    match order.status {
        OrderStatus::Paid => {
            if !context.global.json {
                out!(
                    "Order {} is paid: {}.",
                    order.short_id(),
                    money(order.total, order.currency)
                )?;
            }
            Ok(())
        }
        _ => Err(cancelled_after_paying(&order)),
    }
}
