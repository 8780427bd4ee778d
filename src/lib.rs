//! gatehouse: an authentication gateway on Pingora that verifies bearer JWTs and forwards the verified identity.
#![deny(clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::indexing_slicing))]

pub mod auth;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod endpoints;
#[cfg(any(test, fuzzing))]
pub mod fuzzing;
pub mod listener;
pub mod login;
pub mod observe;
pub mod pages;
pub mod policy;
pub mod proxy;
pub mod respond;
pub mod server;
pub mod session;
pub mod store;
pub mod token;
pub mod upstream;
pub mod wire;
