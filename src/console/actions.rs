//! What the console changes: every action a POST with the session's CSRF token (the admin listener
//! has already refused other sites' writes), refused in read-only mode, and written to the audit
//! stream with who did it.

use super::{access, page, sign_in, Asked, Console};
use crate::audit::Event;
use crate::store::SessionsOf;
use http::Response;
use pingora::protocols::http::ServerSession;

/// What an action did: its name and target for the audit stream, the page it sends the browser
/// back to, and the notice (with a count) that page shows.
struct Done {
    action: &'static str,
    target: String,
    to: String,
    notice: &'static str,
    count: u64,
}

impl Done {
    fn new(action: &'static str, target: impl Into<String>, to: impl Into<String>) -> Done {
        Done {
            action,
            target: target.into(),
            to: to.into(),
            notice: UNAVAILABLE,
            count: 0,
        }
    }

    fn said(mut self, notice: &'static str, count: u64) -> Done {
        (self.notice, self.count) = (notice, count);
        self
    }

    /// Back to the page, with the notice.
    fn answer(&self) -> Response<Vec<u8>> {
        let sep = if self.to.contains('?') { '&' } else { '?' };
        let to = format!("{}{sep}notice={}&n={}", self.to, self.notice, self.count);
        page::see_other(&to, None)
    }
}

fn refused(a: &Asked<'_>, status: u16, text: &str) -> Response<Vec<u8>> {
    let body = format!("<p class=\"error\">{}</p>", crate::pages::esc(text));
    page::html(status, page::frame("Refused", "", Some(&a.viewer()), &body))
}

pub async fn act(
    console: &Console,
    session: &ServerSession,
    a: &Asked<'_>,
    path: &str,
) -> Response<Vec<u8>> {
    if !access::same_token(a.form.get("csrf").map(String::as_str), &a.op.csrf) {
        return refused(
            a,
            403,
            "This form has expired or did not come from the console. Open the page again.",
        );
    }
    if path == "/console/sign-out" {
        return sign_in::sign_out(console, session);
    }
    if a.read_only() {
        return refused(
            a,
            403,
            "The console is read-only ([admin] console_read_only).",
        );
    }
    let done = match path {
        "/console/sessions/end" => end_sessions(a).await,
        "/console/tokens/revoke" => revoke(a).await,
        "/console/clients/delete" => delete_client(a).await,
        "/console/clients/disable" => disable_client(a, true).await,
        "/console/clients/enable" => disable_client(a, false).await,
        "/console/issuers/refresh" => refresh_issuer(a).await,
        "/console/lockouts/clear" => clear_lockout(a).await,
        "/console/config/reload" => reload(a).await,
        _ => return refused(a, 404, "There is no such action."),
    };
    a.shared
        .audit
        .emit(|| Event::console_action(&a.op.subject, done.action, &done.target, done.notice));
    done.answer()
}

const UNAVAILABLE: &str = "store_unavailable";
const TOKENS: &str = "/console/tokens";

async fn end_sessions(a: &Asked<'_>) -> Done {
    let subject = a.param("subject").to_string();
    let one = a.param("session").to_string();
    let action = if one.is_empty() {
        "end_sessions"
    } else {
        "end_session"
    };
    let to = format!("/console/sessions?subject={}", urlencode(&subject));
    let done = Done::new(action, subject.clone(), to);
    let (Some(tokens), Some(_)) = (a.shared.tokens.as_ref(), a.shared.store.as_ref()) else {
        return done;
    };
    if subject.is_empty() {
        return done.said("nothing_named", 0);
    }
    if one.is_empty() {
        let ended = tokens
            .sessions
            .end_all(SessionsOf::Subject(&subject), "console")
            .await;
        return match ended {
            Ok(n) => done.said("sessions_ended", n),
            Err(_) => done,
        };
    }
    // one session, by the hash the list showed: only one of this subject's
    let ended = tokens.sessions.end_of(subject.clone(), one).await;
    match ended {
        Ok(ended) => {
            let n = u64::from(ended);
            a.shared
                .audit
                .emit(|| crate::audit::Event::sessions_revoked("console", Some(&subject), n));
            done.said("sessions_ended", n)
        }
        Err(_) => done,
    }
}

async fn revoke(a: &Asked<'_>) -> Done {
    let (kind, value) = (a.param("kind"), a.param("value").trim().to_string());
    let action = match kind {
        "jti" => "revoke_token",
        "family" => "revoke_family",
        _ => "revoke_subject",
    };
    let done = Done::new(action, value.clone(), TOKENS);
    let Some(tokens) = a.shared.tokens.as_ref() else {
        return done;
    };
    if value.is_empty() {
        return done.said("nothing_named", 0);
    }
    match kind {
        "jti" => match tokens.revoke_jti(&value).await {
            Ok(()) => done.said("token_revoked", 1),
            Err(_) => done,
        },
        "family" => match tokens.revoke_family_by_operator(&value).await {
            Ok(_) => done.said("families_revoked", 1),
            Err(_) => done,
        },
        _ => match tokens.revoke_subject(&value).await {
            Ok(n) => {
                a.shared
                    .audit
                    .emit(|| crate::audit::Event::subject_tokens_revoked("console", &value, n));
                done.said("families_revoked", n as u64)
            }
            Err(_) => done,
        },
    }
}

async fn delete_client(a: &Asked<'_>) -> Done {
    let id = a.param("client_id").to_string();
    let done = Done::new("delete_client", id.clone(), TOKENS);
    let Some(tokens) = a.shared.tokens.as_ref() else {
        return done;
    };
    match tokens.delete_registered(&id).await {
        Ok(true) => done.said("client_deleted", 1),
        Ok(false) => done.said("client_unknown", 0),
        Err(_) => done,
    }
}

async fn clear_lockout(a: &Asked<'_>) -> Done {
    let (who, address) = (a.param("who"), a.param("address"));
    let done = Done::new("clear_lockout", format!("{who}@{address}"), TOKENS);
    let Some(tokens) = a.shared.tokens.as_ref() else {
        return done;
    };
    if who.is_empty() || address.is_empty() {
        return done.said("nothing_named", 0);
    }
    let client = a.param("kind") == "client";
    match tokens.clear_lockout(who, address, client).await {
        true => done.said("lockout_cleared", 1),
        false => done,
    }
}

async fn disable_client(a: &Asked<'_>, disable: bool) -> Done {
    let id = a.param("client_id").to_string();
    let (action, notice) = match disable {
        true => ("disable_client", "client_disabled"),
        false => ("enable_client", "client_enabled"),
    };
    let done = Done::new(action, id.clone(), TOKENS);
    let Some(tokens) = a.shared.tokens.as_ref() else {
        return done;
    };
    match tokens.set_registered_disabled(&id, disable).await {
        Ok(true) => done.said(notice, 1),
        Ok(false) => done.said("client_unknown", 0),
        Err(_) => done,
    }
}

async fn refresh_issuer(a: &Asked<'_>) -> Done {
    let name = a.param("issuer");
    let done = Done::new("refresh_issuer", name, "/console/issuers");
    match a.shared.verifier.jwks.refresh_now(name).await {
        Some(true) => done.said("refreshed", 0),
        _ => done.said("refresh_failed", 0),
    }
}

async fn reload(a: &Asked<'_>) -> Done {
    let file = a.shared.config.file.display().to_string();
    let done = Done::new("reload", file, "/console/config");
    match a.reloader.reload_by_console().await {
        Ok(generation) => done.said("reloaded", generation),
        Err(_) => done.said("reload_refused", 0),
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
