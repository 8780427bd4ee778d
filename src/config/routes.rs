//! Compiles `[[routes]]`: host, prefix, methods, upstream, issuers, policy, token sources, claim headers.

use super::mcp::ResourceContext;
use super::raw::RawRoute;
use super::*;
use crate::wire::path::normalise_prefix;
use http::header::HeaderName;
use std::collections::HashMap;

/// Headers a claim header may never be named after: they carry framing, routing or credentials.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-authorization",
    "expect",
];

impl Compiler {
    pub(super) fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        upstreams: &[Arc<Upstream>],
        issuers: &[Arc<Issuer>],
        cx: &ResourceContext<'_>,
    ) -> Vec<Route> {
        let mut routes = Vec::new();
        for (i, rr) in raw.into_iter().enumerate() {
            if let Some(r) = self.route(i, rr, upstreams, issuers, cx) {
                routes.push(r);
            }
        }
        self.check_overlaps(&routes);
        self.check_metadata_paths(&routes);
        if routes.is_empty() {
            self.err("routes", "no routes: add at least one [[routes]] table");
        }
        routes
    }

    fn route(
        &mut self,
        i: usize,
        mut r: RawRoute,
        upstreams: &[Arc<Upstream>],
        issuers: &[Arc<Issuer>],
        cx: &ResourceContext<'_>,
    ) -> Option<Route> {
        let k = |f: &str| format!("routes[{i}].{f}");
        let name = r.name.clone().unwrap_or_else(|| format!("routes[{i}]"));
        let host = r.host.as_deref().map(|h| {
            let h = h.to_ascii_lowercase();
            match h.strip_prefix("*.") {
                Some(rest) => HostPattern::Suffix(format!(".{rest}")),
                None => HostPattern::Exact(h),
            }
        });
        if let Some(HostPattern::Exact(h) | HostPattern::Suffix(h)) = &host {
            if h.is_empty() || h.contains('*') || h.contains('/') {
                self.err(k("host"), "write an exact host or \"*.example.com\"");
            }
        }
        let path_prefix = match normalise_prefix(&r.path_prefix) {
            Ok(p) => p,
            Err(m) => {
                self.err(k("path_prefix"), m);
                "/".into()
            }
        };
        let methods = r.methods.as_ref().map(|ms| {
            ms.iter()
                .enumerate()
                .filter_map(|(j, m)| {
                    let up = m.to_ascii_uppercase();
                    match http::Method::from_bytes(up.as_bytes()) {
                        Ok(m) => Some(m),
                        Err(_) => {
                            self.err(
                                format!("routes[{i}].methods[{j}]"),
                                format!("{m:?} is not a method"),
                            );
                            None
                        }
                    }
                })
                .collect::<Vec<_>>()
        });
        if matches!(&methods, Some(m) if m.is_empty()) {
            self.err(
                k("methods"),
                "empty list: omit the key to allow every method",
            );
        }
        let upstream = match (&r.upstream, r.forward_auth_only) {
            (Some(_), true) => {
                self.err(
                    k("upstream"),
                    "a forward_auth_only route has no upstream: the proxy in front sends the request on",
                );
                None
            }
            (None, true) => Some(None),
            (None, false) => {
                self.err(
                    k("upstream"),
                    "missing: name an upstream, or set forward_auth_only = true for a route only [forward_auth] answers",
                );
                None
            }
            (Some(name), false) => match upstreams.iter().find(|u| &u.name == name) {
                Some(u) => Some(Some(u.clone())),
                None => {
                    let known = known(upstreams.iter().map(|u| u.name.as_str()));
                    self.err(
                        k("upstream"),
                        format!("no upstream named {name:?} (known: {known})"),
                    );
                    None
                }
            },
        };
        let auth = match r.auth.as_str() {
            "required" => AuthMode::Required,
            "optional" => AuthMode::Optional,
            "public" => AuthMode::Public,
            "session" => AuthMode::Session,
            other => {
                self.err(
                    k("auth"),
                    format!("{other:?} is not one of \"required\", \"optional\", \"public\", \"session\""),
                );
                AuthMode::Required
            }
        };
        let route_issuers: Vec<Arc<Issuer>> = match &r.issuers {
            None => issuers.to_vec(),
            Some(names) => names
                .iter()
                .enumerate()
                .filter_map(|(j, n)| match issuers.iter().find(|x| &x.name == n) {
                    Some(p) => Some(p.clone()),
                    None => {
                        let known = known(issuers.iter().map(|x| x.name.as_str()));
                        self.err(
                            format!("routes[{i}].issuers[{j}]"),
                            format!("no issuer named {n:?} (known: {known})"),
                        );
                        None
                    }
                })
                .collect(),
        };
        if auth != AuthMode::Public && route_issuers.is_empty() && issuers.is_empty() {
            self.err(
                k("auth"),
                "the route takes tokens but no [[issuers]] are configured (use auth = \"public\")",
            );
        }
        let has_policy = !(r.roles_any.is_empty()
            && r.roles_all.is_empty()
            && r.scopes_any.is_empty()
            && r.scopes_all.is_empty()
            && r.claims.is_empty());
        if auth == AuthMode::Public && has_policy {
            self.err(
                k("auth"),
                "a public route cannot require roles, scopes or claims",
            );
        }
        let claims = r
            .claims
            .iter()
            .filter_map(|(name, v)| match serde_json::to_value(v) {
                Ok(j) => Some((ClaimPath::new(name), j)),
                Err(e) => {
                    self.err(format!("routes[{i}].claims.{name}"), e.to_string());
                    None
                }
            })
            .collect();
        let mut token_from = TokenSources::default();
        for (j, t) in r.token_from.iter().enumerate() {
            if t == "header" {
                token_from.header = true;
            } else if let Some(q) = t.strip_prefix("query:").filter(|q| !q.is_empty()) {
                token_from.query.push(q.to_string());
            } else if let Some(c) = t.strip_prefix("cookie:").filter(|c| !c.is_empty()) {
                token_from.cookie.push(c.to_string());
            } else {
                self.err(
                    format!("routes[{i}].token_from[{j}]"),
                    format!("{t:?} is not \"header\", \"query:NAME\" or \"cookie:NAME\""),
                );
            }
        }
        if auth == AuthMode::Public && !r.mcp_tools.is_empty() {
            self.err(
                k("mcp_tools"),
                "a public route has no identity to judge tool calls by",
            );
        }
        let (resource, mcp) = self.protected_resource(i, &mut r, &path_prefix, &token_from, cx);
        let dpop = self.dpop_mode(i, &r.dpop, auth, &token_from);
        let scope = crate::rules::Scope { mcp: mcp.is_some() };
        let rules = self.rules(i, r.allow_if.take(), r.deny_if.take(), scope);

        if r.token_from.is_empty() && !matches!(auth, AuthMode::Public | AuthMode::Session) {
            self.err(
                k("token_from"),
                "empty: the route could never receive a token",
            );
        }
        let mut claim_headers = default_claim_headers();
        for (hname, claim) in &r.claim_headers {
            let key = format!("routes[{i}].claim_headers.\"{hname}\"");
            let Ok(name) = HeaderName::from_bytes(hname.as_bytes()) else {
                self.err(key, "not a valid header name");
                continue;
            };
            if RESERVED_HEADERS.contains(&name.as_str()) {
                self.err(key, format!("{hname} cannot carry a claim"));
                continue;
            }
            if claim.is_empty() {
                self.err(key, "name a claim, e.g. \"email\"");
                continue;
            }
            let source = ClaimSource::Claim(ClaimPath::new(claim));
            match claim_headers.iter_mut().find(|h| h.name == name) {
                Some(h) => h.source = source,
                None => claim_headers.push(ClaimHeader {
                    name,
                    wire: bytes::Bytes::from(hname.clone()),
                    source,
                }),
            }
        }
        // tool rules and CEL rules read claims like the route's own conditions do
        let needs_claims = !r.claims.is_empty()
            || rules.as_ref().is_some_and(|r| r.needs_claims())
            || claim_headers
                .iter()
                .any(|h| matches!(h.source, ClaimSource::Claim(_)))
            || mcp
                .as_ref()
                .is_some_and(|m| m.tools.iter().any(|t| !t.policy.claims.is_empty()));
        if let Some(a) = &r.audiences {
            if a.is_empty() || a.iter().any(String::is_empty) {
                self.err(
                    k("audiences"),
                    "name at least one audience, or omit the key for the issuer's",
                );
            }
        }
        // A missing or unknown upstream was reported above; the configuration is refused either way.
        let upstream = upstream?;
        let stream_idle_timeout = r.stream_idle_timeout.as_deref().map(|t| {
            let d = self.duration(&k("stream_idle_timeout"), t);
            if d.is_zero() {
                self.err(k("stream_idle_timeout"), "must be longer than zero");
            }
            d
        });
        let login_written = r.login.is_some();
        let login = match r.login {
            Some(l) => l.into_vec().into_iter().map(LoginWay::from).collect(),
            None if auth == AuthMode::Session => vec![LoginWay::Local],
            None => vec![],
        };
        if login_written && login.is_empty() {
            self.err(k("login"), "name \"local\" or a [[login_providers]] name");
        }
        if r.max_body_bytes == Some(0) {
            self.err(
                k("max_body_bytes"),
                "must be at least 1 (omit it for no limit)",
            );
        }
        Some(Route {
            rules,
            dpop,
            max_body_bytes: r.max_body_bytes,
            stream_idle_timeout,
            login,
            login_written,
            identity_jwt: r.identity_jwt,
            // a protected resource takes the tokens issued for it (RFC 8707): `aud` names it
            audiences: match &resource {
                Some(p) => Some(vec![p.resource.clone()]),
                None => r.audiences,
            },
            resource: resource.map(Arc::new),
            mcp: mcp.map(Arc::new),
            needs_claims,
            id: RouteId::at(i),
            name,
            host,
            path_prefix,
            methods,
            upstream,
            allow_cors_preflight: r.allow_cors_preflight,
            auth,
            issuers: route_issuers,
            policy: Policy {
                roles_any: r.roles_any,
                roles_all: r.roles_all,
                scopes_any: r.scopes_any,
                scopes_all: r.scopes_all,
                claims,
            },
            token_from,
            forward_token: r.forward_token,
            strip_prefix: r.strip_prefix,
            claim_headers,
        })
    }

    /// Two protected resources must not share a metadata address.
    fn check_metadata_paths(&mut self, routes: &[Route]) {
        let mut seen: HashMap<&str, &Route> = HashMap::new();
        for r in routes {
            let Some(p) = &r.resource else { continue };
            match seen.get(p.metadata_path.as_str()) {
                Some(first) if first.resource != r.resource => self.err(
                    format!("routes[{}].resource", r.id),
                    format!(
                        "its metadata address {} is also routes[{}]'s: give the resources different paths",
                        p.metadata_path, first.id
                    ),
                ),
                _ => {
                    seen.insert(&p.metadata_path, r);
                }
            }
        }
    }

    /// Two routes for the same host and prefix must not both take a method.
    fn check_overlaps(&mut self, routes: &[Route]) {
        // The earlier routes themselves, not their places: a route refused above is missing from
        // `routes`, so a route's number in the file is not its place there.
        let mut seen: HashMap<(Option<HostPattern>, String), Vec<&Route>> = HashMap::new();
        for r in routes {
            let slot = seen
                .entry((r.host.clone(), r.path_prefix.clone()))
                .or_default();
            for o in slot.iter() {
                let clash = match (&o.methods, &r.methods) {
                    (None, _) | (_, None) => true,
                    (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
                };
                if clash {
                    self.problems.push(Problem {
                        key: format!("routes[{}].path_prefix", r.id),
                        message: format!(
                            "{:?} is already matched by routes[{}] ({}) for the same host and methods",
                            r.path_prefix, o.id, o.name
                        ),
                    });
                }
            }
            slot.push(r);
        }
    }
}

