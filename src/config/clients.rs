//! Compiles `[token_service]`, `[[clients]]` and `[[users]]`.

use super::raw::{RawClient, RawTokenService, RawUser};
use super::*;
use crate::crypto::verify_keys::VerifyKey;
use crate::crypto::SecretHash;
use jsonwebtoken::Algorithm;

impl Compiler {
    pub(super) fn clients(
        &mut self,
        raw: Vec<RawClient>,
        token_service: Option<&TokenServiceSettings>,
    ) -> Vec<Client> {
        let clients: Vec<Client> = match token_service {
            Some(ts) => raw
                .into_iter()
                .enumerate()
                .filter_map(|(i, c)| self.client(i, c, ts))
                .collect(),
            None => {
                if !raw.is_empty() {
                    self.err("clients", "clients need [token_service] enabled");
                }
                vec![]
            }
        };
        for (i, c) in clients.iter().enumerate() {
            if clients.iter().take(i).any(|o| o.client_id == c.client_id) {
                self.err(
                    format!("clients[{i}].client_id"),
                    format!("duplicate client {:?}", c.client_id),
                );
            }
        }
        clients
    }

    /// Each client's `exchange_issuers` names an `[[issuers]]` entry (the gateway's own tokens
    /// are always exchangeable, so `self` is not listed).
    pub(super) fn check_exchange_issuers(&mut self, clients: &[Client], issuers: &[Arc<Issuer>]) {
        for (i, c) in clients.iter().enumerate() {
            for (j, name) in c.exchange.issuers.iter().enumerate() {
                let key = format!("clients[{i}].exchange_issuers[{j}]");
                if name == "self" {
                    self.err(
                        key,
                        "the gateway's own tokens are always exchangeable: leave \"self\" out",
                    );
                } else if !issuers.iter().any(|x| &x.name == name) {
                    self.err(key, format!("{name:?} names no [[issuers]] entry"));
                }
            }
            let exchanges = c.grant_types.contains(&GrantType::TokenExchange);
            if !exchanges && (!c.exchange.issuers.is_empty() || c.exchange.impersonation) {
                self.err(
                    format!("clients[{i}].grant_types"),
                    format!(
                        "list {TOKEN_EXCHANGE:?} to use exchange_issuers or exchange_impersonation"
                    ),
                );
            }
        }
    }

    pub(super) fn users(&mut self, raw: Vec<RawUser>, token_service: bool) -> Vec<User> {
        let mut users: Vec<User> = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (i, u) in raw.into_iter().enumerate() {
            let k = |f: &str| format!("users[{i}].{f}");
            if !token_service {
                self.err(k("username"), "users need [token_service] enabled");
                break;
            }
            if u.username.is_empty() {
                self.err(k("username"), "required");
            }
            if !names.insert(u.username.clone()) {
                self.err(k("username"), format!("duplicate user {:?}", u.username));
            }
            let password = match SecretHash::parse(&u.password_hash) {
                Ok(h @ (SecretHash::Argon2(_) | SecretHash::Bcrypt(_))) => h,
                Ok(SecretHash::Sha256(_)) => {
                    self.err(k("password_hash"), "people's passwords need a slow hash: argon2id or bcrypt (gatehouse hash-secret --argon2)");
                    continue;
                }
                Err(m) => {
                    self.err(k("password_hash"), m);
                    continue;
                }
            };
            let claims = match serde_json::to_value(&u.claims) {
                Ok(serde_json::Value::Object(m)) => m,
                _ => serde_json::Map::new(),
            };
            if u.disabled {
                // a disabled user is as good as removed: no sign-in, refresh or session
                continue;
            }
            users.push(User {
                subject: u.subject.unwrap_or_else(|| u.username.clone()),
                username: u.username,
                password,
                roles: u.roles,
                claims,
            });
        }
        users
    }

