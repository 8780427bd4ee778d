//! A TCP relay a test can freeze: it stops passing bytes both ways but closes nothing, as a NAT, a
//! load balancer that forgot a flow, or a peer that vanished without a reset.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub struct Relay {
    pub port: u16,
    state: Arc<State>,
}

struct State {
    /// a connection passes bytes only while it belongs to the current epoch and nothing is frozen
    epoch: AtomicU64,
    frozen: AtomicBool,
    closed: AtomicBool,
}

impl State {
    fn passes(&self, epoch: u64) -> bool {
        !self.frozen.load(Ordering::SeqCst) && self.epoch.load(Ordering::SeqCst) == epoch
    }
}

impl Relay {
    /// Relays a free loopback port to `target`.
    pub fn start(target: u16) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State {
            epoch: AtomicU64::new(0),
            frozen: AtomicBool::new(false),
            closed: AtomicBool::new(false),
        });
        let s = state.clone();
        let target = SocketAddr::from(([127, 0, 0, 1], target));
        std::thread::spawn(move || accept(listener, target, s));
        Relay { port, state }
    }

    /// The gateway's `[store]` section, through the relay.
    pub fn store(&self) -> String {
        format!(
            "backend = \"redis\"\nurl = \"redis://127.0.0.1:{}/0\"",
            self.port
        )
    }

    /// Stops every flow: open connections stay open and silent, new ones are accepted and hang.
    pub fn freeze(&self) {
        self.state.frozen.store(true, Ordering::SeqCst);
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// New connections pass again; every flow that saw the freeze stays silent for good, as after
    /// a NAT lost its state or the relay was replaced.
    pub fn thaw(&self) {
        self.state.epoch.fetch_add(1, Ordering::SeqCst);
        self.state.frozen.store(false, Ordering::SeqCst);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.state.closed.store(true, Ordering::SeqCst);
    }
}

fn accept(listener: TcpListener, target: SocketAddr, state: Arc<State>) {
    while !state.closed.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((c, _)) => c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(_) => return,
        };
        let epoch = state.epoch.load(Ordering::SeqCst);
        let Ok(server) = TcpStream::connect(target) else {
            continue;
        };
        for (from, to) in [
            (client.try_clone().unwrap(), server.try_clone().unwrap()),
            (server, client),
        ] {
            let s = state.clone();
            std::thread::spawn(move || pump(from, to, epoch, s));
        }
    }
}

/// Copies `from` to `to` while the connection's epoch passes; after that it holds both sockets
/// open, reading nothing, until the relay is dropped.
fn pump(mut from: TcpStream, mut to: TcpStream, epoch: u64, state: Arc<State>) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = [0u8; 16384];
    while !state.closed.load(Ordering::SeqCst) {
        if !state.passes(epoch) {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            // bytes read as the freeze began are swallowed, never passed on
            Ok(n) if state.passes(epoch) => {
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
