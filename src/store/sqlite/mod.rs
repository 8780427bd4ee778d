//! The embedded SQLite store: one file, WAL, schema migrations by `user_version`; one writer
//! connection and a few read-only ones, so lookups on every request never queue behind a write.

use super::{
    CodeRecord, CodeUse, RefreshRecord, RegisteredClient, Rotation, SessionRecord, SessionsOf,
    Store, StoreError,
};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

mod schema;
mod sessions;

use schema::{refresh_row, session_row, MIGRATIONS, SESSION_COLUMNS};
use schema::{REFRESH_COLUMNS, REFRESH_COLUMN_COUNT};

/// Records a revoked id until `?2`; a later expiry wins.
const REVOKE: &str = "INSERT INTO revoked_tokens (jti, expires_at) VALUES (?1, ?2)
                 ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)";

/// Read-only connections: a session route's lookup takes a free one while the writer commits.
const READERS: usize = 4;
/// How long a statement waits for a lock SQLite holds (a checkpoint, another process's write).
const BUSY: Duration = Duration::from_secs(5);

pub struct SqliteStore {
    /// WAL lets these read the last commit while the writer holds a transaction; declared first
    /// so they close first, and the writer, closing last, checkpoints the log into the file
    readers: Vec<Mutex<Connection>>,
    next: AtomicUsize,
    /// every change, one at a time: SQLite allows one writer, and rotations rely on it
    writer: Mutex<Connection>,
    path: std::path::PathBuf,
    /// the (device, inode) of the file opened: SQLite goes on writing to a file that was deleted or
    /// replaced, so every use checks that the path still names it
    file: (u64, u64),
    /// a connection kept to read `PRAGMA data_version` (which moves when any other connection,
    /// in this process or another, commits), with the last value read
    watch: Mutex<(Connection, Option<i64>)>,
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
            conn.busy_timeout(BUSY)?;
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
        let readers = (0..READERS)
            .map(|_| open_reader(path).map(Mutex::new))
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| format!("cannot open {} to read: {e}", path.display()))?;
        let watch = open_reader(path)
            .map_err(|e| format!("cannot open {} to read: {e}", path.display()))?;
        Ok(SqliteStore {
            watch: Mutex::new((watch, None)),
            writer: Mutex::new(conn),
            readers,
            next: AtomicUsize::new(0),
            path: path.to_path_buf(),
            file,
        })
    }

    /// The writer, once the database file is checked to still be where it was opened.
    fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.check_file()?;
        self.writer.lock().map_err(|_| err("lock poisoned"))
    }

    /// A read-only connection (a free one if any, else the next in turn), once the file is checked.
    fn reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.check_file()?;
        if let Some(free) = self.readers.iter().find_map(|r| r.try_lock().ok()) {
            return Ok(free);
        }
        let i = self.next.fetch_add(1, Relaxed) % self.readers.len().max(1);
        self.readers
            .get(i)
            .ok_or_else(|| err("no reader"))?
            .lock()
            .map_err(|_| err("lock poisoned"))
    }

    /// A removed directory or a replaced file makes the store unavailable (writes answer 503)
    /// rather than a place where what is recorded silently vanishes.
    fn check_file(&self) -> Result<(), StoreError> {
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
        Ok(())
    }
}

/// A read-only connection to the (already prepared, WAL) database.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY)?;
    Ok(conn)
}

impl Store for SqliteStore {
    fn changed_elsewhere(&self) -> Result<bool, StoreError> {
        self.check_file()?;
        let mut watch = self.watch.lock().map_err(|_| err("lock poisoned"))?;
        let version: i64 = (watch.0)
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(err)?;
        // the first answer is a change: what was read at start-up may already be older
        let changed = watch.1 != Some(version);
        watch.1 = Some(version);
        Ok(changed)
    }

    fn put_client(&self, c: &RegisteredClient) -> Result<(), StoreError> {
        let doc = serde_json::to_string(c).map_err(err)?;
        self.conn()?
            .execute(
                "INSERT OR REPLACE INTO registered_clients (client_id, doc, created_at) VALUES (?1, ?2, ?3)",
                params![c.client_id, doc, c.created_at as i64],
            )
            .map_err(err)?;
        Ok(())
    }

    fn registered_client(&self, id: &str) -> Result<Option<RegisteredClient>, StoreError> {
        let doc: Option<String> = self
            .reader()?
            .prepare_cached("SELECT doc FROM registered_clients WHERE client_id = ?1")
            .and_then(|mut q| q.query_row(params![id], |r| r.get(0)).optional())
            .map_err(err)?;
        doc.map(|d| serde_json::from_str(&d).map_err(err))
            .transpose()
    }

