//! The token service in operation: revocations across restarts, key rotation, lockout, the CLI's
//! client blocks, rate limits.

use crate::support::harness::Resp;
use crate::tokens::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_survives_a_restart_on_the_same_sqlite_file() {
    let a = Auth::start_with("backend = \"sqlite\"\npath = \"data/gatehouse.db\"", "").await;
    let t = a.svc_token(None).await;
    let keep = a.svc_token(None).await;
    assert_eq!(
        a.post(
            "/oauth/revoke",
            &[("token", t.as_str())],
            Some(("svc", SVC_SECRET))
        )
        .await
        .status,
        200
    );
    assert!(a.gw.path("data/gatehouse.db").exists());
    let b = a.restart("backend = \"sqlite\"\npath = \"data/gatehouse.db\"", |t| t);
    assert_eq!(b.gw.get("/api/x", Some(&t)).await.status, 401);
    // the signing key survived too: other tokens still pass
    assert_eq!(b.gw.get("/api/x", Some(&keep)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn jwks_metadata_and_key_rotation() {
    let a = Auth::start().await;
    let old = a.svc_token(None).await;
    let r = Resp::from(
        a.gw.https
            .get(format!(
                "https://localhost:{}/.well-known/jwks.json",
                a.gw.tls.port()
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.header("cache-control").unwrap().contains("max-age="));
    let kid = r.json()["keys"][0]["kid"].as_str().unwrap().to_string();
    assert_eq!(
        jsonwebtoken::decode_header(&old).unwrap().kid.as_deref(),
        Some(kid.as_str())
    );
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let m = Resp::from(
            a.gw.https
                .get(format!("https://localhost:{}{path}", a.gw.tls.port()))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(m.json()["token_endpoint"], a.token_url(), "{}", m.body);
        assert!(m.json()["grant_types_supported"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g == "client_credentials"));
    }
    // rotation: a new key first, the old one still listed
    let b = a.restart("backend = \"memory\"", |t| {
        t.replace(
            "signing_keys = [\"keys/signing.pem\"]",
            "signing_keys = [\"keys/signing-2.pem\", \"keys/signing.pem\"]",
        )
    });
    let gw = &b.gw;
    assert_eq!(
        gw.get("/api/x", Some(&old)).await.status,
        200,
        "a token of the old key must still pass"
    );
    let jwks: Value = gw
        .https
        .get(format!(
            "https://localhost:{}/.well-known/jwks.json",
            gw.tls.port()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // the two configured keys, and the RS256 key that signs ID tokens by default
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().any(|k| k["alg"] == "RS256"), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failures_lock_the_client_out() {
    let a = Auth::start().await;
    for _ in 0..5 {
        oauth_error(
            &a.post(
                "/oauth/token",
                &[("grant_type", "client_credentials")],
                Some(("svc", "wrong")),
            )
            .await,
            401,
            "invalid_client",
        );
    }
    let r = a
        .post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    // locked out: invalid_client (RFC 6749 §5.2) with Retry-After, not an undefined code
    oauth_error(&r, 401, "invalid_client");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() > 0);
    // the window passes
    a.gw.clock.advance(std::time::Duration::from_secs(301));
    assert_eq!(
        a.post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some(("svc", SVC_SECRET))
        )
        .await
        .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn own_tokens_that_are_not_access_tokens_are_refused() {
    let a = Auth::start().await;
    let t = a.svc_token(None).await;
    // re-sign the same claims as an ID token ("typ": "JWT") with the gateway's own key
    let pem = std::fs::read(a.gw.path("keys/signing.pem")).unwrap();
    let key = gatehouse::token::keys::load(&pem).unwrap();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&t).unwrap();
    let mut h = jsonwebtoken::Header::new(key.alg);
    h.kid = Some(key.kid.clone());
    let id_token = jsonwebtoken::encode(&h, &claims, &key.enc).unwrap();
    let r = a.gw.get("/api/x", Some(&id_token)).await;
    assert_eq!(r.status, 401);
    assert!(r.challenge().contains("not an access token"));
}

#[test]
fn the_cli_makes_clients_hashes_and_keys() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let bin = env!("CARGO_BIN_EXE_gatehouse");
    let out = Command::new(bin)
        .args(["client", "new", "billing", "--scopes", "orders,orders.read"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = text
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("# ")
        .to_string();
    assert_eq!(secret.len(), 43, "256 bits base64url");
    let block: String = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(block.contains("client_id = \"billing\""));
    assert!(block.contains(&sha256(&secret)));
    assert!(!block.contains(&secret));

    let mut child = Command::new(bin)
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        sha256("s3cret")
    );

    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    let out = Command::new(bin)
        .args(["keygen", "--alg", "EdDSA", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loaded = gatehouse::token::keys::load(&std::fs::read(&key).unwrap()).unwrap();
    assert!(String::from_utf8(out.stdout).unwrap().contains(&loaded.kid));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // never overwrites
    assert!(!Command::new(bin)
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_block_printed_by_the_cli_works_as_configuration() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["client", "new", "cli-made", "--scopes", "orders.read"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = text
        .lines()
        .nth(1)
        .unwrap()
        .trim_start_matches("# ")
        .to_string();
    let a = Auth::start_with("backend = \"memory\"", &text).await;
    let r = a
        .post(
            "/oauth/token",
            &[("grant_type", "client_credentials")],
            Some(("cli-made", &secret)),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_endpoint_is_rate_limited_per_client_and_address() {
    let a = Auth::start_edited("backend = \"memory\"", "", |t| t.replace("1000/s", "2/m")).await;
    for _ in 0..2 {
        assert_eq!(a.client_credentials("svc", SVC_SECRET).await.status, 200);
    }
    let r = a.client_credentials("svc", SVC_SECRET).await;
    oauth_error(&r, 429, "invalid_request");
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() <= 60);
    a.gw.clock.advance(std::time::Duration::from_secs(61));
    assert_eq!(a.client_credentials("svc", SVC_SECRET).await.status, 200);
}

/// The claims of an identity JWT, checked as an upstream would: the gateway's published keys, its
/// issuer, and the route's name as the audience.
pub async fn identity_jwt_claims(a: &Auth, jwt: &str, route: &str) -> Value {
    let jwks: jsonwebtoken::jwk::JwkSet =
        serde_json::from_value(a.gw.get("/.well-known/jwks.json", None).await.json()).unwrap();
    let header = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[route]);
    v.set_issuer(&["https://auth.gatehouse.test"]);
    jsonwebtoken::decode::<Value>(jwt, &key, &v).unwrap().claims
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_can_send_the_identity_signed_by_the_gateway() {
    let extra = "\n[[routes]]\nname = \"signed\"\npath_prefix = \"/signed\"\nupstream = \"echo\"\nissuers = [\"self\"]\nidentity_jwt = true\n";
    let a = Auth::start_with("backend = \"memory\"", extra).await;
    let t = a.svc_token(None).await;
    let r = a.gw.get("/signed/x", Some(&t)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let jwt = r.echoed("x-auth-jwt").expect("an identity JWT");
    // an upstream checks it with the gateway's published keys, for its own route
    let claims = identity_jwt_claims(&a, &jwt, "signed").await;
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some("svc"), Some("svc"))
    );
    assert_eq!(claims["scope"], "orders.read");
    // the same token again gets the same JWT; a route without identity_jwt sends none, and a
    // client's own X-Auth-Jwt never reaches an upstream
    let again = a.gw.get("/signed/x", Some(&t)).await;
    assert_eq!(again.echoed("x-auth-jwt"), Some(jwt));
    let plain = Resp::from(
        a.gw.http
            .get(a.gw.url("/api/x"))
            .bearer_auth(&t)
            .header("X-Auth-Jwt", "forged")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(plain.status, 200);
    assert_eq!(plain.echoed("x-auth-jwt"), None);
}
