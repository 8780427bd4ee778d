//! Client ID Metadata Documents: a `client_id` that is an https URL names its own metadata, which
//! is fetched (bounded in size and time, redirects refused, private addresses refused), cached as
//! HTTP caching says, and read as a public client that uses the authorization code with PKCE.

use crate::config::Client;
use serde_json::Value;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest document read; a client's metadata is a few hundred bytes.
pub const MAX_DOCUMENT: usize = 16 * 1024;
/// A fetch gives up after this.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a document is kept at least, and at most, whatever its `Cache-Control` says.
const MIN_KEEP: Duration = Duration::from_secs(60);
const MAX_KEEP: Duration = Duration::from_secs(24 * 3600);
/// How long a failed fetch is remembered, so a bad URL is not fetched on every request.
const FAILED_KEEP: Duration = Duration::from_secs(30);

/// Why a URL's document is no client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotAClient(pub &'static str);

/// True for a `client_id` that names a metadata document: an https URL with a path, and no
/// fragment, credentials or dot segments.
pub fn is_document_url(id: &str) -> bool {
    let Ok(u) = url::Url::parse(id) else {
        return false;
    };
    u.scheme() == "https"
        && u.path() != "/"
        && u.fragment().is_none()
        && u.username().is_empty()
        && u.password().is_none()
        && !id.contains("/./")
        && !id.contains("/../")
        && u.as_str() == id
}

/// True for an address anyone on the internet could reach: not loopback, private, link-local,
/// unique-local, shared (100.64/10), documentation, multicast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1]))
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8)
        }
    }
}

/// Name resolution for document fetches that drops every address that is not public, so a name
/// cannot lead the gateway to itself or its neighbours (the connection uses what this returned, so
/// a second lookup cannot differ).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 443)).await?;
            let public: Vec<SocketAddr> = found.filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                let e = std::io::Error::other("the name resolves to no public address");
                return Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The document as a client: its `client_id` must be the URL it came from, its `redirect_uris`
/// present, and it must not ask for a secret (a document is public) or a grant other than the
/// authorization code and refresh. It may ask for any of `scopes`; by default it gets those of its
/// `scope` among them, else all (as a registered client: directory::registered_client).
pub fn client_from(url: &str, doc: &Value, scopes: &[String]) -> Result<Client, NotAClient> {
    if doc.get("client_id").and_then(Value::as_str) != Some(url) {
        return Err(NotAClient("the document's client_id is not its own URL"));
    }
    let method = doc
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str);
    if method.is_some_and(|m| m != "none") || doc.get("client_secret").is_some() {
        return Err(NotAClient(
            "a metadata document's client is public: token_endpoint_auth_method must be none",
        ));
    }
    let strings = |k: &str| -> Option<Vec<String>> {
        let list = doc.get(k)?.as_array()?;
        list.iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    let redirect_uris = strings("redirect_uris")
        .filter(|r| !r.is_empty())
        .ok_or(NotAClient("the document has no redirect_uris"))?;
    if redirect_uris
        .iter()
        .any(|r| !super::register::redirect_allowed(r))
    {
        return Err(NotAClient(
            "a redirect URI is not https, loopback http or a private-use scheme",
        ));
    }
    for g in strings("grant_types").unwrap_or_default() {
        if g != "authorization_code" && g != "refresh_token" {
            return Err(NotAClient(
                "the document asks for a grant other than authorization_code and refresh_token",
            ));
        }
    }
    let asked: Vec<String> = match doc.get("scope").and_then(Value::as_str) {
        Some(s) => super::split_scopes(s),
        None => scopes.to_vec(),
    };
    let defaults: Vec<String> = asked.into_iter().filter(|s| scopes.contains(s)).collect();
    Ok(super::register::open_client(
        url,
        redirect_uris,
        true,
        defaults,
        scopes,
    ))
}

#[derive(Clone)]
enum Entry {
    Client(Arc<Client>, Instant),
    Failed(NotAClient, Instant),
}

/// Fetched documents by URL.
pub struct MetadataDocuments {
    http: reqwest::Client,
    cache: moka::future::Cache<String, Entry>,
    scopes: Vec<String>,
    allow_private: bool,
}

