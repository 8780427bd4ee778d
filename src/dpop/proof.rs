//! A DPoP proof (RFC 9449 §4.3) read and checked against the request it came with: its type,
//! algorithm and public key, `htm`, `htu`, `iat` and `ath`, then its signature. Pure: the time is a
//! parameter, and the checks that keep state (nonce, replay) are the caller's.

use super::key::{ProofKey, RawKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde::de::IgnoredAny;
use serde::Deserialize;
use std::sync::Arc;

/// Longer proofs are refused before anything is decoded (an RSA 4096 key makes about 1.5 KiB).
pub const MAX_PROOF_BYTES: usize = 8192;
/// The longest `jti` remembered; RFC 9449 asks for 96 random bits, about 16 characters.
const MAX_JTI_BYTES: usize = 256;

/// Why a proof is refused: text for `error_description`, never quoting the proof.
pub type ProofError = &'static str;

#[derive(Deserialize)]
struct Header {
    typ: Option<String>,
    alg: String,
    jwk: Option<RawKey>,
    crit: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct Claims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<serde_json::Number>,
    ath: Option<String>,
    nonce: Option<String>,
}

/// What the proof must match.
pub struct Expect<'a> {
    /// the request's method
    pub method: &'a str,
    /// the request's URL without query and fragment, normalised (`scheme://host[:port]/path`)
    pub url: &'a str,
    /// the hash of the access token presented with the proof ([`token_hash`]), which `ath` must be
    pub ath: Option<&'a str>,
    pub algorithms: &'a [Algorithm],
    pub now: u64,
    pub max_age: u64,
    pub leeway: u64,
}

/// A proof that passed every check made here.
#[derive(Debug)]
pub struct Checked {
    /// the RFC 7638 thumbprint of the proof's key
    pub jkt: String,
    pub jti: String,
    pub nonce: Option<String>,
}

fn json<T: for<'de> Deserialize<'de>>(part: &str, what: ProofError) -> Result<T, ProofError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| what)?;
    // a repeated member of a known name is refused by the derived parser
    serde_json::from_slice(&bytes).map_err(|_| what)
}

/// base64url SHA-256 of an access token: a proof's `ath`.
pub fn token_hash(token: &str) -> String {
    crate::crypto::sha256_b64url(token)
}

/// The header segment of a proof (its text before the first `.`), under which its key is known.
pub fn header_segment(proof: &str) -> &str {
    proof.split('.').next().unwrap_or_default()
}

/// Reads a proof's header segment: `typ`, no `crit`, an `alg` of `algorithms` and its public key.
/// The key depends on the header's text alone (and the algorithms taken), so a client's proofs,
/// which repeat their header, can share it.
pub fn read_header(h: &str, algorithms: &[Algorithm]) -> Result<ProofKey, ProofError> {
    let header: Header = json(h, "the DPoP proof's header is not base64url JSON")?;
    if !header
        .typ
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err("the DPoP proof's typ is not dpop+jwt");
    }
    if header.crit.is_some() {
        return Err("the DPoP proof has critical header parameters");
    }
    let alg = header
        .alg
        .parse::<Algorithm>()
        .ok()
        .filter(|a| algorithms.contains(a))
        .ok_or("the DPoP proof's alg is not one of dpop_signing_alg_values_supported")?;
    header
        .jwk
        .ok_or("the DPoP proof has no jwk")?
        .for_algorithm(alg)
}

/// Checks a proof; the nonce and the `jti`'s first use are left to the caller. `known`: the key
/// of this proof's header segment, read before; without it the header is read here. Returns the
/// header's key with the result, for the caller to keep once the proof has passed.
pub fn check(
    proof: &str,
    e: &Expect<'_>,
    known: Option<Arc<ProofKey>>,
) -> Result<(Checked, Arc<ProofKey>), ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err("the DPoP proof is too long");
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("the DPoP proof is not a JWS of three parts");
    };
    let header = match known {
        Some(k) => k,
        None => Arc::new(read_header(h, e.algorithms)?),
    };
    let claims: Claims = json(p, "the DPoP proof's claims are not base64url JSON")?;
    let jti = claims_hold(&claims, e)?;
    let message = proof.get(..h.len() + 1 + p.len()).unwrap_or_default();
    signed(&header, message, s)?;
    let checked = Checked {
        jkt: header.thumbprint.clone(),
        jti,
        nonce: claims.nonce,
    };
    Ok((checked, header))
}

