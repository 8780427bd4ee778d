//! The gatehouse process itself, with its default runtime (one per worker thread, no work
//! stealing): it answers many connections at once, SIGTERM lets requests in flight finish, and a
//! binary upgrade (`run --upgrade`, then SIGQUIT to the old process) hands the listening sockets over
//! without refusing a request.

use crate::support::harness::{free_ports, wait_port};
use crate::support::servers::Echo;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn config(dir: &std::path::Path, plain: u16, admin: u16, echo: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    let sock = dir.join("upgrade.sock");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
listen_tls = []
listen_plain = ["127.0.0.1:{plain}"]
admin_listen = "127.0.0.1:{admin}"
threads = 2
upgrade_sock = "{sock}"
shutdown_grace = "4s"

[[upstreams]]
name = "echo"
peers = ["{echo}"]

[[routes]]
path_prefix = "/"
upstream = "echo"
auth = "public"
"#,
            sock = sock.display()
        ),
    )
    .unwrap();
    path
}

fn start(config: &std::path::Path, upgrade: bool) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gatehouse"));
    cmd.args(["run", "--config"]).arg(config);
    if upgrade {
        cmd.arg("--upgrade");
    }
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

/// Waits for the process to exit, at most `limit`.
fn exited(child: &mut Child, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// The names of the process's threads but its main one, from the kernel's list.
fn thread_names(child: &Child) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", child.id())).unwrap();
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| t.file_name().to_string_lossy() != child.id().to_string())
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

/// A gateway process in front of an echo upstream, listening: what it needs kept, its plain port
/// and the process.
async fn started() -> (Echo, tempfile::TempDir, u16, Child) {
    let echo = Echo::start("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let [plain, admin] = free_ports::<2>();
    let gw = start(&config(dir.path(), plain, admin, echo.addr), false);
    wait_port(SocketAddr::from(([127, 0, 0, 1], plain)));
    (echo, dir, plain, gw)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_worker_runtimes_answer_many_connections_at_once() {
    let (_echo, _dir, plain, mut gw) = started().await;
    // each request on a connection of its own, all at once: every accepted connection is handed to
    // one of the two runtimes and stays there
    let calls: Vec<_> = (0..200)
        .map(|i| {
            tokio::spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(0)
                    .build()
                    .unwrap();
                let r = client
                    .get(format!("http://127.0.0.1:{plain}/n/{i}"))
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let status = r.status().as_u16();
                let body = r.text().await.map_err(|e| e.to_string())?;
                Ok::<_, String>((status, body.contains(&format!("/n/{i}"))))
            })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    // the proxy service runs on two threads of its own
    let names = thread_names(&gw);
    // stopped before anything is judged, so that a failure leaves no process behind
    signal(&gw, "-TERM");
    assert!(exited(&mut gw, Duration::from_secs(20)));
    assert!(answers.iter().all(|a| a == &Ok((200, true))), "{answers:?}");
    let workers = names.iter().filter(|n| n.as_str() == "gatehouse").count();
    assert_eq!(workers, 2, "{names:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_a_request_in_flight_finish() {
    let (_echo, _dir, plain, mut gw) = started().await;
    // /slow answers after three seconds; the signal comes while it is in flight
    let slow =
        tokio::spawn(async move { reqwest::get(format!("http://127.0.0.1:{plain}/slow")).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&gw, "-TERM");
    let r = slow.await.unwrap().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "late");
    assert!(
        exited(&mut gw, Duration::from_secs(20)),
        "the gateway did not stop"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_upgrade_refuses_no_request() {
    let echo = Echo::start("echo").await;
    let dir = tempfile::tempdir().unwrap();
    let [plain, admin] = free_ports::<2>();
    let path = config(dir.path(), plain, admin, echo.addr);
    let mut old = start(&path, false);
    wait_port(SocketAddr::from(([127, 0, 0, 1], plain)));
    let load = tokio::spawn(async move {
        let client = reqwest::Client::new();
        let mut statuses = Vec::new();
        let mut closes = 0;
        let end = Instant::now() + Duration::from_secs(9);
        while Instant::now() < end {
            let r = client
                .get(format!("http://127.0.0.1:{plain}/x"))
                .send()
                .await;
            if let Ok(r) = &r {
                // the old process, once handing over, asks its clients to reconnect
                closes += usize::from(r.headers().get("connection").is_some_and(|v| v == "close"));
            }
            statuses.push(r.map(|r| r.status().as_u16()).map_err(|e| e.to_string()));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (statuses, closes)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut new = start(&path, true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&old, "-QUIT");
    assert!(
        exited(&mut old, Duration::from_secs(20)),
        "the old process did not hand over"
    );
    let (statuses, closes) = load.await.unwrap();
    assert!(closes > 0, "no response asked the client to reconnect");
    assert!(statuses.len() > 50, "{}", statuses.len());
    let failed: Vec<_> = statuses.iter().filter(|s| *s != &Ok(200)).collect();
    assert!(failed.is_empty(), "{failed:?}");
    // the new process serves on the same port
    let r = reqwest::get(format!("http://127.0.0.1:{plain}/x"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = new.kill();
    let _ = new.wait();
}
