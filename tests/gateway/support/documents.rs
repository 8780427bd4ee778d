//! An HTTPS server on loopback with a certificate of its own, answering each path it knows with a
//! JSON document: where the token service fetches client ID metadata documents in the tests.

use rustls::pki_types::pem::PemObject;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the document server answers a path with: a delay, then a JSON body.
pub type Answers = Vec<(&'static str, Duration, Vec<u8>)>;

/// An HTTPS server on loopback answering each path it knows, with a certificate of its own.
pub struct Documents {
    pub port: u16,
    /// the certificate, for `cimd_ca`
    pub ca: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Documents {
    /// `answers` sees the server's port, which the documents name in their `client_id`.
    pub async fn start(answers: impl FnOnce(u16) -> Answers) -> Documents {
        gatehouse::crypto::tls::install();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("doc.crt"), dir.path().join("doc.key"));
        gatehouse::crypto::files::write_self_signed(&cert, &key).unwrap();
        let certs: Vec<_> = rustls::pki_types::CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&key).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers = Arc::new(answers(port));
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, answers) = (acceptor.clone(), answers.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 4096];
                    let n = tls.read(&mut buf).await.unwrap_or(0);
                    let head = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let Some((_, delay, body)) = answers.iter().find(|(p, _, _)| *p == path) else {
                        return;
                    };
                    tokio::time::sleep(*delay).await;
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                    let _ = tls.write_all(head.as_bytes()).await;
                    let _ = tls.write_all(body).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Documents {
            port,
            ca: cert,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }
}
