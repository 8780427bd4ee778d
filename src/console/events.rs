//! The console's refusals-and-audit page: the latest audit events this gateway emitted, newest
//! first, filtered by route, reason, subject and client, refreshed every few seconds.

use super::{page, Asked, Console};
use crate::pages::esc;
use serde_json::Value;

/// Rows shown at once.
const SHOWN: usize = 200;

const FILTERS: [(&str, &str); 5] = [
    ("type", "Event"),
    ("route", "Route"),
    ("reason", "Reason"),
    ("subject", "Subject"),
    ("client", "Client"),
];

pub(super) fn text<'a>(e: &'a Value, path: &[&str]) -> &'a str {
    let mut v = e;
    for p in path {
        v = &v[*p];
    }
    v.as_str().unwrap_or("")
}

/// The field a filter reads.
fn field<'a>(e: &'a Value, filter: &str) -> &'a str {
    match filter {
        "type" => text(e, &["type"]).trim_start_matches("dev.gatehouse."),
        "route" => text(e, &["data", "route"]),
        "reason" => {
            let r = text(e, &["data", "reason"]);
            if r.is_empty() {
                text(e, &["data", "rule"])
            } else {
                r
            }
        }
        "subject" => text(e, &["subject"]),
        "client" => text(e, &["data", "client_id"]),
        _ => "",
    }
}

/// Whether an event passes every filter given (a filter matches a part of its field).
fn passes(e: &Value, a: &Asked<'_>) -> bool {
    FILTERS.iter().all(|(f, _)| {
        let want = a.query.get(*f).map_or("", |w| w.trim());
        want.is_empty() || field(e, f).contains(want)
    })
}

/// What the latest events say of one client: tokens issued to it, its requests refused, and
/// lockouts of its credentials.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    pub issued: u64,
    pub refused: u64,
    pub lockouts: u64,
}

impl Activity {
    pub fn cell(&self) -> String {
        format!(
            "{} issued · {} refused · {} lockout(s)",
            self.issued, self.refused, self.lockouts
        )
    }
}

/// Each client's activity in the events kept.
pub fn client_activity(console: &Console) -> std::collections::HashMap<String, Activity> {
    let mut out: std::collections::HashMap<String, Activity> = Default::default();
    for line in console.events.newest_first() {
        let Ok(e) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let client = field(&e, "client");
        if client.is_empty() {
            continue;
        }
        let a = out.entry(client.to_string()).or_default();
        match field(&e, "type") {
            "token.issued" => a.issued += 1,
            "request.refused" => a.refused += 1,
            "signin.lockout" => a.lockouts += 1,
            _ => {}
        }
    }
    out
}

/// The table alone: the page's live part.
pub fn table(console: &Console, a: &Asked<'_>) -> String {
    let mut rows = Vec::new();
    for line in console.events.newest_first() {
        let Ok(e) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if !passes(&e, a) {
            continue;
        }
        let kind = field(&e, "type");
        let class =
            if kind == "request.refused" || kind.ends_with("failed") || kind.ends_with("reused") {
                " class=\"error\""
            } else {
                ""
            };
        rows.push(vec![
            esc(text(&e, &["time"])),
            format!("<span{class}>{}</span>", esc(kind)),
            esc(field(&e, "route")),
            esc(field(&e, "reason")),
            esc(field(&e, "subject")),
            esc(field(&e, "client")),
            esc(text(&e, &["data", "client_address"])),
            format!("<code>{}</code>", esc(text(&e, &["data", "trace_id"]))),
        ]);
        if rows.len() == SHOWN {
            break;
        }
    }
    let head = [
        "Time", "Event", "Route", "Reason", "Subject", "Client", "Address", "Trace",
    ];
    page::table(
        &head,
        &rows,
        "No events yet (or none that pass the filters).",
    )
}

pub fn page(console: &Console, a: &Asked<'_>) -> String {
    let mut filters =
        String::from("<form method=\"get\" action=\"/console/events\" class=\"search\">");
    let mut live = url::form_urlencoded::Serializer::new(String::new());
    live.append_pair("part", "table");
    for (name, label) in FILTERS {
        let v = a.query.get(name).map_or("", String::as_str);
        if !v.is_empty() {
            live.append_pair(name, v);
        }
        filters.push_str(&format!(
            "<label>{label}<input name=\"{name}\" value=\"{}\"></label>",
            esc(v)
        ));
    }
    filters.push_str("<button type=\"submit\">Filter</button></form>");
    let body = format!(
        "{filters}<p class=\"muted\">The latest {} audit events of this gateway, newest first; \
         allowed requests appear as `[audit] allow_sample_ratio` samples them.</p>\
         <section data-live=\"/console/events?{}\">{}</section>",
        crate::audit::recent::KEPT,
        esc(&live.finish()),
        table(console, a)
    );
    page::frame(
        "Refusals and audit",
        "/console/events",
        Some(&a.viewer()),
        &body,
    )
}
