//! What a customer may ask for, parsed once at the edge: a [`Sku`], a
//! [`Quantity`] and the [`OrderLines`] of one order.
//!
//! The gateway, the CLI and the TUI's cart all go through these parsers, so
//! the limits ([`MAX_SKU_LEN`], [`MAX_QUANTITY`], [`MAX_LINES`]) and the
//! rule "each sku on one line" are written once. A value of these types is
//! valid by construction; past the edge nothing checks it again.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use super::{MAX_LINES, MAX_QUANTITY, MAX_SKU_LEN, is_valid_sku};

/// A sku of the right shape: 1 to [`MAX_SKU_LEN`] ASCII letters, digits,
/// `-`, `_` or `.`. Whether the shop sells it is another question
/// ([`OrderLines::parse_known`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sku(String);

impl Sku {
    /// Reads `text` as a sku, as it is: no trimming, no change of case.
    ///
    /// # Errors
    ///
    /// [`SkuError`] when `text` is empty, longer than [`MAX_SKU_LEN`], or
    /// holds anything but ASCII letters, digits, `-`, `_` and `.`.
    pub fn parse(text: &str) -> Result<Sku, SkuError> {
        if is_valid_sku(text) {
            Ok(Sku(text.to_owned()))
        } else {
            Err(SkuError {
                text: text.chars().take(MAX_SKU_LEN).collect(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for Sku {
    type Err = SkuError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Sku::parse(text)
    }
}

impl AsRef<str> for Sku {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Text that is not a sku.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a sku: a sku is 1 to {MAX_SKU_LEN} letters, digits, '-', '_' or '.'")]
pub struct SkuError {
    /// The refused text, cut to its first [`MAX_SKU_LEN`] characters so
    /// that a message never echoes a megabyte back.
    text: String,
}

impl SkuError {
    /// The refused text, at most its first [`MAX_SKU_LEN`] characters.
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// How many units of one sku a line asks for: 1 to [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity(i64);

impl Quantity {
    /// # Errors
    ///
    /// [`QuantityError`] when `units` is below 1 or above [`MAX_QUANTITY`].
    pub fn new(units: i64) -> Result<Quantity, QuantityError> {
        if (1..=MAX_QUANTITY).contains(&units) {
            Ok(Quantity(units))
        } else {
            Err(QuantityError(units))
        }
    }

    /// The number of units, 1 to [`MAX_QUANTITY`].
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A number of units that a line may not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a quantity must be between 1 and {MAX_QUANTITY}, not {0}")]
pub struct QuantityError(i64);

impl QuantityError {
    /// The refused number.
    pub fn units(self) -> i64 {
        self.0
    }
}

/// Why a list of (sku, quantity) lines is not an order.
///
/// The messages are the ones the gateway sends its clients. A sku of the
/// wrong shape reads like an unknown one: the shop sells no such thing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderLinesError {
    #[error("an order needs at least one line")]
    Empty,
    /// How many lines there were.
    #[error("an order has at most {MAX_LINES} lines, not {0}")]
    TooMany(usize),
    #[error("unknown sku {:?}", .0.text())]
    InvalidSku(#[source] SkuError),
    /// A well-formed sku the caller of [`OrderLines::parse_known`] does not
    /// know.
    #[error("unknown sku {:?}", .0.as_str())]
    UnknownSku(Sku),
    #[error("sku {0} appears on two lines; put the whole quantity on one line")]
    DuplicateSku(Sku),
    #[error("quantity of {sku} must be between 1 and {MAX_QUANTITY}, not {quantity}")]
    InvalidQuantity { sku: Sku, quantity: i64 },
}

/// The lines of one order: 1 to [`MAX_LINES`] of them, each with its own
/// sku and a quantity from 1 to [`MAX_QUANTITY`], in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLines(Vec<(Sku, Quantity)>);

impl OrderLines {
    /// Reads (sku, quantity) lines as an order.
    ///
    /// Anything that turns into a `(&str, i64)` pair will do: such pairs
    /// themselves, or references to the lines that travel on the wire, so
    /// both `OrderLines::parse(&place_order.lines)` (a
    /// `&[shop_shared::events::LineItem]`) and
    /// `OrderLines::parse(&request_lines)` (a
    /// `&[shop_shared::protocol::OrderLineRequest]`) work.
    ///
    /// ```
    /// use shop_shared::domain::OrderLines;
    ///
    /// let lines = OrderLines::parse([("SKU-001", 2), ("SKU-002", 1)]).expect("an order");
    /// assert_eq!(lines.iter().count(), 2);
    /// assert!(OrderLines::parse([("SKU-001", 2), ("SKU-001", 1)]).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// The first rule broken, in this order: no lines
    /// ([`OrderLinesError::Empty`]); more than [`MAX_LINES`]
    /// ([`OrderLinesError::TooMany`]); then line by line, in the order
    /// given, a sku of the wrong shape ([`OrderLinesError::InvalidSku`]), a
    /// sku already on an earlier line ([`OrderLinesError::DuplicateSku`]),
    /// and a quantity outside 1 to [`MAX_QUANTITY`]
    /// ([`OrderLinesError::InvalidQuantity`]).
    pub fn parse<'a, L>(lines: impl IntoIterator<Item = L>) -> Result<OrderLines, OrderLinesError>
    where
        L: Into<(&'a str, i64)>,
    {
        OrderLines::parse_known(lines, |_| true)
    }

    /// Like [`OrderLines::parse`], and every sku must also be one `known`
    /// accepts (the gateway asks its catalogue).
    ///
    /// # Errors
    ///
    /// Those of [`OrderLines::parse`], and [`OrderLinesError::UnknownSku`]
    /// for a well-formed sku that `known` refuses. It is checked right
    /// after the sku's shape, so a line with an unknown sku and a bad
    /// quantity is reported as an unknown sku.
    pub fn parse_known<'a, L>(
        lines: impl IntoIterator<Item = L>,
        known: impl Fn(&Sku) -> bool,
    ) -> Result<OrderLines, OrderLinesError>
    where
        L: Into<(&'a str, i64)>,
    {
        let lines: Vec<(&str, i64)> = lines.into_iter().map(Into::into).collect();
        if lines.is_empty() {
            return Err(OrderLinesError::Empty);
        }
        if lines.len() > MAX_LINES {
            return Err(OrderLinesError::TooMany(lines.len()));
        }
        let mut seen = HashSet::with_capacity(lines.len());
        let mut parsed = Vec::with_capacity(lines.len());
        for (text, units) in lines {
            let sku = Sku::parse(text).map_err(OrderLinesError::InvalidSku)?;
            if !known(&sku) {
                return Err(OrderLinesError::UnknownSku(sku));
            }
            if !seen.insert(text) {
                return Err(OrderLinesError::DuplicateSku(sku));
            }
            let quantity = Quantity::new(units).map_err(|_| OrderLinesError::InvalidQuantity {
                sku: sku.clone(),
                quantity: units,
            })?;
            parsed.push((sku, quantity));
        }
        Ok(OrderLines(parsed))
    }

    /// The lines, in the order given.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&Sku, Quantity)> {
        self.0.iter().map(|(sku, quantity)| (sku, *quantity))
    }
}

impl IntoIterator for OrderLines {
    type Item = (Sku, Quantity);
    type IntoIter = std::vec::IntoIter<(Sku, Quantity)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sku(text: &str) -> Sku {
        Sku::parse(text).expect("a valid sku")
    }

    fn pairs(lines: &OrderLines) -> Vec<(&str, i64)> {
        lines
            .iter()
            .map(|(sku, quantity)| (sku.as_str(), quantity.get()))
            .collect()
    }

    #[test]
    fn given_letters_digits_dashes_underscores_and_dots_when_parsed_then_it_is_a_sku_as_written() {
        for text in ["SKU-001", "a.b_c", "x", "sku-001", &"x".repeat(MAX_SKU_LEN)] {
            let parsed = Sku::parse(text).expect(text);
            assert_eq!(parsed.as_str(), text);
            assert_eq!(parsed.to_string(), text);
            assert_eq!(text.parse::<Sku>().as_ref(), Ok(&parsed));
        }
    }

    #[test]
    fn given_empty_text_when_parsed_then_it_is_not_a_sku() {
        let error = Sku::parse("").expect_err("empty");
        assert_eq!(
            error.to_string(),
            "\"\" is not a sku: a sku is 1 to 64 letters, digits, '-', '_' or '.'"
        );
    }

    #[test]
    fn given_more_than_the_longest_sku_when_parsed_then_it_is_not_a_sku() {
        assert!(Sku::parse(&"x".repeat(MAX_SKU_LEN + 1)).is_err());
    }

    #[test]
    fn given_spaces_other_punctuation_or_non_ascii_when_parsed_then_it_is_not_a_sku() {
        for text in [
            "SKU 001",
            " SKU-001",
            "SKU/001",
            "SKU:2",
            "'; DROP TABLE",
            "SKÜ",
        ] {
            let error = Sku::parse(text).expect_err(text);
            assert_eq!(error.text(), text);
        }
    }

    #[test]
    fn given_a_huge_bad_sku_when_refused_then_the_error_keeps_only_its_first_characters() {
        let error = Sku::parse(&"é".repeat(10_000)).expect_err("too long");
        assert_eq!(error.text(), "é".repeat(MAX_SKU_LEN));
    }

    #[test]
    fn given_one_to_the_most_units_when_made_a_quantity_then_it_keeps_the_number() {
        assert_eq!(Quantity::new(1).map(Quantity::get), Ok(1));
        assert_eq!(Quantity::new(MAX_QUANTITY).map(Quantity::get), Ok(1_000));
        assert_eq!(Quantity::new(7).map(|q| q.to_string()), Ok("7".into()));
    }

    #[test]
    fn given_zero_negative_or_too_many_units_when_made_a_quantity_then_it_is_refused() {
        for units in [0, -1, MAX_QUANTITY + 1, i64::MIN, i64::MAX] {
            let error = Quantity::new(units).expect_err("out of range");
            assert_eq!(error.units(), units);
        }
        assert_eq!(
            Quantity::new(0).map_err(|error| error.to_string()),
            Err("a quantity must be between 1 and 1000, not 0".into())
        );
    }

    #[test]
    fn given_valid_lines_when_parsed_then_they_keep_their_order_and_quantities() {
        let lines = OrderLines::parse([("SKU-002", 3), ("SKU-001", 1_000)]).expect("valid");
        assert_eq!(pairs(&lines), vec![("SKU-002", 3), ("SKU-001", 1_000)]);
        let owned: Vec<(Sku, Quantity)> = lines.into_iter().collect();
        assert_eq!(owned[0].0, sku("SKU-002"));
    }

    #[test]
    fn given_no_lines_when_parsed_then_the_order_is_empty() {
        let none: [(&str, i64); 0] = [];
        let error = OrderLines::parse(none).expect_err("empty");
        assert_eq!(error, OrderLinesError::Empty);
        assert_eq!(error.to_string(), "an order needs at least one line");
    }

    #[test]
    fn given_the_most_lines_when_parsed_then_they_are_an_order_and_one_more_is_too_many() {
        let names: Vec<String> = (0..=MAX_LINES).map(|n| format!("SKU-{n:03}")).collect();
        let lines: Vec<(&str, i64)> = names.iter().map(|name| (name.as_str(), 1)).collect();
        assert!(OrderLines::parse(lines[..MAX_LINES].iter().copied()).is_ok());
        let error = OrderLines::parse(lines.iter().copied()).expect_err("21 lines");
        assert_eq!(error, OrderLinesError::TooMany(21));
        assert_eq!(error.to_string(), "an order has at most 20 lines, not 21");
    }

    #[test]
    fn given_too_many_lines_with_a_bad_one_when_parsed_then_the_count_is_reported() {
        let mut lines = vec![("SKU 1", 0)];
        let names: Vec<String> = (0..MAX_LINES).map(|n| format!("SKU-{n:03}")).collect();
        lines.extend(names.iter().map(|name| (name.as_str(), 1)));
        assert_eq!(
            OrderLines::parse(lines),
            Err(OrderLinesError::TooMany(MAX_LINES + 1))
        );
    }

    #[test]
    fn given_a_sku_of_the_wrong_shape_when_parsed_then_it_reads_as_an_unknown_sku() {
        let error = OrderLines::parse([("SKU-001", 1), ("SKU 002", 1)]).expect_err("bad sku");
        assert!(matches!(&error, OrderLinesError::InvalidSku(bad) if bad.text() == "SKU 002"));
        assert_eq!(error.to_string(), "unknown sku \"SKU 002\"");
        let long = "x".repeat(100);
        let error = OrderLines::parse([(long.as_str(), 1)]).expect_err("too long");
        assert_eq!(
            error.to_string(),
            format!("unknown sku {:?}", "x".repeat(MAX_SKU_LEN))
        );
    }

    #[test]
    fn given_a_sku_on_two_lines_when_parsed_then_it_is_a_duplicate() {
        let error = OrderLines::parse([("SKU-001", 1), ("SKU-002", 1), ("SKU-001", 2)])
            .expect_err("duplicate");
        assert_eq!(error, OrderLinesError::DuplicateSku(sku("SKU-001")));
        assert_eq!(
            error.to_string(),
            "sku SKU-001 appears on two lines; put the whole quantity on one line"
        );
    }

    #[test]
    fn given_skus_that_differ_in_case_when_parsed_then_they_are_different_lines() {
        let lines = OrderLines::parse([("sku-001", 1), ("SKU-001", 1)]).expect("two skus");
        assert_eq!(lines.iter().len(), 2);
    }

    #[test]
    fn given_a_quantity_out_of_range_when_parsed_then_the_line_says_which_sku() {
        for units in [0, -2, MAX_QUANTITY + 1, i64::MAX] {
            let error = OrderLines::parse([("SKU-001", units)]).expect_err("bad quantity");
            assert_eq!(
                error,
                OrderLinesError::InvalidQuantity {
                    sku: sku("SKU-001"),
                    quantity: units
                }
            );
        }
        assert_eq!(
            OrderLines::parse([("SKU-001", 1_001)]).map_err(|error| error.to_string()),
            Err("quantity of SKU-001 must be between 1 and 1000, not 1001".into())
        );
    }

    #[test]
    fn given_several_broken_lines_when_parsed_then_the_first_broken_line_is_reported() {
        let error = OrderLines::parse([("SKU-001", 0), ("SKU 2", 1)]).expect_err("two bad lines");
        assert!(matches!(error, OrderLinesError::InvalidQuantity { .. }));
        let error = OrderLines::parse([("SKU-001", 1), ("SKU-001", 0)]).expect_err("dup first");
        assert!(matches!(error, OrderLinesError::DuplicateSku(_)));
    }

    #[test]
    fn given_a_sku_the_catalogue_lacks_when_parsed_known_then_it_is_unknown_before_its_quantity() {
        let known = |sku: &Sku| sku.as_str().starts_with("SKU-");
        let error = OrderLines::parse_known([("NOPE", 0)], known).expect_err("unknown");
        assert_eq!(error, OrderLinesError::UnknownSku(sku("NOPE")));
        assert_eq!(error.to_string(), "unknown sku \"NOPE\"");
        let error = OrderLines::parse_known([("SKU-001", 0), ("NOPE", 1)], known)
            .expect_err("bad quantity first");
        assert!(matches!(error, OrderLinesError::InvalidQuantity { .. }));
        assert!(OrderLines::parse_known([("SKU-001", 1)], known).is_ok());
    }

    #[test]
    fn given_the_lines_of_a_place_order_command_when_parsed_then_they_become_line_items_again() {
        use crate::events::LineItem;
        let items: Vec<LineItem> = [("SKU-001", 2), ("SKU-002", 1)]
            .into_iter()
            .map(|(sku, quantity)| LineItem {
                sku: sku.into(),
                quantity,
            })
            .collect();
        let lines = OrderLines::parse(&items).expect("valid");
        assert_eq!(Vec::<LineItem>::from(lines), items);
    }
}
