//! `shop watch`: stock and order changes as they happen, one per line,
//! reconnecting when the connection drops.

use shop_client::Push;
use shop_shared::domain::{Order, OrderStatus, Product};
use shop_shared::time::Timestamp;

use super::Context;
use crate::error::CliError;
use crate::output::{money, out, safe, time_left};

pub(super) async fn watch(context: &Context) -> Result<(), CliError> {
    let mut client = context.connect().await?;
    if !context.global.json {
        eprintln!("Watching the shop at {} (Ctrl-C to stop)…", context.gateway);
    }
    loop {
        let mut pushes = client.subscribe();
        loop {
            let push = tokio::select! {
                push = pushes.recv() => push,
                _ = tokio::signal::ctrl_c() => return Ok(()),
            };
            match push {
                Ok(Push::Product(product)) => print_product(context, &product)?,
                Ok(Push::Order(order)) => print_order(context, &order)?,
                Ok(Push::Disconnected) | Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    break;
                }
                Ok(Push::Error { .. })
                | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
            }
        }
        eprintln!("shop: lost the connection to the shop; reconnecting…");
        let again = tokio::select! {
            again = context.reconnect(None) => again?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        // Without an end, it returns only connected.
        if let Some(again) = again {
            client = again;
            eprintln!("shop: reconnected");
        }
    }
}

/// The time of day now, in the user's zone.
fn clock(context: &Context) -> String {
    context.clock.time_of_day(Timestamp::now())
}

fn print_product(context: &Context, product: &Product) -> Result<(), CliError> {
    if context.global.json {
        context.json(&serde_json::json!({ "type": "product_updated", "product": product }))
    } else {
        let on_sale = if product.listed {
            String::new()
        } else {
            ", withdrawn from sale".to_owned()
        };
        out!(
            "{}  stock  {}  {}: {} available at {}{on_sale}",
            context.style.dim(&clock(context)),
            safe(&product.sku),
            safe(&product.name),
            product.available,
            product.currency.format(product.unit_price)
        )
    }
}

fn print_order(context: &Context, order: &Order) -> Result<(), CliError> {
    if context.global.json {
        return context.json(&serde_json::json!({ "type": "order_updated", "order": order }));
    }
    let status = context.style.status(order);
    let mut line = format!(
        "{}  order  {}  {}",
        context.style.dim(&clock(context)),
        order.short_id(),
        status.shown()
    );
    if let Some(total) = order.total {
        line.push_str(&format!("  {}", money(Some(total), order.currency)));
    }
    if order.status == OrderStatus::Reserved {
        let now = Timestamp::now();
        if order.pay_until.is_some_and(|deadline| deadline <= now) {
            line.push_str("  deadline passed, a payment made in time still counts");
        } else {
            line.push_str(&format!("  pay within {}", time_left(order, now)));
        }
        if let Some(url) = &order.checkout_url {
            line.push_str(&format!("  {}", safe(url)));
        }
    }
    out!("{line}")
}
