//! Signing keys for tests and benchmarks, made with aws-lc-rs and used through jsonwebtoken, with their JWKs and PEMs.
#![allow(dead_code)]

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    pub enc: EncodingKey,
    pub jwk: Value,
    pub public_pem: String,
    pub private_pem: String,
}

pub use gatehouse::token::keys::pem;

impl TestKey {
    pub fn rsa(kid: &str) -> TestKey {
        let kp = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let der: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().unwrap();
        let private_pem = pem("PRIVATE KEY", der.as_ref());
        let pubkey = kp.public_key();
        let spki: aws_lc_rs::encoding::PublicKeyX509Der = pubkey.as_der().unwrap();
        let n = URL_SAFE_NO_PAD.encode(pubkey.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(pubkey.exponent().big_endian_without_leading_zero());
        TestKey {
            kid: kid.into(),
            alg: Algorithm::RS256,
            enc: EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap(),
            jwk: json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": n, "e": e}),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
            private_pem,
        }
    }

    pub fn ec(kid: &str) -> TestKey {
        use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let der = kp.to_pkcs8v1().unwrap();
        let private_pem = pem("PRIVATE KEY", der.as_ref());
        let point = kp.public_key().as_ref().to_vec(); // 0x04 || x || y
        let spki: aws_lc_rs::encoding::PublicKeyX509Der = kp.public_key().as_der().unwrap();
        TestKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            enc: EncodingKey::from_ec_pem(private_pem.as_bytes()).unwrap(),
            jwk: json!({"kty": "EC", "kid": kid, "crv": "P-256", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])}),
            public_pem: pem("PUBLIC KEY", spki.as_ref()),
            private_pem,
        }
    }

    pub fn ed(kid: &str) -> TestKey {
        use aws_lc_rs::signature::Ed25519KeyPair;
        let kp = Ed25519KeyPair::generate().unwrap();
        let der = kp.to_pkcs8v1().unwrap();
        let private_pem = pem("PRIVATE KEY", der.as_ref());
        let x = kp.public_key().as_ref().to_vec();
        let mut spki = vec![
            0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
        ];
        spki.extend_from_slice(&x);
        TestKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            enc: EncodingKey::from_ed_pem(private_pem.as_bytes()).unwrap(),
            jwk: json!({"kty": "OKP", "kid": kid, "crv": "Ed25519", "alg": "EdDSA", "x": URL_SAFE_NO_PAD.encode(&x)}),
            public_pem: pem("PUBLIC KEY", &spki),
            private_pem,
        }
    }

    pub fn hmac(secret: &str) -> TestKey {
        TestKey {
            kid: String::new(),
            alg: Algorithm::HS256,
            enc: EncodingKey::from_secret(secret.as_bytes()),
            jwk: Value::Null,
            public_pem: String::new(),
            private_pem: String::new(),
        }
    }

    pub fn header(&self) -> Header {
        let mut h = Header::new(self.alg);
        if !self.kid.is_empty() {
            h.kid = Some(self.kid.clone());
        }
        h
    }

    pub fn sign(&self, claims: &Value) -> String {
        jsonwebtoken::encode(&self.header(), claims, &self.enc).unwrap()
    }

    pub fn sign_with(&self, header: &Header, claims: &Value) -> String {
        jsonwebtoken::encode(header, claims, &self.enc).unwrap()
    }
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    gatehouse::clock::Clock::now_secs(&gatehouse::clock::SystemClock)
}

/// Standard claims for `iss`/`aud`, valid for an hour, merged with `extra`.
pub fn claims(iss: &str, aud: &str, extra: Value) -> Value {
    let mut c = json!({"iss": iss, "aud": aud, "sub": "user-1", "exp": now() + 3600, "iat": now()});
    if let (Some(m), Value::Object(e)) = (c.as_object_mut(), extra) {
        for (k, v) in e {
            if v.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, v);
            }
        }
    }
    c
}

/// A compact JWS from raw header and claims JSON with the given signature bytes.
pub fn raw_token(header: &Value, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// The `kid` in a compact JWS's header.
pub fn header_kid(token: &str) -> Option<String> {
    let h = URL_SAFE_NO_PAD.decode(token.split('.').next()?).ok()?;
    let v: Value = serde_json::from_slice(&h).ok()?;
    v["kid"].as_str().map(str::to_string)
}