    pub(super) fn token_service(
        &mut self,
        t: RawTokenService,
        public_url: &str,
    ) -> TokenServiceSettings {
        let k = |f: &str| format!("token_service.{f}");
        let open_clients = self.open_clients(&t);
        let issuer = t.issuer.unwrap_or_else(|| public_url.to_string());
        if url::Url::parse(&issuer)
            .map(|u| u.scheme() != "https" && u.scheme() != "http")
            .unwrap_or(true)
        {
            self.err(k("issuer"), format!("{issuer:?} is not an http(s) URL"));
        }
        if t.audience.is_empty() {
            self.err(k("audience"), "name at least one audience");
        }
        if t.signing_keys.is_empty() {
            self.err(
                k("signing_keys"),
                "name at least one key file (it is created when missing)",
            );
        }
        let key_algorithm = match t.key_algorithm.as_str() {
            "ES256" => Algorithm::ES256,
            "RS256" => Algorithm::RS256,
            "EdDSA" => Algorithm::EdDSA,
            other => {
                self.err(
                    k("key_algorithm"),
                    format!("{other:?} is not one of ES256, RS256, EdDSA"),
                );
                Algorithm::ES256
            }
        };
        let ttl = |c: &mut Self, f: &str, v: &str| {
            let d = c.duration(&k(f), v);
            if d < Duration::from_secs(1) {
                c.err(k(f), "must be at least 1s");
            }
            d
        };
        let max_assertion_lifetime = ttl(self, "max_assertion_lifetime", &t.max_assertion_lifetime);
        TokenServiceSettings {
            open_clients,
            issuer: issuer.trim_end_matches('/').to_string(),
            audience: t.audience,
            access_token_ttl: ttl(self, "access_token_ttl", &t.access_token_ttl),
            refresh_token_ttl: ttl(self, "refresh_token_ttl", &t.refresh_token_ttl),
            code_ttl: ttl(self, "code_ttl", &t.code_ttl),
            signing_keys: t.signing_keys.iter().map(|p| self.path(p)).collect(),
            key_algorithm,
            max_assertion_lifetime,
        }
    }

