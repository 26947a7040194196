//! The check after a run, for every sku the run ordered.
//!
//! With an operator's token (`--operator-token`), the shop's own ledger:
//! `available + reserved + sold + written_off = received` holds, the units
//! sold since the run began are exactly those of the run's PAID orders, and
//! the units reserved now cover the run's RESERVED orders. Orders placed
//! before the run may expire during it and give their units back; that
//! changes none of these.
//!
//! Without one, what a customer can see: the units available now plus the
//! units the run's orders hold (RESERVED, or PAID and so sold) are at least
//! the units available before. Fewer would mean units vanished (an
//! oversell); more are units that came back from orders placed before the
//! run (expired or cancelled during it) or from a restock, and are
//! reported as returned, not as a violation.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use shop_client::Client;
use shop_shared::domain::{OrderStatus, Product, StockLevels};
use tokio::time::Instant;

use crate::load::Connection;

/// What the run saw of one sku when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Before {
    pub available: i64,
    /// With an operator's token.
    pub stock: Option<StockLevels>,
}

impl Before {
    pub fn of(product: &Product) -> Before {
        Before {
            available: product.available,
            stock: product.stock,
        }
    }
}

/// One sku whose units do not add up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub sku: String,
    /// What does not add up, in words with the numbers.
    pub problem: String,
}

/// The outcome of the check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conservation {
    pub ok: bool,
    /// `ledger` (the shop's stock levels, with an operator's token) or
    /// `available` (what customers see).
    pub checked: &'static str,
    pub skus: usize,
    /// Units held by the run's orders at the end.
    pub units_held: i64,
    /// Units that came back from orders placed before the run (or a
    /// restock) while it ran; `available` check only.
    pub units_returned: i64,
    /// Orders of the run still NEW when the check gave up waiting.
    pub unsettled: usize,
    /// A customer of the run placed more orders than the shop lists
    /// ([`LISTED_AT_MOST`]): the run's own orders could not be counted, so
    /// only the ledger's sum was checked (with `--operator-token`), or
    /// nothing.
    pub orders_uncounted: bool,
    pub violations: Vec<Violation>,
}

/// The most orders the gateway lists for one customer, the newest
/// (docs/protocol.md, `list_orders`).
pub const LISTED_AT_MOST: usize = 1000;

/// Units of the run's orders per sku.
#[derive(Debug, Default)]
pub struct Held {
    /// RESERVED.
    pub reserved: HashMap<String, i64>,
    /// PAID.
    pub sold: HashMap<String, i64>,
    /// Still NEW.
    pub unsettled: usize,
    /// Some customer's list was cut at [`LISTED_AT_MOST`]: the counts
    /// above miss orders.
    pub uncounted: bool,
}

impl Held {
    fn of(&self, sku: &str) -> (i64, i64) {
        (
            self.reserved.get(sku).copied().unwrap_or(0),
            self.sold.get(sku).copied().unwrap_or(0),
        )
    }

    fn total(&self) -> i64 {
        self.reserved.values().sum::<i64>() + self.sold.values().sum::<i64>()
    }
}

/// Units held per sku by `orders`, and how many are still in flight.
pub fn held(orders: &[shop_shared::domain::Order]) -> Held {
    let mut held = Held::default();
    for order in orders {
        let into = match order.status {
            OrderStatus::New => {
                held.unsettled += 1;
                continue;
            }
            OrderStatus::Reserved => &mut held.reserved,
            OrderStatus::Paid => &mut held.sold,
            OrderStatus::Cancelled => continue,
        };
        for line in &order.lines {
            *into.entry(line.sku.clone()).or_default() += line.quantity;
        }
    }
    held
}

/// Compares each sku of `before` with `now` (by sku) and the run's `held`
/// units; returns the violations and the units returned.
pub fn compare(
    before: &BTreeMap<String, Before>,
    now: &HashMap<String, Product>,
    held: &Held,
) -> (Vec<Violation>, i64) {
    let mut violations = Vec::new();
    let mut returned = 0;
    for (sku, before) in before {
        let Some(product) = now.get(sku) else {
            violations.push(Violation {
                sku: sku.clone(),
                problem: "the shop no longer lists it".into(),
            });
            continue;
        };
        let (reserved, sold) = held.of(sku);
        let counted = !held.uncounted;
        let mut problem = |text: String| {
            violations.push(Violation {
                sku: sku.clone(),
                problem: text,
            });
        };
        match (before.stock, product.stock) {
            (Some(was), Some(is)) => {
                let total = product.available + is.reserved + is.sold + is.written_off;
                if total != is.received {
                    problem(format!(
                        "available {} + reserved {} + sold {} + written off {} = {total}, not the {} received",
                        product.available, is.reserved, is.sold, is.written_off, is.received
                    ));
                }
                if counted && is.sold - was.sold != sold {
                    problem(format!(
                        "{} units sold during the run, but the run's paid orders bought {sold}",
                        is.sold - was.sold
                    ));
                }
                if counted && is.reserved < reserved {
                    problem(format!(
                        "{} units reserved, fewer than the run's reserved orders hold ({reserved})",
                        is.reserved
                    ));
                }
            }
            // The run's units are what make up the difference: unknown.
            _ if !counted => {}
            _ => {
                let now = product.available + reserved + sold;
                if now < before.available {
                    problem(format!(
                        "{} available before, {} available + {} held now: units vanished",
                        before.available,
                        product.available,
                        reserved + sold
                    ));
                } else {
                    returned += now - before.available;
                }
            }
        }
    }
    (violations, returned)
}

