//! The in-memory store, for tests and demos: everything is lost on restart.

use super::{
    CodeRecord, CodeUse, RefreshRecord, RegisteredClient, Rotation, SessionRecord, SessionsOf,
    Store, StoreError,
};
use std::collections::HashMap;
use std::collections::HashSet;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    revoked: Mutex<HashMap<String, u64>>,
    assertions: Mutex<HashMap<(String, String), u64>>,
    refresh: Mutex<Refresh>,
    codes: Mutex<HashMap<String, StoredCode>>,
    /// family -> access tokens (jti, exp) issued from it
    family_tokens: Mutex<HashMap<String, Vec<(String, u64)>>>,
    /// session hash -> record
    sessions: Mutex<HashMap<String, SessionRecord>>,
    /// registered clients by id
    clients: Mutex<HashMap<String, RegisteredClient>>,
}

/// A code, whether it was used, and what its exchange issued (jti, exp, family).
type StoredCode = (CodeRecord, bool, (String, u64, String));

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
    fn put_client(&self, c: &RegisteredClient) -> Result<(), StoreError> {
        let mut all = self.clients.lock().map_err(poisoned)?;
        all.insert(c.client_id.clone(), c.clone());
        Ok(())
    }

    fn registered_client(&self, id: &str) -> Result<Option<RegisteredClient>, StoreError> {
        Ok(self.clients.lock().map_err(poisoned)?.get(id).cloned())
    }

    fn registered_clients(&self) -> Result<Vec<RegisteredClient>, StoreError> {
        let mut all: Vec<_> = self
            .clients
            .lock()
            .map_err(poisoned)?
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.client_id).cmp(&(b.created_at, &b.client_id)));
        Ok(all)
    }

    fn remove_client(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.clients.lock().map_err(poisoned)?.remove(id).is_some())
    }

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

    fn family_token(&self, family: &str, jti: &str, exp: u64) -> Result<(), StoreError> {
        self.family_tokens
            .lock()
            .map_err(poisoned)?
            .entry(family.to_string())
            .or_default()
            .push((jti.to_string(), exp));
        Ok(())
    }

    fn token_family(&self, jti: &str) -> Result<Option<String>, StoreError> {
        let all = self.family_tokens.lock().map_err(poisoned)?;
        Ok(all
            .iter()
            .find(|(_, tokens)| tokens.iter().any(|(j, _)| j == jti))
            .map(|(family, _)| family.clone()))
    }

    fn revoke_family(&self, family: &str) -> Result<Vec<(String, u64)>, StoreError> {
        self.refresh
            .lock()
            .map_err(poisoned)?
            .revoked_families
            .insert(family.to_string());
        let tokens = self
            .family_tokens
            .lock()
            .map_err(poisoned)?
            .get(family)
            .cloned()
            .unwrap_or_default();
        for (jti, exp) in &tokens {
            self.revoke(jti, *exp)?;
        }
        Ok(tokens)
    }

    fn families_of(&self, subject: &str, now: u64) -> Result<Vec<String>, StoreError> {
        let r = self.refresh.lock().map_err(poisoned)?;
        let mut out: Vec<String> = r
            .tokens
            .values()
            .filter(|(t, _)| t.subject == subject && t.family_expires_at >= now)
            .map(|(t, _)| t.family.clone())
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    fn put_code(&self, rec: &CodeRecord) -> Result<(), StoreError> {
        self.codes
            .lock()
            .map_err(poisoned)?
            .insert(rec.hash.clone(), (rec.clone(), false, Default::default()));
        Ok(())
    }

    fn take_code(&self, hash: &str, now: u64) -> Result<CodeUse, StoreError> {
        let mut m = self.codes.lock().map_err(poisoned)?;
        let Some(entry) = m.get_mut(hash) else {
            return Ok(CodeUse::Invalid);
        };
        if entry.1 {
            let (jti, exp, family) = entry.2.clone();
            return Ok(CodeUse::Reused { jti, exp, family });
        }
        entry.1 = true;
        if entry.0.expires_at < now {
            return Ok(CodeUse::Invalid);
        }
        Ok(CodeUse::Fresh(entry.0.clone()))
    }

    fn code_issued(&self, hash: &str, jti: &str, exp: u64, family: &str) -> Result<(), StoreError> {
        if let Some(e) = self.codes.lock().map_err(poisoned)?.get_mut(hash) {
            e.2 = (jti.to_string(), exp, family.to_string());
        }
        Ok(())
    }

    fn put_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        self.sessions
            .lock()
            .map_err(poisoned)?
            .insert(rec.hash.clone(), rec.clone());
        Ok(())
    }

    fn session(&self, hash: &str, now: u64) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self
            .sessions
            .lock()
            .map_err(poisoned)?
            .get(hash)
            .filter(|r| r.live(now))
            .cloned())
    }

    fn touch_session(&self, hash: &str, idle_until: u64) -> Result<bool, StoreError> {
        let mut m = self.sessions.lock().map_err(poisoned)?;
        let Some(r) = m.get_mut(hash) else {
            return Ok(false);
        };
        r.idle_until = idle_until.min(r.expires_at);
        Ok(true)
    }

    fn end_session(&self, hash: &str) -> Result<bool, StoreError> {
        let ended = self.sessions.lock().map_err(poisoned)?.remove(hash);
        if let Some(r) = &ended {
            self.revoke(&super::session_revocation(hash), r.held_until())?;
        }
        Ok(ended.is_some())
    }

    fn end_sessions(&self, of: &SessionsOf<'_>) -> Result<u64, StoreError> {
        let mut ended = Vec::new();
        self.sessions.lock().map_err(poisoned)?.retain(|hash, r| {
            let ends = of.matches(r);
            if ends {
                ended.push((super::session_revocation(hash), r.held_until()));
            }
            !ends
        });
        for (name, exp) in &ended {
            self.revoke(name, *exp)?;
        }
        Ok(ended.len() as u64)
    }

    fn sessions_of(&self, subject: &str, now: u64) -> Result<Vec<SessionRecord>, StoreError> {
        let m = self.sessions.lock().map_err(poisoned)?;
        let mut out: Vec<SessionRecord> = m
            .values()
            .filter(|r| r.subject == subject && r.live(now))
            .cloned()
            .collect();
        super::newest_first(&mut out);
        Ok(out)
    }

    fn purge(&self, now: u64) -> Result<(), StoreError> {
        self.sessions
            .lock()
            .map_err(poisoned)?
            .retain(|_, r| r.live(now));
        // A used code is kept a while after expiry, to recognise a late second use.
        self.codes
            .lock()
            .map_err(poisoned)?
            .retain(|_, (c, _, _)| c.expires_at + 3600 >= now);
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
        let mut f = self.family_tokens.lock().map_err(poisoned)?;
        f.values_mut().for_each(|v| v.retain(|(_, e)| *e >= now));
        f.retain(|_, v| !v.is_empty());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{RefreshRecord, Rotation, SessionsOf};

    fn refresh(hash: &str, family: &str, subject: &str, end: u64) -> RefreshRecord {
        RefreshRecord {
            hash: hash.into(),
            family: family.into(),
            client_id: "c".into(),
            subject: subject.into(),
            scopes: "read".into(),
            resource: String::new(),
            jkt: String::new(),
            expires_at: end,
            family_expires_at: end,
        }
    }

    #[test]
    fn a_refresh_token_rotates_once_and_its_reuse_revokes_the_family() {
        let s = MemoryStore::default();
        s.put_refresh(&refresh("h1", "f", "alice", 100)).unwrap();
        s.family_token("f", "jti-1", 90).unwrap();
        assert!(matches!(
            s.rotate_refresh("h1", "c", "h2", 100, 10).unwrap(),
            Rotation::Rotated(_)
        ));
        assert_eq!(
            s.rotate_refresh("h1", "other", "h3", 100, 10).unwrap(),
            Rotation::Invalid,
            "bound to its client"
        );
        assert_eq!(
            s.rotate_refresh("h1", "c", "h3", 100, 10).unwrap(),
            Rotation::Reused { family: "f".into() }
        );
        assert_eq!(
            s.active_refresh("h2", 10).unwrap(),
            None,
            "the family is revoked"
        );
        assert_eq!(
            s.revoke_family("f").unwrap(),
            vec![("jti-1".to_string(), 90)]
        );
        assert!(s.revoked(10).unwrap().iter().any(|(j, _)| j == "jti-1"));
    }

    #[test]
    fn a_subjects_live_families_are_found_once_each() {
        let s = MemoryStore::default();
        s.put_refresh(&refresh("a1", "fa", "alice", 100)).unwrap();
        s.put_refresh(&refresh("a2", "fb", "alice", 100)).unwrap();
        s.put_refresh(&refresh("a3", "fc", "alice", 5)).unwrap();
        s.put_refresh(&refresh("b1", "fd", "bob", 100)).unwrap();
        let _ = s.rotate_refresh("a1", "c", "a1b", 100, 1).unwrap();
        assert_eq!(s.families_of("alice", 10).unwrap(), ["fa", "fb"]);
        assert!(s.families_of("nobody", 10).unwrap().is_empty());
    }

    #[test]
    fn sessions_end_by_subject_and_by_provider_session() {
        let s = MemoryStore::default();
        let rec = |hash: &str, subject: &str, sid: &str| SessionRecord {
            hash: hash.into(),
            subject: subject.into(),
            provider: "corp".into(),
            provider_sid: sid.into(),
            data: "{}".into(),
            auth_time: 1,
            idle_until: 100,
            expires_at: 100,
        };
        for r in [
            rec("s1", "alice", "x"),
            rec("s2", "alice", "y"),
            rec("s3", "bob", "x"),
        ] {
            s.put_session(&r).unwrap();
        }
        assert_eq!(
            s.end_sessions(&SessionsOf::ProviderSid("corp", "x"))
                .unwrap(),
            2
        );
        assert!(s.session("s2", 10).unwrap().is_some());
        assert_eq!(s.end_sessions(&SessionsOf::Subject("alice")).unwrap(), 1);
        assert_eq!(s.session("s2", 10).unwrap(), None);
        assert_eq!(s.session("s1", 10).unwrap(), None);
    }
}
