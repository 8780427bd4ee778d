//! Compiles a route's protected-resource and MCP keys: `resource`, `authorization_servers`,
//! `resource_name`, `mcp`, `allowed_origins` and `[[routes.mcp_tools]]` (RFC 9728, RFC 8707).

use super::raw::{RawRoute, RawToolRule};
use super::{ClaimPath, Compiler, Issuer, Policy, Route, TokenSources};
use std::sync::Arc;

/// Where RFC 9728 puts a protected resource's metadata: after the host, before the resource's path.
pub const METADATA_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// A route that is an OAuth protected resource: tokens for it name it in `aud`, and its metadata
/// tells clients which authorization servers issue them.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtectedResource {
    /// the resource identifier, an https URL (http only for a loopback host)
    pub resource: String,
    /// the path the metadata is served at: `METADATA_PREFIX` + the resource's path
    pub metadata_path: String,
    /// the metadata's full address, which a 401's `resource_metadata` names
    pub metadata_url: String,
    pub authorization_servers: Vec<String>,
    pub name: String,
    /// every scope the route or its tool rules ask for
    pub scopes: Vec<String>,
    /// the scopes the route itself asks for, which a 401 names (`scope=`)
    pub required: Vec<String>,
    /// RFC 6750 ways a token may come: `header`, `query`
    pub bearer_methods: Vec<&'static str>,
}

impl ProtectedResource {
    /// The metadata document (RFC 9728 §2).
    pub fn document(&self) -> serde_json::Value {
        let mut doc = serde_json::Map::new();
        doc.insert("resource".into(), self.resource.clone().into());
        let servers = self.authorization_servers.clone();
        doc.insert("authorization_servers".into(), servers.into());
        let methods: Vec<serde_json::Value> =
            self.bearer_methods.iter().map(|m| (*m).into()).collect();
        doc.insert("bearer_methods_supported".into(), methods.into());
        doc.insert("resource_name".into(), self.name.clone().into());
        if !self.scopes.is_empty() {
            doc.insert("scopes_supported".into(), self.scopes.clone().into());
        }
        doc.into()
    }
}

/// What an MCP route adds at the edge.
#[derive(Debug, Clone)]
pub struct McpSettings {
    /// `Origin` values a browser-borne request may carry (DNS-rebinding guard); the gateway's own
    /// public origin is always allowed
    pub allowed_origins: Vec<String>,
    /// per-tool policy, first matching rule decides
    pub tools: Vec<ToolRule>,
}

/// What a tool rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolKind {
    /// `tools/call`, by tool name
    Tool,
    /// `prompts/get`, by prompt name
    Prompt,
    /// `resources/read`, by resource URI
    Resource,
}

/// One `[[routes.mcp_tools]]` rule.
#[derive(Debug, Clone)]
pub struct ToolRule {
    /// a name, or a pattern with `*` standing for any run of characters
    pub pattern: String,
    pub kind: ToolKind,
    pub deny: bool,
    pub policy: Policy,
}

impl ToolRule {
    /// True when the rule is about this call.
    pub fn matches(&self, kind: ToolKind, name: &str) -> bool {
        self.kind == kind && crate::rules::helpers::glob(&self.pattern, name)
    }
}

/// Lets the issuers of protected-resource routes verify tokens issued for those resources
/// (`aud` = the resource, RFC 8707), without letting such a token anywhere else: an issuer's
/// verification also accepts the resources of the routes that take its tokens and name it among
/// their `authorization_servers`, and its other routes still ask for one of its own `audiences`.
pub(super) fn bind_resources(issuers: &mut [Arc<Issuer>], routes: &mut [Route]) {
    for slot in issuers.iter_mut() {
        let mut added: Vec<String> = Vec::new();
        for r in routes
            .iter()
            .filter(|r| r.issuers.iter().any(|i| i.id == slot.id))
        {
            // only the authorization servers the resource names issue tokens for it
            let Some(p) = r.resource.as_deref() else {
                continue;
            };
            let named = p.authorization_servers.iter().any(|a| slot.accepts_iss(a));
            if named && !slot.audiences.contains(&p.resource) && !added.contains(&p.resource) {
                added.push(p.resource.clone());
            }
        }
        if added.is_empty() {
            continue;
        }
        let mut widened = (**slot).clone();
        widened
            .route_audiences
            .get_or_insert_with(|| slot.audiences.clone());
        widened.audiences.extend(added);
        *slot = Arc::new(widened);
    }
    for r in routes.iter_mut() {
        for i in r.issuers.iter_mut() {
            if let Some(w) = issuers.iter().find(|w| w.id == i.id) {
                *i = w.clone();
            }
        }
    }
}

