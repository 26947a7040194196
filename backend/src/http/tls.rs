//! Serving HTTPS and WSS without a proxy: the certificate chain and private
//! key of `--tls-cert` and `--tls-key` (PEM files), served through rustls.
//! The same listener then speaks only TLS; plain HTTP is not answered.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsArgs;

/// A loaded certificate and key: the acceptor of TLS connections, and the
/// certificates (DER), which the local checkout trusts when it delivers
/// webhooks to this process.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub certificates: Vec<CertificateDer<'static>>,
}

/// The URL scheme of a listener serving `tls`: `https` with a certificate,
/// `http` without.
pub fn scheme(tls: Option<&Tls>) -> &'static str {
    if tls.is_some() { "https" } else { "http" }
}

impl Tls {
    /// Loads the files `args` names, if it names them.
    ///
    /// # Errors
    ///
    /// A file cannot be read, holds no certificate or no private key (PEM
    /// `CERTIFICATE`; `PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`),
    /// or the key does not fit the certificate. The message names the file.
    pub fn load(args: &TlsArgs) -> anyhow::Result<Option<Tls>> {
        let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) else {
            return Ok(None);
        };
        let certificates = read_certificates(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
            format!(
                "cannot read a PEM private key from --tls-key {}",
                key.display()
            )
        })?;
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certificates.clone(), key)
            .context("the --tls-key does not fit the --tls-cert certificate")?;
        Ok(Some(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
        }))
    }
}

fn read_certificates(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| {
            format!(
                "cannot read PEM certificates from --tls-cert {}",
                path.display()
            )
        })?;
    if certificates.is_empty() {
        anyhow::bail!(
            "--tls-cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certificates)
}

/// A TLS client configuration that trusts exactly `certificate`: for a
/// process calling itself (the local checkout delivering webhooks to its
/// own endpoint), whoever issued the certificate and whichever host it
/// names. The peer still proves it holds the certificate's key.
pub fn pinned(certificate: CertificateDer<'static>) -> rustls::ClientConfig {
    let verifier = Pinned {
        certificate,
        algorithms: rustls::crypto::aws_lc_rs::default_provider().signature_verification_algorithms,
    };
    rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth()
}

#[derive(Debug)]
struct Pinned {
    certificate: CertificateDer<'static>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.certificate.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(cert: &Path, key: &Path) -> String {
        match Tls::load(&TlsArgs {
            tls_cert: Some(cert.to_owned()),
            tls_key: Some(key.to_owned()),
        }) {
            Ok(_) => "loaded".to_owned(),
            Err(error) => format!("{error:#}"),
        }
    }

    #[test]
    fn unusable_certificate_files_fail_with_the_file_named() {
        let dir = tempfile::tempdir().expect("directory");
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a certificate").expect("written");
        let missing = dir.path().join("missing.pem");
        assert!(
            load(&missing, &text).starts_with(&format!(
                "cannot read PEM certificates from --tls-cert {}",
                missing.display()
            )),
            "{}",
            load(&missing, &text)
        );
        assert_eq!(
            load(&text, &text),
            format!(
                "--tls-cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                text.display()
            )
        );
        assert!(Tls::load(&TlsArgs::default()).expect("no TLS").is_none());
    }
}
