//! Upstream pools: round robin over healthy peers with health checks (HTTP, TCP or gRPC), the
//! protocol each peer speaks, and the built-in whoami upstream.

pub mod checks;
pub mod grpc_health;

pub mod tasks;
use crate::config::{HttpUpstream, Protocol, UpstreamKind};
use crate::upstream::tasks::Tasks;
use pingora::lb::health_check::{HttpHealthCheck, TcpHealthCheck};
use pingora::lb::selection::RoundRobin;
use pingora::lb::{Backend, LoadBalancer};
use pingora::prelude::{HttpPeer, RequestHeader};
use pingora::protocols::tls::CaType;
use pingora::utils::tls::{parse_x509, WrappedX509};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// One `[[upstreams]]` entry of kind http, ready to pick peers.
pub struct Pool {
    pub name: String,
    /// each peer's latest health check, for the console
    pub checks: Arc<checks::CheckLog>,
    /// requests in flight and connections, for the console
    pub traffic: checks::Traffic,
    pub lb: Arc<LoadBalancer<RoundRobin>>,
    /// the peers in a fixed order, with their addresses, for lock-free round robin
    backends: Vec<(Backend, SocketAddr)>,
    next: AtomicUsize,
    pub cfg: HttpUpstream,
    ca: Option<Arc<CaType>>,
}

/// The runtime form of each configured upstream, kept in the order of their `UpstreamId`s.
pub enum UpstreamRuntime {
    Pool(Box<Pool>),
    Whoami,
}

fn load_ca(path: &std::path::Path) -> Result<Arc<CaType>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in rustls_pemfile_certs(&text) {
        certs.push(WrappedX509::new(item, parse_x509));
    }
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(Arc::from(certs.into_boxed_slice()))
}

/// Every CERTIFICATE block of a PEM file, as DER.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<Vec<u8>> {
    use base64::Engine;
    let text = String::from_utf8_lossy(pem);
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            cur = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(b64) = cur.take() {
                if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
                    out.push(der);
                }
            }
        } else if let Some(c) = cur.as_mut() {
            c.push_str(line);
        }
    }
    out
}

impl Pool {
    /// Builds the pool; its health checks join the generation's tasks.
    pub fn build(name: &str, cfg: &HttpUpstream, tasks: &mut Tasks) -> Result<Pool, String> {
        let mut lb = LoadBalancer::<RoundRobin>::try_from_iter(cfg.peers.iter().copied())
            .map_err(|e| format!("upstream {name}: {e}"))?;
        let ca = cfg.ca.as_deref().map(load_ca).transpose()?;
        let host = if cfg.sni.is_empty() {
            "localhost"
        } else {
            cfg.sni.as_str()
        };
        let check: Box<dyn pingora::lb::health_check::HealthCheck + Send + Sync> =
            match &cfg.health_check {
                _ if cfg.grpc_health => {
                    let mut peer = HttpPeer::new("0.0.0.0:1", cfg.tls, cfg.sni.clone());
                    set_protocol(&mut peer, cfg.protocol);
                    peer.options.ca = ca.clone();
                    peer.options.connection_timeout = Some(cfg.connect_timeout);
                    peer.options.read_timeout =
                        Some(cfg.connect_timeout.max(std::time::Duration::from_secs(1)));
                    Box::new(crate::upstream::grpc_health::GrpcHealthCheck::new(
                        peer, host,
                    ))
                }
                Some(path) => {
                    let mut hc = HttpHealthCheck::new(host, cfg.tls);
                    set_protocol(&mut hc.peer_template, cfg.protocol);
                    hc.req = RequestHeader::build("GET", path.as_bytes(), None)
                        .map_err(|e| e.to_string())?;
                    hc.req
                        .insert_header("host", host)
                        .map_err(|e| e.to_string())?;
                    hc.req
                        .insert_header("user-agent", "gatehouse-health-check")
                        .map_err(|e| e.to_string())?;
                    hc.peer_template.options.ca = ca.clone();
                    hc.peer_template.options.connection_timeout = Some(cfg.connect_timeout);
                    hc.peer_template.options.read_timeout =
                        Some(cfg.connect_timeout.max(std::time::Duration::from_secs(1)));
                    Box::new(hc)
                }
                None => {
                    let mut hc = if cfg.tls {
                        TcpHealthCheck::new_tls(&cfg.sni)
                    } else {
                        TcpHealthCheck::new()
                    };
                    hc.peer_template.options.connection_timeout = Some(cfg.connect_timeout);
                    hc.peer_template.options.ca = ca.clone();
                    hc
                }
            };
        let checks = Arc::new(checks::CheckLog::default());
        lb.set_health_check(Box::new(checks::Logged {
            inner: check,
            log: checks.clone(),
        }));
        lb.health_check_frequency = Some(cfg.health_interval);
        lb.parallel_health_check = true;
        let lb = tasks.add(lb);
        let backends = lb
            .backends()
            .get_backend()
            .iter()
            .filter_map(|b| b.addr.as_inet().map(|a| (b.clone(), *a)))
            .collect();
        Ok(Pool {
            name: name.to_string(),
            checks,
            traffic: Default::default(),
            lb,
            backends,
            next: AtomicUsize::new(0),
            cfg: cfg.clone(),
            ca,
        })
    }

