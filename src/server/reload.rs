//! Live reload: the configuration file read and compiled again; a valid one replaces the serving
//! generation atomically, a broken one changes nothing. Requests in flight finish on the generation
//! they started with. Reading, compiling (which resolves upstream hostnames) and building run on
//! the blocking pool, never on the async workers serving requests.

use crate::config::Config;
use crate::listener::cert_resolver::CertResolver;
use crate::proxy::Shared;
use crate::server::generation::{generation, Lasting};
use crate::upstream::tasks::Tasks;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

pub struct Reloader {
    shared: Arc<ArcSwap<Shared>>,
    /// shared with the blocking thread that builds the next generation
    lasting: Arc<Lasting>,
    /// stops the serving generation's background work
    running: Mutex<Option<watch::Sender<bool>>>,
    /// one reload at a time
    busy: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    failures: AtomicU64,
    /// the listeners' certificate, read again on every reload
    certificate: Option<Arc<CertResolver>>,
}

/// Who asked for a reload, as the audit stream names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadBy {
    /// SIGHUP
    Signal,
    /// `POST /reload` on the admin listener (`gatehouse reload`)
    Admin,
    /// `[server] watch_config` saw the file change
    FileWatch,
    /// an operator on the console's configuration page
    Console,
}

impl ReloadBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ReloadBy::Signal => "signal",
            ReloadBy::Admin => "admin",
            ReloadBy::FileWatch => "file_watch",
            ReloadBy::Console => "console",
        }
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// the new generation serves; the settings named here need a restart to take effect
    Applied {
        generation: u64,
        needs_restart: Vec<&'static str>,
    },
    /// nothing changed; one line per problem
    Refused(Vec<String>),
}

/// Settings a running gateway cannot change: they are reported, the rest still applies.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let mut out = Vec::new();
    if o.listen_tls != n.listen_tls || o.listen_plain != n.listen_plain {
        out.push("server.listen_tls / server.listen_plain");
    }
    if o.admin_listen != n.admin_listen {
        out.push("server.admin_listen");
    }
    if o.threads != n.threads {
        out.push("server.threads");
    }
    if o.work_stealing != n.work_stealing {
        out.push("server.work_stealing");
    }
    if o.h2c != n.h2c {
        out.push("server.h2c");
    }
    if o.request_header_timeout != n.request_header_timeout {
        out.push("server.request_header_timeout");
    }
    if o.watch_config != n.watch_config {
        out.push("server.watch_config");
    }
    if o.upgrade_sock != n.upgrade_sock || o.shutdown_grace != n.shutdown_grace {
        out.push("server.upgrade_sock / server.shutdown_grace");
    }
    if old.store != new.store {
        out.push("store");
    }
    if old.token_service.is_some() != new.token_service.is_some() {
        out.push("token_service.enabled");
    }
    if old.audit != new.audit {
        out.push("audit");
    }
    if old.telemetry != new.telemetry {
        out.push("telemetry");
    }
    let (oa, na) = (&old.admin, &new.admin);
    if oa.console != na.console
        || oa.session_ttl != na.session_ttl
        || oa.idle_timeout != na.idle_timeout
    {
        out.push("admin.console / admin.console_session_ttl / admin.console_idle_timeout");
    }
    out
}

/// The subjects of users the old configuration had and the new one has not (removed, or disabled).
fn removed_subjects(old: &Config, new: &Config) -> Vec<String> {
    old.users
        .iter()
        .filter(|u| !new.users.iter().any(|n| n.subject == u.subject))
        .map(|u| u.subject.clone())
        .collect()
}

/// Ends what removed users were granted: their browser sessions and refresh-token families, on
/// every gateway sharing the store. Each request checks the user too, so a store that cannot be
/// reached now only delays the clean-up.
async fn end_removed_users(old: &Config, now: &Shared) {
    let Some(tokens) = &now.tokens else { return };
    for subject in removed_subjects(old, &now.config) {
        let sessions = tokens
            .sessions
            .end_all(crate::store::SessionsOf::Subject(&subject), "user_removed")
            .await;
        let families = tokens.revoke_subject(&subject).await;
        // a user who held no refresh family has nothing to say here
        if let Ok(n @ 1..) = families {
            now.audit
                .emit(|| crate::audit::Event::subject_tokens_revoked("user_removed", &subject, n));
        }
        match (sessions, families) {
            (Ok(s), Ok(f)) => {
                tracing::info!(target: "gatehouse::sessions", sessions = s, families = f,
                "a removed user's sessions and refresh tokens ended")
            }
            _ => tracing::warn!(target: "gatehouse::sessions",
                "a removed user's sessions or refresh tokens could not be ended now; each is refused when used"),
        }
    }
}