/// The claims' checks, in the order RFC 9449 §4.3 lists them; returns the `jti`.
fn claims_hold(c: &Claims, e: &Expect<'_>) -> Result<String, ProofError> {
    let jti = c
        .jti
        .as_deref()
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_BYTES)
        .ok_or("the DPoP proof has no usable jti")?;
    if c.htm.as_deref() != Some(e.method) {
        return Err("the DPoP proof's htm is not this request's method");
    }
    let htu = c.htu.as_deref().ok_or("the DPoP proof has no htu")?;
    if !same_url(htu, e.url) {
        return Err("the DPoP proof's htu is not this request's URL");
    }
    let iat = c
        .iat
        .as_ref()
        .and_then(|n| {
            n.as_u64()
                .or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        })
        .ok_or("the DPoP proof has no numeric iat")?;
    if iat > e.now.saturating_add(e.leeway) {
        return Err("the DPoP proof was issued in the future");
    }
    if iat.saturating_add(e.max_age).saturating_add(e.leeway) < e.now {
        return Err("the DPoP proof is too old");
    }
    if let Some(want) = e.ath {
        if c.ath.as_deref() != Some(want) {
            return Err("the DPoP proof's ath is not the hash of this access token");
        }
    }
    Ok(jti.to_string())
}

fn signed(key: &ProofKey, message: &str, sig: &str) -> Result<(), ProofError> {
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| "the DPoP proof's signature is not base64url")?;
    if key.verifies(message.as_bytes(), &sig) {
        Ok(())
    } else {
        Err("the DPoP proof's signature does not verify with its jwk")
    }
}