/// Checks conservation, waiting up to `patience` for orders in flight to
/// settle and for stock counts to reach the gateway. `operator` reads the
/// shop's stock levels when given.
///
/// # Errors
///
/// Listing orders or products failed.
pub async fn check(
    connections: &[Connection],
    operator: Option<&Client>,
    before: &BTreeMap<String, Before>,
    patience: Duration,
) -> Result<Conservation, String> {
    let deadline = Instant::now() + patience;
    let reader = operator.unwrap_or(&connections[0].client);
    loop {
        let mut orders = Vec::new();
        let mut uncounted = false;
        for connection in connections {
            let mine = connection
                .client
                .orders()
                .await
                .map_err(|error| format!("listing orders: {error}"))?;
            uncounted |= mine.len() >= LISTED_AT_MOST;
            orders.extend(mine);
        }
        let mut held = held(&orders);
        held.uncounted = uncounted;
        let now: HashMap<String, Product> = reader
            .products()
            .await
            .map_err(|error| format!("listing products: {error}"))?
            .into_iter()
            .map(|product| (product.sku.clone(), product))
            .collect();
        let (violations, returned) = compare(before, &now, &held);
        let done = held.unsettled == 0 && violations.is_empty();
        if done || Instant::now() >= deadline {
            let ledger = before.values().all(|before| before.stock.is_some());
            return Ok(Conservation {
                ok: done,
                checked: if ledger { "ledger" } else { "available" },
                skus: before.len(),
                units_held: held.total(),
                units_returned: returned,
                unsettled: held.unsettled,
                orders_uncounted: held.uncounted,
                violations,
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(sku: &str, available: i64, stock: Option<StockLevels>) -> Product {
        Product {
            sku: sku.into(),
            name: sku.into(),
            description: String::new(),
            category: String::new(),
            image_url: None,
            unit_price: 100,
            currency: shop_shared::money::Currency::EUR,
            available,
            listed: true,
            stock,
            version: 1,
        }
    }

    fn levels(reserved: i64, sold: i64, received: i64) -> Option<StockLevels> {
        Some(StockLevels {
            reserved,
            sold,
            written_off: 0,
            received,
        })
    }

    fn held(reserved: &[(&str, i64)], sold: &[(&str, i64)]) -> Held {
        let map = |pairs: &[(&str, i64)]| {
            pairs
                .iter()
                .map(|(sku, units)| ((*sku).to_owned(), *units))
                .collect()
        };
        Held {
            reserved: map(reserved),
            sold: map(sold),
            unsettled: 0,
            uncounted: false,
        }
    }

    #[test]
    fn what_customers_see_may_grow_from_earlier_orders_but_never_shrink() {
        let before = BTreeMap::from([(
            "A".to_owned(),
            Before {
                available: 10,
                stock: None,
            },
        )]);
        let run = held(&[("A", 3)], &[]);
        let now = |available| HashMap::from([("A".to_owned(), product("A", available, None))]);
        assert_eq!(compare(&before, &now(7), &run), (vec![], 0));
        // An order from before the run expired: its 2 units came back.
        assert_eq!(compare(&before, &now(9), &run), (vec![], 2));
        let (oversold, _) = compare(&before, &now(6), &run);
        assert_eq!(oversold.len(), 1);
        assert!(
            oversold[0].problem.contains("units vanished"),
            "{oversold:?}"
        );
    }

    #[test]
    fn the_ledger_must_add_up_and_sales_match_the_runs_paid_orders() {
        // 2 units reserved by an order from before the run.
        let before = BTreeMap::from([(
            "A".to_owned(),
            Before {
                available: 8,
                stock: levels(2, 0, 10),
            },
        )]);
        let run = held(&[("A", 3)], &[("A", 1)]);
        // The earlier order expired (its 2 units came back); the run holds 3
        // and bought 1.
        let now =
            |available, stock| HashMap::from([("A".to_owned(), product("A", available, stock))]);
        assert_eq!(
            compare(&before, &now(6, levels(3, 1, 10)), &run),
            (vec![], 0)
        );
        let (lost, _) = compare(&before, &now(5, levels(3, 1, 10)), &run);
        assert!(lost[0].problem.contains("not the 10 received"), "{lost:?}");
        let (sold_twice, _) = compare(&before, &now(5, levels(3, 2, 10)), &run);
        assert!(
            sold_twice[0]
                .problem
                .contains("2 units sold during the run"),
            "{sold_twice:?}"
        );
    }

    #[test]
    fn uncounted_orders_leave_only_the_ledgers_sum_to_check() {
        // A customer's list was cut at the shop's limit: the run's units
        // are unknown, so 7 units sold by orders the run could not list
        // are no violation, but a ledger that does not add up still is.
        let mut run = held(&[("A", 3)], &[]);
        run.uncounted = true;
        let before = BTreeMap::from([(
            "A".to_owned(),
            Before {
                available: 10,
                stock: levels(0, 0, 10),
            },
        )]);
        let now =
            |available, stock| HashMap::from([("A".to_owned(), product("A", available, stock))]);
        assert_eq!(
            compare(&before, &now(0, levels(3, 7, 10)), &run),
            (vec![], 0)
        );
        let (lost, _) = compare(&before, &now(0, levels(3, 6, 10)), &run);
        assert!(lost[0].problem.contains("not the 10 received"), "{lost:?}");
        let seen = BTreeMap::from([(
            "A".to_owned(),
            Before {
                available: 10,
                stock: None,
            },
        )]);
        let customers =
            |available| HashMap::from([("A".to_owned(), product("A", available, None))]);
        assert_eq!(compare(&seen, &customers(0), &run), (vec![], 0));
    }
}
