//! `gatehouse explain`: judges one request as the gateway would (its token verified, the route's
//! roles, scopes and claims, then each rule) and says which rules held, for an operator debugging
//! a policy. Nothing is forwarded and nothing is logged.

use crate::auth::identity::Identity;
use crate::auth::principal::decode_claims;
use crate::auth::{AuthError, Revocations, Verifier};
use crate::clock::SharedClock;
use crate::config::{AuthMode, Config, Route};
use crate::policy::{authorize, Anonymous};
use crate::rules::{Caller, Facts, McpCall, Outcome, RuleKind};
use crate::wire::path::{normalise_host, normalise_path};
use std::net::IpAddr;
use std::sync::Arc;

/// The request to judge.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    pub route: String,
    pub token: Option<String>,
    pub method: String,
    /// the path as sent, with its query
    pub path: String,
    pub host: Option<String>,
    pub client_ip: Option<IpAddr>,
    /// `name: value` pairs, as the gateway would see them after removing its identity headers
    pub headers: Vec<(String, String)>,
    pub mcp_method: Option<String>,
    pub mcp_tool: Option<String>,
}

/// What the gateway would decide, line by line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub lines: Vec<String>,
    /// the request would pass
    pub passes: bool,
}

/// Judges `asked` on `config`; an error is a request that cannot be judged at all (no such route,
/// a path the gateway refuses).
pub async fn explain(config: &Config, asked: &Asked, clock: SharedClock) -> Result<Report, String> {
    let route = config
        .routes
        .iter()
        .find(|r| r.name == asked.route)
        .ok_or_else(|| format!("no route named {:?}", asked.route))?;
    let mut lines = vec![format!("route {}", route.name)];
    let identity = match identify(config, route, asked, clock.clone()).await {
        Ok(id) => id,
        Err(why) => {
            lines.push(format!("token: {why}"));
            lines.push("refused: the token".into());
            return Ok(Report {
                lines,
                passes: false,
            });
        }
    };
    if let Some(id) = &identity {
        let sub = id.principal.subject().unwrap_or("-");
        lines.push(format!("token: verified, subject {sub}"));
        if let Err(d) = authorize(id, &route.policy) {
            lines.push(format!("roles, scopes and claims: not held ({})", d.reason));
            lines.push(format!("refused: {}", d.reason));
            return Ok(Report {
                lines,
                passes: false,
            });
        }
        lines.push("roles, scopes and claims: held".into());
    }
    let refused = judge_rules(route, asked, identity.as_ref(), clock, &mut lines)?;
    lines.push(match &refused {
        Some(rule) => format!("refused: {rule}"),
        None => "passes".into(),
    });
    Ok(Report {
        lines,
        passes: refused.is_none(),
    })
}

/// The verified identity the route would see; `None` where it takes none.
async fn identify(
    config: &Config,
    route: &Route,
    asked: &Asked,
    clock: SharedClock,
) -> Result<Option<Identity>, String> {
    let Some(token) = asked
        .token
        .as_deref()
        .filter(|_| route.auth != AuthMode::Public)
    else {
        return match route.auth {
            AuthMode::Required => Err("missing, and the route requires one".into()),
            _ => Ok(None),
        };
    };
    let own_keys = match &config.token_service {
        Some(ts) => crate::token::keys::SigningKeys::for_service(ts, &config.clients)
            .map_err(|e| e.to_string())?
            .verify_keys(),
        None => vec![],
    };
    let v = &config.validation;
    let revocations = Arc::new(Revocations::new(clock.clone(), v.leeway));
    let verifier = Verifier::sharing(
        config.issuers.clone(),
        own_keys,
        v.leeway,
        v.verified_cache_capacity,
        v.verified_cache_max_bytes,
        clock,
        revocations,
    )?;
    let principal = match verifier.verify(token, &route.issuers).await {
        Ok(p) => p,
        Err(AuthError::Token(e)) => return Err(format!("not accepted ({})", e.description())),
        Err(AuthError::KeysUnavailable { .. }) => {
            return Err("the issuer's keys could not be fetched".into())
        }
    };
    let accepted = route.audiences.as_deref().or_else(|| {
        config
            .issuer(principal.issuer)
            .and_then(|i| i.route_audiences.as_deref())
    });
    if accepted.is_some_and(|a| !principal.has_audience(a)) {
        return Err("not accepted (its audience is not the route's)".into());
    }
    let segment = token.split('.').nth(1).unwrap_or_default();
    let payload = http::HeaderValue::from_str(segment).map_err(|_| "not a JWT".to_string())?;
    let claims = Some(decode_claims(segment.as_bytes()));
    Ok(Some(Identity {
        principal,
        payload,
        claims,
        token_key: None,
    }))
}

/// One line per rule, `deny_if` first; the first rule that refused, if any.
fn judge_rules(
    route: &Route,
    asked: &Asked,
    identity: Option<&Identity>,
    clock: SharedClock,
    lines: &mut Vec<String>,
) -> Result<Option<String>, String> {
    let Some(rules) = route.rules.as_deref() else {
        lines.push("rules: none".into());
        return Ok(None);
    };
    let (raw_path, query) = match asked.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (asked.path.as_str(), None),
    };
    let path = normalise_path(raw_path).map_err(|e| format!("the path is refused: {e}"))?;
    let mut headers = http::HeaderMap::new();
    for (name, value) in &asked.headers {
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of {name} is not a header value"))?;
        headers.append(name, value);
    }
    let host = asked.host.as_deref().map(normalise_host);
    let caller: &dyn Caller = match identity {
        Some(id) => id,
        None => &Anonymous,
    };
    let facts = Facts {
        caller,
        method: &asked.method,
        path: &path,
        host: host.as_deref().unwrap_or_default(),
        query,
        headers: &headers,
        client_ip: asked.client_ip,
        now: clock.now(),
        mcp: route.mcp.as_ref().map(|_| McpCall {
            method: asked.mcp_method.as_deref().unwrap_or_default(),
            tool: asked.mcp_tool.as_deref().unwrap_or_default(),
        }),
    };
    let mut refused = None;
    for (at, rule, outcome) in rules.explain(&facts) {
        let passes = match at.kind {
            RuleKind::AllowIf => outcome == Outcome::True,
            RuleKind::DenyIf => outcome == Outcome::False,
        };
        let result = match &outcome {
            Outcome::True => "true".to_string(),
            Outcome::False => "false".to_string(),
            Outcome::Error(e) => format!("error ({e})"),
        };
        let verdict = if passes { "passes" } else { "refuses" };
        lines.push(format!("{at}: {result}, {verdict}: {}", rule.source));
        if !passes && refused.is_none() {
            refused = Some(at.to_string());
        }
    }
    Ok(refused)
}
