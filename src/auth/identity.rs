//! The identity a request carries once its token is verified: one value from authentication to the
//! policy check and the identity headers.

use super::principal::Principal;
use http::HeaderValue;
use serde_json::Value;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Identity {
    /// roles, scopes and header values derived once per token (cached)
    pub principal: Arc<Principal>,
    /// the token's payload segment, forwarded as `X-Auth-Claims`
    pub payload: HeaderValue,
    /// the decoded claims, only when the route reads claims; decoded once per request
    pub claims: Option<Value>,
    /// the token's keyed hash, when the route sends an identity JWT (which is reused per token)
    pub token_key: Option<u128>,
}
