//! gatehouse: an authentication gateway on Pingora that verifies bearer JWTs and forwards the verified identity.
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod admin;
pub mod auth;
pub mod authn;
pub mod clock;
pub mod config;
pub mod error;
pub mod forward;
pub mod forwarded;
pub mod framing;
pub mod header_deadline;
pub mod header_value;
pub mod headers;
pub mod keys;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod routes;
pub mod secrets;
pub mod store;
pub mod telemetry;
pub mod tlsfiles;
pub mod token;
pub mod upstream;

use async_trait::async_trait;
use auth::jwks::Jwks;
use auth::Verifier;
use clock::SharedClock;
use config::Config;
use pingora::listeners::tls::TlsSettings;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use proxy::{Gateway, Shared};
use std::sync::Arc;

/// Keeps every issuer's keys warm for as long as the server runs.
struct KeyMaintenance(Arc<Jwks>);

#[async_trait]
impl BackgroundService for KeyMaintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        tokio::select! {
            _ = self.0.clone().maintain() => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Drops expired revocations and used assertion ids now and then.
struct StoreMaintenance(Arc<dyn store::Store>, SharedClock);

#[async_trait]
impl BackgroundService for StoreMaintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let now = self.1.now_secs();
            if let Err(e) = store::run_blocking(&self.0, move |s| s.purge(now)).await {
                tracing::warn!(error = %e, "cannot purge expired store entries");
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A gateway ready to run, and the state its requests share.
pub struct Built {
    pub server: Server,
    pub shared: Arc<Shared>,
}

/// Prepares the TLS files: creates a development certificate when asked, then checks the pair loads.
fn prepare_tls(config: &Config) -> Result<(), String> {
    if config.server.listen_tls.is_empty() {
        return Ok(());
    }
    let t = &config.tls;
    if (!t.cert.exists() || !t.key.exists()) && t.self_signed_if_missing {
        tlsfiles::write_self_signed(&t.cert, &t.key)?;
        tracing::warn!(
            cert = %t.cert.display(),
            key = %t.key.display(),
            "created a self-signed certificate for localhost and 127.0.0.1 (tls.self_signed_if_missing); use a real certificate in production"
        );
    }
    tlsfiles::check_pair(&t.cert, &t.key).map_err(|e| format!("tls: {e}"))
}

/// Fails early on an address already in use: pingora would only panic inside the listener task.
fn probe_listeners(config: &Config) -> Result<(), String> {
    let s = &config.server;
    for addr in s
        .listen_tls
        .iter()
        .chain(&s.listen_plain)
        .chain(s.admin_listen.iter())
    {
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    }
    Ok(())
}

/// Builds the Pingora server for a validated configuration.
pub fn build(config: Config, clock: SharedClock) -> Result<Built, String> {
    pingora::tls::install_default_crypto_provider();
    prepare_tls(&config)?;
    probe_listeners(&config)?;
    let config = Arc::new(config);
    let conf = ServerConf {
        threads: config.server.threads,
        grace_period_seconds: Some(1),
        graceful_shutdown_timeout_seconds: Some(5),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);

    let mut upstreams = Vec::new();
    for u in &config.upstreams {
        upstreams.push(upstream::UpstreamRuntime::build(
            &u.name,
            &u.kind,
            &mut server,
        )?);
    }
    let signing = match &config.token_service {
        Some(ts) => Some(token::keys::SigningKeys::for_service(ts, &config.clients)?),
        None => None,
    };
    let verifier = Arc::new(Verifier::new(
        config.issuers.clone(),
        signing
            .as_ref()
            .map(|k| k.verify_keys())
            .unwrap_or_default(),
        config.validation.leeway,
        config.validation.verified_cache_capacity,
        config.validation.verified_cache_max_bytes,
        clock.clone(),
    )?);
    let mut token_store: Option<Arc<dyn store::Store>> = None;
    let revocations_loaded = Arc::new(store::RevocationsLoaded::new(true));
    let tokens = match signing {
        Some(keys) => {
            let store = store::open(&config.store)?;
            token_store = Some(store.clone());
            // Revocations survive restarts: the store is the truth, memory its mirror.
            let shared_store = matches!(config.store, config::StoreBackend::Redis(_));
            // With a shared store, readiness waits for the revocation feed's subscription.
            revocations_loaded.set(!shared_store);
            match store.revoked(clock.now_secs()) {
                Ok(revoked) => {
                    for (jti, exp) in revoked {
                        verifier.revocations.add(&jti, exp);
                    }
                }
                // A shared store may be down while this replica starts: the revocation feed loads
                // the set as soon as it connects. A local file that cannot be read stops start-up.
                Err(e) if shared_store => {
                    revocations_loaded.set(false);
                    tracing::warn!(error = %e, "the store is unavailable at start; revocations load when it connects")
                }
                Err(e) => return Err(format!("store: {e}")),
            }
            if let config::StoreBackend::Redis(url) = &config.store {
                // Revocations made on other replicas reach this one's denylist at once.
                let client =
                    redis::Client::open(url.as_str()).map_err(|e| format!("store.url: {e}"))?;
                server.add_service(background_service(
                    "revocation feed",
                    store::feed::RevocationFeed {
                        client,
                        loaded: revocations_loaded.clone(),
                        store: store.clone(),
                        revocations: verifier.revocations.clone(),
                        clock: clock.clone(),
                    },
                ));
            }
            server.add_service(background_service(
                "store maintenance",
                StoreMaintenance(store.clone(), clock.clone()),
            ));
            token::TokenService::new(&config, keys, store, verifier.clone(), clock)?
        }
        None => None,
    };
    server.add_service(background_service(
        "signing keys",
        KeyMaintenance(verifier.jwks.clone()),
    ));

    let mut claim_names: Vec<http::HeaderName> = Vec::new();
    for r in &config.routes {
        for h in &r.claim_headers {
            if !claim_names.contains(&h.name) {
                claim_names.push(h.name.clone());
            }
        }
    }
    let shared = Arc::new(Shared {
        table: routes::RouteTable::new(&config.routes),
        config: config.clone(),
        verifier,
        tokens,
        upstreams,
        claim_names,
        metrics: telemetry::Metrics::new(config.routes.iter().map(|r| r.name.clone()).collect()),
        store: token_store,
        revocations_loaded,
    });

    let gateway = Gateway {
        shared: shared.clone(),
    };
    // The proxy, built as http_proxy_service_with_name builds it, wrapped in the header deadline.
    let mut proxy = pingora::proxy::HttpProxy::new(gateway, server.configuration.clone());
    proxy.handle_init_modules();
    let mut svc = pingora::services::listening::Service::new(
        "gatehouse".to_string(),
        header_deadline::HeaderDeadline::new(proxy, config.server.request_header_timeout),
    );
    for addr in &config.server.listen_plain {
        svc.add_tcp(&addr.to_string());
    }
    for addr in &config.server.listen_tls {
        let cert = config.tls.cert.to_string_lossy();
        let key = config.tls.key.to_string_lossy();
        let mut tls = TlsSettings::intermediate(&cert, &key).map_err(|e| format!("tls: {e}"))?;
        tls.enable_h2();
        svc.add_tls_with_settings(&addr.to_string(), None, tls);
    }
    server.add_service(svc);

    if let Some(addr) = config.server.admin_listen {
        let admin = admin::Admin {
            shared: shared.clone(),
        };
        let mut svc = pingora::services::listening::Service::new("gatehouse admin".into(), admin);
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    Ok(Built { server, shared })
}
