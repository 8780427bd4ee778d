//! Sign-in through an external OpenID provider: the authorization request with PKCE, `state` and
//! `nonce` kept in a short-lived pre-login cookie per attempt, and the callback that checks them,
//! verifies the ID token, maps its claims and opens a session.

use super::providers::{Failed, Providers};
use super::{login_url, message_page, query};
use crate::config::LoginProvider;
use crate::session::{cookie, NewSession, OpenError, SessionData};
use crate::token::TokenService;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use pingora::proxy::Session;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Pre-login cookies are named after the first characters of their `state`, so sign-ins started in
/// several tabs each keep their own.
const PRE_LOGIN: &str = "__Host-gatehouse-login-";
const STATE_PREFIX: usize = 12;
/// How long a person has to sign in at the provider.
const PRE_LOGIN_SECONDS: u64 = 600;
/// The claims a session keeps from an ID token, besides `sub` and the roles.
const KEPT_CLAIMS: [&str; 7] = [
    "email",
    "email_verified",
    "name",
    "preferred_username",
    "given_name",
    "family_name",
    "sid",
];

/// What the pre-login cookie holds: everything the callback must check or send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreLogin {
    /// provider name
    pub p: String,
    pub state: String,
    pub nonce: String,
    /// PKCE code verifier
    pub v: String,
    /// where to land afterwards
    pub rd: String,
    /// the redirect URI sent, to send again at the exchange
    pub u: String,
    /// expiry, seconds since the epoch
    pub exp: u64,
}

impl PreLogin {
    pub fn cookie_name(state: &str) -> String {
        format!("{PRE_LOGIN}{}", state.get(..STATE_PREFIX).unwrap_or(state))
    }

    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(v: &str) -> Option<PreLogin> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(v).ok()?).ok()
    }
}

/// The S256 PKCE challenge of a verifier.
fn challenge(verifier: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// The strings of a claim that is an array of strings or a space-separated string.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        _ => vec![],
    }
}

/// A verified ID token as a session: subject, provider session id and the claims the upstream sees;
/// refused when the provider's allowlists of email domains or groups leave the person out.
pub fn session_claims(
    p: &LoginProvider,
    id: &Value,
) -> Result<(String, String, Map<String, Value>), Failed> {
    let sub = id
        .get("sub")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or(Failed("the ID token names no subject"))?;
    let roles = match &p.roles_claim {
        Some(c) => strings(c.lookup(id)),
        None => vec![],
    };
    if !p.allowed_domains.is_empty() {
        let email = id.get("email").and_then(Value::as_str).unwrap_or("");
        let verified = id.get("email_verified").and_then(Value::as_bool) != Some(false);
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        if !verified || !p.allowed_domains.contains(&domain) {
            return Err(Failed("this account's email domain may not sign in here"));
        }
    }
    if !p.allowed_groups.is_empty() && !roles.iter().any(|r| p.allowed_groups.contains(r)) {
        return Err(Failed(
            "this account is in none of the groups that may sign in here",
        ));
    }
    let mut claims = Map::new();
    for k in KEPT_CLAIMS {
        if let Some(v) = id.get(k) {
            claims.insert(k.into(), v.clone());
        }
    }
    claims.insert("iss".into(), Value::String(p.issuer.clone()));
    claims.insert("idp".into(), Value::String(p.name.clone()));
    claims.insert("roles".into(), Value::from(roles));
    let sid = id
        .get("sid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    Ok((sub.to_string(), sid, claims))
}

/// `https://<this host>/oauth/callback`; plain `http` only for this machine over a plain listener.
pub(super) fn callback_uri(session: &Session) -> String {
    let req = session.req_header();
    let host = req
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers
                .get("host")
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "localhost".into());
    let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
    let name = host.rsplit_once(':').map(|(h, _)| h).unwrap_or(&host);
    let local = matches!(name, "localhost" | "127.0.0.1" | "[::1]");
    let scheme = if !tls && local { "http" } else { "https" };
    format!("{scheme}://{host}/oauth/callback")
}

