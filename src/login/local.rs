//! Sign-in of the gateway's own users at `/oauth/login`: the form (with its one-use CSRF token,
//! lockout and rate limits), or the choice between the ways a route allows.

use super::{logins, message_page, query, return_to, Providers};
use crate::config::LoginWay;
use crate::pages::{page_headers, sign_in, Choice, SignInForm};
use crate::session::OpenError;
use crate::token::{SignIn, TokenService};
use pingora::proxy::Session;
use std::collections::HashMap;

/// GET: the form, or the choice of providers.
pub(super) async fn show(
    session: &mut Session,
    tokens: &TokenService,
    providers: &Providers,
) -> pingora::Result<()> {
    let params = query(session);
    let ways = logins(&params, tokens, providers);
    let rd = return_to(&params);
    let app = providers.app(params.get("app"));
    match ways.as_slice() {
        [] => {
            message_page(
                session,
                tokens,
                400,
                "Sign in",
                "There is no way to sign in here. Ask the site's owner.",
                None,
            )
            .await
        }
        [LoginWay::Local] => form(session, tokens, 200, "", &rd, "", app).await,
        [LoginWay::Provider(only)] => match providers.find(only) {
            Some(i) => super::oidc::start(session, tokens, providers, i, &rd).await,
            None => form(session, tokens, 200, "", &rd, "", app).await,
        },
        many => {
            let choices: Vec<Choice> = many
                .iter()
                .map(|w| {
                    let mut q = url::form_urlencoded::Serializer::new(String::new());
                    q.append_pair("rd", &rd);
                    q.append_pair("login", w.as_str());
                    if let Some(app) = app {
                        q.append_pair("app", app);
                    }
                    Choice {
                        label: match w {
                            LoginWay::Local => "email and password".into(),
                            LoginWay::Provider(name) => name.clone(),
                        },
                        href: format!("/oauth/login?{}", q.finish()),
                    }
                })
                .collect();
            let body = crate::pages::choose(&tokens.sessions.brand(), app, &choices);
            crate::respond::send_html(session, 200, &page_headers(""), body).await
        }
    }
}

/// The sign-in form, with a fresh one-use token.
async fn form(
    session: &mut Session,
    tokens: &TokenService,
    status: u16,
    error: &str,
    rd: &str,
    username: &str,
    app: Option<&str>,
) -> pingora::Result<()> {
    let Ok((csrf, set_cookie)) = tokens.form_token(session) else {
        return no_randomness(session, tokens).await;
    };
    let mut headers = page_headers("");
    headers.push(("set-cookie", set_cookie));
    let body = sign_in(
        &tokens.sessions.brand(),
        &SignInForm {
            action: "/oauth/login",
            hidden: {
                let mut h = vec![("rd", rd.to_string()), ("csrf", csrf)];
                if let Some(app) = app {
                    h.push(("app", app.to_string()));
                }
                h
            },
            username,
            app,
            error,
        },
    );
    crate::respond::send_html(session, status, &headers, body).await
}

async fn no_randomness(session: &mut Session, tokens: &TokenService) -> pingora::Result<()> {
    message_page(
        session,
        tokens,
        503,
        "Sign in",
        "Signing in is not possible right now. Please try again in a moment.",
        None,
    )
    .await
}

/// POST: checks the form token and the credentials, opens a session, and goes back to `rd`.
pub(super) async fn submit(
    session: &mut Session,
    tokens: &TokenService,
    providers: &Providers,
) -> pingora::Result<()> {
    let params: HashMap<String, String> = match tokens.read_form(session).await {
        Ok(p) => p,
        Err(_) => {
            return message_page(
                session,
                tokens,
                400,
                "Sign in",
                "The sign-in form could not be read.",
                Some(("/oauth/login", "Start again")),
            )
            .await
        }
    };
    let rd = return_to(&params);
    let app = providers.app(params.get("app"));
    let username = params.get("username").cloned().unwrap_or_default();
    if !tokens.has_users() {
        return message_page(
            session,
            tokens,
            400,
            "Sign in",
            "There is no way to sign in here.",
            None,
        )
        .await;
    }
    if !tokens.take_form_token(session, params.get("csrf")) {
        let msg = "This sign-in form has expired. Please try again.";
        return form(session, tokens, 403, msg, &rd, &username, app).await;
    }
    let password = params.get("password").cloned().unwrap_or_default();
    let address = tokens.client_address(session);
    let (status, msg) = match tokens.sign_in(&username, &password, &address).await {
        SignIn::User(user) => {
            let now = tokens.sessions.now();
            return match tokens
                .sessions
                .open(session.req_header(), tokens.local_session(user, now))
                .await
            {
                Ok(set) => {
                    tokens.count_sign_in();
                    crate::respond::see_other(session, &rd, &[set]).await
                }
                Err(OpenError::Randomness(_)) => no_randomness(session, tokens).await,
                Err(OpenError::Store(_)) => {
                    let msg = "Signing in is not possible right now. Please try again in a moment.";
                    form(session, tokens, 503, msg, &rd, &username, app).await
                }
            };
        }
        SignIn::LockedOut => (429, "Too many failed sign-ins. Please wait a few minutes."),
        SignIn::Busy => (
            503,
            "The sign-in service is busy. Please try again in a moment.",
        ),
        SignIn::Wrong => (401, "The email or password is wrong."),
    };
    form(session, tokens, status, msg, &rd, &username, app).await
}
