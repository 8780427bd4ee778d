//! The audit events as values, and their CloudEvents 1.0 JSON form: one constructor per kind, so
//! each kind's `data` fields are written in one place, and no constructor takes a credential.

use serde_json::{json, Map, Value};

/// Every kind of audit event; `dev.gatehouse.<name>` is its CloudEvents `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RequestAllowed,
    RequestRefused,
    TokenIssued,
    RefreshRotated,
    RefreshReused,
    TokenRevoked,
    TokenIntrospected,
    SignInSucceeded,
    SignInFailed,
    LockoutEngaged,
    SessionStarted,
    SessionEnded,
    SessionsRevoked,
    BackchannelLogout,
    ClientRegistered,
    ConfigReloaded,
    ConfigReloadRefused,
    ConsoleAction,
}

impl Kind {
    pub const ALL: [Kind; 18] = [
        Kind::RequestAllowed,
        Kind::RequestRefused,
        Kind::TokenIssued,
        Kind::RefreshRotated,
        Kind::RefreshReused,
        Kind::TokenRevoked,
        Kind::TokenIntrospected,
        Kind::SignInSucceeded,
        Kind::SignInFailed,
        Kind::LockoutEngaged,
        Kind::SessionStarted,
        Kind::SessionEnded,
        Kind::SessionsRevoked,
        Kind::BackchannelLogout,
        Kind::ClientRegistered,
        Kind::ConfigReloaded,
        Kind::ConfigReloadRefused,
        Kind::ConsoleAction,
    ];

    /// The name after `dev.gatehouse.` in the event's `type`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RequestAllowed => "request.allowed",
            Kind::RequestRefused => "request.refused",
            Kind::TokenIssued => "token.issued",
            Kind::RefreshRotated => "token.refresh_rotated",
            Kind::RefreshReused => "token.refresh_reused",
            Kind::TokenRevoked => "token.revoked",
            Kind::TokenIntrospected => "token.introspected",
            Kind::SignInSucceeded => "signin.succeeded",
            Kind::SignInFailed => "signin.failed",
            Kind::LockoutEngaged => "signin.lockout",
            Kind::SessionStarted => "session.started",
            Kind::SessionEnded => "session.ended",
            Kind::SessionsRevoked => "session.revoked",
            Kind::BackchannelLogout => "session.backchannel_logout",
            Kind::ClientRegistered => "client.registered",
            Kind::ConfigReloaded => "config.reloaded",
            Kind::ConfigReloadRefused => "config.reload_refused",
            Kind::ConsoleAction => "console.action",
        }
    }

    /// The OCSF class the event maps to (`class_uid`), carried as the `ocsfclassuid` extension.
    pub fn ocsf_class(self) -> u32 {
        match self {
            // Web Resource Access Activity
            Kind::RequestAllowed | Kind::RequestRefused => 6004,
            // Authentication: tickets issued and renewed, logons and logoffs
            Kind::TokenIssued
            | Kind::RefreshRotated
            | Kind::RefreshReused
            | Kind::SignInSucceeded
            | Kind::SignInFailed
            | Kind::SessionEnded
            | Kind::SessionsRevoked
            | Kind::BackchannelLogout => 3002,
            // Authorize Session: a session granted to a signed-in person
            Kind::SessionStarted => 3003,
            // Account Change: an account locked, a client account created
            Kind::LockoutEngaged | Kind::ClientRegistered => 3001,
            // API Activity: operations on the token service's API
            Kind::TokenRevoked | Kind::TokenIntrospected => 6003,
            // Device Config State Change (a refused one is that class's failure: nothing changed)
            Kind::ConfigReloaded | Kind::ConfigReloadRefused => 5019,
            // API Activity: an operator's change through the console
            Kind::ConsoleAction => 6003,
        }
    }

    /// Whether the event is kept whatever `allow_sample_ratio` says (all but allowed requests).
    pub fn always_kept(self) -> bool {
        self != Kind::RequestAllowed
    }
}

/// One audit event before it has an id and a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub kind: Kind,
    /// the CloudEvents `subject`: whom the event is about, when someone is
    pub subject: Option<String>,
    pub data: Map<String, Value>,
}

