//! Deciding a reservation: all lines or none. Pure, so it can be tested
//! without a database; the handler applies the decision with guarded
//! updates inside one transaction.

use std::collections::HashMap;

use shop_shared::events::{LineItem, PricedLine};
use shop_shared::money::Currency;

use super::store::ProductRow;

/// What the stock service answers to a reservation request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Every line can be reserved, at these prices.
    Accept {
        currency: Currency,
        lines: Vec<PricedLine>,
    },
    /// These skus are missing or have too few units; nothing is reserved.
    Reject { unavailable: Vec<String> },
}

/// Decides on `lines` given the current `products` (by sku).
pub fn decide(lines: &[LineItem], products: &HashMap<String, ProductRow>) -> Reservation {
    let unavailable: Vec<String> = lines
        .iter()
        .filter(|line| {
            products
                .get(&line.sku)
                .is_none_or(|product| line.quantity <= 0 || product.available < line.quantity)
        })
        .map(|line| line.sku.clone())
        .collect();
    if !unavailable.is_empty() {
        return Reservation::Reject { unavailable };
    }
    let priced: Vec<PricedLine> = lines
        .iter()
        .filter_map(|line| {
            products.get(&line.sku).map(|product| PricedLine {
                sku: line.sku.clone(),
                name: product.name.clone(),
                quantity: line.quantity,
                unit_price: product.unit_price,
            })
        })
        .collect();
    let currency = lines
        .first()
        .and_then(|line| products.get(&line.sku))
        .map_or(Currency::EUR, |product| product.currency);
    if priced.iter().any(|line| {
        products
            .get(&line.sku)
            .is_some_and(|product| product.currency != currency)
    }) {
        // One order is paid in one currency; a mixed catalogue cannot sell
        // these products together.
        return Reservation::Reject {
            unavailable: lines.iter().map(|line| line.sku.clone()).collect(),
        };
    }
    Reservation::Accept {
        currency,
        lines: priced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn products(stock: &[(&str, i64)]) -> HashMap<String, ProductRow> {
        stock
            .iter()
            .map(|(sku, available)| {
                (
                    (*sku).to_owned(),
                    ProductRow {
                        sku: (*sku).to_owned(),
                        name: format!("{sku} name"),
                        unit_price: 1_000,
                        currency: Currency::EUR,
                        available: *available,
                        reserved: 0,
                        sold: 0,
                        version: 1,
                    },
                )
            })
            .collect()
    }

    fn line(sku: &str, quantity: i64) -> LineItem {
        LineItem {
            sku: sku.into(),
            quantity,
        }
    }

    #[test]
    fn accepts_when_every_line_has_enough_units_and_prices_them() {
        let decision = decide(
            &[line("A", 2), line("B", 1)],
            &products(&[("A", 2), ("B", 5)]),
        );
        let Reservation::Accept { currency, lines } = decision else {
            panic!("{decision:?}")
        };
        assert_eq!(currency, Currency::EUR);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].unit_price, 1_000);
        assert_eq!(lines[1].name, "B name");
    }

    #[test]
    fn rejects_everything_when_one_line_is_short_and_names_it() {
        let decision = decide(
            &[line("A", 1), line("B", 6)],
            &products(&[("A", 2), ("B", 5)]),
        );
        assert_eq!(
            decision,
            Reservation::Reject {
                unavailable: vec!["B".into()]
            }
        );
    }

    #[test]
    fn unknown_skus_and_non_positive_quantities_are_unavailable() {
        let decision = decide(&[line("Z", 1), line("A", 0)], &products(&[("A", 2)]));
        assert_eq!(
            decision,
            Reservation::Reject {
                unavailable: vec!["Z".into(), "A".into()]
            }
        );
    }
}
