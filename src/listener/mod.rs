//! Where bytes arrive: the TLS handshake, the certificates it serves, and the HTTP/1 header deadline.

pub mod cert_resolver;
pub mod header_deadline;
pub mod tls_accept;
