//! What the gateway tells its operators: the access log, its writer, and the metrics.

pub mod access_log;
mod deny_reason;
pub mod logwriter;
pub mod metrics;

pub use deny_reason::DenyReason;
