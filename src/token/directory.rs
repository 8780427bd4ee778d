//! Where the token service finds a client: `[[clients]]` first, then a client ID metadata
//! document (a `client_id` that is an https URL), then the clients that registered themselves,
//! kept in the store and read through a short cache.

use super::cimd::{is_document_url, MetadataDocuments, NotAClient};
use super::register::REGISTERED_PREFIX;
use crate::config::{Client, Config, Registration};
use crate::store::{run_blocking, RegisteredClient, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a registered client is read from memory before the store is asked again (a client
/// removed with `gatehouse client remove` is refused everywhere within this).
const REGISTERED_CACHE: Duration = Duration::from_secs(30);

/// Why a client was not found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// no client has this id
    Unknown,
    /// the id is a metadata document URL whose document cannot be used
    Document(NotAClient),
    /// the store could not be asked
    Unavailable,
}

/// Registered clients read lately, by id.
type Recent = moka::future::Cache<String, Arc<Client>>;

pub struct Directory {
    configured: HashMap<String, Arc<Client>>,
    documents: Option<MetadataDocuments>,
    /// with registration on: the store, a cache, and the scopes such clients may have now
    registered: Option<(Arc<dyn Store>, Recent)>,
    scopes: Vec<String>,
}

impl Directory {
    pub fn new(config: &Config, store: Arc<dyn Store>) -> Result<Directory, String> {
        let configured = config
            .clients
            .iter()
            .map(|c| (c.client_id.clone(), Arc::new(c.clone())))
            .collect();
        let Some(open) = config.token_service.as_ref().map(|t| &t.open_clients) else {
            return Ok(Directory {
                configured,
                documents: None,
                registered: None,
                scopes: vec![],
            });
        };
        let scopes = open.scopes().to_vec();
        let documents = match open.metadata_documents {
            true => Some(MetadataDocuments::new(
                open.ca.as_deref(),
                open.allow_private,
                scopes.clone(),
            )?),
            false => None,
        };
        let registered = (open.registration != Registration::Off).then(|| {
            let cache = moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(REGISTERED_CACHE)
                .build();
            (store, cache)
        });
        Ok(Directory {
            configured,
            documents,
            registered,
            scopes,
        })
    }

    /// A client of `[[clients]]`.
    pub fn configured(&self, id: &str) -> Option<&Arc<Client>> {
        self.configured.get(id)
    }

    /// Every configured client.
    pub fn all_configured(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.configured.values()
    }

    /// Whether clients register themselves here.
    pub fn registration_on(&self) -> bool {
        self.registered.is_some()
    }

    /// Whether metadata documents name clients here.
    pub fn documents_on(&self) -> bool {
        self.documents.is_some()
    }

    /// The scopes open clients may have.
    pub fn open_scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Drops a registered client from this gateway's cache (it was deleted).
    pub async fn forget(&self, id: &str) {
        if let Some((_, cache)) = &self.registered {
            cache.invalidate(id).await;
        }
    }

    /// True when a client id may belong to a client this service knows without configuration: the
    /// edge lets its tokens pass while the way it came in is on.
    pub fn may_be_open(&self, id: &str) -> bool {
        (self.registered.is_some() && id.starts_with(REGISTERED_PREFIX))
            || (self.documents.is_some() && id.starts_with("https"))
    }

    /// Finds a client by id.
    pub async fn find(&self, id: &str) -> Result<Arc<Client>, Missing> {
        if let Some(c) = self.configured.get(id) {
            return Ok(c.clone());
        }
        if let (Some(docs), true) = (&self.documents, is_document_url(id)) {
            return docs.client(id).await.map_err(Missing::Document);
        }
        let Some((store, cache)) = &self.registered else {
            return Err(Missing::Unknown);
        };
        if !id.starts_with(REGISTERED_PREFIX) {
            return Err(Missing::Unknown);
        }
        if let Some(c) = cache.get(id).await {
            return Ok(c);
        }
        let key = id.to_string();
        let found = run_blocking(store, move |s| s.registered_client(&key))
            .await
            .map_err(|_| Missing::Unavailable)?
            .filter(|c| !c.disabled)
            .ok_or(Missing::Unknown)?;
        let client = Arc::new(registered_client(&found, &self.scopes));
        cache.insert(id.to_string(), client.clone()).await;
        Ok(client)
    }
}

/// A registered client as the token service uses it: public, its redirect URIs, by default the
/// scopes it registered that are still allowed, and on request any scope open clients may have
/// now. A registered `scope` is what the client said it would use (RFC 7591 §2), not a bound: MCP
/// clients register with the scope of the first challenge and step up later (MCP authorization,
/// step-up), and anyone may register again with every allowed scope anyway.
pub fn registered_client(r: &RegisteredClient, allowed: &[String]) -> Client {
    let defaults: Vec<String> = r
        .scopes
        .iter()
        .filter(|s| allowed.contains(s))
        .cloned()
        .collect();
    let refresh = r.grant_types.iter().any(|g| g == "refresh_token");
    super::register::open_client(
        &r.client_id,
        r.redirect_uris.clone(),
        refresh,
        defaults,
        allowed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GrantType;

    #[test]
    fn a_registered_client_defaults_to_its_scopes_still_allowed_and_may_ask_for_all() {
        let r = RegisteredClient {
            client_id: "reg-x".into(),
            client_name: None,
            redirect_uris: vec!["http://127.0.0.1:1/cb".into()],
            grant_types: vec!["authorization_code".into(), "refresh_token".into()],
            scopes: vec!["mcp".into(), "gone".into()],
            created_at: 1,
            disabled: false,
        };
        let allowed = ["mcp".to_string(), "mcp:admin".to_string()];
        let c = registered_client(&r, &allowed);
        assert_eq!(c.default_scopes, vec!["mcp".to_string()]);
        assert_eq!(c.scopes, allowed);
        assert!(c.public && c.secret.is_none());
        assert_eq!(
            c.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
    }
}
