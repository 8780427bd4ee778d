//! Writes the keys and tokens the benchmark needs: an RS256 key (PEM and JWKS), one long-lived
//! token, many distinct tokens, a forged one, and HS256 tokens for the cache-memory run. With
//! `dpop`, the DPoP scenario's: a P-256 key (made once), a token of the RS256 key bound to it, and
//! fresh proofs for one URL; it prints what one ES256 verification costs here.
//! Usage: bench_tokens DIR DISTINCT_RS256 DISTINCT_HS256 HS_SECRET
//!        bench_tokens dpop DIR URL PROOFS
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../tests/gateway/support/keys.rs"]
mod keys;

use serde_json::json;
use std::io::Write;
use std::path::Path;

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("dpop") {
        return dpop::main(&args[2..]);
    }
    let usage = "usage: bench_tokens DIR DISTINCT_RS256 DISTINCT_HS256 HS_SECRET";
    let dir = Path::new(args.get(1).expect(usage));
    let distinct: usize = args.get(2).expect(usage).parse().expect(usage);
    let distinct_hs: usize = args.get(3).expect(usage).parse().expect(usage);
    let secret = args.get(4).expect(usage);
    std::fs::create_dir_all(dir).unwrap();

    let rsa = keys::TestKey::rsa("bench");
    std::fs::write(dir.join("rs256.key"), &rsa.private_pem).unwrap();
    std::fs::write(dir.join("rs256.pub.pem"), &rsa.public_pem).unwrap();
    std::fs::write(
        dir.join("jwks.json"),
        json!({ "keys": [rsa.jwk] }).to_string(),
    )
    .unwrap();

    let exp = keys::now() + 24 * 3600;
    let claims = |iss: &str, i: usize| {
        keys::claims(
            iss,
            "bench",
            json!({"sub": format!("user-{i}"), "exp": exp, "scope": "read write",
            "roles": ["reader"], "client_id": "bench-client"}),
        )
    };
    let one = rsa.sign(&claims("https://bench.local", 0));
    std::fs::write(dir.join("token.txt"), &one).unwrap();
    // Forged: one character in the middle of the signature changed (the last holds only padding bits).
    let mut forged = one.clone().into_bytes();
    let sig_start = one.rfind('.').unwrap() + 1;
    let mid = sig_start + (one.len() - sig_start) / 2;
    forged[mid] = if forged[mid] == b'A' { b'B' } else { b'A' };
    std::fs::write(dir.join("forged.txt"), String::from_utf8(forged).unwrap()).unwrap();

    // Signing is the slow part (RSA): both cores share it.
    let half = distinct / 2;
    let (mut tokens, rest) = std::thread::scope(|s| {
        let second = s.spawn(|| {
            (half + 1..=distinct)
                .map(|i| rsa.sign(&claims("https://bench.local", i)))
                .collect::<Vec<String>>()
        });
        let first: Vec<String> = (1..=half)
            .map(|i| rsa.sign(&claims("https://bench.local", i)))
            .collect();
        (first, second.join().unwrap())
    });
    tokens.extend(rest);
    write_lines(&dir.join("tokens.txt"), &tokens);
    let hs = keys::TestKey::hmac(secret);
    let hs_tokens: Vec<String> = (1..=distinct_hs)
        .map(|i| hs.sign(&claims("https://bench-hs.local", i)))
        .collect();
    write_lines(&dir.join("hs-tokens.txt"), &hs_tokens);
}

/// The DPoP scenario: one bound token, proofs each used once, and the cost of the ES256 check.
mod dpop {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    use serde_json::json;
    use std::path::Path;

    const ALG: &signature::EcdsaSigningAlgorithm = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;

    fn b64(b: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(b)
    }

    fn sha256(s: &str) -> String {
        b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref())
    }

    /// The key made on the first run and kept, so the bound token (and its cache entry) stays.
    fn key(dir: &Path) -> EcdsaKeyPair {
        let file = dir.join("dpop.p8");
        if !file.exists() {
            let doc = EcdsaKeyPair::generate_pkcs8(ALG, &SystemRandom::new()).unwrap();
            std::fs::write(&file, doc.as_ref()).unwrap();
        }
        EcdsaKeyPair::from_pkcs8(ALG, &std::fs::read(&file).unwrap()).unwrap()
    }

    /// Microseconds one ES256 verification takes, key parsing included, as a proof's check does it:
    /// the median of five runs of 2,000.
    fn es256_us(pair: &EcdsaKeyPair) -> f64 {
        let sig = pair
            .sign(&SystemRandom::new(), b"a proof's signed part")
            .unwrap();
        let point = pair.public_key().as_ref().to_vec();
        let mut runs: Vec<f64> = (0..5)
            .map(|_| {
                let t = std::time::Instant::now();
                for _ in 0..2000 {
                    let k = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point);
                    assert!(k.verify(b"a proof's signed part", sig.as_ref()).is_ok());
                }
                t.elapsed().as_secs_f64() * 1e6 / 2000.0
            })
            .collect();
        runs.sort_by(f64::total_cmp);
        runs[2]
    }

    pub fn main(args: &[String]) {
        let usage = "usage: bench_tokens dpop DIR URL PROOFS";
        let dir = Path::new(args.first().expect(usage));
        let url = args.get(1).expect(usage);
        let count: usize = args.get(2).expect(usage).parse().expect(usage);
        let pair = key(dir);
        let p = pair.public_key().as_ref().to_vec();
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..])});
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            jwk["x"].as_str().unwrap(),
            jwk["y"].as_str().unwrap()
        );
        let token_file = dir.join("dpop-token.txt");
        if !token_file.exists() {
            let rsa = std::fs::read(dir.join("rs256.key")).unwrap();
            let enc = jsonwebtoken::EncodingKey::from_rsa_pem(&rsa).unwrap();
            let claims = super::keys::claims(
                "https://bench.local",
                "bench",
                json!({"sub": "user-dpop", "exp": super::keys::now() + 24 * 3600, "scope": "read write",
                    "client_id": "bench-client", "cnf": {"jkt": sha256(&canonical)}}),
            );
            let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            let token = jsonwebtoken::encode(&header, &claims, &enc).unwrap();
            std::fs::write(&token_file, token).unwrap();
        }
        let token = std::fs::read_to_string(&token_file).unwrap();
        let header = b64(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk})
            .to_string()
            .as_bytes());
        let (ath, now) = (sha256(&token), super::keys::now());
        // ids unique across runs: a run's random prefix, then the proof's number
        let mut run = [0u8; 9];
        aws_lc_rs::rand::fill(&mut run).unwrap();
        let run = b64(&run);
        let proof = |i: usize| {
            let claims = json!({"jti": format!("{run}{i}"), "htm": "GET", "htu": url, "iat": now, "ath": ath});
            let message = format!("{header}.{}", b64(claims.to_string().as_bytes()));
            let sig = pair.sign(&SystemRandom::new(), message.as_bytes()).unwrap();
            format!("{message}.{}", b64(sig.as_ref()))
        };
        // Signing is the slow part: both cores share it.
        let half = count / 2;
        let (mut proofs, rest) = std::thread::scope(|s| {
            let second = s.spawn(|| (half..count).map(proof).collect::<Vec<String>>());
            (
                (0..half).map(proof).collect::<Vec<String>>(),
                second.join().unwrap(),
            )
        });
        proofs.extend(rest);
        super::write_lines(&dir.join("dpop-proofs.txt"), &proofs);
        println!("es256_verify_us {:.2}", es256_us(&pair));
    }
}
