//! The sign-in endpoints of browser sessions: `/oauth/login` (the gateway's users, or a choice of
//! providers), `/oauth/logout`, and the relying-party endpoints of external OpenID providers.

mod backchannel;
mod local;
pub mod oidc;
pub mod providers;
pub mod state;

pub use providers::Providers;

use crate::config::{after_logout_ok, LoginWay};
use crate::endpoints::{login_url, LoginEndpoint};
use crate::pages::{message, page_headers};
use crate::session::browser::{from_this_origin, over_tls, safe_return};
use crate::token::TokenService;
use pingora::proxy::Session;
use std::collections::HashMap;

/// The query parameters of a request; a repeated one keeps its first value.
fn query(session: &Session) -> HashMap<String, String> {
    let q = session.req_header().uri.query().unwrap_or("");
    let mut m = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
        m.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    m
}

/// The return address a sign-in was given, or `/`.
fn return_to(params: &HashMap<String, String>) -> String {
    params
        .get("rd")
        .and_then(|r| safe_return(r))
        .unwrap_or("/")
        .to_string()
}

/// A page with a message (an error, or a notice), and a way on.
async fn message_page(
    session: &mut Session,
    tokens: &TokenService,
    status: u16,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> pingora::Result<()> {
    let body = message(&tokens.sessions.brand(), title, text, link);
    crate::respond::send_html(session, status, &page_headers(""), body).await
}

/// Answers one of the endpoints.
pub async fn handle(
    session: &mut Session,
    endpoint: LoginEndpoint,
    tokens: &TokenService,
    providers: &Providers,
) -> pingora::Result<()> {
    use http::Method;
    let method = session.req_header().method.clone();
    match (endpoint, method) {
        (LoginEndpoint::Login, Method::GET | Method::HEAD) => {
            local::show(session, tokens, providers).await
        }
        (LoginEndpoint::Login, Method::POST) => local::submit(session, tokens, providers).await,
        (LoginEndpoint::Logout, Method::GET | Method::HEAD | Method::POST) => {
            logout(session, tokens, providers).await
        }
        (LoginEndpoint::Callback, Method::GET) => oidc::callback(session, tokens, providers).await,
        (LoginEndpoint::BackchannelLogout, Method::POST) => {
            backchannel::handle(session, tokens, providers).await
        }
        _ => {
            let allow = match endpoint {
                LoginEndpoint::Login | LoginEndpoint::Logout => "GET, HEAD, POST",
                LoginEndpoint::Callback => "GET",
                LoginEndpoint::BackchannelLogout => "POST",
            };
            crate::respond::send_json(
                session,
                405,
                &[("allow", allow.to_string())],
                r#"{"error":"method_not_allowed","error_description":"this endpoint does not accept this method"}"#.into(),
            )
            .await
        }
    }
}

/// Ends the session and lands on `after_logout`. A logout another site asks for is confirmed first,
/// so a link elsewhere cannot sign people out.
async fn logout(
    session: &mut Session,
    tokens: &TokenService,
    providers: &Providers,
) -> pingora::Result<()> {
    let req = session.req_header();
    let post = req.method == http::Method::POST;
    if !from_this_origin(req, over_tls(session)) {
        if post {
            return message_page(
                session,
                tokens,
                403,
                "Sign out",
                "This sign-out did not come from this site. Use the button to sign out.",
                Some(("/oauth/logout", "Sign out")),
            )
            .await;
        }
        let body = crate::pages::confirm(
            &tokens.sessions.brand(),
            "Sign out",
            "Do you want to sign out?",
            "/oauth/logout",
            "Sign out",
        );
        return crate::respond::send_html(session, 200, &page_headers(""), body).await;
    }
    let ended = match tokens.sessions.end(session.req_header()).await {
        Ok(found) => found,
        Err(_) => {
            return message_page(
                session,
                tokens,
                503,
                "Sign out",
                "Signing out is not possible right now. Please try again in a moment.",
                Some(("/oauth/logout", "Try again")),
            )
            .await
        }
    };
    let target = &tokens.sessions.settings.after_logout;
    let target = if after_logout_ok(target) {
        target.as_str()
    } else {
        "/"
    };
    // A provider's session ends at the provider too, which then sends the browser to `after_logout`.
    let at_provider = match ended {
        Some(found) => provider_logout(session, providers, &found, target).await,
        None => None,
    };
    let to = at_provider.unwrap_or_else(|| target.to_string());
    crate::respond::see_other(session, &to, &[tokens.sessions.clear_cookie()]).await
}

/// The provider's `end_session_endpoint` with `id_token_hint`, for a session it opened.
async fn provider_logout(
    session: &Session,
    providers: &Providers,
    found: &crate::session::Found,
    after: &str,
) -> Option<String> {
    let i = providers.find(&found.record.provider)?;
    let p = providers.list.get(i)?;
    let end = providers
        .endpoints(i)
        .await
        .ok()?
        .end_session_endpoint
        .clone()?;
    let mut url = url::Url::parse(&end).ok()?;
    let after = if after.starts_with('/') {
        // the provider needs an absolute address: this host's
        let cb = oidc::callback_uri(session);
        format!("{}{after}", cb.trim_end_matches("/oauth/callback"))
    } else {
        after.to_string()
    };
    {
        let mut q = url.query_pairs_mut();
        if let Some(hint) = &found.data.id_token {
            q.append_pair("id_token_hint", hint);
        }
        q.append_pair("client_id", &p.client_id);
        q.append_pair("post_logout_redirect_uri", &after);
    }
    Some(url.into())
}

/// The sign-in ways a request names (`login=local,corp`), keeping only those configured.
fn logins(
    params: &HashMap<String, String>,
    tokens: &TokenService,
    providers: &Providers,
) -> Vec<LoginWay> {
    let named: Vec<LoginWay> = params
        .get("login")
        .map(|l| l.split(',').map(LoginWay::parse).collect())
        .unwrap_or_else(|| vec![LoginWay::Local]);
    named
        .into_iter()
        .filter(|w| match w {
            LoginWay::Local => tokens.has_users(),
            LoginWay::Provider(name) => providers.find(name).is_some(),
        })
        .collect()
}
