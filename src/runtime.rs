//! One configuration generation: everything requests share, built from a `Config` at start-up and
//! again on each reload, around the parts that outlive generations (the store, the denylist).

use crate::auth::{Revocations, Verifier};
use crate::clock::SharedClock;
use crate::config::Config;
use crate::proxy::Shared;
use crate::store::{RevocationsLoaded, Store};
use crate::tasks::Tasks;
use crate::{routes, telemetry, token, upstream};
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

/// Builds a generation: upstream pools, signing keys (read again, so a rotation needs no restart),
/// verifier, token service and route table; its background work is returned, not yet started.
pub fn generation(config: Arc<Config>, lasting: &Lasting) -> Result<(Shared, Tasks), String> {
    let mut tasks = Tasks::default();
    let mut upstreams = Vec::new();
    for u in &config.upstreams {
        upstreams.push(upstream::UpstreamRuntime::build(
            &u.name, &u.kind, &mut tasks,
        )?);
    }
    let signing = match &config.token_service {
        Some(ts) => Some(token::keys::SigningKeys::for_service(ts, &config.clients)?),
        None => None,
    };
    let verifier = Arc::new(Verifier::sharing(
        config.issuers.clone(),
        signing
            .as_ref()
            .map(|k| k.verify_keys())
            .unwrap_or_default(),
        config.validation.leeway,
        config.validation.verified_cache_capacity,
        config.validation.verified_cache_max_bytes,
        lasting.clock.clone(),
        lasting.revocations.clone(),
    )?);
    tasks.add(KeyMaintenance(verifier.jwks.clone()));
    let tokens = match (signing, &lasting.store) {
        (Some(keys), Some(store)) => token::TokenService::new(
            &config,
            keys,
            store.clone(),
            verifier.clone(),
            lasting.clock.clone(),
        )?,
        (Some(_), None) => {
            return Err("[token_service] was added: adding a token service needs a restart".into())
        }
        _ => None,
    };
    let mut claim_names: Vec<http::HeaderName> = Vec::new();
    for r in &config.routes {
        for h in &r.claim_headers {
            if !claim_names.contains(&h.name) {
                claim_names.push(h.name.clone());
            }
        }
    }
    let shared = Shared {
        table: routes::RouteTable::new(&config.routes),
        metrics: telemetry::Metrics::new(config.routes.iter().map(|r| r.name.clone()).collect()),
        config,
        verifier,
        tokens,
        upstreams,
        claim_names,
        store: lasting.store.clone(),
        revocations_loaded: lasting.revocations_loaded.clone(),
    };
    Ok((shared, tasks))
}
