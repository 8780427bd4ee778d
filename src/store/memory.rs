//! The in-memory store, for tests and demos: everything is lost on restart.

use super::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    revoked: Mutex<HashMap<String, u64>>,
    assertions: Mutex<HashMap<(String, String), u64>>,
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

    fn purge(&self, now: u64) -> Result<(), StoreError> {
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
