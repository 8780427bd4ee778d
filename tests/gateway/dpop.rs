//! DPoP (RFC 9449) through the real gateway: tokens bound at the token endpoint, proofs judged at the
//! edge (each refusal with its status, error code and both challenges), the verified-token cache
//! kept, nonces, userinfo and the forward-auth endpoint.

use crate::support::harness::Resp;
use crate::support::keys::TestKey;
use crate::tokens::{oauth_error, Auth, SVC_SECRET};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use gatehouse::clock::Clock;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Value};

/// A route that takes DPoP-bound tokens only, beside the `/api` route that takes both.
pub const BOUND_ROUTE: &str = r#"
[[routes]]
path_prefix = "/bound"
upstream = "echo"
issuers = ["self"]
dpop = "required"
"#;

/// The algorithms a default configuration's challenges name.
const ALGS: &str = "algs=\"ES256 RS256 EdDSA PS256\"";

/// A client's DPoP key, making its proofs as a client library would.
pub struct Holder {
    key: TestKey,
}

impl Default for Holder {
    fn default() -> Self {
        Holder {
            key: TestKey::ec("dpop"),
        }
    }
}

impl Holder {
    /// The public key as a proof carries it.
    pub fn jwk(&self) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": self.key.jwk["x"], "y": self.key.jwk["y"]})
    }

    /// `header` and `claims`, signed with `alg` by `key`.
    pub fn signed(header: &Value, claims: &Value, key: &EncodingKey, alg: Algorithm) -> String {
        let b = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let message = format!("{}.{}", b(header), b(claims));
        let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
        format!("{message}.{sig}")
    }

    /// A proof with these claims, signed by this key.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        Self::signed(&header, claims, &self.key.enc, Algorithm::ES256)
    }

    /// The claims of a proof for `htm` `htu` made at `iat`, for `token` when one goes with it.
    pub fn claims(htm: &str, htu: &str, iat: u64, token: Option<&str>) -> Value {
        let mut c = json!({"jti": gatehouse::token::random_token(12).unwrap(), "htm": htm,
            "htu": htu, "iat": iat});
        if let Some(t) = token {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, t.as_bytes());
            c["ath"] = json!(URL_SAFE_NO_PAD.encode(d.as_ref()));
        }
        c
    }

    /// A fresh proof for `htm` `htu`, now by the real clock.
    pub fn proof(&self, htm: &str, htu: &str, token: Option<&str>) -> String {
        let now = crate::support::keys::now();
        self.sign(&Self::claims(htm, htu, now, token))
    }
}

