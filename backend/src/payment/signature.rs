//! Webhook signatures, exactly as Stripe makes them:
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
//! A header may carry several `v1` values (during secret rotation); any one
//! matching is enough. Timestamps older than the tolerance are refused, so a
//! captured webhook cannot be replayed later.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secrets::hmac_sha256;

/// Stripe's default tolerance.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// Most `v1` values a header may carry. Stripe sends one, or two while a
/// secret is rolled; a header with more is refused before anything is
/// hashed, so a forged request cannot buy CPU by the value.
pub const MAX_SIGNATURES: usize = 8;

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed: expected t=<timestamp>,v1=<signature>")]
    Malformed,
    #[error("the Stripe-Signature header carries more than {MAX_SIGNATURES} v1 signatures")]
    TooManySignatures,
    #[error("no v1 signature matches the payload")]
    Mismatch,
    #[error(
        "the signature timestamp is {age_seconds} s away from now, beyond the {tolerance_seconds} s tolerance"
    )]
    Stale {
        age_seconds: i64,
        tolerance_seconds: u64,
    },
}

impl SignatureError {
    /// A stable name for error responses.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_signature",
            SignatureError::Malformed => "malformed_signature",
            SignatureError::TooManySignatures => "too_many_signatures",
            SignatureError::Mismatch => "invalid_signature",
            SignatureError::Stale { .. } => "stale_timestamp",
        }
    }
}

fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> Hmac<Sha256> {
    #[cfg(test)]
    tests::MACS.with(|macs| macs.set(macs.get() + 1));
    let timestamp = timestamp.to_string();
    hmac_sha256(secret.as_bytes(), &[timestamp.as_bytes(), b".", payload])
}

/// The `Stripe-Signature` header for `payload` signed at `timestamp`.
pub fn header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let signature = hex::encode(mac(secret, timestamp, payload).finalize().into_bytes());
    format!("t={timestamp},v1={signature}")
}

/// Checks `header` against `payload`; returns the signed timestamp.
///
/// # Errors
///
/// [`SignatureError`]: the header is missing or malformed, carries more than
/// [`MAX_SIGNATURES`] `v1` values, no `v1` signature matches, or the
/// timestamp is further than `tolerance` from `now`.
///
/// The payload is hashed once, whatever the number of `v1` values, and
/// each is compared in constant time.
pub fn verify(
    header: Option<&str>,
    payload: &[u8],
    secret: &str,
    now: i64,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let Some((key, value)) = part.trim().split_once('=') else {
            return Err(SignatureError::Malformed);
        };
        match key {
            "t" => {
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?,
                )
            }
            "v1" => {
                if signatures.len() == MAX_SIGNATURES {
                    return Err(SignatureError::TooManySignatures);
                }
                signatures.push(hex::decode(value).map_err(|_| SignatureError::Malformed)?);
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let signed = mac(secret, timestamp, payload);
    // Each candidate finishes a copy of the one hash of the payload;
    // `verify_slice` compares in constant time.
    let matches = signatures
        .iter()
        .any(|signature| signed.clone().verify_slice(signature).is_ok());
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    let age = now - timestamp;
    if age.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            age_seconds: age,
            tolerance_seconds: tolerance.as_secs(),
        });
    }
    Ok(timestamp)
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        /// How many times this thread hashed a payload.
        pub(super) static MACS: Cell<usize> = const { Cell::new(0) };
    }

    fn hashed() -> usize {
        MACS.with(Cell::get)
    }

    #[test]
    fn a_header_with_thousands_of_v1_values_is_refused_before_any_hashing() {
        let bogus = format!("v1={}", "ab".repeat(32));
        let header = format!("t=1000,{}", vec![bogus.as_str(); 5_000].join(","));
        let body = vec![b'x'; 2 * 1024 * 1024];
        let before = hashed();
        assert_eq!(
            verify(Some(&header), &body, SECRET, 1_000, TOLERANCE),
            Err(SignatureError::TooManySignatures)
        );
        assert_eq!(hashed(), before, "nothing hashed");
    }

    #[test]
    fn the_payload_is_hashed_once_however_many_v1_values_are_tried() {
        let bogus = format!("v1={}", "ab".repeat(32));
        let mut values = vec![bogus; MAX_SIGNATURES - 1];
        let signed = header(SECRET, 1_000, BODY);
        values.push(format!("v1={}", signed.split(",v1=").nth(1).expect("v1")));
        let header = format!("t=1000,{}", values.join(","));
        let before = hashed();
        assert_eq!(
            verify(Some(&header), BODY, SECRET, 1_000, TOLERANCE),
            Ok(1_000),
            "the last of {MAX_SIGNATURES} values matches"
        );
        assert_eq!(hashed() - before, 1);
    }

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;

    #[test]
    fn matches_stripes_published_scheme() {
        // HMAC-SHA256("whsec_test_secret", "1700000000.{body}") computed with
        // Python's hmac module, independently of this code.
        let expected =
            "t=1700000000,v1=a13d4b1f9003bc2fb6c06224e878b6056185eaa50d40e1e7dc05517f8af41d7b";
        assert_eq!(header(SECRET, 1_700_000_000, BODY), expected);
    }

    #[test]
    fn accepts_its_own_signature_and_any_of_several_v1_values() {
        let signed = header(SECRET, 1_000, BODY);
        assert_eq!(
            verify(Some(&signed), BODY, SECRET, 1_100, TOLERANCE),
            Ok(1_000)
        );
        let other = header("whsec_old", 1_000, BODY);
        let v1_other = other.split(",v1=").nth(1).expect("v1");
        let rotated = format!("{signed},v1={v1_other},v0=abc");
        assert_eq!(
            verify(Some(&rotated), BODY, "whsec_old", 1_000, TOLERANCE),
            Ok(1_000)
        );
    }

    #[test]
    fn refuses_forged_altered_stale_and_malformed_signatures() {
        let signed = header(SECRET, 1_000, BODY);
        assert_eq!(
            verify(Some(&signed), BODY, "whsec_wrong", 1_000, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&signed), b"{}", SECRET, 1_000, TOLERANCE),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify(Some(&signed), BODY, SECRET, 1_000 + 301, TOLERANCE),
            Err(SignatureError::Stale {
                age_seconds: 301,
                ..
            })
        ));
        assert_eq!(
            verify(None, BODY, SECRET, 1_000, TOLERANCE),
            Err(SignatureError::Missing)
        );
        for bad in ["", "t=abc,v1=00", "v1=00", "t=1000", "t=1000,v1=zz"] {
            assert_eq!(
                verify(Some(bad), BODY, SECRET, 1_000, TOLERANCE),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
    }
}
