//! Certificate files: checking a cert/key pair before pingora reads it, and making a development certificate.

use crate::startup_error::{FileAction, StartupError};
use std::path::Path;

/// A PEM certificate chain and its private key, as DER.
pub type Pair = (
    Vec<pingora::tls::CertificateDer<'static>>,
    pingora::tls::PrivateKeyDer<'static>,
);

/// Reads the pair, failing with a readable message when the files are not a PEM chain and key.
pub fn read_pair(cert: &Path, key: &Path) -> Result<Pair, StartupError> {
    let (c, k) = (cert.to_string_lossy(), key.to_string_lossy());
    let problem = match pingora::tls::load_certs_and_key_files(&c, &k) {
        Ok(Some(pair)) => return Ok(pair),
        Ok(None) => format!("{c} and {k} hold no certificate or no private key"),
        Err(e) => format!("cannot load {c} / {k}: {e}"),
    };
    Err(StartupError::Tls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        problem,
    })
}

/// Fails with a readable message when the files are not a usable PEM certificate chain and key.
pub fn check_pair(cert: &Path, key: &Path) -> Result<(), StartupError> {
    read_pair(cert, key).map(|_| ())
}

/// Writes a self-signed certificate for localhost and 127.0.0.1 (the key readable by its owner only).
pub fn write_self_signed(cert: &Path, key: &Path) -> Result<(), StartupError> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| StartupError::Tls {
        cert: cert.to_path_buf(),
        key: key.to_path_buf(),
        problem: format!("cannot create a certificate: {e}"),
    })?;
    for p in [cert, key] {
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir)
                .map_err(StartupError::file(FileAction::CreateFolder, dir))?;
        }
    }
    std::fs::write(cert, ck.cert.pem()).map_err(StartupError::file(FileAction::Write, cert))?;
    write_private(key, ck.signing_key.serialize_pem().as_bytes())
}

/// Writes a secret file with mode 0600.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), StartupError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(StartupError::file(FileAction::Write, path))?;
    f.write_all(data)
        .map_err(StartupError::file(FileAction::Write, path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_development_certificate_is_a_usable_pair_with_a_private_key() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c/cert.pem"), dir.path().join("k/key.pem"));
        write_self_signed(&cert, &key).unwrap();
        assert!(check_pair(&cert, &key).is_ok());
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is its owner's alone");
    }

    #[test]
    fn files_that_are_not_a_pair_are_refused_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "not a certificate").unwrap();
        write_private(&key, b"not a key").unwrap();
        let e = check_pair(&cert, &key).unwrap_err();
        assert!(e.to_string().contains("cert.pem"), "{e}");
        let missing = check_pair(&dir.path().join("none.pem"), &key).unwrap_err();
        assert!(missing.to_string().contains("none.pem"), "{missing}");
    }
}