/// What a valid configuration builds, before anything changes.
struct Prepared {
    restart: Vec<&'static str>,
    certificate: Option<Arc<rustls::sign::CertifiedKey>>,
    next: Shared,
    tasks: Tasks,
}

/// Reads and compiles the file `current` came from, loads the certificate when the listeners
/// have one, and builds the next generation: file reads and DNS lookups, so it runs on a blocking
/// thread. One line per problem when the configuration cannot serve.
fn prepare(
    current: &Shared,
    lasting: &Lasting,
    with_certificate: bool,
) -> Result<Prepared, Vec<String>> {
    let config = Config::load(&current.config.file)
        .map(Arc::new)
        .map_err(|e| e.problems.iter().map(|p| p.to_string()).collect::<Vec<_>>())?;
    let restart = needs_restart(&current.config, &config);
    // The certificate files (perhaps renewed, perhaps at new paths) must load before anything
    // changes.
    let certificate = if with_certificate {
        let c = crate::listener::cert_resolver::load(&config.tls.cert, &config.tls.key);
        Some(c.map_err(|e| vec![e.to_string()])?)
    } else {
        None
    };
    let (next, tasks) =
        generation(config, lasting, Some(current)).map_err(|e| vec![e.to_string()])?;
    Ok(Prepared {
        restart,
        certificate,
        next,
        tasks,
    })
}

/// Watches the configuration file (`[server] watch_config`): a change of its content reloads.
/// Polling every second needs no file-system notification support and sees replaced files too.
pub struct Watch(pub Arc<Reloader>);

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Watch {
    async fn start(&self, mut shutdown: pingora::server::ShutdownWatch) {
        let path = self.0.shared.load().config.file.clone();
        // a file read may block (a slow or network file system): not on an async worker
        let read = |p: &std::path::PathBuf| {
            let p = p.clone();
            async move {
                tokio::task::spawn_blocking(move || std::fs::read(p).ok())
                    .await
                    .ok()
                    .flatten()
            }
        };
        let mut seen = read(&path).await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            let now = read(&path).await;
            if now.is_some() && now != seen {
                seen = now;
                tracing::info!(file = %path.display(), "the configuration file changed; reloading");
                self.0.reload(ReloadBy::FileWatch).await;
            }
        }
    }
}

impl Reloader {
    pub fn new(
        shared: Arc<ArcSwap<Shared>>,
        lasting: Lasting,
        certificate: Option<Arc<CertResolver>>,
    ) -> Reloader {
        Reloader {
            shared,
            lasting: Arc::new(lasting),
            running: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(1),
            failures: AtomicU64::new(0),
            certificate,
        }
    }

    /// Records the stop switch of the serving generation's background work.
    pub fn started(&self, stop: watch::Sender<bool>) {
        if let Ok(mut r) = self.running.lock() {
            if let Some(old) = r.replace(stop) {
                let _ = old.send(true);
            }
        }
    }

    /// Stops the serving generation's background work (at shutdown).
    pub fn stop_tasks(&self) {
        if let Ok(mut r) = self.running.lock() {
            if let Some(old) = r.take() {
                let _ = old.send(true);
            }
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::SeqCst)
    }

