//! `shop order`: place an order from `SKU[:QTY]` arguments and wait for its
//! checkout page.

use std::collections::BTreeMap;
use std::num::IntErrorKind;

use shop_client::ClientError;
use shop_shared::domain::{MAX_QUANTITY, OrderLines, OrderLinesError, OrderStatus};
use shop_shared::protocol::ErrorCode;
use shop_shared::time::Timestamp;
use uuid::Uuid;

use super::{Context, cancelled};
use crate::error::{CliError, Exit};
use crate::output::{countdown, duration, money, out, safe};

/// Reads `SKU[:QTY]` arguments as the lines of an order; the same sku twice
/// adds up.
///
/// # Errors
///
/// A usage error for an argument that is not `SKU[:QTY]` with a whole
/// quantity of at least 1, and, with the gateway's message, for lines that
/// are not an order ([`OrderLines::parse`]): a sku of the wrong shape, more
/// than `MAX_LINES` skus, more than `MAX_QUANTITY` of one sku.
pub fn parse_lines(arguments: &[String]) -> Result<OrderLines, CliError> {
    let mut lines: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for (position, argument) in arguments.iter().enumerate() {
        let (sku, quantity) = match argument.split_once(':') {
            None => (argument.as_str(), 1),
            Some((sku, quantity)) => {
                let quantity = match quantity.parse::<i64>() {
                    Ok(n) if n > 0 => n,
                    Err(error) if *error.kind() == IntErrorKind::PosOverflow => {
                        return Err(CliError::usage(format!(
                            "`{argument}`: the quantity must be between 1 and {MAX_QUANTITY}"
                        )));
                    }
                    _ => {
                        return Err(CliError::usage(format!(
                            "`{argument}`: the quantity after ':' must be a whole number of at least 1, as in SKU-001:2"
                        )));
                    }
                };
                (sku, quantity)
            }
        };
        if sku.is_empty() {
            return Err(CliError::usage(format!(
                "`{argument}`: name a sku, as in SKU-001:2"
            )));
        }
        let entry = lines.entry(sku.to_owned()).or_insert((position, 0));
        entry.1 = entry.1.saturating_add(quantity);
    }
    let mut ordered: Vec<(usize, String, i64)> = lines
        .into_iter()
        .map(|(sku, (position, quantity))| (position, sku, quantity))
        .collect();
    ordered.sort();
    OrderLines::parse(
        ordered
            .iter()
            .map(|(_, sku, quantity)| (sku.as_str(), *quantity)),
    )
    .map_err(|error| match error {
        OrderLinesError::InvalidSku(_) | OrderLinesError::UnknownSku(_) => unknown_sku(error),
        other => CliError::usage(other.to_string()),
    })
}

/// The shop sells no such sku.
fn unknown_sku(message: impl std::fmt::Display) -> CliError {
    CliError::usage(format!("{message}; `shop products` lists what is for sale"))
}

pub(super) async fn order(
    context: &Context,
    arguments: &[String],
    key: Option<String>,
) -> Result<(), CliError> {
    let lines = parse_lines(arguments)?;
    let client = context.connect().await?;
    let key = key.unwrap_or_else(|| Uuid::new_v4().to_string());
    let borrowed: Vec<(&str, i64)> = lines
        .iter()
        .map(|(sku, quantity)| (sku.as_str(), quantity.get()))
        .collect();
    let placed = client
        .place_order(&borrowed, &key)
        .await
        .map_err(|error| match error {
            ClientError::Server {
                code: ErrorCode::UnknownSku,
                message,
            } => unknown_sku(message),
            other => context.fail(other),
        })?;
    let order = match client.wait_for_checkout(placed.id, context.timeout()).await {
        Ok(order) => order,
        Err(ClientError::Timeout(after)) => {
            let latest = client.order(&placed.id.to_string()).await.ok();
            let state = match latest.as_ref().and_then(|order| order.provider_wait()) {
                Some(wait) => format!("is reserved but has no checkout page yet ({wait})"),
                None => "is not reserved".to_owned(),
            };
            return Err(CliError::new(
                Exit::Timeout,
                format!(
                    "order {} was placed but {state} after {}; follow it with `shop status {}`",
                    placed.short_id(),
                    duration(after),
                    placed.short_id()
                ),
            ));
        }
        Err(error) => return Err(context.fail(error)),
    };
    if context.global.json {
        context.json(&order)?;
    }
    if order.status == OrderStatus::Cancelled {
        return Err(cancelled(&order));
    }
    if !context.global.json {
        let items: Vec<String> = order
            .lines
            .iter()
            .map(|line| {
                format!(
                    "{} × {}",
                    line.quantity,
                    safe(line.name.as_deref().unwrap_or(&line.sku))
                )
            })
            .collect();
        let now = Timestamp::now();
        out!(
            "Order {} {}: {}",
            context.style.bold(&order.short_id()),
            order.status,
            items.join(", ")
        )?;
        out!(
            "Total {}, pay within {}",
            money(order.total, order.currency),
            order.pay_until.map_or("-".into(), |deadline| format!(
                "{} (until {})",
                countdown(deadline, now),
                context.clock.when(deadline, now, false)
            ))
        )?;
        out!(
            "{}",
            safe(order.checkout_url.as_deref().unwrap_or_default())
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|item| (*item).to_owned()).collect()
    }

    #[test]
    fn lines_take_optional_quantities_and_add_up_repeats() {
        let lines = parse_lines(&args(&["SKU-002", "SKU-001:2", "SKU-002:3"])).expect("valid");
        let lines: Vec<(String, i64)> = lines
            .iter()
            .map(|(sku, quantity)| (sku.to_string(), quantity.get()))
            .collect();
        assert_eq!(
            lines,
            vec![("SKU-002".to_owned(), 4), ("SKU-001".to_owned(), 2)]
        );
    }

    #[test]
    fn lines_the_shop_would_refuse_are_usage_errors_with_the_gateways_message() {
        let message = |list: &[&str]| {
            let error = parse_lines(&args(list)).expect_err("refused");
            assert_eq!(error.exit, Exit::Usage, "{list:?}");
            error.message
        };
        assert_eq!(
            message(&["SKU 001"]),
            "unknown sku \"SKU 001\"; `shop products` lists what is for sale"
        );
        assert_eq!(
            message(&["SKU-001:600", "SKU-001:401"]),
            "quantity of SKU-001 must be between 1 and 1000, not 1001"
        );
        // Beyond what a 64-bit quantity holds, the same limit is named.
        assert_eq!(
            message(&["SKU-001:99999999999999999999"]),
            "`SKU-001:99999999999999999999`: the quantity must be between 1 and 1000"
        );
        let many: Vec<String> = (0..21).map(|n| format!("SKU-{n:03}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(message(&many), "an order has at most 20 lines, not 21");
    }

    #[test]
    fn malformed_lines_are_usage_errors() {
        for bad in ["SKU-001:", "SKU-001:0", "SKU-001:-1", "SKU-001:two", ":3"] {
            let error = parse_lines(&args(&[bad])).expect_err(bad);
            assert_eq!(error.exit, Exit::Usage, "{bad}");
        }
    }
}
