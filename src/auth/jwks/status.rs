//! What the console shows of each issuer's keys (kid, algorithm, where they come from, the last
//! fetch and its error, the next refresh), and its "refresh now".

use super::{Jwks, Slot};
use crate::config::KeySource;
use std::sync::atomic::Ordering;

/// One issuer's keys as an operator sees them; times in clock milliseconds (0: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerStatus {
    pub name: String,
    /// `own`, `static`, `discovery` or the JWKS URL
    pub source: String,
    /// (kid, algorithms)
    pub keys: Vec<(String, String)>,
    pub fetched_ms: u64,
    pub refresh_ms: u64,
    pub last_error: String,
    pub fetches_ok: u64,
    pub fetches_failed: u64,
}

pub(super) fn set_error(slot: &Slot, error: Option<&str>) {
    let mut e = slot.last_error.lock().unwrap_or_else(|p| p.into_inner());
    e.clear();
    // a URL or a provider's words, never a key
    e.push_str(error.unwrap_or(""));
}

impl Jwks {
    /// Every issuer's keys and fetch state, in configuration order.
    pub async fn status(&self) -> Vec<IssuerStatus> {
        let mut out = Vec::new();
        for (id, slot) in self.by_id() {
            let set = match &slot.statics {
                Some(s) => Some(s.clone()),
                None => self.cache.get(&id).await,
            };
            let source = match &slot.issuer.source {
                KeySource::Own => "own".to_string(),
                KeySource::Discovery => "discovery".to_string(),
                KeySource::JwksUri(u) => u.clone(),
                KeySource::Static(_) => "static".to_string(),
            };
            let keys = set
                .as_ref()
                .map(|s| {
                    s.keys
                        .iter()
                        .map(|k| {
                            let algs: Vec<String> =
                                k.algorithms.iter().map(|a| format!("{a:?}")).collect();
                            (k.kid.clone().unwrap_or_default(), algs.join(", "))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let fixed = slot.statics.is_some();
            out.push(IssuerStatus {
                name: slot.issuer.name.clone(),
                source,
                keys,
                fetched_ms: set.as_ref().map_or(0, |s| s.fetched_ms),
                refresh_ms: if fixed {
                    0
                } else {
                    set.as_ref().map_or(0, |s| s.refresh_ms)
                },
                last_error: slot
                    .last_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone(),
                fetches_ok: slot.fetches_ok.load(Ordering::Relaxed),
                fetches_failed: slot.fetches_failed.load(Ordering::Relaxed),
            });
        }
        out
    }

    /// Fetches an issuer's keys now, within the same floor as every other fetch (`jwks_min_refresh`,
    /// or the backoff after failures). `None`: no such issuer, or its keys are not fetched;
    /// `Some(true)`: fetched; `Some(false)`: not fetched (too soon, or the fetch failed).
    pub async fn refresh_now(&self, name: &str) -> Option<bool> {
        let (id, slot) = self.by_id().find(|(_, s)| s.issuer.name == name)?;
        if slot.statics.is_some() {
            return None;
        }
        let ok_before = slot.fetches_ok.load(Ordering::SeqCst);
        let seen = slot.attempts.load(Ordering::SeqCst);
        self.refresh(id, seen).await;
        Some(slot.fetches_ok.load(Ordering::SeqCst) > ok_before)
    }
}
