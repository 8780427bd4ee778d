//! The TLS certificate the listeners serve, swappable while they run: a reload reads the files again
//! and the next handshake gets the new certificate.

use arc_swap::ArcSwap;
use pingora::tls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug)]
pub struct CertResolver(ArcSwap<CertifiedKey>);

/// Reads a certificate chain and its key into the form the TLS stack serves.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let (certs, key_der) =
        crate::crypto::files::read_pair(cert, key).map_err(|e| format!("tls: {e}"))?;
    let (c, k) = (cert.to_string_lossy(), key.to_string_lossy());
    let provider = pingora::tls::CryptoProvider::get_default()
        .ok_or("tls: no crypto provider is installed")?;
    CertifiedKey::from_der(certs, key_der, provider)
        .map(Arc::new)
        .map_err(|e| format!("tls: {c} and {k} do not form a usable pair: {e}"))
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
