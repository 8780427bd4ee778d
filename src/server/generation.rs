//! One configuration generation: everything requests share, built from a `Config` at start-up and
//! again on each reload, around the parts that outlive generations (the store, the denylist).

use crate::auth::{Revocations, Verifier};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::crypto::verify_keys::VerifyKey;
use crate::proxy::routes;
use crate::proxy::Shared;
use crate::startup_error::StartupError;
use crate::store::{RevocationsLoaded, Store};
use crate::upstream::tasks::Tasks;
use crate::{token, upstream};
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;

/// What every generation shares: made once at start-up.
pub struct Lasting {
    pub clock: SharedClock,
    /// the token service's store; changing `[store]` needs a restart
    pub store: Option<Arc<dyn Store>>,
    /// the proxy's denylist, fed by revocations and the store
    pub revocations: Arc<Revocations>,
    pub revocations_loaded: Arc<RevocationsLoaded>,
    pub propagation: prometheus::Histogram,
    /// DPoP proof ids seen, kept across reloads so none can be replayed after one
    pub seen_proofs: Arc<crate::store::seen::SeenIds>,
    /// the audit stream and its sinks; changing `[audit]` needs a restart
    pub audit: crate::audit::Audit,
    /// the latest audit events, for the console (with `[admin] console`)
    pub console_events: Option<Arc<crate::audit::recent::Recent>>,
    /// traces to the OTLP collector; changing `[telemetry]` needs a restart
    pub telemetry: crate::telemetry::Telemetry,
}

/// Keeps every issuer's keys warm for as long as the generation serves.
struct KeyMaintenance(Arc<crate::auth::jwks::Jwks>);

#[async_trait]
impl BackgroundService for KeyMaintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = self.0.clone().maintain() => {}
            _ = shutdown.changed() => {}
        }
    }
}

fn same_keys(a: &[Arc<VerifyKey>], b: &[Arc<VerifyKey>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_as(y))
}

/// Builds a generation: upstream pools, signing keys (read again, so a rotation needs no restart),
/// verifier, token service and route table; its background work is returned, not yet started. The
/// previous generation's verifier, with its key and verified-token caches, is kept when the issuers
/// and signing keys did not change.
pub fn generation(
    config: Arc<Config>,
    lasting: &Lasting,
    previous: Option<&Shared>,
) -> Result<(Shared, Tasks), StartupError> {
    let mut tasks = Tasks::default();
    let mut upstreams = Vec::new();
    for u in &config.upstreams {
        upstreams.push(
            upstream::UpstreamRuntime::build(&u.name, &u.kind, &mut tasks)
                .map_err(StartupError::part("upstreams"))?,
        );
    }
    let signing = (config.token_service.as_ref())
        .map(|ts| token::keys::SigningKeys::for_service(ts, &config.clients))
        .transpose()?;
    let own_keys = signing
        .as_ref()
        .map(|k| k.verify_keys())
        .unwrap_or_default();
    let verifier = verifier(&config, lasting, previous, &own_keys)?;
    tasks.add(KeyMaintenance(verifier.jwks.clone()));
    let identity_signer = match (&signing, &config.token_service) {
        (Some(keys), Some(ts)) => keys.current_shared().map(|k| {
            crate::proxy::identity_jwt::IdentitySigner::new(
                k,
                ts.issuer.clone(),
                lasting.clock.clone(),
            )
        }),
        _ => None,
    };
    let dpop = Arc::new(dpop(&config, lasting)?);
    let judges = (verifier.clone(), dpop.clone());
    let tokens = token_service(&config, lasting, signing, judges)?;
    let gateway_cookies = gateway_cookies(tokens.as_ref());
    let providers = match &tokens {
        Some(_) => Some(Arc::new(providers(&config, lasting)?)),
        None => None,
    };
    let claim_names = claim_names(&config);
    let public_origin = origin_of(&config.server.public_url);
    let public_scheme = url::Url::parse(&config.server.public_url)
        .map(|u| u.scheme().to_string())
        .unwrap_or_else(|_| "https".into());
    let shared = Shared {
        clock: lasting.clock.clone(),
        public_scheme,
        dpop,
        public_origin,
        providers,
        gateway_cookies,
        table: routes::RouteTable::new(&config.routes),
        metrics: crate::observe::metrics::Metrics::new(
            config.routes.iter().map(|r| r.name.clone()).collect(),
            &lasting.propagation,
        )?
        .with_rules(config.routes.iter().map(rule_counts).collect()),
        config,
        verifier,
        tokens,
        upstreams,
        claim_names,
        store: lasting.store.clone(),
        revocations_loaded: lasting.revocations_loaded.clone(),
        own_keys,
        identity_signer,
        audit: lasting.audit.clone(),
        telemetry: lasting.telemetry.clone(),
    };
    Ok((shared, tasks))
}