/// Sends the browser to the provider, with a new pre-login cookie for this attempt.
pub async fn start(
    session: &mut Session,
    tokens: &TokenService,
    providers: &Providers,
    i: usize,
    rd: &str,
) -> pingora::Result<()> {
    let Some(p) = providers.list.get(i) else {
        return failed(session, tokens, None, Failed("no such sign-in provider")).await;
    };
    let ep = match providers.endpoints(i).await {
        Ok(ep) => ep,
        Err(f) => return failed(session, tokens, Some((p, rd)), f).await,
    };
    let random = || crate::secrets::random_token(32);
    let (Ok(state), Ok(nonce), Ok(v)) = (random(), random(), random()) else {
        return failed(
            session,
            tokens,
            None,
            Failed("no random values could be had"),
        )
        .await;
    };
    let pre = PreLogin {
        p: p.name.clone(),
        state: state.clone(),
        nonce: nonce.clone(),
        rd: rd.to_string(),
        u: callback_uri(session),
        exp: tokens.sessions.now() + PRE_LOGIN_SECONDS,
        v,
    };
    let Ok(mut target) = url::Url::parse(&ep.authorization_endpoint) else {
        return failed(
            session,
            tokens,
            None,
            Failed("the provider's sign-in address is not valid"),
        )
        .await;
    };
    target
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &p.client_id)
        .append_pair("redirect_uri", &pre.u)
        .append_pair("scope", &p.scopes.join(" "))
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge(&pre.v))
        .append_pair("code_challenge_method", "S256");
    // Lax: the provider sends the browser back with a top-level GET, which carries it
    let set = format!(
        "{}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={PRE_LOGIN_SECONDS}",
        PreLogin::cookie_name(&state),
        pre.encode()
    );
    crate::error::see_other(session, target.as_str(), &[set]).await
}

/// A sign-in that cannot go on: logged with its reason, and a page that says so and starts again.
async fn failed(
    session: &mut Session,
    tokens: &TokenService,
    again: Option<(&LoginProvider, &str)>,
    why: Failed,
) -> pingora::Result<()> {
    tracing::warn!(target: "gatehouse::login", provider = again.map(|(p, _)| p.name.as_str()).unwrap_or("-"), reason = why.0, "a sign-in through a provider failed");
    let retry = again
        .map(|(p, rd)| login_url(rd, std::slice::from_ref(&p.name), None))
        .unwrap_or_else(|| "/".to_string());
    let text = format!("Signing in did not work: {}.", why.0);
    message_page(
        session,
        tokens,
        400,
        "Sign-in failed",
        &text,
        Some((&retry, "Start again")),
    )
    .await
}

