//! Compiles `[forward_auth]`: the endpoint nginx, Caddy, Traefik and Envoy ask about each request.

use super::raw::RawForwardAuth;
use super::*;
use crate::wire::path::normalise_path;

impl Compiler {
    pub(super) fn forward_auth(
        &mut self,
        raw: Option<RawForwardAuth>,
        server: &ServerSettings,
        routes: &[Route],
        token_service: bool,
    ) -> Option<ForwardAuthSettings> {
        let Some(raw) = raw else {
            for r in routes.iter().filter(|r| r.upstream.is_none()) {
                self.err(
                    format!("routes[{}].forward_auth_only", r.id),
                    "needs a [forward_auth] section: only its endpoint answers for this route",
                );
            }
            return None;
        };
        let path = match normalise_path(&raw.path) {
            Ok(p) if raw.path.starts_with('/') && p.len() > 1 && !p.ends_with('/') => {
                p.into_owned()
            }
            _ => {
                self.err(
                    "forward_auth.path",
                    format!(
                        "{:?} is not a path such as \"/oauth/forward-auth\"",
                        raw.path
                    ),
                );
                return None;
            }
        };
        // it is looked for before the gateway's own endpoints, and would hide the one it named
        let own = path == "/healthz"
            || (token_service
                && (crate::endpoints::LoginEndpoint::parse(&path).is_some()
                    || crate::endpoints::Endpoint::parse(&path).is_some()));
        if own {
            self.err(
                "forward_auth.path",
                format!("{path:?} is one of the gateway's own endpoints"),
            );
        }
        if server.trusted_proxies.is_empty() {
            self.err(
                "forward_auth.path",
                "answers only [server] trusted_proxies, and none are listed: name the addresses of the proxies that ask",
            );
        }
        let mut listeners = Vec::new();
        for (i, l) in raw.listeners.iter().enumerate() {
            let key = format!("forward_auth.listeners[{i}]");
            let Some(addr) = self.addr(&key, l) else {
                continue;
            };
            if !server.listen_plain.contains(&addr) && !server.listen_tls.contains(&addr) {
                self.err(
                    key,
                    format!("{l:?} is not one of [server] listen_plain or listen_tls"),
                );
            }
            listeners.push(addr);
        }
        Some(ForwardAuthSettings { path, listeners })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};

    fn with(section: &str) -> String {
        BASE.replace(
            "admin_listen = \"\"",
            "admin_listen = \"\"\ntrusted_proxies = [\"127.0.0.1\"]",
        ) + section
    }

    #[test]
    fn the_endpoint_defaults_and_normalises() {
        let c = compile(&with("\n[forward_auth]\n")).unwrap();
        assert_eq!(c.forward_auth.unwrap().path, "/oauth/forward-auth");
        let c = compile(&with("\n[forward_auth]\npath = \"/auth//check\"\n")).unwrap();
        assert_eq!(c.forward_auth.unwrap().path, "/auth/check");
        assert!(compile(BASE).unwrap().forward_auth.is_none());
    }

    #[test]
    fn bad_paths_and_missing_proxies_are_refused() {
        refused(
            &with("\n[forward_auth]\npath = \"auth\"\n"),
            "forward_auth.path",
            "is not a path",
        );
        refused(
            &with("\n[forward_auth]\npath = \"/\"\n"),
            "forward_auth.path",
            "is not a path",
        );
        refused(
            &with("\n[forward_auth]\npath = \"/healthz\"\n"),
            "forward_auth.path",
            "own endpoints",
        );
        refused(
            &format!("{BASE}\n[forward_auth]\n"),
            "forward_auth.path",
            "trusted_proxies",
        );
    }

    #[test]
    fn listeners_are_the_gateways_own() {
        let c = compile(&with(
            "\n[forward_auth]\nlisteners = [\"127.0.0.1:18080\"]\n",
        ))
        .unwrap();
        assert_eq!(
            c.forward_auth.unwrap().listeners,
            vec!["127.0.0.1:18080".parse().unwrap()]
        );
        refused(
            &with("\n[forward_auth]\nlisteners = [\"127.0.0.1:9\"]\n"),
            "forward_auth.listeners[0]",
            "is not one of [server] listen_plain or listen_tls",
        );
        refused(
            &with("\n[forward_auth]\nlisteners = [\"nine\"]\n"),
            "forward_auth.listeners[0]",
            "is not an address",
        );
    }

    #[test]
    fn forward_auth_only_routes_have_no_upstream_and_need_the_endpoint() {
        let only =
            "\n[[routes]]\npath_prefix = \"/app\"\nauth = \"public\"\nforward_auth_only = true\n";
        let c = compile(&with(&format!("{only}\n[forward_auth]\n"))).unwrap();
        assert!(c.routes[1].upstream.is_none());
        refused(
            &with(only),
            "routes[1].forward_auth_only",
            "needs a [forward_auth] section",
        );
        refused(
            &with("\n[[routes]]\npath_prefix = \"/app\"\nforward_auth_only = true\nupstream = \"u\"\n[forward_auth]\n"),
            "routes[1].upstream",
            "has no upstream",
        );
        refused(
            &with("\n[[routes]]\npath_prefix = \"/app\"\n"),
            "routes[1].upstream",
            "missing: name an upstream",
        );
    }
}
