//! What removing a user, a role or a client from the file ends: refresh families, sessions and, at
//! the edge, a removed client's access tokens; and an operator ending a subject's refresh tokens.

use crate::sessions::{location, Browser, APP};
use crate::support::harness::Resp;
use crate::tokens::{oauth_error, Auth, ALICE_PASSWORD};
use crate::tokens_users::{password_grant, refresh};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;

/// Edits the running gateway's file and reloads it through the admin listener.
async fn edit_and_reload(a: &Auth, edit: impl FnOnce(String) -> String) {
    let path = a.gw.path("gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&path, edited).unwrap();
    let r = admin_post(a, "/reload").await;
    assert_eq!(r.status, 200, "{}", r.body);
}

async fn admin_post(a: &Auth, path: &str) -> Resp {
    let url = format!("http://{}{path}", a.gw.admin);
    Resp::from(a.gw.http.post(url).send().await.unwrap()).await
}

fn roles_of(token_answer: &Resp) -> Value {
    let t = token_answer.json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let payload = URL_SAFE_NO_PAD
        .decode(t.split('.').nth(1).unwrap())
        .unwrap();
    serde_json::from_slice::<Value>(&payload).unwrap()["roles"].clone()
}

const ALICE_ROLES: &str = "roles = [\"admin\"]\nclaims = { email";

async fn a_removed_role_and_user_end_what_they_granted(store: &str) {
    let audited = format!("{APP}\n[audit]\nfile = \"audit/events.jsonl\"\n");
    let a = Auth::start_with(store, &audited).await;
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    assert_eq!(first.status, 200, "{}", first.body);
    let rt = first.json()["refresh_token"].as_str().unwrap().to_string();
    let mut b = Browser::new(&a);
    let login = location(&b.navigate("/app/x").await);
    assert_eq!(b.sign_in_at(&login, ALICE_PASSWORD).await.status, 303);
    assert_eq!(b.navigate("/app/x").await.status, 200);

    // the admin role taken away: the session and the next refresh carry the roles of today
    edit_and_reload(&a, |t| {
        t.replacen(ALICE_ROLES, "roles = [\"staff\"]\nclaims = { email", 1)
    })
    .await;
    assert_eq!(b.navigate("/app/x").await.status, 403);
    let staff = b.navigate("/staff/x").await;
    assert_eq!(staff.status, 200, "{}", staff.body);
    assert_eq!(staff.echoed("x-auth-roles").as_deref(), Some("staff"));
    let second = refresh(&a, &rt).await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(roles_of(&second), serde_json::json!(["staff"]));
    let rt = second.json()["refresh_token"].as_str().unwrap().to_string();
    let at = second.json()["access_token"].as_str().unwrap().to_string();

    // the user disabled: the session ends and the family with the access tokens it issued
    edit_and_reload(&a, |t| {
        t.replacen(
            "subject = \"user-alice\"",
            "subject = \"user-alice\"\ndisabled = true",
            1,
        )
    })
    .await;
    let gone = b.navigate("/staff/x").await;
    assert_eq!(gone.status, 302, "sent to sign in again: {}", gone.body);
    oauth_error(&refresh(&a, &rt).await, 400, "invalid_grant");
    assert_eq!(a.gw.get("/api/x", Some(&at)).await.status, 401);
    // and cannot sign in again
    let r = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    oauth_error(&r, 400, "invalid_grant");
    // the audit stream says what the reload ended, and why
    let path = a.gw.path("audit/events.jsonl");
    let (events, _) = crate::audit::events_when(&path, |e| {
        !crate::audit::of_type(e, "token.revoked").is_empty()
            && !crate::audit::of_type(e, "session.revoked").is_empty()
    })
    .await;
    let tokens = crate::audit::find(&events, "token.revoked", "by", "user_removed");
    assert_eq!(tokens["data"]["subject"], "user-alice");
    assert_eq!(tokens["data"]["families"], 1, "{tokens}");
    let sessions = crate::audit::find(&events, "session.revoked", "by", "user_removed");
    assert_eq!(sessions["data"]["ended"], 1, "{sessions}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_role_and_user_end_what_they_granted_in_memory() {
    a_removed_role_and_user_end_what_they_granted("backend = \"memory\"").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_role_and_user_end_what_they_granted_in_sqlite() {
    a_removed_role_and_user_end_what_they_granted("backend = \"sqlite\"\npath = \"data/g.db\"")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_removed_while_the_gateway_was_down_is_refused_when_their_grants_are_used() {
    // a restart, not a reload: nothing swept the store, so each use asks whether the user is there
    const SQLITE: &str = "backend = \"sqlite\"\npath = \"data/g.db\"";
    let a = Auth::start_with(SQLITE, APP).await;
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    let rt = first.json()["refresh_token"].as_str().unwrap().to_string();
    let mut b = Browser::new(&a);
    let login = location(&b.navigate("/app/x").await);
    assert_eq!(b.sign_in_at(&login, ALICE_PASSWORD).await.status, 303);
    let cookie = b.cookie.clone();
    let a = a.restart_with(SQLITE, APP, |t| {
        t.replacen(
            "subject = \"user-alice\"",
            "subject = \"user-alice\"\ndisabled = true",
            1,
        )
    });
    let mut b = Browser::new(&a);
    b.cookie = cookie;
    let r = b.navigate("/app/x").await;
    assert_eq!(r.status, 302, "{}", r.body);
    oauth_error(&refresh(&a, &rt).await, 400, "invalid_grant");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_ends_a_subjects_refresh_tokens() {
    let a = Auth::start().await;
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    let rt = first.json()["refresh_token"].as_str().unwrap().to_string();
    let at = first.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/api/x", Some(&at)).await.status, 200);
    let r = admin_post(&a, "/tokens/revoke?subject=user-alice").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["families"], 1);
    oauth_error(&refresh(&a, &rt).await, 400, "invalid_grant");
    assert_eq!(
        a.gw.get("/api/x", Some(&at)).await.status,
        401,
        "revoked at the edge at once"
    );
    let r = admin_post(&a, "/tokens/revoke").await;
    assert_eq!(r.status, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_clients_tokens_are_refused_at_the_edge_from_the_reload_on() {
    let a = Auth::start().await;
    let t = a.svc_token(None).await;
    assert_eq!(a.gw.get("/api/x", Some(&t)).await.status, 200);
    edit_and_reload(&a, |t| {
        t.replacen("client_id = \"svc\"", "client_id = \"svc2\"", 1)
    })
    .await;
    let r = a.gw.get("/api/x", Some(&t)).await;
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.challenge().contains("invalid_token"), "{}", r.challenge());
    // other clients' tokens still pass
    let grant = a.assertion("alice", &a.token_url(), 60, "after-removal");
    let r = a
        .post(
            "/oauth/token",
            &[
                ("grant_type", crate::tokens::JWT_BEARER),
                ("assertion", grant.as_str()),
            ],
            None,
        )
        .await;
    let other = r.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/api/x", Some(&other)).await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_ends_a_subjects_refresh_tokens_in_the_store() {
    let a = Auth::start_with("backend = \"sqlite\"\npath = \"data/g.db\"", "").await;
    let first = password_grant(&a, ALICE_PASSWORD, "orders.read").await;
    let rt = first.json()["refresh_token"].as_str().unwrap().to_string();
    let at = first.json()["access_token"].as_str().unwrap().to_string();
    assert_eq!(a.gw.get("/api/x", Some(&at)).await.status, 200);
    let args = ["tokens", "revoke", "--subject", "user-alice"];
    assert_eq!(
        crate::support::harness::cli(&args, &a.gw.path("gateway.toml")),
        "1 refresh family of user-alice ended (1 access token(s) revoked)"
    );
    oauth_error(&refresh(&a, &rt).await, 400, "invalid_grant");
    // the running gateway reads the file's revocations within a second of the change
    let mut r = a.gw.get("/api/x", Some(&at)).await;
    for _ in 0..50 {
        if r.status == 401 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        r = a.gw.get("/api/x", Some(&at)).await;
    }
    assert_eq!(r.status, 401, "{}", r.body);
    assert!(r.challenge().contains("invalid_token"), "{}", r.challenge());
}
