//! TLS on the client listeners, terminated by the gateway's own rustls configuration.
//!
//! Pingora's listener settings build a rustls configuration with a 256-entry session cache and no
//! ticket keys, so most returning clients of a busy gateway pay a full handshake. Here the listeners
//! accept plain TCP and the gateway runs the handshake with a configuration that keeps
//! `SESSION_CACHE` sessions (TLS 1.2 session IDs) and issues TLS 1.3 tickets under keys that rotate
//! every six hours.

use pingora::listeners::tls::Acceptor;
use pingora::protocols::Stream;
use pingora::tls::{version, ResolvesServerCert, ServerConfig};
use std::net::SocketAddr;
use std::sync::Arc;

/// Sessions kept for resumption by session ID (TLS 1.2): about 200 bytes each.
pub const SESSION_CACHE: usize = 20_000;

/// The handshake for the connections that arrive on the TLS listeners.
pub struct TlsTermination {
    acceptor: Acceptor,
    listeners: Vec<SocketAddr>,
}

/// The server configuration: the gateway's crypto provider (`crypto::tls`), TLS 1.2 and 1.3, ALPN
/// `h2` then `http/1.1`, certificates from `resolver` (which a reload refreshes), a session cache and
/// rotating ticket keys. A ticket key that cannot be made from the system's randomness stops start-up.
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, String> {
    let mut config = ServerConfig::builder_with_provider(crate::crypto::tls::provider())
        .with_protocol_versions(&[&version::TLS12, &version::TLS13])
        .map_err(|e| format!("tls: the crypto provider cannot serve TLS 1.2 and 1.3: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
    config.ticketer = crate::crypto::tls::ticketer()
        .map_err(|e| format!("tls: cannot make a session ticket key: {e}"))?;
    Ok(config)
}

/// True when `local` is the address a connection reached through `listener` (a wildcard listener
/// matches any address on its port).
fn reached(listener: &SocketAddr, local: &SocketAddr) -> bool {
    listener.port() == local.port()
        && (listener.ip().is_unspecified() || listener.ip() == local.ip())
}

impl TlsTermination {
    pub fn new(config: ServerConfig, listeners: Vec<SocketAddr>) -> Self {
        TlsTermination {
            acceptor: Acceptor::from_server_config(Arc::new(config)),
            listeners,
        }
    }

    /// True for a connection, not yet encrypted, that arrived on one of the TLS listeners.
    pub fn applies_to(&self, stream: &Stream) -> bool {
        if stream.get_ssl_digest().is_some() {
            return false;
        }
        let local = stream
            .get_socket_digest()
            .and_then(|d| d.local_addr().and_then(|a| a.as_inet()).copied());
        local.is_some_and(|local| self.listeners.iter().any(|l| reached(l, &local)))
    }

    pub fn acceptor(&self) -> &Acceptor {
        &self.acceptor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_match_any_address_on_their_port() {
        let any: SocketAddr = "0.0.0.0:8443".parse().unwrap();
        let one: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let elsewhere: SocketAddr = "10.0.0.1:8443".parse().unwrap();
        let other_port: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        assert!(reached(&any, &local) && reached(&any, &elsewhere));
        assert!(reached(&one, &local) && !reached(&one, &elsewhere));
        assert!(!reached(&any, &other_port));
    }
}
