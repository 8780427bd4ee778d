//! The token service's signing keys: PEM files (created when missing), their RFC 7638 kids and the JWKS.

use crate::crypto::verify_keys::{RawJwk, VerifyKey};
use crate::startup_error::{FileAction, StartupError};
use aws_lc_rs::encoding::AsDer;
use base64::Engine;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey};
use std::path::Path;
use std::sync::Arc;

pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub enc: EncodingKey,
    pub jwk: serde_json::Value,
    pub verify: Arc<VerifyKey>,
    signer: Signer,
}

/// The private key parsed once: jsonwebtoken's `encode` re-parses it for every token.
enum Signer {
    Ecdsa(aws_lc_rs::signature::EcdsaKeyPair),
    Rsa(aws_lc_rs::signature::RsaKeyPair),
    Ed(aws_lc_rs::signature::Ed25519KeyPair),
}

impl Signer {
    fn new(alg: Algorithm, der: &[u8]) -> Result<Signer, String> {
        use aws_lc_rs::signature as sig;
        let e = |e: aws_lc_rs::error::KeyRejected| e.to_string();
        Ok(match alg {
            Algorithm::ES256 => Signer::Ecdsa(
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(e)?,
            ),
            Algorithm::ES384 => Signer::Ecdsa(
                sig::EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, der)
                    .map_err(e)?,
            ),
            Algorithm::RS256 => Signer::Rsa(sig::RsaKeyPair::from_der(der).map_err(e)?),
            Algorithm::EdDSA => Signer::Ed(sig::Ed25519KeyPair::from_pkcs8(der).map_err(e)?),
            other => return Err(format!("{other:?} keys cannot sign here")),
        })
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            Signer::Ecdsa(k) => k
                .sign(&rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|e| e.to_string()),
            Signer::Rsa(k) => {
                let mut out = vec![0; k.public_modulus_len()];
                k.sign(&aws_lc_rs::signature::RSA_PKCS1_SHA256, &rng, msg, &mut out)
                    .map_err(|e| e.to_string())?;
                Ok(out)
            }
            Signer::Ed(k) => Ok(k.sign(msg).as_ref().to_vec()),
        }
    }
}

impl SigningKey {
    /// A compact JWS of `claims` with `header`, signed by this key.
    pub fn sign(
        &self,
        header: &jsonwebtoken::Header,
        claims: &serde_json::Value,
    ) -> Result<String, String> {
        let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let h = serde_json::to_vec(header).map_err(|e| e.to_string())?;
        let c = serde_json::to_vec(claims).map_err(|e| e.to_string())?;
        let message = format!("{}.{}", b64(&h), b64(&c));
        let sig = self.signer.sign(message.as_bytes())?;
        Ok(format!("{message}.{}", b64(&sig)))
    }
}

/// The first key signs; every key is published, so tokens of a key being retired still verify.
pub struct SigningKeys {
    pub keys: Vec<Arc<SigningKey>>,
    pub jwks: String,
}

/// DER wrapped as PEM with the given label.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for c in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(c));
        out.push('\n');
    }
    out + &format!("-----END {label}-----\n")
}

/// A new private key in PKCS#8 PEM.
pub fn generate(alg: Algorithm) -> Result<String, String> {
    let fail = |e: aws_lc_rs::error::Unspecified| format!("cannot generate a {alg:?} key: {e}");
    let der: Vec<u8> = match alg {
        Algorithm::ES256 => {
            use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
            EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .and_then(|k| k.to_pkcs8v1())
                .map_err(fail)?
                .as_ref()
                .to_vec()
        }
        Algorithm::RS256 => {
            let k = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(fail)?;
            let der: aws_lc_rs::encoding::Pkcs8V1Der = k.as_der().map_err(fail)?;
            der.as_ref().to_vec()
        }
        Algorithm::EdDSA => aws_lc_rs::signature::Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8v1())
            .map_err(fail)?
            .as_ref()
            .to_vec(),
        other => {
            return Err(format!(
                "{other:?} keys cannot be generated; use ES256, RS256 or EdDSA"
            ))
        }
    };
    Ok(pem("PRIVATE KEY", &der))
}

type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>;

/// Reads a private key PEM and works out its algorithm, public JWK and kid.
pub fn load(pem: &[u8]) -> Result<SigningKey, String> {
    let candidates: [(Algorithm, PemParser); 4] = [
        (Algorithm::ES256, EncodingKey::from_ec_pem),
        (Algorithm::ES384, EncodingKey::from_ec_pem),
        (Algorithm::RS256, EncodingKey::from_rsa_pem),
        (Algorithm::EdDSA, EncodingKey::from_ed_pem),
    ];
    for (alg, parse) in candidates {
        let Ok(enc) = parse(pem) else { continue };
        let Ok(mut jwk) = Jwk::from_encoding_key(&enc, alg) else {
            continue;
        };
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| e.to_string())?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(jsonwebtoken::jwk::PublicKeyUse::Signature);
        let json = serde_json::to_value(&jwk).map_err(|e| e.to_string())?;
        let raw: RawJwk = serde_json::from_value(json.clone()).map_err(|e| e.to_string())?;
        let verify = Arc::new(raw.to_key(&[alg])?);
        let signer = Signer::new(alg, enc.as_bytes())?;
        return Ok(SigningKey {
            kid,
            alg,
            enc,
            jwk: json,
            verify,
            signer,
        });
    }
    Err("not a PKCS#8 EC P-256/P-384, RSA or Ed25519 private key in PEM".into())
}

