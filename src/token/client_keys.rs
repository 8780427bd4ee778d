//! Client public keys for private_key_jwt and the jwt-bearer grant: static files, or a client's
//! `jwks_uri` fetched by the same JWKS machinery as issuers' keys (streaming size cap, one fetch at a
//! time, failures and unknown-kid refetches floored).

use super::{oauth, OAuthError, OAuthErrorCode};
use crate::auth::jwks::Jwks;
use crate::clock::SharedClock;
use crate::config::{Client, ClientKeys, Issuer, IssuerId, KeySource, CLIENT_KEY_ALGORITHMS};
use crate::crypto::verify_keys::VerifyKey;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest client key set read; the download stops as soon as it is passed.
const MAX_BYTES: usize = 256 * 1024;
/// No two fetches of one client's keys closer than this, failed ones included: forged assertions
/// cannot make the gateway download again.
const FLOOR: Duration = Duration::from_secs(30);
/// Fetched keys are used this long at most before the next fetch.
const KEEP: Duration = Duration::from_secs(300);

/// Each client with a `jwks_uri` is a key source of its own in a `Jwks` cache.
pub struct ClientJwks {
    jwks: Arc<Jwks>,
    slots: HashMap<String, IssuerId>,
}

/// A client's key set described as the JWKS cache describes an issuer's.
fn key_source(id: IssuerId, client: &Client, uri: &str) -> Issuer {
    Issuer {
        algorithms: CLIENT_KEY_ALGORITHMS.to_vec(),
        jwks_min_refresh: FLOOR,
        jwks_max_refresh: KEEP,
        jwks_stale_for: KEEP,
        jwks_max_bytes: MAX_BYTES,
        ..Issuer::described(
            id,
            format!("client {}", client.client_id),
            client.client_id.clone(),
            KeySource::JwksUri(uri.to_string()),
        )
    }
}

impl ClientJwks {
    pub fn new(clients: &[Client], clock: SharedClock) -> Result<ClientJwks, String> {
        let mut sources = Vec::new();
        let mut slots = HashMap::new();
        for c in clients {
            if let ClientKeys::JwksUri(uri) = &c.keys {
                let id = IssuerId::at(sources.len());
                slots.insert(c.client_id.clone(), id);
                sources.push(Arc::new(key_source(id, c, uri)));
            }
        }
        Ok(ClientJwks {
            jwks: Arc::new(Jwks::new(&sources, vec![], clock)?),
            slots,
        })
    }

    /// The client's keys for an assertion naming `kid`; a client whose key set cannot be had fails
    /// authentication.
    pub async fn keys(
        &self,
        client: &Client,
        kid: Option<&str>,
    ) -> Result<Vec<Arc<VerifyKey>>, OAuthError> {
        match &client.keys {
            ClientKeys::None => Ok(vec![]),
            ClientKeys::Static(k) => Ok(k.clone()),
            ClientKeys::JwksUri(_) => {
                let slot = self.slots.get(&client.client_id).copied();
                let fetched = match slot {
                    Some(id) => self.jwks.keys(id, kid).await.ok(),
                    None => None,
                };
                fetched.map(|set| set.keys.clone()).ok_or(oauth(
                    401,
                    OAuthErrorCode::InvalidClient,
                    "the client's keys (jwks_uri) cannot be fetched",
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OffsetClock;

    fn client(id: &str, keys: ClientKeys) -> Client {
        Client {
            client_id: id.into(),
            secret: None,
            grant_types: vec![],
            scopes: vec![],
            default_scopes: vec![],
            roles: vec![],
            audience: vec![],
            redirect_uris: vec![],
            public: false,
            keys,
            exchange: Default::default(),
            jwt_bearer_subjects: vec![],
            id_token_alg: jsonwebtoken::Algorithm::RS256,
            allowed_origins: vec![],
            dpop_bound: false,
        }
    }

    #[tokio::test]
    async fn only_jwks_uri_clients_get_a_key_source() {
        let remote = client(
            "remote",
            ClientKeys::JwksUri("http://127.0.0.1:9/jwks".into()),
        );
        let none = client("plain", ClientKeys::None);
        let jwks = ClientJwks::new(
            &[none.clone(), remote.clone()],
            Arc::new(OffsetClock::default()),
        )
        .unwrap();
        assert_eq!(jwks.slots.len(), 1);
        assert_eq!(jwks.slots.get("remote"), Some(&IssuerId::at(0)));
        assert!(jwks.keys(&none, None).await.unwrap().is_empty());
        // nothing listens there: the client cannot authenticate, and says why
        let e = jwks.keys(&remote, Some("k")).await.unwrap_err();
        assert_eq!((e.status, e.code), (401, OAuthErrorCode::InvalidClient));
        assert!(e.description.contains("jwks_uri"));
    }
}
