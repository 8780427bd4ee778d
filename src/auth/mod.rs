//! Bearer-token verification: verified-token cache, then keys from the JWKS cache, then signature and claims.

pub mod extract;
pub mod identity;
pub mod jwks;
pub mod jwt;
pub mod principal;
pub mod strict_json;

use crate::clock::SharedClock;
use crate::config::Issuer;
use jwks::{Jwks, KeysError};
use jwt::TokenError;
use principal::Principal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthError {
    Token(TokenError),
    KeysUnavailable { retry_after: u64 },
}

impl From<TokenError> for AuthError {
    fn from(e: TokenError) -> Self {
        AuthError::Token(e)
    }
}

/// A keyed 128-bit SipHash-1-3 of the token: collisions cannot be searched for without the per-process
/// random key, and hashing costs a fraction of SHA-256.
type TokenKey = u128;

/// What moka and the key add to each cached principal, measured roughly: the weigher counts it.
const CACHE_ENTRY_OVERHEAD: usize = 128;

/// Expires each verified token when its `exp` (plus leeway) passes.
struct UntilExp {
    clock: SharedClock,
    leeway: u64,
}

impl moka::Expiry<TokenKey, Arc<Principal>> for UntilExp {
    fn expire_after_create(
        &self,
        _: &TokenKey,
        p: &Arc<Principal>,
        _: Instant,
    ) -> Option<Duration> {
        let until = p.exp.saturating_add(self.leeway).saturating_mul(1000);
        Some(Duration::from_millis(
            until.saturating_sub(self.clock.now_ms()),
        ))
    }
}

/// Revoked access-token ids, mirrored from the store, each kept until its token's `exp`.
pub struct Revocations {
    set: moka::sync::Cache<Box<str>, u64>,
}

struct UntilTokenExp {
    clock: SharedClock,
    leeway: u64,
}

impl moka::Expiry<Box<str>, u64> for UntilTokenExp {
    fn expire_after_create(&self, _: &Box<str>, exp: &u64, _: Instant) -> Option<Duration> {
        let until = exp.saturating_add(self.leeway).saturating_mul(1000);
        Some(Duration::from_millis(
            until.saturating_sub(self.clock.now_ms()),
        ))
    }
}

impl Revocations {
    pub fn new(clock: SharedClock, leeway: u64) -> Self {
        Revocations {
            set: moka::sync::Cache::builder()
                .expire_after(UntilTokenExp { clock, leeway })
                .build(),
        }
    }

    pub fn add(&self, jti: &str, exp: u64) {
        self.set.insert(jti.into(), exp);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        !jti.is_empty() && self.set.contains_key(jti)
    }
}

