//! The compiled route table: host, then longest segment prefix, then method.

use crate::config::{Config, HostPattern, Route, RouteId};
use crate::endpoints::Endpoint;
use crate::endpoints::LoginEndpoint;
use crate::token::TokenService;
use crate::wire::path::segment_base;
use http::Method;
use std::collections::HashMap;

#[derive(Debug, Default)]
struct Node {
    children: HashMap<String, Node>,
    routes: Vec<RouteId>,
}

impl Node {
    fn insert(&mut self, prefix: &str, route: RouteId) {
        let mut n = self;
        for seg in prefix.split('/').filter(|s| !s.is_empty()) {
            n = n.children.entry(seg.to_string()).or_default();
        }
        n.routes.push(route);
    }

    /// The routes at the deepest node along the path that has any.
    fn longest<'a>(&'a self, path: &str) -> Option<&'a [RouteId]> {
        let mut best = (!self.routes.is_empty()).then_some(self.routes.as_slice());
        let mut n = self;
        // Segments are matched without their `;params`, as servlet containers route them, so
        // `/admin;x=1/y` meets the policy of `/admin`; a segment that is only parameters counts as empty.
        for seg in path.split('/').map(segment_base).filter(|s| !s.is_empty()) {
            match n.children.get(seg) {
                Some(c) => {
                    n = c;
                    if !n.routes.is_empty() {
                        best = Some(n.routes.as_slice());
                    }
                }
                None => break,
            }
        }
        best
    }
}

/// What a request is for: the gateway's own endpoints come first, on the normalised path, so
/// `//oauth/token` and `/oauth/./token` reach the token endpoint like `/oauth/token`.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    Health,
    Token(Endpoint),
    /// browser sign-in, with the token service on
    Login(LoginEndpoint),
    /// a protected resource's metadata (RFC 9728)
    ResourceMetadata(RouteId),
}

/// The built-in endpoint a normalised path names; token endpoints only with the token service on.
pub fn builtin(path: &str, tokens: Option<&TokenService>, config: &Config) -> Option<Target> {
    if path == "/healthz" {
        return Some(Target::Health);
    }
    if path.starts_with(crate::config::METADATA_PREFIX) {
        let described = config
            .routes
            .iter()
            .find(|r| r.resource.as_ref().is_some_and(|p| p.metadata_path == path));
        if let Some(r) = described {
            return Some(Target::ResourceMetadata(r.id));
        }
    }
    let tokens = tokens?;
    if let Some(l) = LoginEndpoint::parse(path) {
        return Some(Target::Login(l));
    }
    tokens.endpoint(path).map(Target::Token)
}

/// What the table says about a request.
#[derive(Debug, PartialEq, Eq)]
pub enum RouteMatch {
    Route(RouteId),
    MethodNotAllowed(Vec<Method>),
    NotFound,
}

/// Routes grouped by host; each group is a segment trie, so lookup cost follows the path, not the route count.
#[derive(Debug, Default)]
pub struct RouteTable {
    exact: HashMap<String, Node>,
    suffix: HashMap<String, Node>,
    any: Node,
}

impl RouteTable {
    pub fn new(routes: &[Route]) -> Self {
        let mut t = RouteTable::default();
        for r in routes {
            let node = match &r.host {
                None => &mut t.any,
                Some(HostPattern::Exact(h)) => t.exact.entry(h.clone()).or_default(),
                Some(HostPattern::Suffix(s)) => t.suffix.entry(s.clone()).or_default(),
            };
            node.insert(&r.path_prefix, r.id);
        }
        t
    }

    /// Host groups are tried most specific first: exact, longest wildcard suffix, then any host.
    pub fn lookup(
        &self,
        config: &Config,
        host: Option<&str>,
        path: &str,
        method: &Method,
    ) -> RouteMatch {
        let host = host.unwrap_or("");
        let exact = (!self.exact.is_empty())
            .then(|| self.exact.get(host))
            .flatten();
        let suffixes = host
            .char_indices()
            .filter(|(_, c)| *c == '.' && !self.suffix.is_empty())
            .filter_map(|(i, _)| self.suffix.get(&host[i..]));
        for g in exact
            .into_iter()
            .chain(suffixes)
            .chain(std::iter::once(&self.any))
        {
            if let Some(candidates) = g.longest(path) {
                let mut allowed = Vec::new();
                for &id in candidates {
                    let Some(route) = config.route(id) else {
                        continue;
                    };
                    match &route.methods {
                        None => return RouteMatch::Route(id),
                        Some(ms) if ms.contains(method) => return RouteMatch::Route(id),
                        Some(ms) => allowed.extend(ms.iter().cloned()),
                    }
                }
                return RouteMatch::MethodNotAllowed(allowed);
            }
        }
        RouteMatch::NotFound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_endpoints_are_found_on_the_normalised_path() {
        let text = format!(
            "{}\n[[routes]]\npath_prefix = \"/mcp\"\nupstream = \"u\"\nauth = \"public\"\nmcp = true\nauthorization_servers = [\"https://as.test\"]\n",
            crate::config::testing::BASE
        );
        let c = crate::config::testing::compile(&text).unwrap();
        assert_eq!(builtin("/healthz", None, &c), Some(Target::Health));
        assert_eq!(
            builtin("/oauth/token", None, &c),
            None,
            "no token service, no endpoint"
        );
        let mcp = c.routes[1].id;
        let at = "/.well-known/oauth-protected-resource/mcp";
        assert_eq!(builtin(at, None, &c), Some(Target::ResourceMetadata(mcp)));
        assert_eq!(
            builtin("/.well-known/oauth-protected-resource", None, &c),
            None
        );
        assert_eq!(Endpoint::parse("/oauth/token"), Some(Endpoint::Token));
        assert_eq!(
            Endpoint::parse("/.well-known/openid-configuration"),
            Some(Endpoint::Metadata)
        );
        assert_eq!(Endpoint::parse("/oauth/tokens"), None);
    }

    #[test]
    fn parameters_do_not_change_the_route() {
        let (top, admin) = (RouteId::at(0), RouteId::at(1));
        let mut root = Node::default();
        root.insert("/", top);
        root.insert("/admin", admin);
        assert_eq!(root.longest("/admin;x=1/y"), Some(&[admin][..]));
        assert_eq!(root.longest("/;x/admin"), Some(&[admin][..]));
        assert_eq!(root.longest("/adminx"), Some(&[top][..]));
    }
}