/// RFC 9449 §4.3: `htu` matches the request's URL without query and fragment, after syntax- and
/// scheme-based normalisation (case of scheme and host, default ports, dot segments, escapes).
/// `expected` is already normal, so a client that sends what it requested matches at once.
pub fn same_url(htu: &str, expected: &str) -> bool {
    let htu = htu.split(['?', '#']).next().unwrap_or_default();
    if htu == expected {
        return true;
    }
    let (Ok(a), Ok(b)) = (url::Url::parse(htu), url::Url::parse(expected)) else {
        return false;
    };
    let path = |u: &url::Url| crate::wire::path::normalise_path(u.path()).map(|p| p.into_owned());
    a.scheme() == b.scheme()
        && a.host() == b.host()
        && a.port_or_known_default() == b.port_or_known_default()
        && matches!((path(&a), path(&b)), (Ok(x), Ok(y)) if x == y)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    use serde_json::{json, Value};

    /// A P-256 key that makes proofs, for the tests of this module and its neighbours.
    pub struct Prover {
        pair: EcdsaKeyPair,
        pub jwk: Value,
    }

    impl Prover {
        pub fn new() -> Prover {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
            let p = pair.public_key().as_ref().to_vec();
            let jwk = json!({"kty": "EC", "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])});
            Prover { pair, jwk }
        }

        /// A proof with this header and these claims, signed by this key.
        pub fn sign(&self, header: &Value, claims: &Value) -> String {
            let b = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
            let message = format!("{}.{}", b(header), b(claims));
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let sig = self.pair.sign(&rng, message.as_bytes()).unwrap();
            format!("{message}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }

        pub fn proof(&self, claims: &Value) -> String {
            self.sign(
                &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}),
                claims,
            )
        }

        pub fn jkt(&self) -> String {
            serde_json::from_value::<RawKey>(self.jwk.clone())
                .unwrap()
                .for_algorithm(Algorithm::ES256)
                .unwrap()
                .thumbprint
        }
    }

    const URL: &str = "https://gw.test/api/orders";

    fn expect(ath: Option<&str>) -> Expect<'_> {
        Expect {
            method: "GET",
            url: URL,
            ath,
            algorithms: &[Algorithm::ES256, Algorithm::RS256],
            now: 1000,
            max_age: 300,
            leeway: 30,
        }
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({"jti": "j1", "htm": "GET", "htu": URL, "iat": 1000});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    }

    /// Checks a proof whose header was not read before.
    fn check(proof: &str, e: &Expect<'_>) -> Result<Checked, ProofError> {
        super::check(proof, e, None).map(|(c, _)| c)
    }

    #[test]
    fn a_good_proof_names_its_key_and_jti() {
        let p = Prover::new();
        let c = check(&p.proof(&claims(json!({"nonce": "n"}))), &expect(None)).unwrap();
        assert_eq!(
            (c.jkt, c.jti.as_str(), c.nonce.as_deref()),
            (p.jkt(), "j1", Some("n"))
        );
        // with an access token, ath must be its hash
        let (tok, other) = (token_hash("tok"), token_hash("other"));
        let with = p.proof(&claims(json!({"ath": tok})));
        assert!(check(&with, &expect(Some(&tok))).is_ok());
        assert_eq!(
            check(&with, &expect(Some(&other))).unwrap_err(),
            "the DPoP proof's ath is not the hash of this access token"
        );
        assert!(check(&p.proof(&claims(json!({}))), &expect(Some(&tok))).is_err());
    }

    #[test]
    fn a_header_read_once_serves_the_next_proofs_of_its_key() {
        let p = Prover::new();
        let first = p.proof(&claims(json!({})));
        let (_, key) = super::check(&first, &expect(None), None).unwrap();
        let next = p.proof(&claims(json!({"jti": "j2"})));
        assert_eq!(header_segment(&first), header_segment(&next));
        let (c, _) = super::check(&next, &expect(None), Some(key.clone())).unwrap();
        assert_eq!((c.jkt, c.jti.as_str()), (p.jkt(), "j2"));
        // the kept key still checks the signature: another key's proof under this header fails
        let forged = Prover::new().sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": p.jwk}),
            &claims(json!({"jti": "j3"})),
        );
        assert_eq!(
            super::check(&forged, &expect(None), Some(key)).unwrap_err(),
            "the DPoP proof's signature does not verify with its jwk"
        );
    }

    #[test]
    fn method_url_and_time_must_fit_the_request() {
        let p = Prover::new();
        let refused = |c: Value| check(&p.proof(&claims(c)), &expect(None)).unwrap_err();
        assert_eq!(
            refused(json!({"htm": "POST"})),
            "the DPoP proof's htm is not this request's method"
        );
        for other in [
            "https://gw.test/api/other",
            "https://evil.test/api/orders",
            "http://gw.test/api/orders",
        ] {
            assert_eq!(
                refused(json!({"htu": other})),
                "the DPoP proof's htu is not this request's URL"
            );
        }
        assert_eq!(
            refused(json!({"iat": 1031})),
            "the DPoP proof was issued in the future"
        );
        assert_eq!(refused(json!({"iat": 669})), "the DPoP proof is too old");
        assert!(check(&p.proof(&claims(json!({"iat": 670}))), &expect(None)).is_ok());
        assert!(check(&p.proof(&claims(json!({"iat": 1030.5}))), &expect(None)).is_ok());
        assert_eq!(
            refused(json!({"iat": "now"})),
            "the DPoP proof's claims are not base64url JSON"
        );
        assert_eq!(
            refused(json!({"jti": ""})),
            "the DPoP proof has no usable jti"
        );
        assert_eq!(
            refused(json!({"jti": "j".repeat(300)})),
            "the DPoP proof has no usable jti"
        );
        // query and fragment are not compared; normalisation is
        for same in [
            "https://gw.test/api/orders?x=1",
            "https://gw.test/api/orders#f",
            "HTTPS://GW.test:443/api/./orders",
            "https://gw.test/api/%6Frders",
        ] {
            assert!(
                check(&p.proof(&claims(json!({"htu": same}))), &expect(None)).is_ok(),
                "{same}"
            );
        }
    }

    #[test]
    fn header_algorithm_key_and_signature_are_checked() {
        let p = Prover::new();
        let c = claims(json!({}));
        let with = |h: Value| check(&p.sign(&h, &c), &expect(None)).unwrap_err();
        assert_eq!(
            with(json!({"typ": "JWT", "alg": "ES256", "jwk": p.jwk})),
            "the DPoP proof's typ is not dpop+jwt"
        );
        for alg in ["none", "HS256", "ES384", "RS256x"] {
            let e = with(json!({"typ": "dpop+jwt", "alg": alg, "jwk": p.jwk}));
            assert!(e.contains("alg"), "{alg}: {e}");
        }
        assert_eq!(
            with(json!({"typ": "dpop+jwt", "alg": "ES256"})),
            "the DPoP proof has no jwk"
        );
        let mut private = p.jwk.clone();
        private["d"] = json!("AAAA");
        assert_eq!(
            with(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": private})),
            "the DPoP proof's jwk holds a private key"
        );
        let crit = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": p.jwk, "crit": ["x"]});
        assert_eq!(with(crit), "the DPoP proof has critical header parameters");
        // another key's signature under this jwk
        let other = Prover::new();
        let forged = other.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": p.jwk}),
            &c,
        );
        assert_eq!(
            check(&forged, &expect(None)).unwrap_err(),
            "the DPoP proof's signature does not verify with its jwk"
        );
        assert!(check("a.b", &expect(None)).is_err());
        assert!(check(&"a".repeat(MAX_PROOF_BYTES + 1), &expect(None)).is_err());
        let twice = format!(
            "{}.{}.AA",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"dpop+jwt","alg":"ES256","alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(c.to_string())
        );
        assert!(check(&twice, &expect(None)).is_err());
    }
}
