//! The webhook's TLS: a rustls server configuration from PEM files, or a
//! self-signed certificate for development, and the `caBundle` a
//! `ValidatingWebhookConfiguration` needs to trust it.
//!
//! Only the ring provider is compiled in (aws-lc-rs needs cmake to build), and
//! it is installed explicitly so that no other crate's choice can change it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;

/// Why a certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what}: no PEM certificate found ({source})")]
    Certificate {
        what: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("{what}: no PEM private key found ({source})")]
    Key {
        what: String,
        source: rustls::pki_types::pem::Error,
    },
    #[error("certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    #[error("{what} is not valid for {host} as the API server will check it: {reason}")]
    NotValidFor {
        what: String,
        host: String,
        reason: String,
    },
    #[error("generating a self-signed certificate for {hosts:?}: {source}")]
    Generate {
        hosts: Vec<String>,
        source: rcgen::Error,
    },
}

/// Installs ring as the process's rustls crypto provider (a no-op when one is installed).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A server configuration from a PEM certificate chain and a PEM private key.
/// `cert_name` and `key_name` name the sources in errors (file paths, usually).
///
/// # Errors
/// When either holds no PEM item of its kind, or the key does not match the certificate.
pub fn server_config(
    cert_pem: &[u8],
    cert_name: &str,
    key_pem: &[u8],
    key_name: &str,
) -> Result<Arc<ServerConfig>, TlsError> {
    install_provider();
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .and_then(|chain| {
            if chain.is_empty() {
                Err(rustls::pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(chain)
            }
        })
        .map_err(|source| TlsError::Certificate {
            what: cert_name.to_string(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|source| TlsError::Key {
        what: key_name.to_string(),
        source,
    })?;
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    // The API server speaks HTTP/1.1 (or h2) to webhooks; we serve HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn certificates<'a>(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'a>>, TlsError> {
    CertificateDer::pem_slice_iter(pem)
        .map(|c| c.map(CertificateDer::into_owned))
        .collect::<Result<Vec<_>, _>>()
        .and_then(|chain| {
            if chain.is_empty() {
                Err(rustls::pki_types::pem::Error::NoItemsFound)
            } else {
                Ok(chain)
            }
        })
        .map_err(|source| TlsError::Certificate {
            what: what.to_string(),
            source,
        })
}

/// The `clientConfig.caBundle` for a webhook that serves the chain
/// `cert_pem` under the DNS name `host` (`NAME.NAMESPACE.svc`): the base64
/// of `ca_pem`, once the chain has been verified against it for `host` now,
/// as the API server will verify it. `ca_pem` is the certificate itself when
/// it is self-signed.
///
/// # Errors
/// PEM without certificates, or a chain that does not verify for `host`
/// (another name, another CA, expired).
pub fn ca_bundle_for(
    cert_pem: &[u8],
    cert_name: &str,
    ca_pem: &[u8],
    ca_name: &str,
    host: &str,
) -> Result<String, TlsError> {
    use rustls::client::danger::ServerCertVerifier as _;
    let chain = certificates(cert_pem, cert_name)?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(ca_pem, ca_name)? {
        roots.add(ca).map_err(|e| TlsError::NotValidFor {
            what: ca_name.to_string(),
            host: host.to_string(),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let not_valid = |reason: String| TlsError::NotValidFor {
        what: cert_name.to_string(),
        host: host.to_string(),
        reason,
    };
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| not_valid(format!("not a DNS name: {e}")))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| not_valid(e.to_string()))?;
    verifier
        .verify_server_cert(
            &chain[0],
            &chain[1..],
            &name,
            &[],
            rustls::pki_types::UnixTime::now(),
        )
        .map_err(|e| not_valid(e.to_string()))?;
    Ok(STANDARD.encode(ca_pem))
}

/// A self-signed certificate and its key, for development clusters and tests.
#[derive(Debug, Clone)]
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    /// The DNS names and IP addresses the certificate is valid for.
    pub hosts: Vec<String>,
}

impl SelfSigned {
    /// Generates a certificate (ECDSA P-256) valid for `hosts`: DNS names, or
    /// IP addresses, which become IP subject alternative names.
    ///
    /// # Errors
    /// When a host is neither an IP address nor a valid DNS name.
    pub fn generate(hosts: &[String]) -> Result<SelfSigned, TlsError> {
        let error = |source| TlsError::Generate {
            hosts: hosts.to_vec(),
            source,
        };
        let key = rcgen::KeyPair::generate().map_err(error)?;
        let mut params = rcgen::CertificateParams::new(hosts.to_vec()).map_err(error)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bulkhead admission webhook");
        let cert = params.self_signed(&key).map_err(error)?;
        Ok(SelfSigned {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            hosts: hosts.to_vec(),
        })
    }

    /// `clientConfig.caBundle` of a webhook configuration: the base64 of the
    /// PEM certificate (standard alphabet, padded, as Kubernetes expects).
    pub fn ca_bundle(&self) -> String {
        STANDARD.encode(&self.cert_pem)
    }

    /// The rustls server configuration serving this certificate.
    ///
    /// # Errors
    /// Only if rustls refuses the generated key, which the tests rule out.
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        server_config(
            self.cert_pem.as_bytes(),
            "self-signed certificate",
            self.key_pem.as_bytes(),
            "self-signed key",
        )
    }
}