fn object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// What the proxy knew of one request, for `request.allowed` and `request.refused`.
pub struct RequestFacts<'a> {
    pub route: Option<&'a str>,
    pub status: u16,
    /// the refusal reason (`DenyReason`), none when allowed
    pub reason: Option<&'a str>,
    /// the route rule that refused (`deny_if[0]`), never a value it read
    pub rule: Option<String>,
    pub subject: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub issuer: Option<&'a str>,
    pub client_address: Option<String>,
    pub method: &'a str,
    /// the normalised path, never the query (a token may ride in it)
    pub path: &'a str,
    pub trace_id: Option<&'a str>,
}

/// What a token grant issued, for `token.issued`.
pub struct Issue<'a> {
    pub grant: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub scopes: &'a [String],
    pub audience: &'a Value,
    pub jti: &'a str,
    pub expires_in: u64,
    /// bound to a DPoP key (RFC 9449)
    pub dpop_bound: bool,
}

impl Event {
    fn new(kind: Kind, subject: Option<&str>, data: Value) -> Event {
        Event {
            kind,
            subject: subject.map(str::to_string),
            data: object(data),
        }
    }

    pub fn request(f: &RequestFacts<'_>) -> Event {
        let kind = match f.reason {
            Some(_) => Kind::RequestRefused,
            None => Kind::RequestAllowed,
        };
        let decision = match f.reason {
            Some(_) => "refused",
            None => "allowed",
        };
        let data = json!({
            "route": f.route, "decision": decision, "status": f.status, "reason": f.reason,
            "rule": f.rule,
            "subject": f.subject, "client_id": f.client_id, "issuer": f.issuer,
            "client_address": f.client_address, "method": f.method, "path": f.path,
            "trace_id": f.trace_id,
        });
        Event::new(kind, f.subject, data)
    }

    pub fn token_issued(i: &Issue<'_>) -> Event {
        let data = json!({
            "grant": i.grant, "client_id": i.client_id, "subject": i.subject,
            "scopes": i.scopes, "audience": i.audience, "jti": i.jti,
            "expires_in": i.expires_in, "dpop_bound": i.dpop_bound,
        });
        Event::new(Kind::TokenIssued, Some(i.subject), data)
    }

    /// A refresh token was used once and replaced; `jti`: the access token issued with it.
    pub fn refresh_rotated(client_id: &str, subject: &str, jti: &str) -> Event {
        let data = json!({"client_id": client_id, "subject": subject, "jti": jti});
        Event::new(Kind::RefreshRotated, Some(subject), data)
    }

    /// A rotated refresh token came back: its whole family is revoked.
    pub fn refresh_reused(client_id: &str, revoked_access_tokens: usize) -> Event {
        let data = json!({"client_id": client_id, "family_revoked": true,
            "revoked_access_tokens": revoked_access_tokens});
        Event::new(Kind::RefreshReused, None, data)
    }

    /// Every refresh family of a subject ended, with the access tokens issued from them.
    pub fn subject_tokens_revoked(by: &str, subject: &str, families: usize) -> Event {
        Event::token_revoked(Revoked {
            by,
            client_id: None,
            subject: Some(subject),
            token_type: "all",
            jti: None,
            families,
        })
    }

    /// Tokens revoked. `by`: `client` (/oauth/revoke), `admin` (the admin listener), `cli`,
    /// `user_removed` (a reload that removed or disabled the user).
    pub fn token_revoked(r: Revoked<'_>) -> Event {
        let data = json!({"by": r.by, "client_id": r.client_id, "subject": r.subject,
            "token_type": r.token_type, "jti": r.jti, "families": r.families});
        Event::new(Kind::TokenRevoked, r.subject, data)
    }

    /// An introspection answered; `subject` and `jti` only when the token was active.
    pub fn introspected(client_id: &str, answer: &Value) -> Event {
        let text = |k: &str| answer.get(k).and_then(Value::as_str);
        let active = answer.get("active").and_then(Value::as_bool) == Some(true);
        let data = json!({"client_id": client_id, "active": active,
            "token_type": text("token_type"), "subject": text("sub"), "jti": text("jti")});
        Event::new(Kind::TokenIntrospected, text("sub"), data)
    }

    /// A person signed in. `via`: `authorize_page`, `login_page`, `password_grant` or
    /// `oidc:<provider>` (whose sign-ins have no local username: null).
    pub fn sign_in_succeeded(username: &str, subject: &str, via: &str, address: &str) -> Event {
        let username = (!username.is_empty()).then_some(username);
        let data = json!({"username": username, "subject": subject, "via": via,
            "client_address": address});
        Event::new(Kind::SignInSucceeded, Some(subject), data)
    }

