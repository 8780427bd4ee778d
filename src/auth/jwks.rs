//! JWKS fetching and caching per issuer: Cache-Control aware, single-flight, rate-floored, stale-if-error.

use crate::clock::SharedClock;
use crate::config::{Issuer, IssuerId, KeySource};
use crate::crypto::verify_keys::{RawJwk, VerifyKey};
use moka::ops::compute::Op;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

mod status;
pub use status::IssuerStatus;

/// Most keys read from one JWKS document; the rest are ignored.
const MAX_KEYS: usize = 100;

/// The keys of one issuer and the times that govern them, in clock milliseconds.
#[derive(Debug)]
pub struct KeySet {
    pub keys: Vec<Arc<VerifyKey>>,
    pub fetched_ms: u64,
    /// refresh in the background from here on
    pub refresh_ms: u64,
    /// Cache-Control lifetime ends here; keys stay usable until `stale_until_ms` if the provider fails
    pub expires_ms: u64,
    pub stale_until_ms: u64,
}

impl KeySet {
    /// Keys that never expire: configured PEM files and the gateway's own keys.
    fn fixed(keys: Vec<Arc<VerifyKey>>) -> Self {
        KeySet {
            keys,
            fetched_ms: 0,
            refresh_ms: u64::MAX,
            expires_ms: u64::MAX,
            stale_until_ms: u64::MAX,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeysError {
    /// No keys yet, or only keys past `jwks_stale_for`: answer 503 with this Retry-After.
    Unavailable { retry_after: u64 },
}

struct Slot {
    issuer: Arc<Issuer>,
    /// the issuer's HTTP client (its own when it names a private CA)
    http: reqwest::Client,
    /// number of fetch attempts, to let waiters see that someone fetched while they queued
    attempts: AtomicU64,
    last_attempt_ms: AtomicU64,
    refreshing: AtomicBool,
    /// set while fetches fail, so a failing provider is logged once per outage, not once per attempt
    failing: AtomicBool,
    /// fetches failed in a row since the last success, for the retry backoff
    failed_in_a_row: AtomicU64,
    fetches_ok: AtomicU64,
    fetches_failed: AtomicU64,
    /// why the last fetch failed; empty after a success
    last_error: std::sync::Mutex<String>,
    statics: Option<Arc<KeySet>>,
}

/// The key cache for every configured issuer.
pub struct Jwks {
    /// one per issuer, in the order given, which is the order of their ids
    slots: Vec<Slot>,
    cache: moka::future::Cache<IssuerId, Arc<KeySet>>,
    clock: SharedClock,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct JwkSetDoc {
    keys: Vec<serde_json::Value>,
}

/// The wait before the next try after `failures` failed fetches in a row: 1 s, 2 s, 4 s, … never
/// more than `cap_ms`.
pub fn backoff_ms(failures: u64, cap_ms: u64) -> u64 {
    let exp = failures.saturating_sub(1).min(20) as u32;
    1000u64.saturating_mul(1 << exp).min(cap_ms)
}

/// `max-age` from a Cache-Control value; `no-cache`/`no-store` mean zero.
pub fn max_age(cache_control: Option<&str>) -> Option<u64> {
    let v = cache_control?;
    let mut out = None;
    for d in v.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-cache" || lower == "no-store" {
            return Some(0);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            out = n.trim_matches('"').parse().ok();
        }
    }
    out
}

/// The HTTP client for one issuer's key fetches: the system's roots, plus its own CA when it has one.
/// An error with its causes, so a log line names the TLS or connection failure itself.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// What a fetch's span says: the peer and the answer's status; never the URL's path or query.
fn fetch_attributes(
    url: &str,
    what: &'static str,
    resp: Option<&reqwest::Response>,
) -> Vec<(crate::telemetry::span::Key, crate::telemetry::Value)> {
    use crate::telemetry::Value;
    let mut out = vec![
        ("http.request.method".into(), Value::from("GET")),
        ("gatehouse.fetch".into(), Value::from(what)),
    ];
    if let Ok(u) = url::Url::parse(url) {
        if let Some(host) = u.host_str() {
            out.push(("server.address".into(), Value::from(host.to_string())));
        }
        if let Some(port) = u.port_or_known_default() {
            out.push(("server.port".into(), Value::Int(i64::from(port))));
        }
    }
    if let Some(r) = resp {
        let status = i64::from(r.status().as_u16());
        out.push(("http.response.status_code".into(), Value::Int(status)));
    }
    out
}

pub(crate) fn http_client(ca: Option<&std::path::Path>) -> Result<reqwest::Client, String> {
    let policy = reqwest::redirect::Policy::custom(|attempt| {
        // Redirects are followed only within the same host, and only a few.
        let same_host = attempt
            .previous()
            .first()
            .map(|first| first.host_str() == attempt.url().host_str())
            .unwrap_or(false);
        if attempt.previous().len() > 3 || !same_host {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    let mut builder = reqwest::Client::builder()
        .redirect(policy)
        .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca {
        let pem =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in it", path.display()));
        }
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder
        .build()
        .map_err(|e| format!("cannot build the HTTP client for key sets: {e}"))
}

impl Jwks {
    /// `own` are the token service's public keys, for the issuer whose source is `Own`.
    pub fn new(
        issuers: &[Arc<Issuer>],
        own: Vec<Arc<VerifyKey>>,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let shared = http_client(None)?;
        let mut slots = Vec::with_capacity(issuers.len());
        for i in issuers {
            let http = match &i.ca {
                Some(ca) => http_client(Some(ca))?,
                None => shared.clone(),
            };
            slots.push(Slot {
                http,
                issuer: i.clone(),
                attempts: AtomicU64::new(0),
                last_attempt_ms: AtomicU64::new(0),
                refreshing: AtomicBool::new(false),
                failing: AtomicBool::new(false),
                failed_in_a_row: AtomicU64::new(0),
                fetches_ok: AtomicU64::new(0),
                fetches_failed: AtomicU64::new(0),
                last_error: Default::default(),
                statics: match &i.source {
                    KeySource::Static(keys) => Some(Arc::new(KeySet::fixed(keys.clone()))),
                    KeySource::Own => Some(Arc::new(KeySet::fixed(own.clone()))),
                    _ => None,
                },
            });
        }
        Ok(Jwks {
            slots,
            cache: moka::future::Cache::builder().max_capacity(10_000).build(),
            clock,
        })
    }

    fn slot(&self, issuer: IssuerId) -> Option<&Slot> {
        self.slots.get(issuer.position())
    }

    /// Every slot with the id of its issuer.
    fn by_id(&self) -> impl Iterator<Item = (IssuerId, &Slot)> {
        self.slots
            .iter()
            .enumerate()
            .map(|(i, slot)| (IssuerId::at(i), slot))
    }

    fn retry_after(slot: &Slot) -> u64 {
        (Self::floor_ms(slot) / 1000).max(1)
    }

    /// The least time between two fetches: after a success `jwks_min_refresh` (unknown-kid refetches
    /// included); after failures a backoff from one second, doubling, capped by `jwks_min_refresh`,
    /// so a provider that comes back is used within seconds.
    fn floor_ms(slot: &Slot) -> u64 {
        let min_refresh = slot.issuer.jwks_min_refresh.as_millis() as u64;
        match slot.failed_in_a_row.load(Ordering::SeqCst) {
            0 => min_refresh,
            n => backoff_ms(n, min_refresh),
        }
    }

    /// Keys to check a token of this issuer; an unknown `kid` causes at most one floored refetch.
    pub async fn keys(
        self: &Arc<Self>,
        issuer: IssuerId,
        kid: Option<&str>,
    ) -> Result<Arc<KeySet>, KeysError> {
        let Some(slot) = self.slot(issuer) else {
            return Err(KeysError::Unavailable { retry_after: 1 });
        };
        if let Some(s) = &slot.statics {
            return Ok(s.clone());
        }
        let seen = slot.attempts.load(Ordering::SeqCst);
        let now = self.clock.now_ms();
        match self.cache.get(&issuer).await {
            Some(ks) if now < ks.stale_until_ms => {
                if now >= ks.refresh_ms {
                    self.spawn_refresh(issuer);
                }
                let unknown =
                    kid.is_some_and(|k| !ks.keys.iter().any(|x| x.kid.as_deref() == Some(k)));
                if unknown {
                    if let Some(fresh) = self.refresh(issuer, seen).await {
                        return Ok(fresh);
                    }
                }
                Ok(ks)
            }
            _ => match self.refresh(issuer, seen).await {
                Some(ks) if self.clock.now_ms() < ks.stale_until_ms => Ok(ks),
                _ => Err(KeysError::Unavailable {
                    retry_after: Self::retry_after(slot),
                }),
            },
        }
    }

    fn spawn_refresh(self: &Arc<Self>, issuer: IssuerId) {
        let Some(slot) = self.slot(issuer) else {
            return;
        };
        if slot.refreshing.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let Some(slot) = me.slot(issuer) else {
                return;
            };
            let seen = slot.attempts.load(Ordering::SeqCst);
            me.refresh(issuer, seen).await;
            slot.refreshing.store(false, Ordering::SeqCst);
        });
    }

    /// Fetches unless another caller fetched since `seen`, or the last attempt is within `jwks_min_refresh`.
    /// Callers for the same issuer queue on the cache entry, so many of them cause one fetch.
    async fn refresh(&self, issuer: IssuerId, seen: u64) -> Option<Arc<KeySet>> {
        let slot = self.slot(issuer)?;
        self.cache
            .entry(issuer)
            .and_compute_with(|_current| async {
                if slot.attempts.load(Ordering::SeqCst) != seen {
                    return Op::Nop;
                }
                let now = self.clock.now_ms();
                let last = slot.last_attempt_ms.load(Ordering::SeqCst);
                let floor = Self::floor_ms(slot);
                if last != 0 && now.saturating_sub(last) < floor {
                    return Op::Nop;
                }
                slot.last_attempt_ms.store(now.max(1), Ordering::SeqCst);
                slot.attempts.fetch_add(1, Ordering::SeqCst);
                match self.fetch(slot).await {
                    Ok((keys, age)) => {
                        slot.fetches_ok.fetch_add(1, Ordering::Relaxed);
                        let iss = &slot.issuer;
                        let ttl = Duration::from_secs(age.unwrap_or(u64::MAX / 4_000))
                            .clamp(iss.jwks_min_refresh, iss.jwks_max_refresh)
                            .as_millis() as u64;
                        let ttl = ttl.max(1000);
                        slot.failed_in_a_row.store(0, Ordering::SeqCst);
                        status::set_error(slot, None);
                        if slot.failing.swap(false, Ordering::SeqCst) {
                            tracing::info!(issuer = %iss.name, "signing keys can be fetched again");
                        }
                        tracing::info!(issuer = %iss.name, keys = keys.len(), ttl_s = ttl / 1000, "fetched signing keys");
                        let now = self.clock.now_ms();
                        Op::Put(Arc::new(KeySet {
                            keys,
                            fetched_ms: now,
                            refresh_ms: now + ttl * 3 / 4,
                            expires_ms: now + ttl,
                            stale_until_ms: now + ttl + iss.jwks_stale_for.as_millis() as u64,
                        }))
                    }
                    Err(e) => {
                        slot.fetches_failed.fetch_add(1, Ordering::Relaxed);
                        slot.failed_in_a_row.fetch_add(1, Ordering::SeqCst);
                        status::set_error(slot, Some(&e));
                        if slot.failing.swap(true, Ordering::SeqCst) {
                            tracing::debug!(issuer = %slot.issuer.name, error = %e, "signing keys still cannot be fetched");
                        } else {
                            tracing::warn!(issuer = %slot.issuer.name, error = %e, "cannot fetch signing keys; keeping the last good ones while they last");
                        }
                        Op::Nop
                    }
                }
            })
            .await;
        self.cache.get(&issuer).await
    }

    /// Warms every issuer and keeps refreshing those whose keys near expiry, for as long as the gateway runs.
    pub async fn maintain(self: Arc<Self>) {
        loop {
            let now = self.clock.now_ms();
            for (id, slot) in self.by_id() {
                if slot.statics.is_some() {
                    continue;
                }
                let due = match self.cache.get(&id).await {
                    Some(ks) => now >= ks.refresh_ms,
                    None => true,
                };
                if due {
                    self.spawn_refresh(id);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The issuers that fetch their keys and have none usable now, for `/ready`.
    pub async fn issuers_without_keys(&self) -> Vec<String> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for (id, slot) in self.by_id() {
            if slot.statics.is_some() {
                continue;
            }
            let usable = self
                .cache
                .get(&id)
                .await
                .is_some_and(|ks| now < ks.stale_until_ms && !ks.keys.is_empty());
            if !usable {
                out.push(slot.issuer.name.clone());
            }
        }
        out
    }

    /// (ok, failed) fetch counts per issuer name, for metrics.
    pub fn fetch_counts(&self) -> Vec<(String, u64, u64)> {
        self.slots
            .iter()
            .filter(|s| s.statics.is_none())
            .map(|s| {
                (
                    s.issuer.name.clone(),
                    s.fetches_ok.load(Ordering::Relaxed),
                    s.fetches_failed.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// GETs a document of at most `max` bytes; `what` (`discovery`, `jwks`) names it on the span
    /// the fetch has when a traced request waits for it.
    async fn get_capped(
        http: &reqwest::Client,
        url: &str,
        max: usize,
        what: &'static str,
    ) -> Result<(Vec<u8>, Option<String>), String> {
        let call = crate::telemetry::current::call("GET");
        let mut req = http.get(url).header("accept", "application/json");
        if let Some(c) = &call {
            req = req.header("traceparent", c.traceparent());
        }
        let sent = req.send().await;
        if let Some(c) = call {
            let failed = sent.as_ref().map_or(true, |r| !r.status().is_success());
            c.finish(fetch_attributes(url, what, sent.as_ref().ok()), failed);
        }
        let mut resp = sent.map_err(|e| format!("GET {url}: {}", error_chain(&e.without_url())))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url}: status {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n as usize > max) {
            return Err(format!("GET {url}: body larger than {max} bytes"));
        }
        let cc = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {}", e.without_url()))?
        {
            if body.len() + chunk.len() > max {
                return Err(format!("GET {url}: body larger than {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((body, cc))
    }

    async fn fetch(&self, slot: &Slot) -> Result<(Vec<Arc<VerifyKey>>, Option<u64>), String> {
        let issuer = &slot.issuer;
        let work = async {
            let uri = match &issuer.source {
                KeySource::Discovery => {
                    let url = issuer.discovery_url();
                    let (body, _) =
                        Self::get_capped(&slot.http, &url, issuer.jwks_max_bytes, "discovery")
                            .await?;
                    let doc: Discovery = serde_json::from_slice(&body)
                        .map_err(|e| format!("{url}: not a discovery document: {e}"))?;
                    if doc.issuer != issuer.issuer {
                        return Err(format!(
                            "{url}: names issuer {:?}, expected {:?}",
                            doc.issuer, issuer.issuer
                        ));
                    }
                    doc.jwks_uri
                }
                KeySource::JwksUri(u) => u.clone(),
                KeySource::Static(_) | KeySource::Own => {
                    return Err("static keys are not fetched".into())
                }
            };
            let (body, cc) =
                Self::get_capped(&slot.http, &uri, issuer.jwks_max_bytes, "jwks").await?;
            let doc: JwkSetDoc = serde_json::from_slice(&body)
                .map_err(|e| format!("{uri}: not a JWKS document: {e}"))?;
            let mut keys = Vec::new();
            for (i, v) in doc.keys.into_iter().take(MAX_KEYS).enumerate() {
                match serde_json::from_value::<RawJwk>(v)
                    .map_err(|e| e.to_string())
                    .and_then(|k| k.to_key(&issuer.algorithms))
                {
                    Ok(k) => keys.push(Arc::new(k)),
                    Err(e) => {
                        tracing::debug!(issuer = %issuer.name, index = i, reason = %e, "skipped a JWKS key")
                    }
                }
            }
            if keys.is_empty() {
                return Err(format!("{uri}: no usable signing keys"));
            }
            Ok((keys, max_age(cc.as_deref())))
        };
        match tokio::time::timeout(issuer.jwks_fetch_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timed out after {}",
                humantime::format_duration(issuer.jwks_fetch_timeout)
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{backoff_ms, max_age};

    #[test]
    fn failed_fetches_back_off_from_one_second_up_to_the_floor() {
        let cap = 30_000;
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 60].map(|n| backoff_ms(n, cap)),
            [1000, 2000, 4000, 8000, 16000, 30000, 30000]
        );
        assert_eq!(backoff_ms(1, 500), 500, "never longer than the floor");
    }

    #[test]
    fn cache_control() {
        assert_eq!(max_age(Some("public, max-age=300")), Some(300));
        assert_eq!(max_age(Some("no-store")), Some(0));
        assert_eq!(max_age(Some("public")), None);
        assert_eq!(max_age(None), None);
    }
}
