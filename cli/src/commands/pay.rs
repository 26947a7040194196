//! `shop pay`: the checkout page of an order; with `--wait`, the wait for
//! its payment.

use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use shop_client::ClientError;
use shop_shared::domain::{Order, OrderStatus};
use shop_shared::time::Timestamp;
use tokio::time::Instant;

use super::{Context, DEFAULT_TIMEOUT, cancelled, cancelled_after_paying, resolve};
use crate::error::{CliError, Exit};
use crate::output::{countdown, duration, money, out, safe};

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
        out!("{}", safe(&url))?;
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
    // A dropped connection (the shop restarting) is connected again, and
    // the wait goes on until the same end.
    let until = Instant::now() + timeout;
    let mut client = client;
    let outcome = loop {
        let left = until.saturating_duration_since(Instant::now());
        let waiting = client.wait_for_order(order.id, left, |order| order.status.is_final());
        let outcome = if context.global.json {
            waiting.await
        } else {
            with_countdown(context, &order, waiting).await
        };
        match outcome {
            Err(ClientError::Closed) => {}
            // The whole wait, not its last stretch, is what ran out.
            Err(ClientError::Timeout(_)) => break Err(ClientError::Timeout(timeout)),
            other => break other,
        }
        eprintln!("shop: lost the connection to the shop; reconnecting…");
        match context.reconnect(Some(until)).await? {
            Some(again) => {
                eprintln!("shop: reconnected; still waiting for the payment");
                client = again;
            }
            None => break Err(ClientError::Timeout(timeout)),
        }
    };
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

/// Runs `wait` while telling the user on stderr what it waits for: on a
/// terminal, a line whose countdown moves every second (cleared at the
/// end); otherwise, once, the deadline as a time of day and how far off
/// it is ("pay by today 14:05, in 5 min").
async fn with_countdown<T>(context: &Context, order: &Order, wait: impl Future<Output = T>) -> T {
    let short = order.short_id();
    let mut stderr = std::io::stderr();
    // Nothing more can be done when stderr is closed: the wait goes on.
    let Some(deadline) = order.pay_until else {
        let _ = writeln!(stderr, "Waiting for the payment of order {short}…");
        return wait.await;
    };
    let until = context.clock.when(deadline, Timestamp::now(), false);
    if !stderr.is_terminal() {
        let left = shop_client::words::relative(deadline, Timestamp::now());
        let _ = writeln!(
            stderr,
            "Waiting for the payment of order {short} (pay by {until}, {left})…"
        );
        return wait.await;
    }
    let wait = std::pin::pin!(wait);
    let mut wait = wait;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            done = &mut wait => {
                let _ = write!(stderr, "\r\x1b[K");
                return done;
            }
            _ = ticks.tick() => {
                let left = countdown(deadline, Timestamp::now());
                let _ = write!(
                    stderr,
                    "\r\x1b[KWaiting for the payment of order {short}: {left} left (pay by {until})…"
                );
            }
        }
    }
}
