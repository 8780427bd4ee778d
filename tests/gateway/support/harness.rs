//! Starts the real gateway on ephemeral loopback ports, with real TLS, and talks to it.

use async_trait::async_trait;
use gatehouse::clock::OffsetClock;
use gatehouse::config::Config;
use pingora::server::{RunArgs, ShutdownSignal, ShutdownSignalWatch};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

struct TestSignal(Arc<Notify>);

#[async_trait]
impl ShutdownSignalWatch for TestSignal {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// Ports that were free a moment ago; the listeners stay open until all are picked, so the
/// same port is never handed out twice in one call.
/// Ports for listeners the tests start, each handed out once per test process and taken below the
/// kernel's ephemeral range (32768 and up), so no client connection and no other test can take one
/// between the check and the listener's bind.
pub fn free_ports<const N: usize>() -> [u16; N] {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % SPAN;
    std::array::from_fn(|_| loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    })
}

pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

pub struct Gw {
    pub plain: SocketAddr,
    pub tls: SocketAddr,
    pub admin: SocketAddr,
    pub dir: tempfile::TempDir,
    pub clock: Arc<OffsetClock>,
    pub http: reqwest::Client,
    pub https: reqwest::Client,
    stop: Arc<Notify>,
    join: Option<std::thread::JoinHandle<()>>,
}

/// The [server] and [tls] sections every test gateway gets; `body` adds issuers, upstreams and routes.
pub fn server_toml(plain: u16, tls: u16, admin: u16) -> String {
    format!(
        r#"
[server]
listen_tls = ["127.0.0.1:{tls}"]
listen_plain = ["127.0.0.1:{plain}"]
admin_listen = "127.0.0.1:{admin}"
threads = 1
# Many gateways start and stop in this one process. Pingora's runtime per thread (the default,
# `work_stealing = false`) records its threads' handles in a table keyed by thread ids that outlive
# the threads (cloudflare/pingora#981): a later gateway's thread can find a stopped one's handles
# and never listen. In-process gateways share one runtime; the process tests run the default.
work_stealing = true
request_header_timeout = "3s"

[tls]
cert = "certs/gateway.crt"
key = "certs/gateway.key"
self_signed_if_missing = true

[validation]
leeway = "30s"
"#
    )
}

/// An echo upstream and one route for every path to it, taking tokens of any configured issuer.
pub fn echo_everywhere(echo: SocketAddr) -> String {
    format!(
        "\n[[upstreams]]\nname = \"echo\"\npeers = [\"{echo}\"]\n\n[[routes]]\npath_prefix = \"/\"\nupstream = \"echo\"\n"
    )
}

/// Waits (up to 30 s: tests run side by side on a couple of cores) for something to listen.
pub fn wait_port(addr: SocketAddr) {
    for _ in 0..3000 {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("gateway did not listen on {addr}");
}

impl Gw {
    /// Starts a gateway with the given issuers, upstreams and routes (TOML).
    pub fn start(body: &str) -> Gw {
        Self::start_in(tempfile::tempdir().unwrap(), body)
    }

    pub fn start_in(dir: tempfile::TempDir, body: &str) -> Gw {
        Self::start_on(dir, body, free_port())
    }

    /// Starts with a chosen TLS port, for configurations that must name it.
    pub fn start_on(dir: tempfile::TempDir, body: &str, tls: u16) -> Gw {
        Self::start_on_edited(dir, body, tls, |t| t)
    }

    /// Starts with the whole file, [server] included, passed through `edit` first.
    pub fn start_on_edited(
        dir: tempfile::TempDir,
        body: &str,
        tls: u16,
        edit: impl FnOnce(String) -> String,
    ) -> Gw {
        let [plain, admin] = loop {
            let ports = free_ports::<2>();
            if !ports.contains(&tls) {
                break ports;
            }
        };
        let cert = dir.path().join("certs/gateway.crt");
        if !cert.exists() {
            gatehouse::crypto::files::write_self_signed(
                &cert,
                &dir.path().join("certs/gateway.key"),
            )
            .unwrap();
        }
        let text = edit(format!("{}\n{}", server_toml(plain, tls, admin), body));
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, &text).unwrap();
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        let clock = Arc::new(OffsetClock::default());
        let built = gatehouse::server::build(config, clock.clone()).unwrap();
        let stop = Arc::new(Notify::new());
        let signal = TestSignal(stop.clone());
        let join = std::thread::spawn(move || {
            built.server.run(RunArgs {
                shutdown_signal: Box::new(signal),
            })
        });
        let gw_plain: SocketAddr = format!("127.0.0.1:{plain}").parse().unwrap();
        let gw_tls: SocketAddr = format!("127.0.0.1:{tls}").parse().unwrap();
        let gw_admin: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
        wait_port(gw_plain);
        wait_port(gw_tls);
        wait_port(gw_admin);
        let root = reqwest::Certificate::from_pem(&std::fs::read(&cert).unwrap()).unwrap();
        let https = reqwest::Client::builder()
            .add_root_certificate(root)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Gw {
            plain: gw_plain,
            tls: gw_tls,
            admin: gw_admin,
            dir,
            clock,
            http,
            https,
            stop,
            join: Some(join),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.plain, path)
    }

    pub fn tls_url(&self, path: &str) -> String {
        format!("https://localhost:{}{}", self.tls.port(), path)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// GET with an optional bearer token; returns status, headers and body.
    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        let mut rb = self.http.get(self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        Resp::from(rb.send().await.unwrap()).await
    }

    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Stops the server and hands back its directory (for a restart on the same files).
    pub fn stop(mut self) -> tempfile::TempDir {
        self.shutdown();
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    fn shutdown(&mut self) {
        if let Some(j) = self.join.take() {
            self.stop.notify_one();
            let _ = j.join();
        }
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        self.shutdown();
    }
}

pub struct Resp {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Resp {
    pub async fn from(r: reqwest::Response) -> Resp {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let body = r.text().await.unwrap();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// The WWW-Authenticate challenge, which every 401/403 must carry.
    pub fn challenge(&self) -> String {
        self.header("www-authenticate")
            .unwrap_or_else(|| panic!("no WWW-Authenticate on {}: {}", self.status, self.body))
    }

    /// The value of an upstream-received header, from an echo upstream's body.
    pub fn echoed(&self, name: &str) -> Option<String> {
        let j = self.json();
        let v = j["headers"].get(name)?;
        match v {
            Value::Array(a) => Some(
                a.iter()
                    .map(|x| x.as_str().unwrap().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            Value::String(s) => Some(s.clone()),
            _ => None,
        }
    }
}

/// Sends raw bytes over plain TCP and returns (status, whole response text).
pub fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head.lines().find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    });
                    if len.is_some_and(|n| body.len() >= n) {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Runs the gatehouse binary with `args` and `--config config`, asserts it succeeded, and returns
/// what it printed.
pub fn cli(args: &[&str], config: &std::path::Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
