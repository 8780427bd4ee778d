//! The audit event stream: who was let in, who was refused and why, which tokens were issued or
//! revoked, as CloudEvents to a file, stdout or an HTTP collector, with nothing secret in them.

mod emitter;
pub mod event;
mod file;
mod http;
pub mod recent;
mod stats;

pub use emitter::Audit;
pub use event::{Event, Issue, Kind, RequestFacts, Revoked};
pub use stats::SinkStats;
