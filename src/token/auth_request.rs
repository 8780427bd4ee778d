//! An authorization request checked before anyone signs in: client, redirect URI (loopback ports
//! per RFC 8252), response type, PKCE, scopes, resource (RFC 8707), and the OpenID Connect `prompt`
//! and `max_age`.

use super::{split_scopes, OAuthErrorCode, TokenService};
use crate::config::{Client, GrantType};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::collections::HashMap;

/// What the client asked about signing in again (OIDC Core §3.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prompt {
    /// a live session may be used
    Default,
    /// never show the form: without a session, answer `login_required`
    None,
    /// always ask, even with a live session
    Login,
}

/// A validated authorization request.
pub(super) struct AuthRequest<'a> {
    pub client: &'a Client,
    /// where the answer goes
    pub redirect_uri: String,
    /// whether the request named it: the code exchange must then repeat it (RFC 6749 §4.1.3)
    pub redirect_uri_sent: bool,
    pub prompt: Prompt,
    /// the longest ago the person may have signed in, in seconds
    pub max_age: Option<u64>,
    pub state: Option<String>,
    pub scopes: Vec<String>,
    pub challenge: String,
    pub nonce: String,
    /// the protected resource the tokens are for (RFC 8707), kept with the code
    pub resource: Option<String>,
}

/// Where an error goes: a page when the client or redirect URI cannot be trusted, else the client.
pub(super) enum AuthorizeError {
    Page(&'static str),
    Redirect {
        uri: String,
        state: Option<String>,
        code: OAuthErrorCode,
        description: &'static str,
    },
}

/// RFC 8252 §7.3: a loopback redirect URI (`http://127.0.0.1` or `http://[::1]`) matches with any
/// port, so native apps can listen where they can; every other URI matches exactly.
pub fn redirect_matches(registered: &str, asked: &str) -> bool {
    if registered == asked {
        return true;
    }
    let (Ok(r), Ok(a)) = (url::Url::parse(registered), url::Url::parse(asked)) else {
        return false;
    };
    let loopback = |u: &url::Url| {
        u.scheme() == "http" && matches!(u.host_str(), Some("127.0.0.1") | Some("[::1]"))
    };
    if !loopback(&r) || !loopback(&a) {
        return false;
    }
    let (mut r, mut a) = (r, a);
    let ports = (r.set_port(None), a.set_port(None));
    ports.0.is_ok() && ports.1.is_ok() && r == a
}

impl TokenService {
    pub(super) fn validate<'a>(
        &'a self,
        p: &HashMap<String, String>,
    ) -> Result<AuthRequest<'a>, AuthorizeError> {
        let client = p
            .get("client_id")
            .and_then(|id| self.clients.get(id))
            .ok_or(AuthorizeError::Page(
                "The application that sent you here is not known.",
            ))?;
        let redirect_uri = match p.get("redirect_uri") {
            Some(u) if client.redirect_uris.iter().any(|r| redirect_matches(r, u)) => u.clone(),
            None if client.redirect_uris.len() == 1 => {
                client.redirect_uris.first().cloned().unwrap_or_default()
            }
            _ => {
                return Err(AuthorizeError::Page(
                    "The application asked to return to an address it has not registered.",
                ))
            }
        };
        let state = p.get("state").cloned();
        let fail = |code, description| AuthorizeError::Redirect {
            uri: redirect_uri.clone(),
            state: state.clone(),
            code,
            description,
        };
        if p.get("response_type").map(String::as_str) != Some("code") {
            return Err(fail(
                OAuthErrorCode::UnsupportedResponseType,
                "response_type must be code",
            ));
        }
        if !client.grant_types.contains(&GrantType::AuthorizationCode) {
            return Err(fail(
                OAuthErrorCode::UnauthorizedClient,
                "the client may not use the authorization code flow",
            ));
        }
        let challenge = challenge(p).map_err(|d| fail(OAuthErrorCode::InvalidRequest, d))?;
        let (prompt, max_age) =
            prompt_and_max_age(p).map_err(|d| fail(OAuthErrorCode::InvalidRequest, d))?;
        let scopes: Vec<String> = match p.get("scope") {
            Some(s) => split_scopes(s),
            None => client.default_scopes.clone(),
        };
        if scopes.iter().any(|s| !client.scopes.contains(s)) {
            return Err(fail(
                OAuthErrorCode::InvalidScope,
                "a requested scope is not allowed for this client",
            ));
        }
        let resource = self
            .resources
            .check(p.get("resource").map(String::as_str))
            .map_err(|e| fail(e.code, e.description))?;
        Ok(AuthRequest {
            client,
            redirect_uri,
            redirect_uri_sent: p.contains_key("redirect_uri"),
            prompt,
            max_age,
            state,
            scopes,
            challenge,
            nonce: p.get("nonce").cloned().unwrap_or_default(),
            resource,
        })
    }
}

/// The PKCE challenge (RFC 7636): S256 only, so 43 base64url characters; or why not.
fn challenge(p: &HashMap<String, String>) -> Result<String, &'static str> {
    let challenge = p.get("code_challenge").cloned().unwrap_or_default();
    if challenge.len() != 43 || URL_SAFE_NO_PAD.decode(&challenge).is_err() {
        return Err("a PKCE code_challenge (S256) is required");
    }
    if p.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err("code_challenge_method must be S256");
    }
    Ok(challenge)
}

/// OIDC Core §3.1.2.1's `prompt` (`none` alone, or `login`) and `max_age` (seconds), or why not.
fn prompt_and_max_age(p: &HashMap<String, String>) -> Result<(Prompt, Option<u64>), &'static str> {
    let prompt = match p.get("prompt").map(|s| split_scopes(s)) {
        None => Prompt::Default,
        Some(v) if v.iter().any(|x| x == "none") && v.len() > 1 => {
            return Err("prompt=none cannot be combined with other values")
        }
        Some(v) if v.iter().any(|x| x == "none") => Prompt::None,
        Some(v) if v.iter().any(|x| x == "login") => Prompt::Login,
        Some(_) => Prompt::Default,
    };
    let max_age = match p.get("max_age").map(|s| s.parse::<u64>()) {
        None => None,
        Some(Ok(n)) => Some(n),
        Some(Err(_)) => return Err("max_age must be a number of seconds"),
    };
    Ok((prompt, max_age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_any_port_and_others_exactly() {
        assert!(redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:53123/cb"
        ));
        assert!(redirect_matches(
            "http://[::1]:8080/cb",
            "http://[::1]:9/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "http://127.0.0.1:1/other"
        ));
        assert!(!redirect_matches(
            "http://localhost/cb",
            "http://localhost:1/cb"
        ));
        assert!(!redirect_matches(
            "https://app.example/cb",
            "https://app.example:444/cb"
        ));
        assert!(redirect_matches(
            "https://app.example/cb",
            "https://app.example/cb"
        ));
        assert!(!redirect_matches(
            "http://127.0.0.1/cb",
            "https://127.0.0.1:1/cb"
        ));
    }
}