    fn client(&mut self, i: usize, c: RawClient, ts: &TokenServiceSettings) -> Option<Client> {
        let k = |f: &str| format!("clients[{i}].{f}");
        if c.client_id.is_empty()
            || c.client_id.len() > 128
            || c.client_id.chars().any(|ch| ch.is_control() || ch == ':')
        {
            self.err(
                k("client_id"),
                "required: up to 128 printable characters, no ':'",
            );
        }
        let secret = match &c.secret_hash {
            Some(h) => match SecretHash::parse(h) {
                Ok(s) => Some(s),
                Err(m) => {
                    self.err(k("secret_hash"), m);
                    None
                }
            },
            None => None,
        };
        let mut grant_types = Vec::new();
        for (j, g) in c.grant_types.iter().enumerate() {
            match GrantType::parse(g) {
                Some(gt) => grant_types.push(gt),
                None => self.err(
                    format!("clients[{i}].grant_types[{j}]"),
                    format!("unknown grant type {g:?}"),
                ),
            }
        }
        let keys = if let Some(u) = &c.jwks_uri {
            if !c.public_keys.is_empty() {
                self.err(k("jwks_uri"), "set jwks_uri or public_keys, not both");
            }
            ClientKeys::JwksUri(u.clone())
        } else if !c.public_keys.is_empty() {
            let algs = CLIENT_KEY_ALGORITHMS;
            let mut keys = Vec::new();
            for (j, p) in c.public_keys.iter().enumerate() {
                let path = self.path(p);
                match std::fs::read(&path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))
                    .and_then(|pem| VerifyKey::from_pem(&pem, &algs))
                {
                    Ok(key) => keys.push(Arc::new(key)),
                    Err(m) => self.err(format!("clients[{i}].public_keys[{j}]"), m),
                }
            }
            ClientKeys::Static(keys)
        } else {
            ClientKeys::None
        };
        if c.public {
            if secret.is_some() {
                self.err(k("secret_hash"), "a public client has no secret");
            }
        } else if secret.is_none() && matches!(keys, ClientKeys::None) {
            self.err(
                k("secret_hash"),
                "a confidential client needs secret_hash, jwks_uri or public_keys",
            );
        }
        if grant_types.contains(&GrantType::JwtBearer) && matches!(keys, ClientKeys::None) {
            self.err(
                k("grant_types"),
                "the jwt-bearer grant needs the client's keys (jwks_uri or public_keys)",
            );
        }
        let id_token_alg = match c.id_token_signed_response_alg.as_deref() {
            None | Some("RS256") => Algorithm::RS256,
            Some("ES256") => Algorithm::ES256,
            Some("EdDSA") => Algorithm::EdDSA,
            Some(other) => {
                self.err(
                    k("id_token_signed_response_alg"),
                    format!("{other:?} is not one of RS256, ES256, EdDSA"),
                );
                Algorithm::RS256
            }
        };
        // The origins of the redirect URIs unless listed: an SPA's origin is where it returns to.
        let allowed_origins = match c.allowed_origins {
            Some(list) => {
                for (j, o) in list.iter().enumerate() {
                    let ok = url::Url::parse(o)
                        .map(|u| u.origin().ascii_serialization() == *o)
                        .unwrap_or(false);
                    if !ok {
                        self.err(
                            format!("clients[{i}].allowed_origins[{j}]"),
                            format!("{o:?} is not an origin like \"https://app.example.com\""),
                        );
                    }
                }
                list
            }
            None => {
                let mut v: Vec<String> = c
                    .redirect_uris
                    .iter()
                    .filter_map(|u| url::Url::parse(u).ok())
                    .map(|u| u.origin().ascii_serialization())
                    .filter(|o| o != "null")
                    .collect();
                v.dedup();
                v
            }
        };
        let default_scopes = c.default_scopes.unwrap_or_else(|| c.scopes.clone());
        for s in &default_scopes {
            if !c.scopes.contains(s) {
                self.err(k("default_scopes"), format!("{s:?} is not in scopes"));
            }
        }
        if grant_types.contains(&GrantType::TokenExchange) && c.public {
            self.err(
                k("grant_types"),
                "token exchange needs a confidential client: a public one proves nothing",
            );
        }
        Some(Client {
            exchange: ClientExchange {
                issuers: c.exchange_issuers,
                impersonation: c.exchange_impersonation,
            },
            client_id: c.client_id,
            secret,
            grant_types,
            scopes: c.scopes,
            default_scopes,
            roles: c.roles,
            audience: c.audience.unwrap_or_else(|| ts.audience.clone()),
            redirect_uris: c.redirect_uris,
            public: c.public,
            keys,
            jwt_bearer_subjects: c.jwt_bearer_subjects.unwrap_or_default(),
            id_token_alg,
            allowed_origins,
            dpop_bound: c.dpop_bound,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};

    const SHA: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn with_service(rest: &str) -> String {
        format!("{BASE}\n[token_service]\nissuer = \"https://auth.test\"\n{rest}\n")
    }

    fn client(body: &str) -> String {
        with_service(&format!("[[clients]]\nclient_id = \"c\"\n{body}"))
    }

    #[test]
    fn clients_need_the_service_and_a_way_to_authenticate() {
        refused(
            &format!("{BASE}\n[[clients]]\nclient_id = \"c\"\nsecret_hash = \"{SHA}\"\n"),
            "clients",
            "need [token_service]",
        );
        refused(
            &client(""),
            "clients[0].secret_hash",
            "needs secret_hash, jwks_uri or public_keys",
        );
        refused(
            &client(&format!("public = true\nsecret_hash = \"{SHA}\"")),
            "clients[0].secret_hash",
            "no secret",
        );
        refused(
            &client("secret_hash = \"hunter2\""),
            "clients[0].secret_hash",
            "not a recognised hash",
        );
        refused(
            &client(&format!(
                "secret_hash = \"{SHA}\"\ngrant_types = [\"implicit\"]"
            )),
            "clients[0].grant_types[0]",
            "unknown grant type",
        );
        refused(
            &client(&format!("secret_hash = \"{SHA}\"\ngrant_types = [\"urn:ietf:params:oauth:grant-type:jwt-bearer\"]")),
            "clients[0].grant_types",
            "needs the client's keys",
        );
        refused(
            &client(&format!(
                "secret_hash = \"{SHA}\"\nscopes = [\"a\"]\ndefault_scopes = [\"b\"]"
            )),
            "clients[0].default_scopes",
            "\"b\" is not in scopes",
        );
        refused(
            &client("secret_hash = \"x\"\nclient_id = \"a:b\"").replace("client_id = \"c\"\n", ""),
            "clients[0].client_id",
            "no ':'",
        );
    }

    #[test]
    fn client_ids_are_unique_and_subjects_default_to_none() {
        let body = format!("secret_hash = \"{SHA}\"");
        let twice = format!(
            "{}\n[[clients]]\nclient_id = \"c\"\n{body}\n",
            client(&body)
        );
        refused(&twice, "clients[1].client_id", "duplicate client");
        let c = compile(&client(&format!("{body}\njwt_bearer_subjects = [\"*\"]"))).unwrap();
        assert_eq!(c.clients[0].jwt_bearer_subjects, ["*"]);
        assert_eq!(c.warnings().len(), 1);
        let plain = compile(&client(&body)).unwrap();
        assert!(plain.clients[0].jwt_bearer_subjects.is_empty() && plain.warnings().is_empty());
        assert_eq!(plain.clients[0].audience, ["gatehouse"]);
    }

    #[test]
    fn exchange_settings_name_issuers_and_need_the_grant() {
        const EX: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
        let body = format!("secret_hash = \"{SHA}\"\ngrant_types = [\"{EX}\"]");
        refused(
            &client(&format!("{body}\nexchange_issuers = [\"nowhere\"]")),
            "clients[0].exchange_issuers[0]",
            "names no [[issuers]] entry",
        );
        refused(
            &client(&format!("{body}\nexchange_issuers = [\"self\"]")),
            "clients[0].exchange_issuers[0]",
            "always exchangeable",
        );
        refused(
            &client(&format!(
                "secret_hash = \"{SHA}\"\nexchange_impersonation = true"
            )),
            "clients[0].grant_types",
            "to use exchange_issuers or exchange_impersonation",
        );
        refused(
            &client(&format!("public = true\ngrant_types = [\"{EX}\"]")),
            "clients[0].grant_types",
            "needs a confidential client",
        );
        let c = compile(&client(&format!("{body}\nexchange_impersonation = true"))).unwrap();
        assert!(c.clients[0].exchange.impersonation);
        assert!(c.clients[0]
            .grant_types
            .contains(&crate::config::GrantType::TokenExchange));
    }

    #[test]
    fn people_need_slow_hashes_and_the_service() {
        refused(
            &format!("{BASE}\n[[users]]\nusername = \"a\"\npassword_hash = \"{SHA}\"\n"),
            "users[0].username",
            "need [token_service]",
        );
        refused(
            &with_service(&format!(
                "[[users]]\nusername = \"a\"\npassword_hash = \"{SHA}\""
            )),
            "users[0].password_hash",
            "slow hash",
        );
        refused(
            &with_service("access_token_ttl = \"0s\""),
            "token_service.access_token_ttl",
            "at least 1s",
        );
        refused(
            &with_service("key_algorithm = \"HS256\""),
            "token_service.key_algorithm",
            "is not one of",
        );
        refused(
            &with_service("audience = []"),
            "token_service.audience",
            "at least one audience",
        );
    }
}
