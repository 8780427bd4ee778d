//! Compiles `[[issuers]]`, and the gateway's own issuer `self` when the token service is on.

use super::raw::RawIssuer;
use super::*;
use crate::crypto::verify_keys::{parse_algorithm, VerifyKey};
use jsonwebtoken::{Algorithm, AlgorithmFamily};

/// The algorithms the gateway's own keys may sign with.
const OWN_ALGORITHMS: [Algorithm; 7] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::EdDSA,
];

impl Compiler {
    pub(super) fn issuers(&mut self, raw: Vec<RawIssuer>) -> Vec<Arc<Issuer>> {
        let mut issuers = Vec::new();
        for (i, ri) in raw.into_iter().enumerate() {
            if let Some(iss) = self.issuer(i, ri) {
                if issuers.iter().any(|x: &Arc<Issuer>| x.name == iss.name) {
                    self.err(
                        format!("issuers[{i}].name"),
                        format!("duplicate issuer name {:?}", iss.name),
                    );
                }
                issuers.push(Arc::new(Issuer {
                    id: IssuerId::at(issuers.len()),
                    ..iss
                }));
            }
        }
        issuers
    }

    fn issuer(&mut self, i: usize, r: RawIssuer) -> Option<Issuer> {
        let k = |f: &str| format!("issuers[{i}].{f}");
        if r.name.is_empty() {
            self.err(k("name"), "required");
        } else if r.name == "self" {
            self.err(
                k("name"),
                "\"self\" is reserved for the gateway's own token service",
            );
        }
        if r.issuer.is_empty() {
            self.err(k("issuer"), "required: the exact `iss` value of its tokens");
        }
        if r.audiences.is_empty() {
            self.err(
                k("audiences"),
                "name at least one audience: `aud` is always checked",
            );
        }
        let mut algorithms = Vec::new();
        if r.algorithms.is_empty() {
            self.err(
                k("algorithms"),
                "name at least one algorithm, e.g. [\"RS256\"]",
            );
        }
        for (j, a) in r.algorithms.iter().enumerate() {
            match parse_algorithm(a) {
                Ok(alg) => algorithms.push(alg),
                Err(m) => self.err(format!("issuers[{i}].algorithms[{j}]"), m),
            }
        }
        let hmac = algorithms
            .iter()
            .filter(|a| a.family() == AlgorithmFamily::Hmac)
            .count();
        let sources = [
            r.discovery,
            r.jwks_uri.is_some(),
            !r.keys.is_empty(),
            r.secret_env.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            self.err(
                k("discovery"),
                "set exactly one key source: discovery = true, jwks_uri, keys or secret_env",
            );
        }
        let source = if let Some(var) = &r.secret_env {
            if hmac != algorithms.len() {
                self.err(
                    k("algorithms"),
                    "a secret_env issuer accepts only HS256, HS384 or HS512",
                );
            }
            match std::env::var(var) {
                Ok(v) if v.len() >= 32 => match VerifyKey::hmac(v.as_bytes(), algorithms.clone()) {
                    Ok(k) => KeySource::Static(vec![Arc::new(k)]),
                    Err(m) => {
                        self.err(k("secret_env"), m);
                        KeySource::Static(vec![])
                    }
                },
                Ok(_) => {
                    self.err(
                        k("secret_env"),
                        format!("the secret in ${var} is shorter than 32 bytes"),
                    );
                    KeySource::Static(vec![])
                }
                Err(_) => {
                    self.err(
                        k("secret_env"),
                        format!("environment variable {var} is not set"),
                    );
                    KeySource::Static(vec![])
                }
            }
        } else {
            if hmac > 0 {
                self.err(
                    k("algorithms"),
                    "HS256/384/512 need a shared secret (secret_env); public-key issuers cannot use them",
                );
            }
            if r.discovery {
                KeySource::Discovery
            } else if let Some(u) = &r.jwks_uri {
                if url::Url::parse(u)
                    .map(|x| x.scheme() != "https" && x.scheme() != "http")
                    .unwrap_or(true)
                {
                    self.err(k("jwks_uri"), format!("{u:?} is not an http(s) URL"));
                }
                KeySource::JwksUri(u.clone())
            } else {
                let mut keys = Vec::new();
                for (j, p) in r.keys.iter().enumerate() {
                    let path = self.path(p);
                    match std::fs::read(&path) {
                        Ok(pem) => match VerifyKey::from_pem(&pem, &algorithms) {
                            Ok(key) => keys.push(Arc::new(key)),
                            Err(m) => self.err(format!("issuers[{i}].keys[{j}]"), m),
                        },
                        Err(e) => self.err(
                            format!("issuers[{i}].keys[{j}]"),
                            format!("cannot read {}: {e}", path.display()),
                        ),
                    }
                }
                KeySource::Static(keys)
            }
        };
        if r.discovery
            && url::Url::parse(&r.issuer)
                .map(|x| x.scheme() != "https" && x.scheme() != "http")
                .unwrap_or(true)
        {
            self.err(
                k("issuer"),
                "discovery needs an http(s) issuer URL to find /.well-known/openid-configuration",
            );
        }
        let jwks_min_refresh = self.duration(&k("jwks_min_refresh"), &r.jwks_min_refresh);
        let jwks_max_refresh = self.duration(&k("jwks_max_refresh"), &r.jwks_max_refresh);
        let jwks_stale_for = self.duration(&k("jwks_stale_for"), &r.jwks_stale_for);
        let jwks_fetch_timeout = self.duration(&k("jwks_fetch_timeout"), &r.jwks_fetch_timeout);
        if jwks_min_refresh > jwks_max_refresh {
            self.err(
                k("jwks_min_refresh"),
                "must not be longer than jwks_max_refresh",
            );
        }
        if jwks_fetch_timeout.is_zero() {
            self.err(k("jwks_fetch_timeout"), "must be longer than 0s");
        }
        if r.jwks_max_bytes < 1024 {
            self.err(k("jwks_max_bytes"), "must be at least 1024");
        }
        let ca = r.ca.as_deref().map(|p| self.path(p));
        if let Some(ca) = &ca {
            match std::fs::read(ca) {
                Err(e) => self.err(k("ca"), format!("cannot read {}: {e}", ca.display())),
                Ok(pem)
                    if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") =>
                {
                    self.err(
                        k("ca"),
                        format!("{} holds no PEM certificate", ca.display()),
                    )
                }
                Ok(_) => {}
            }
        }
        let template = r.issuer.contains(TENANT);
        if template && r.tenants.is_empty() {
            self.err(
                k("tenants"),
                "an issuer with {tenantid} needs the list of tenants it accepts",
            );
        }
        if !template && !r.tenants.is_empty() {
            self.err(
                k("tenants"),
                "only an issuer written with {tenantid} has tenants",
            );
        }
        Some(Issuer {
            ca,
            tenants: r.tenants,
            // its place among the issuers that compile, given by the caller
            id: IssuerId::at(0),
            require_typ: None,
            name: r.name,
            issuer: r.issuer,
            source,
            audiences: r.audiences,
            route_audiences: None,
            algorithms,
            roles_claim: ClaimPath::new(&r.roles_claim),
            scopes_claim: r.scopes_claim.as_deref().map(ClaimPath::new),
            jwks_min_refresh,
            jwks_max_refresh,
            jwks_stale_for,
            jwks_fetch_timeout,
            jwks_max_bytes: r.jwks_max_bytes,
        })
    }
}

