//! Lockouts on the console's tokens page: those the latest events engaged (a user's password or a
//! client's credentials, at an address), each with "clear", which sets its count back to zero on
//! every gateway sharing the counters.

use super::events::text;
use super::{page, Asked, Console};
use crate::pages::esc;
use serde_json::Value;

/// A lockout the events name: who (a username or a client id), whether a client, the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub who: String,
    pub client: bool,
    pub address: String,
    pub time: String,
}

/// The lockouts of the events kept, newest first, each (who, address) once.
pub fn engaged(console: &Console) -> Vec<Locked> {
    let mut out: Vec<Locked> = Vec::new();
    for line in console.events.newest_first() {
        let Ok(e) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if text(&e, &["type"]) != "dev.gatehouse.signin.lockout" {
            continue;
        }
        let (client_id, username) = (
            text(&e, &["data", "client_id"]),
            text(&e, &["data", "username"]),
        );
        let (who, client) = match (client_id, username) {
            ("", "") => continue,
            ("", u) => (u, false),
            (c, _) => (c, true),
        };
        let address = text(&e, &["data", "client_address"]);
        if out
            .iter()
            .any(|l| l.who == who && l.address == address && l.client == client)
        {
            continue;
        }
        out.push(Locked {
            who: who.into(),
            client,
            address: address.into(),
            time: text(&e, &["time"]).into(),
        });
    }
    out
}

pub fn section(console: &Console, a: &Asked<'_>) -> String {
    let rows: Vec<Vec<String>> = engaged(console)
        .iter()
        .map(|l| {
            let clear = if a.read_only() {
                String::new()
            } else {
                let kind = if l.client { "client" } else { "user" };
                page::form(
                    "/console/lockouts/clear",
                    &a.op.csrf,
                    &[("who", &l.who), ("address", &l.address), ("kind", kind)],
                    "Clear",
                    "",
                )
            };
            vec![
                esc(&l.time),
                if l.client {
                    "client".into()
                } else {
                    "user".into()
                },
                format!("<code>{}</code>", esc(&l.who)),
                esc(&l.address),
                clear,
            ]
        })
        .collect();
    format!(
        "<section><h2>Lockouts</h2><p class=\"muted\">Engaged in the latest events; a lockout also ends by itself when its window does.</p>{}</section>",
        page::table(&["Engaged", "Of a", "Who", "Address", ""], &rows, "No lockout in the latest events.")
    )
}
