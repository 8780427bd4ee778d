//! Settings that load but deserve a second look: printed by `gatehouse check` and logged at start.

use super::Config;

impl Config {
    /// One line per setting that is allowed but risky, naming its key.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, c) in self.clients.iter().enumerate() {
            if c.jwt_bearer_subjects.iter().any(|s| s == "*") {
                out.push(format!(
                    "clients[{i}].jwt_bearer_subjects: \"*\" lets {:?} act for any subject, administrators included",
                    c.client_id
                ));
            }
        }
        if self.server.listen_tls.is_empty() {
            if let Some(r) = self
                .routes
                .iter()
                .find(|r| r.auth == super::AuthMode::Session)
            {
                out.push(format!(
                    "routes[{}].auth: session cookies are Secure, so browsers keep them only over https: serve this route through a TLS listener or a TLS-terminating balancer",
                    r.id
                ));
            }
        }
        let shared_store = matches!(self.store, super::StoreBackend::Redis(_));
        if shared_store && !self.login_providers.is_empty() && self.sessions.state_secret.is_none()
        {
            out.push("sessions.state_secret_env: not set, so each gateway seals sign-in state with a key of its own and a sign-in through a provider must come back to the gateway it started on: give every replica the same secret".into());
        }
        if shared_store && self.dpop.nonce && self.sessions.state_secret.is_none() {
            out.push("token_service.dpop_nonce: each gateway keys its DPoP nonces with a secret of its own, so a nonce one replica hands out is refused by the others: set sessions.state_secret_env to the same secret on every replica".into());
        }
        out
    }
}
