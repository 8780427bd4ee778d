//! Compiles `[[upstreams]]`: peers that resolve, TLS, health checks and timeouts.

use super::raw::{RawExchange, RawUpstream};
use super::*;
use std::net::ToSocketAddrs;

impl Compiler {
    /// `token_service`: whether the token service is on, which `exchange` needs.
    pub(super) fn upstreams(
        &mut self,
        raw: Vec<RawUpstream>,
        token_service: bool,
    ) -> Vec<Arc<Upstream>> {
        let mut upstreams: Vec<Arc<Upstream>> = Vec::new();
        for (i, ru) in raw.into_iter().enumerate() {
            let exchange = self.exchange(i, ru.exchange.as_ref(), token_service);
            if let Some(u) = self.upstream(i, ru) {
                let u = Upstream { exchange, ..u };
                if upstreams.iter().any(|x| x.name == u.name) {
                    self.err(
                        format!("upstreams[{i}].name"),
                        format!("duplicate upstream name {:?}", u.name),
                    );
                }
                upstreams.push(Arc::new(Upstream {
                    id: UpstreamId::at(upstreams.len()),
                    ..u
                }));
            }
        }
        upstreams
    }

    fn upstream(&mut self, i: usize, r: RawUpstream) -> Option<Upstream> {
        let k = |f: &str| format!("upstreams[{i}].{f}");
        if r.name.is_empty() {
            self.err(k("name"), "required");
        }
        let kind = match r.kind.as_str() {
            "whoami" => {
                if !r.peers.is_empty() {
                    self.err(k("peers"), "a whoami upstream has no peers");
                }
                UpstreamKind::Whoami
            }
            "http" => {
                if r.peers.is_empty() {
                    self.err(
                        k("peers"),
                        "name at least one peer, e.g. [\"10.0.0.5:8080\"]",
                    );
                }
                let mut peers = Vec::new();
                let mut peer_names = Vec::new();
                for (j, p) in r.peers.iter().enumerate() {
                    match p.to_socket_addrs().map(|mut a| a.next()) {
                        Ok(Some(a)) => {
                            peers.push(a);
                            peer_names.push(p.clone());
                        }
                        _ => self.err(
                            format!("upstreams[{i}].peers[{j}]"),
                            format!("{p:?} is not HOST:PORT that resolves"),
                        ),
                    }
                }
                let grpc_health = r.health_check.as_deref() == Some("grpc");
                if let Some(h) = r.health_check.as_ref().filter(|_| !grpc_health) {
                    if !h.starts_with('/') {
                        self.err(
                            k("health_check"),
                            "must be a path starting with /, or \"grpc\"",
                        );
                    }
                }
                let protocol = match r.protocol.as_str() {
                    "http1" => Protocol::Http1,
                    "h2" if r.tls => Protocol::H2,
                    "h2" => {
                        self.err(k("protocol"), "h2 negotiates over TLS: set tls = true, or use \"h2c\" for plain HTTP/2");
                        Protocol::H2
                    }
                    "h2c" if !r.tls => Protocol::H2c,
                    "h2c" => {
                        self.err(
                            k("protocol"),
                            "h2c is HTTP/2 without TLS: use \"h2\" with tls = true",
                        );
                        Protocol::H2c
                    }
                    "auto" => Protocol::Auto,
                    other => {
                        self.err(
                            k("protocol"),
                            format!("{other:?} is not one of \"http1\", \"h2\", \"h2c\", \"auto\""),
                        );
                        Protocol::Http1
                    }
                };
                if grpc_health && matches!(protocol, Protocol::Http1 | Protocol::Auto) {
                    self.err(
                        k("health_check"),
                        "gRPC health checks need protocol = \"h2\" or \"h2c\"",
                    );
                }
                let ca = r.ca.as_deref().map(|p| self.path(p));
                if let Some(ca) = &ca {
                    if let Err(e) = std::fs::read(ca) {
                        self.err(k("ca"), format!("cannot read {}: {e}", ca.display()));
                    } else if !r.tls {
                        self.err(k("ca"), "set tls = true to use a CA file");
                    }
                }
                let sni = r.sni.clone().unwrap_or_else(|| {
                    r.peers
                        .first()
                        .and_then(|p| p.rsplit_once(':').map(|(h, _)| h.to_string()))
                        .unwrap_or_default()
                        .trim_matches(|c| c == '[' || c == ']')
                        .to_string()
                });
                let health_interval = self.duration(&k("health_interval"), &r.health_interval);
                if health_interval < Duration::from_millis(100) {
                    self.err(k("health_interval"), "must be at least 100ms");
                }
                UpstreamKind::Http(HttpUpstream {
                    peers,
                    peer_names,
                    tls: r.tls,
                    sni,
                    ca,
                    health_check: r.health_check.clone().filter(|_| !grpc_health),
                    health_interval,
                    connect_timeout: self.duration(&k("connect_timeout"), &r.connect_timeout),
                    read_timeout: self.duration(&k("read_timeout"), &r.read_timeout),
                    retries: r.retries.unwrap_or(1),
                    protocol,
                    grpc_health,
                })
            }
            other => {
                self.err(
                    k("kind"),
                    format!("unknown kind {other:?} (known: http, whoami)"),
                );
                return None;
            }
        };
        Some(Upstream {
            // its place among the upstreams that compile, given by the caller
            id: UpstreamId::at(0),
            name: r.name,
            kind,
            exchange: None,
        })
    }

