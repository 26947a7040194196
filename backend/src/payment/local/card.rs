//! The card rules of the local checkout: Stripe's public test cards
//! (<https://docs.stripe.com/testing#cards>) answer as they do in Stripe's
//! test mode, and two cards of its own stand for delayed payment methods.

use serde::Deserialize;
use shop_shared::time::Timestamp;

/// The card form as posted. Every field is optional so that a missing one
/// gets a clear message instead of a generic rejection.
#[derive(Debug, Default, Deserialize)]
pub struct CardForm {
    #[serde(default)]
    pub card_number: String,
    #[serde(default)]
    pub expiry: String,
    #[serde(default)]
    pub cvc: String,
    #[serde(default)]
    pub name: String,
}

/// What the card network says about a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardOutcome {
    Approved,
    /// A stand-in for a delayed payment method (local checkout only).
    Delayed {
        succeeds: bool,
    },
    Declined(&'static str),
}

/// Checks the form and answers as Stripe's test mode does for its test
/// cards. `Err` is a message about a field the customer must fix.
///
/// # Errors
///
/// A message about the field the customer must fix: a missing or invalid card
/// number (Luhn), an unreadable or past expiry, an incomplete security code, or
/// no name.
pub fn check_card(form: &CardForm, today: (i32, u32)) -> Result<CardOutcome, String> {
    let number: String = form
        .card_number
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    if number.is_empty() {
        return Err("Enter a card number.".into());
    }
    if !number.bytes().all(|b| b.is_ascii_digit())
        || !(12..=19).contains(&number.len())
        || !luhn(&number)
    {
        return Err("Your card number is invalid.".into());
    }
    let (month, year) = parse_expiry(&form.expiry).ok_or("Enter the expiry date as MM/YY.")?;
    if (year, month) < today {
        return Err("Your card's expiration date is in the past.".into());
    }
    let cvc = form.cvc.trim();
    if !(3..=4).contains(&cvc.len()) || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Your card's security code is incomplete.".into());
    }
    if form.name.trim().is_empty() {
        return Err("Enter the name on the card.".into());
    }
    Ok(match number.as_str() {
        "4242424242424242" | "4000056655665556" | "5555555555554444" | "2223003122003222"
        | "5200828282828210" | "378282246310005" | "6011111111111117" => CardOutcome::Approved,
        "4000000000001000" => CardOutcome::Delayed { succeeds: true },
        "4000000000002008" => CardOutcome::Delayed { succeeds: false },
        "4000000000000002" => CardOutcome::Declined("Your card was declined."),
        "4000000000009995" => CardOutcome::Declined("Your card has insufficient funds."),
        "4000000000009987" => CardOutcome::Declined("Your card was declined (lost card)."),
        "4000000000009979" => CardOutcome::Declined("Your card was declined (stolen card)."),
        "4000000000000069" => CardOutcome::Declined("Your card has expired."),
        "4000000000000127" => CardOutcome::Declined("Your card's security code is incorrect."),
        "4000000000000119" => {
            CardOutcome::Declined("An error occurred while processing your card. Try again.")
        }
        _ => CardOutcome::Declined(
            "Your card was declined. This is a test checkout: use a Stripe test card such as 4242 4242 4242 4242.",
        ),
    })
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(index, byte)| {
            let digit = u32::from(byte - b'0');
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Reads `MM/YY`, `MM / YY`, `MM/YYYY` or `MMYY` as (month, full year).
fn parse_expiry(text: &str) -> Option<(u32, i32)> {
    let digits: String = text.chars().filter(|c| c.is_ascii_digit()).collect();
    let (month, year) = match digits.len() {
        4 => (&digits[..2], format!("20{}", &digits[2..])),
        6 => (&digits[..2], digits[2..].to_owned()),
        _ => return None,
    };
    let month: u32 = month.parse().ok()?;
    let year: i32 = year.parse().ok()?;
    (1..=12).contains(&month).then_some((month, year))
}

/// Today's (year, month) in UTC.
pub(super) fn today() -> (i32, u32) {
    let text = Timestamp::now().to_string();
    let year = text.get(..4).and_then(|y| y.parse().ok()).unwrap_or(2026);
    let month = text.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    (year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(number: &str, expiry: &str) -> CardForm {
        CardForm {
            card_number: number.into(),
            expiry: expiry.into(),
            cvc: "123".into(),
            name: "Ada Lovelace".into(),
        }
    }

    const TODAY: (i32, u32) = (2026, 11);

    #[test]
    fn stripe_test_cards_succeed_or_decline_as_documented() {
        assert_eq!(
            check_card(&form("4242 4242 4242 4242", "12/34"), TODAY),
            Ok(CardOutcome::Approved)
        );
        assert_eq!(
            check_card(&form("4000 0000 0000 0002", "12/34"), TODAY),
            Ok(CardOutcome::Declined("Your card was declined."))
        );
        assert!(matches!(
            check_card(&form("4000000000009995", "1234"), TODAY),
            Ok(CardOutcome::Declined(message)) if message.contains("insufficient")
        ));
    }

    #[test]
    fn malformed_card_details_are_refused_with_a_reason() {
        assert!(check_card(&form("", "12/34"), TODAY).is_err());
        assert!(
            check_card(&form("4242 4242 4242 4241", "12/34"), TODAY).is_err(),
            "Luhn"
        );
        assert!(
            check_card(&form("4242424242424242", "13/34"), TODAY).is_err(),
            "month 13"
        );
        assert!(
            check_card(&form("4242424242424242", "10/26"), TODAY).is_err(),
            "expired"
        );
        assert!(
            check_card(&form("4242424242424242", "11/26"), TODAY).is_ok(),
            "this month is fine"
        );
        let mut no_cvc = form("4242424242424242", "12/34");
        no_cvc.cvc = "1".into();
        assert!(check_card(&no_cvc, TODAY).is_err());
        let mut no_name = form("4242424242424242", "12/34");
        no_name.name = " ".into();
        assert!(check_card(&no_name, TODAY).is_err());
    }

    #[test]
    fn expiry_accepts_the_usual_spellings() {
        assert_eq!(parse_expiry("12/34"), Some((12, 2034)));
        assert_eq!(parse_expiry("12 / 2034"), Some((12, 2034)));
        assert_eq!(parse_expiry("0129"), Some((1, 2029)));
        assert_eq!(parse_expiry("1/2"), None);
    }
}
