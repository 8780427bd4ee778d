//! A way to sign in: the gateway's own users, or an external OpenID provider named in `[[login_providers]]`.

/// How a session route lets people sign in, and which way a session was opened. Written as text
/// in the configuration (`login = ["local", "corp"]`), the sign-in URL and the session store:
/// `"local"` or the provider's name, which may not be `"local"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum LoginWay {
    /// the gateway's `[[users]]`, with a password on its sign-in page
    Local,
    /// an external OpenID provider, by its `[[login_providers]]` name
    Provider(String),
}

/// The text of `LoginWay::Local`, reserved: no provider may take it.
const LOCAL: &str = "local";

impl LoginWay {
    /// The way a name stands for: `"local"`, else the provider of that name.
    pub fn parse(name: &str) -> LoginWay {
        match name {
            LOCAL => LoginWay::Local,
            other => LoginWay::Provider(other.to_string()),
        }
    }

    /// The text form, as the configuration, the sign-in URL and stored sessions write it.
    pub fn as_str(&self) -> &str {
        match self {
            LoginWay::Local => LOCAL,
            LoginWay::Provider(name) => name,
        }
    }

    /// True for the name of the gateway's own users (reserved for them).
    pub fn is_local_name(name: &str) -> bool {
        name == LOCAL
    }
}

impl From<String> for LoginWay {
    fn from(name: String) -> LoginWay {
        match name.as_str() {
            LOCAL => LoginWay::Local,
            _ => LoginWay::Provider(name),
        }
    }
}

impl std::fmt::Display for LoginWay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the text a session record keeps (`SessionRecord::provider`) without allocating.
impl PartialEq<str> for LoginWay {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<String> for LoginWay {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_forms_round_trip_as_stored_sessions_keep_them() {
        assert_eq!(LoginWay::parse("local"), LoginWay::Local);
        assert_eq!(LoginWay::from("local".to_string()), LoginWay::Local);
        assert_eq!(LoginWay::parse("corp"), LoginWay::Provider("corp".into()));
        assert_eq!(LoginWay::Local.as_str(), "local");
        assert_eq!(LoginWay::Provider("corp".into()).to_string(), "corp");
        for text in ["local", "corp", "Local"] {
            assert_eq!(LoginWay::parse(text).as_str(), text);
        }
        // a provider cannot pass for the gateway's own users, whatever its case
        assert_ne!(LoginWay::parse("Local"), LoginWay::Local);
    }

    #[test]
    fn compares_with_stored_text() {
        let stored = String::from("local");
        assert!(LoginWay::Local == stored);
        assert!(LoginWay::Provider("corp".into()) != stored);
        assert!(LoginWay::Provider("corp".into()) == *"corp");
        assert!(LoginWay::is_local_name("local") && !LoginWay::is_local_name("corp"));
    }
}
