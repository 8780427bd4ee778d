//! Authenticates a request for its route: the token found where the route allows it, verified,
//! judged against the route's audiences and its DPoP binding, and decoded once into an `Identity`.

use crate::auth::extract::extract_token;
use crate::auth::identity::Identity;
use crate::auth::jwt::TokenError;
use crate::auth::principal::decode_claims;
use crate::auth::Verifier;
use crate::config::{AuthMode, Config, DpopMode, Route};
use crate::dpop::Dpop;
use crate::proxy::proof::{judge_binding, Arrival};
use crate::respond::Rejection;
use pingora::http::RequestHeader;

/// What a request is authenticated with: the generation's verifier, configuration and DPoP
/// judge, and how the request arrived (for its proof's URL).
pub struct With<'a> {
    pub verifier: &'a Verifier,
    pub config: &'a Config,
    pub dpop: &'a Dpop,
    pub arrival: Arrival<'a>,
}

/// `Ok(None)` when the route takes no token or an optional one was not sent.
pub async fn authenticate(
    req: &RequestHeader,
    route: &Route,
    with: &With<'_>,
) -> Result<Option<Identity>, Rejection> {
    let (verifier, config) = (with.verifier, with.config);
    if route.auth == AuthMode::Public {
        return Ok(None);
    }
    let max_bytes = config.validation.max_token_bytes;
    let Some(token) = extract_token(req, &route.token_from, max_bytes)? else {
        return match route.auth {
            AuthMode::Required if route.dpop == DpopMode::Required => {
                Err(Rejection::MissingDpopToken {
                    algs: with.dpop.algs.clone(),
                })
            }
            AuthMode::Required => Err(Rejection::MissingToken),
            // optional: no identity; session: the proxy looks for a session next
            _ => Ok(None),
        };
    };
    let principal = verifier.verify(&token, &route.issuers).await?;
    // The route's audiences, or the issuer's default for routes (the gateway's own issuer: the
    // token service's `audience`, not every client's).
    let accepted = route.audiences.as_deref().or_else(|| {
        config
            .issuer(principal.issuer)
            .and_then(|i| i.route_audiences.as_deref())
    });
    if accepted.is_some_and(|a| !principal.has_audience(a)) {
        return Err(Rejection::InvalidToken(TokenError::Audience));
    }
    judge_binding(req, route, &token, &principal, with.dpop, &with.arrival).await?;
    let segment = token.split('.').nth(1).unwrap_or_default();
    let payload = http::HeaderValue::from_str(segment).map_err(|_| {
        Rejection::InvalidToken(TokenError::Malformed("the token payload is not base64url"))
    })?;
    let claims = route
        .needs_claims
        .then(|| decode_claims(segment.as_bytes()));
    // the key of caches per token: the identity JWT's, and the upstream's exchanged tokens
    let exchanges = route
        .upstream
        .as_ref()
        .is_some_and(|u| u.exchange.is_some());
    let token_key = (route.identity_jwt || exchanges).then(|| verifier.token_key(&token));
    Ok(Some(Identity {
        principal,
        payload,
        claims,
        token_key,
    }))
}
