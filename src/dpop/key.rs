//! A DPoP proof's public key: the `jwk` header member read strictly (a private member refuses it),
//! its RFC 7638 thumbprint, and the one signature check it makes.

use aws_lc_rs::signature::{
    self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents, VerificationAlgorithm,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::Deserialize;

/// The `jwk` member as sent. Repeating a member is refused by the parser; members a private key
/// would have (RFC 7518 §6) are looked for only to refuse the key.
#[derive(Debug, Deserialize)]
pub struct RawKey {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    q: Option<IgnoredAny>,
    dp: Option<IgnoredAny>,
    dq: Option<IgnoredAny>,
    qi: Option<IgnoredAny>,
    oth: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
}

/// What the key is, as aws-lc-rs verifies it.
enum Material {
    /// an EC point or Ed25519 key, parsed (and checked to be on its curve) once: a client's key is
    /// kept with its proof header and serves many proofs
    Key(ParsedPublicKey),
    /// modulus and exponent
    Rsa(&'static RsaParameters, Vec<u8>, Vec<u8>),
}

/// A proof's key, checked to fit the proof's algorithm, with its thumbprint.
pub struct ProofKey {
    material: Material,
    /// RFC 7638: base64url SHA-256 of the key's required members in canonical JSON
    pub thumbprint: String,
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofKey")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

/// Why a key is refused; the text is shown to the client.
pub type KeyError = &'static str;

fn member(v: &Option<String>, missing: KeyError) -> Result<&str, KeyError> {
    v.as_deref().filter(|s| !s.is_empty()).ok_or(missing)
}

/// Strict base64url: no padding, no stray bits, so a key has exactly one spelling and one
/// thumbprint.
fn bytes(b64: &str) -> Result<Vec<u8>, KeyError> {
    URL_SAFE_NO_PAD
        .decode(b64)
        .map_err(|_| "the DPoP proof's jwk has a member that is not base64url")
}

/// The SHA-256 thumbprint of canonical JSON (RFC 7638 §3): the members are base64url or known
/// names, so they need no escaping.
fn thumbprint(canonical: &str) -> String {
    crate::crypto::sha256_b64url(canonical)
}

fn parsed(alg: &'static dyn VerificationAlgorithm, key: &[u8]) -> Result<Material, KeyError> {
    ParsedPublicKey::new(alg, key)
        .map(Material::Key)
        .map_err(|_| "the DPoP proof's jwk is not a point of its curve")
}

fn rsa_parameters(alg: Algorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl RawKey {
    /// The key, when it is a public key of the kind `alg` needs.
    pub fn for_algorithm(&self, alg: Algorithm) -> Result<ProofKey, KeyError> {
        let private = [
            &self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth, &self.k,
        ];
        if private.iter().any(|m| m.is_some()) {
            return Err("the DPoP proof's jwk holds a private key");
        }
        match (self.kty.as_str(), alg) {
            ("EC", Algorithm::ES256 | Algorithm::ES384) => self.ec(alg),
            ("OKP", Algorithm::EdDSA) => self.okp(),
            ("RSA", _) => self.rsa(alg),
            _ => Err("the DPoP proof's jwk is not a key for its alg"),
        }
    }

    fn ec(&self, alg: Algorithm) -> Result<ProofKey, KeyError> {
        let (crv, len, verify): (_, _, &'static dyn VerificationAlgorithm) = match alg {
            Algorithm::ES256 => ("P-256", 32, &signature::ECDSA_P256_SHA256_FIXED),
            _ => ("P-384", 48, &signature::ECDSA_P384_SHA384_FIXED),
        };
        if self.crv.as_deref() != Some(crv) {
            return Err("the DPoP proof's jwk is not on the curve of its alg");
        }
        let x = member(&self.x, "the DPoP proof's jwk has no x")?;
        let y = member(&self.y, "the DPoP proof's jwk has no y")?;
        let mut point = Vec::with_capacity(1 + 2 * len);
        point.push(4);
        point.extend(bytes(x)?);
        point.extend(bytes(y)?);
        if point.len() != 1 + 2 * len {
            return Err("the DPoP proof's jwk has coordinates of the wrong length");
        }
        Ok(ProofKey {
            material: parsed(verify, &point)?,
            thumbprint: thumbprint(&format!(
                r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#
            )),
        })
    }

    fn okp(&self) -> Result<ProofKey, KeyError> {
        if self.crv.as_deref() != Some("Ed25519") {
            return Err("the DPoP proof's jwk is not an Ed25519 key");
        }
        let x = member(&self.x, "the DPoP proof's jwk has no x")?;
        let key = bytes(x)?;
        if key.len() != 32 {
            return Err("the DPoP proof's jwk has a key of the wrong length");
        }
        Ok(ProofKey {
            material: parsed(&signature::ED25519, &key)?,
            thumbprint: thumbprint(&format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#)),
        })
    }

    fn rsa(&self, alg: Algorithm) -> Result<ProofKey, KeyError> {
        let params = rsa_parameters(alg).ok_or("the DPoP proof's jwk is not a key for its alg")?;
        let n = member(&self.n, "the DPoP proof's jwk has no n")?;
        let e = member(&self.e, "the DPoP proof's jwk has no e")?;
        let (modulus, exponent) = (bytes(n)?, bytes(e)?);
        let bits = modulus.iter().skip_while(|b| **b == 0).count() * 8;
        if bits < 2048 {
            return Err("the DPoP proof's RSA key is shorter than 2048 bits");
        }
        Ok(ProofKey {
            material: Material::Rsa(params, modulus, exponent),
            thumbprint: thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#)),
        })
    }
}

impl ProofKey {
    /// One signature check.
    pub fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        match &self.material {
            Material::Key(key) => key.verify_sig(message, sig),
            Material::Rsa(params, n, e) => {
                RsaPublicKeyComponents { n, e }.verify(params, message, sig)
            }
        }
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(v: serde_json::Value) -> RawKey {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_rfc_7638_example_has_its_thumbprint() {
        // RFC 7638 §3.1: the RSA key and the thumbprint the RFC gives for it
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let k = raw(
            serde_json::json!({"kty": "RSA", "n": n, "e": "AQAB", "alg": "RS256",
            "kid": "2011-04-29"}),
        );
        let key = k.for_algorithm(Algorithm::RS256).unwrap();
        assert_eq!(
            key.thumbprint,
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
        assert!(
            k.for_algorithm(Algorithm::PS256).is_ok(),
            "PS256 uses RSA keys too"
        );
        assert!(k.for_algorithm(Algorithm::ES256).is_err());
    }

    fn ec_key() -> (aws_lc_rs::signature::EcdsaKeyPair, serde_json::Value) {
        use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let p = kp.public_key().as_ref().to_vec();
        let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])});
        (kp, jwk)
    }

    #[test]
    fn an_ec_key_verifies_its_signatures_and_has_a_stable_thumbprint() {
        let (kp, jwk) = ec_key();
        let key = raw(jwk.clone()).for_algorithm(Algorithm::ES256).unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let sig = kp.sign(&rng, b"message").unwrap();
        assert!(key.verifies(b"message", sig.as_ref()));
        assert!(!key.verifies(b"other", sig.as_ref()));
        // member order and extra members do not change the thumbprint
        let mut shuffled = serde_json::json!({"y": jwk["y"], "use": "sig", "x": jwk["x"]});
        shuffled["crv"] = jwk["crv"].clone();
        shuffled["kty"] = jwk["kty"].clone();
        let again = raw(shuffled).for_algorithm(Algorithm::ES256).unwrap();
        assert_eq!(key.thumbprint, again.thumbprint);
        assert_eq!(key.thumbprint.len(), 43);
        assert!(
            raw(jwk).for_algorithm(Algorithm::ES384).is_err(),
            "wrong curve"
        );
    }

    #[test]
    fn ed25519_and_rsa_keys_verify_their_algorithms_signatures() {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair, RsaKeyPair};
        let ed = Ed25519KeyPair::generate().unwrap();
        let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(ed.public_key().as_ref())});
        let key = raw(jwk).for_algorithm(Algorithm::EdDSA).unwrap();
        assert!(key.verifies(b"m", ed.sign(b"m").as_ref()));
        assert!(!key.verifies(b"n", ed.sign(b"m").as_ref()));
        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let public = rsa.public_key();
        let jwk = serde_json::json!({"kty": "RSA",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero())});
        let rng = aws_lc_rs::rand::SystemRandom::new();
        for (alg, padding) in [
            (Algorithm::RS256, &aws_lc_rs::signature::RSA_PKCS1_SHA256),
            (Algorithm::PS256, &aws_lc_rs::signature::RSA_PSS_SHA256),
        ] {
            let mut sig = vec![0; rsa.public_modulus_len()];
            rsa.sign(padding, &rng, b"m", &mut sig).unwrap();
            let key = raw(jwk.clone()).for_algorithm(alg).unwrap();
            assert!(key.verifies(b"m", &sig), "{alg:?}");
            assert!(!key.verifies(b"n", &sig), "{alg:?}");
        }
    }

    #[test]
    fn private_malformed_and_mismatched_keys_are_refused() {
        let (_, jwk) = ec_key();
        for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
            let mut with = jwk.clone();
            with[private] = serde_json::json!("AAAA");
            assert_eq!(
                raw(with).for_algorithm(Algorithm::ES256).unwrap_err(),
                "the DPoP proof's jwk holds a private key",
                "{private}"
            );
        }
        let mut short = jwk.clone();
        short["x"] = serde_json::json!("AAAA");
        assert!(raw(short).for_algorithm(Algorithm::ES256).is_err());
        let mut off_curve = jwk.clone();
        off_curve["y"] = serde_json::json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        assert_eq!(
            raw(off_curve).for_algorithm(Algorithm::ES256).unwrap_err(),
            "the DPoP proof's jwk is not a point of its curve"
        );
        let mut padded = jwk.clone();
        padded["x"] = serde_json::json!(format!("{}=", jwk["x"].as_str().unwrap()));
        assert!(raw(padded).for_algorithm(Algorithm::ES256).is_err());
        let oct = raw(serde_json::json!({"kty": "oct", "k": "c2VjcmV0"}));
        assert!(oct.for_algorithm(Algorithm::HS256).is_err());
        let small = raw(serde_json::json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}));
        assert!(small.for_algorithm(Algorithm::RS256).is_err());
        let twice = r#"{"kty":"EC","crv":"P-256","x":"a","x":"b","y":"c"}"#;
        assert!(
            serde_json::from_str::<RawKey>(twice).is_err(),
            "a repeated member"
        );
    }
}
