//! Exchange on the way to an upstream: the caller's token swapped for one minted for that upstream.

use super::delegation;
use super::exchange::{Minting, Party};
use super::*;
use crate::auth::identity::Identity;
use crate::auth::principal::decode_claims;
use crate::config::{Issuer, Upstream};
use crate::policy::Denied;
use crate::respond::Rejection;
use http::HeaderValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The most entries the cache of exchanged tokens keeps.
const CACHE_CAPACITY: u64 = 100_000;

/// A cache key: the caller's token (its keyed hash, as the verified-token cache has it) and the
/// upstream's place in the configuration.
type Key = (u128, usize);

/// An exchanged token as the upstream receives it, and when it stops being handed out.
#[derive(Clone)]
struct Exchanged {
    authorization: HeaderValue,
    /// milliseconds since the epoch: shortly before the token's `exp`
    until_ms: u64,
}

/// Drops each exchanged token shortly before it expires, so none is sent about to lapse.
struct UntilRenewal {
    clock: SharedClock,
}

impl moka::Expiry<Key, Exchanged> for UntilRenewal {
    fn expire_after_create(&self, _: &Key, e: &Exchanged, _: Instant) -> Option<Duration> {
        Some(Duration::from_millis(
            e.until_ms.saturating_sub(self.clock.now_ms()),
        ))
    }
}

/// When a token living from `now` to `exp` stops being reused: a tenth of its life before `exp`,
/// at least a second and at most a minute.
fn renew_at(now: u64, exp: u64) -> u64 {
    let margin = (exp.saturating_sub(now) / 10).clamp(1, 60);
    exp.saturating_sub(margin).saturating_mul(1000)
}

/// What token exchange keeps for one configuration generation.
pub(crate) struct ExchangeState {
    /// every `[[issuers]]` entry, for clients' `exchange_issuers`
    pub(super) issuers: Vec<Arc<Issuer>>,
    /// the gateway as the client of its upstream exchanges: its `client_id` is the issuer
    gateway: Client,
    cache: moka::future::Cache<Key, Exchanged>,
    /// exchanges made, per upstream (by position), then those asked at the token endpoint
    counts: Vec<AtomicU64>,
    /// each upstream's name, when it exchanges tokens
    names: Vec<Option<String>>,
}

impl ExchangeState {
    pub(super) fn new(config: &Config, gateway: Client, clock: SharedClock) -> ExchangeState {
        let names: Vec<Option<String>> = (config.upstreams.iter())
            .map(|u| u.exchange.as_ref().map(|_| u.name.clone()))
            .collect();
        ExchangeState {
            issuers: config.issuers.clone(),
            gateway,
            cache: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(UntilRenewal { clock })
                .build(),
            counts: (0..=names.len()).map(|_| AtomicU64::new(0)).collect(),
            names,
        }
    }

    /// Counts one exchange: for an upstream (by position), or at the token endpoint (`None`).
    pub(super) fn count(&self, upstream: Option<usize>) {
        let slot = upstream.unwrap_or(self.names.len()).min(self.names.len());
        if let Some(c) = self.counts.get(slot) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Exchanges made since the generation started, by the name of each upstream that exchanges
    /// tokens, and `-` for those asked at the token endpoint.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let names = self.names.iter().map(Option::as_deref).chain([Some("-")]);
        names
            .zip(&self.counts)
            .filter_map(|(name, c)| Some((name?.to_string(), c.load(Ordering::Relaxed))))
            .collect()
    }
}

/// Why the gateway cannot send an upstream its exchanged token, as the refusal the caller gets.
fn refusal(e: &OAuthError, upstream: &Upstream, missing: Option<&str>) -> Rejection {
    match e.code {
        OAuthErrorCode::InvalidScope => Rejection::InsufficientScope(Denied {
            reason: crate::observe::DenyReason::ScopesAll,
            scope: missing.map(str::to_string),
        }),
        OAuthErrorCode::InvalidGrant => Rejection::ExchangeRefused,
        _ => {
            tracing::warn!(upstream = %upstream.name, error = e.description,
                "no token could be minted for the upstream");
            Rejection::ExchangeUnavailable
        }
    }
}

impl TokenService {
    /// Exchanges on the way to an upstream.
    pub(crate) fn exchanges(&self) -> &ExchangeState {
        &self.exchange
    }

