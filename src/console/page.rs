//! The console's pages as HTML: the frame with its navigation, forms that carry the CSRF token,
//! and the headers every answer has (a strict CSP: scripts and styles from this listener only).

use crate::pages::esc;
use http::Response;

/// Every console answer's security headers. `same-origin`, not `no-referrer`: under the latter a
/// browser sends `Origin: null` with a form's POST, which the listener's same-origin check refuses.
const HEADERS: [(&str, &str); 5] = [
    ("x-frame-options", "DENY"),
    ("referrer-policy", "same-origin"),
    ("x-content-type-options", "nosniff"),
    ("cache-control", "no-store"),
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
];

pub const STYLE: &str = include_str!("console.css");
pub const SCRIPT: &str = include_str!("console.js");

/// An answer with the console's headers.
pub fn answer(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let h = r.headers_mut();
    for (k, v) in HEADERS {
        h.insert(k, http::HeaderValue::from_static(v));
    }
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

pub fn html(status: u16, body: String) -> Response<Vec<u8>> {
    answer(status, "text/html; charset=utf-8", body.into_bytes())
}

/// A redirect after a sign-in or an action (`303 See Other`, so the browser GETs the page).
pub fn see_other(to: &str, cookie: Option<&str>) -> Response<Vec<u8>> {
    let mut r = answer(303, "text/plain; charset=utf-8", Vec::new());
    if let Ok(v) = http::HeaderValue::from_str(to) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    if let Some(c) = cookie.and_then(|c| http::HeaderValue::from_str(c).ok()) {
        r.headers_mut().insert(http::header::SET_COOKIE, c);
    }
    r
}

/// The sections of the console, as the navigation lists them.
const SECTIONS: [(&str, &str); 7] = [
    ("/console", "Overview"),
    ("/console/issuers", "Issuers"),
    ("/console/upstreams", "Upstreams"),
    ("/console/sessions", "Sessions"),
    ("/console/tokens", "Tokens and clients"),
    ("/console/events", "Refusals and audit"),
    ("/console/config", "Configuration"),
];

/// Who is signed in, as the frame shows it, and the token their forms carry.
pub struct Viewer<'a> {
    pub username: &'a str,
    pub csrf: &'a str,
    pub read_only: bool,
}

/// A whole page: the navigation (when someone is signed in), the title and `body`.
pub fn frame(title: &str, here: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(v) = viewer {
        nav.push_str("<nav><span class=\"brand\">gatehouse</span>");
        for (path, name) in SECTIONS {
            let current = if path == here {
                " aria-current=\"page\""
            } else {
                ""
            };
            nav.push_str(&format!("<a href=\"{path}\"{current}>{name}</a>"));
        }
        nav.push_str(&format!(
            "<span class=\"who\">{}{}</span>{}</nav>",
            esc(v.username),
            if v.read_only { " · read-only" } else { "" },
            form("/console/sign-out", v.csrf, &[], "Sign out", "link")
        ));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{t} · gatehouse console</title><link rel=\"stylesheet\" href=\"/console/static/console.css\">\
         <script src=\"/console/static/console.js\" defer></script></head>\
         <body>{nav}<main><h1>{t}</h1>{body}</main></body></html>",
        t = esc(title)
    )
}

/// A POST form of one button, with the CSRF token and `fields` as hidden inputs.
pub fn form(
    action: &str,
    csrf: &str,
    fields: &[(&str, &str)],
    button: &str,
    class: &str,
) -> String {
    let mut out = format!(
        "<form method=\"post\" action=\"{}\" class=\"inline\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(action),
        esc(csrf)
    );
    for (k, v) in fields {
        out.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        ));
    }
    out.push_str(&format!(
        "<button type=\"submit\" class=\"{}\">{}</button></form>",
        esc(class),
        esc(button)
    ));
    out
}

/// A table from a header row and rows of HTML cells (already escaped by their makers).
pub fn table(head: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\">{}</p>", esc(empty));
    }
    let mut out = String::from("<table><thead><tr>");
    for h in head {
        out.push_str(&format!("<th>{}</th>", esc(h)));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows {
        out.push_str("<tr>");
        for c in r {
            out.push_str(&format!("<td>{c}</td>"));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table>");
    out
}

/// A notice after an action, from a fixed list (a query parameter never becomes page text).
pub fn notice(code: Option<&str>, count: Option<&str>) -> String {
    let n: u64 = count.and_then(|c| c.parse().ok()).unwrap_or(0);
    let text = match code {
        Some("sessions_ended") => {
            format!("{n} session(s) ended on every gateway sharing the store.")
        }
        Some("token_revoked") => "The token is revoked: the edge refuses it from now on.".into(),
        Some("families_revoked") => {
            format!("{n} refresh-token family(ies) revoked with their access tokens.")
        }
        Some("client_deleted") => "The registered client is deleted.".into(),
        Some("client_disabled") => "The registered client is disabled: the token endpoint no longer knows it; tokens it holds live out their time.".into(),
        Some("client_enabled") => "The registered client is enabled again.".into(),
        Some("client_unknown") => "No registered client has that id.".into(),
        Some("lockout_cleared") => "The lockout is cleared.".into(),
        Some("refreshed") => "The issuer's keys were fetched again.".into(),
        Some("refresh_failed") => {
            "The issuer's keys could not be fetched; the last good ones stay.".into()
        }
        Some("reloaded") => format!("Reloaded: generation {n} serves."),
        Some("reload_refused") => "The reload was refused: the file has problems (below).".into(),
        Some("nothing_named") => "Name what to act on: nothing was changed.".into(),
        Some("store_unavailable") => "The store cannot be reached; nothing was changed.".into(),
        _ => return String::new(),
    };
    format!("<p class=\"notice\" role=\"status\">{}</p>", esc(&text))
}

/// A time in seconds since the epoch as UTC text.
pub fn when(secs: u64) -> String {
    if secs == 0 {
        return "—".into();
    }
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_carry_the_token_and_escape_what_they_hold() {
        let f = form(
            "/console/x",
            "tok\"en",
            &[("subject", "<a>")],
            "End",
            "danger",
        );
        assert!(f.contains("name=\"csrf\" value=\"tok&quot;en\""));
        assert!(f.contains("value=\"&lt;a&gt;\""));
        assert!(f.starts_with("<form method=\"post\""));
    }

    #[test]
    fn notices_come_from_a_fixed_list() {
        assert!(notice(Some("sessions_ended"), Some("2")).contains("2 session(s)"));
        assert_eq!(notice(Some("<script>"), None), "");
        assert_eq!(notice(None, None), "");
    }

    #[test]
    fn every_answer_has_the_strict_headers() {
        let r = html(200, "x".into());
        let csp = r.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"));
        assert_eq!(r.headers()["x-frame-options"], "DENY");
    }
}
