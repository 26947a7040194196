//! Which certificates a client trusts when the gateway is reached over TLS
//! (`wss://`, `https://`): Mozilla's root certificates (the `webpki-roots`
//! crate), and those of a private certificate authority the user names
//! with `--ca-cert FILE`. TLS is rustls'; no OpenSSL is involved.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

/// The trust of a client: a rustls configuration shared by its WebSocket
/// and HTTP connections. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Trust {
    config: Arc<ClientConfig>,
}

/// A `--ca-cert` file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("cannot read the CA certificate file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)")]
    Empty { path: PathBuf },
    #[error("the CA certificate in {path} is not usable: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

impl Trust {
    /// Mozilla's root certificates and, when `ca_cert` names a PEM file,
    /// every certificate in it as well.
    ///
    /// # Errors
    ///
    /// [`TrustError`]: the file cannot be read, holds no certificate, or a
    /// certificate in it is malformed.
    pub fn new(ca_cert: Option<&Path>) -> Result<Trust, TrustError> {
        let mut roots = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_cert {
            let certificates = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|error| TrustError::Read {
                    path: path.to_owned(),
                    reason: error.to_string(),
                })?;
            if certificates.is_empty() {
                return Err(TrustError::Empty {
                    path: path.to_owned(),
                });
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|error| TrustError::Invalid {
                        path: path.to_owned(),
                        reason: error.to_string(),
                    })?;
            }
        }
        let config = ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Trust {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration, for an HTTP client of the same trust
    /// (`reqwest::ClientBuilder::tls_backend_preconfigured`).
    pub fn rustls_config(&self) -> ClientConfig {
        self.config.as_ref().clone()
    }

    pub(crate) fn connector(&self) -> tokio_tungstenite::Connector {
        tokio_tungstenite::Connector::Rustls(self.config.clone())
    }
}

impl Default for Trust {
    /// Mozilla's root certificates only.
    fn default() -> Self {
        Trust::new(None).unwrap_or_else(|_| unreachable!("no file to read"))
    }
}
