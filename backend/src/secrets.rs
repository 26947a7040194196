//! Secrets: the keys that sign customer and operator tokens, and the
//! webhook signing secret. They are never logged: [`Secret`]'s `Debug`
//! hides the value.
//!
//! In embedded mode, secrets not given by flag or env are generated once
//! and kept in `<data-dir>/secrets.json` (mode 0600), so tokens and
//! webhooks stay valid across restarts.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A secret string.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(Arc::from(value.into()))
    }

    /// The value, for signing; never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A new random secret: `prefix` then 64 hex digits.
    ///
    /// # Errors
    ///
    /// The operating system's random source failed.
    pub fn generate(prefix: &str) -> anyhow::Result<Self> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|error| anyhow::anyhow!("no randomness: {error}"))?;
        Ok(Secret::new(format!("{prefix}{}", hex::encode(bytes))))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(value))
    }
}

#[derive(Serialize, Deserialize)]
struct SecretsFile {
    token_secret: String,
    webhook_secret: String,
    /// Missing in files written before operators existed; added then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    operator_secret: Option<String>,
}

/// The secrets of an embedded backend.
#[derive(Debug, Clone)]
pub struct Secrets {
    pub token: Secret,
    pub webhook: Secret,
    /// Signs operator tokens (`shop-backend operator-token`).
    pub operator: Secret,
}

/// Fewest bytes a signing secret given by flag or env may have (token,
/// operator and local-checkout webhook secrets): a token or a webhook
/// signature is an HMAC of a text an attacker can know, so a short key
/// falls to an offline search from one leaked token or signed webhook.
pub const MIN_SECRET_LEN: usize = 16;

/// `secret`, given by the flag `flag` or the environment variable `env`,
/// as a signing secret.
///
/// # Errors
///
/// It is shorter than [`MIN_SECRET_LEN`] bytes (or empty); the message
/// names the flag and the variable, never the value.
pub fn given_secret(secret: &Secret, flag: &str, env: &str) -> anyhow::Result<Secret> {
    if secret.expose().len() < MIN_SECRET_LEN {
        anyhow::bail!(
            "{flag} ({env}) must have at least {MIN_SECRET_LEN} characters: what it signs is only \
             as hard to forge as it is to guess (make one with `openssl rand -hex 32`)"
        );
    }
    Ok(secret.clone())
}

/// `secret` as an operator secret given by `--operator-secret`.
///
/// # Errors
///
/// As [`given_secret`].
pub fn operator_secret(secret: &Secret) -> anyhow::Result<Secret> {
    given_secret(secret, "--operator-secret", "SHOP_OPERATOR_SECRET")
}

/// HMAC-SHA256 (RFC 2104) keyed with `key` over `parts`, one after the
/// other: what customer tokens and webhook signatures are made of.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Reads `<dir>/secrets.json`, creating it with fresh secrets if missing
/// (and adding an operator secret to a file written before there was one).
///
/// # Errors
///
/// The file cannot be read, parsed or written.
pub fn load_or_create(dir: &Path) -> anyhow::Result<Secrets> {
    let path = dir.join("secrets.json");
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let file: SecretsFile = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a valid secrets file", path.display()))?;
        let operator = match file.operator_secret {
            Some(secret) => Secret::new(secret),
            None => {
                let operator = Secret::generate("")?;
                let updated = SecretsFile {
                    operator_secret: Some(operator.expose().to_owned()),
                    ..file
                };
                replace_private(&path, &serde_json::to_string_pretty(&updated)?)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                return Ok(Secrets {
                    token: Secret::new(updated.token_secret),
                    webhook: Secret::new(updated.webhook_secret),
                    operator,
                });
            }
        };
        return Ok(Secrets {
            token: Secret::new(file.token_secret),
            webhook: Secret::new(file.webhook_secret),
            operator,
        });
    }
    let secrets = Secrets {
        token: Secret::generate("")?,
        webhook: Secret::generate("whsec_local_")?,
        operator: Secret::generate("")?,
    };
    let file = SecretsFile {
        token_secret: secrets.token.expose().to_owned(),
        webhook_secret: secrets.webhook.expose().to_owned(),
        operator_secret: Some(secrets.operator.expose().to_owned()),
    };
    let text = serde_json::to_string_pretty(&file)?;
    write_private(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(secrets)
}

/// Replaces `path` with `text` at once: written beside it, then renamed.
fn replace_private(path: &Path, text: &str) -> std::io::Result<()> {
    let beside = path.with_extension("json.new");
    let _ = std::fs::remove_file(&beside);
    write_private(&beside, text)?;
    std::fs::rename(&beside, path)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("whsec_very_secret");
        assert_eq!(format!("{secret:?}"), "Secret(<hidden>)");
        assert!(!format!("{:?}", Some(&secret)).contains("very_secret"));
    }

    #[test]
    fn secrets_are_created_once_and_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = load_or_create(dir.path()).expect("created");
        let again = load_or_create(dir.path()).expect("read back");
        assert_eq!(first.token, again.token);
        assert_eq!(first.webhook, again.webhook);
        assert!(first.webhook.expose().starts_with("whsec_"));
        assert_ne!(first.token, first.webhook);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("secrets.json"))
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_short_or_empty_operator_secret_is_refused_with_how_to_make_one() {
        for short in ["", "a", "fifteen-chars!!"] {
            let refused = operator_secret(&Secret::new(short))
                .expect_err(short)
                .to_string();
            assert!(refused.contains("at least 16 characters"), "{refused}");
            assert!(refused.contains("--operator-secret"), "{refused}");
            assert!(!refused.contains(short) || short.is_empty() || short == "a");
        }
        assert!(operator_secret(&Secret::new("sixteen-chars!!!")).is_ok());
        let refused = given_secret(
            &Secret::new("hunter2"),
            "--token-secret",
            "SHOP_TOKEN_SECRET",
        )
        .expect_err("short")
        .to_string();
        assert!(
            refused.contains("--token-secret (SHOP_TOKEN_SECRET)"),
            "{refused}"
        );
        assert!(!refused.contains("hunter2"), "{refused}");
    }

    #[test]
    fn a_secrets_file_from_before_operators_gets_an_operator_secret_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("secrets.json");
        std::fs::write(
            &path,
            r#"{"token_secret":"t-old","webhook_secret":"whsec_old"}"#,
        )
        .expect("old file");
        let first = load_or_create(dir.path()).expect("upgraded");
        assert_eq!(first.token.expose(), "t-old");
        assert_eq!(first.webhook.expose(), "whsec_old");
        assert_eq!(first.operator.expose().len(), 64);
        let again = load_or_create(dir.path()).expect("read back");
        assert_eq!(first.operator, again.operator, "kept, not made anew");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
