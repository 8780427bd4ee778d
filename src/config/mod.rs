//! Loads gateway.toml and compiles it into a validated `Config`, naming the key of every problem.

mod admin;
mod audit;
mod clients;
mod compiled;
mod dpop;
mod forward_auth;
mod ids;
mod issuers;
mod login_way;
mod mcp;
mod model;
mod raw;
mod registration;
mod route_model;
mod routes;
mod rules;
mod server;
mod sessions;
mod telemetry;
mod upstreams;
mod warnings;

pub use admin::AdminSettings;
pub use audit::{AuditFile, AuditHttp, AuditSettings};
pub use compiled::Config;
pub use ids::{IssuerId, RouteId, UpstreamId};
pub use login_way::LoginWay;
pub use mcp::{McpSettings, ProtectedResource, ToolKind, ToolRule, METADATA_PREFIX};
pub use model::*;
pub use registration::{OpenClients, Registration};
pub use route_model::*;
pub use sessions::{after_logout_ok, LoginProvider, SecretText, SessionSettings};
pub use telemetry::TelemetrySettings;

use raw::RawConfig;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One problem in the configuration, tied to the key that caused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found while loading a configuration.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub file: PathBuf,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has {} problem{}:",
            self.file.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and compiles a file; relative paths inside resolve against the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.to_path_buf(),
            problems: vec![Problem {
                key: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }],
        })?;
        Self::from_toml(&text, path)
    }

    /// Compiles TOML text as if it had been read from `path`.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let fail = |problems| ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        let mut unknown = Vec::new();
        let de = toml::Deserializer::parse(text).map_err(|e| {
            fail(vec![Problem {
                key: String::new(),
                message: e.to_string().trim().to_string(),
            }])
        })?;
        let raw: RawConfig = serde_ignored::deserialize(de, |p| unknown.push(key_of(&p))).map_err(
            |e: toml::de::Error| {
                fail(vec![Problem {
                    key: String::new(),
                    message: e.to_string().trim().replace('\n', " "),
                }])
            },
        )?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut c = Compiler {
            problems: unknown
                .into_iter()
                .map(|key| Problem {
                    key,
                    message: "unknown key".into(),
                })
                .collect(),
            base,
            rule_env: None,
        };
        let config = c.compile(raw, path, text);
        if c.problems.is_empty() {
            Ok(config)
        } else {
            Err(fail(c.problems))
        }
    }

    pub fn issuer_by_name(&self, name: &str) -> Option<&Arc<Issuer>> {
        self.issuers.iter().find(|i| i.name == name)
    }
}

fn key_of(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path as P;
    match path {
        P::Root => String::new(),
        P::Seq { parent, index } => format!("{}[{index}]", key_of(parent)),
        P::Map { parent, key } => {
            let p = key_of(parent);
            if p.is_empty() {
                key.to_string()
            } else {
                format!("{p}.{key}")
            }
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            key_of(parent)
        }
    }
}

struct Compiler {
    problems: Vec<Problem>,
    base: PathBuf,
    /// the CEL environment of this configuration's route rules, made for the first rule
    rule_env: Option<Arc<cel::Env>>,
}

impl Compiler {
    fn err(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, key: &str, value: &str) -> Duration {
        match humantime::parse_duration(value) {
            Ok(d) => d,
            Err(e) => {
                self.err(
                    key,
                    format!("invalid duration {value:?} ({e}); use e.g. \"30s\", \"15m\", \"7d\""),
                );
                Duration::ZERO
            }
        }
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn addr(&mut self, key: &str, value: &str) -> Option<SocketAddr> {
        match value.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(_) => {
                self.err(
                    key,
                    format!("{value:?} is not an address; write IP:PORT, e.g. \"0.0.0.0:8443\""),
                );
                None
            }
        }
    }

