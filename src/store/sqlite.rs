//! The embedded SQLite store: one file, WAL, schema migrations by `user_version`.

use super::{
    CodeRecord, CodeUse, RefreshRecord, Rotation, SessionRecord, SessionsOf, Store, StoreError,
};
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::Mutex;

/// Schema steps; `user_version` records how many have run.
const MIGRATIONS: &[&str] = &[
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
];

const SESSION_COLUMNS: &str =
    "hash, subject, provider, provider_sid, data, auth_time, idle_until, expires_at";

fn session_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRecord> {
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

const REFRESH_COLUMNS: &str =
    "t.hash, t.family, t.client_id, t.subject, t.scopes, t.expires_at, f.expires_at";

fn refresh_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefreshRecord> {
    Ok(RefreshRecord {
        hash: r.get(0)?,
        family: r.get(1)?,
        client_id: r.get(2)?,
        subject: r.get(3)?,
        scopes: r.get(4)?,
        expires_at: r.get::<_, i64>(5)? as u64,
        family_expires_at: r.get::<_, i64>(6)? as u64,
    })
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: std::path::PathBuf,
    /// the (device, inode) of the file opened: SQLite goes on writing to a file that was deleted or
    /// replaced, so every use checks that the path still names it
    file: (u64, u64),
}

/// The (device, inode) a path names now.
fn file_id(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

impl SqliteStore {
    /// Opens or creates the database file (and its directory) and brings the schema up to date.
    pub fn open(path: &Path) -> Result<SqliteStore, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let conn =
            Connection::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let setup = || -> rusqlite::Result<()> {
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            let version: usize = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            for (i, step) in MIGRATIONS.iter().enumerate().skip(version) {
                conn.execute_batch(&format!(
                    "BEGIN; {step} PRAGMA user_version = {}; COMMIT;",
                    i + 1
                ))?;
            }
            Ok(())
        };
        setup().map_err(|e| format!("cannot prepare {}: {e}", path.display()))?;
        let file = file_id(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            file,
        })
    }

    /// The connection, once the database file is checked to still be where it was opened: a
    /// removed directory or a replaced file makes the store unavailable (writes answer 503) rather
    /// than a place where what is recorded silently vanishes.
    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
        match file_id(&self.path) {
            Ok(id) if id == self.file => {}
            Ok(_) => {
                return Err(StoreError::Unavailable(format!(
                    "{} was replaced",
                    self.path.display()
                )))
            }
            Err(e) => {
                return Err(StoreError::Unavailable(format!(
                    "{}: {e}",
                    self.path.display()
                )))
            }
        }
        self.conn
            .lock()
            .map_err(|_| StoreError::Unavailable("lock poisoned".into()))
    }
}

