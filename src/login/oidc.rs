//! Sign-in through an external OpenID provider: the authorization request with PKCE, `state` and
//! `nonce` kept in a short-lived sealed pre-login cookie per attempt, and the callback that checks
//! them and the answering issuer, verifies the ID token, maps its claims and opens a session.

use super::providers::{Failed, Providers};
use super::state::{PreLogin, Sealer};
use super::{login_url, message_page};
use crate::config::LoginProvider;
use crate::respond::Answer;
use crate::session::browser::{public_scheme, safe_return, split_authority};
use crate::session::{NewSession, OpenError, SessionData};
use crate::token::TokenService;
use crate::wire::form::Params;
use crate::wire::request::Request;
use serde_json::{Map, Value};

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
/// Shown when the pre-login cookie can be neither sealed nor opened (no key could be had).
const NO_SEAL: Failed = Failed("the sign-in cannot be secured right now");

/// The S256 PKCE challenge of a verifier.
fn challenge(verifier: &str) -> String {
    crate::crypto::sha256_b64url(verifier)
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
pub(super) fn callback_uri(http: &Request<'_>) -> String {
    let req = http.header;
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
    let name = split_authority(&host).map(|(h, _)| h).unwrap_or_default();
    let scheme = public_scheme(name, http.tls);
    format!("{scheme}://{host}/oauth/callback")
}

/// Sends the browser to the provider, with a new pre-login cookie for this attempt.
pub async fn start(
    http: &Request<'_>,
    tokens: &TokenService,
    providers: &Providers,
    i: usize,
    rd: &str,
) -> Answer {
    let Some(p) = providers.list.get(i) else {
        return failed(tokens, None, Failed("no such sign-in provider"));
    };
    let ep = match providers.endpoints(i).await {
        Ok(ep) => ep,
        Err(f) => return failed(tokens, Some((p, rd)), f),
    };
    let random = || crate::crypto::random_token(32);
    let (Ok(state), Ok(nonce), Ok(v)) = (random(), random(), random()) else {
        return failed(tokens, None, Failed("no random values could be had"));
    };
    let pre = PreLogin {
        p: p.name.clone(),
        state: state.clone(),
        nonce: nonce.clone(),
        rd: rd.to_string(),
        u: callback_uri(http),
        exp: tokens.sessions.now() + PRE_LOGIN_SECONDS,
        v,
    };
    let Ok(mut target) = url::Url::parse(&ep.authorization_endpoint) else {
        return failed(
            tokens,
            None,
            Failed("the provider's sign-in address is not valid"),
        );
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
    let name = PreLogin::cookie_name(&state);
    let sealed = Sealer::for_sessions(&tokens.sessions.settings).and_then(|s| s.seal(&pre, &name));
    let Ok(sealed) = sealed else {
        return failed(tokens, None, NO_SEAL);
    };
    // Lax: the provider sends the browser back with a top-level GET, which carries it
    let set = format!(
        "{name}={sealed}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={PRE_LOGIN_SECONDS}"
    );
    Answer::see_other(target.as_str(), &[set])
}

/// A sign-in that cannot go on: logged with its reason, and a page that says so and starts again.
fn failed(tokens: &TokenService, again: Option<(&LoginProvider, &str)>, why: Failed) -> Answer {
    tracing::warn!(target: "gatehouse::login", provider = again.map(|(p, _)| p.name.as_str()).unwrap_or("-"), reason = why.0, "a sign-in through a provider failed");
    let retry = again
        .map(|(p, rd)| login_url(rd, [p.name.as_str()], None))
        .unwrap_or_else(|| "/".to_string());
    let text = format!("Signing in did not work: {}.", why.0);
    message_page(
        tokens,
        400,
        "Sign-in failed",
        &text,
        Some((&retry, "Start again")),
    )
}

/// The attempt a callback answers: the sealed pre-login cookie named after `state`, holding that
/// same `state`, for a provider still configured.
fn attempt<'a>(
    http: &Request<'_>,
    tokens: &TokenService,
    providers: &'a Providers,
    state: &str,
) -> Result<(PreLogin, usize, &'a LoginProvider), Failed> {
    let sealer = Sealer::for_sessions(&tokens.sessions.settings).map_err(|_| NO_SEAL)?;
    let name = PreLogin::cookie_name(state);
    let pre = http
        .cookie(&name)
        .and_then(|v| sealer.open(v, &name))
        .filter(|p| {
            !state.is_empty()
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    p.state.as_bytes(),
                    state.as_bytes(),
                )
                .is_ok()
        })
        .ok_or(Failed(
            "this sign-in was not started in this browser, or took too long",
        ))?;
    let gone = Failed("the sign-in provider is no longer configured");
    let i = providers.find(&pre.p).ok_or(gone.clone())?;
    let p = providers.list.get(i).ok_or(gone)?;
    Ok((pre, i, p))
}

/// RFC 9207: an answer's `iss` must name the provider the attempt started at, and a provider whose
/// metadata says it sends `iss` must send it, so no provider can pass another's code off at the
/// shared callback (a mix-up) and have it sent to the wrong token endpoint.
async fn from_its_issuer(
    providers: &Providers,
    i: usize,
    p: &LoginProvider,
    iss: Option<&String>,
) -> Result<(), Failed> {
    match iss {
        Some(iss) if *iss == p.issuer => Ok(()),
        Some(_) => Err(Failed(
            "the answer came from another provider than the one this sign-in started at",
        )),
        None if providers
            .endpoints(i)
            .await?
            .authorization_response_iss_parameter_supported =>
        {
            Err(Failed("the provider's answer does not name its issuer"))
        }
        None => Ok(()),
    }
}