    fn compile(&mut self, raw: RawConfig, file: &Path, text: &str) -> Config {
        let server = self.server(raw.server);
        let tls = self.tls(raw.tls, &server);
        let validation = self.validation(raw.validation);
        let mut issuers = self.issuers(raw.issuers);
        let token_service = raw.token_service.filter(|t| t.enabled);
        let dpop = self.dpop(token_service.as_ref());
        let token_service = token_service.map(|t| self.token_service(t, &server.public_url));
        let clients = self.clients(raw.clients, token_service.as_ref());
        self.check_exchange_issuers(&clients, &issuers);
        if let Some(ts) = &token_service {
            let own = IssuerId::at(issuers.len());
            issuers.push(Arc::new(issuers::own_issuer(own, ts, &clients, &[])));
        }
        // a route may sign in local users while every one of them is disabled for now
        let declared_users = raw.users.len();
        let users = self.users(raw.users, token_service.is_some());
        let store = self.store(raw.store);
        let rate_limit = self.rate_limit(raw.rate_limit);
        let upstreams = self.upstreams(raw.upstreams, token_service.is_some());
        let cx = mcp::ResourceContext {
            public_url: &server.public_url,
            own_issuer: token_service.as_ref().map(|t| t.issuer.as_str()),
        };
        let mut routes = self.routes(raw.routes, &upstreams, &issuers, &cx);
        if let Some(ts) = &token_service {
            let exchanged = exchange_audiences(&upstreams);
            issuers::give_own_issuer_resources(&mut issuers, &mut routes, ts, &clients, &exchanged);
        }
        mcp::bind_resources(&mut issuers, &mut routes);
        let mut token_service = token_service;
        if let Some(ts) = token_service.as_mut() {
            registration::default_scopes(&mut ts.open_clients, &ts.issuer, &routes);
        }
        let forward_auth =
            self.forward_auth(raw.forward_auth, &server, &routes, token_service.is_some());
        let sessions = self.sessions(raw.sessions);
        let telemetry = raw.telemetry.and_then(|t| self.telemetry(t));
        let audit = raw.audit.and_then(|a| self.audit(a, &server.public_url));
        if audit.as_ref().is_some_and(|a| a.otlp) && telemetry.is_none() {
            self.err(
                "audit.otlp",
                "needs [telemetry] otlp_endpoint: the events go to its /v1/logs",
            );
        }
        let admin = self.admin(raw.admin, &server, users.len());
        let login_providers = self.login_providers(raw.login_providers);
        self.check_logins(
            &routes,
            &login_providers,
            declared_users,
            token_service.is_some(),
        );
        if token_service.is_none() {
            for r in routes.iter().filter(|r| r.identity_jwt) {
                self.err(
                    format!("routes[{}].identity_jwt", r.id),
                    "needs [token_service]: its signing key signs the identity JWT",
                );
            }
        }
        Config {
            file: file.to_path_buf(),
            file_hash: crate::crypto::sha256_hex(text).chars().take(16).collect(),
            text: Arc::from(text),
            admin,
            server,
            tls,
            validation,
            issuers,
            upstreams,
            routes,
            token_service,
            clients,
            users,
            store,
            rate_limit,
            sessions,
            login_providers,
            forward_auth,
            dpop,
            audit,
            telemetry,
        }
    }
}

/// The audiences upstreams' exchanged tokens are minted for, once each.
fn exchange_audiences(upstreams: &[Arc<Upstream>]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in upstreams.iter().filter_map(|u| u.exchange.as_ref()) {
        if !out.contains(&a.audience) {
            out.push(a.audience.clone());
        }
    }
    out
}

/// Helpers for the compilers' unit tests: a minimal valid configuration and its problems.
#[cfg(test)]
pub(crate) mod testing {
    use super::Config;
    use std::path::Path;

    /// The token service with a memory store, for compilers that need it.
    pub const TOKENS: &str = r#"
[token_service]
issuer = "https://auth.test"
audience = ["api"]
signing_keys = ["/nonexistent/signing.pem"]

[store]
backend = "memory"
"#;

    /// A configuration that compiles: one plain listener, one upstream, one public route.
    pub const BASE: &str = r#"
[server]
listen_tls = []
listen_plain = ["127.0.0.1:18080"]
admin_listen = ""

[[upstreams]]
name = "u"
peers = ["127.0.0.1:9"]

[[routes]]
upstream = "u"
auth = "public"
"#;

    pub fn compile(text: &str) -> Result<Config, Vec<String>> {
        Config::from_toml(text, Path::new("/nonexistent/gateway.toml"))
            .map_err(|e| e.problems.iter().map(|p| p.to_string()).collect())
    }

    /// Asserts that `text` fails with a problem that starts with `key: ` and contains `message`.
    #[track_caller]
    pub fn refused(text: &str, key: &str, message: &str) {
        match compile(text) {
            Ok(_) => panic!("compiled, expected {key}: {message}"),
            Err(problems) => assert!(
                problems
                    .iter()
                    .any(|p| p.starts_with(&format!("{key}: ")) && p.contains(message)),
                "no `{key}: …{message}…` among {problems:?}"
            ),
        }
    }
}
