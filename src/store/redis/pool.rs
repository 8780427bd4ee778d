//! The Redis store's one connection model: a few multiplexed async connections, living on a thread
//! of their own, that carry every command of the store and of the shared counters.
//!
//! Store methods are synchronous (callers run them on Tokio's blocking pool, the revocation feed
//! on its own worker, start-up and the command line on plain threads), counters are awaited on a
//! request's task. Both hand their command to the store's runtime and wait for the answer, so the
//! connections, their reconnections and their timers belong to one runtime whatever the caller's
//! thread is, and a blocking thread never drives a runtime it is not allowed to.

use super::{err, TIMEOUT};
use crate::store::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisResult;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

/// Connections kept to Redis by one gateway process. Each is multiplexed (concurrent commands
/// pipeline on it); two keep one slow reply, or one connection being made again after a failure,
/// from holding up every other caller.
const CONNECTIONS: usize = 2;

/// The thread the connections live on. Dropped with the store; it never waits for its work, so a
/// store may be dropped anywhere, even on an async worker.
pub(super) struct Worker(Option<tokio::runtime::Runtime>);

impl Worker {
    pub(super) fn start() -> Result<Worker, String> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            // hostname lookups while connecting run here
            .max_blocking_threads(2)
            .thread_name("gatehouse-store")
            .enable_all()
            .build()
            .map(|rt| Worker(Some(rt)))
            .map_err(|e| format!("store: cannot start its connection thread: {e}"))
    }

    /// Runs `job` on the store's thread.
    pub(super) fn spawn<T: Send + 'static>(
        &self,
        job: impl Future<Output = T> + Send + 'static,
    ) -> Result<tokio::task::JoinHandle<T>, StoreError> {
        match &self.0 {
            Some(rt) => Ok(rt.spawn(job)),
            None => Err(err("the store's connection thread has stopped")),
        }
    }

    /// Runs `job` on the store's thread and waits for it on this one, whatever runtime (if any)
    /// this thread belongs to: a channel wait, not a runtime's `block_on`.
    pub(super) fn wait<T: Send + 'static>(
        &self,
        job: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.spawn(async move {
            let _ = tx.send(job.await);
        })?;
        rx.recv()
            .map_err(|_| err("the store's connection thread has stopped"))?
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// One connection as handed to a command.
#[derive(Clone)]
struct Live {
    conn: ConnectionManager,
    /// set once a command on it succeeded
    answered: Arc<AtomicBool>,
    /// made to replace one that failed: its first answer counts as a reconnection
    again: bool,
}

#[derive(Default)]
struct Slot {
    live: Option<Live>,
    /// a connection in this slot failed, so the next one made here is a reconnection
    failed: bool,
}

pub(super) struct Pool {
    client: redis::Client,
    slots: Vec<Mutex<Slot>>,
    next: AtomicUsize,
    pub(super) operations: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) reconnects: AtomicU64,
}

impl Pool {
    pub(super) fn new(client: redis::Client) -> Pool {
        Pool {
            client,
            slots: (0..CONNECTIONS).map(|_| Mutex::default()).collect(),
            next: AtomicUsize::new(0),
            operations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    /// Runs one command (or one dependent sequence) within `TIMEOUT`. Any failure drops the
    /// connection it used, so the next command on that slot connects afresh: a flow that went
    /// silent is never waited on twice. Must run on the store's thread (`Worker`), where the
    /// connection's background tasks are spawned.
    pub(super) async fn run<T, F, Fut>(&self, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        self.operations.fetch_add(1, Relaxed);
        let i = self.next.fetch_add(1, Relaxed) % self.slots.len();
        let answer = match self.connection(i) {
            Ok(live) => match tokio::time::timeout(TIMEOUT, f(live.conn.clone())).await {
                Ok(Ok(v)) => Ok((v, live)),
                Ok(Err(e)) => Err((err(e), Some(live))),
                Err(_) => Err((err("the store did not answer in time"), Some(live))),
            },
            Err(e) => Err((e, None)),
        };
        match answer {
            Ok((v, live)) => {
                if !live.answered.swap(true, Relaxed) && live.again {
                    self.reconnects.fetch_add(1, Relaxed);
                    tracing::info!("connected to the store again");
                }
                Ok(v)
            }
            Err((e, live)) => {
                self.errors.fetch_add(1, Relaxed);
                if let Some(live) = live {
                    self.drop_connection(i, &live);
                }
                Err(e)
            }
        }
    }

    /// The slot's connection, made (lazily: it connects on its first command) when there is none.
    fn connection(&self, i: usize) -> Result<Live, StoreError> {
        let slot = self.slots.get(i).ok_or_else(|| err("no connection slot"))?;
        let mut slot = slot.lock().map_err(|_| err("lock poisoned"))?;
        if let Some(live) = &slot.live {
            return Ok(live.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(1);
        let conn =
            ConnectionManager::new_lazy_with_config(self.client.clone(), config).map_err(err)?;
        let live = Live {
            conn,
            answered: Arc::new(AtomicBool::new(false)),
            again: slot.failed,
        };
        slot.live = Some(live.clone());
        Ok(live)
    }

    /// Forgets a failed connection, unless another command has replaced it already.
    fn drop_connection(&self, i: usize, failed: &Live) {
        let Some(Ok(mut slot)) = self.slots.get(i).map(Mutex::lock) else {
            return;
        };
        let same = slot
            .live
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(&l.answered, &failed.answered));
        if same {
            slot.live = None;
            // a connection that never answered was not lost: the next is not a reconnection
            slot.failed = slot.failed || failed.answered.load(Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_synchronous_call_from_async_code_waits_instead_of_panicking() {
        // start-up and the tests call the store from async code, where a runtime's block_on panics
        let w = Worker::start().unwrap();
        assert_eq!(w.wait(async { Ok(7) }).unwrap(), 7);
        // and a store may be dropped there too
        drop(w);
    }

    #[test]
    fn a_stopped_worker_answers_unavailable() {
        let mut w = Worker::start().unwrap();
        if let Some(rt) = w.0.take() {
            rt.shutdown_background();
        }
        assert!(w.wait(async { Ok(1) }).is_err());
    }

    #[test]
    fn an_unreachable_store_fails_is_counted_and_is_no_reconnection() {
        let w = Worker::start().unwrap();
        let pool = Arc::new(Pool::new(
            super::super::client("redis://127.0.0.1:1/0").unwrap(),
        ));
        for _ in 0..3 {
            let p = pool.clone();
            let answer = w.wait(async move {
                p.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
                    .await
            });
            assert!(answer.is_err());
        }
        assert_eq!(pool.operations.load(Relaxed), 3);
        assert_eq!(pool.errors.load(Relaxed), 3);
        assert_eq!(pool.reconnects.load(Relaxed), 0);
    }
}
