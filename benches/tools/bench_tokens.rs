//! Writes the keys and tokens the benchmark needs: an RS256 key (PEM and JWKS), one long-lived
//! token, many distinct tokens, a forged one, and HS256 tokens for the cache-memory run.
//! Usage: bench_tokens DIR DISTINCT_RS256 DISTINCT_HS256 HS_SECRET
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
