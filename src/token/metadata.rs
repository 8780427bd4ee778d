//! The authorization server's metadata document (RFC 8414, OpenID Connect Discovery).

use super::keys::SigningKeys;
use crate::config::{Config, TokenServiceSettings, JWT_BEARER};
use serde_json::json;

/// The metadata JSON, rendered once at start-up.
pub(super) fn document(
    config: &Config,
    settings: &TokenServiceSettings,
    keys: &SigningKeys,
) -> String {
    let public_url = &config.server.public_url;
    json!({
        "issuer": settings.issuer,
            "token_endpoint": format!("{public_url}/oauth/token"),
            "introspection_endpoint": format!("{public_url}/oauth/introspect"),
            "revocation_endpoint": format!("{public_url}/oauth/revoke"),
            "jwks_uri": format!("{public_url}/.well-known/jwks.json"),
            "grant_types_supported": ["authorization_code", "client_credentials", JWT_BEARER, "refresh_token", "password"],
            "authorization_endpoint": format!("{public_url}/oauth/authorize"),
            "code_challenge_methods_supported": ["S256"],
            "userinfo_endpoint": format!("{public_url}/oauth/userinfo"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256", "ES384", "EdDSA"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "response_types_supported": ["code"],
            "scopes_supported": config.clients.iter().flat_map(|c| c.scopes.iter().cloned()).collect::<std::collections::BTreeSet<_>>(),
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": id_token_algs(keys),
    })
    .to_string()
}

/// The ID-token algorithms the keys allow, RS256 first (OpenID Connect Discovery §3 requires it).
fn id_token_algs(keys: &SigningKeys) -> Vec<String> {
    let mut algs: Vec<String> = vec!["RS256".into()];
    for k in &keys.keys {
        let a = format!("{:?}", k.alg);
        if !algs.contains(&a) {
            algs.push(a);
        }
    }
    algs
}