/// The names a reference could have used, for its error: "a, b", or "none".
fn known<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let names: Vec<&str> = names.collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};

    fn route(body: &str) -> String {
        format!("{BASE}\n[[routes]]\npath_prefix = \"/r\"\n{body}\n")
    }

    #[test]
    fn routes_name_known_upstreams_and_issuers() {
        refused(
            &route("upstream = \"nope\"\nauth = \"public\""),
            "routes[1].upstream",
            "no upstream named \"nope\" (known: u)",
        );
        refused(
            &route("upstream = \"u\"\nissuers = [\"x\"]"),
            "routes[1].issuers[0]",
            "no issuer named \"x\" (known: none)",
        );
        refused(
            &route("upstream = \"u\""),
            "routes[1].auth",
            "no [[issuers]] are configured",
        );
        refused(
            &route("upstream = \"u\"\nauth = \"sometimes\""),
            "routes[1].auth",
            "is not one of",
        );
    }

    #[test]
    fn policies_token_sources_and_headers_are_checked() {
        refused(
            &route("upstream = \"u\"\nauth = \"public\"\nroles_any = [\"a\"]"),
            "routes[1].auth",
            "cannot require roles",
        );
        refused(
            &route("upstream = \"u\"\nauth = \"public\"\nmethods = []"),
            "routes[1].methods",
            "empty list",
        );
        refused(
            &route("upstream = \"u\"\nauth = \"public\"\nmethods = [\"G E T\"]"),
            "routes[1].methods[0]",
            "is not a method",
        );
        refused(
            &route("upstream = \"u\"\nauth = \"public\"\ntoken_from = [\"body\"]"),
            "routes[1].token_from[0]",
            "is not \"header\"",
        );
        refused(
            &route(
                "upstream = \"u\"\nauth = \"public\"\n[routes.claim_headers]\n\"Cookie\" = \"sub\"",
            ),
            "routes[1].claim_headers.\"Cookie\"",
            "cannot carry a claim",
        );
        refused(
            &route("upstream = \"u\"\nauth = \"public\"\naudiences = []"),
            "routes[1].audiences",
            "at least one audience",
        );
        refused(
            &route("upstream = \"u\"\nauth = \"public\"\nidentity_jwt = true"),
            "routes[1].identity_jwt",
            "needs [token_service]",
        );
        refused(
            &route("upstream = \"u\"\nauth = \"public\"\nhost = \"a*.b\""),
            "routes[1].host",
            "exact host",
        );
    }

    #[test]
    fn overlapping_routes_are_refused_and_prefixes_normalised() {
        let twice = format!(
            "{BASE}\n[[routes]]\nupstream = \"u\"\nauth = \"public\"\npath_prefix = \"//\"\n"
        );
        refused(
            &twice,
            "routes[1].path_prefix",
            "already matched by routes[0]",
        );
        // routes[1] is refused and missing from the compiled routes; the clash still names routes[2]
        let after_a_refused_route = format!(
            "{BASE}\n[[routes]]\nupstream = \"nope\"\nauth = \"public\"\n\
             [[routes]]\nupstream = \"u\"\nauth = \"public\"\npath_prefix = \"/x\"\n\
             [[routes]]\nupstream = \"u\"\nauth = \"public\"\npath_prefix = \"/x\"\n"
        );
        refused(
            &after_a_refused_route,
            "routes[3].path_prefix",
            "already matched by routes[2] (routes[2])",
        );
        let text = format!(
            "{BASE}\n[[routes]]\nupstream = \"u\"\nauth = \"public\"\npath_prefix = \"/a/./b/\"\nmethods = [\"get\"]\n"
        );
        let c = compile(&text).unwrap();
        assert_eq!(c.routes[1].path_prefix, "/a/b");
        assert_eq!(
            c.routes[1].methods.as_deref(),
            Some(&[http::Method::GET][..])
        );
        assert_eq!(
            c.routes[0].claim_headers.len(),
            6,
            "the default identity headers"
        );
    }
}
