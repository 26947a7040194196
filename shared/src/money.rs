//! Money as integer minor units plus an ISO 4217 currency code. Never floats.
//!
//! Amounts travel as `i64` minor units (cents for EUR); this module parses
//! decimal strings such as `"4500.00"` exactly and formats amounts for people
//! (`4,500.00 EUR`). [`Money`] keeps an amount with its currency, so the two
//! cannot be shown apart.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a currency code or an amount could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("`{0}` is not a currency code: expected three letters such as EUR")]
    BadCurrency(String),
    #[error(
        "`{text}` is not an amount in {currency}: expected digits with at most {decimals} decimals, such as {example}"
    )]
    BadAmount {
        text: String,
        currency: Currency,
        decimals: u32,
        example: &'static str,
    },
    #[error("`{0}` is too large an amount")]
    Overflow(String),
}

/// An ISO 4217 currency code, always upper case.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");

    /// Reads a three-letter code, in either case.
    ///
    /// # Errors
    ///
    /// [`MoneyError::BadCurrency`] unless `code` is three ASCII letters.
    pub fn new(code: &str) -> Result<Self, MoneyError> {
        let bytes = code.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_alphabetic) {
            return Err(MoneyError::BadCurrency(code.to_owned()));
        }
        let mut upper = [0u8; 3];
        for (slot, byte) in upper.iter_mut().zip(bytes) {
            *slot = byte.to_ascii_uppercase();
        }
        Ok(Currency(upper))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored (see `new`), so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// How many decimal digits one major unit has (2 for EUR, 0 for JPY),
    /// following the list Stripe uses for zero- and three-decimal currencies.
    pub fn decimals(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "JPY" | "KMF" | "KRW" | "MGA" | "PYG" | "RWF"
            | "UGX" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "JOD" | "KWD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }

    /// Parses a decimal amount such as `"4500.00"` or `"4500"` into minor
    /// units, exactly. More decimals than the currency has is an error, not
    /// a rounding.
    ///
    /// # Errors
    ///
    /// [`MoneyError::BadAmount`] for anything but digits with at most the
    /// currency's decimals, [`MoneyError::Overflow`] beyond `i64` minor units.
    pub fn parse_amount(&self, text: &str) -> Result<i64, MoneyError> {
        let decimals = self.decimals();
        let bad = || MoneyError::BadAmount {
            text: text.to_owned(),
            currency: *self,
            decimals,
            example: match decimals {
                0 => "1500",
                3 => "1500.000",
                _ => "1500.00",
            },
        };
        let trimmed = text.trim();
        let (whole, fraction) = match trimmed.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (trimmed, ""),
        };
        let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(fraction) {
            return Err(bad());
        }
        if fraction.len() > decimals as usize || (trimmed.contains('.') && fraction.is_empty()) {
            return Err(bad());
        }
        let overflow = || MoneyError::Overflow(text.to_owned());
        let whole: i64 = whole.parse().map_err(|_| overflow())?;
        let mut minor = whole
            .checked_mul(10_i64.pow(decimals))
            .ok_or_else(overflow)?;
        if !fraction.is_empty() {
            let scale = 10_i64.pow(decimals - fraction.len() as u32);
            let fraction: i64 = fraction.parse().map_err(|_| bad())?;
            minor = minor.checked_add(fraction * scale).ok_or_else(overflow)?;
        }
        Ok(minor)
    }

    /// Formats `minor` (minor units) for people: `4,500.00 EUR`; the same
    /// as [`Money`]'s `Display`.
    pub fn format(&self, minor: i64) -> String {
        Money::new(minor, *self).to_string()
    }

    /// Formats `minor` (minor units) without the code: `4,500.00`.
    pub fn format_number(&self, minor: i64) -> String {
        let decimals = self.decimals();
        let scale = 10_u64.pow(decimals);
        let magnitude = minor.unsigned_abs();
        let (whole, fraction) = (magnitude / scale, magnitude % scale);
        let whole = whole.to_string();
        let mut grouped = String::with_capacity(whole.len() + whole.len() / 3 + 8);
        if minor < 0 {
            grouped.push('-');
        }
        for (index, digit) in whole.chars().enumerate() {
            if index > 0 && (whole.len() - index) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if decimals > 0 {
            grouped.push('.');
            grouped.push_str(&format!("{fraction:0width$}", width = decimals as usize));
        }
        grouped
    }
}

impl std::str::FromStr for Currency {
    type Err = MoneyError;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::new(code)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(code: String) -> Result<Self, Self::Error> {
        Currency::new(&code)
    }
}

