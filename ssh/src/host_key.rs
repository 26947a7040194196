//! The server's host key: an Ed25519 key generated on the first start and
//! kept in the data directory (OpenSSH's format, readable by its owner
//! only), so that clients see the same host on every start and their
//! `known_hosts` stays valid. The key itself is never logged; its
//! fingerprint is.

use std::io::Write;
use std::path::{Path, PathBuf};

use russh::keys::ssh_key::LineEnding;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{HashAlg, PrivateKey};

/// Why the host key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    #[error("cannot read the host key {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the host key {path} can be read by others (mode {mode:o}): run `chmod 600 {path}`, or remove it to make a new one"
    )]
    Exposed { path: PathBuf, mode: u32 },
    #[error(
        "the host key {path} is not an OpenSSH private key: {reason}; remove it to make a new one"
    )]
    Invalid { path: PathBuf, reason: String },
    /// It would load, and every handshake would then fail.
    #[error(
        "the host key {path} is encrypted with a passphrase, which shop-ssh cannot type: \
         remove the passphrase (`ssh-keygen -p -N '' -f {path}`) or the file, to make a new one"
    )]
    Encrypted { path: PathBuf },
    #[error("cannot save a new host key in {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot make a host key: no randomness from the operating system: {0}")]
    Random(String),
}

/// The host key kept at `path`; the first time, a new one, saved there.
///
/// # Errors
///
/// [`HostKeyError`]: the file cannot be read or written, others can read
/// it, or it holds no OpenSSH private key.
pub fn load_or_create(path: &Path) -> Result<PrivateKey, HostKeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => return parse(path, &text),
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            return Err(HostKeyError::Read {
                path: path.to_owned(),
                source,
            });
        }
        Err(_) => {}
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|error| HostKeyError::Random(error.to_string()))?;
    let key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
    let text = key
        .to_openssh(LineEnding::LF)
        .map_err(|error| HostKeyError::Random(error.to_string()))?;
    let written = |source| HostKeyError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(written)?;
    }
    // Written beside it, then linked into place: two servers starting
    // together keep the one key that got there first.
    let temporary = path.with_extension(format!("new-{}", std::process::id()));
    write_private(&temporary, text.as_bytes()).map_err(written)?;
    let linked = std::fs::hard_link(&temporary, path);
    let _ = std::fs::remove_file(&temporary);
    match linked {
        Ok(()) => {
            tracing::info!(
                path = %path.display(),
                fingerprint = %key.fingerprint(HashAlg::Sha256),
                "made a new host key"
            );
            Ok(key)
        }
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(path).map_err(|source| HostKeyError::Read {
                path: path.to_owned(),
                source,
            })?;
            parse(path, &text)
        }
        Err(source) => Err(written(source)),
    }
}

fn parse(path: &Path, text: &str) -> Result<PrivateKey, HostKeyError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|source| HostKeyError::Read {
                path: path.to_owned(),
                source,
            })?
            .permissions()
            .mode()
            & 0o777;
        if mode & 0o077 != 0 {
            return Err(HostKeyError::Exposed {
                path: path.to_owned(),
                mode,
            });
        }
    }
    let key = PrivateKey::from_openssh(text).map_err(|error| HostKeyError::Invalid {
        path: path.to_owned(),
        reason: error.to_string(),
    })?;
    if key.is_encrypted() {
        return Err(HostKeyError::Encrypted {
            path: path.to_owned(),
        });
    }
    Ok(key)
}

/// Creates `path` readable and writable by its owner only, and writes `bytes`.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_kept_private_and_the_same_on_the_next_start() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("ssh").join("host_ed25519_key");
        let first = load_or_create(&path).expect("made");
        let again = load_or_create(&path).expect("loaded");
        assert_eq!(first.public_key(), again.public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("file").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers = std::fs::read_dir(path.parent().expect("dir"))
            .expect("listed")
            .count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[cfg(unix)]
    #[test]
    fn a_key_others_can_read_or_a_broken_one_is_refused_with_what_to_do() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("host_ed25519_key");
        load_or_create(&path).expect("made");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let exposed = load_or_create(&path).expect_err("refused");
        assert!(
            matches!(exposed, HostKeyError::Exposed { mode: 0o644, .. }),
            "{exposed}"
        );
        assert!(exposed.to_string().contains("chmod 600"), "{exposed}");

        std::fs::remove_file(&path).expect("removed");
        write_private(&path, b"not a key").expect("written");
        let invalid = load_or_create(&path).expect_err("refused");
        assert!(matches!(invalid, HostKeyError::Invalid { .. }), "{invalid}");

        // A passphrase (ssh-keygen -N) would load and fail every handshake.
        std::fs::remove_file(&path).expect("removed");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "secretpw", "-f"])
            .arg(&path)
            .status()
            .expect("ssh-keygen runs (Debian: apt-get install openssh-client)");
        assert!(made.success());
        let encrypted = load_or_create(&path).expect_err("refused");
        assert!(
            matches!(encrypted, HostKeyError::Encrypted { .. }),
            "{encrypted}"
        );
        assert!(
            encrypted.to_string().contains("ssh-keygen -p"),
            "{encrypted}"
        );
    }
}
