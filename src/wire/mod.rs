//! Reading and writing HTTP text: paths and hosts, header values.

pub mod header_value;
pub mod path;

pub mod forwarded;
pub mod grpc;