/// The provider sent the browser back: check the attempt, exchange the code, open a session.
pub async fn callback(
    session: &mut Session,
    tokens: &TokenService,
    providers: &Providers,
) -> pingora::Result<()> {
    let params = query(session);
    let state = params.get("state").cloned().unwrap_or_default();
    let name = PreLogin::cookie_name(&state);
    let clear = format!("{name}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0");
    let pre = cookie(session.req_header(), &name)
        .and_then(PreLogin::decode)
        .filter(|p| {
            !state.is_empty()
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    p.state.as_bytes(),
                    state.as_bytes(),
                )
                .is_ok()
        });
    let Some(pre) = pre else {
        return failed(
            session,
            tokens,
            None,
            Failed("this sign-in was not started in this browser, or took too long"),
        )
        .await;
    };
    let found = providers
        .find(&pre.p)
        .and_then(|i| providers.list.get(i).map(|p| (i, p)));
    let Some((i, p)) = found else {
        return failed(
            session,
            tokens,
            None,
            Failed("the sign-in provider is no longer configured"),
        )
        .await;
    };
    let again = Some((p, pre.rd.as_str()));
    if pre.exp <= tokens.sessions.now() {
        return failed(session, tokens, again, Failed("the sign-in took too long")).await;
    }
    if let Some(e) = params.get("error") {
        let e: String = e
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(64)
            .collect();
        tracing::info!(target: "gatehouse::login", provider = %p.name, error = %e, "the provider answered the sign-in with an error");
        return failed(
            session,
            tokens,
            again,
            Failed("the provider did not sign you in"),
        )
        .await;
    }
    let Some(code) = params.get("code") else {
        return failed(
            session,
            tokens,
            again,
            Failed("the provider sent no sign-in code"),
        )
        .await;
    };
    let outcome = async {
        let id_token = providers
            .exchange(i, code, &pre.u, &pre.v, &tokens.keys)
            .await?;
        let claims = providers.verify(i, &id_token).await?;
        if claims.get("nonce").and_then(Value::as_str) != Some(pre.nonce.as_str()) {
            return Err(Failed("the ID token is not for this sign-in"));
        }
        // several audiences: the ID token must have been issued to this gateway (OIDC Core §3.1.3.7)
        if claims.get("aud").is_some_and(Value::is_array)
            && claims.get("azp").and_then(Value::as_str) != Some(p.client_id.as_str())
        {
            return Err(Failed("the ID token was issued to another client"));
        }
        let (subject, sid, kept) = session_claims(p, &claims)?;
        let auth_time = claims
            .get("auth_time")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| tokens.sessions.now());
        Ok(NewSession {
            subject,
            provider: p.name.clone(),
            provider_sid: sid,
            data: SessionData {
                claims: kept,
                id_token: Some(id_token),
            },
            auth_time,
        })
    }
    .await;
    let new = match outcome {
        Ok(n) => n,
        Err(f) => return failed(session, tokens, again, f).await,
    };
    match tokens.sessions.open(session.req_header(), new).await {
        Ok(set) => {
            tokens.count_sign_in();
            crate::error::see_other(session, &pre.rd, &[set, clear]).await
        }
        Err(OpenError::Randomness(_)) => {
            failed(
                session,
                tokens,
                again,
                Failed("no random values could be had"),
            )
            .await
        }
        Err(OpenError::Store(_)) => {
            failed(
                session,
                tokens,
                again,
                Failed("sessions cannot be kept right now"),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClaimPath;
    use serde_json::json;

    fn provider(domains: &[&str], groups: &[&str]) -> LoginProvider {
        let text = format!(
            "{}\n[[login_providers]]\nname = \"corp\"\nissuer = \"https://idp.example.com\"\nclient_id = \"gw\"\nroles_claim = \"realm.groups\"\nallowed_domains = {domains:?}\nallowed_groups = {groups:?}\n",
            crate::config::testing::BASE
        );
        let c = crate::config::Config::from_toml(&text, std::path::Path::new("/x/g.toml")).unwrap();
        c.login_providers[0].clone()
    }

    #[test]
    fn claims_become_roles_and_allowlists_are_applied() {
        let id = json!({"sub": "u1", "email": "Ann@Example.com", "sid": "s-1",
            "realm": {"groups": ["staff", "ops"]}, "address": "not kept"});
        let (sub, sid, claims) = session_claims(&provider(&[], &[]), &id).unwrap();
        assert_eq!((sub.as_str(), sid.as_str()), ("u1", "s-1"));
        assert_eq!(claims["roles"], json!(["staff", "ops"]));
        assert_eq!(claims["iss"], "https://idp.example.com");
        assert_eq!(claims["idp"], "corp");
        assert!(claims.get("address").is_none());
        assert!(session_claims(&provider(&["example.com"], &["ops"]), &id).is_ok());
        assert!(session_claims(&provider(&["other.com"], &[]), &id).is_err());
        assert!(session_claims(&provider(&[], &["admins"]), &id).is_err());
        let unverified = json!({"sub": "u1", "email": "a@example.com", "email_verified": false});
        assert!(session_claims(&provider(&["example.com"], &[]), &unverified).is_err());
        assert!(session_claims(&provider(&[], &[]), &json!({"email": "a@b"})).is_err());
        let _ = ClaimPath::new("x");
    }

    #[test]
    fn the_pre_login_cookie_round_trips_and_is_named_per_attempt() {
        let p = PreLogin {
            p: "corp".into(),
            state: "abcdefghijklmnopqrstuvwxyz".into(),
            nonce: "n".into(),
            v: "v".into(),
            rd: "/app".into(),
            u: "https://h/oauth/callback".into(),
            exp: 5,
        };
        assert_eq!(PreLogin::decode(&p.encode()), Some(p.clone()));
        assert_eq!(
            PreLogin::cookie_name(&p.state),
            "__Host-gatehouse-login-abcdefghijkl"
        );
        assert_eq!(PreLogin::decode("not base64!"), None);
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
