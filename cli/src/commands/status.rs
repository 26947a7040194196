//! `shop status`: one order in full.

use shop_client::words::{self, Clock};
use shop_shared::domain::{Order, OrderStatus};
use shop_shared::time::Timestamp;

use super::{Context, resolve};
use crate::error::CliError;
use crate::output::{Align, Style, Table, countdown, money, safe};

pub(super) async fn status(context: &Context, text: &str) -> Result<(), CliError> {
    let client = context.connect().await?;
    let order = resolve(context, &client, text).await?;
    if context.global.json {
        context.json(&order)?;
        return Ok(());
    }
    crate::output::write(format_args!(
        "{}",
        describe(&order, context.style, context.clock, Timestamp::now())
    ))?;
    Ok(())
}

/// One order in full, for people, with times in `clock`'s zone.
pub fn describe(order: &Order, style: Style, clock: Clock, now: Timestamp) -> String {
    let mut out = String::new();
    out.push_str(&format!("{} {}\n", style.bold("Order"), order.id));
    out.push_str(&format!("Status      {}\n", style.status(order).shown()));
    out.push_str(&format!(
        "Total       {}\n",
        money(order.total, order.currency)
    ));
    if let (OrderStatus::Reserved, Some(deadline)) = (order.status, order.pay_until) {
        out.push_str(&format!(
            "Pay within  {} (until {})\n",
            countdown(deadline, now),
            clock.when(deadline, now, false)
        ));
    }
    if let (OrderStatus::Reserved, Some(url)) = (order.status, &order.checkout_url) {
        out.push_str(&format!("Checkout    {}\n", safe(url)));
    }
    if let Some(wait) = order.provider_wait() {
        out.push_str(&format!("Checkout    {}\n", safe(&wait)));
    }
    if order.refunded {
        out.push_str("Refund      refunded\n");
    } else if let Some(refund) = &order.refund {
        out.push_str(&format!("Refund      {}\n", safe(&refund.describe())));
    }
    out.push_str("Lines\n");
    let mut lines = Table::new(&[
        ("QTY", Align::Right),
        ("SKU", Align::Left),
        ("NAME", Align::Left),
        ("UNIT", Align::Right),
        ("AMOUNT", Align::Right),
    ])
    .eliding(2);
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
            .map(|detail| format!("  {}", style.dim(&words::detail(detail, clock, now))))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {}  {}{detail}\n",
            clock.when(entry.at, now, true),
            words::event(entry.event)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use shop_shared::domain::RefundState;

    use super::*;
    use crate::output::status_text;

    fn order(status: &str, reason: Option<&str>) -> Order {
        serde_json::from_value(serde_json::json!({
            "id": "0b5e6f1a-7c2d-5e3f-9a4b-6c7d8e9f0a1b", "status": status, "cancel_reason": reason,
            "lines": [], "currency": "EUR", "total": 450000, "pay_until": null,
            "checkout_url": null, "refunded": false,
            "created_at": "2026-11-24T10:00:00.000Z", "updated_at": "2026-11-24T10:00:00.000Z",
            "version": 3, "timeline": []
        }))
        .expect("an order")
    }

    #[test]
    fn an_order_waiting_for_the_provider_says_so_instead_of_a_checkout() {
        let mut waiting = order("RESERVED", None);
        waiting.checkout_delay = Some("payment provider unavailable: HTTP 503".into());
        assert_eq!(status_text(&waiting), "RESERVED (waiting for provider)");
        let text = describe(&waiting, Style::plain(), Clock::fixed(0), Timestamp::now());
        assert!(
            text.contains(
                "Checkout    waiting for the payment provider: payment provider unavailable: HTTP 503\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_cancelled_order_says_where_its_refund_stands() {
        let mut pending = order("CANCELLED", Some("NOT_PAID"));
        pending.refund = Some(RefundState::Pending {
            reason: Some("charge disputed".into()),
        });
        assert_eq!(status_text(&pending), "CANCELLED (unpaid, refund pending)");
        let text = describe(&pending, Style::plain(), Clock::fixed(0), Timestamp::now());
        assert!(
            text.contains("Refund      refund pending (charge disputed; retrying)\n"),
            "{text}"
        );

        let mut failed = pending.clone();
        failed.refund = Some(RefundState::Failed {
            reason: "charge disputed".into(),
        });
        assert_eq!(status_text(&failed), "CANCELLED (unpaid, refund failed)");
        let text = describe(&failed, Style::plain(), Clock::fixed(0), Timestamp::now());
        assert!(
            text.contains("Refund      refund failed: charge disputed\n"),
            "{text}"
        );

        let mut refunded = pending;
        refunded.refund = None;
        refunded.refunded = true;
        assert_eq!(status_text(&refunded), "CANCELLED (unpaid, refunded)");
    }
}
