//! Ending sessions in the SQLite file: each one ended is recorded as revoked under its session
//! name in the same transaction, so every gateway holding it in memory drops it.

use super::{err, REVOKE};
use crate::store::{session_revocation, StoreError};
use rusqlite::{params, Connection, Params};

/// Ends the sessions `condition` selects (a `WHERE` clause over `params`); how many ended.
pub(super) fn end(
    conn: &mut Connection,
    condition: &str,
    params: impl Params,
) -> Result<u64, StoreError> {
    let tx = conn.transaction().map_err(err)?;
    let ended: Vec<(String, i64)> = {
        let mut q = tx
            .prepare(&format!(
                "DELETE FROM sessions WHERE {condition} RETURNING hash, min(idle_until, expires_at)"
            ))
            .map_err(err)?;
        let rows = q
            .query_map(params, |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)?
    };
    for (hash, exp) in &ended {
        tx.execute(REVOKE, params![session_revocation(hash), exp])
            .map_err(err)?;
    }
    tx.commit().map_err(err)?;
    Ok(ended.len() as u64)
}
