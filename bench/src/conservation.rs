//! The check after a run: for every sku ordered, the units available now
//! plus the units the run's orders hold (RESERVED, or PAID and so sold)
//! equal the units available before. Cancelled orders hold nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use shop_shared::domain::OrderStatus;
use tokio::time::Instant;

use crate::load::Connection;

/// One sku whose units do not add up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub sku: String,
    pub before: i64,
    pub available: i64,
    pub held: i64,
}

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conservation {
    pub ok: bool,
    pub skus: usize,
    /// Units held by the run's orders at the end.
    pub units_held: i64,
    /// Orders of the run still NEW when the check gave up waiting.
    pub unsettled: usize,
    pub violations: Vec<Violation>,
}

/// Units held per sku by `orders`, and how many are still in flight.
pub fn held(orders: &[shop_shared::domain::Order]) -> (HashMap<String, i64>, usize) {
    let mut held: HashMap<String, i64> = HashMap::new();
    let mut unsettled = 0;
    for order in orders {
        match order.status {
            OrderStatus::New => unsettled += 1,
            OrderStatus::Reserved | OrderStatus::Paid => {
                for line in &order.lines {
                    *held.entry(line.sku.clone()).or_default() += line.quantity;
                }
            }
            OrderStatus::Cancelled => {}
        }
    }
    (held, unsettled)
}

/// Compares `before` with what is available now and what `held` holds.
pub fn compare(
    before: &BTreeMap<String, i64>,
    available: &HashMap<String, i64>,
    held: &HashMap<String, i64>,
) -> Vec<Violation> {
    before
        .iter()
        .filter_map(|(sku, &before)| {
            let available = available.get(sku).copied().unwrap_or(0);
            let held = held.get(sku).copied().unwrap_or(0);
            (available + held != before).then(|| Violation {
                sku: sku.clone(),
                before,
                available,
                held,
            })
        })
        .collect()
}

/// Checks conservation, waiting up to `patience` for orders in flight to
/// settle and for stock counts to reach the gateway.
pub async fn check(
    connections: &[Connection],
    before: &BTreeMap<String, i64>,
    patience: Duration,
) -> Result<Conservation, String> {
    let deadline = Instant::now() + patience;
    loop {
        let mut orders = Vec::new();
        for connection in connections {
            let mine = connection
                .client
                .orders()
                .await
                .map_err(|error| format!("listing orders: {error}"))?;
            orders.extend(mine);
        }
        let (held, unsettled) = held(&orders);
        let products = connections[0]
            .client
            .products()
            .await
            .map_err(|error| format!("listing products: {error}"))?;
        let available: HashMap<String, i64> = products
            .into_iter()
            .map(|product| (product.sku, product.available))
            .collect();
        let violations = compare(before, &available, &held);
        let done = unsettled == 0 && violations.is_empty();
        if done || Instant::now() >= deadline {
            return Ok(Conservation {
                ok: done,
                skus: before.len(),
                units_held: held.values().sum(),
                unsettled,
                violations,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_must_add_up_for_every_sku() {
        let before = BTreeMap::from([("A".to_owned(), 10), ("B".to_owned(), 5)]);
        let available = HashMap::from([("A".to_owned(), 7), ("B".to_owned(), 5)]);
        let held = HashMap::from([("A".to_owned(), 3)]);
        assert!(compare(&before, &available, &held).is_empty());

        let oversold = HashMap::from([("A".to_owned(), 6), ("B".to_owned(), 5)]);
        assert_eq!(
            compare(&before, &oversold, &held),
            vec![Violation {
                sku: "A".into(),
                before: 10,
                available: 6,
                held: 3
            }]
        );
    }
}
