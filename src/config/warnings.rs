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
        out
    }
}
