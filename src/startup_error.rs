//! Why the gateway cannot start: each failure names the file, setting, address or store it concerns.

use std::net::SocketAddr;
use std::path::PathBuf;

/// A start-up failure (also a reload's, for the parts a reload builds again). The message says
/// what went wrong where; the fields keep the file, setting, address or store for callers.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// a file could not be read or written, or a folder for it made
    #[error("cannot {action} {}: {source}", path.display())]
    File {
        action: FileAction,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// the certificate and key the TLS listeners serve
    #[error("tls: {problem}")]
    Tls {
        cert: PathBuf,
        key: PathBuf,
        problem: String,
    },
    /// a signing key file of the token service
    #[error("{}: {problem}", path.display())]
    Keys { path: PathBuf, problem: String },
    /// the store (`[store]`) could not be opened or read; a Redis URL is never quoted, as it may
    /// hold a password
    #[error("store ({backend}): {problem}")]
    Store {
        backend: &'static str,
        problem: String,
    },
    /// a listening address is taken or not allowed
    #[error("cannot listen on {addr}: {source}")]
    Listener {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// a setting that cannot take effect as written
    #[error("{key}: {problem}")]
    Setting { key: &'static str, problem: String },
    /// a part of the gateway could not be built: upstream pools, verifier, providers, TLS setup
    #[error("{part}: {problem}")]
    Part { part: &'static str, problem: String },
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// What was being done to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileAction {
    Read,
    Write,
    CreateFolder,
}

impl std::fmt::Display for FileAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FileAction::Read => "read",
            FileAction::Write => "write",
            FileAction::CreateFolder => "create",
        })
    }
}

impl StartupError {
    /// A file error, with the path it concerns.
    pub fn file(action: FileAction, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| StartupError::File {
            action,
            path,
            source,
        }
    }

    /// A part that failed with a message of its own.
    pub fn part(part: &'static str) -> impl FnOnce(String) -> Self {
        move |problem| StartupError::Part { part, problem }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_what_failed_and_where() {
        let gone = || std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let e = StartupError::file(FileAction::Read, "keys/k.pem".as_ref())(gone());
        assert_eq!(e.to_string(), "cannot read keys/k.pem: No such file");
        assert!(std::error::Error::source(&e).is_some());
        let e = StartupError::Tls {
            cert: "bad.crt".into(),
            key: "bad.key".into(),
            problem: "bad.crt and bad.key hold no certificate or no private key".into(),
        };
        assert!(e.to_string().starts_with("tls: bad.crt"));
        let e = StartupError::Keys {
            path: "k.pem".into(),
            problem: "not a key".into(),
        };
        assert_eq!(e.to_string(), "k.pem: not a key");
        let e = StartupError::Listener {
            addr: "127.0.0.1:1".parse().unwrap(),
            source: std::io::Error::new(std::io::ErrorKind::AddrInUse, "in use"),
        };
        assert_eq!(e.to_string(), "cannot listen on 127.0.0.1:1: in use");
        let e = StartupError::Store {
            backend: "redis",
            problem: "store.url: invalid".into(),
        };
        assert_eq!(e.to_string(), "store (redis): store.url: invalid");
    }
}
