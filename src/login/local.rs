//! Sign-in of the gateway's own users at `/oauth/login`: the form (with its one-use CSRF token,
//! lockout and rate limits), or the choice between the ways a route allows.

use super::{logins, message_page, return_to, Providers};
use crate::config::LoginWay;
use crate::pages::{page_headers, sign_in, Choice, SignInForm};
use crate::respond::Answer;
use crate::session::OpenError;
use crate::token::{SignIn, TokenService};
use crate::wire::request::Request;

/// GET: the form, or the choice of providers.
pub(super) async fn show(
    http: &Request<'_>,
    tokens: &TokenService,
    providers: &Providers,
) -> Answer {
    let Ok(params) = http.query() else {
        let text = "This sign-in address is not valid: a parameter was sent more than once.";
        return message_page(
            tokens,
            400,
            "Sign in",
            text,
            Some(("/oauth/login", "Start again")),
        );
    };
    let ways = logins(&params, tokens, providers);
    let rd = return_to(&params);
    let app = providers.app(params.get("app"));
    match ways.as_slice() {
        [] => message_page(
            tokens,
            400,
            "Sign in",
            "There is no way to sign in here. Ask the site's owner.",
            None,
        ),
        [LoginWay::Local] => form(http, tokens, 200, "", &rd, "", app),
        [LoginWay::Provider(only)] => match providers.find(only) {
            Some(i) => super::oidc::start(http, tokens, providers, i, &rd).await,
            None => form(http, tokens, 200, "", &rd, "", app),
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
            Answer::html(200, page_headers(""), body)
        }
    }
}

/// The sign-in form, with a fresh one-use token.
fn form(
    http: &Request<'_>,
    tokens: &TokenService,
    status: u16,
    error: &str,
    rd: &str,
    username: &str,
    app: Option<&str>,
) -> Answer {
    let Ok((csrf, set_cookie)) = tokens.form_token(http) else {
        return no_randomness(tokens);
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
    Answer::html(status, headers, body)
}

fn no_randomness(tokens: &TokenService) -> Answer {
    message_page(
        tokens,
        503,
        "Sign in",
        "Signing in is not possible right now. Please try again in a moment.",
        None,
    )
}

/// POST: checks the form token and the credentials, opens a session, and goes back to `rd`.
pub(super) async fn submit(
    http: &Request<'_>,
    tokens: &TokenService,
    providers: &Providers,
) -> Answer {
    let Ok(params) = http.form() else {
        return message_page(
            tokens,
            400,
            "Sign in",
            "The sign-in form could not be read.",
            Some(("/oauth/login", "Start again")),
        );
    };
    let rd = return_to(&params);
    let app = providers.app(params.get("app"));
    let username = params.get("username").cloned().unwrap_or_default();
    if !tokens.has_users() {
        let text = "There is no way to sign in here.";
        return message_page(tokens, 400, "Sign in", text, None);
    }
    if !tokens.take_form_token(http, params.get("csrf")).await {
        let msg = "This sign-in form has expired. Please try again.";
        return form(http, tokens, 403, msg, &rd, &username, app);
    }
    let password = params.get("password").cloned().unwrap_or_default();
    let (status, msg) = match tokens
        .sign_in(&username, &password, &http.client_key(), "login_page")
        .await
    {
        SignIn::User(user) => {
            let now = tokens.sessions.now();
            let mut new = tokens.local_session(user, now);
            new.data.address = Request::shown_key(&http.client_key()).to_string();
            return match tokens.sessions.open(http.header, new).await {
                Ok(set) => {
                    tokens.count_sign_in();
                    Answer::see_other(&rd, &[set])
                }
                Err(OpenError::Randomness(_)) => no_randomness(tokens),
                Err(OpenError::Store(_)) => {
                    let msg = "Signing in is not possible right now. Please try again in a moment.";
                    form(http, tokens, 503, msg, &rd, &username, app)
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
    form(http, tokens, status, msg, &rd, &username, app)
}
