//! Compiles `[server]`, `[tls]`, `[validation]`, `[store]` and `[rate_limit]`.

use super::raw::{RawRateLimit, RawServer, RawStore, RawTls, RawValidation};
use super::*;
use std::collections::BTreeSet;

impl Compiler {
    pub(super) fn server(&mut self, s: RawServer) -> ServerSettings {
        let listen_tls: Vec<_> = s
            .listen_tls
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.addr(&format!("server.listen_tls[{i}]"), a))
            .collect();
        let listen_plain: Vec<_> = s
            .listen_plain
            .iter()
            .enumerate()
            .filter_map(|(i, a)| self.addr(&format!("server.listen_plain[{i}]"), a))
            .collect();
        let admin_listen = match &s.admin_listen {
            Some(a) if !a.is_empty() => self.addr("server.admin_listen", a),
            _ => None,
        };
        if s.listen_tls.is_empty() && s.listen_plain.is_empty() {
            self.err(
                "server.listen_tls",
                "no listener: set listen_tls or listen_plain",
            );
        }
        let mut seen = BTreeSet::new();
        for a in listen_tls
            .iter()
            .chain(listen_plain.iter())
            .chain(admin_listen.iter())
        {
            if !seen.insert(*a) {
                self.err("server", format!("address {a} is used by two listeners"));
            }
        }
        for (i, h) in s.admin_hosts.iter().enumerate() {
            if h.contains(':') || !crate::wire::path::host_is_valid(h) {
                self.err(
                    format!("server.admin_hosts[{i}]"),
                    format!("{h:?} is not a host name (no port)"),
                );
            }
        }
        if s.threads == 0 {
            self.err("server.threads", "must be at least 1");
        }
        let public_url = s.public_url.clone().unwrap_or_else(|| {
            let port = listen_tls.first().map(|a| a.port()).unwrap_or(8443);
            format!("https://localhost:{port}")
        });
        if !(public_url.starts_with("https://") || public_url.starts_with("http://")) {
            self.err(
                "server.public_url",
                format!("{public_url:?} must start with https:// or http://"),
            );
        }
        let request_header_timeout =
            self.duration("server.request_header_timeout", &s.request_header_timeout);
        if request_header_timeout < Duration::from_secs(1) {
            self.err("server.request_header_timeout", "must be at least 1s");
        }
        let shutdown_grace = self.duration("server.shutdown_grace", &s.shutdown_grace);
        let server = ServerSettings {
            request_header_timeout,
            watch_config: s.watch_config,
            h2c: s.h2c,
            upgrade_sock: s.upgrade_sock.clone(),
            shutdown_grace,
            listen_tls,
            listen_plain,
            admin_listen,
            admin_hosts: s
                .admin_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            public_url: public_url.trim_end_matches('/').to_string(),
            threads: s.threads.max(1),
            work_stealing: s.work_stealing,
            strip_override_headers: s.strip_override_headers,
            trusted_proxies: s
                .trusted_proxies
                .iter()
                .enumerate()
                .filter_map(|(i, t)| match crate::wire::forwarded::Cidr::parse(t) {
                    Ok(c) => Some(c),
                    Err(m) => {
                        self.err(format!("server.trusted_proxies[{i}]"), m);
                        None
                    }
                })
                .collect(),
        };
        server
    }

    pub(super) fn tls(&mut self, t: RawTls, server: &ServerSettings) -> TlsSettings {
        let tls = TlsSettings {
            cert: self.path(&t.cert),
            key: self.path(&t.key),
            self_signed_if_missing: t.self_signed_if_missing,
        };
        if !server.listen_tls.is_empty() {
            self.check_tls_files(&tls);
        }
        tls
    }

    pub(super) fn validation(&mut self, v: RawValidation) -> ValidationSettings {
        let leeway = self.duration("validation.leeway", &v.leeway);
        if v.max_token_bytes < 64 {
            self.err("validation.max_token_bytes", "must be at least 64");
        }
        let validation = ValidationSettings {
            leeway: leeway.as_secs(),
            max_token_bytes: v.max_token_bytes,
            verified_cache_capacity: v.verified_cache_capacity,
            verified_cache_max_bytes: v.verified_cache_max_bytes,
        };
        if validation.verified_cache_max_bytes < 1024 * 1024 {
            self.err(
                "validation.verified_cache_max_bytes",
                "must be at least 1048576 (1 MiB)",
            );
        }
        validation
    }

    pub(super) fn store(&mut self, st: RawStore) -> StoreBackend {
        match st.backend.as_str() {
            "sqlite" => StoreBackend::Sqlite(self.path(&st.path)),
            "memory" => StoreBackend::Memory,
            "redis" => match st.url.as_deref() {
                Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
                    StoreBackend::Redis(u.to_string())
                }
                _ => {
                    self.err(
                        "store.url",
                        "the redis backend needs url = \"redis://host:6379/0\" (or rediss:// for TLS)",
                    );
                    StoreBackend::Memory
                }
            },
            other => {
                self.err(
                    "store.backend",
                    format!("unknown backend {other:?} (known: sqlite, redis, memory)"),
                );
                StoreBackend::Memory
            }
        }
    }

    pub(super) fn rate_limit(&mut self, r: RawRateLimit) -> RateLimits {
        let mut rate = |key: &str, v: &str| match Rate::parse(v) {
            Ok(r) => r,
            Err(m) => {
                self.err(key, m);
                Rate {
                    count: 1,
                    window: Duration::from_secs(1),
                }
            }
        };
        RateLimits {
            token_endpoint: rate("rate_limit.token_endpoint", &r.token_endpoint),
            failed_auth_lockout: rate("rate_limit.failed_auth_lockout", &r.failed_auth_lockout),
        }
    }

    fn check_tls_files(&mut self, tls: &TlsSettings) {
        let cert_ok = tls.cert.exists();
        let key_ok = tls.key.exists();
        if !cert_ok || !key_ok {
            if !tls.self_signed_if_missing {
                if !cert_ok {
                    self.err(
                        "tls.cert",
                        format!(
                            "{} does not exist (set tls.self_signed_if_missing = true to create a development certificate)",
                            tls.cert.display()
                        ),
                    );
                }
                if !key_ok {
                    self.err("tls.key", format!("{} does not exist", tls.key.display()));
                }
            }
            return;
        }
        match crate::crypto::files::check_pair(&tls.cert, &tls.key) {
            // the problem is told under the key `tls` already
            Err(crate::startup_error::StartupError::Tls { problem, .. }) => {
                self.err("tls", problem)
            }
            Err(e) => self.err("tls", e.to_string()),
            Ok(()) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};

    fn with_server(extra: &str) -> String {
        BASE.replace(
            "admin_listen = \"\"",
            &format!("admin_listen = \"\"\n{extra}"),
        )
    }

    #[test]
    fn the_base_configuration_compiles() {
        let c = compile(BASE).unwrap();
        assert_eq!(c.server.listen_plain.len(), 1);
        assert_eq!(c.server.request_header_timeout.as_secs(), 10);
        assert_eq!(c.validation.max_token_bytes, 8192);
        assert_eq!(c.routes.len(), 1);
    }

    #[test]
    fn listeners_must_exist_parse_and_differ() {
        let none = BASE.replace("listen_plain = [\"127.0.0.1:18080\"]", "listen_plain = []");
        refused(&none, "server.listen_tls", "no listener");
        let bad = BASE.replace("127.0.0.1:18080", "localhost");
        refused(&bad, "server.listen_plain[0]", "is not an address");
        let twice = BASE.replace("admin_listen = \"\"", "admin_listen = \"127.0.0.1:18080\"");
        refused(&twice, "server", "used by two listeners");
    }

    #[test]
    fn server_values_are_checked() {
        refused(&with_server("threads = 0"), "server.threads", "at least 1");
        refused(
            &with_server("public_url = \"ftp://x\""),
            "server.public_url",
            "must start with https://",
        );
        refused(
            &with_server("trusted_proxies = [\"10.0.0.0/40\"]"),
            "server.trusted_proxies[0]",
            "prefix length",
        );
        refused(
            &with_server("request_header_timeout = \"100ms\""),
            "server.request_header_timeout",
            "at least 1s",
        );
        refused(
            &with_server("colour = \"red\""),
            "server.colour",
            "unknown key",
        );
    }

    #[test]
    fn validation_store_and_rate_limits_are_checked() {
        let v = |k: &str| format!("{BASE}\n[validation]\n{k}\n");
        refused(
            &v("max_token_bytes = 10"),
            "validation.max_token_bytes",
            "at least 64",
        );
        refused(
            &v("verified_cache_max_bytes = 1000"),
            "validation.verified_cache_max_bytes",
            "at least 1048576",
        );
        refused(
            &v("leeway = \"soon\""),
            "validation.leeway",
            "invalid duration",
        );
        refused(
            &format!("{BASE}\n[store]\nbackend = \"etcd\"\n"),
            "store.backend",
            "unknown backend",
        );
        refused(
            &format!("{BASE}\n[rate_limit]\ntoken_endpoint = \"0/s\"\n"),
            "rate_limit.token_endpoint",
            "positive",
        );
    }

    #[test]
    fn tls_files_are_required_unless_generated() {
        let tls = BASE.replace("listen_tls = []", "listen_tls = [\"127.0.0.1:18443\"]");
        refused(&tls, "tls.cert", "does not exist");
    }
}
