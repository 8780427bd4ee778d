//! Which subjects a client may name in a jwt-bearer assertion (`jwt_bearer_subjects`).

use crate::config::Client;

/// True when `text` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    true
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
