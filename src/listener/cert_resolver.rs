//! The TLS certificate the listeners serve, swappable while they run: a reload reads the files again
//! and the next handshake gets the new certificate.

use crate::startup_error::StartupError;
use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug)]
pub struct CertResolver(ArcSwap<CertifiedKey>);

/// Reads a certificate chain and its key into the form the TLS stack serves, the key loaded by the
/// gateway's crypto provider.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, StartupError> {
    let (certs, key_der) = crate::crypto::files::read_pair(cert, key)?;
    let tls = |problem: String| StartupError::Tls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        problem,
    };
    let (c, k) = (cert.to_string_lossy(), key.to_string_lossy());
    CertifiedKey::from_der(certs, key_der, &crate::crypto::tls::provider())
        .map(Arc::new)
        .map_err(|e| tls(format!("{c} and {k} do not form a usable pair: {e}")))
}

impl CertResolver {
    pub fn new(first: Arc<CertifiedKey>) -> Self {
        CertResolver(ArcSwap::new(first))
    }

    /// Serves `next` from the next handshake on.
    pub fn replace(&self, next: Arc<CertifiedKey>) {
        self.0.store(next);
    }
}

impl pingora::tls::ResolvesServerCert for CertResolver {
    fn resolve(&self, _: pingora::tls::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.load_full())
    }
}