impl Store for SqliteStore {
    fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
                params![jti, exp as i64],
            )
            .map_err(err)?;
        Ok(())
    }

    fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at >= ?1")
            .map_err(err)?;
        let rows = stmt
            .query_map(params![now as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
            })
            .map_err(err)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(err)
    }

    fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn()?;
        // One transaction, so two parallel uses of one assertion let exactly one through.
        let tx = conn.transaction().map_err(err)?;
        let until: Option<i64> = tx
            .query_row(
                "SELECT expires_at FROM used_assertions WHERE client_id = ?1 AND jti = ?2",
                params![client_id, jti],
                |r| r.get(0),
            )
            .optional()
            .map_err(err)?;
        if until.is_some_and(|u| u as u64 >= now) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO used_assertions (client_id, jti, expires_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (client_id, jti) DO UPDATE SET expires_at = excluded.expires_at",
            params![client_id, jti, exp as i64],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }

    fn put_refresh(&self, rec: &RefreshRecord) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO refresh_families (family, expires_at) VALUES (?1, ?2) ON CONFLICT (family) DO NOTHING",
            params![rec.family, rec.family_expires_at as i64],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO refresh_tokens (hash, family, client_id, subject, scopes, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![rec.hash, rec.family, rec.client_id, rec.subject, rec.scopes, rec.expires_at as i64],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    fn rotate_refresh(
        &self,
        old_hash: &str,
        client_id: &str,
        new_hash: &str,
        new_expires_at: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let mut conn = self.conn()?;
        // IMMEDIATE: the write lock is taken first, so parallel rotations of one token serialise.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let row = tx
            .query_row(
                &format!(
                    "SELECT {REFRESH_COLUMNS}, t.rotated, f.revoked FROM refresh_tokens t
                     JOIN refresh_families f ON f.family = t.family WHERE t.hash = ?1"
                ),
                params![old_hash],
                |r| {
                    Ok((
                        refresh_row(r)?,
                        r.get::<_, i64>(7)? != 0,
                        r.get::<_, i64>(8)? != 0,
                    ))
                },
            )
            .optional()
            .map_err(err)?;
        let Some((old, rotated, revoked)) = row else {
            return Ok(Rotation::Invalid);
        };
        if old.client_id != client_id || revoked {
            return Ok(Rotation::Invalid);
        }
        if rotated {
            tx.execute(
                "UPDATE refresh_families SET revoked = 1 WHERE family = ?1",
                params![old.family],
            )
            .map_err(err)?;
            tx.commit().map_err(err)?;
            return Ok(Rotation::Reused { family: old.family });
        }
        if old.expires_at < now {
            return Ok(Rotation::Invalid);
        }
        tx.execute(
            "UPDATE refresh_tokens SET rotated = 1 WHERE hash = ?1",
            params![old_hash],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO refresh_tokens (hash, family, client_id, subject, scopes, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![new_hash, old.family, old.client_id, old.subject, old.scopes, new_expires_at as i64],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Rotation::Rotated(old))
    }

    fn active_refresh(&self, hash: &str, now: u64) -> Result<Option<RefreshRecord>, StoreError> {
        self.conn()?
            .query_row(
                &format!(
                    "SELECT {REFRESH_COLUMNS} FROM refresh_tokens t JOIN refresh_families f ON f.family = t.family
                     WHERE t.hash = ?1 AND t.rotated = 0 AND f.revoked = 0 AND t.expires_at >= ?2"
                ),
                params![hash, now as i64],
                refresh_row,
            )
            .optional()
            .map_err(err)
    }

    fn family_token(&self, family: &str, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT OR IGNORE INTO family_tokens (family, jti, expires_at) VALUES (?1, ?2, ?3)",
                params![family, jti, exp as i64],
            )
            .map_err(err)?;
        Ok(())
    }

    fn families_of(&self, subject: &str, now: u64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT DISTINCT t.family FROM refresh_tokens t
                 JOIN refresh_families f ON f.family = t.family
                 WHERE t.subject = ?1 AND f.expires_at >= ?2",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map(params![subject, now as i64], |r| r.get::<_, String>(0))
            .map_err(err)?;
        rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)
    }

    fn revoke_family(&self, family: &str) -> Result<Vec<(String, u64)>, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute(
            "UPDATE refresh_families SET revoked = 1 WHERE family = ?1",
            params![family],
        )
        .map_err(err)?;
        tx.execute(
            "INSERT INTO revoked_tokens (jti, expires_at)
             SELECT jti, expires_at FROM family_tokens WHERE family = ?1
             ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)",
            params![family],
        )
        .map_err(err)?;
        let tokens = {
            let mut stmt = tx
                .prepare("SELECT jti, expires_at FROM family_tokens WHERE family = ?1")
                .map_err(err)?;
            let rows = stmt
                .query_map(params![family], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .map_err(err)?;
            rows.collect::<rusqlite::Result<Vec<_>>>().map_err(err)?
        };
        tx.commit().map_err(err)?;
        Ok(tokens)
    }

    fn put_code(&self, c: &CodeRecord) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "INSERT INTO auth_codes (hash, client_id, redirect_uri, challenge, subject, scopes, nonce, auth_time, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![c.hash, c.client_id, c.redirect_uri, c.challenge, c.subject, c.scopes, c.nonce,
                        c.auth_time as i64, c.expires_at as i64],
            )
            .map_err(err)?;
        Ok(())
    }

    fn take_code(&self, hash: &str, now: u64) -> Result<CodeUse, StoreError> {
        let mut conn = self.conn()?;
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let row = tx
            .query_row(
                "SELECT client_id, redirect_uri, challenge, subject, scopes, nonce, auth_time, expires_at, used,
                        issued_jti, issued_exp, issued_family FROM auth_codes WHERE hash = ?1",
                params![hash],
                |r| {
                    Ok((
                        CodeRecord {
                            hash: hash.to_string(),
                            client_id: r.get(0)?,
                            redirect_uri: r.get(1)?,
                            challenge: r.get(2)?,
                            subject: r.get(3)?,
                            scopes: r.get(4)?,
                            nonce: r.get(5)?,
                            auth_time: r.get::<_, i64>(6)? as u64,
                            expires_at: r.get::<_, i64>(7)? as u64,
                        },
                        r.get::<_, i64>(8)? != 0,
                        (r.get::<_, String>(9)?, r.get::<_, i64>(10)? as u64, r.get::<_, String>(11)?),
                    ))
                },
            )
            .optional()
            .map_err(err)?;
        let Some((rec, used, (jti, exp, family))) = row else {
            return Ok(CodeUse::Invalid);
        };
        if used {
            return Ok(CodeUse::Reused { jti, exp, family });
        }
        tx.execute(
            "UPDATE auth_codes SET used = 1 WHERE hash = ?1",
            params![hash],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        if rec.expires_at < now {
            return Ok(CodeUse::Invalid);
        }
        Ok(CodeUse::Fresh(rec))
    }

    fn code_issued(&self, hash: &str, jti: &str, exp: u64, family: &str) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                "UPDATE auth_codes SET issued_jti = ?2, issued_exp = ?3, issued_family = ?4 WHERE hash = ?1",
                params![hash, jti, exp as i64, family],
            )
            .map_err(err)?;
        Ok(())
    }

    fn put_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        self.conn()?
            .execute(
                &format!("INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![
                    rec.hash,
                    rec.subject,
                    rec.provider,
                    rec.provider_sid,
                    rec.data,
                    rec.auth_time as i64,
                    rec.idle_until as i64,
                    rec.expires_at as i64
                ],
            )
            .map_err(err)?;
        Ok(())
    }

    fn session(&self, hash: &str, now: u64) -> Result<Option<SessionRecord>, StoreError> {
        // Cached statements: a session route asks this on every request, and preparing the query
        // cost more than running it.
        self.conn()?
            .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE hash = ?1 AND idle_until > ?2 AND expires_at > ?2"))
            .and_then(|mut q| q.query_row(params![hash, now as i64], session_row).optional())
            .map_err(err)
    }

    fn touch_session(&self, hash: &str, idle_until: u64) -> Result<(), StoreError> {
        self.conn()?
            .prepare_cached("UPDATE sessions SET idle_until = min(?2, expires_at) WHERE hash = ?1")
            .and_then(|mut q| q.execute(params![hash, idle_until as i64]))
            .map_err(err)?;
        Ok(())
    }

    fn end_session(&self, hash: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute("DELETE FROM sessions WHERE hash = ?1", params![hash])
            .map_err(err)?;
        Ok(n > 0)
    }

    fn end_sessions(&self, of: &SessionsOf<'_>) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let n = match *of {
            SessionsOf::Subject(s) => {
                conn.execute("DELETE FROM sessions WHERE subject = ?1", params![s])
            }
            SessionsOf::ProviderSubject(p, s) => conn.execute(
                "DELETE FROM sessions WHERE provider = ?1 AND subject = ?2",
                params![p, s],
            ),
            SessionsOf::ProviderSid(_, "") => Ok(0),
            SessionsOf::ProviderSid(p, sid) => conn.execute(
                "DELETE FROM sessions WHERE provider = ?1 AND provider_sid = ?2",
                params![p, sid],
            ),
        }
        .map_err(err)?;
        Ok(n as u64)
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.conn()?
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(err)
    }

    fn purge(&self, now: u64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        for sql in [
            // a used code is kept an hour past expiry, to recognise a late second use
            "DELETE FROM auth_codes WHERE expires_at + 3600 < ?1",
            "DELETE FROM refresh_tokens WHERE family IN (SELECT family FROM refresh_families WHERE expires_at < ?1)",
            "DELETE FROM refresh_families WHERE expires_at < ?1",
            "DELETE FROM revoked_tokens WHERE expires_at < ?1",
            "DELETE FROM used_assertions WHERE expires_at < ?1",
            "DELETE FROM family_tokens WHERE expires_at < ?1",
            "DELETE FROM sessions WHERE expires_at <= ?1 OR idle_until <= ?1",
        ] {
            conn.execute(sql, params![now as i64]).map_err(err)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening_and_refuses_replays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/gatehouse.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.revoke("a", 100).unwrap();
            s.revoke("old", 5).unwrap();
            assert!(s.use_assertion("c", "j", 100, 10).unwrap());
            assert!(!s.use_assertion("c", "j", 100, 10).unwrap());
            assert!(s.use_assertion("other", "j", 100, 10).unwrap());
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.revoked(10).unwrap(), vec![("a".to_string(), 100)]);
        assert!(!s.use_assertion("c", "j", 100, 50).unwrap());
        s.purge(200).unwrap();
        assert!(s.revoked(0).unwrap().is_empty());
        assert!(s.use_assertion("c", "j", 300, 200).unwrap());
    }

    #[test]
    fn refresh_tokens_rotate_once_and_reuse_revokes_the_family() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("g.db")).unwrap();
        let rec = RefreshRecord {
            hash: "h1".into(),
            family: "f".into(),
            client_id: "c".into(),
            subject: "alice".into(),
            scopes: "openid".into(),
            expires_at: 100,
            family_expires_at: 1000,
        };
        s.put_refresh(&rec).unwrap();
        assert_eq!(
            s.rotate_refresh("h1", "other", "h2", 200, 10).unwrap(),
            Rotation::Invalid
        );
        assert_eq!(
            s.rotate_refresh("h1", "c", "h2", 200, 10).unwrap(),
            Rotation::Rotated(rec.clone())
        );
        assert!(s.active_refresh("h2", 10).unwrap().is_some());
        assert!(s.active_refresh("h1", 10).unwrap().is_none());
        assert_eq!(
            s.rotate_refresh("h1", "c", "h3", 200, 10).unwrap(),
            Rotation::Reused { family: "f".into() }
        );
        assert!(
            s.active_refresh("h2", 10).unwrap().is_none(),
            "the family is revoked"
        );
        assert_eq!(
            s.rotate_refresh("h2", "c", "h4", 200, 10).unwrap(),
            Rotation::Invalid
        );
    }
}
