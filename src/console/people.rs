//! The console's sessions page (a subject's sessions, ended one by one or all at once) and its
//! tokens-and-clients page (revocation by token id, refresh family or subject; the configured and
//! registered clients).

use super::events::{client_activity, Activity};
use super::{page, Asked, Console};
use crate::pages::esc;
use crate::session::SessionData;
use std::collections::HashMap;

fn search(action: &str, name: &str, label: &str, value: &str) -> String {
    format!(
        "<form method=\"get\" action=\"{action}\" class=\"search\"><label>{label}\
         <input name=\"{name}\" value=\"{}\" required></label><button type=\"submit\">Show</button></form>",
        esc(value)
    )
}

pub async fn page(a: &Asked<'_>) -> String {
    let subject = a.param("subject").trim().to_string();
    let mut body = page::notice(
        a.query.get("notice").map(String::as_str),
        a.query.get("n").map(String::as_str),
    );
    body.push_str(&search("/console/sessions", "subject", "Subject", &subject));
    if !subject.is_empty() {
        body.push_str(&sessions_of(a, &subject).await);
    }
    page::frame("Sessions", "/console/sessions", Some(&a.viewer()), &body)
}

async fn sessions_of(a: &Asked<'_>, subject: &str) -> String {
    let Some(store) = a.shared.store.clone() else {
        return "<p class=\"muted\">Sessions need the token service and its store.</p>".into();
    };
    let (s, now) = (subject.to_string(), a.shared.clock.now_secs());
    let idle = a.shared.config.sessions.idle_timeout.as_secs();
    let Ok(list) = crate::store::run_blocking(&store, move |st| st.sessions_of(&s, now)).await
    else {
        return page::notice(Some("store_unavailable"), None);
    };
    let mut rows = Vec::new();
    for r in &list {
        let data: SessionData = serde_json::from_str(&r.data).unwrap_or_default();
        let end = if a.read_only() {
            String::new()
        } else {
            page::form(
                "/console/sessions/end",
                &a.op.csrf,
                &[("subject", subject), ("session", &r.hash)],
                "End",
                "danger",
            )
        };
        rows.push(vec![
            format!("<code>{}</code>", esc(r.hash.get(..12).unwrap_or(&r.hash))),
            page::when(r.auth_time),
            // the idle deadline moves with use: it lies one idle timeout after the last request
            page::when(r.idle_until.saturating_sub(idle)),
            esc(&data.address),
            esc(&data.user_agent),
            esc(&r.provider),
            end,
        ]);
    }
    let head = [
        "Session",
        "Started",
        "Last seen (about)",
        "Address",
        "Browser",
        "Signed in with",
        "",
    ];
    let mut out = format!(
        "<section><h2>{} session(s) of <code>{}</code></h2>{}",
        list.len(),
        esc(subject),
        page::table(&head, &rows, "This subject has no live session.")
    );
    if !list.is_empty() && !a.read_only() {
        out.push_str(&page::form(
            "/console/sessions/end",
            &a.op.csrf,
            &[("subject", subject)],
            "End all of them",
            "danger",
        ));
    }
    out.push_str("</section>");
    out
}

fn revoke_form(a: &Asked<'_>) -> String {
    if a.read_only() {
        return String::new();
    }
    format!(
        "<section><h2>Revoke</h2><form method=\"post\" action=\"/console/tokens/revoke\" class=\"search\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <label>What<select name=\"kind\"><option value=\"jti\">an access token, by its jti</option>\
         <option value=\"family\">a refresh-token family, by its id</option>\
         <option value=\"subject\">every token of a subject</option></select></label>\
         <label>Value<input name=\"value\" required></label>\
         <button type=\"submit\" class=\"danger\">Revoke</button></form>\
         <p class=\"muted\">Effective at once here and on every gateway sharing the store.</p></section>",
        esc(&a.op.csrf)
    )
}

fn configured_clients(a: &Asked<'_>, activity: &HashMap<String, Activity>) -> String {
    let configured: Vec<Vec<String>> = a
        .shared
        .config
        .clients
        .iter()
        .map(|c| {
            let grants: Vec<String> = c.grant_types.iter().map(|g| format!("{g:?}")).collect();
            let kind = if c.public { "public" } else { "confidential" };
            vec![
                format!("<code>{}</code>", esc(&c.client_id)),
                esc(kind),
                esc(&grants.join(", ")),
                esc(&c.scopes.join(" ")),
                activity
                    .get(&c.client_id)
                    .copied()
                    .unwrap_or_default()
                    .cell(),
            ]
        })
        .collect();
    format!(
        "<section><h2>Configured clients</h2>{}</section>",
        page::table(
            &["Client", "Kind", "Grants", "Scopes", "Latest events"],
            &configured,
            "No clients are configured."
        )
    )
}

/// One registered client's row, with its state and (unless read-only) its actions.
fn registered_row(
    a: &Asked<'_>,
    c: &crate::store::RegisteredClient,
    activity: &HashMap<String, Activity>,
) -> Vec<String> {
    let actions = if a.read_only() {
        String::new()
    } else {
        let id = [("client_id", c.client_id.as_str())];
        let (toggle, label) = if c.disabled {
            ("/console/clients/enable", "Enable")
        } else {
            ("/console/clients/disable", "Disable")
        };
        page::form(toggle, &a.op.csrf, &id, label, "")
            + &page::form(
                "/console/clients/delete",
                &a.op.csrf,
                &id,
                "Delete",
                "danger",
            )
    };
    vec![
        format!("<code>{}</code>", esc(&c.client_id)),
        esc(c.client_name.as_deref().unwrap_or("")),
        esc(&c.redirect_uris.join(" ")),
        page::when(c.created_at),
        if c.disabled {
            "<span class=\"error\">disabled</span>".into()
        } else {
            "enabled".into()
        },
        activity
            .get(&c.client_id)
            .copied()
            .unwrap_or_default()
            .cell(),
        actions,
    ]
}

pub async fn tokens(console: &Console, a: &Asked<'_>) -> String {
    let activity = client_activity(console);
    let mut body = page::notice(
        a.query.get("notice").map(String::as_str),
        a.query.get("n").map(String::as_str),
    );
    body.push_str(&revoke_form(a));
    let Some(tokens) = a.shared.tokens.as_ref() else {
        body.push_str("<p class=\"muted\">The token service is off.</p>");
        return page::frame(
            "Tokens and clients",
            "/console/tokens",
            Some(&a.viewer()),
            &body,
        );
    };
    body.push_str(&configured_clients(a, &activity));
    let registered = match tokens.registered_clients().await {
        Ok(list) => {
            let rows: Vec<Vec<String>> = list
                .iter()
                .map(|c| registered_row(a, c, &activity))
                .collect();
            page::table(
                &[
                    "Client",
                    "Name",
                    "Redirect URIs",
                    "Registered",
                    "Latest events",
                    "",
                ],
                &rows,
                "No client registered itself.",
            )
        }
        Err(_) => page::notice(Some("store_unavailable"), None),
    };
    body.push_str(&format!(
        "<section><h2>Registered clients</h2>{registered}</section>"
    ));
    body.push_str(&super::lockouts::section(console, a));
    page::frame(
        "Tokens and clients",
        "/console/tokens",
        Some(&a.viewer()),
        &body,
    )
}
