//! Verification keys: PEM, JWK and shared-secret keys parsed once, each pinned to the algorithms it may verify.

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::hmac;
use aws_lc_rs::rsa::PublicKeyComponents;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind};
use serde::Deserialize;

type PemParser = fn(&[u8]) -> jsonwebtoken::errors::Result<DecodingKey>;

/// A key ready to check signatures: parsed once, so a verification costs only the cryptography.
enum Checker {
    PublicKey(ParsedPublicKey),
    Hmac(Box<hmac::Key>),
}

/// A public key (or HMAC secret) and the only algorithms it may verify, each with its parsed checker.
pub struct VerifyKey {
    pub kid: Option<String>,
    pub algorithms: Vec<Algorithm>,
    checkers: Vec<(Algorithm, Checker)>,
    /// SHA-256 of the key material: tells whether a reloaded configuration has the same key
    fingerprint: [u8; 32],
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

fn verification_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &signature::ED25519,
        _ => return None,
    })
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

/// The key bytes aws-lc expects: DER (SPKI or PKCS#1) for RSA, the point for EC, the raw key for Ed25519.
fn key_bytes(key: &DecodingKey) -> Result<Vec<u8>, String> {
    match key.kind() {
        DecodingKeyKind::SecretOrDer(b) => Ok(b.clone()),
        DecodingKeyKind::RsaModulusExponent { n, e } => {
            let strip = |b: &[u8]| {
                b.iter()
                    .position(|x| *x != 0)
                    .map(|i| b.get(i..).unwrap_or_default().to_vec())
                    .unwrap_or_default()
            };
            let components = PublicKeyComponents {
                n: strip(n),
                e: strip(e),
            };
            let der: PublicKeyX509Der = components
                .as_der()
                .map_err(|_| "the RSA key is malformed".to_string())?;
            Ok(der.as_ref().to_vec())
        }
    }
}

impl VerifyKey {
    /// Pins `key` to `algorithms`, parsing it once for each.
    pub fn new(
        kid: Option<String>,
        key: &DecodingKey,
        algorithms: Vec<Algorithm>,
    ) -> Result<Self, String> {
        let bytes = key_bytes(key)?;
        let mut checkers = Vec::new();
        for alg in &algorithms {
            let checker = if let Some(h) = hmac_algorithm(*alg) {
                Checker::Hmac(Box::new(hmac::Key::new(h, &bytes)))
            } else if let Some(v) = verification_algorithm(*alg) {
                Checker::PublicKey(
                    ParsedPublicKey::new(v, &bytes)
                        .map_err(|e| format!("the key does not fit {alg:?}: {e}"))?,
                )
            } else {
                return Err(format!("{alg:?} is not supported"));
            };
            checkers.push((*alg, checker));
        }
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes).as_ref(),
        );
        Ok(VerifyKey {
            kid,
            algorithms,
            checkers,
            fingerprint,
        })
    }

    /// True when both are the same key for the same algorithms.
    pub fn same_as(&self, other: &VerifyKey) -> bool {
        self.fingerprint == other.fingerprint
            && self.kid == other.kid
            && self.algorithms == other.algorithms
    }

    /// Checks `sig` over `message` with algorithm `alg`; HMAC tags compare in constant time.
    pub fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> bool {
        self.checkers.iter().any(|(a, c)| {
            *a == alg
                && match c {
                    Checker::PublicKey(k) => k.verify_sig(message, sig).is_ok(),
                    Checker::Hmac(k) => hmac::verify(k, message, sig).is_ok(),
                }
        })
    }
}

/// Parses an algorithm name from configuration; `none` is refused by name.
pub fn parse_algorithm(name: &str) -> Result<Algorithm, String> {
    if name.eq_ignore_ascii_case("none") {
        return Err("\"none\" is never accepted".into());
    }
    name.parse::<Algorithm>().map_err(|_| {
        format!(
            "unknown algorithm {name:?} (known: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 EdDSA HS256 HS384 HS512)"
        )
    })
}

fn in_family(algs: &[Algorithm], family: AlgorithmFamily) -> Vec<Algorithm> {
    algs.iter()
        .copied()
        .filter(|a| a.family() == family)
        .collect()
}

impl VerifyKey {
    pub fn hmac(secret: &[u8], algorithms: Vec<Algorithm>) -> Result<Self, String> {
        Self::new(
            None,
            &DecodingKey::from_secret(secret),
            in_family(&algorithms, AlgorithmFamily::Hmac),
        )
    }

