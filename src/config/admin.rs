//! Compiles `[admin]`: the operators' console on the admin listener, who may use it, and whether it
//! may act or only show.

use super::*;
use serde::Deserialize;

/// `[admin]` as written. (Its raw mirror lives here with its compiler: raw.rs is at its size.)
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct RawAdmin {
    pub console: bool,
    pub console_roles: Vec<String>,
    pub console_read_only: bool,
    pub console_session_ttl: String,
    pub console_idle_timeout: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            console: false,
            console_roles: vec!["gatehouse-admin".into()],
            console_read_only: false,
            console_session_ttl: "8h".into(),
            console_idle_timeout: "30m".into(),
        }
    }
}

/// The compiled `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AdminSettings {
    /// `/console` answers on the admin listener
    pub console: bool,
    /// a person signed in to the console must hold one of these roles
    pub console_roles: Vec<String>,
    /// the console shows and never acts
    pub console_read_only: bool,
    /// a console session's whole life
    pub session_ttl: Duration,
    /// a console session unused this long ends
    pub idle_timeout: Duration,
}

impl Compiler {
    pub(super) fn admin(
        &mut self,
        a: RawAdmin,
        server: &ServerSettings,
        users: usize,
    ) -> AdminSettings {
        let session_ttl = self.duration("admin.console_session_ttl", &a.console_session_ttl);
        let idle_timeout = self.duration("admin.console_idle_timeout", &a.console_idle_timeout);
        if session_ttl.is_zero() || idle_timeout.is_zero() {
            self.err(
                "admin.console_session_ttl",
                "the console's session life and idle timeout must be longer than zero",
            );
        }
        if a.console {
            if server.admin_listen.is_none() {
                self.err(
                    "admin.console",
                    "needs [server] admin_listen: the console is served there",
                );
            }
            if users == 0 {
                self.err(
                    "admin.console",
                    "needs [[users]] with [token_service]: operators sign in to it as the gateway's own users",
                );
            }
            if a.console_roles.iter().all(|r| r.trim().is_empty()) {
                self.err(
                    "admin.console_roles",
                    "names no role: nobody could sign in to the console",
                );
            }
        }
        AdminSettings {
            console: a.console,
            console_roles: a
                .console_roles
                .into_iter()
                .filter(|r| !r.trim().is_empty())
                .collect(),
            console_read_only: a.console_read_only,
            session_ttl,
            idle_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{compile, refused, BASE, TOKENS};

    const USER: &str = r#"
[[users]]
username = "ops@example.com"
password_hash = "$2b$04$O2BS3M8z8bsIiSYgXwoHP.XrixdAp8c3tq8hBrBs0yfOQM5wqbQ8G"
roles = ["gatehouse-admin"]
"#;

    fn admin_listen(base: &str) -> String {
        base.replace("admin_listen = \"\"", "admin_listen = \"127.0.0.1:0\"")
    }

    #[test]
    fn off_by_default_with_the_admin_role() {
        let c = compile(BASE).unwrap();
        assert!(!c.admin.console);
        assert_eq!(c.admin.console_roles, ["gatehouse-admin"]);
    }

    #[test]
    fn needs_the_admin_listener_and_people_to_sign_in() {
        refused(
            &format!("{BASE}\n[admin]\nconsole = true\n"),
            "admin.console",
            "admin_listen",
        );
        refused(
            &format!("{}\n[admin]\nconsole = true\n", admin_listen(BASE)),
            "admin.console",
            "[[users]]",
        );
        refused(
            &format!(
                "{}{TOKENS}{USER}\n[admin]\nconsole = true\nconsole_roles = [\"\"]\n",
                admin_listen(BASE)
            ),
            "admin.console_roles",
            "names no role",
        );
        refused(
            &format!(
                "{}{TOKENS}{USER}\n[admin]\nconsole_idle_timeout = \"soon\"\n",
                admin_listen(BASE)
            ),
            "admin.console_idle_timeout",
            "invalid duration",
        );
    }
}
