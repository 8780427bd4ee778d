//! The console's sign-in: the gateway's own users, their password checked with the same lockout as
//! the sign-in page, and only those holding a console role let in.

use super::{access, page, Console};
use crate::pages::esc;
use crate::proxy::Shared;
use crate::token::SignIn;
use crate::wire::form::Params;
use http::Response;
use pingora::protocols::http::ServerSession;

fn form(status: u16, error: &str, username: &str) -> Response<Vec<u8>> {
    let error = if error.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{}</p>", esc(error))
    };
    let body = format!(
        "<div class=\"signin card\">{error}<form method=\"post\" action=\"/console/sign-in\">\
         <label>Username<input name=\"username\" autocomplete=\"username\" required value=\"{}\"></label>\
         <label>Password<input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form></div>",
        esc(username)
    );
    page::html(status, page::frame("Console sign-in", "", None, &body))
}

pub async fn answer(
    console: &Console,
    shared: &Shared,
    session: &ServerSession,
    post: bool,
    fields: &Params,
) -> Response<Vec<u8>> {
    if !post {
        return form(200, "", "");
    }
    let Some(tokens) = shared.tokens.as_ref() else {
        return form(503, "Signing in needs the token service.", "");
    };
    let username = fields.get("username").map_or("", String::as_str);
    let password = fields.get("password").map_or("", String::as_str);
    let address = session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map_or_else(|| "ip:unknown".to_string(), |a| format!("ip:{}", a.ip()));
    match tokens
        .sign_in(username, password, &address, "console")
        .await
    {
        SignIn::User(user) => {
            if !access::may_use(&user.roles, &shared.config.admin.console_roles) {
                return form(403, "This account does not hold a console role.", username);
            }
            // one browser, one session: the one it brought ends
            console.sessions.end(session.req_header());
            let now = shared.clock.now_secs();
            match console.sessions.open(&user.subject, &user.username, now) {
                Ok(cookie) => page::see_other("/console", Some(&cookie)),
                Err(_) => form(503, "Signing in is not possible right now.", username),
            }
        }
        SignIn::LockedOut => form(
            429,
            "Too many failed sign-ins. Please wait a few minutes.",
            username,
        ),
        SignIn::Busy => form(503, "The gateway is busy. Please try again.", username),
        SignIn::Wrong => form(401, "Wrong username or password.", username),
    }
}

/// Ends the operator's console session.
pub fn sign_out(console: &Console, session: &ServerSession) -> Response<Vec<u8>> {
    console.sessions.end(session.req_header());
    page::see_other("/console/sign-in", Some(&access::clear_cookie()))
}