    /// A PEM public key; its family decides which of the issuer's algorithms it may verify.
    pub fn from_pem(pem: &[u8], allowed: &[Algorithm]) -> Result<Self, String> {
        let attempts: [(AlgorithmFamily, PemParser); 3] = [
            (AlgorithmFamily::Rsa, DecodingKey::from_rsa_pem),
            (AlgorithmFamily::Ec, DecodingKey::from_ec_pem),
            (AlgorithmFamily::Ed, DecodingKey::from_ed_pem),
        ];
        for (family, parse) in attempts {
            if let Ok(key) = parse(pem) {
                let algorithms = in_family(allowed, family);
                if algorithms.is_empty() {
                    return Err(format!(
                        "this is a {family:?} key but none of the issuer's algorithms use it"
                    ));
                }
                // An EC key serves only its curve's algorithm: a P-256 key is for ES256 even
                // when ES384 is allowed too.
                let fitting: Vec<Algorithm> = algorithms
                    .iter()
                    .copied()
                    .filter(|a| Self::new(None, &key, vec![*a]).is_ok())
                    .collect();
                if fitting.is_empty() {
                    return Self::new(None, &key, algorithms);
                }
                return Self::new(None, &key, fitting);
            }
        }
        Err("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".into())
    }

    pub fn allows(&self, alg: Algorithm) -> bool {
        self.algorithms.contains(&alg)
    }
}

/// One entry of a JWKS document, read strictly: only what is needed to build a public key.
#[derive(Debug, Deserialize)]
pub struct RawJwk {
    pub kty: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default, rename = "use")]
    pub use_: Option<String>,
    #[serde(default)]
    pub alg: Option<String>,
    #[serde(default)]
    pub n: Option<String>,
    #[serde(default)]
    pub e: Option<String>,
    #[serde(default)]
    pub crv: Option<String>,
    #[serde(default)]
    pub x: Option<String>,
    #[serde(default)]
    pub y: Option<String>,
}

pub const MAX_KID_LEN: usize = 128;

/// `kid` is untrusted: a short printable string, used only as a map key.
pub fn kid_is_sane(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| (0x21..0x7f).contains(&b))
}

impl RawJwk {
    /// Builds a key the issuer may use, or says why this entry is refused.
    pub fn to_key(&self, allowed: &[Algorithm]) -> Result<VerifyKey, String> {
        if let Some(u) = &self.use_ {
            if u != "sig" {
                return Err(format!("use {u:?} is not \"sig\""));
            }
        }
        if let Some(kid) = &self.kid {
            if !kid_is_sane(kid) {
                return Err("kid is too long or not printable".into());
            }
        }
        let (family, key) = match self.kty.as_str() {
            "RSA" => {
                let n = self.n.as_deref().ok_or("RSA key without n")?;
                let e = self.e.as_deref().ok_or("RSA key without e")?;
                let n_bytes = URL_SAFE_NO_PAD
                    .decode(n)
                    .map_err(|_| "RSA n is not base64url")?;
                let bits = n_bytes.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(format!("RSA key of {bits} bits is under 2048"));
                }
                let key = DecodingKey::from_rsa_components(n, e).map_err(|e| e.to_string())?;
                (AlgorithmFamily::Rsa, key)
            }
            "EC" => {
                let x = self.x.as_deref().ok_or("EC key without x")?;
                let y = self.y.as_deref().ok_or("EC key without y")?;
                let key = DecodingKey::from_ec_components(x, y).map_err(|e| e.to_string())?;
                (AlgorithmFamily::Ec, key)
            }
            "OKP" => {
                if self.crv.as_deref() != Some("Ed25519") {
                    return Err("OKP key is not Ed25519".into());
                }
                let x = self.x.as_deref().ok_or("OKP key without x")?;
                let key = DecodingKey::from_ed_components(x).map_err(|e| e.to_string())?;
                (AlgorithmFamily::Ed, key)
            }
            "oct" => return Err("symmetric (oct) keys are never taken from a JWKS".into()),
            other => return Err(format!("unsupported kty {other:?}")),
        };
        let mut algorithms = in_family(allowed, family);
        if family == AlgorithmFamily::Ec {
            // The curve decides the one ECDSA algorithm the key can serve.
            let want = match self.crv.as_deref() {
                Some("P-256") => Algorithm::ES256,
                Some("P-384") => Algorithm::ES384,
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            algorithms.retain(|a| *a == want);
        }
        if let Some(alg) = &self.alg {
            let alg: Algorithm = alg.parse().map_err(|_| format!("unknown alg {alg:?}"))?;
            if !algorithms.contains(&alg) {
                return Err(format!("alg {alg:?} is not allowed for this issuer"));
            }
            algorithms = vec![alg];
        }
        if algorithms.is_empty() {
            return Err("the key fits none of the issuer's algorithms".into());
        }
        VerifyKey::new(self.kid.clone(), &key, algorithms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ec_key_serves_its_curves_algorithm_among_several() {
        for (alg, curve) in [
            (
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                Algorithm::ES256,
            ),
            (
                &aws_lc_rs::signature::ECDSA_P384_SHA384_FIXED_SIGNING,
                Algorithm::ES384,
            ),
        ] {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let pkcs8 = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).unwrap();
            use aws_lc_rs::encoding::AsDer;
            use aws_lc_rs::signature::KeyPair;
            let der = pair.public_key().as_der().unwrap();
            let pem = format!(
                "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(der.as_ref())
            );
            let key =
                VerifyKey::from_pem(pem.as_bytes(), &[Algorithm::ES256, Algorithm::ES384]).unwrap();
            assert_eq!(key.algorithms, vec![curve]);
        }
    }
}