    /// `exchange = { audience, scope }`: the token service mints the upstream's tokens, so it
    /// must be on.
    fn exchange(
        &mut self,
        i: usize,
        raw: Option<&RawExchange>,
        token_service: bool,
    ) -> Option<UpstreamExchange> {
        let r = raw?;
        let k = format!("upstreams[{i}].exchange");
        if !token_service {
            self.err(
                &k,
                "needs [token_service]: it mints the token the upstream receives",
            );
        }
        if r.audience.trim().is_empty() {
            self.err(format!("{k}.audience"), "required: the upstream's audience");
        }
        let scopes: Option<Vec<String>> = r
            .scope
            .as_deref()
            .map(|s| s.split_whitespace().map(str::to_string).collect());
        if scopes.as_ref().is_some_and(Vec::is_empty) {
            self.err(
                format!("{k}.scope"),
                "name at least one scope, or leave it out",
            );
        }
        Some(UpstreamExchange {
            audience: r.audience.trim().to_string(),
            scopes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};

    fn upstream(body: &str) -> String {
        format!("{BASE}\n[[upstreams]]\n{body}\n")
    }

    #[test]
    fn peers_and_kinds_are_checked() {
        refused(
            &upstream("name = \"v\""),
            "upstreams[1].peers",
            "at least one peer",
        );
        refused(
            &upstream("name = \"v\"\npeers = [\"nowhere\"]"),
            "upstreams[1].peers[0]",
            "HOST:PORT",
        );
        refused(
            &upstream("name = \"v\"\nkind = \"whoami\"\npeers = [\"127.0.0.1:1\"]"),
            "upstreams[1].peers",
            "no peers",
        );
        refused(
            &upstream("name = \"v\"\nkind = \"ftp\""),
            "upstreams[1].kind",
            "unknown kind",
        );
        refused(
            &upstream("name = \"u\"\npeers = [\"127.0.0.1:1\"]"),
            "upstreams[1].name",
            "duplicate upstream",
        );
    }

    #[test]
    fn an_exchanging_upstream_needs_the_token_service_and_an_audience() {
        let p = "name = \"v\"\npeers = [\"127.0.0.1:1\"]\n";
        refused(
            &upstream(&format!("{p}exchange = {{ audience = \"orders\" }}")),
            "upstreams[1].exchange",
            "needs [token_service]",
        );
        let service = "\n[token_service]\nissuer = \"https://auth.test\"\n";
        let with = |e: &str| format!("{}{service}", upstream(&format!("{p}exchange = {e}")));
        refused(
            &with("{ scope = \"a\" }"),
            "upstreams[1].exchange.audience",
            "required",
        );
        refused(
            &with("{ audience = \"orders\", scope = \" \" }"),
            "upstreams[1].exchange.scope",
            "at least one scope",
        );
        let c = compile(&with(
            "{ audience = \"orders\", scope = \"orders.read orders.list\" }",
        ))
        .unwrap();
        let ex = c.upstreams[1].exchange.clone().unwrap();
        assert_eq!(ex.audience, "orders");
        assert_eq!(ex.scopes.unwrap(), ["orders.read", "orders.list"]);
        // the gateway's own issuer verifies tokens minted for the upstream
        let own = c.issuer_by_name("self").unwrap();
        assert!(own.audiences.contains(&"orders".to_string()));
    }

    #[test]
    fn health_checks_and_tls_settings_are_checked() {
        let p = "name = \"v\"\npeers = [\"127.0.0.1:1\"]\n";
        refused(
            &upstream(&format!("{p}health_check = \"healthz\"")),
            "upstreams[1].health_check",
            "starting with /",
        );
        refused(
            &upstream(&format!("{p}health_interval = \"10ms\"")),
            "upstreams[1].health_interval",
            "at least 100ms",
        );
        refused(
            &upstream(&format!("{p}ca = \"missing.pem\"")),
            "upstreams[1].ca",
            "cannot read",
        );
        refused(
            &upstream(&format!("{p}protocol = \"h2\"")),
            "upstreams[1].protocol",
            "set tls = true",
        );
        refused(
            &upstream(&format!("{p}protocol = \"h2c\"\ntls = true")),
            "upstreams[1].protocol",
            "without TLS",
        );
        refused(
            &upstream(&format!("{p}protocol = \"h3\"")),
            "upstreams[1].protocol",
            "not one of",
        );
        refused(
            &upstream(&format!("{p}health_check = \"grpc\"")),
            "upstreams[1].health_check",
            "need protocol",
        );
        let g = compile(&upstream(&format!(
            "{p}protocol = \"h2c\"\nhealth_check = \"grpc\""
        )))
        .unwrap();
        match &g.upstreams[1].kind {
            crate::config::UpstreamKind::Http(h) => {
                assert!(h.grpc_health);
                assert_eq!(h.protocol, crate::config::Protocol::H2c);
            }
            other => panic!("{other:?}"),
        }
        let c = compile(&upstream(&format!("{p}tls = true\nretries = 3"))).unwrap();
        match &c.upstreams[1].kind {
            crate::config::UpstreamKind::Http(h) => {
                assert!(h.tls && h.retries == 3);
                assert_eq!(h.sni, "127.0.0.1");
            }
            other => panic!("{other:?}"),
        }
    }
}