/// The code of an answer that may be used: the attempt is recent, the answer comes from its
/// provider, and it is no error.
async fn answered_code<'q>(
    tokens: &TokenService,
    providers: &Providers,
    (i, p): (usize, &LoginProvider),
    pre: &PreLogin,
    params: &'q Params,
) -> Result<&'q str, Failed> {
    if pre.exp <= tokens.sessions.now() {
        return Err(Failed("the sign-in took too long"));
    }
    from_its_issuer(providers, i, p, params.get("iss")).await?;
    if let Some(e) = params.get("error") {
        let e: String = e
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(64)
            .collect();
        tracing::info!(target: "gatehouse::login", provider = %p.name, error = %e, "the provider answered the sign-in with an error");
        return Err(Failed("the provider did not sign you in"));
    }
    params
        .get("code")
        .map(String::as_str)
        .ok_or(Failed("the provider sent no sign-in code"))
}

/// OpenID Connect Core §3.1.3.7: an ID token with several audiences must name this gateway in
/// `azp`, and an `azp` that is there must be this gateway's client id.
fn issued_to_us(claims: &Value, client_id: &str) -> Result<(), Failed> {
    let azp = claims.get("azp");
    let several = claims.get("aud").is_some_and(Value::is_array);
    if (azp.is_some() || several) && azp.and_then(Value::as_str) != Some(client_id) {
        return Err(Failed("the ID token was issued to another client"));
    }
    Ok(())
}

/// Exchanges the code and makes the verified ID token a new session.
async fn signed_in(
    tokens: &TokenService,
    providers: &Providers,
    (i, p): (usize, &LoginProvider),
    pre: &PreLogin,
    code: &str,
) -> Result<NewSession, Failed> {
    let id_token = providers
        .exchange(i, code, &pre.u, &pre.v, &tokens.keys)
        .await?;
    let claims = providers.verify(i, &id_token).await?;
    if claims.get("nonce").and_then(Value::as_str) != Some(pre.nonce.as_str()) {
        return Err(Failed("the ID token is not for this sign-in"));
    }
    issued_to_us(&claims, &p.client_id)?;
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
            ..Default::default()
        },
        auth_time,
    })
}

/// The provider sent the browser back: check the attempt and the answer, exchange the code, open a
/// session.
pub async fn callback(http: &Request<'_>, tokens: &TokenService, providers: &Providers) -> Answer {
    let Ok(params) = http.query() else {
        return failed(tokens, None, Failed("a parameter was sent more than once"));
    };
    let state = params.get("state").cloned().unwrap_or_default();
    let (pre, i, p) = match attempt(http, tokens, providers, &state) {
        Ok(a) => a,
        Err(f) => return failed(tokens, None, f),
    };
    // checked when the attempt started; checked again so that even a leaked sealing key opens no
    // redirect to another site
    let rd = safe_return(&pre.rd).unwrap_or("/");
    let again = Some((p, rd));
    let new = match answered_code(tokens, providers, (i, p), &pre, &params).await {
        Ok(code) => signed_in(tokens, providers, (i, p), &pre, code).await,
        Err(f) => Err(f),
    };
    let mut new = match new {
        Ok(n) => n,
        Err(f) => return failed(tokens, again, f),
    };
    let clear = format!(
        "{}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
        PreLogin::cookie_name(&state)
    );
    new.data.address = crate::wire::request::Request::shown_key(&http.client_key()).to_string();
    // kept for the audit event only when there is an audit stream
    let subject = tokens.audit.enabled().then(|| new.subject.clone());
    match tokens.sessions.open(http.header, new).await {
        Ok(set) => {
            tokens.count_sign_in();
            tokens.audit.emit(|| {
                let (via, address) = (
                    format!("oidc:{}", p.name),
                    crate::wire::forwarded::ip_text(http.client),
                );
                let subject = subject.as_deref().unwrap_or_default();
                crate::audit::Event::sign_in_succeeded("", subject, &via, &address)
            });
            Answer::see_other(rd, &[set, clear])
        }
        Err(OpenError::Randomness(_)) => {
            failed(tokens, again, Failed("no random values could be had"))
        }
        Err(OpenError::Store(_)) => {
            failed(tokens, again, Failed("sessions cannot be kept right now"))
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
    fn the_pkce_challenge_is_s256() {
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn an_id_token_names_this_gateway_in_azp_when_it_names_anyone() {
        assert!(issued_to_us(&json!({"aud": "gw"}), "gw").is_ok());
        assert!(issued_to_us(&json!({"aud": "gw", "azp": "gw"}), "gw").is_ok());
        assert!(issued_to_us(&json!({"aud": ["gw", "x"], "azp": "gw"}), "gw").is_ok());
        assert!(issued_to_us(&json!({"aud": "gw", "azp": "other"}), "gw").is_err());
        assert!(issued_to_us(&json!({"aud": "gw", "azp": 7}), "gw").is_err());
        assert!(issued_to_us(&json!({"aud": ["gw", "x"]}), "gw").is_err());
    }
}