/// The token service of a generation, with its signing keys, when the configuration has one.
fn token_service(
    config: &Config,
    lasting: &Lasting,
    signing: Option<token::keys::SigningKeys>,
    judges: (Arc<Verifier>, Arc<crate::dpop::Dpop>),
) -> Result<Option<token::TokenService>, StartupError> {
    match (signing, &lasting.store) {
        (Some(keys), Some(store)) => {
            let parts = (
                lasting.clock.clone(),
                lasting.audit.clone(),
                lasting.revocations_loaded.clone(),
            );
            token::TokenService::new(config, keys, store.clone(), judges, parts)
        }
        (Some(_), None) => Err(StartupError::Setting {
            key: "token_service",
            problem: "was added: adding a token service needs a restart".into(),
        }),
        _ => Ok(None),
    }
}

/// The DPoP judge of a generation: its settings, the proof ids every generation shares, and nonces
/// keyed by `[sessions] state_secret_env` when set (so every replica takes every other's).
fn dpop(config: &Config, lasting: &Lasting) -> Result<crate::dpop::Dpop, StartupError> {
    let secret = config
        .sessions
        .state_secret
        .as_ref()
        .map(|s| s.0.as_bytes());
    crate::dpop::Dpop::new(
        config.dpop.clone(),
        config.validation.leeway,
        lasting.clock.clone(),
        lasting.seen_proofs.clone(),
        secret,
    )
    .map_err(|e| StartupError::part("token_service")(e.to_string()))
}

/// The previous generation's verifier, with its key and verified-token caches, when the issuers,
/// own keys and validation settings did not change; else a new one sharing the denylist.
fn verifier(
    config: &Config,
    lasting: &Lasting,
    previous: Option<&Shared>,
    own_keys: &[Arc<VerifyKey>],
) -> Result<Arc<Verifier>, StartupError> {
    let v = &config.validation;
    let reusable = previous.filter(|p| {
        p.config.issuers == config.issuers
            && same_keys(&p.own_keys, own_keys)
            && p.config.validation.leeway == v.leeway
            && p.config.validation.verified_cache_capacity == v.verified_cache_capacity
            && p.config.validation.verified_cache_max_bytes == v.verified_cache_max_bytes
    });
    if let Some(p) = reusable {
        return Ok(p.verifier.clone());
    }
    let verifier = Verifier::sharing(
        config.issuers.clone(),
        own_keys.to_vec(),
        v.leeway,
        v.verified_cache_capacity,
        v.verified_cache_max_bytes,
        lasting.clock.clone(),
        lasting.revocations.clone(),
    )
    .map_err(StartupError::part("issuers"))?;
    Ok(Arc::new(verifier))
}

/// The gateway's own cookies, which no upstream sees or sets.
fn gateway_cookies(tokens: Option<&crate::token::TokenService>) -> Vec<String> {
    match tokens {
        Some(t) => vec![
            t.sessions.settings.cookie_name.clone(),
            crate::token::authorize::CSRF_COOKIE.to_string(),
        ],
        None => vec![],
    }
}

/// The origin (`scheme://host[:port]`) of an address; empty for one that is not a URL.
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}

/// The external OpenID providers people sign in with on the session routes.
fn providers(config: &Config, lasting: &Lasting) -> Result<crate::login::Providers, StartupError> {
    let session_routes = config
        .routes
        .iter()
        .filter(|r| r.auth == crate::config::AuthMode::Session)
        .map(|r| r.name.clone())
        .collect();
    crate::login::Providers::new(
        config.login_providers.clone(),
        session_routes,
        lasting.clock.clone(),
        config.validation.leeway,
    )
    .map_err(StartupError::part("login_providers"))
}

/// The names of the claim headers the routes set, each once.
/// A route's (`allow_if`, `deny_if`) counts, for the metrics that count refusals by rule.
fn rule_counts(route: &crate::config::Route) -> (usize, usize) {
    route
        .rules
        .as_deref()
        .map_or((0, 0), |r| (r.allow_if.len(), r.deny_if.len()))
}

fn claim_names(config: &Config) -> Vec<http::HeaderName> {
    let mut names: Vec<http::HeaderName> = Vec::new();
    for h in config.routes.iter().flat_map(|r| &r.claim_headers) {
        if !names.contains(&h.name) {
            names.push(h.name.clone());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use crate::auth::principal::tests::issuer;
    use crate::config::{Issuer, KeySource};
    use crate::crypto::verify_keys::VerifyKey;
    use jsonwebtoken::Algorithm;
    use std::sync::Arc;

    fn with_key(secret: &[u8]) -> Issuer {
        let key = VerifyKey::hmac(secret, vec![Algorithm::HS256]).unwrap();
        Issuer {
            source: KeySource::Static(vec![Arc::new(key)]),
            ..issuer()
        }
    }

    #[test]
    fn issuers_are_equal_when_they_verify_alike() {
        assert_eq!(with_key(b"one"), with_key(b"one"));
        // the key material differs where Debug shows nothing of it
        assert_ne!(with_key(b"one"), with_key(b"two"));
        assert_eq!(
            format!("{:?}", with_key(b"one")),
            format!("{:?}", with_key(b"two"))
        );
        let later = Issuer {
            jwks_max_bytes: 1,
            ..with_key(b"one")
        };
        assert_ne!(with_key(b"one"), later);
        let listed = |i: Issuer| vec![Arc::new(i)];
        assert!(listed(issuer()) == listed(issuer()));
        assert!(listed(issuer()) != listed(with_key(b"one")));
    }
}
