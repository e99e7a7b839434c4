//! TLS on the gRPC listener, with certificates that may change while the service runs.
//!
//! tonic's `Server::tls_config` fixes the certificate at start, so a renewal would need a
//! restart. Instead the listener terminates TLS itself (tokio-rustls, [`stream::MaybeTls`])
//! with whichever `ServerConfig` is current when a connection is accepted, and
//! [`reload::spawn`] swaps that config on SIGHUP or when one of the files changes.
//! Connections already open keep the certificate they were made with.
//!
//! The files are PEM: the certificate chain (leaf first), its private key and, for mTLS, the
//! CA certificates client certificates must chain to. Errors name the file and what is
//! wrong with it, never its content (the key file holds a secret).
pub mod reload;
pub mod stream;

use crate::config::TlsConfig;
use anyhow::bail;
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer},
    server::WebPkiClientVerifier,
    RootCertStore, ServerConfig,
};
use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, PoisonError, RwLock},
};
use tokio_rustls::TlsAcceptor;

/// The files TLS is configured from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// `None` when TLS is not configured; an error when it is half configured.
    pub fn from_config(cfg: &TlsConfig) -> anyhow::Result<Option<TlsFiles>> {
        match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: cfg.tls_client_ca.clone(),
            })),
            (None, None) if cfg.tls_client_ca.is_some() => {
                bail!("CHECKOUT_TLS_CLIENT_CA needs CHECKOUT_TLS_CERT and CHECKOUT_TLS_KEY")
            }
            (None, None) => Ok(None),
            (Some(_), None) => {
                bail!("CHECKOUT_TLS_CERT is set but CHECKOUT_TLS_KEY is not: set both or neither")
            }
            (None, Some(_)) => {
                bail!("CHECKOUT_TLS_KEY is set but CHECKOUT_TLS_CERT is not: set both or neither")
            }
        }
    }

    /// Every file, for watching.
    pub fn paths(&self) -> Vec<&Path> {
        let mut paths = vec![self.cert.as_path(), self.key.as_path()];
        paths.extend(self.client_ca.as_deref());
        paths
    }
}

/// What is wrong with one of the files.
#[derive(Debug)]
pub struct LoadError {
    pub file: PathBuf,
    pub reason: String,
}

impl LoadError {
    fn new(file: &Path, reason: impl Into<String>) -> LoadError {
        LoadError {
            file: file.to_owned(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.reason)
    }
}

impl std::error::Error for LoadError {}

/// A config made from the files, and the expiry of its certificate (for the log).
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    pub not_after: Option<String>,
}

/// Reads and checks the files: certificate and key parse and belong together, the CA is
/// usable. ALPN offers `h2` only: gRPC clients (grpcurl, grpc-go) insist on it.
pub fn load(files: &TlsFiles) -> Result<Loaded, LoadError> {
    let certs = read_certs(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        LoadError::new(
            &files.key,
            pem_reason(e, "private key (PKCS#8, PKCS#1 or SEC1)"),
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::new(&files.cert, e.to_string()))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca, "CA certificate")? {
                roots
                    .add(cert)
                    .map_err(|e| LoadError::new(ca, format!("unusable CA certificate: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| LoadError::new(ca, format!("unusable CA certificates: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let not_after = not_after(&certs[0]);
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        LoadError::new(
            &files.key,
            format!(
                "unusable with the certificate in {}: {e}",
                files.cert.display()
            ),
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        not_after,
    })
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| LoadError::new(path, pem_reason(e, what)))?;
    if certs.is_empty() {
        return Err(LoadError::new(path, format!("no PEM {what} found")));
    }
    Ok(certs)
}

/// A reason that never quotes the file: PEM errors may carry a line of it.
fn pem_reason(e: rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => format!("no PEM {what} found"),
        _ => format!("not a valid PEM {what}"),
    }
}

/// The leaf certificate's notAfter, e.g. `Nov 29 19:10:11 2027 +00:00`.
fn not_after(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    Some(parsed.validity().not_after.to_string())
}

/// The config new connections get; replaced by [`reload`].
#[derive(Clone)]
pub struct TlsState {
    current: Arc<RwLock<Arc<ServerConfig>>>,
}

impl TlsState {
    pub fn new(config: Arc<ServerConfig>) -> TlsState {
        TlsState {
            current: Arc::new(RwLock::new(config)),
        }
    }

    /// An acceptor with the current config (one lock and one Arc clone per connection).
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = self.current.read().unwrap_or_else(PoisonError::into_inner);
        TlsAcceptor::from(Arc::clone(&config))
    }

    fn replace(&self, config: Arc<ServerConfig>) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
    }
}
