//! The authorization server's metadata document (RFC 8414, OpenID Connect Discovery).

use super::keys::SigningKeys;
use crate::config::{
    Config, Registration, TokenServiceSettings, CLIENT_KEY_ALGORITHMS, JWT_BEARER, TOKEN_EXCHANGE,
};
use serde_json::json;
use std::collections::BTreeSet;

/// The metadata JSON, rendered once at start-up.
pub(super) fn document(
    config: &Config,
    settings: &TokenServiceSettings,
    keys: &SigningKeys,
) -> String {
    let public_url = &config.server.public_url;
    let signing_algs: Vec<String> = CLIENT_KEY_ALGORITHMS
        .iter()
        .map(|a| format!("{a:?}"))
        .collect();
    let open = &settings.open_clients;
    let open_on = open.registration != Registration::Off || open.metadata_documents;
    let token_auth = token_auth_methods(open_on || config.clients.iter().any(|c| c.public));
    let confidential_auth = [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    let mut claims: BTreeSet<String> = [
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "auth_time",
        "nonce",
        "preferred_username",
    ]
    .iter()
    .map(|c| c.to_string())
    .collect();
    claims.extend(config.users.iter().flat_map(|u| u.claims.keys().cloned()));
    let scopes = scopes_supported(config, open_on.then(|| open.scopes()));
    let mut doc = json!({
        "issuer": settings.issuer,
        "authorization_endpoint": format!("{public_url}/oauth/authorize"),
        "token_endpoint": format!("{public_url}/oauth/token"),
        "userinfo_endpoint": format!("{public_url}/oauth/userinfo"),
        "introspection_endpoint": format!("{public_url}/oauth/introspect"),
        "revocation_endpoint": format!("{public_url}/oauth/revoke"),
        "jwks_uri": format!("{public_url}/.well-known/jwks.json"),
        "grant_types_supported": ["authorization_code", "client_credentials", JWT_BEARER, "refresh_token", "password", TOKEN_EXCHANGE],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login"],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "authorization_response_iss_parameter_supported": true,
        "token_endpoint_auth_methods_supported": token_auth,
        "token_endpoint_auth_signing_alg_values_supported": signing_algs,
        "introspection_endpoint_auth_methods_supported": confidential_auth,
        "introspection_endpoint_auth_signing_alg_values_supported": signing_algs,
        "revocation_endpoint_auth_methods_supported": token_auth,
        "revocation_endpoint_auth_signing_alg_values_supported": signing_algs,
        "scopes_supported": scopes,
        "claims_supported": claims,
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": id_token_algs(keys),
        "client_id_metadata_document_supported": open.metadata_documents,
        "dpop_signing_alg_values_supported": config
            .dpop
            .algorithms
            .iter()
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>(),
    });
    if let (true, Some(m)) = (open.registration != Registration::Off, doc.as_object_mut()) {
        let at = format!("{public_url}/oauth/register");
        m.insert("registration_endpoint".into(), at.into());
    }
    doc.to_string()
}

/// How clients may authenticate: `none` too when public clients exist.
fn token_auth_methods(public: bool) -> Vec<&'static str> {
    let mut m = vec![
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    ];
    if public {
        m.push("none");
    }
    m
}

/// Every configured client's scopes, and those open clients may ask for.
fn scopes_supported(config: &Config, open: Option<&[String]>) -> BTreeSet<String> {
    let mut scopes: BTreeSet<String> = config
        .clients
        .iter()
        .flat_map(|c| c.scopes.iter().cloned())
        .collect();
    scopes.extend(open.unwrap_or_default().iter().cloned());
    scopes
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
