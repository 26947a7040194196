//! `shop orders`: this customer's orders in a table.

use shop_shared::domain::OrderStatus;
use shop_shared::time::Timestamp;

use super::Context;
use crate::error::CliError;
use crate::output::{Align, Cell, Table, money, out, time_left};

pub(super) async fn orders(context: &Context) -> Result<(), CliError> {
    let client = context.connect().await?;
    let orders = client.orders().await.map_err(|error| context.fail(error))?;
    if context.global.json {
        context.json(&orders)?;
        return Ok(());
    }
    if orders.is_empty() {
        out!("No orders yet. Place one with `shop order SKU-001`.")?;
        return Ok(());
    }
    let now = Timestamp::now();
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("STATUS", Align::Left),
        ("TOTAL", Align::Right),
        ("PAY WITHIN", Align::Right),
        ("CHECKOUT", Align::Left),
    ]);
    for order in &orders {
        let checkout = match order.status {
            OrderStatus::Reserved => order.checkout_url.clone().unwrap_or_default(),
            _ => String::new(),
        };
        table.row(vec![
            order.short_id().into(),
            context.style.status(order),
            money(order.total, order.currency).into(),
            time_left(order, now).into(),
            Cell::from(checkout),
        ]);
    }
    crate::output::write(format_args!("{}", table.render(context.style)))?;
    Ok(())
}
