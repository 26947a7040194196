//! Where clients keep customer tokens, so that successive runs of `shop`
//! and `shop-tui` act as the same customer: one file per profile and shop
//! (however its address is spelled: [`canonical_address`]), under `$XDG_CONFIG_HOME/shop` (or `~/.config/shop`), readable by
//! the user only.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::client::names_this_machine;

/// The customer tokens of this user.
pub struct Tokens {
    dir: PathBuf,
}

/// A profile's token held by this process ([`Tokens::get_or_claim`]); dropped,
/// it lets the next client take it.
#[derive(Debug)]
pub struct TokenClaim {
    _file: std::fs::File,
}

/// Neither `XDG_CONFIG_HOME` nor `HOME` says where to keep tokens.
#[derive(Debug, thiserror::Error)]
#[error("cannot tell where to keep the customer token: set HOME or XDG_CONFIG_HOME")]
pub struct NoConfigDir;

/// Whether `name` can name a profile: letters, digits, `-` and `_`.
pub fn is_valid_profile(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Tokens {
    /// The token store of this user.
    ///
    /// # Errors
    ///
    /// [`NoConfigDir`] when neither `XDG_CONFIG_HOME` nor `HOME` is set.
    pub fn locate() -> Result<Tokens, NoConfigDir> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
            .ok_or(NoConfigDir)?;
        Ok(Tokens {
            dir: base.join("shop"),
        })
    }

    /// The tokens kept in `dir` rather than the user's configuration
    /// directory: a server acting for many customers (the SSH server keeps
    /// one profile per SSH key) keeps them in its own data directory.
    pub fn in_dir(dir: PathBuf) -> Tokens {
        Tokens { dir }
    }

    /// The token file of `profile` for the shop at `gateway`, named by the
    /// shop's [`canonical_address`], so that every spelling of one shop's
    /// address is one customer.
    fn path(&self, profile: &str, gateway: &str) -> PathBuf {
        self.path_named(profile, &canonical_address(gateway))
    }

    /// The file name of earlier versions, made from the address as spelled;
    /// still read so that a saved customer is not lost.
    fn spelled_path(&self, profile: &str, gateway: &str) -> PathBuf {
        self.path_named(profile, gateway)
    }

    fn path_named(&self, profile: &str, address: &str) -> PathBuf {
        let name: String = address
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.dir
            .join("profiles")
            .join(profile)
            .join(format!("{name}.token"))
    }

    /// The token of `profile` for `gateway`, if one was saved.
    pub fn get(&self, profile: &str, gateway: &str) -> Option<String> {
        [
            self.path(profile, gateway),
            self.spelled_path(profile, gateway),
        ]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .map(|text| text.trim().to_owned())
        .find(|token| !token.is_empty())
    }

    /// Waits until this process alone holds the token of `profile` for
    /// `gateway`, and holds it until the returned claim is dropped: clients
    /// started together on a profile without a token then become one
    /// customer (the first saves its token, the others read it) rather
    /// than one customer each. An advisory lock on a file beside the token
    /// (`flock(2)` on Unix).
    ///
    /// # Errors
    ///
    /// The I/O error of creating the directory or the lock file, or of
    /// locking it, with a message that names the file.
    async fn claim(&self, profile: &str, gateway: &str) -> std::io::Result<TokenClaim> {
        let path = self.path(profile, gateway).with_extension("lock");
        let named = |error: std::io::Error| {
            std::io::Error::new(
                error.kind(),
                format!("cannot lock {}: {error}", path.display()),
            )
        };
        let dir = path.parent().unwrap_or(Path::new("."));
        create_private_dir(dir).map_err(named)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(&path).map_err(named)?;
        let file = tokio::task::spawn_blocking(move || file.lock().map(|()| file))
            .await
            .map_err(std::io::Error::other)
            .and_then(|locked| locked)
            .map_err(named)?;
        Ok(TokenClaim { _file: file })
    }

    /// The saved token of `profile` for `gateway`; when there is none,
    /// first waits to hold the profile's token alone and reads again, and
    /// returns the claim too: the caller holds it until it has saved the
    /// new customer's token, so that clients started together become one
    /// customer.
    ///
    /// # Errors
    ///
    /// Creating the directory or the lock file beside the token, or locking
    /// it, failed; the message names the file.
    pub async fn get_or_claim(
        &self,
        profile: &str,
        gateway: &str,
    ) -> std::io::Result<(Option<String>, Option<TokenClaim>)> {
        if let Some(saved) = self.get(profile, gateway) {
            return Ok((Some(saved), None));
        }
        let claim = self.claim(profile, gateway).await?;
        Ok((self.get(profile, gateway), Some(claim)))
    }

    /// Saves the token of `profile` for `gateway`.
    ///
    /// # Errors
    ///
    /// The I/O error of creating the directory or writing the file, with a
    /// message that names the file.
    pub fn save(&self, profile: &str, gateway: &str, token: &str) -> std::io::Result<()> {
        let path = self.path(profile, gateway);
        write_private(&path, token).map_err(|error| {
            std::io::Error::new(
                error.kind(),
                format!(
                    "cannot save the customer token in {}: {error}",
                    path.display()
                ),
            )
        })
    }
}

