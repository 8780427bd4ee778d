//! Reading and writing HTTP text: paths and hosts, header values, cookies, forwarding headers and
//! what gRPC asks of them.

pub mod cookies;
pub mod header_value;
pub mod path;

pub mod forwarded;
pub mod grpc;