/// The resources an authorization server issues tokens for (RFC 8707): every route's protected
/// resource that names `issuer` among its `authorization_servers` (which default to the token
/// service's issuer), once each, in the order the routes come.
pub fn issued_by(routes: &[super::Route], issuer: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let named = routes
        .iter()
        .filter_map(|r| r.resource.as_deref())
        .filter(|p| p.authorization_servers.iter().any(|s| s == issuer));
    for p in named {
        if !out.contains(&p.resource) {
            out.push(p.resource.clone());
        }
    }
    out
}

/// What compiling a route's resource keys needs from the rest of the file.
pub(super) struct ResourceContext<'a> {
    pub public_url: &'a str,
    /// the token service's issuer, when it runs
    pub own_issuer: Option<&'a str>,
}

/// True for an address a client may use as a resource: https, or http to a loopback host.
fn resource_url_ok(u: &url::Url) -> bool {
    let loopback = matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    u.fragment().is_none()
        && u.query().is_none()
        && (u.scheme() == "https" || (u.scheme() == "http" && loopback))
}

impl Compiler {
    /// The route's protected resource and MCP settings; `mcp = true` makes a route a protected
    /// resource at `public_url` + `path_prefix` unless `resource` names another address.
    pub(super) fn protected_resource(
        &mut self,
        i: usize,
        r: &mut RawRoute,
        path_prefix: &str,
        token_from: &TokenSources,
        cx: &ResourceContext<'_>,
    ) -> (Option<ProtectedResource>, Option<McpSettings>) {
        let k = |f: &str| format!("routes[{i}].{f}");
        let tools = self.tool_rules(i, std::mem::take(&mut r.mcp_tools));
        if !r.mcp {
            for (key, written) in [
                ("allowed_origins", r.allowed_origins.is_some()),
                ("mcp_tools", !tools.is_empty()),
            ] {
                if written {
                    self.err(k(key), "applies to MCP routes: set mcp = true");
                }
            }
        }
        let resource = match (&r.resource, r.mcp) {
            (Some(res), _) => res.clone(),
            (None, true) => format!("{}{}", cx.public_url, path_prefix.trim_end_matches('/')),
            (None, false) => {
                for key in ["authorization_servers", "resource_name"] {
                    let written = match key {
                        "authorization_servers" => r.authorization_servers.is_some(),
                        _ => r.resource_name.is_some(),
                    };
                    if written {
                        self.err(
                            k(key),
                            "applies to a protected resource: set resource or mcp = true",
                        );
                    }
                }
                return (None, None);
            }
        };
        let parsed = match url::Url::parse(&resource) {
            Ok(u) if resource_url_ok(&u) => u,
            _ => {
                self.err(
                    k("resource"),
                    format!("{resource:?} must be an https URL without query or fragment (http only for a loopback host)"),
                );
                return (None, None);
            }
        };
        if r.audiences.is_some() {
            self.err(
                k("audiences"),
                "a protected resource accepts tokens issued for it (aud = its resource): leave audiences out",
            );
        }
        let authorization_servers = match (&r.authorization_servers, cx.own_issuer) {
            (Some(list), _) if list.is_empty() => {
                self.err(
                    k("authorization_servers"),
                    "name at least one issuer, or omit the key for the token service's",
                );
                vec![]
            }
            (Some(list), _) => list.clone(),
            (None, Some(own)) => vec![own.to_string()],
            (None, None) => {
                self.err(
                    k("authorization_servers"),
                    "name the issuers whose tokens this resource takes, or enable [token_service]",
                );
                vec![]
            }
        };
        let path = parsed.path().trim_end_matches('/');
        let origin = parsed.origin().ascii_serialization();
        let metadata_path = format!("{METADATA_PREFIX}{path}");
        let mut required: Vec<String> = Vec::new();
        for s in r.scopes_all.iter().chain(&r.scopes_any) {
            if !required.contains(s) {
                required.push(s.clone());
            }
        }
        let mut scopes: Vec<String> = Vec::new();
        let asked = r.scopes_all.iter().chain(&r.scopes_any);
        let by_tools = tools
            .iter()
            .flat_map(|t| t.policy.scopes_all.iter().chain(&t.policy.scopes_any));
        for s in asked.chain(by_tools) {
            if !scopes.contains(s) {
                scopes.push(s.clone());
            }
        }
        let mut bearer_methods = Vec::new();
        if token_from.header {
            bearer_methods.push("header");
        }
        if !token_from.query.is_empty() {
            bearer_methods.push("query");
        }
        let protected = ProtectedResource {
            metadata_url: format!("{origin}{metadata_path}"),
            metadata_path,
            resource,
            authorization_servers,
            name: r
                .resource_name
                .clone()
                .or_else(|| r.name.clone())
                .unwrap_or_else(|| format!("routes[{i}]")),
            scopes,
            required,
            bearer_methods,
        };
        let mcp = r.mcp.then(|| McpSettings {
            allowed_origins: r.allowed_origins.clone().unwrap_or_default(),
            tools,
        });
        (Some(protected), mcp)
    }