impl SigningKeys {
    /// Loads every listed key, creating a missing file with a new key of `new_alg` (mode 0600).
    pub fn load_or_create(
        paths: &[std::path::PathBuf],
        new_alg: Algorithm,
    ) -> Result<SigningKeys, StartupError> {
        let mut keys = Vec::new();
        for path in paths {
            let key_problem = |problem| StartupError::Keys {
                path: path.clone(),
                problem,
            };
            if !path.exists() {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(StartupError::file(FileAction::CreateFolder, dir))?;
                }
                let pem = generate(new_alg).map_err(key_problem)?;
                crate::crypto::files::write_private(path, pem.as_bytes())?;
                tracing::warn!(path = %path.display(), alg = ?new_alg, "created a new signing key");
            }
            let pem = std::fs::read(path).map_err(StartupError::file(FileAction::Read, path))?;
            keys.push(Arc::new(load(&pem).map_err(key_problem)?));
        }
        if keys.is_empty() {
            return Err(StartupError::Setting {
                key: "token_service.signing_keys",
                problem: "is empty".into(),
            });
        }
        let jwks =
            serde_json::json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
                .to_string();
        Ok(SigningKeys { keys, jwks })
    }

    /// The key that signs access tokens: the first listed (loading refuses an empty list).
    pub fn current(&self) -> Option<&SigningKey> {
        self.keys.first().map(|k| k.as_ref())
    }

    /// The access-token key, shared (the identity JWTs of routes are signed with it too).
    pub fn current_shared(&self) -> Option<Arc<SigningKey>> {
        self.keys.first().cloned()
    }

    /// The first key of `alg`: ID tokens are signed with the algorithm their client expects.
    pub fn for_alg(&self, alg: Algorithm) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.alg == alg).map(|k| k.as_ref())
    }

    /// The service's keys: the configured ones, and one more for each ID-token algorithm a client
    /// expects (RS256 at least: OpenID Connect clients default to it) that none of them has.
    pub fn for_service(
        ts: &crate::config::TokenServiceSettings,
        clients: &[crate::config::Client],
    ) -> Result<SigningKeys, StartupError> {
        let mut keys = SigningKeys::load_or_create(&ts.signing_keys, ts.key_algorithm)?;
        let mut algs = vec![Algorithm::RS256];
        for c in clients {
            if !algs.contains(&c.id_token_alg) {
                algs.push(c.id_token_alg);
            }
        }
        let dir = ts
            .signing_keys
            .first()
            .and_then(|p| p.parent())
            .unwrap_or(Path::new("."));
        keys.ensure_algorithms(&algs, dir)?;
        Ok(keys)
    }

    /// Adds a key of each of `algs` that no loaded key has, from `{dir}/signing-{alg}.pem` next to
    /// the first configured key (created when missing), so ID tokens can be signed as clients
    /// expect. Every key is published in the JWKS.
    pub fn ensure_algorithms(
        &mut self,
        algs: &[Algorithm],
        dir: &Path,
    ) -> Result<(), StartupError> {
        for alg in algs {
            if self.for_alg(*alg).is_some() {
                continue;
            }
            let path = dir.join(format!("signing-{}.pem", format!("{alg:?}").to_lowercase()));
            let mut extra = SigningKeys::load_or_create(&[path], *alg)?;
            self.keys.append(&mut extra.keys);
        }
        self.jwks =
            serde_json::json!({ "keys": self.keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
                .to_string();
        Ok(())
    }

    pub fn verify_keys(&self) -> Vec<Arc<VerifyKey>> {
        self.keys.iter().map(|k| k.verify.clone()).collect()
    }
}

/// Writes a new key file for `gatehouse keygen`.
pub fn keygen(alg: Algorithm, out: &Path) -> Result<String, StartupError> {
    let key_problem = |problem| StartupError::Keys {
        path: out.to_path_buf(),
        problem,
    };
    if out.exists() {
        return Err(key_problem("exists; not overwriting a key".into()));
    }
    let pem = generate(alg).map_err(key_problem)?;
    crate::crypto::files::write_private(out, pem.as_bytes())?;
    let pem = std::fs::read(out).map_err(StartupError::file(FileAction::Read, out))?;
    Ok(load(&pem).map_err(key_problem)?.kid)
}
