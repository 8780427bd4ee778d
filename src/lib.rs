//! gatehouse: an authentication gateway on Pingora that verifies bearer JWTs and forwards the verified identity.
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod audit;
pub mod auth;
pub mod clock;
pub mod config;
pub mod console;
pub mod crypto;
pub mod dpop;
pub(crate) mod endpoints;
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub(crate) mod listener;
pub mod login;
pub mod observe;
pub(crate) mod pages;
pub(crate) mod policy;
pub(crate) mod proxy;
pub mod respond;
pub mod rules;
pub mod server;
pub(crate) mod session;
pub mod startup_error;
pub mod store;
pub mod telemetry;
pub mod token;
pub(crate) mod upstream;
pub(crate) mod wire;
