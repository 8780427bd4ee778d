//! The SQLite store's schema steps and how its rows read back as records.

use crate::store::{RefreshRecord, SessionRecord};

/// Schema steps; `user_version` records how many have run.
pub(super) const MIGRATIONS: &[&str] = &[
    "CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, expires_at INTEGER NOT NULL);
     CREATE INDEX revoked_tokens_exp ON revoked_tokens (expires_at);
     CREATE TABLE used_assertions (client_id TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL,
                                   PRIMARY KEY (client_id, jti));
     CREATE INDEX used_assertions_exp ON used_assertions (expires_at);",
    "CREATE TABLE refresh_families (family TEXT PRIMARY KEY, revoked INTEGER NOT NULL DEFAULT 0,
                                    expires_at INTEGER NOT NULL);
     CREATE TABLE refresh_tokens (hash TEXT PRIMARY KEY, family TEXT NOT NULL REFERENCES refresh_families (family),
                                  client_id TEXT NOT NULL, subject TEXT NOT NULL, scopes TEXT NOT NULL,
                                  expires_at INTEGER NOT NULL, rotated INTEGER NOT NULL DEFAULT 0);
     CREATE INDEX refresh_tokens_family ON refresh_tokens (family);",
    "CREATE TABLE auth_codes (hash TEXT PRIMARY KEY, client_id TEXT NOT NULL, redirect_uri TEXT NOT NULL,
                              challenge TEXT NOT NULL, subject TEXT NOT NULL, scopes TEXT NOT NULL,
                              nonce TEXT NOT NULL, auth_time INTEGER NOT NULL, expires_at INTEGER NOT NULL,
                              used INTEGER NOT NULL DEFAULT 0, issued_jti TEXT NOT NULL DEFAULT '',
                              issued_exp INTEGER NOT NULL DEFAULT 0, issued_family TEXT NOT NULL DEFAULT '');",
    "CREATE TABLE family_tokens (family TEXT NOT NULL, jti TEXT NOT NULL, expires_at INTEGER NOT NULL,
                                 PRIMARY KEY (family, jti));
     CREATE INDEX family_tokens_exp ON family_tokens (expires_at);",
    "CREATE TABLE sessions (hash TEXT PRIMARY KEY, username TEXT NOT NULL, auth_time INTEGER NOT NULL,
                            expires_at INTEGER NOT NULL);
     CREATE INDEX sessions_exp ON sessions (expires_at);",
    // Browser sessions carry the identity; earlier sign-in sessions are dropped (people sign in again).
    "DROP TABLE sessions;
     CREATE TABLE sessions (hash TEXT PRIMARY KEY, subject TEXT NOT NULL, provider TEXT NOT NULL,
                            provider_sid TEXT NOT NULL, data TEXT NOT NULL, auth_time INTEGER NOT NULL,
                            idle_until INTEGER NOT NULL, expires_at INTEGER NOT NULL);
     CREATE INDEX sessions_exp ON sessions (expires_at);
     CREATE INDEX sessions_subject ON sessions (subject);
     CREATE INDEX sessions_provider_sid ON sessions (provider, provider_sid);",
    // RFC 8707: refresh tokens and codes keep the resource their tokens are for; rows written
    // before it have none, which the empty default says.
    "ALTER TABLE refresh_tokens ADD COLUMN resource TEXT NOT NULL DEFAULT '';
     ALTER TABLE auth_codes ADD COLUMN resource TEXT NOT NULL DEFAULT '';",
    // Clients that registered themselves (RFC 7591), each as its JSON document.
    "CREATE TABLE registered_clients (client_id TEXT PRIMARY KEY, doc TEXT NOT NULL,
                                      created_at INTEGER NOT NULL);",
    // Token exchange (RFC 8693) finds the family of the access token it exchanges.
    "CREATE INDEX family_tokens_jti ON family_tokens (jti);",
    // RFC 9449: a public client's refresh tokens keep the DPoP key they are bound to; rows written
    // before it are bound to none, which the empty default says.
    "ALTER TABLE refresh_tokens ADD COLUMN jkt TEXT NOT NULL DEFAULT '';",
];

pub(super) const SESSION_COLUMNS: &str =
    "hash, subject, provider, provider_sid, data, auth_time, idle_until, expires_at";

pub(super) fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        hash: r.get(0)?,
        subject: r.get(1)?,
        provider: r.get(2)?,
        provider_sid: r.get(3)?,
        data: r.get(4)?,
        auth_time: r.get::<_, i64>(5)? as u64,
        idle_until: r.get::<_, i64>(6)? as u64,
        expires_at: r.get::<_, i64>(7)? as u64,
    })
}

pub(super) const REFRESH_COLUMNS: &str =
    "t.hash, t.family, t.client_id, t.subject, t.scopes, t.resource, t.expires_at, f.expires_at, t.jkt";

/// How many columns `REFRESH_COLUMNS` names: a query's own columns follow them.
pub(super) const REFRESH_COLUMN_COUNT: usize = 9;

pub(super) fn refresh_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefreshRecord> {
    Ok(RefreshRecord {
        hash: r.get(0)?,
        family: r.get(1)?,
        client_id: r.get(2)?,
        subject: r.get(3)?,
        scopes: r.get(4)?,
        resource: r.get(5)?,
        expires_at: r.get::<_, i64>(6)? as u64,
        family_expires_at: r.get::<_, i64>(7)? as u64,
        jkt: r.get(8)?,
    })
}
