//! What the console changes: every action a POST with the session's CSRF token (the admin listener
//! has already refused other sites' writes), refused in read-only mode, and written to the audit
//! stream with who did it.

use super::{access, page, sign_in, Asked, Console};
use crate::audit::Event;
use crate::store::SessionsOf;
use http::Response;
use pingora::protocols::http::ServerSession;

/// Where an action sends the browser back to, with its notice.
fn back(to: &str, notice: &str, count: u64) -> Response<Vec<u8>> {
    let sep = if to.contains('?') { '&' } else { '?' };
    page::see_other(&format!("{to}{sep}notice={notice}&n={count}"), None)
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
    let (action, target, answer) = match path {
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
    let outcome = answer
        .headers()
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| l.split("notice=").nth(1))
        .map(|n| n.split('&').next().unwrap_or(n).to_string())
        .unwrap_or_else(|| answer.status().as_str().to_string());
    a.shared
        .audit
        .emit(|| Event::console_action(&a.op.subject, action, &target, &outcome));
    answer
}

const UNAVAILABLE: &str = "store_unavailable";

async fn end_sessions(a: &Asked<'_>) -> (&'static str, String, Response<Vec<u8>>) {
    let subject = a.param("subject").to_string();
    let to = format!("/console/sessions?subject={}", urlencode(&subject));
    let (Some(tokens), Some(store)) = (a.shared.tokens.as_ref(), a.shared.store.clone()) else {
        return ("end_sessions", subject, back(&to, UNAVAILABLE, 0));
    };
    if subject.is_empty() {
        return ("end_sessions", subject, back(&to, "nothing_named", 0));
    }
    let one = a.param("session").to_string();
    if one.is_empty() {
        let ended = tokens
            .sessions
            .end_all(SessionsOf::Subject(&subject), "console")
            .await;
        return match ended {
            Ok(n) => ("end_sessions", subject, back(&to, "sessions_ended", n)),
            Err(_) => ("end_sessions", subject, back(&to, UNAVAILABLE, 0)),
        };
    }
    // one session, by the hash the list showed: only one of this subject's
    let (s, h) = (subject.clone(), one.clone());
    let ended = crate::store::run_blocking(&store, move |st| match st.session(&h, 0)? {
        Some(r) if r.subject == s => st.end_session(&h),
        _ => Ok(false),
    })
    .await;
    match ended {
        Ok(done) => {
            let n = u64::from(done);
            a.shared
                .audit
                .emit(|| crate::audit::Event::sessions_revoked("console", Some(&subject), n));
            ("end_session", subject, back(&to, "sessions_ended", n))
        }
        Err(_) => ("end_session", subject, back(&to, UNAVAILABLE, 0)),
    }
}

async fn revoke(a: &Asked<'_>) -> (&'static str, String, Response<Vec<u8>>) {
    let (kind, value) = (a.param("kind"), a.param("value").trim().to_string());
    let to = "/console/tokens";
    let Some(tokens) = a.shared.tokens.as_ref() else {
        return ("revoke", value, back(to, UNAVAILABLE, 0));
    };
    if value.is_empty() {
        return ("revoke", value, back(to, "nothing_named", 0));
    }
    match kind {
        "jti" => match tokens.revoke_jti(&value).await {
            Ok(()) => ("revoke_token", value, back(to, "token_revoked", 1)),
            Err(_) => ("revoke_token", value, back(to, UNAVAILABLE, 0)),
        },
        "family" => match tokens.revoke_family_by_operator(&value).await {
            Ok(_) => ("revoke_family", value, back(to, "families_revoked", 1)),
            Err(_) => ("revoke_family", value, back(to, UNAVAILABLE, 0)),
        },
        _ => match tokens.revoke_subject(&value).await {
            Ok(n) => {
                a.shared
                    .audit
                    .emit(|| crate::audit::Event::subject_tokens_revoked("console", &value, n));
                (
                    "revoke_subject",
                    value,
                    back(to, "families_revoked", n as u64),
                )
            }
            Err(_) => ("revoke_subject", value, back(to, UNAVAILABLE, 0)),
        },
    }
}

async fn delete_client(a: &Asked<'_>) -> (&'static str, String, Response<Vec<u8>>) {
    let id = a.param("client_id").to_string();
    let to = "/console/tokens";
    let Some(tokens) = a.shared.tokens.as_ref() else {
        return ("delete_client", id, back(to, UNAVAILABLE, 0));
    };
    match tokens.delete_registered(&id).await {
        Ok(true) => ("delete_client", id, back(to, "client_deleted", 1)),
        Ok(false) => ("delete_client", id, back(to, "client_unknown", 0)),
        Err(_) => ("delete_client", id, back(to, UNAVAILABLE, 0)),
    }
}

async fn clear_lockout(a: &Asked<'_>) -> (&'static str, String, Response<Vec<u8>>) {
    let (who, address) = (a.param("who").to_string(), a.param("address"));
    let to = "/console/tokens";
    let target = format!("{who}@{address}");
    let Some(tokens) = a.shared.tokens.as_ref() else {
        return ("clear_lockout", target, back(to, UNAVAILABLE, 0));
    };
    if who.is_empty() || address.is_empty() {
        return ("clear_lockout", target, back(to, "nothing_named", 0));
    }
    let client = a.param("kind") == "client";
    match tokens.clear_lockout(&who, address, client).await {
        true => ("clear_lockout", target, back(to, "lockout_cleared", 1)),
        false => ("clear_lockout", target, back(to, UNAVAILABLE, 0)),
    }
}

async fn disable_client(a: &Asked<'_>, disable: bool) -> (&'static str, String, Response<Vec<u8>>) {
    let id = a.param("client_id").to_string();
    let (to, action) = (
        "/console/tokens",
        if disable {
            "disable_client"
        } else {
            "enable_client"
        },
    );
    let Some(tokens) = a.shared.tokens.as_ref() else {
        return (action, id, back(to, UNAVAILABLE, 0));
    };
    let done = if disable {
        "client_disabled"
    } else {
        "client_enabled"
    };
    match tokens.set_registered_disabled(&id, disable).await {
        Ok(true) => (action, id, back(to, done, 1)),
        Ok(false) => (action, id, back(to, "client_unknown", 0)),
        Err(_) => (action, id, back(to, UNAVAILABLE, 0)),
    }
}

async fn refresh_issuer(a: &Asked<'_>) -> (&'static str, String, Response<Vec<u8>>) {
    let name = a.param("issuer").to_string();
    let to = "/console/issuers";
    let notice = match a.shared.verifier.jwks.refresh_now(&name).await {
        Some(true) => "refreshed",
        _ => "refresh_failed",
    };
    ("refresh_issuer", name, back(to, notice, 0))
}

async fn reload(a: &Asked<'_>) -> (&'static str, String, Response<Vec<u8>>) {
    let to = "/console/config";
    let file = a.shared.config.file.display().to_string();
    match a.reloader.reload_by_console().await {
        Ok(generation) => ("reload", file, back(to, "reloaded", generation)),
        Err(_) => ("reload", file, back(to, "reload_refused", 0)),
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
