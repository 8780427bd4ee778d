//! Which subjects a client may name in a jwt-bearer assertion (`jwt_bearer_subjects`).

use crate::config::Client;

/// True when `text` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let middle: Vec<&str> = parts.collect();
    let Some((last, middle)) = middle.split_last() else {
        return rest.is_empty();
    };
    for mid in middle {
        match rest.find(mid) {
            Some(i) => rest = rest.get(i + mid.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// A client with no list may act only for itself; `["*"]` lets it act for anyone.
pub fn may_assert(client: &Client, subject: &str) -> bool {
    if client.jwt_bearer_subjects.is_empty() {
        return subject == client.client_id;
    }
    client.jwt_bearer_subjects.iter().any(|p| glob(p, subject))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob("svc-*", "svc-billing"));
        assert!(!glob("svc-*", "admin"));
        assert!(glob("*", "anything"));
        assert!(glob("user-42", "user-42"));
        assert!(!glob("user-42", "user-421"));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(!glob("a*b*c", "acb"));
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("*@example.com", "bob@example.com"));
    }
}