    fn tool_rules(&mut self, i: usize, raw: Vec<RawToolRule>) -> Vec<ToolRule> {
        let mut out = Vec::new();
        for (j, t) in raw.into_iter().enumerate() {
            let k = |f: &str| format!("routes[{i}].mcp_tools[{j}].{f}");
            if t.r#match.is_empty() {
                self.err(k("match"), "name a tool, or a pattern such as \"delete_*\"");
            }
            let kind = match t.kind.as_str() {
                "tool" => ToolKind::Tool,
                "prompt" => ToolKind::Prompt,
                "resource" => ToolKind::Resource,
                other => {
                    self.err(
                        k("kind"),
                        format!("{other:?} is not \"tool\", \"prompt\" or \"resource\""),
                    );
                    ToolKind::Tool
                }
            };
            let has_policy = !(t.roles_any.is_empty()
                && t.roles_all.is_empty()
                && t.scopes_any.is_empty()
                && t.scopes_all.is_empty()
                && t.claims.is_empty());
            if t.deny == has_policy {
                self.err(
                    k("deny"),
                    "a rule either denies (deny = true) or names roles, scopes or claims",
                );
            }
            let claims = t
                .claims
                .iter()
                .filter_map(|(name, v)| match serde_json::to_value(v) {
                    Ok(j) => Some((ClaimPath::new(name), j)),
                    Err(e) => {
                        self.err(k(&format!("claims.{name}")), e.to_string());
                        None
                    }
                })
                .collect();
            out.push(ToolRule {
                pattern: t.r#match,
                kind,
                deny: t.deny,
                policy: Policy {
                    roles_any: t.roles_any,
                    roles_all: t.roles_all,
                    scopes_any: t.scopes_any,
                    scopes_all: t.scopes_all,
                    claims,
                },
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::{compile, refused, BASE};

    fn with_route(keys: &str) -> String {
        let issuer = "[[issuers]]\nname = \"as\"\nissuer = \"https://as.test\"\njwks_uri = \"https://as.test/jwks\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]";
        format!("{BASE}\n{issuer}\n[[routes]]\nname = \"tools\"\npath_prefix = \"/mcp/\"\nupstream = \"u\"\n{keys}\n")
    }

    #[test]
    fn an_mcp_route_is_a_resource_at_the_public_url() {
        let c = compile(&with_route(
            "mcp = true\nauthorization_servers = [\"https://as.test\"]\nscopes_all = [\"mcp\"]\n[[routes.mcp_tools]]\nmatch = \"delete_*\"\nscopes_all = [\"mcp:admin\"]\n",
        ))
        .unwrap();
        let r = &c.routes[1];
        let p = r.resource.as_deref().unwrap();
        assert_eq!(p.resource, format!("{}/mcp", c.server.public_url));
        assert_eq!(p.metadata_path, "/.well-known/oauth-protected-resource/mcp");
        assert!(p
            .metadata_url
            .ends_with("/.well-known/oauth-protected-resource/mcp"));
        assert_eq!(
            (p.scopes.len(), p.required.clone()),
            (2, vec!["mcp".to_string()])
        );
        assert_eq!(p.name, "tools");
        assert_eq!(r.audiences.as_deref(), Some(&[p.resource.clone()][..]));
        let m = r.mcp.as_deref().unwrap();
        assert!(m.tools[0].matches(ToolKind::Tool, "delete_user"));
        assert!(!m.tools[0].matches(ToolKind::Prompt, "delete_user"));
    }

    #[test]
    fn an_issuer_verifies_tokens_for_its_resources_only_on_their_routes() {
        let text = format!(
            "{}\n[[routes]]\npath_prefix = \"/api\"\nupstream = \"u\"\nissuers = [\"as\"]\n",
            with_route("mcp = true\nauthorization_servers = [\"https://as.test\"]")
        );
        let c = compile(&text).unwrap();
        let resource = c.routes[1].resource.as_deref().unwrap().resource.clone();
        let as_ = c.issuers.iter().find(|i| i.name == "as").unwrap();
        assert!(as_.audiences.contains(&resource) && as_.audiences.contains(&"api".into()));
        // routes without audiences of their own still ask for the issuer's
        assert_eq!(
            as_.route_audiences.as_deref(),
            Some(&["api".to_string()][..])
        );
        for r in &c.routes[1..] {
            assert!(std::sync::Arc::ptr_eq(&r.issuers[0], as_), "{}", r.name);
        }
    }

    #[test]
    fn resource_keys_are_checked() {
        let servers = "authorization_servers = [\"https://as.test\"]";
        refused(
            &with_route("allowed_origins = []"),
            "routes[1].allowed_origins",
            "mcp = true",
        );
        refused(
            &with_route(servers),
            "routes[1].authorization_servers",
            "set resource",
        );
        refused(
            &with_route(&format!("resource = \"http://gw.test/mcp\"\n{servers}")),
            "routes[1].resource",
            "https URL",
        );
        refused(
            &with_route("mcp = true"),
            "routes[1].authorization_servers",
            "[token_service]",
        );
        refused(
            &with_route(&format!("mcp = true\naudiences = [\"x\"]\n{servers}")),
            "routes[1].audiences",
            "leave audiences out",
        );
        let both = format!("mcp = true\n{servers}\n[[routes.mcp_tools]]\nmatch = \"x\"\ndeny = true\nroles_any = [\"a\"]");
        refused(
            &with_route(&both),
            "routes[1].mcp_tools[0].deny",
            "either denies",
        );
        let kind = format!("mcp = true\n{servers}\n[[routes.mcp_tools]]\nmatch = \"x\"\nkind = \"tools\"\ndeny = true");
        refused(
            &with_route(&kind),
            "routes[1].mcp_tools[0].kind",
            "\"tool\"",
        );
        let loopback = format!("resource = \"http://127.0.0.1:9/mcp\"\n{servers}");
        assert!(compile(&with_route(&loopback)).is_ok());
        let twice = format!(
            "{}\n[[routes]]\npath_prefix = \"/other\"\nupstream = \"u\"\nauth = \"public\"\nresource = \"https://elsewhere.test/mcp\"\n{servers}\n",
            with_route(&format!("mcp = true\n{servers}"))
        );
        refused(&twice, "routes[2].resource", "metadata address");
    }
}
