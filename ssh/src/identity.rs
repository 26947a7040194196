//! Who a customer is over SSH: their public key. The key's SHA-256
//! fingerprint (as `ssh-keygen -l` prints it) names a profile in the
//! server's token store; the first session with a key connects to the
//! gateway as a new customer and keeps its token under that profile, and
//! every later session with the key connects with that token, so it is the
//! same customer with the same orders. Another key is another profile, so
//! another customer.
//!
//! The gateway is not told about keys: to it the SSH server is one more
//! client holding many customers' tokens (kept readable by the server's
//! user only, like `shop`'s). Losing the store loses the link from keys to
//! customers: the orders stay in the shop, but a key then starts afresh.

use russh::keys::{HashAlg, PublicKey};
use shop_client::tokens::is_valid_profile;

/// The profile of the customer `key` is: its SHA-256 fingerprint in
/// URL-safe base64 (`+` and `/` become `-` and `_`), 43 characters.
pub fn profile_of(key: &PublicKey) -> String {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let digest = fingerprint
        .split_once(':')
        .map_or(fingerprint.as_str(), |(_, digest)| digest);
    let profile: String = digest
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    debug_assert!(is_valid_profile(&profile), "{profile}");
    profile
}

#[cfg(test)]
mod tests {
    use russh::keys::PrivateKey;
    use russh::keys::ssh_key::private::Ed25519Keypair;

    use super::*;

    fn key(seed: u8) -> PublicKey {
        PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
            .public_key()
            .clone()
    }

    #[test]
    fn a_key_is_always_the_same_customer_and_another_key_another() {
        assert_eq!(profile_of(&key(1)), profile_of(&key(1)));
        assert_ne!(profile_of(&key(1)), profile_of(&key(2)));
    }

    #[test]
    fn the_profile_is_the_fingerprint_ssh_keygen_prints_made_safe_for_a_file_name() {
        for seed in 0..=255 {
            let public = key(seed);
            let profile = profile_of(&public);
            assert!(is_valid_profile(&profile), "{profile}");
            assert_eq!(profile.len(), 43);
            let printed = public.fingerprint(HashAlg::Sha256).to_string();
            assert_eq!(
                printed,
                format!("SHA256:{}", profile.replace('-', "+").replace('_', "/"))
            );
        }
    }
}
