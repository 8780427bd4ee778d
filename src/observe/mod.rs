//! What the gateway tells its operators: the access log, its writer, and the metrics.

pub mod access_log;
pub mod logwriter;
pub mod metrics;
