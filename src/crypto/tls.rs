//! The crypto provider of all the gateway's TLS: aws-lc-rs, the library its JWT and secret checks use too.
//!
//! The listeners, their certificates and their ticket keys take it explicitly. Everything else that
//! speaks TLS in the process (Pingora's connections to upstreams, key-set and login-provider fetches,
//! the Redis store) takes rustls's process default, which `install` makes aws-lc-rs before Pingora's
//! own `install_default_crypto_provider` (ring) would run: that call then changes nothing. On the
//! server's side aws-lc-rs measured faster than ring on every handshake and AES-GCM record
//! (docs/benchmarks.md, "TLS crypto provider").

use rustls::crypto::{aws_lc_rs, CryptoProvider};
use rustls::server::ProducesTickets;
use std::sync::{Arc, OnceLock};

/// The provider, with its default cipher suites and key exchange groups.
pub fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(aws_lc_rs::default_provider()))
        .clone()
}

/// Makes the provider the process default. False when another one was installed first (then the TLS
/// the gateway does not configure itself uses that one); the answer of the first call stays.
pub fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED
        .get_or_init(|| CryptoProvider::install_default(aws_lc_rs::default_provider()).is_ok())
}

/// Session ticket keys of the same provider (AES-256 and HMAC-SHA256), rotating every six hours.
pub fn ticketer() -> Result<Arc<dyn ProducesTickets>, rustls::Error> {
    aws_lc_rs::Ticketer::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::NamedGroup;

    /// Among rustls's providers only aws-lc-rs offers the hybrid post-quantum group.
    fn is_aws_lc(p: &CryptoProvider) -> bool {
        p.kx_groups
            .iter()
            .any(|g| g.name() == NamedGroup::X25519MLKEM768)
    }

    #[test]
    fn the_provider_is_aws_lc_and_becomes_the_process_default() {
        assert!(is_aws_lc(&provider()));
        assert!(install(), "nothing else in the tests installs a provider");
        let default = CryptoProvider::get_default().unwrap();
        assert!(is_aws_lc(default));
        assert!(install(), "a second call keeps the first answer");
    }

    #[test]
    fn tickets_made_with_the_keys_open_again() {
        let t = ticketer().unwrap();
        assert!(t.enabled());
        let sealed = t.encrypt(b"session state").unwrap();
        assert_eq!(t.decrypt(&sealed).unwrap(), b"session state");
    }
}
