//! Background work that belongs to one configuration generation (health checks, key refreshes):
//! collected while the generation is built, started together, and stopped together when a reload
//! replaces it.

use futures_util::future::BoxFuture;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use tokio::sync::watch;

type Starter = Box<dyn FnOnce(ShutdownWatch) -> BoxFuture<'static, ()> + Send>;

/// The tasks of one generation, not yet started.
#[derive(Default)]
pub struct Tasks {
    starters: Vec<Starter>,
}

impl Tasks {
    /// Adds a background service and hands back the shared value it runs on (e.g. a load balancer
    /// whose health it keeps).
    pub fn add<S: BackgroundService + Send + Sync + 'static>(&mut self, service: S) -> Arc<S> {
        let service = Arc::new(service);
        let s = service.clone();
        self.starters.push(Box::new(move |stop| {
            Box::pin(async move { s.start(stop).await })
        }));
        service
    }

    /// Starts every task on the current runtime; sending `true` on the returned sender (or
    /// dropping it) stops them.
    pub fn start(self) -> watch::Sender<bool> {
        let (tx, rx) = watch::channel(false);
        for starter in self.starters {
            tokio::spawn(starter(rx.clone()));
        }
        tx
    }
}
