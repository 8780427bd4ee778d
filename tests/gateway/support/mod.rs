//! Shared fixtures of the integration tests: the gateway harness, in-process peers, test keys, a relay, a gRPC service, a client metadata document server.

pub mod documents;
pub mod grpc_service;
pub mod harness;
pub mod keys;
pub mod relay;
pub mod servers;