/// The gateway trusts its own tokens as issuer "self", with no fetch. Any client's audience verifies,
/// and so does every protected resource the token service issues tokens for (RFC 8707); routes
/// accept only the token service's `audience` unless they name their own.
pub(super) fn own_issuer(
    id: IssuerId,
    ts: &TokenServiceSettings,
    clients: &[Client],
    resources: &[String],
) -> Issuer {
    let mut audiences = ts.audience.clone();
    let named = clients.iter().flat_map(|c| c.audience.iter());
    for a in named.chain(resources) {
        if !audiences.contains(a) {
            audiences.push(a.clone());
        }
    }
    Issuer {
        require_typ: Some("at+jwt"),
        audiences,
        route_audiences: Some(ts.audience.clone()),
        algorithms: OWN_ALGORITHMS.to_vec(),
        ..Issuer::described(id, "self".into(), ts.issuer.clone(), KeySource::Own)
    }
}

/// Routes are compiled against the issuers, the token service's own among them, and only then is it
/// known which protected resources name the token service as their authorization server. The own
/// issuer is built again to verify those resources as audiences, and every route that holds it
/// takes the new one, so the proxy accepts the tokens issued for them. The audiences of upstreams'
/// exchanged tokens join them.
pub(super) fn give_own_issuer_resources(
    issuers: &mut [Arc<Issuer>],
    routes: &mut [Route],
    ts: &TokenServiceSettings,
    clients: &[Client],
    exchanged: &[String],
) {
    let mut resources = super::mcp::issued_by(routes, &ts.issuer);
    // upstreams' exchanged tokens verify here too, on routes that name their audience
    resources.extend(exchanged.iter().cloned());
    let Some(own) = issuers
        .iter_mut()
        .find(|i| matches!(i.source, KeySource::Own))
    else {
        return;
    };
    if resources.is_empty() {
        return;
    }
    let widened = Arc::new(own_issuer(own.id, ts, clients, &resources));
    for held in routes.iter_mut().flat_map(|r| r.issuers.iter_mut()) {
        if Arc::ptr_eq(held, own) {
            *held = widened.clone();
        }
    }
    *own = widened;
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};

    fn issuer(body: &str) -> String {
        format!("{BASE}\n[[issuers]]\nname = \"i\"\nissuer = \"https://i.test\"\n{body}\n")
    }

    #[test]
    fn an_issuer_needs_audiences_algorithms_and_one_key_source() {
        let ok =
            "jwks_uri = \"https://i.test/jwks\"\naudiences = [\"api\"]\nalgorithms = [\"RS256\"]";
        assert_eq!(compile(&issuer(ok)).unwrap().issuers.len(), 1);
        refused(
            &issuer("jwks_uri = \"https://i.test/jwks\"\nalgorithms = [\"RS256\"]"),
            "issuers[0].audiences",
            "`aud` is always checked",
        );
        refused(
            &issuer("jwks_uri = \"https://i.test/jwks\"\naudiences = [\"a\"]"),
            "issuers[0].algorithms",
            "at least one algorithm",
        );
        refused(
            &issuer("audiences = [\"a\"]\nalgorithms = [\"RS256\"]"),
            "issuers[0].discovery",
            "exactly one key source",
        );
        refused(
            &issuer("discovery = true\njwks_uri = \"https://x\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\"]"),
            "issuers[0].discovery",
            "exactly one key source",
        );
        refused(
            &issuer("jwks_uri = \"https://x\"\naudiences = [\"a\"]\nalgorithms = [\"none\"]"),
            "issuers[0].algorithms[0]",
            "",
        );
    }

    #[test]
    fn secrets_and_algorithm_families_must_agree() {
        refused(
            &issuer("jwks_uri = \"https://x\"\naudiences = [\"a\"]\nalgorithms = [\"HS256\"]"),
            "issuers[0].algorithms",
            "need a shared secret",
        );
        refused(
            &issuer("secret_env = \"GATEHOUSE_TEST_UNSET_VAR\"\naudiences = [\"a\"]\nalgorithms = [\"HS256\"]"),
            "issuers[0].secret_env",
            "is not set",
        );
        refused(
            &issuer("jwks_uri = \"ftp://x\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\"]"),
            "issuers[0].jwks_uri",
            "not an http(s) URL",
        );
        refused(
            &issuer("jwks_uri = \"https://x\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\"]\njwks_min_refresh = \"2h\""),
            "issuers[0].jwks_min_refresh",
            "not be longer than jwks_max_refresh",
        );
    }

    #[test]
    fn names_are_unique_and_self_is_reserved() {
        let body = "jwks_uri = \"https://x\"\naudiences = [\"a\"]\nalgorithms = [\"RS256\"]";
        let twice = format!(
            "{}\n[[issuers]]\nname = \"i\"\nissuer = \"https://j\"\n{body}\n",
            issuer(body)
        );
        refused(&twice, "issuers[1].name", "duplicate issuer name");
        refused(
            &issuer(body).replace("name = \"i\"", "name = \"self\""),
            "issuers[0].name",
            "reserved",
        );
    }

    #[test]
    fn the_own_issuer_verifies_every_client_audience_but_routes_default_to_the_service_audience() {
        let text = format!(
            "{BASE}\n[token_service]\nissuer = \"https://auth.test\"\naudience = [\"api\"]\n\
             [[clients]]\nclient_id = \"c\"\nsecret_hash = \"sha256:{}\"\naudience = [\"other-api\"]\n",
            "0".repeat(64)
        );
        let c = compile(&text).unwrap();
        let own = c.issuer_by_name("self").unwrap();
        assert_eq!(own.audiences, ["api", "other-api"]);
        assert_eq!(
            own.route_audiences.as_deref(),
            Some(&["api".to_string()][..])
        );
        assert_eq!(own.require_typ, Some("at+jwt"));
    }

    #[test]
    fn the_own_issuer_verifies_the_resources_that_name_it_and_routes_hold_that_issuer() {
        let route = |prefix: &str, keys: &str| {
            format!("[[routes]]\npath_prefix = \"{prefix}\"\nupstream = \"u\"\n{keys}\n")
        };
        let text = format!(
            "{BASE}\n[token_service]\nissuer = \"https://auth.test\"\naudience = [\"api\"]\n{}{}{}",
            route("/mcp", "mcp = true"),
            route("/a", "resource = \"https://rs.test/a\""),
            route(
                "/elsewhere",
                "resource = \"https://rs.test/b\"\nauthorization_servers = [\"https://as.test\"]"
            ),
        );
        let c = compile(&text).unwrap();
        let mcp = format!("{}/mcp", c.server.public_url);
        assert_eq!(
            c.token_service_resources(),
            [mcp.as_str(), "https://rs.test/a"]
        );
        let own = c.issuer_by_name("self").unwrap();
        assert_eq!(own.audiences, ["api", mcp.as_str(), "https://rs.test/a"]);
        assert_eq!(
            own.route_audiences.as_deref(),
            Some(&["api".to_string()][..])
        );
        for r in &c.routes {
            assert!(
                r.issuers.iter().any(|i| std::sync::Arc::ptr_eq(i, own)),
                "{} holds the issuer that verifies the resources",
                r.name
            );
        }
    }
}
