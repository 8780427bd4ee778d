//! The running gateway: its assembly, configuration generations, reload, the admin listener,
//! draining and background tasks.

pub mod admin;
pub mod drain;
pub mod explain;
pub mod generation;
pub mod reload;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::listener::tls_accept::TlsTermination;
use crate::proxy::{Gateway, Shared};
use crate::startup_error::StartupError;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use pingora::listeners::ListenerConfig;
use pingora::prelude::*;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::server::configuration::ServerConf;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use pingora::tls::sign::CertifiedKey;
use std::sync::Arc;

/// Read buffer per client connection. Pingora's default (64 KiB) is held by every idle keep-alive
/// connection; a request header rarely passes a few KiB, and larger bodies are read in more calls.
const CLIENT_READ_BUFFER: usize = 4 * 1024;

fn client_buffers() -> L4BufferSettings {
    L4BufferSettings {
        read: Some(CLIENT_READ_BUFFER),
        write: None,
    }
}

/// Drops expired revocations and used assertion ids now and then.
struct StoreMaintenance(Arc<dyn crate::store::Store>, SharedClock);

#[async_trait]
impl BackgroundService for StoreMaintenance {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            let now = self.1.now_secs();
            if let Err(e) = crate::store::run_blocking(&self.0, move |s| s.purge(now)).await {
                tracing::warn!(error = %e, "cannot purge expired store entries");
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// A gateway ready to run, the state its requests share, and the way to reload it.
pub struct Built {
    pub server: Server,
    pub shared: Arc<ArcSwap<Shared>>,
    pub reloader: Arc<reload::Reloader>,
}

/// Starts the first generation's background work once the server runs, and hands its stop switch
/// to the reloader, which stops it when a reload replaces the generation.
/// Takes a reading of the metrics for the console's charts every few seconds.
struct ConsoleHistory(Arc<crate::console::Console>, Arc<ArcSwap<Shared>>);

#[async_trait]
impl BackgroundService for ConsoleHistory {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        loop {
            self.0.sample(&self.1.load());
            tokio::select! {
                _ = tokio::time::sleep(crate::console::history::EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

struct FirstGeneration {
    tasks: std::sync::Mutex<Option<crate::upstream::tasks::Tasks>>,
    reloader: Arc<reload::Reloader>,
}

#[async_trait]
impl BackgroundService for FirstGeneration {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let tasks = self.tasks.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = tasks {
            self.reloader.started(t.start());
        }
        let _ = shutdown.changed().await;
        self.reloader.stop_tasks();
    }
}

/// Prepares the TLS files: creates a development certificate when asked, then loads the pair the
/// listeners serve (none without TLS listeners).
fn prepare_tls(config: &Config) -> Result<Option<Arc<CertifiedKey>>, StartupError> {
    if config.server.listen_tls.is_empty() {
        return Ok(None);
    }
    let t = &config.tls;
    if (!t.cert.exists() || !t.key.exists()) && t.self_signed_if_missing {
        crate::crypto::files::write_self_signed(&t.cert, &t.key)?;
        tracing::warn!(
            cert = %t.cert.display(),
            key = %t.key.display(),
            "created a self-signed certificate for localhost and 127.0.0.1 (tls.self_signed_if_missing); use a real certificate in production"
        );
    }
    crate::listener::cert_resolver::load(&t.cert, &t.key).map(Some)
}

/// Fails early on an address already in use: pingora would only panic inside the listener task.
fn probe_listeners(config: &Config) -> Result<(), StartupError> {
    let s = &config.server;
    for addr in s
        .listen_tls
        .iter()
        .chain(&s.listen_plain)
        .chain(s.admin_listen.iter())
    {
        std::net::TcpListener::bind(addr).map_err(|source| StartupError::Listener {
            addr: *addr,
            source,
        })?;
    }
    Ok(())
}

/// Builds the Pingora server for a validated configuration.
pub fn build(config: Config, clock: SharedClock) -> Result<Built, StartupError> {
    build_with(config, clock, false)
}

/// Builds the server; with `upgrade` it takes its listening sockets from the running process that
/// receives SIGQUIT (Pingora's graceful binary upgrade) instead of binding them.
pub fn build_with(
    config: Config,
    clock: SharedClock,
    upgrade: bool,
) -> Result<Built, StartupError> {
    // before anything builds a TLS client: Pingora would install ring
    if !crate::crypto::tls::install() {
        tracing::warn!(
            "another TLS crypto provider was installed first: upstream TLS, key-set fetches and the store use it, not aws-lc-rs"
        );
    }
    let certificate = prepare_tls(&config)?;
    if !upgrade {
        probe_listeners(&config)?;
    }
    let config = Arc::new(config);
    let conf = ServerConf {
        threads: config.server.threads,
        work_stealing: config.server.work_stealing,
        upgrade_sock: config.server.upgrade_sock.clone(),
        // In-flight requests run until the grace period ends: Pingora then stops the runtimes,
        // which cancels what is still running; blocking work gets a little longer.
        grace_period_seconds: Some(config.server.shutdown_grace.as_secs()),
        graceful_shutdown_timeout_seconds: Some(5),
        ..Default::default()
    };
    let opt = pingora::server::configuration::Opt {
        upgrade,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(opt, conf);

    let started = clock.now_secs();
    let lasting = lasting(&config, clock, &mut server)?;
    let console = lasting
        .console_events
        .clone()
        .map(|events| Arc::new(crate::console::Console::new(&config.admin, events, started)));
    let (first, first_tasks) = generation::generation(config.clone(), &lasting, None)?;
    let shared = Arc::new(ArcSwap::from_pointee(first));
    let resolver =
        certificate.map(|c| Arc::new(crate::listener::cert_resolver::CertResolver::new(c)));
    let reloader = Arc::new(reload::Reloader::new(
        shared.clone(),
        lasting,
        resolver.clone(),
    ));
    if config.server.watch_config {
        server.add_service(background_service(
            "configuration file watch",
            reload::Watch(reloader.clone()),
        ));
    }
    server.add_service(background_service(
        "configuration generation",
        FirstGeneration {
            tasks: std::sync::Mutex::new(Some(first_tasks)),
            reloader: reloader.clone(),
        },
    ));

    server.add_service(proxy_service(&server, &config, &shared, resolver.as_ref())?);
    if let Some(addr) = config.server.admin_listen {
        admin_service(&mut server, addr, &shared, &reloader, console);
    }
    Ok(Built {
        server,
        shared,
        reloader,
    })
}

/// The admin listener, with the console's chart readings when it has a console.
fn admin_service(
    server: &mut Server,
    addr: std::net::SocketAddr,
    shared: &Arc<ArcSwap<Shared>>,
    reloader: &Arc<reload::Reloader>,
    console: Option<Arc<crate::console::Console>>,
) {
    if let Some(c) = &console {
        server.add_service(background_service(
            "console history",
            ConsoleHistory(c.clone(), shared.clone()),
        ));
    }
    let admin = admin::Admin {
        shared: shared.clone(),
        reloader: reloader.clone(),
        console,
    };
    let mut svc = pingora::services::listening::Service::new("gatehouse admin".into(), admin);
    svc.add_tcp(&addr.to_string());
    server.add_service(svc);
}

/// The store's background work: the Redis revocation feed or the SQLite file's revocation watch,
/// and the purge of expired entries.
fn store_services(
    config: &Config,
    store: &Arc<dyn crate::store::Store>,
    revocations: &Arc<crate::auth::Revocations>,
    revocations_loaded: &Arc<crate::store::RevocationsLoaded>,
    clock: &SharedClock,
    propagation: &prometheus::Histogram,
    server: &mut Server,
) -> Result<(), StartupError> {
    if let crate::config::StoreBackend::Redis(url) = &config.store {
        // Revocations made on other replicas reach this one's denylist at once.
        let client = crate::store::redis::client(url).map_err(|problem| StartupError::Store {
            backend: "redis",
            problem,
        })?;
        server.add_service(background_service(
            "revocation feed",
            crate::store::feed::RevocationFeed {
                client,
                loaded: revocations_loaded.clone(),
                store: store.clone(),
                revocations: revocations.clone(),
                clock: clock.clone(),
                lag: propagation.clone(),
            },
        ));
    }
    if matches!(config.store, crate::config::StoreBackend::Sqlite(_)) {
        // the command line writes revocations straight into the file
        server.add_service(background_service(
            "revocation watch",
            crate::store::watch::RevocationWatch {
                store: store.clone(),
                revocations: revocations.clone(),
                clock: clock.clone(),
            },
        ));
    }
    server.add_service(background_service(
        "store maintenance",
        StoreMaintenance(store.clone(), clock.clone()),
    ));
    Ok(())
}

/// What outlives every generation: the store, the revocations it feeds (with the Redis feed and the
/// store's maintenance as background services), the clock and the propagation histogram.
fn lasting(
    config: &Config,
    clock: SharedClock,
    server: &mut Server,
) -> Result<generation::Lasting, StartupError> {
    let revocations = Arc::new(crate::auth::Revocations::new(
        clock.clone(),
        config.validation.leeway,
    ));
    let revocations_loaded = Arc::new(crate::store::RevocationsLoaded::new(true));
    let propagation = crate::observe::metrics::propagation_histogram()?;
    let store = match &config.token_service {
        Some(_) => Some(crate::store::open(&config.store)?),
        None => None,
    };
    if let Some(store) = &store {
        let shared_store = matches!(config.store, crate::config::StoreBackend::Redis(_));
        // With a shared store, readiness waits for the revocation feed's subscription.
        revocations_loaded.set(!shared_store);
        match store.revoked(clock.now_secs()) {
            // Revocations survive restarts: the store is the truth, memory its mirror.
            Ok(revoked) => {
                for (jti, exp) in revoked {
                    revocations.add(&jti, exp);
                }
            }
            // A shared store may be down while this replica starts: the revocation feed loads
            // the set as soon as it connects. A local file that cannot be read stops start-up.
            Err(e) if shared_store => {
                tracing::warn!(error = %e, "the store is unavailable at start; revocations load when it connects")
            }
            Err(e) => {
                return Err(StartupError::Store {
                    backend: config.store.kind(),
                    problem: format!("cannot read the revocations: {e}"),
                })
            }
        }
        store_services(
            config,
            store,
            &revocations,
            &revocations_loaded,
            &clock,
            &propagation,
            server,
        )?;
    }
    // DPoP proof ids: in the shared store when there is one (every replica refuses a replay),
    // else in this process's memory
    let shared_ids = store.as_ref().and_then(|s| s.once_ids());
    let seen_proofs =
        crate::store::seen::SeenIds::new("dpop", crate::store::seen::PROOF_IDS, shared_ids)
            .map_err(|e| StartupError::part("token_service")(e.to_string()))?;
    let telemetry = crate::telemetry::Telemetry::start(config.telemetry.as_ref(), clock.clone())
        .map_err(|e| StartupError::part("telemetry")(e.to_string()))?;
    let console_events = config.admin.console.then(Arc::default);
    let audit = crate::audit::Audit::start_with(
        config.audit.as_ref(),
        clock.clone(),
        &telemetry,
        console_events.clone(),
    )
    .map_err(|e| StartupError::part("audit")(e.to_string()))?;
    Ok(generation::Lasting {
        audit,
        console_events,
        telemetry,
        clock,
        store,
        revocations,
        revocations_loaded,
        propagation,
        seen_proofs: Arc::new(seen_proofs),
    })
}

/// The proxy on every plain and TLS listener: Pingora's HTTP proxy around the gateway, wrapped in
/// the header deadline, with the gateway's own TLS handshake.
fn proxy_service(
    server: &Server,
    config: &Config,
    shared: &Arc<ArcSwap<Shared>>,
    resolver: Option<&Arc<crate::listener::cert_resolver::CertResolver>>,
) -> Result<
    pingora::services::listening::Service<
        crate::listener::header_deadline::HeaderDeadline<pingora::proxy::HttpProxy<Gateway>>,
    >,
    StartupError,
> {
    let gateway = Gateway {
        shared: shared.clone(),
        draining: drain::watch(server.watch_execution_phase())
            .map_err(StartupError::part("server"))?,
    };
    // The proxy, built as http_proxy_service_with_name builds it, wrapped in the header deadline.
    let mut proxy = pingora::proxy::HttpProxy::new(gateway, server.configuration.clone());
    proxy.handle_init_modules();
    // with `h2c`, plain listeners take HTTP/2 with prior knowledge (gRPC behind a TLS-terminating
    // balancer) next to HTTP/1.1; TLS listeners negotiate by ALPN
    let mut options = pingora::apps::HttpServerOptions::default();
    options.h2c = config.server.h2c;
    proxy.server_options = Some(options);
    // The TLS listeners accept TCP; the gateway runs the handshake (see tls_accept). The
    // certificate files are read into the resolver, which a reload refreshes.
    let tls = match resolver {
        Some(resolver) if !config.server.listen_tls.is_empty() => Some(TlsTermination::new(
            crate::listener::tls_accept::server_config(Arc::clone(resolver) as _)
                .map_err(StartupError::part("server"))?,
            config.server.listen_tls.clone(),
        )),
        _ => None,
    };
    let mut svc = pingora::services::listening::Service::new(
        "gatehouse".to_string(),
        crate::listener::header_deadline::HeaderDeadline::new(
            proxy,
            config.server.request_header_timeout,
            config.server.h2c,
            tls,
        ),
    );
    for addr in config
        .server
        .listen_plain
        .iter()
        .chain(resolver.iter().flat_map(|_| &config.server.listen_tls))
    {
        svc.add_listener(ListenerConfig::tcp(addr.to_string()).l4_buffer(client_buffers()));
    }
    Ok(svc)
}
