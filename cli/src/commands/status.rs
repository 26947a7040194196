//! `shop status`: one order in full.

use shop_shared::domain::{Order, OrderStatus};
use shop_shared::time::Timestamp;

use super::{Context, resolve};
use crate::error::CliError;
use crate::output::{Align, Style, Table, countdown, money};

pub(super) async fn status(context: &Context, text: &str) -> Result<(), CliError> {
    let client = context.connect().await?;
    let order = resolve(context, &client, text).await?;
    if context.global.json {
        context.json(&order);
        return Ok(());
    }
    print!("{}", describe(&order, context.style, Timestamp::now()));
    Ok(())
}

/// One order in full, for people.
pub fn describe(order: &Order, style: Style, now: Timestamp) -> String {
    let mut out = String::new();
    out.push_str(&format!("{} {}\n", style.bold("Order"), order.id));
    out.push_str(&format!("Status      {}\n", style.status(order).shown()));
    out.push_str(&format!(
        "Total       {}\n",
        money(order.total, order.currency)
    ));
    if let (OrderStatus::Reserved, Some(deadline)) = (order.status, order.pay_until) {
        out.push_str(&format!(
            "Pay within  {} (until {deadline})\n",
            countdown(deadline, now)
        ));
    }
    if let (OrderStatus::Reserved, Some(url)) = (order.status, &order.checkout_url) {
        out.push_str(&format!("Checkout    {url}\n"));
    }
    out.push_str("Lines\n");
    let mut lines = Table::new(&[
        ("QTY", Align::Right),
        ("SKU", Align::Left),
        ("NAME", Align::Left),
        ("UNIT", Align::Right),
        ("AMOUNT", Align::Right),
    ]);
    for line in &order.lines {
        lines.row(vec![
            line.quantity.to_string().into(),
            line.sku.as_str().into(),
            line.name.clone().unwrap_or_default().into(),
            money(line.unit_price, order.currency).into(),
            money(line.amount, order.currency).into(),
        ]);
    }
    for row in lines.render(style).lines() {
        out.push_str(&format!("  {row}\n"));
    }
    out.push_str("Timeline\n");
    for entry in &order.timeline {
        let detail = entry
            .detail
            .as_deref()
            .map(|detail| format!("  {}", style.dim(detail)))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  {}{detail}\n",
            entry.at,
            entry.event.as_str()
        ));
    }
    out
}
