//! DPoP (RFC 9449) through the token service without a socket: proofs at the token endpoint, bound
//! access tokens and public clients' refresh families, `dpop_bound` clients, nonces, introspection
//! and metadata.

use super::tests::{basic, claims_of, fixture_of, Fixture, SVC};
use super::*;
use crate::dpop::proof::tests::Prover;
use crate::endpoints::Endpoint;
use crate::store::CodeRecord;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

const BOUND_CLIENT: &str = r#"
[[clients]]
client_id = "bound"
secret_hash = "sha256:84f9e945f165d62b49455a6e9900ec35a428076f57a378e18437b0f94afa8e5a"
dpop_bound = true
scopes = ["read"]
"#;

fn fixture(service: &str) -> Fixture {
    fixture_of("1000/s", service, BOUND_CLIENT)
}

impl Fixture {
    /// A token request with a DPoP proof from `prover` (one header, or an unusable one).
    async fn proved(
        &self,
        auth: Option<&str>,
        pairs: &[(&str, &str)],
        proof: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let form = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let post = (auth, &form, "ip:192.0.2.9".to_string());
        self.svc
            .answer_post_with(Endpoint::Token, post, Ok(proof))
            .await
    }

    /// A proof for the token endpoint, now, with a fresh `jti` (and `nonce` when given).
    fn proof(&self, p: &Prover, nonce: Option<&str>) -> String {
        let mut c = json!({"jti": random_token(12).unwrap(), "htm": "POST",
            "htu": self.svc.own_url("/oauth/token"),
            "iat": crate::clock::Clock::now_secs(self.clock.as_ref())});
        if let Some(n) = nonce {
            c["nonce"] = json!(n);
        }
        p.proof(&c)
    }

    /// A code for the public client `spa`, as the authorization endpoint would store it.
    async fn spa_code(&self, code: &str, verifier: &str) {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        let now = crate::clock::Clock::now_secs(self.clock.as_ref());
        let rec = CodeRecord {
            hash: sha256_hex(code),
            client_id: "spa".into(),
            redirect_uri: "https://app.test/cb".into(),
            challenge: URL_SAFE_NO_PAD.encode(d.as_ref()),
            subject: "alice".into(),
            scopes: "read".into(),
            nonce: String::new(),
            resource: String::new(),
            auth_time: now,
            expires_at: now + 60,
        };
        self.svc.store.put_code(&rec).unwrap();
    }
}

const VERIFIER: &str = "a-code-verifier-of-at-least-forty-three-characters";

#[tokio::test]
async fn a_proof_binds_the_token_and_introspection_says_so() {
    let f = fixture("");
    let p = Prover::new();
    let svc = basic("svc", SVC);
    let cc = [("grant_type", "client_credentials")];
    let t = f
        .proved(Some(&svc), &cc, Some(&f.proof(&p, None)))
        .await
        .unwrap();
    assert_eq!(t["token_type"], "DPoP");
    assert_eq!(claims_of(&t)["cnf"], json!({"jkt": p.jkt()}));
    let token = t["access_token"].as_str().unwrap();
    let i = f
        .post(Endpoint::Introspect, Some(&svc), &[("token", token)])
        .await
        .unwrap();
    assert_eq!(
        (i["active"].as_bool(), i["token_type"].as_str()),
        (Some(true), Some("DPoP"))
    );
    assert_eq!(i["cnf"]["jkt"], p.jkt());
    // without a proof the same client gets a bearer token
    let plain = f.proved(Some(&svc), &cc, None).await.unwrap();
    assert_eq!(plain["token_type"], "Bearer");
    assert!(claims_of(&plain).get("cnf").is_none());
}

