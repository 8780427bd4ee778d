//! Micro-benchmark of token verification: a verified-cache hit, and a miss per algorithm.
// The benchmark reads real time for its tokens and sets its secret before anything starts.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::disallowed_methods
)]

#[path = "../tests/gateway/support/keys.rs"]
mod keys;

use criterion::{criterion_group, criterion_main, Criterion};
use gatehouse::auth::Verifier;
use gatehouse::clock::SystemClock;
use gatehouse::config::Config;
use keys::{claims, TestKey};
use serde_json::json;
use std::sync::Arc;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let secret = "bench-secret-that-is-long-enough-for-hs256";
    std::env::set_var("BENCH_VERIFY_SECRET", secret);
    let keys = [
        ("RS256", TestKey::rsa("rs")),
        ("ES256", TestKey::ec("es")),
        ("EdDSA", TestKey::ed("ed")),
        ("HS256", TestKey::hmac(secret)),
    ];
    let mut toml = String::from(
        "[server]\nlisten_tls = []\nlisten_plain = [\"127.0.0.1:1\"]\nadmin_listen = \"\"\n\
         [[upstreams]]\nname = \"w\"\nkind = \"whoami\"\n[[routes]]\npath_prefix = \"/\"\nupstream = \"w\"\n",
    );
    for (alg, key) in &keys {
        let source = if *alg == "HS256" {
            "secret_env = \"BENCH_VERIFY_SECRET\"".to_string()
        } else {
            let path = dir.path().join(format!("{alg}.pem"));
            std::fs::write(&path, &key.public_pem).unwrap();
            format!("keys = [\"{}\"]", path.display())
        };
        toml.push_str(&format!(
            "[[issuers]]\nname = \"{alg}\"\nissuer = \"https://{alg}.test\"\n{source}\naudiences = [\"api\"]\nalgorithms = [\"{alg}\"]\n"
        ));
    }
    let config = Config::from_toml(&toml, &dir.path().join("gateway.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let cached = Verifier::new(
        config.issuers.clone(),
        vec![],
        30,
        1000,
        64 << 20,
        Arc::new(SystemClock),
    )
    .unwrap();
    let uncached = Verifier::new(
        config.issuers.clone(),
        vec![],
        30,
        0,
        64 << 20,
        Arc::new(SystemClock),
    )
    .unwrap();

    let t = keys[0].1.sign(&claims(
        "https://RS256.test",
        "api",
        json!({"scope": "read", "roles": ["a"]}),
    ));
    let first = std::slice::from_ref(&config.issuers[0]);
    rt.block_on(cached.verify(&t, first)).unwrap();
    c.bench_function("verify cache hit (RS256 token)", |b| {
        b.iter(|| {
            rt.block_on(cached.verify(std::hint::black_box(&t), first))
                .unwrap()
        })
    });
    for (i, (alg, key)) in keys.iter().enumerate() {
        let t = key.sign(&claims(
            &format!("https://{alg}.test"),
            "api",
            json!({"scope": "read"}),
        ));
        let only = std::slice::from_ref(&config.issuers[i]);
        rt.block_on(uncached.verify(&t, only)).unwrap();
        c.bench_function(&format!("verify cache miss {alg}"), |b| {
            b.iter(|| {
                rt.block_on(uncached.verify(std::hint::black_box(&t), only))
                    .unwrap()
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
