//! The embedded SQLite store: one file, WAL, schema migrations by `user_version`.

use super::{Store, StoreError};
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
];

pub struct SqliteStore {
    conn: Mutex<Connection>,
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
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<std::sync::MutexGuard<'_, Connection>, StoreError> {
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

    fn purge(&self, now: u64) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "DELETE FROM revoked_tokens WHERE expires_at < ?1",
            params![now as i64],
        )
        .map_err(err)?;
        conn.execute(
            "DELETE FROM used_assertions WHERE expires_at < ?1",
            params![now as i64],
        )
        .map_err(err)?;
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
}