    /// Reads the file the serving configuration came from, and applies it when it is valid. The
    /// audit file is opened again first, whatever the outcome: a reload is how a rotated-away
    /// file is let go (SIGHUP, as for other daemons' logs).
    pub async fn reload(&self, by: ReloadBy) -> Outcome {
        let _one = self.busy.lock().await;
        self.lasting.audit.reopen();
        let current = self.shared.load_full();
        let refuse = |problems: Vec<String>| {
            self.failures.fetch_add(1, Ordering::SeqCst);
            for p in &problems {
                tracing::error!(problem = %p, "the configuration was not reloaded");
            }
            self.lasting.audit.emit(|| {
                let running = &current.config.file_hash;
                crate::audit::Event::config_reload_refused(by.as_str(), running, problems.len())
            });
            Outcome::Refused(problems)
        };
        let (from, lasting) = (current.clone(), self.lasting.clone());
        let with_certificate = self.certificate.is_some();
        let prepared =
            tokio::task::spawn_blocking(move || prepare(&from, &lasting, with_certificate)).await;
        let Prepared {
            restart,
            certificate,
            next,
            tasks,
        } = match prepared {
            Ok(Ok(p)) => p,
            Ok(Err(problems)) => return refuse(problems),
            Err(e) => return refuse(vec![format!("the reload stopped: {e}")]),
        };
        // The new generation's work starts before it serves; the old one's stops after.
        let stop = tasks.start();
        self.shared.store(Arc::new(next));
        if let (Some(resolver), Some(c)) = (&self.certificate, certificate) {
            resolver.replace(c);
        }
        self.started(stop);
        end_removed_users(&current.config, &self.shared.load_full()).await;
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        for r in &restart {
            tracing::warn!(setting = %r, "changed, but takes effect only after a restart");
        }
        tracing::info!(generation, "configuration reloaded");
        let new_hash = &self.shared.load().config.file_hash;
        self.lasting.audit.emit(|| {
            crate::audit::Event::config_reloaded(
                by.as_str(),
                &current.config.file_hash,
                new_hash,
                generation,
            )
        });
        Outcome::Applied {
            generation,
            needs_restart: restart,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{compile, BASE, TOKENS};

    fn user(name: &str, subject: &str, more: &str) -> String {
        // bcrypt of "x", cost 4: compiles, never checked here
        format!(
            "[[users]]\nusername = \"{name}\"\nsubject = \"{subject}\"\n\
             password_hash = \"$2b$04$O2BS3M8z8bsIiSYgXwoHP.XrixdAp8c3tq8hBrBs0yfOQM5wqbQ8G\"\n{more}\n"
        )
    }

    #[test]
    fn users_removed_or_disabled_are_named_by_subject() {
        let old = compile(&format!(
            "{BASE}{TOKENS}{}{}",
            user("a", "sa", ""),
            user("b", "sb", "")
        ))
        .unwrap();
        let gone = compile(&format!("{BASE}{TOKENS}{}", user("b", "sb", ""))).unwrap();
        assert_eq!(removed_subjects(&old, &gone), ["sa"]);
        let disabled = compile(&format!(
            "{BASE}{TOKENS}{}{}",
            user("a", "sa", "disabled = true"),
            user("b", "sb", "")
        ))
        .unwrap();
        assert_eq!(removed_subjects(&old, &disabled), ["sa"]);
        assert!(removed_subjects(&old, &old).is_empty());
    }

    #[test]
    fn settings_a_running_gateway_cannot_change_are_named() {
        let old = compile(BASE).unwrap();
        assert!(needs_restart(&old, &old).is_empty());
        let other = compile(&BASE.replace("127.0.0.1:18080", "127.0.0.1:18081")).unwrap();
        assert_eq!(
            needs_restart(&old, &other),
            ["server.listen_tls / server.listen_plain"]
        );
        let threads =
            compile(&BASE.replace("admin_listen = \"\"", "admin_listen = \"\"\nthreads = 7"))
                .unwrap();
        assert_eq!(needs_restart(&old, &threads), ["server.threads"]);
        assert!(
            !old.server.work_stealing,
            "a runtime per thread unless asked"
        );
        let stealing = compile(&BASE.replace(
            "admin_listen = \"\"",
            "admin_listen = \"\"\nwork_stealing = true",
        ))
        .unwrap();
        assert!(stealing.server.work_stealing);
        assert_eq!(needs_restart(&old, &stealing), ["server.work_stealing"]);
        // the audit sinks are threads and files made at start
        let audited = compile(&format!("{BASE}\n[audit]\nstdout = true\n")).unwrap();
        assert_eq!(needs_restart(&old, &audited), ["audit"]);
        // so is the OTLP exporter
        let traced = compile(&format!(
            "{BASE}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n"
        ))
        .unwrap();
        assert_eq!(needs_restart(&old, &traced), ["telemetry"]);
    }
}