    fn registered_clients(&self) -> Result<Vec<RegisteredClient>, StoreError> {
        let docs: Vec<String> = self
            .reader()?
            .prepare("SELECT doc FROM registered_clients ORDER BY created_at, client_id")
            .and_then(|mut q| {
                q.query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<Vec<String>>>()
            })
            .map_err(err)?;
        docs.iter()
            .map(|d| serde_json::from_str(d).map_err(err))
            .collect()
    }

    fn remove_client(&self, id: &str) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .execute(
                "DELETE FROM registered_clients WHERE client_id = ?1",
                params![id],
            )
            .map_err(err)?;
        Ok(n > 0)
    }

    fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.conn()?
            .execute(REVOKE, params![jti, exp as i64])
            .map_err(err)?;
        Ok(())
    }

    fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        let conn = self.reader()?;
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
            "INSERT INTO refresh_tokens (hash, family, client_id, subject, scopes, resource, expires_at, jkt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![rec.hash, rec.family, rec.client_id, rec.subject, rec.scopes, rec.resource, rec.expires_at as i64, rec.jkt],
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
                        r.get::<_, i64>(REFRESH_COLUMN_COUNT)? != 0,
                        r.get::<_, i64>(REFRESH_COLUMN_COUNT + 1)? != 0,
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
            "INSERT INTO refresh_tokens (hash, family, client_id, subject, scopes, resource, expires_at, jkt) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![new_hash, old.family, old.client_id, old.subject, old.scopes, old.resource, new_expires_at as i64, old.jkt],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Rotation::Rotated(old))
    }

    fn active_refresh(&self, hash: &str, now: u64) -> Result<Option<RefreshRecord>, StoreError> {
        self.reader()?
            .prepare_cached(&format!(
                "SELECT {REFRESH_COLUMNS} FROM refresh_tokens t JOIN refresh_families f ON f.family = t.family
                 WHERE t.hash = ?1 AND t.rotated = 0 AND f.revoked = 0 AND t.expires_at >= ?2"
            ))
            .and_then(|mut q| q.query_row(params![hash, now as i64], refresh_row).optional())
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

    fn token_family(&self, jti: &str) -> Result<Option<String>, StoreError> {
        self.reader()?
            .query_row(
                "SELECT family FROM family_tokens WHERE jti = ?1 LIMIT 1",
                params![jti],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(err)
    }

    fn families_of(&self, subject: &str, now: u64) -> Result<Vec<String>, StoreError> {
        let conn = self.reader()?;
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
                "INSERT INTO auth_codes (hash, client_id, redirect_uri, challenge, subject, scopes, nonce, auth_time, expires_at, resource)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![c.hash, c.client_id, c.redirect_uri, c.challenge, c.subject, c.scopes, c.nonce,
                        c.auth_time as i64, c.expires_at as i64, c.resource],
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
                        issued_jti, issued_exp, issued_family, resource FROM auth_codes WHERE hash = ?1",
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
                            resource: r.get(12)?,
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
        // cost more than running it. A reader: the lookup does not wait for a write to commit.
        self.reader()?
            .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE hash = ?1 AND idle_until > ?2 AND expires_at > ?2"))
            .and_then(|mut q| q.query_row(params![hash, now as i64], session_row).optional())
            .map_err(err)
    }

    fn touch_session(&self, hash: &str, idle_until: u64) -> Result<bool, StoreError> {
        let n = self
            .conn()?
            .prepare_cached("UPDATE sessions SET idle_until = min(?2, expires_at) WHERE hash = ?1")
            .and_then(|mut q| q.execute(params![hash, idle_until as i64]))
            .map_err(err)?;
        Ok(n > 0)
    }

    fn end_session(&self, hash: &str) -> Result<bool, StoreError> {
        sessions::end(&mut *self.conn()?, "hash = ?1", params![hash]).map(|n| n > 0)
    }

    fn end_sessions(&self, of: &SessionsOf<'_>) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        match *of {
            SessionsOf::Subject(s) => sessions::end(&mut conn, "subject = ?1", params![s]),
            SessionsOf::ProviderSubject(p, s) => {
                sessions::end(&mut conn, "provider = ?1 AND subject = ?2", params![p, s])
            }
            SessionsOf::ProviderSid(_, "") => Ok(0),
            SessionsOf::ProviderSid(p, sid) => sessions::end(
                &mut conn,
                "provider = ?1 AND provider_sid = ?2",
                params![p, sid],
            ),
        }
    }

    fn sessions_of(&self, subject: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
        self.reader()?
            .prepare_cached(&format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE subject = ?1 AND idle_until > ?2 AND expires_at > ?2 ORDER BY auth_time DESC LIMIT 1000"))
            .and_then(|mut q| {
                q.query_map(params![subject, now as i64], session_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(err)
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
mod tests;
