//! Whether the process is handing its sockets over or stopping, so responses ask clients to reconnect.
//!
//! Pingora closes idle keep-alive connections the moment its graceful shutdown begins; a client that
//! sends on one at that instant sees the connection drop. Answering with `Connection: close` from the
//! moment the hand-over (or termination) starts moves busy clients to new connections, which the new
//! process accepts, before that happens.

use pingora::server::ExecutionPhase;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::broadcast::{error::RecvError, Receiver};

/// The phases in which connections are no longer kept alive.
fn drains(phase: &ExecutionPhase) -> bool {
    use ExecutionPhase as P;
    matches!(
        phase,
        P::GracefulUpgradeTransferringFds
            | P::GracefulUpgradeCloseTimeout
            | P::GracefulTerminate
            | P::ShutdownStarted
            | P::ShutdownGracePeriod
            | P::ShutdownRuntimes
            | P::Terminated
    )
}

/// Follows the server's phases on a thread of its own (they are broadcast before and after the
/// runtimes exist); the flag turns true once draining begins.
pub fn watch(mut phases: Receiver<ExecutionPhase>) -> Result<Arc<AtomicBool>, String> {
    let draining = Arc::new(AtomicBool::new(false));
    let flag = draining.clone();
    std::thread::Builder::new()
        .name("gatehouse-drain".into())
        .spawn(move || loop {
            match phases.blocking_recv() {
                Ok(p) if drains(&p) => flag.store(true, Ordering::Relaxed),
                Ok(_) | Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        })
        .map_err(|e| format!("cannot start the drain watcher: {e}"))?;
    Ok(draining)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drains_from_the_hand_over_or_termination_on() {
        for p in [
            ExecutionPhase::Setup,
            ExecutionPhase::Bootstrap,
            ExecutionPhase::BootstrapComplete,
            ExecutionPhase::Running,
        ] {
            assert!(!drains(&p), "{p:?}");
        }
        for p in [
            ExecutionPhase::GracefulUpgradeTransferringFds,
            ExecutionPhase::GracefulUpgradeCloseTimeout,
            ExecutionPhase::GracefulTerminate,
            ExecutionPhase::ShutdownStarted,
        ] {
            assert!(drains(&p), "{p:?}");
        }
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // another thread sets the flag: polling it is the test
    fn the_flag_turns_on_when_the_phase_arrives() {
        let (tx, rx) = tokio::sync::broadcast::channel(4);
        let draining = watch(rx).unwrap();
        tx.send(ExecutionPhase::Running).unwrap();
        tx.send(ExecutionPhase::GracefulUpgradeTransferringFds)
            .unwrap();
        drop(tx);
        for _ in 0..200 {
            if draining.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the flag stayed off");
    }
}
