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
use crate::respond::Answer;
use crate::session::browser::{from_this_origin, safe_return};
use crate::token::TokenService;
use crate::wire::form::Params;
use crate::wire::request::Request;

/// The return address a sign-in was given, or `/`.
fn return_to(params: &Params) -> String {
    params
        .get("rd")
        .and_then(|r| safe_return(r))
        .unwrap_or("/")
        .to_string()
}

/// A page with a message (an error, or a notice), and a way on.
fn message_page(
    tokens: &TokenService,
    status: u16,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Answer {
    let body = message(&tokens.sessions.brand(), title, text, link);
    Answer::html(status, page_headers(""), body)
}

/// Answers one of the endpoints.
pub async fn answer(
    http: &Request<'_>,
    endpoint: LoginEndpoint,
    tokens: &TokenService,
    providers: &Providers,
) -> Answer {
    use http::Method;
    match (endpoint, http.method().clone()) {
        (LoginEndpoint::Login, Method::GET | Method::HEAD) => {
            local::show(http, tokens, providers).await
        }
        (LoginEndpoint::Login, Method::POST) => local::submit(http, tokens, providers).await,
        (LoginEndpoint::Logout, Method::GET | Method::HEAD | Method::POST) => {
            logout(http, tokens, providers).await
        }
        (LoginEndpoint::Callback, Method::GET) => oidc::callback(http, tokens, providers).await,
        (LoginEndpoint::BackchannelLogout, Method::POST) => {
            backchannel::answer(http, tokens, providers).await
        }
        _ => {
            let allow = match endpoint {
                LoginEndpoint::Login | LoginEndpoint::Logout => "GET, HEAD, POST",
                LoginEndpoint::Callback => "GET",
                LoginEndpoint::BackchannelLogout => "POST",
            };
            Answer::json(
                405,
                vec![("allow", allow.to_string())],
                r#"{"error":"method_not_allowed","error_description":"this endpoint does not accept this method"}"#.into(),
            )
        }
    }
}

/// Ends the session and lands on `after_logout`. A logout another site asks for is confirmed first,
/// so a link elsewhere cannot sign people out.
async fn logout(http: &Request<'_>, tokens: &TokenService, providers: &Providers) -> Answer {
    if !from_this_origin(http.header, http.tls) {
        if http.is_post() {
            return message_page(
                tokens,
                403,
                "Sign out",
                "This sign-out did not come from this site. Use the button to sign out.",
                Some(("/oauth/logout", "Sign out")),
            );
        }
        let body = crate::pages::confirm(
            &tokens.sessions.brand(),
            "Sign out",
            "Do you want to sign out?",
            "/oauth/logout",
            "Sign out",
        );
        return Answer::html(200, page_headers(""), body);
    }
    let ended = match tokens.sessions.end(http.header).await {
        Ok(found) => found,
        Err(_) => {
            return message_page(
                tokens,
                503,
                "Sign out",
                "Signing out is not possible right now. Please try again in a moment.",
                Some(("/oauth/logout", "Try again")),
            )
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
        Some(found) => provider_logout(http, providers, &found, target).await,
        None => None,
    };
    let to = at_provider.unwrap_or_else(|| target.to_string());
    Answer::see_other(&to, &[tokens.sessions.clear_cookie()])
}

/// The provider's `end_session_endpoint` with `id_token_hint`, for a session it opened.
async fn provider_logout(
    http: &Request<'_>,
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
        let cb = oidc::callback_uri(http);
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
fn logins(params: &Params, tokens: &TokenService, providers: &Providers) -> Vec<LoginWay> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::request::testing::{post, request};
    use crate::wire::request::Body;
    use crate::wire::testing::get;

    fn providers() -> Providers {
        let clock = std::sync::Arc::new(crate::clock::OffsetClock::default());
        Providers::new(vec![], vec![], clock, 0).unwrap()
    }

    #[tokio::test]
    async fn sign_out_asked_from_elsewhere_is_confirmed_first() {
        let f = crate::token::tests::fixture();
        let other = [("origin", "https://evil.test"), ("host", "gw.test")];
        let h = get("/oauth/logout", &other);
        let a = answer(
            &request(&h, Body::None),
            LoginEndpoint::Logout,
            &f.svc,
            &providers(),
        )
        .await;
        assert_eq!((a.status(), a.header("set-cookie")), (200, None));
        let (h, body) = post("/oauth/logout", "", &other);
        let a = answer(
            &request(&h, body),
            LoginEndpoint::Logout,
            &f.svc,
            &providers(),
        )
        .await;
        assert_eq!(a.status(), 403);
        let same = [("origin", "https://gw.test"), ("host", "gw.test")];
        let (h, body) = post("/oauth/logout", "", &same);
        let a = answer(
            &request(&h, body),
            LoginEndpoint::Logout,
            &f.svc,
            &providers(),
        )
        .await;
        assert_eq!((a.status(), a.header("location")), (303, Some("/")));
        assert!(a
            .header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0")));
    }

    #[tokio::test]
    async fn the_sign_in_form_sets_its_cookie_and_refuses_a_stale_token() {
        let f = crate::token::tests::fixture();
        let h = get("/oauth/login?rd=/app", &[]);
        let a = answer(
            &request(&h, Body::None),
            LoginEndpoint::Login,
            &f.svc,
            &providers(),
        )
        .await;
        assert_eq!(a.status(), 200);
        assert!(a
            .header("set-cookie")
            .is_some_and(|c| c.starts_with("__Host-gatehouse-csrf=")));
        let h = get("/oauth/login?rd=/a&rd=/b", &[]);
        let a = answer(
            &request(&h, Body::None),
            LoginEndpoint::Login,
            &f.svc,
            &providers(),
        )
        .await;
        assert_eq!(a.status(), 400);
        let (h, body) = post("/oauth/login", "username=a&password=b&csrf=forged", &[]);
        let a = answer(
            &request(&h, body),
            LoginEndpoint::Login,
            &f.svc,
            &providers(),
        )
        .await;
        assert_eq!(a.status(), 403);
        let h = get("/oauth/backchannel-logout", &[]);
        let ep = LoginEndpoint::BackchannelLogout;
        let a = answer(&request(&h, Body::None), ep, &f.svc, &providers()).await;
        assert_eq!((a.status(), a.header("allow")), (405, Some("POST")));
        let (h, body) = post("/oauth/backchannel-logout", "logout_token=x.y.z", &[]);
        let a = answer(&request(&h, body), ep, &f.svc, &providers()).await;
        assert_eq!(a.status(), 400);
    }
}