    /// Picks the next healthy peer not tried yet for this request, round robin. When no peer is
    /// healthy at all, any untried peer is used ("panic routing", as Envoy does): a wrong health
    /// check must not take a whole service down, and a truly dead upstream still answers 502.
    pub fn select(&self, tried: &[SocketAddr]) -> Option<SocketAddr> {
        let n = self.backends.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let health = self.lb.backends();
        let ring = (0..n).filter_map(|i| self.backends.get((start + i) % n));
        let mut fallback = None;
        let mut any_healthy = false;
        for (b, addr) in ring {
            let healthy = health.ready(b);
            any_healthy |= healthy;
            if tried.contains(addr) {
                continue;
            }
            if healthy {
                return Some(*addr);
            }
            fallback.get_or_insert(*addr);
        }
        if any_healthy {
            None
        } else {
            fallback
        }
    }

    /// The peer for one request; `read_timeout` is a gRPC deadline or the route's stream idle
    /// timeout when there is one, else the upstream's.
    pub fn peer(&self, addr: SocketAddr, read_timeout: Option<std::time::Duration>) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, self.cfg.tls, self.cfg.sni.clone());
        set_protocol(&mut peer, self.cfg.protocol);
        peer.options.connection_timeout = Some(self.cfg.connect_timeout);
        let read = read_timeout.unwrap_or(self.cfg.read_timeout);
        peer.options.read_timeout = Some(read);
        peer.options.write_timeout = Some(read);
        peer.options.ca = self.ca.clone();
        peer
    }
}

/// How many requests share one HTTP/2 connection to an upstream.
const H2_STREAMS: usize = 100;

/// The HTTP versions a peer may speak: ALPN over TLS, prior knowledge for h2c.
fn set_protocol(peer: &mut HttpPeer, protocol: Protocol) {
    match protocol {
        Protocol::Http1 => peer.options.set_http_version(1, 1),
        Protocol::H2 | Protocol::H2c => peer.options.set_http_version(2, 2),
        Protocol::Auto if peer.is_tls() => peer.options.set_http_version(2, 1),
        Protocol::Auto => peer.options.set_http_version(1, 1),
    }
    if protocol != Protocol::Http1 {
        peer.options.max_h2_streams = H2_STREAMS;
    }
}

impl UpstreamRuntime {
    pub fn build(name: &str, kind: &UpstreamKind, tasks: &mut Tasks) -> Result<Self, String> {
        Ok(match kind {
            UpstreamKind::Whoami => UpstreamRuntime::Whoami,
            UpstreamKind::Http(cfg) => {
                UpstreamRuntime::Pool(Box::new(Pool::build(name, cfg, tasks)?))
            }
        })
    }
}

/// What the whoami upstream answers: the request as a backend would receive it.
pub fn whoami_body(req: &RequestHeader, route: &str) -> String {
    let mut headers = serde_json::Map::new();
    for (name, value) in req.headers.iter() {
        let v = String::from_utf8_lossy(value.as_bytes()).to_string();
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(&v);
            }
            _ => {
                headers.insert(name.as_str().to_string(), serde_json::Value::String(v));
            }
        }
    }
    serde_json::json!({
        "route": route,
        "method": req.method.as_str(),
        "path": req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"),
        "headers": headers,
    })
    .to_string()
}
