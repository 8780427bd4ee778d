//! Compiles the DPoP keys (RFC 9449): `[token_service] dpop_algorithms`, `dpop_max_age` and
//! `dpop_nonce`, and each route's `dpop`.

use super::raw::RawTokenService;
use super::*;
use crate::crypto::verify_keys::parse_algorithm;
use jsonwebtoken::AlgorithmFamily;

impl Compiler {
    /// The DPoP settings of the token service's section; the defaults without one.
    pub(super) fn dpop(&mut self, t: Option<&RawTokenService>) -> DpopSettings {
        let Some(t) = t else {
            return DpopSettings::default();
        };
        let k = |f: &str| format!("token_service.{f}");
        let mut algorithms = Vec::new();
        for (j, name) in t.dpop_algorithms.iter().enumerate() {
            let key = format!("token_service.dpop_algorithms[{j}]");
            match parse_algorithm(name) {
                // a proof carries its own public key: a shared secret cannot be one
                Ok(a) if a.family() == AlgorithmFamily::Hmac => self.err(
                    key,
                    format!("{name} is symmetric; DPoP proofs are signed with a private key"),
                ),
                Ok(a) if !algorithms.contains(&a) => algorithms.push(a),
                Ok(_) => self.err(key, format!("{name} is listed twice")),
                Err(m) => self.err(key, m),
            }
        }
        if t.dpop_algorithms.is_empty() {
            self.err(
                k("dpop_algorithms"),
                "name at least one algorithm, e.g. \"ES256\"",
            );
        }
        let max_age = self.duration(&k("dpop_max_age"), &t.dpop_max_age);
        if max_age < Duration::from_secs(1) || max_age > Duration::from_secs(24 * 3600) {
            self.err(k("dpop_max_age"), "must be between 1s and 24h");
        }
        DpopSettings {
            algorithms,
            max_age,
            nonce: t.dpop_nonce,
        }
    }

    /// A route's `dpop`: `"allowed"` or `"required"`, the latter only where a DPoP token can come
    /// (the `Authorization` header of a route that looks at tokens).
    pub(super) fn dpop_mode(
        &mut self,
        i: usize,
        written: &str,
        auth: AuthMode,
        from: &TokenSources,
    ) -> DpopMode {
        let key = format!("routes[{i}].dpop");
        match written {
            "allowed" => DpopMode::Allowed,
            "required" if auth == AuthMode::Public => {
                self.err(key, "a public route looks at no token, bound or not");
                DpopMode::Required
            }
            "required" if !from.header => {
                self.err(
                    key,
                    "DPoP tokens come in the Authorization header: token_from must include \"header\"",
                );
                DpopMode::Required
            }
            "required" => DpopMode::Required,
            other => {
                self.err(key, format!("{other:?} is not \"allowed\" or \"required\""));
                DpopMode::Allowed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};
    use super::*;
    use jsonwebtoken::Algorithm;

    fn with_service(rest: &str) -> String {
        format!("{BASE}\n[token_service]\nissuer = \"https://auth.test\"\n{rest}\n")
    }

    #[test]
    fn the_defaults_hold_with_and_without_the_service() {
        assert_eq!(compile(BASE).unwrap().dpop, DpopSettings::default());
        let c = compile(&with_service("")).unwrap();
        assert_eq!(c.dpop, DpopSettings::default());
        let c = compile(&with_service(
            "dpop_algorithms = [\"EdDSA\", \"ES384\"]\ndpop_max_age = \"90s\"\ndpop_nonce = true",
        ))
        .unwrap();
        assert_eq!(c.dpop.algorithms, [Algorithm::EdDSA, Algorithm::ES384]);
        assert_eq!(c.dpop.max_age, Duration::from_secs(90));
        assert!(c.dpop.nonce);
    }

    #[test]
    fn symmetric_unknown_and_absent_algorithms_are_refused() {
        let at = "token_service.dpop_algorithms[0]";
        refused(
            &with_service("dpop_algorithms = [\"HS256\"]"),
            at,
            "symmetric",
        );
        refused(
            &with_service("dpop_algorithms = [\"none\"]"),
            at,
            "never accepted",
        );
        refused(
            &with_service("dpop_algorithms = [\"ES999\"]"),
            at,
            "unknown algorithm",
        );
        refused(
            &with_service("dpop_algorithms = []"),
            "token_service.dpop_algorithms",
            "at least one",
        );
        refused(
            &with_service("dpop_max_age = \"0s\""),
            "token_service.dpop_max_age",
            "between 1s and 24h",
        );
    }

    #[test]
    fn nonces_on_a_shared_store_without_a_shared_secret_are_warned_about() {
        let redis = "\n[store]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n";
        let c = compile(&format!("{}{redis}", with_service("dpop_nonce = true"))).unwrap();
        assert!(c
            .warnings()
            .iter()
            .any(|w| w.starts_with("token_service.dpop_nonce:")));
        let c = compile(&format!("{}{redis}", with_service(""))).unwrap();
        assert!(c.warnings().is_empty());
    }

    #[test]
    fn a_route_requires_dpop_only_where_a_token_can_carry_it() {
        let route = |body: &str| {
            format!(
                "{BASE}\n[[issuers]]\nname = \"h\"\nissuer = \"https://h.test\"\njwks_uri = \"https://h.test/jwks\"\naudiences = [\"a\"]\nalgorithms = [\"ES256\"]\n\n[[routes]]\npath_prefix = \"/d\"\nupstream = \"u\"\n{body}\n"
            )
        };
        let c = compile(&route("dpop = \"required\"")).unwrap();
        assert_eq!(c.routes[1].dpop, DpopMode::Required);
        assert_eq!(c.routes[0].dpop, DpopMode::Allowed);
        refused(&route("dpop = \"sometimes\""), "routes[1].dpop", "is not");
        refused(
            &route("dpop = \"required\"\nauth = \"public\""),
            "routes[1].dpop",
            "public route",
        );
        refused(
            &route("dpop = \"required\"\ntoken_from = [\"cookie:t\"]"),
            "routes[1].dpop",
            "must include \"header\"",
        );
    }
}
