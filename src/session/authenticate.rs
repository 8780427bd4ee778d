//! A session route's request without a token: its live session gives the identity; without one, a
//! page load is sent to sign in and anything else gets a 401. Decides, writes no answer.

use super::browser::{here, is_navigation, same_origin_write};
use super::held::Live;
use super::{Found, Sessions};
use crate::auth::identity::Identity;
use crate::config::{LoginWay, Route};
use crate::respond::Rejection;
use pingora::http::RequestHeader;
use std::sync::Arc;

/// What a session says about a request.
pub enum Outcome {
    Identity(Identity),
    /// a page load with no session: sign in there first
    SignIn(String),
}

/// The identity of the request's live session, when one of the route's sign-in ways opened it. A
/// local session is taken as its user's entry says today (`current_local`): none when the user was
/// removed or disabled, and the session then ends. A cookie-authenticated write (or WebSocket
/// upgrade) must come from this origin (`tls`: the request came over TLS).
pub async fn authenticate(
    sessions: &Sessions,
    req: &RequestHeader,
    route: &Route,
    tls: bool,
    current_local: impl FnOnce(Found) -> Option<Found>,
) -> Result<Outcome, Rejection> {
    let live = match sessions.cookie_hash(req) {
        Some(hash) => live(sessions, req, hash, current_local).await?,
        None => None,
    }
    .filter(|l| route.login.iter().any(|w| *w == l.found.record.provider));
    if let Some(live) = live {
        if !same_origin_write(req, tls) {
            return Err(Rejection::CrossSiteWrite);
        }
        let id = sessions.identity_of(&live, route.needs_claims, route.identity_jwt);
        return Ok(Outcome::Identity(id));
    }
    if !is_navigation(req) {
        return Err(Rejection::MissingToken);
    }
    let ways = route.login.iter().map(LoginWay::as_str);
    let to = crate::endpoints::login_url(&here(req), ways, Some(&route.name));
    Ok(Outcome::SignIn(to))
}

/// The live session `hash` names: the one this gateway holds, else the store's, then held. Local
/// users' entries change only with the configuration, which a reload replaces with these sessions.
async fn live(
    sessions: &Sessions,
    req: &RequestHeader,
    hash: String,
    current_local: impl FnOnce(Found) -> Option<Found>,
) -> Result<Option<Arc<Live>>, Rejection> {
    let unavailable = |_| Rejection::SessionsUnavailable;
    if let Some(live) = sessions.held(&hash).await.map_err(unavailable)? {
        return Ok(Some(live));
    }
    let found = match sessions.read(hash).await.map_err(unavailable)? {
        Some(f) if LoginWay::Local == f.record.provider => match current_local(f) {
            Some(current) => current,
            None => {
                // the user was removed or disabled: the session ends with them
                sessions.end(req).await.map_err(unavailable)?;
                return Ok(None);
            }
        },
        Some(f) => f,
        None => return Ok(None),
    };
    Ok(sessions.hold(found))
}
