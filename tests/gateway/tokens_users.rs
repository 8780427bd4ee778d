//! People through the token service: the password grant, userinfo, refresh rotation and lockout.

use crate::support::harness::Resp;
use crate::tokens::*;

pub async fn password_grant(a: &Auth, password: &str, scope: &str) -> Resp {
    a.post(
        "/oauth/token",
        &[
            ("grant_type", "password"),
            ("username", "alice@example.com"),
            ("password", password),
            ("scope", scope),
        ],
        Some(("legacy", LEGACY_SECRET)),
    )
    .await
}

pub async fn refresh(a: &Auth, token: &str) -> Resp {
    a.post(
        "/oauth/token",
        &[("grant_type", "refresh_token"), ("refresh_token", token)],
        Some(("legacy", LEGACY_SECRET)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_password_grant_signs_a_user_in_and_userinfo_releases_claims_by_scope() {
    let a = Auth::start().await;
    let r = password_grant(&a, ALICE_PASSWORD, "openid orders.read profile").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let access = r.json()["access_token"].as_str().unwrap().to_string();
    assert!(r.json()["refresh_token"].as_str().unwrap().len() >= 43);
    let up = a.gw.get("/api/x", Some(&access)).await;
    assert_eq!(up.echoed("x-auth-subject").as_deref(), Some("user-alice"));
    assert_eq!(up.echoed("x-auth-roles").as_deref(), Some("admin"));
    assert_eq!(up.echoed("x-auth-client-id").as_deref(), Some("legacy"));

    let info = Resp::from(
        a.gw.https
            .get(format!(
                "https://localhost:{}/oauth/userinfo",
                a.gw.tls.port()
            ))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(info.json()["sub"], "user-alice");
    assert_eq!(info.json()["name"], "Alice");
    assert!(
        info.json().get("email").is_none(),
        "email needs the email scope: {}",
        info.body
    );
    let bad = Resp::from(
        a.gw.https
            .get(format!(
                "https://localhost:{}/oauth/userinfo",
                a.gw.tls.port()
            ))
            .bearer_auth("nope")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.challenge().contains("invalid_token"));

    // wrong password and unknown user answer alike; a client without the grant may not use it
    oauth_error(
        &password_grant(&a, "wrong", "orders.read").await,
        400,
        "invalid_grant",
    );
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "password"),
                ("username", "alice@example.com"),
                ("password", ALICE_PASSWORD),
            ],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    oauth_error(&r, 400, "unauthorized_client");
}

#[tokio::test(flavor = "multi_thread")]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let a = Auth::start().await;
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read email")
        .await
        .json();
    let r1 = first["refresh_token"].as_str().unwrap().to_string();
    let second = refresh(&a, &r1).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let r2 = second.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(second.json()["scope"], "orders.read email");
    // the introspection endpoint knows refresh tokens too
    let creds = Some(("legacy", LEGACY_SECRET));
    let i = a
        .post("/oauth/introspect", &[("token", r2.as_str())], creds)
        .await
        .json();
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], "user-alice");
    // r1 again: reuse detected, the whole family (r2 included) is revoked
    oauth_error(&refresh(&a, &r1).await, 400, "invalid_grant");
    oauth_error(&refresh(&a, &r2).await, 400, "invalid_grant");
    assert_eq!(
        a.post("/oauth/introspect", &[("token", r2.as_str())], creds)
            .await
            .json()["active"],
        false
    );
    // another client cannot use a refresh token
    let fresh = password_grant(&a, ALICE_PASSWORD, "orders.read")
        .await
        .json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", fresh.as_str()),
            ],
            Some(("svc", SVC_SECRET)),
        )
        .await;
    oauth_error(&r, 400, "unauthorized_client");
    // revoking a refresh token ends its family
    assert_eq!(
        a.post("/oauth/revoke", &[("token", fresh.as_str())], creds)
            .await
            .status,
        200
    );
    oauth_error(&refresh(&a, &fresh).await, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_parallel_refreshes_make_exactly_one_successor() {
    let a = Auth::start_with("backend = \"sqlite\"\npath = \"data/g.db\"", "").await;
    let r1 = password_grant(&a, ALICE_PASSWORD, "orders.read")
        .await
        .json()["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (client, url, r1) = (a.gw.https.clone(), a.token_url(), r1.clone());
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .basic_auth("legacy", Some(LEGACY_SECRET))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", r1.as_str()),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    for t in tasks {
        if t.await.unwrap() == 200 {
            ok += 1;
        }
    }
    assert_eq!(ok, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_wrong_passwords_lock_the_user_out() {
    let a = Auth::start().await;
    for _ in 0..5 {
        oauth_error(
            &password_grant(&a, "wrong", "orders.read").await,
            400,
            "invalid_grant",
        );
    }
    let r = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    oauth_error(&r, 400, "invalid_grant");
    assert!(r.header("retry-after").is_some());
}