impl From<Currency> for String {
    fn from(currency: Currency) -> Self {
        currency.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount of money: integer minor units of one currency.
///
/// Shown to people as `4,500.00 EUR`. It has no serde form: events and the
/// protocol carry the amount and the currency as separate fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    /// Minor units of `currency` (cents for EUR); negative for a refund.
    minor: i64,
    currency: Currency,
}

impl Money {
    /// `minor` minor units of `currency`.
    pub const fn new(minor: i64, currency: Currency) -> Self {
        Money { minor, currency }
    }

    /// The amount in minor units.
    pub const fn minor(self) -> i64 {
        self.minor
    }

    pub const fn currency(self) -> Currency {
        self.currency
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            self.currency.format_number(self.minor),
            self.currency
        )
    }
}

/// The amount of one order line: unit price × quantity, or `None` when it
/// does not fit in `i64` minor units.
pub fn line_amount(unit_price: i64, quantity: u32) -> Option<i64> {
    unit_price.checked_mul(i64::from(quantity))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_amounts_exactly() {
        let eur = Currency::EUR;
        assert_eq!(eur.parse_amount("4500.00"), Ok(450_000));
        assert_eq!(eur.parse_amount("4500"), Ok(450_000));
        assert_eq!(eur.parse_amount("0.1"), Ok(10));
        assert_eq!(eur.parse_amount(" 19.99 "), Ok(1_999));
        let jpy = Currency::new("jpy").expect("valid code");
        assert_eq!(jpy.parse_amount("1500"), Ok(1_500));
    }

    #[test]
    fn refuses_amounts_that_would_need_rounding_or_are_not_numbers() {
        let eur = Currency::EUR;
        for text in ["1.234", "-5.00", "1,00", "", ".50", "5.", "abc", "1e3"] {
            assert!(eur.parse_amount(text).is_err(), "{text:?} was accepted");
        }
        assert!(matches!(
            eur.parse_amount("99999999999999999999"),
            Err(MoneyError::Overflow(_))
        ));
        let jpy = Currency::new("JPY").expect("valid code");
        assert!(jpy.parse_amount("10.5").is_err());
    }

    #[test]
    fn formats_with_thousands_separators_and_code() {
        let eur = Currency::EUR;
        assert_eq!(eur.format(450_000), "4,500.00 EUR");
        assert_eq!(eur.format(5), "0.05 EUR");
        assert_eq!(eur.format(123_456_789), "1,234,567.89 EUR");
        assert_eq!(eur.format(-1_000), "-10.00 EUR");
        let jpy = Currency::new("JPY").expect("valid code");
        assert_eq!(jpy.format(1_234_567), "1,234,567 JPY");
    }

    #[test]
    fn given_minor_units_when_money_is_displayed_then_it_reads_like_an_amount_with_its_code() {
        assert_eq!(
            Money::new(450_000, Currency::EUR).to_string(),
            "4,500.00 EUR"
        );
        assert_eq!(Money::new(5, Currency::EUR).to_string(), "0.05 EUR");
        assert_eq!(Money::new(-1_000, Currency::EUR).to_string(), "-10.00 EUR");
        let jpy = Currency::new("JPY").expect("valid code");
        assert_eq!(Money::new(1_234_567, jpy).to_string(), "1,234,567 JPY");
        let bhd = Currency::new("BHD").expect("valid code");
        assert_eq!(Money::new(1_500, bhd).to_string(), "1.500 BHD");
    }

    #[test]
    fn given_money_when_taken_apart_then_it_gives_back_its_minor_units_and_currency() {
        let money = Money::new(1_999, Currency::EUR);
        assert_eq!(money.minor(), 1_999);
        assert_eq!(money.currency(), Currency::EUR);
        assert_eq!(money.to_string(), Currency::EUR.format(1_999));
    }

    #[test]
    fn currency_codes_are_three_letters() {
        assert_eq!(
            Currency::new("eur").map(|c| c.to_string()),
            Ok("EUR".into())
        );
        assert!(Currency::new("EURO").is_err());
        assert!(Currency::new("E1R").is_err());
        let parsed: Result<Currency, _> = serde_json::from_str("\"usd\"");
        assert_eq!(parsed.map(|c| c.to_string()).ok(), Some("USD".into()));
        assert!(serde_json::from_str::<Currency>("\"US\"").is_err());
    }

    #[test]
    fn line_amount_refuses_overflow() {
        assert_eq!(line_amount(450_000, 2), Some(900_000));
        assert_eq!(line_amount(i64::MAX, 2), None);
    }
}