#[tokio::test]
async fn a_refused_proof_is_invalid_dpop_proof_and_a_bound_client_needs_one() {
    let f = fixture("");
    let p = Prover::new();
    let svc = basic("svc", SVC);
    let cc = [("grant_type", "client_credentials")];
    let proof = f.proof(&p, None);
    assert!(f.proved(Some(&svc), &cc, Some(&proof)).await.is_ok());
    let e = f.proved(Some(&svc), &cc, Some(&proof)).await.unwrap_err();
    assert_eq!((e.status, e.code), (400, OAuthErrorCode::InvalidDpopProof));
    assert_eq!(e.description, "the DPoP proof was used before");
    let e = f
        .proved(Some(&svc), &cc, Some("not.a.proof"))
        .await
        .unwrap_err();
    assert_eq!(e.code, OAuthErrorCode::InvalidDpopProof);
    // `bound` must prove a key on every request (its secret's hash is of "bound-secret")
    let bound = basic("bound", "bound-secret");
    let e = f.proved(Some(&bound), &cc, None).await.unwrap_err();
    assert_eq!((e.status, e.code), (400, OAuthErrorCode::InvalidDpopProof));
}

#[tokio::test]
async fn a_public_clients_refresh_family_is_bound_to_its_key() {
    let f = fixture("");
    let p = Prover::new();
    f.spa_code("c1", VERIFIER).await;
    let exchange = [
        ("grant_type", "authorization_code"),
        ("client_id", "spa"),
        ("code", "c1"),
        ("code_verifier", VERIFIER),
        ("redirect_uri", "https://app.test/cb"),
    ];
    let t = f
        .proved(None, &exchange, Some(&f.proof(&p, None)))
        .await
        .unwrap();
    assert_eq!(t["token_type"], "DPoP");
    let refresh = t["refresh_token"].as_str().unwrap();
    let again = [
        ("grant_type", "refresh_token"),
        ("client_id", "spa"),
        ("refresh_token", refresh),
    ];
    let other = f.proof(&Prover::new(), None);
    let e = f.proved(None, &again, Some(&other)).await.unwrap_err();
    assert_eq!(
        (e.code, e.description),
        (
            OAuthErrorCode::InvalidDpopProof,
            "the refresh token is bound to another DPoP key"
        )
    );
    let e = f.proved(None, &again, None).await.unwrap_err();
    assert_eq!(e.code, OAuthErrorCode::InvalidDpopProof);
    // both refusals came before rotation: the token still works with its key
    let next = f
        .proved(None, &again, Some(&f.proof(&p, None)))
        .await
        .unwrap();
    assert_eq!(next["token_type"], "DPoP");
    assert_eq!(claims_of(&next)["cnf"]["jkt"], p.jkt());
    let successor = next["refresh_token"].as_str().unwrap();
    let later = [
        ("grant_type", "refresh_token"),
        ("client_id", "spa"),
        ("refresh_token", successor),
    ];
    let e = f.proved(None, &later, None).await.unwrap_err();
    assert_eq!(
        e.code,
        OAuthErrorCode::InvalidDpopProof,
        "the successor keeps the key"
    );
}

#[tokio::test]
async fn with_nonces_the_first_proof_learns_the_nonce() {
    let f = fixture("dpop_nonce = true");
    let p = Prover::new();
    let svc = basic("svc", SVC);
    let cc = [("grant_type", "client_credentials")];
    let e = f
        .proved(Some(&svc), &cc, Some(&f.proof(&p, None)))
        .await
        .unwrap_err();
    assert_eq!((e.status, e.code), (400, OAuthErrorCode::UseDpopNonce));
    let nonce = e.dpop_nonce.clone().unwrap();
    let a = crate::respond::AsAnswer::answer(&e);
    assert!(a.headers.contains(&("dpop-nonce", nonce.clone())));
    let t = f
        .proved(Some(&svc), &cc, Some(&f.proof(&p, Some(&nonce))))
        .await
        .unwrap();
    assert_eq!(t["token_type"], "DPoP");
}

#[test]
fn the_metadata_names_the_proof_algorithms() {
    let f = fixture("dpop_algorithms = [\"ES256\", \"EdDSA\"]");
    let doc: Value = serde_json::from_str(&f.svc.metadata).unwrap();
    assert_eq!(
        doc["dpop_signing_alg_values_supported"],
        json!(["ES256", "EdDSA"])
    );
}