    /// The `Authorization` value an upstream with `exchange` receives for this request: a token
    /// minted for it with the caller as subject and the gateway as actor, reused for the same
    /// caller's token until shortly before it expires. `None` when the request carried no token
    /// (a session's identity), so there is nothing to exchange and nothing is sent.
    pub async fn for_upstream(
        &self,
        id: &Identity,
        upstream: &Upstream,
    ) -> Result<Option<HeaderValue>, Rejection> {
        let (Some(ex), Some(token_key)) = (&upstream.exchange, id.token_key) else {
            return Ok(None);
        };
        let key = (token_key, upstream.id.position());
        let made = self
            .exchange
            .cache
            .try_get_with(key, async {
                let minted = self.exchange_upstream(id, upstream, ex).await?;
                let bearer = format!("Bearer {}", minted.token);
                let authorization =
                    HeaderValue::try_from(bearer).map_err(|_| Rejection::ExchangeUnavailable)?;
                self.exchange.count(Some(upstream.id.position()));
                Ok::<_, Rejection>(Exchanged {
                    authorization,
                    until_ms: renew_at(self.clock.now_secs(), minted.exp),
                })
            })
            .await
            .map_err(|e| (*e).clone())?;
        Ok(Some(made.authorization))
    }

    /// One exchange for an upstream: the caller's scopes narrowed to the configured ones (all of
    /// them must be held), the caller's `may_act` honoured for the gateway.
    async fn exchange_upstream(
        &self,
        id: &Identity,
        upstream: &Upstream,
        ex: &crate::config::UpstreamExchange,
    ) -> Result<super::exchange::Minted, Rejection> {
        let subject = Party {
            principal: id.principal.clone(),
            claims: decode_claims(id.payload.as_bytes()),
        };
        let gateway = self.gateway_actor();
        let held: Vec<&str> = subject.principal.scopes().collect();
        let wanted = ex.scopes.as_deref();
        let client_scopes: Vec<String> = match wanted {
            Some(w) => w.to_vec(),
            None => held.iter().map(|s| s.to_string()).collect(),
        };
        let missing = wanted.and_then(|w| w.iter().find(|s| !held.contains(&s.as_str())));
        let scopes = delegation::scopes(wanted, &held, &client_scopes).map_err(|r| {
            refusal(
                &super::exchange::refused(r),
                upstream,
                missing.map(String::as_str),
            )
        })?;
        delegation::may_act(subject.claims.get("may_act"), &gateway)
            .map_err(|_| Rejection::ExchangeRefused)?;
        let minting = Minting {
            subject: &subject,
            actor: Some(self.exchange.gateway.client_id.as_str()),
            scopes: &scopes,
            target: Some(ex.audience.as_str()),
        };
        self.mint_exchanged(&self.exchange.gateway, minting)
            .await
            .map_err(|e| refusal(&e, upstream, None))
    }

    /// The gateway as an actor, as `may_act` names it: its issuer URL.
    fn gateway_actor(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        m.insert("sub".into(), json!(self.exchange.gateway.client_id));
        m
    }
}

/// The gateway's own client for upstream exchanges: confidential, named by the issuer URL (which no
/// configured client can be: their ids have no ':'), audience the token service's.
pub(super) fn gateway_client(settings: &TokenServiceSettings) -> Client {
    Client {
        client_id: settings.issuer.clone(),
        secret: None,
        grant_types: vec![GrantType::TokenExchange],
        scopes: vec![],
        default_scopes: vec![],
        roles: vec![],
        audience: settings.audience.clone(),
        redirect_uris: vec![],
        public: false,
        keys: crate::config::ClientKeys::None,
        exchange: Default::default(),
        dpop_bound: false,
        jwt_bearer_subjects: vec![],
        id_token_alg: jsonwebtoken::Algorithm::RS256,
        allowed_origins: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchanged_token_is_reused_until_shortly_before_it_expires() {
        assert_eq!(renew_at(1000, 1600), 1540 * 1000);
        assert_eq!(renew_at(1000, 1005), 1004 * 1000);
        assert_eq!(renew_at(1000, 1000 + 7200), (1000 + 7200 - 60) * 1000);
        assert_eq!(renew_at(1000, 900), 899 * 1000);
    }
}
