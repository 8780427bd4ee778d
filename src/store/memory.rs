//! The in-memory store, for tests and demos: everything is lost on restart.

use super::{RefreshRecord, Rotation, Store, StoreError};
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    revoked: Mutex<HashMap<String, u64>>,
    assertions: Mutex<HashMap<(String, String), u64>>,
    refresh: Mutex<Refresh>,
}

#[derive(Default)]
struct Refresh {
    /// hash -> (record, rotated)
    tokens: HashMap<String, (RefreshRecord, bool)>,
    revoked_families: HashSet<String>,
}

fn poisoned<T>(_: T) -> StoreError {
    StoreError::Unavailable("lock poisoned".into())
}

impl Store for MemoryStore {
    fn revoke(&self, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.revoked
            .lock()
            .map_err(poisoned)?
            .insert(jti.to_string(), exp);
        Ok(())
    }

    fn revoked(&self, now: u64) -> Result<Vec<(String, u64)>, StoreError> {
        Ok(self
            .revoked
            .lock()
            .map_err(poisoned)?
            .iter()
            .filter(|(_, exp)| **exp >= now)
            .map(|(j, e)| (j.clone(), *e))
            .collect())
    }

    fn use_assertion(
        &self,
        client_id: &str,
        jti: &str,
        exp: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let mut m = self.assertions.lock().map_err(poisoned)?;
        let key = (client_id.to_string(), jti.to_string());
        match m.get(&key) {
            Some(until) if *until >= now => Ok(false),
            _ => {
                m.insert(key, exp);
                Ok(true)
            }
        }
    }

    fn put_refresh(&self, rec: &RefreshRecord) -> Result<(), StoreError> {
        let mut r = self.refresh.lock().map_err(poisoned)?;
        r.tokens.insert(rec.hash.clone(), (rec.clone(), false));
        Ok(())
    }

    fn rotate_refresh(
        &self,
        old_hash: &str,
        client_id: &str,
        new_hash: &str,
        new_expires_at: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let mut r = self.refresh.lock().map_err(poisoned)?;
        let Some((old, rotated)) = r.tokens.get(old_hash).cloned() else {
            return Ok(Rotation::Invalid);
        };
        if old.client_id != client_id || r.revoked_families.contains(&old.family) {
            return Ok(Rotation::Invalid);
        }
        if rotated {
            r.revoked_families.insert(old.family.clone());
            return Ok(Rotation::Reused { family: old.family });
        }
        if old.expires_at < now {
            return Ok(Rotation::Invalid);
        }
        if let Some(e) = r.tokens.get_mut(old_hash) {
            e.1 = true;
        }
        let new = RefreshRecord {
            hash: new_hash.to_string(),
            expires_at: new_expires_at,
            ..old.clone()
        };
        r.tokens.insert(new.hash.clone(), (new, false));
        Ok(Rotation::Rotated(old))
    }

    fn active_refresh(&self, hash: &str, now: u64) -> Result<Option<RefreshRecord>, StoreError> {
        let r = self.refresh.lock().map_err(poisoned)?;
        Ok(r.tokens
            .get(hash)
            .filter(|(rec, rotated)| {
                !rotated && rec.expires_at >= now && !r.revoked_families.contains(&rec.family)
            })
            .map(|(rec, _)| rec.clone()))
    }

    fn revoke_family(&self, family: &str) -> Result<(), StoreError> {
        self.refresh
            .lock()
            .map_err(poisoned)?
            .revoked_families
            .insert(family.to_string());
        Ok(())
    }

    fn purge(&self, now: u64) -> Result<(), StoreError> {
        self.refresh
            .lock()
            .map_err(poisoned)?
            .tokens
            .retain(|_, (rec, _)| rec.family_expires_at >= now);
        self.revoked
            .lock()
            .map_err(poisoned)?
            .retain(|_, e| *e >= now);
        self.assertions
            .lock()
            .map_err(poisoned)?
            .retain(|_, e| *e >= now);
        Ok(())
    }
}
