//! Compiles the token service's keys for clients it was never told about: `registration`,
//! `registration_token_env`, `registration_scopes`, `client_id_metadata_documents`,
//! `cimd_allow_private` and `cimd_ca`.

use super::raw::RawTokenService;
use super::{Compiler, Route, SecretText};
use std::path::PathBuf;

/// Who may register a client at `/oauth/register` (RFC 7591).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// no endpoint
    Off,
    /// anyone (limited per address)
    Open,
    /// whoever presents this initial access token as a bearer token
    Token(SecretText),
}

/// Clients that are not in `[[clients]]`: self-registered ones and client ID metadata documents.
#[derive(Debug, Clone)]
pub struct OpenClients {
    pub registration: Registration,
    /// the scopes such clients may ask for; `None` until the routes are known (then: every scope of
    /// the protected resources this token service serves)
    pub scopes: Option<Vec<String>>,
    pub metadata_documents: bool,
    pub allow_private: bool,
    pub ca: Option<PathBuf>,
}

impl OpenClients {
    /// The scopes, once known.
    pub fn scopes(&self) -> &[String] {
        self.scopes.as_deref().unwrap_or_default()
    }
}

/// At least this long, so an initial access token cannot be guessed.
const MIN_TOKEN: usize = 32;

impl Compiler {
    pub(super) fn open_clients(&mut self, t: &RawTokenService) -> OpenClients {
        let k = |f: &str| format!("token_service.{f}");
        let registration = match t.registration.as_str() {
            "off" => Registration::Off,
            "open" => Registration::Open,
            "token" => match t.registration_token_env.as_deref() {
                None => {
                    self.err(
                        k("registration_token_env"),
                        "name the environment variable that holds the initial access token",
                    );
                    Registration::Off
                }
                Some(var) => match std::env::var(var) {
                    Ok(v) if v.len() >= MIN_TOKEN => Registration::Token(SecretText(v)),
                    Ok(_) => {
                        self.err(
                            k("registration_token_env"),
                            format!("${var} must hold at least {MIN_TOKEN} characters"),
                        );
                        Registration::Off
                    }
                    Err(_) => {
                        self.err(k("registration_token_env"), format!("${var} is not set"));
                        Registration::Off
                    }
                },
            },
            other => {
                self.err(
                    k("registration"),
                    format!("{other:?} is not \"off\", \"open\" or \"token\""),
                );
                Registration::Off
            }
        };
        if t.registration_token_env.is_some() && t.registration != "token" {
            self.err(
                k("registration_token_env"),
                "applies with registration = \"token\"",
            );
        }
        OpenClients {
            registration,
            scopes: t.registration_scopes.clone(),
            metadata_documents: t.client_id_metadata_documents,
            allow_private: t.cimd_allow_private,
            ca: t.cimd_ca.as_deref().map(|p| self.path(p)),
        }
    }
}

/// The scopes open clients may ask for when `registration_scopes` is not written: every scope of
/// the protected resources whose authorization server is `issuer`.
pub(super) fn default_scopes(open: &mut OpenClients, issuer: &str, routes: &[Route]) {
    if open.scopes.is_some() {
        return;
    }
    let mut out: Vec<String> = Vec::new();
    let served = routes
        .iter()
        .filter_map(|r| r.resource.as_deref())
        .filter(|p| p.authorization_servers.iter().any(|a| a == issuer));
    for s in served.flat_map(|p| p.scopes.iter()) {
        if !out.contains(s) {
            out.push(s.clone());
        }
    }
    open.scopes = Some(out);
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{compile, refused, BASE};

    fn ts(keys: &str) -> String {
        format!(
            "{BASE}\n[token_service]\nissuer = \"https://gw.test\"\naudience = [\"api\"]\nsigning_keys = [\"k.pem\"]\n{keys}\n[[routes]]\npath_prefix = \"/mcp\"\nupstream = \"u\"\nissuers = [\"self\"]\nmcp = true\nscopes_all = [\"mcp\"]\n[[routes.mcp_tools]]\nmatch = \"x\"\nscopes_all = [\"mcp:admin\"]\n"
        )
    }

    #[test]
    fn open_clients_default_to_the_served_scopes() {
        let c = compile(&ts("registration = \"open\"")).unwrap();
        let open = &c.token_service.unwrap().open_clients;
        assert_eq!(open.registration, super::Registration::Open);
        assert_eq!(open.scopes(), ["mcp", "mcp:admin"]);
        assert!(!open.metadata_documents);
        let c = compile(&ts(
            "registration_scopes = [\"a\"]\nclient_id_metadata_documents = true",
        ))
        .unwrap();
        let open = &c.token_service.unwrap().open_clients;
        assert_eq!(
            (open.scopes(), open.metadata_documents),
            (&["a".to_string()][..], true)
        );
    }

    #[test]
    fn registration_keys_are_checked() {
        refused(
            &ts("registration = \"anyone\""),
            "token_service.registration",
            "\"open\"",
        );
        refused(
            &ts("registration = \"token\""),
            "token_service.registration_token_env",
            "name the environment variable",
        );
        refused(
            &ts("registration = \"token\"\nregistration_token_env = \"GATEHOUSE_TEST_UNSET_VARIABLE\""),
            "token_service.registration_token_env",
            "is not set",
        );
        refused(
            &ts("registration_token_env = \"X\""),
            "token_service.registration_token_env",
            "registration = \"token\"",
        );
    }
}
