//! Customer tokens: `v1.<customer id>.<signature>`, where the signature is
//! HMAC-SHA256 over `v1.<customer id>` with the gateway's token secret. Any
//! gateway holding the secret verifies any token, also after a restart;
//! nobody without it can make one or change the customer id inside one.
//!
//! Operator tokens: `op1.<operator name>.<signature>`, signed the same way
//! over `op1.<operator name>` with another secret, the operator secret
//! (`shop-backend operator-token` issues them). A customer token is never
//! an operator token: another prefix, another key.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

use crate::secrets::{Secret, hmac_sha256};

/// Issues and verifies customer tokens.
#[derive(Clone, Debug)]
pub struct TokenSigner {
    keys: Signing,
}

/// `<prefix><claim>.<signature>`: the signature is HMAC-SHA256 (RFC 2104)
/// over `<prefix><claim>` with the secret, in unpadded URL-safe base64.
#[derive(Clone, Debug)]
struct Signing {
    secret: Secret,
}

impl Signing {
    fn mac(&self, body: &str) -> Hmac<Sha256> {
        hmac_sha256(self.secret.expose().as_bytes(), &[body.as_bytes()])
    }

    fn sign(&self, prefix: &str, claim: &str) -> String {
        let body = format!("{prefix}{claim}");
        let signature = URL_SAFE_NO_PAD.encode(self.mac(&body).finalize().into_bytes());
        format!("{body}.{signature}")
    }

    /// The claim of a token with `prefix` that this secret signed.
    fn open<'t>(&self, prefix: &str, token: &'t str) -> Result<&'t str, InvalidToken> {
        let (body, signature) = token.rsplit_once('.').ok_or(InvalidToken)?;
        let claim = body.strip_prefix(prefix).ok_or(InvalidToken)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| InvalidToken)?;
        self.mac(body)
            .verify_slice(&signature)
            .map_err(|_| InvalidToken)?;
        Ok(claim)
    }
}

/// What a customer token names.
const CUSTOMER_PREFIX: &str = "v1.";

/// A token this gateway did not issue, or one that was altered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token was not issued by this shop or was altered")]
pub struct InvalidToken;

impl TokenSigner {
    pub fn new(secret: Secret) -> Self {
        TokenSigner {
            keys: Signing { secret },
        }
    }

    /// A token for `customer_id`.
    pub fn issue(&self, customer_id: Uuid) -> String {
        self.keys
            .sign(CUSTOMER_PREFIX, &customer_id.simple().to_string())
    }

    /// The customer a token names, if this gateway's secret signed it.
    ///
    /// # Errors
    ///
    /// [`InvalidToken`] for a token this shop did not sign, an altered one, or
    /// one that is not a token.
    pub fn verify(&self, token: &str) -> Result<Uuid, InvalidToken> {
        let customer = self.keys.open(CUSTOMER_PREFIX, token)?;
        Uuid::try_parse(customer).map_err(|_| InvalidToken)
    }
}

/// The operator token `shop-backend operator-token` prints: for `name`,
/// signed with the given operator secret or the one an embedded shop keeps
/// in its data directory.
///
/// # Errors
///
/// No secret is given and the data directory is not a shop's (or its
/// secrets file cannot be read or completed).
pub fn operator_token(args: &crate::config::OperatorTokenArgs) -> anyhow::Result<String> {
    let secret = match &args.operator_secret {
        Some(secret) if !secret.expose().is_empty() => crate::secrets::operator_secret(secret)?,
        _ => {
            let dir = &args.data_dir;
            if !dir.join("secrets.json").exists() {
                anyhow::bail!(
                    "{} holds no shop: start `shop-backend --data-dir {}` once first, or pass \
                     --operator-secret (distributed mode)",
                    dir.display(),
                    dir.display()
                );
            }
            crate::secrets::load_or_create(dir)?.operator
        }
    };
    Ok(OperatorSigner::new(secret).issue(&args.name))
}

/// Issues and verifies operator tokens.
#[derive(Clone, Debug)]
pub struct OperatorSigner {
    keys: Signing,
}

/// What an operator token names.
const OPERATOR_PREFIX: &str = "op1.";

impl OperatorSigner {
    pub fn new(secret: Secret) -> Self {
        OperatorSigner {
            keys: Signing { secret },
        }
    }

    /// A token for the operator `name`, which
    /// [`shop_shared::catalog::is_valid_operator_name`] accepts.
    pub fn issue(&self, name: &str) -> String {
        self.keys.sign(OPERATOR_PREFIX, name)
    }

    /// Whether `token` claims to be an operator's (whoever signed it).
    pub fn is_operator_token(token: &str) -> bool {
        token.starts_with(OPERATOR_PREFIX)
    }

    /// The operator a token names, if this shop's operator secret signed it.
    ///
    /// # Errors
    ///
    /// [`InvalidToken`] for a token this secret did not sign, an altered
    /// one, or one that is not an operator token.
    pub fn verify(&self, token: &str) -> Result<String, InvalidToken> {
        let name = self.keys.open(OPERATOR_PREFIX, token)?;
        if !shop_shared::catalog::is_valid_operator_name(name) {
            return Err(InvalidToken);
        }
        Ok(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_operator_token_is_never_a_customer_token_nor_the_reverse() {
        let secret = Secret::new("same-secret-for-both");
        let customers = TokenSigner::new(secret.clone());
        let operators = OperatorSigner::new(secret);
        let operator = operators.issue("alice");
        assert_eq!(operators.verify(&operator), Ok("alice".to_owned()));
        assert_eq!(customers.verify(&operator), Err(InvalidToken));
        let customer = customers.issue(Uuid::new_v4());
        assert_eq!(operators.verify(&customer), Err(InvalidToken));
        assert_eq!(
            OperatorSigner::new(Secret::new("other")).verify(&operator),
            Err(InvalidToken),
            "another shop's operator secret"
        );
        let renamed = operator.replacen("alice", "mallory", 1);
        assert_eq!(operators.verify(&renamed), Err(InvalidToken));
    }

    #[test]
    fn a_token_names_its_customer_for_any_signer_with_the_secret() {
        let customer = Uuid::new_v4();
        let token = TokenSigner::new(Secret::new("k1")).issue(customer);
        assert_eq!(
            TokenSigner::new(Secret::new("k1")).verify(&token),
            Ok(customer)
        );
    }

    #[test]
    fn forged_or_altered_tokens_are_refused() {
        let signer = TokenSigner::new(Secret::new("k1"));
        let token = signer.issue(Uuid::new_v4());
        assert_eq!(
            TokenSigner::new(Secret::new("k2")).verify(&token),
            Err(InvalidToken)
        );
        let other = Uuid::new_v4().simple().to_string();
        let parts: Vec<&str> = token.split('.').collect();
        let swapped = format!("v1.{other}.{}", parts[2]);
        assert_eq!(signer.verify(&swapped), Err(InvalidToken));
        for junk in ["", "v1", "v1.abc", "v2.x.y", "v1.not-a-uuid.AAAA"] {
            assert_eq!(signer.verify(junk), Err(InvalidToken), "{junk}");
        }
    }
}
