//! One entry point per fuzz target: the parsers that read untrusted input, each fed arbitrary bytes
//! and checked for the properties the gateway relies on. `cargo fuzz` drives them (fuzz/, built
//! with `--cfg fuzzing`), and the unit tests replay every corpus file through them on stable Rust.
#![allow(clippy::panic)] // a broken property must stop the fuzzer with the input that broke it

use crate::auth::extract::extract_token;
use crate::auth::jwt;
use crate::auth::principal::{decode_claims, Principal};
use crate::config::{Config, Issuer, TokenSources};
use crate::wire::path::{normalise_host, normalise_path, segment_base};
use pingora::http::RequestHeader;
use std::sync::OnceLock;

/// A fuzz target: bytes in, a panic when a property breaks.
pub type Target = fn(&[u8]);

/// The fuzz targets, by the name of their corpus folder.
pub const TARGETS: [(&str, Target); 6] = [
    ("jwt", jwt),
    ("path", path),
    ("extract", extract),
    ("form", form),
    ("client_auth", client_auth),
    ("config", config),
];

fn text(data: &[u8]) -> &str {
    std::str::from_utf8(data).unwrap_or("")
}

/// An issuer to judge fuzzed tokens against.
fn issuer() -> &'static Issuer {
    static ISSUER: OnceLock<Config> = OnceLock::new();
    let c = ISSUER.get_or_init(|| {
        let text = "[server]\nlisten_tls = []\nlisten_plain = [\"127.0.0.1:1\"]\nadmin_listen = \"\"\n\
            [[issuers]]\nname = \"f\"\nissuer = \"https://f\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\", \"ES256\"]\n\
            jwks_uri = \"https://f/jwks\"\nroles_claim = \"realm.roles\"\n\
            [[upstreams]]\nname = \"u\"\npeers = [\"127.0.0.1:1\"]\n[[routes]]\nupstream = \"u\"\n";
        match Config::from_toml(text, std::path::Path::new("/nonexistent/fuzz.toml")) {
            Ok(c) => c,
            Err(e) => panic!("the fuzzing configuration does not compile: {e}"),
        }
    });
    match c.issuers.first() {
        Some(i) => i,
        None => panic!("no issuer"),
    }
}

/// JWT parsing and claim checks: never a panic; what parses is a JSON object, and a principal can
/// be made from it.
pub fn jwt(data: &[u8]) {
    let token = text(data);
    if let Ok(p) = jwt::parse(token) {
        assert!(p.claims.is_object(), "parsed claims are an object");
        let _ = p.validate_claims(issuer(), 1_700_000_000, 30);
        let principal = Principal::new(issuer(), &p.claims, 0);
        let _ = (
            principal.subject(),
            principal.roles().count(),
            principal.scopes().count(),
        );
        let _ = decode_claims(p.payload.as_bytes());
    }
}

/// Path and host normalisation: a normal path starts with `/`, has no dot segments, and
/// normalising it again changes nothing; a valid host loses its port and is a fixed point too.
pub fn path(data: &[u8]) {
    let s = text(data);
    if let Ok(n) = normalise_path(s) {
        assert!(n.starts_with('/'), "{s:?} -> {n:?}");
        for seg in n.split('/').skip(1) {
            let base = segment_base(seg);
            assert!(base != "." && base != "..", "{s:?} -> {n:?}");
        }
        match normalise_path(&n) {
            Ok(again) => assert_eq!(again, n, "normalising {s:?} twice"),
            Err(e) => panic!("{s:?} -> {n:?}, which is refused: {e:?}"),
        }
    }
    // the gateway refuses a Host that is not valid before it normalises one
    if crate::wire::path::host_is_valid(s) {
        let h = normalise_host(s);
        assert_eq!(normalise_host(&h), h, "normalising host {s:?} twice");
        assert!(
            !h.contains(':') || h.starts_with('['),
            "{s:?} -> {h:?} kept a port"
        );
    }
}

/// Token extraction from a request built of the input: method line, then `Name: value` lines.
pub fn extract(data: &[u8]) {
    let s = text(data);
    let mut lines = s.split('\n');
    let target = lines.next().unwrap_or("/");
    let Ok(mut req) = RequestHeader::build("GET", target.as_bytes(), None) else {
        return;
    };
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let _ = req.append_header(k.trim().to_string(), v.trim());
        }
    }
    let from = TokenSources {
        header: true,
        query: vec!["access_token".into()],
        cookie: vec!["tok".into()],
    };
    if let Ok(Some(t)) = extract_token(&req, &from, 8192) {
        assert!(!t.is_empty(), "an empty token is no token");
        assert!(t.len() <= 8192 * 3, "a token over the limit was taken");
    }
}

/// The one form and query parser: no repeated or empty parameter gets through.
pub fn form(data: &[u8]) {
    if let Ok(f) = crate::wire::form::parse(data) {
        assert!(
            f.values().all(|v| !v.is_empty()),
            "empty values count as absent"
        );
    }
}

/// Client authentication input: an `Authorization` header on the first line, the form after it.
pub fn client_auth(data: &[u8]) {
    let (basic, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (
            data.get(..i).unwrap_or_default(),
            data.get(i + 1..).unwrap_or_default(),
        ),
        None => (data, &[][..]),
    };
    let basic = std::str::from_utf8(basic).ok().filter(|b| !b.is_empty());
    if let Ok(f) = crate::wire::form::parse(body) {
        let _ = crate::token::TokenService::fuzz_credentials(basic, &f);
    }
}

/// `Config::from_toml`: any text either compiles or names its problems; what compiles builds a
/// route table that answers a lookup.
pub fn config(data: &[u8]) {
    let s = text(data);
    match Config::from_toml(s, std::path::Path::new("/nonexistent/fuzz.toml")) {
        Ok(c) => {
            let table = crate::proxy::routes::RouteTable::new(&c.routes);
            let _ = table.lookup(&c, Some("example.com"), "/a/b", &http::Method::GET);
            let _ = c.warnings();
        }
        Err(e) => assert!(!e.problems.is_empty(), "a refusal names its problems"),
    }
}

#[cfg(test)]
mod tests {
    /// Every file of the fuzz corpora (fuzz/corpus/<target>/), seeds and anything a fuzzing run
    /// found, through its target: a crash once found stays fixed.
    #[test]
    fn every_corpus_file_passes_its_target() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        for (name, target) in super::TARGETS {
            let dir = root.join(name);
            let files: Vec<_> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|f| f.unwrap().path())
                .collect();
            assert!(!files.is_empty(), "{name} has no seeds");
            for f in files {
                let data = std::fs::read(&f).unwrap();
                if std::panic::catch_unwind(|| target(&data)).is_err() {
                    panic!("{} fails its target", f.display());
                }
            }
        }
    }
}