impl MetadataDocuments {
    /// `ca`: a CA file trusted for these fetches besides the system's; `allow_private` lets
    /// documents live on private and loopback addresses (tests, closed networks).
    pub fn new(
        ca: Option<&std::path::Path>,
        allow_private: bool,
        scopes: Vec<String>,
    ) -> Result<MetadataDocuments, String> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // a proxy from the environment would resolve the name itself, past the address guard
            .no_proxy()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            b = b.dns_resolver(Arc::new(PublicOnly));
        }
        if let Some(path) = ca {
            let pem =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("{}: not PEM certificates: {e}", path.display()))?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        let http = b
            .build()
            .map_err(|e| format!("cannot build the HTTP client for client metadata: {e}"))?;
        Ok(MetadataDocuments {
            http,
            cache: moka::future::Cache::new(10_000),
            scopes,
            allow_private,
        })
    }

    /// The client a document URL names, from the cache while it is fresh.
    pub async fn client(&self, url: &str) -> Result<Arc<Client>, NotAClient> {
        if let Some(e) = self.cache.get(url).await {
            match e {
                Entry::Client(c, until) if Instant::now() < until => return Ok(c),
                Entry::Failed(why, until) if Instant::now() < until => return Err(why),
                _ => {}
            }
        }
        let entry = match self.fetch(url).await {
            Ok((c, keep)) => Entry::Client(Arc::new(c), Instant::now() + keep),
            Err(why) => {
                tracing::info!(target: "gatehouse::token", reason = why.0, "a client metadata document was refused");
                Entry::Failed(why, Instant::now() + FAILED_KEEP)
            }
        };
        self.cache.insert(url.to_string(), entry.clone()).await;
        match entry {
            Entry::Client(c, _) => Ok(c),
            Entry::Failed(why, _) => Err(why),
        }
    }

    async fn fetch(&self, url: &str) -> Result<(Client, Duration), NotAClient> {
        if !is_document_url(url) {
            return Err(NotAClient("the client_id is not an https URL with a path"));
        }
        let literal = url::Url::parse(url).ok().and_then(|u| match u.host() {
            Some(url::Host::Ipv4(a)) => Some(IpAddr::V4(a)),
            Some(url::Host::Ipv6(a)) => Some(IpAddr::V6(a)),
            _ => None,
        });
        if literal.is_some_and(|ip| !is_public(ip)) && !self.allow_private {
            return Err(NotAClient("the document's address is not public"));
        }
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|_| NotAClient("the document could not be fetched"))?;
        if !resp.status().is_success() {
            return Err(NotAClient("the document's server did not answer 200"));
        }
        if resp
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT as u64)
        {
            return Err(NotAClient("the document is larger than 16 KiB"));
        }
        let cc = resp
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|_| NotAClient("the document could not be read"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT {
                return Err(NotAClient("the document is larger than 16 KiB"));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Value =
            serde_json::from_slice(&body).map_err(|_| NotAClient("the document is not JSON"))?;
        let client = client_from(url, &doc, &self.scopes)?;
        let keep = crate::auth::jwks::max_age(cc.as_deref())
            .map_or(MIN_KEEP * 60, Duration::from_secs)
            .clamp(MIN_KEEP, MAX_KEEP);
        Ok((client, keep))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::GrantType;
    use serde_json::json;

    #[test]
    fn document_urls_are_https_with_a_path() {
        assert!(is_document_url("https://app.example/client.json"));
        assert!(is_document_url("https://app.example/oauth/meta?v=1"));
        for bad in [
            "http://app.example/client.json",
            "https://app.example/",
            "https://app.example",
            "https://app.example/c.json#x",
            "https://user:pw@app.example/c.json",
            "https://app.example/a/../c.json",
            "app",
        ] {
            assert!(!is_document_url(bad), "{bad}");
        }
    }

    #[test]
    fn only_public_addresses_are_fetched() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn a_document_is_a_public_code_client() {
        let url = "https://app.example/client.json";
        let scopes = vec!["mcp".to_string(), "mcp:admin".to_string()];
        let doc = json!({"client_id": url, "client_name": "App", "redirect_uris": ["http://127.0.0.1:3000/cb"], "scope": "mcp other"});
        let c = client_from(url, &doc, &scopes).unwrap();
        assert!(c.public && c.secret.is_none());
        assert_eq!(c.default_scopes, vec!["mcp".to_string()]);
        assert_eq!(c.scopes, scopes);
        assert_eq!(
            c.grant_types,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
        );
        let refused = |d: Value| client_from(url, &d, &scopes).unwrap_err();
        refused(
            json!({"client_id": "https://other.example/c.json", "redirect_uris": ["https://a/cb"]}),
        );
        refused(json!({"client_id": url}));
        refused(json!({"client_id": url, "redirect_uris": ["http://evil.example/cb"]}));
        refused(
            json!({"client_id": url, "redirect_uris": ["https://a.example/cb"], "token_endpoint_auth_method": "client_secret_basic"}),
        );
        refused(
            json!({"client_id": url, "redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"]}),
        );
    }
}