/// Verifies bearer tokens for routes; shared by every request.
pub struct Verifier {
    pub revocations: Arc<Revocations>,
    hash_key: (u64, u64),
    pub jwks: Arc<Jwks>,
    cache: moka::sync::Cache<TokenKey, Arc<Principal>>,
    leeway: u64,
    clock: SharedClock,
    /// tokens answered from the cache, and tokens whose signature was checked (since the last reload)
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Verifier {
    /// `own_keys` verify the gateway's own tokens (issuer "self"). Fails when no random key or
    /// HTTP client can be had: start-up stops rather than running with a predictable cache key.
    pub fn new(
        issuers: Vec<Arc<Issuer>>,
        own_keys: Vec<Arc<crate::crypto::verify_keys::VerifyKey>>,
        leeway: u64,
        capacity: u64,
        max_bytes: u64,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let revocations = Arc::new(Revocations::new(clock.clone(), leeway));
        Self::sharing(
            issuers,
            own_keys,
            leeway,
            capacity,
            max_bytes,
            clock,
            revocations,
        )
    }

    /// A verifier that keeps `revocations`, the denylist of the verifier it replaces on a reload.
    pub fn sharing(
        issuers: Vec<Arc<Issuer>>,
        own_keys: Vec<Arc<crate::crypto::verify_keys::VerifyKey>>,
        leeway: u64,
        capacity: u64,
        max_bytes: u64,
        clock: SharedClock,
        revocations: Arc<Revocations>,
    ) -> Result<Self, String> {
        let jwks = Arc::new(Jwks::new(&issuers, own_keys, clock.clone())?);
        // Each entry weighs its bytes, but never less than its share of the byte bound at full
        // entry count, so the cache stays within both `capacity` entries and `max_bytes` bytes.
        let floor = (max_bytes / capacity.max(1)).min(u64::from(u32::MAX)) as u32;
        let cache = moka::sync::Cache::builder()
            .max_capacity(if capacity == 0 { 0 } else { max_bytes })
            .weigher(move |_: &TokenKey, p: &Arc<Principal>| {
                let bytes = u32::try_from(p.weight() + CACHE_ENTRY_OVERHEAD).unwrap_or(u32::MAX);
                bytes.max(floor)
            })
            .expire_after(UntilExp {
                clock: clock.clone(),
                leeway,
            })
            .build();
        Ok(Verifier {
            revocations,
            hash_key: crate::crypto::random_key().map_err(|e| e.to_string())?,
            jwks,
            cache,
            leeway,
            clock,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        })
    }

    /// Verifies `token` for a route that trusts the `allowed` issuers.
    pub async fn verify(
        &self,
        token: &str,
        allowed: &[Arc<Issuer>],
    ) -> Result<Arc<Principal>, AuthError> {
        let now = self.clock.now_secs();
        let key = self.token_key(token);
        if let Some(p) = self.cache.get(&key) {
            if now <= p.exp.saturating_add(self.leeway) {
                // The cache holds claims, not decisions: the route's issuers still apply.
                if !allowed.iter().any(|i| i.id == p.issuer) {
                    return Err(TokenError::UntrustedIssuer.into());
                }
                self.check_revoked(&p)?;
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(p);
            }
            self.cache.invalidate(&key);
        }
        let parsed = jwt::parse(token)?;
        let iss = parsed.iss().ok_or(TokenError::UntrustedIssuer)?;
        let issuer = allowed
            .iter()
            .find(|i| i.accepts_iss(iss))
            .ok_or(TokenError::UntrustedIssuer)?;
        if !issuer.algorithms.contains(&parsed.alg) {
            return Err(TokenError::Algorithm.into());
        }
        if let Some(typ) = issuer.require_typ {
            // RFC 9068: an ID token or other JWT of this issuer is not an access token.
            if !parsed.typ.as_deref().is_some_and(|t| {
                t.eq_ignore_ascii_case(typ) || t.eq_ignore_ascii_case(&format!("application/{typ}"))
            }) {
                return Err(TokenError::Type.into());
            }
        }
        let exp = parsed.validate_claims(issuer, now, self.leeway)?;
        let keys = self
            .jwks
            .keys(issuer.id, parsed.kid.as_deref())
            .await
            .map_err(
                |KeysError::Unavailable { retry_after }| AuthError::KeysUnavailable { retry_after },
            )?;
        self.misses.fetch_add(1, Ordering::Relaxed);
        parsed.verify_signature(&keys.keys)?;
        let principal = Arc::new(Principal::of_token(
            issuer,
            &parsed.claims,
            exp,
            Some(token),
        ));
        self.cache.insert(key, principal.clone());
        self.check_revoked(&principal)?;
        Ok(principal)
    }

    /// Revocation is by `jti`, so it holds for every copy of a token, however its signature is encoded.
    fn check_revoked(&self, p: &Principal) -> Result<(), AuthError> {
        match p.jti() {
            Some(j) if self.revocations.is_revoked(j) => Err(TokenError::Revoked.into()),
            _ => Ok(()),
        }
    }

    /// The keyed hash a token is cached under.
    pub fn token_key(&self, token: &str) -> TokenKey {
        use std::hash::Hasher;
        let mut h = siphasher::sip128::SipHasher13::new_with_keys(self.hash_key.0, self.hash_key.1);
        h.write(token.as_bytes());
        siphasher::sip128::Hasher128::finish128(&h).as_u128()
    }

    /// Requests answered from the verified-token cache, and signature checks, since the last reload.
    pub fn lookups(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    pub fn cached_tokens(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Bytes the verified-token cache holds, as its weigher counts them.
    pub fn cached_bytes(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}