    /// A sign-in refused: `reason` is `wrong_credentials` or `locked_out`; never the password.
    pub fn sign_in_failed(username: &str, via: &str, address: &str, reason: &str) -> Event {
        let data = json!({"username": username, "via": via, "client_address": address,
            "reason": reason});
        Event::new(Kind::SignInFailed, None, data)
    }

    /// Too many failed sign-ins: the account at this address (or the address) is locked out.
    pub fn lockout(username: &str, address: &str, retry_after: u64) -> Event {
        let data = json!({"username": username, "client_address": address,
            "retry_after": retry_after});
        Event::new(Kind::LockoutEngaged, None, data)
    }

    /// Too many failed authentications of a client from this address: it is locked out there.
    pub fn client_lockout(client_id: &str, address: &str, retry_after: u64) -> Event {
        let data = json!({"client_id": client_id, "client_address": address,
            "retry_after": retry_after});
        Event::new(Kind::LockoutEngaged, None, data)
    }

    /// `session`: the first 16 hex digits of the SHA-256 of the session's hash, never the cookie.
    pub fn session_started(subject: &str, provider: &str, session: &str) -> Event {
        let data = json!({"subject": subject, "provider": provider, "session": session});
        Event::new(Kind::SessionStarted, Some(subject), data)
    }

    pub fn session_ended(subject: &str, session: &str) -> Event {
        let data = json!({"subject": subject, "session": session, "reason": "logout"});
        Event::new(Kind::SessionEnded, Some(subject), data)
    }

    /// Sessions ended from outside the browser. `by`: `admin`, `backchannel`, `user_removed`.
    pub fn sessions_revoked(by: &str, subject: Option<&str>, ended: u64) -> Event {
        let data = json!({"by": by, "subject": subject, "ended": ended});
        Event::new(Kind::SessionsRevoked, subject, data)
    }

    pub fn backchannel_logout(provider: &str, subject: Option<&str>, ended: u64) -> Event {
        let data = json!({"provider": provider, "subject": subject, "ended": ended});
        Event::new(Kind::BackchannelLogout, subject, data)
    }

    /// An operator acted through the console: who (`by`, the signed-in subject), what (`action`),
    /// on what (`target`: a subject, a token id, a client id; never a secret), and whether it
    /// was done.
    pub fn console_action(by: &str, action: &str, target: &str, outcome: &str) -> Event {
        let data = json!({"by": by, "action": action, "target": target, "outcome": outcome});
        Event::new(Kind::ConsoleAction, Some(by), data)
    }

    /// A client registered itself (RFC 7591); never its secret (registered clients have none).
    pub fn client_registered(client_id: &str, name: Option<&str>, grants: &[String]) -> Event {
        let data = json!({"client_id": client_id, "client_name": name, "grant_types": grants});
        Event::new(Kind::ClientRegistered, None, data)
    }

    /// `by`: `signal`, `admin` or `file_watch`; the hashes are `Config::file_hash`.
    pub fn config_reloaded(by: &str, old_hash: &str, new_hash: &str, generation: u64) -> Event {
        let data = json!({"by": by, "old_hash": old_hash, "new_hash": new_hash,
            "generation": generation});
        Event::new(Kind::ConfigReloaded, None, data)
    }

    /// A reload that was refused: the running configuration (its hash) keeps serving. Only how
    /// many problems there were; the problems themselves, which quote the file, go to the log.
    pub fn config_reload_refused(by: &str, running_hash: &str, problems: usize) -> Event {
        let data = json!({"by": by, "running_hash": running_hash, "problems": problems});
        Event::new(Kind::ConfigReloadRefused, None, data)
    }

    /// The event as one line of CloudEvents 1.0 JSON, with its id and time: written straight
    /// from the event, not through a JSON value built and dropped for it.
    pub fn line(&self, source: &str, id: &str, time_rfc3339: &str) -> String {
        let envelope = Envelope {
            specversion: "1.0",
            kind: TypeName(self.kind),
            source,
            id,
            time: time_rfc3339,
            datacontenttype: "application/json",
            ocsfclassuid: self.kind.ocsf_class(),
            subject: self.subject.as_deref(),
            data: &self.data,
        };
        // a map of strings, numbers and nulls cannot fail to serialize
        let line = serde_json::to_string(&envelope);
        debug_assert!(line.is_ok(), "an audit event did not serialize");
        line.unwrap_or_default()
    }
}

