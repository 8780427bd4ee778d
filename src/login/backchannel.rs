//! OpenID Connect Back-Channel Logout: a provider posts a signed logout token, and the sessions it
//! names (by `sid`, else by `sub`) end on every gateway sharing the store.

use super::providers::Providers;
use crate::respond::Answer;
use crate::store::SessionsOf;
use crate::token::{OAuthErrorCode, TokenService};
use crate::wire::request::Request;
use serde_json::Value;

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The checks of OIDC Back-Channel Logout §2.6 beyond the signature and the usual claims: the event,
/// no nonce, and a `sid` or a `sub`. Returns (sid, sub, jti).
pub fn logout_claims(c: &Value) -> Result<(String, String, String), &'static str> {
    if !c
        .get("events")
        .and_then(Value::as_object)
        .is_some_and(|e| e.contains_key(EVENT))
    {
        return Err("the logout token has no back-channel logout event");
    }
    if c.get("nonce").is_some() {
        return Err("a logout token must not carry a nonce");
    }
    let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (sid, sub, jti) = (text("sid"), text("sub"), text("jti"));
    if sid.is_empty() && sub.is_empty() {
        return Err("the logout token names neither sid nor sub");
    }
    if jti.is_empty() {
        return Err("the logout token has no jti");
    }
    Ok((sid, sub, jti))
}

fn refuse(status: u16, why: &str) -> Answer {
    tracing::warn!(target: "gatehouse::login", reason = why, "a back-channel logout was refused");
    let code = match status {
        400 => OAuthErrorCode::InvalidRequest,
        _ => OAuthErrorCode::TemporarilyUnavailable,
    };
    let body = serde_json::json!({"error": code, "error_description": why});
    Answer::json(status, vec![], body.to_string())
}

/// Ends the sessions a provider's logout token names.
pub async fn answer(http: &Request<'_>, tokens: &TokenService, providers: &Providers) -> Answer {
    let form = match http.form() {
        Ok(f) => f,
        Err(_) => return refuse(400, "the body must be a form with logout_token"),
    };
    let Some(token) = form.get("logout_token") else {
        return refuse(400, "logout_token is required");
    };
    // The issuer picks the provider; the signature and claims are checked against that one only.
    let unverified = crate::auth::jwt::parse(token)
        .ok()
        .map(|p| p.claims.clone());
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_string();
    let iss = text(unverified.as_ref().and_then(|c| c.get("iss")));
    let audiences: Vec<String> = match unverified.as_ref().and_then(|c| c.get("aud")) {
        Some(Value::Array(a)) => a.iter().map(|x| text(Some(x))).collect(),
        other => vec![text(other)],
    };
    let audiences: Vec<&str> = audiences.iter().map(String::as_str).collect();
    let Some(i) = providers.by_issuer(&iss, &audiences) else {
        return refuse(400, "the logout token is not from a configured provider");
    };
    let claims = match providers.verify(i, token).await {
        Ok(c) => c,
        Err(f) => return refuse(400, f.0),
    };
    let (sid, sub, jti) = match logout_claims(&claims) {
        Ok(x) => x,
        Err(why) => return refuse(400, why),
    };
    let Some(p) = providers.list.get(i) else {
        return refuse(400, "the provider is not configured");
    };
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    match tokens.sessions.first_use(&p.name, &jti, exp).await {
        Ok(true) => {}
        Ok(false) => return refuse(400, "the logout token was used before"),
        Err(_) => return refuse(503, "sessions cannot be changed right now"),
    }
    let of = if sid.is_empty() {
        SessionsOf::ProviderSubject(&p.name, &sub)
    } else {
        SessionsOf::ProviderSid(&p.name, &sid)
    };
    let subject = (!sub.is_empty()).then_some(sub.as_str());
    match tokens.sessions.end_all(of, "backchannel").await {
        Ok(n) => {
            tokens
                .audit
                .emit(|| crate::audit::Event::backchannel_logout(&p.name, subject, n));
            tracing::info!(target: "gatehouse::login", provider = %p.name, ended = n, "back-channel logout");
            Answer::empty(200, vec![])
        }
        Err(_) => refuse(503, "sessions cannot be changed right now"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn logout_tokens_need_the_event_a_subject_and_no_nonce() {
        let ok = json!({"events": {EVENT: {}}, "sid": "s", "jti": "j"});
        assert_eq!(
            logout_claims(&ok),
            Ok(("s".into(), String::new(), "j".into()))
        );
        assert!(logout_claims(&json!({"sid": "s", "jti": "j"})).is_err());
        assert!(logout_claims(&json!({"events": {EVENT: {}}, "jti": "j"})).is_err());
        assert!(logout_claims(
            &json!({"events": {EVENT: {}}, "sub": "u", "jti": "j", "nonce": "n"})
        )
        .is_err());
        assert!(logout_claims(&json!({"events": {EVENT: {}}, "sub": "u"})).is_err());
    }
}