/// A DPoP token for the client `svc`, bound to `holder`'s key.
pub async fn dpop_token(a: &Auth, holder: &Holder) -> String {
    let r = token_request(a, &holder.proof("POST", &a.token_url(), None)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["token_type"], "DPoP");
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// A client_credentials request of `svc` with this proof.
async fn token_request(a: &Auth, proof: &str) -> Resp {
    let r =
        a.gw.https
            .post(a.token_url())
            .basic_auth("svc", Some(SVC_SECRET))
            .header("dpop", proof)
            .form(&[("grant_type", "client_credentials")]);
    Resp::from(r.send().await.unwrap()).await
}

/// A GET of `path` over TLS with `Authorization: <scheme> <token>` and, when given, a proof.
pub async fn call(a: &Auth, path: &str, auth: &str, proof: Option<&str>) -> Resp {
    let mut r =
        a.gw.https
            .get(a.gw.tls_url(path))
            .header("authorization", auth);
    if let Some(p) = proof {
        r = r.header("dpop", p);
    }
    Resp::from(r.send().await.unwrap()).await
}

/// Asserts a 401 with `error`, a Bearer challenge, and a DPoP challenge naming the algorithms and,
/// for a proof's refusal, the error.
#[track_caller]
pub fn refused(r: &Resp, error: &str) {
    assert_eq!(r.status, 401, "{}", r.body);
    assert_eq!(r.json()["error"], error, "{}", r.body);
    let challenges: Vec<&str> = r
        .headers
        .get_all("www-authenticate")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert!(
        challenges
            .iter()
            .any(|c| c.starts_with("Bearer realm=\"gatehouse\"")),
        "{challenges:?}"
    );
    let dpop = challenges
        .iter()
        .find(|c| c.starts_with("DPoP realm=\"gatehouse\""))
        .unwrap_or_else(|| panic!("no DPoP challenge among {challenges:?}"));
    assert!(dpop.contains(ALGS), "{dpop}");
    assert!(dpop.contains(&format!("error=\"{error}\"")), "{dpop}");
}

async fn start() -> Auth {
    Auth::start_with("backend = \"memory\"", BOUND_ROUTE).await
}

/// A gateway, a holder, its bound token, and the URL of `/api/orders` as proofs name it.
async fn bound() -> (Auth, Holder, String, String) {
    let a = start().await;
    let holder = Holder::default();
    let token = dpop_token(&a, &holder).await;
    let url = a.gw.tls_url("/api/orders");
    (a, holder, token, url)
}

fn cache_hits(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("gatehouse_token_cache_lookups_total{result=\"hit\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .map(|v| v.parse::<f64>().unwrap() as u64)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_token_passes_with_a_fresh_proof_each_time_and_stays_cached() {
    let (a, holder, token, url) = bound().await;
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert_eq!(claims["cnf"]["jkt"].as_str().unwrap().len(), 43);
    let auth = format!("DPoP {token}");
    let before = cache_hits(&a.gw.metrics().await);
    for _ in 0..3 {
        let r = call(
            &a,
            "/api/orders",
            &auth,
            Some(&holder.proof("GET", &url, Some(&token))),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.echoed("x-auth-client-id").as_deref(), Some("svc"));
        // the token goes upstream no more than a bearer token does, nor does its proof
        assert_eq!(r.echoed("authorization"), None);
        assert_eq!(r.echoed("dpop"), None);
    }
    assert!(
        cache_hits(&a.gw.metrics().await) >= before + 2,
        "a repeated DPoP token is a cache hit: only its proof is checked"
    );
    let bound_url = a.gw.tls_url("/bound/x");
    let r = call(
        &a,
        "/bound/x",
        &auth,
        Some(&holder.proof("GET", &bound_url, Some(&token))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_for_another_method_is_refused() {
    let (a, holder, token, url) = bound().await;
    let proof = holder.proof("POST", &url, Some(&token));
    refused(
        &call(&a, "/api/orders", &format!("DPoP {token}"), Some(&proof)).await,
        "invalid_dpop_proof",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_for_another_url_is_refused() {
    let (a, holder, token, url) = bound().await;
    let port = a.gw.tls.port();
    for other in [
        a.gw.tls_url("/api/other"),
        format!("https://elsewhere.example:{port}/api/orders"),
        url.replace("https://", "http://"),
    ] {
        let proof = holder.proof("GET", &other, Some(&token));
        let r = call(&a, "/api/orders", &format!("DPoP {token}"), Some(&proof)).await;
        refused(&r, "invalid_dpop_proof");
        assert!(r.body.contains("htu"), "{other}: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_too_old_or_from_the_future_is_refused() {
    let (a, holder, token, url) = bound().await;
    let now = crate::support::keys::now();
    // dpop_max_age is 5 minutes and the leeway 30 seconds
    for (iat, why) in [(now - 400, "too old"), (now + 120, "in the future")] {
        let proof = holder.sign(&Holder::claims("GET", &url, iat, Some(&token)));
        let r = call(&a, "/api/orders", &format!("DPoP {token}"), Some(&proof)).await;
        refused(&r, "invalid_dpop_proof");
        assert!(r.body.contains(why), "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_used_twice_is_refused_the_second_time() {
    let (a, holder, token, url) = bound().await;
    let proof = holder.proof("GET", &url, Some(&token));
    let auth = format!("DPoP {token}");
    assert_eq!(
        call(&a, "/api/orders", &auth, Some(&proof)).await.status,
        200
    );
    let r = call(&a, "/api/orders", &auth, Some(&proof)).await;
    refused(&r, "invalid_dpop_proof");
    assert!(r.body.contains("used before"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_for_another_token_is_refused() {
    let (a, holder, token, url) = bound().await;
    let other = dpop_token(&a, &holder).await;
    let proof = holder.proof("GET", &url, Some(&other));
    let r = call(&a, "/api/orders", &format!("DPoP {token}"), Some(&proof)).await;
    refused(&r, "invalid_dpop_proof");
    assert!(r.body.contains("ath"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_by_another_key_than_the_token_is_bound_to_is_refused() {
    let (a, _, token, url) = bound().await;
    let thief = Holder::default();
    let proof = thief.proof("GET", &url, Some(&token));
    let r = call(&a, "/api/orders", &format!("DPoP {token}"), Some(&proof)).await;
    refused(&r, "invalid_dpop_proof");
    assert!(r.body.contains("another key"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_signed_with_none_or_hs256_is_refused() {
    let (a, holder, token, url) = bound().await;
    let auth = format!("DPoP {token}");
    let c = Holder::claims("GET", &url, crate::support::keys::now(), Some(&token));
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD
            .encode(json!({"typ": "dpop+jwt", "alg": "none", "jwk": holder.jwk()}).to_string()),
        URL_SAFE_NO_PAD.encode(c.to_string())
    );
    let hs = Holder::signed(
        &json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": holder.jwk()}),
        &c,
        &EncodingKey::from_secret(b"a shared secret is no proof of a key"),
        Algorithm::HS256,
    );
    for proof in [none, hs] {
        let r = call(&a, "/api/orders", &auth, Some(&proof)).await;
        refused(&r, "invalid_dpop_proof");
        assert!(r.body.contains("alg"), "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proof_carrying_a_private_key_is_refused() {
    let (a, holder, token, url) = bound().await;
    // the key's own private part, as a careless client would send its whole JWK: in aws-lc-rs's
    // PKCS#8 for P-256 it is the 32-byte OCTET STRING at offset 36
    let der = pem_body(&holder.key.private_pem);
    assert_eq!(&der[34..36], &[0x04, 0x20]);
    let mut jwk = holder.jwk();
    jwk["d"] = json!(URL_SAFE_NO_PAD.encode(&der[36..68]));
    let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
    let c = Holder::claims("GET", &url, crate::support::keys::now(), Some(&token));
    let proof = Holder::signed(&header, &c, &holder.key.enc, Algorithm::ES256);
    let r = call(&a, "/api/orders", &format!("DPoP {token}"), Some(&proof)).await;
    refused(&r, "invalid_dpop_proof");
    assert!(r.body.contains("private key"), "{}", r.body);
}

fn pem_body(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dpop_token_sent_as_a_bearer_token_is_refused() {
    let (a, holder, token, url) = bound().await;
    let r = call(&a, "/api/orders", &format!("Bearer {token}"), None).await;
    refused(&r, "invalid_token");
    assert!(r.body.contains("DPoP-bound"), "{}", r.body);
    // with its proof beside it, too: the scheme says how the token is meant
    let proof = holder.proof("GET", &url, Some(&token));
    refused(
        &call(&a, "/api/orders", &format!("Bearer {token}"), Some(&proof)).await,
        "invalid_token",
    );
    // and without a proof as DPoP
    let r = call(&a, "/api/orders", &format!("DPoP {token}"), None).await;
    refused(&r, "invalid_dpop_proof");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_that_requires_dpop_refuses_bearer_tokens() {
    let a = start().await;
    let bearer = a.svc_token(None).await;
    assert_eq!(
        call(&a, "/api/orders", &format!("Bearer {bearer}"), None)
            .await
            .status,
        200
    );
    let r = call(&a, "/bound/x", &format!("Bearer {bearer}"), None).await;
    refused(&r, "invalid_token");
    // without a token, the challenges say how to come: DPoP and the algorithms
    let none = Resp::from(
        a.gw.https
            .get(a.gw.tls_url("/bound/x"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (none.status, none.json()["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let challenges: Vec<_> = none.headers.get_all("www-authenticate").iter().collect();
    assert_eq!(challenges.len(), 2);
    assert_eq!(challenges[1], &format!("DPoP realm=\"gatehouse\", {ALGS}"));
    // nor does a bearer token pass as DPoP, proof or not
    let holder = Holder::default();
    let url = a.gw.tls_url("/bound/x");
    let proof = holder.proof("GET", &url, Some(&bearer));
    refused(
        &call(&a, "/bound/x", &format!("DPoP {bearer}"), Some(&proof)).await,
        "invalid_token",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stale_nonce_is_refused_and_the_current_one_handed_out() {
    let a = Auth::start_edited("backend = \"memory\"", BOUND_ROUTE, |t| {
        t.replacen(
            "access_token_ttl = \"10m\"",
            "access_token_ttl = \"10m\"\ndpop_nonce = true\ndpop_max_age = \"1m\"",
            1,
        )
    })
    .await;
    let holder = Holder::default();
    let now = || a.gw.clock.now_secs();
    let at_endpoint = |nonce: Option<&str>| {
        let mut c = Holder::claims("POST", &a.token_url(), now(), None);
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        holder.sign(&c)
    };
    // the token endpoint asks for a nonce first: 400 use_dpop_nonce with DPoP-Nonce
    let first = token_request(&a, &at_endpoint(None)).await;
    oauth_error(&first, 400, "use_dpop_nonce");
    let nonce = first.header("dpop-nonce").unwrap();
    let ok = token_request(&a, &at_endpoint(Some(&nonce))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let token = ok.json()["access_token"].as_str().unwrap().to_string();
    let url = a.gw.tls_url("/api/orders");
    let with = |n: &str| {
        let mut c = Holder::claims("GET", &url, now(), Some(&token));
        c["nonce"] = json!(n);
        holder.sign(&c)
    };
    let auth = format!("DPoP {token}");
    assert_eq!(
        call(&a, "/api/orders", &auth, Some(&with(&nonce)))
            .await
            .status,
        200
    );
    // two periods of dpop_max_age on, the nonce is stale: 401 use_dpop_nonce with a new one
    a.gw.clock.advance(std::time::Duration::from_secs(130));
    let r = call(&a, "/api/orders", &auth, Some(&with(&nonce))).await;
    refused(&r, "use_dpop_nonce");
    let fresh = r.header("dpop-nonce").unwrap();
    assert_ne!(fresh, nonce);
    assert_eq!(
        call(&a, "/api/orders", &auth, Some(&with(&fresh)))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn userinfo_takes_a_dpop_token_with_its_proof() {
    let a = start().await;
    let holder = Holder::default();
    let token_proof = holder.proof("POST", &a.token_url(), None);
    let r =
        a.gw.https
            .post(a.token_url())
            .basic_auth("legacy", Some(crate::tokens::LEGACY_SECRET))
            .header("dpop", token_proof)
            .form(&[
                ("grant_type", "password"),
                ("username", "alice@example.com"),
                ("password", crate::tokens::ALICE_PASSWORD),
                ("scope", "openid email"),
            ]);
    let t = Resp::from(r.send().await.unwrap()).await;
    assert_eq!(t.status, 200, "{}", t.body);
    let token = t.json()["access_token"].as_str().unwrap().to_string();
    let url = a.gw.tls_url("/oauth/userinfo");
    let r = call(
        &a,
        "/oauth/userinfo",
        &format!("DPoP {token}"),
        Some(&holder.proof("GET", &url, Some(&token))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["email"], "alice@example.com");
    refused(
        &call(&a, "/oauth/userinfo", &format!("Bearer {token}"), None).await,
        "invalid_token",
    );
    let wrong = holder.proof("POST", &url, Some(&token));
    refused(
        &call(
            &a,
            "/oauth/userinfo",
            &format!("DPoP {token}"),
            Some(&wrong),
        )
        .await,
        "invalid_dpop_proof",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_forward_auth_endpoint_judges_a_proof_by_the_original_request() {
    let a = crate::forward_auth::start().await;
    let holder = Holder::default();
    let token = dpop_token(&a, &holder).await;
    let ask = |proof: String| {
        let r =
            a.gw.http
                .get(a.gw.url(crate::forward_auth::EP))
                .header("x-forwarded-method", "POST")
                .header("x-forwarded-proto", "https")
                .header("x-forwarded-host", "app.example")
                .header("x-forwarded-uri", "/svc/orders?page=2")
                .header("authorization", format!("DPoP {token}"))
                .header("dpop", proof);
        async move { Resp::from(r.send().await.unwrap()).await }
    };
    let original = "https://app.example/svc/orders";
    let ok = ask(holder.proof("POST", original, Some(&token))).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.header("x-auth-client-id").as_deref(), Some("svc"));
    // a proof of the question itself is not one of the original request
    let question = a.gw.url(crate::forward_auth::EP);
    refused(
        &ask(holder.proof("GET", &question, Some(&token))).await,
        "invalid_dpop_proof",
    );
    refused(
        &ask(holder.proof("GET", original, Some(&token))).await,
        "invalid_dpop_proof",
    );
}

#[test]
fn the_readme_route_compiles_appended_to_the_shipped_configuration() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let section = &readme[readme.find("## Tokens bound to a key (DPoP)").unwrap()..];
    let start = section.find("```toml\n").unwrap() + 8;
    let block = &section[start..start + section[start..].find("```").unwrap()];
    let shipped = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    // SAFETY of set_var: the shipped file's demo issuer needs it, and every test sets this value
    std::env::set_var(
        "GATEHOUSE_DEMO_SECRET",
        "a-demo-secret-of-at-least-32-bytes!!",
    );
    let c = gatehouse::config::Config::from_toml(
        &format!("{shipped}\n{block}"),
        &root.join("gateway.toml"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let orders = c.routes.iter().find(|r| r.name == "orders").unwrap();
    assert_eq!(orders.dpop, gatehouse::config::DpopMode::Required);
    assert_eq!(c.dpop, gatehouse::config::DpopSettings::default());
}