/// The CloudEvents attributes around an event's data.
#[derive(serde::Serialize)]
struct Envelope<'a> {
    specversion: &'static str,
    #[serde(rename = "type")]
    kind: TypeName,
    source: &'a str,
    id: &'a str,
    time: &'a str,
    datacontenttype: &'static str,
    ocsfclassuid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    data: &'a Map<String, Value>,
}

/// A kind's CloudEvents `type`, `dev.gatehouse.<name>`, written without a string made for it.
struct TypeName(Kind);

impl serde::Serialize for TypeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("dev.gatehouse.{}", self.0.name()))
    }
}

/// What a revocation ended, for `token.revoked`.
#[derive(Clone, Copy)]
pub struct Revoked<'a> {
    pub by: &'a str,
    pub client_id: Option<&'a str>,
    pub subject: Option<&'a str>,
    /// `access_token`, `refresh_token` or `all` (every family of a subject)
    pub token_type: &'a str,
    pub jti: Option<&'a str>,
    pub families: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_cloudevents_1_0_with_the_data_inside() {
        let e = Event::config_reloaded("admin", "aaaa", "bbbb", 2);
        let line = e.line("https://gw.example", "id-1", "2026-01-01T00:00:00Z");
        assert!(!line.contains('\n'), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["specversion"], "1.0");
        assert_eq!(v["type"], "dev.gatehouse.config.reloaded");
        assert_eq!(v["source"], "https://gw.example");
        assert_eq!(v["id"], "id-1");
        assert_eq!(v["time"], "2026-01-01T00:00:00Z");
        assert_eq!(v["datacontenttype"], "application/json");
        assert_eq!(v["ocsfclassuid"], 5019);
        assert!(v.get("subject").is_none(), "no subject when none is known");
        assert_eq!(
            v["data"],
            json!({"by": "admin", "old_hash": "aaaa", "new_hash": "bbbb", "generation": 2})
        );
        // a subject, when the event has one, and strings escaped as JSON wants them
        let e = Event::session_ended("a\"b\n", "s");
        let v: Value = serde_json::from_str(&e.line("src", "id", "t")).unwrap();
        assert_eq!(v["subject"], "a\"b\n");
        assert_eq!(v["type"], "dev.gatehouse.session.ended");
    }

    #[test]
    fn a_refusal_carries_its_reason_and_the_subject_and_an_allowed_request_null() {
        let mut f = RequestFacts {
            route: Some("api"),
            status: 403,
            reason: Some("rule"),
            rule: Some("deny_if[0]".into()),
            subject: Some("alice"),
            client_id: Some("app"),
            issuer: Some("https://idp"),
            client_address: Some("10.0.0.1".into()),
            method: "GET",
            path: "/api/x",
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        };
        let refused = Event::request(&f);
        assert_eq!(refused.kind, Kind::RequestRefused);
        assert_eq!(refused.subject.as_deref(), Some("alice"));
        assert_eq!(refused.data["decision"], "refused");
        assert_eq!(refused.data["reason"], "rule");
        assert_eq!(refused.data["rule"], "deny_if[0]");
        assert_eq!(refused.data["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        f.reason = None;
        f.rule = None;
        f.status = 200;
        let allowed = Event::request(&f);
        assert_eq!(allowed.kind, Kind::RequestAllowed);
        assert_eq!(allowed.data["decision"], "allowed");
        assert!(allowed.data["reason"].is_null());
        // the same fields, whatever the decision: a stable schema
        let keys = |e: &Event| e.data.keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&refused), keys(&allowed));
    }

    #[test]
    fn only_allowed_requests_are_sampled_and_every_kind_has_a_distinct_name() {
        let mut names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Kind::ALL.len());
        let sampled: Vec<_> = Kind::ALL.iter().filter(|k| !k.always_kept()).collect();
        assert_eq!(sampled, [&Kind::RequestAllowed]);
    }

    #[test]
    fn an_introspection_names_the_token_only_when_active() {
        let e = Event::introspected("rs", &json!({"active": false}));
        assert_eq!(e.data["active"], false);
        assert!(e.data["subject"].is_null() && e.data["jti"].is_null());
        let e = Event::introspected("rs", &json!({"active": true, "sub": "u", "jti": "j"}));
        assert_eq!(
            (e.data["subject"].clone(), e.data["jti"].clone()),
            (json!("u"), json!("j"))
        );
        assert_eq!(e.subject.as_deref(), Some("u"));
    }
}
