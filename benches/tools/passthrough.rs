//! A plain Pingora reverse proxy with no authentication: the floor any Pingora-based proxy can reach.
//! Usage: passthrough LISTEN UPSTREAM [THREADS [TLS_LISTEN CERT KEY]]: with the TLS arguments it also
//! terminates TLS (rustls, Pingora's own settings), to compare handshakes with the gateway's.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

/// The same allocator as gatehouse, so a comparison measures the proxy's work, not the allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Passthrough {
    upstream: std::net::SocketAddr,
}

#[async_trait]
impl ProxyHttp for Passthrough {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args
        .get(1)
        .expect("usage: passthrough LISTEN UPSTREAM [THREADS]");
    let upstream = args
        .get(2)
        .expect("usage: passthrough LISTEN UPSTREAM [THREADS]")
        .parse()
        .expect("UPSTREAM is IP:PORT");
    let threads = args
        .get(3)
        .map(|t| t.parse().expect("THREADS is a number"))
        .unwrap_or(1);
    // a runtime per thread, no work stealing: the runtime shape gatehouse runs by default
    let conf = ServerConf {
        threads,
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    let mut svc = http_proxy_service(&server.configuration, Passthrough { upstream });
    svc.add_tcp(listen);
    if let (Some(tls), Some(cert), Some(key)) = (args.get(4), args.get(5), args.get(6)) {
        svc.add_tls(tls, cert, key)
            .expect("CERT and KEY are a PEM certificate and key");
    }
    server.add_service(svc);
    server.run_forever();
}