/// One name for each shop however its WebSocket address is spelled:
/// `ws://localhost:8080/ws`, `ws://127.0.0.1:8080/ws` and
/// `ws://[::1]:8080/ws` are the same shop (`ws_localhost_8080/ws`), the
/// host's case and a trailing dot do not count, and a missing port is the
/// scheme's default (80 for `ws`, 443 for `wss`, RFC 6455 §3). An address
/// that does not parse is its own name.
pub fn canonical_address(gateway: &str) -> String {
    let Ok(uri) = gateway.parse::<http::Uri>() else {
        return gateway.to_owned();
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return gateway.to_owned();
    };
    let scheme = scheme.to_ascii_lowercase();
    let host = if names_this_machine(host) {
        "localhost".to_owned()
    } else {
        host.trim_end_matches('.').to_ascii_lowercase()
    };
    let port = uri.port_u16().unwrap_or(match scheme.as_str() {
        "wss" | "https" => 443,
        _ => 80,
    });
    format!("{scheme}_{host}_{port}{}", uri.path())
}

/// Creates `dir` and the folders above it that are missing, readable by
/// the user only (0700 on Unix): which profiles, and for `shop-ssh` which
/// keys' fingerprints, are customers is nobody else's business.
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `text` to `path` readable by the user only, atomically.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_private_dir(dir)?;
    let temporary = dir.join(format!(".{}.tmp", std::process::id()));
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_kept_per_profile_and_gateway() {
        let dir = std::env::temp_dir().join(format!("shop-tokens-test-{}", std::process::id()));
        let tokens = Tokens { dir: dir.clone() };
        tokens
            .save("alice", "ws://127.0.0.1:8080/ws", "t-alice")
            .expect("saved");
        tokens
            .save("bob", "ws://127.0.0.1:8080/ws", "t-bob")
            .expect("saved");
        assert_eq!(
            tokens.get("alice", "ws://127.0.0.1:8080/ws").as_deref(),
            Some("t-alice")
        );
        assert_eq!(
            tokens.get("bob", "ws://127.0.0.1:8080/ws").as_deref(),
            Some("t-bob")
        );
        assert_eq!(tokens.get("alice", "ws://shop.example/ws"), None);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let path = tokens.path("alice", "ws://127.0.0.1:8080/ws");
            let mode = std::fs::metadata(path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            let folder = std::fs::metadata(
                tokens
                    .path("alice", "ws://127.0.0.1:8080/ws")
                    .parent()
                    .expect("folder"),
            )
            .expect("exists")
            .permissions()
            .mode();
            assert_eq!(
                folder & 0o777,
                0o700,
                "the profile's folder is the user's only"
            );
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn every_spelling_of_a_loopback_address_is_one_shop() {
        let local = canonical_address("ws://127.0.0.1:8080/ws");
        for spelling in [
            "ws://localhost:8080/ws",
            "ws://LOCALHOST.:8080/ws",
            "ws://[::1]:8080/ws",
            "ws://127.0.0.2:8080/ws",
            "ws://0.0.0.0:8080/ws",
        ] {
            assert_eq!(canonical_address(spelling), local, "{spelling}");
        }
        assert_ne!(canonical_address("ws://localhost:8081/ws"), local);
        assert_ne!(canonical_address("wss://localhost:8080/ws"), local);
        assert_eq!(
            canonical_address("wss://Shop.Example/ws"),
            canonical_address("wss://shop.example:443/ws")
        );
        assert_ne!(
            canonical_address("ws://shop.example/ws"),
            canonical_address("ws://other.example/ws")
        );
    }

    #[test]
    fn a_token_saved_under_the_address_as_spelled_is_still_found() {
        let dir = std::env::temp_dir().join(format!("shop-tokens-spelled-{}", std::process::id()));
        let tokens = Tokens { dir: dir.clone() };
        let gateway = "ws://127.0.0.1:8080/ws";
        write_private(&tokens.spelled_path("alice", gateway), "t-old").expect("saved");
        assert_eq!(tokens.get("alice", gateway).as_deref(), Some("t-old"));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn profile_names_cannot_escape_the_directory() {
        assert!(is_valid_profile("alice-2"));
        assert!(!is_valid_profile("../etc"));
        assert!(!is_valid_profile(""));
    }
}
