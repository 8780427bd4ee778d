//! Client public keys for private_key_jwt and the jwt-bearer grant: static files, or a client's
//! `jwks_uri` fetched once per key set, read with a streaming size cap, with failures cached too.

use super::{oauth, OAuthError};
use crate::config::{Client, ClientKeys, CLIENT_KEY_ALGORITHMS};
use crate::keys::{RawJwk, VerifyKey};
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest client key set read; the download stops as soon as it is passed.
const MAX_BYTES: usize = 256 * 1024;
/// Most keys taken from one key set.
const MAX_KEYS: usize = 100;
/// How long fetched keys are used before the next fetch.
const KEEP_KEYS: Duration = Duration::from_secs(300);
/// How long a failed fetch is remembered: forged assertions cannot make the gateway fetch again.
const KEEP_FAILURE: Duration = Duration::from_secs(30);

type Keys = Arc<Vec<Arc<VerifyKey>>>;
type Fetched = Arc<Result<Keys, String>>;

struct KeepFor;

impl moka::Expiry<String, Fetched> for KeepFor {
    fn expire_after_create(&self, _: &String, v: &Fetched, _: Instant) -> Option<Duration> {
        Some(if v.is_ok() { KEEP_KEYS } else { KEEP_FAILURE })
    }
}

/// The clients' fetched key sets, one fetch at a time per client.
pub struct ClientJwks {
    http: reqwest::Client,
    cache: moka::future::Cache<String, Fetched>,
}

impl ClientJwks {
    pub fn new() -> Result<ClientJwks, String> {
        Ok(ClientJwks {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(5))
                .build()
                .map_err(|e| format!("cannot build the HTTP client for client key sets: {e}"))?,
            cache: moka::future::Cache::builder()
                .expire_after(KeepFor)
                .max_capacity(10_000)
                .build(),
        })
    }

    /// The client's keys; a client whose key set cannot be had fails authentication.
    pub async fn keys(&self, client: &Client) -> Result<Keys, OAuthError> {
        match &client.keys {
            ClientKeys::None => Ok(Arc::new(vec![])),
            ClientKeys::Static(k) => Ok(Arc::new(k.clone())),
            ClientKeys::JwksUri(uri) => {
                let fetched = self
                    .cache
                    .get_with(client.client_id.clone(), async {
                        let got = fetch(&self.http, uri).await;
                        if let Err(e) = &got {
                            tracing::warn!(client = %client.client_id, error = %e, "cannot fetch the client's keys");
                        }
                        Arc::new(got)
                    })
                    .await;
                match fetched.as_ref() {
                    Ok(keys) => Ok(keys.clone()),
                    Err(_) => Err(oauth(
                        401,
                        "invalid_client",
                        "the client's keys (jwks_uri) cannot be fetched",
                    )),
                }
            }
        }
    }
}

/// Downloads and parses a key set, refusing it as soon as it passes `MAX_BYTES`.
async fn fetch(http: &reqwest::Client, uri: &str) -> Result<Keys, String> {
    let mut resp = http
        .get(uri)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if !resp.status().is_success() {
        return Err(format!("the key set answered {}", resp.status()));
    }
    if resp.content_length().is_some_and(|n| n > MAX_BYTES as u64) {
        return Err("the key set is too large".into());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| e.without_url().to_string())?
    {
        if body.len() + chunk.len() > MAX_BYTES {
            return Err("the key set is too large".into());
        }
        body.extend_from_slice(&chunk);
    }
    parse(&body)
}

fn parse(body: &[u8]) -> Result<Keys, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let keys: Vec<Arc<VerifyKey>> = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the key set has no keys array")?
        .iter()
        .take(MAX_KEYS)
        .filter_map(|k| serde_json::from_value::<RawJwk>(k.clone()).ok())
        .filter_map(|k| k.to_key(&CLIENT_KEY_ALGORITHMS).ok().map(Arc::new))
        .collect();
    Ok(Arc::new(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_set_without_keys_is_an_error() {
        assert!(parse(b"{}").is_err());
        assert!(parse(b"not json").is_err());
        assert_eq!(
            parse(br#"{"keys": [{"kty": "oct", "k": "AAAA"}]}"#)
                .unwrap()
                .len(),
            0
        );
    }
}
