//! The configuration's text with every secret replaced by `[redacted]`: the value of any key whose
//! name speaks of a secret or a password (but the names of environment variables that hold them),
//! any URL's user information and query, in values and in comments alike. Line by line, so
//! comments stay and a diff lines up.

const REDACTED: &str = "[redacted]";

/// Whether a key's value is secret: `secret_hash`, `password_hash`, `client_secret`, … but not
/// `secret_env` (the name of the variable that holds it).
fn secret_key(key: &str) -> bool {
    let k = key
        .trim_matches(|c| c == '"' || c == '\'')
        .to_ascii_lowercase();
    let k = k.rsplit('.').next().unwrap_or(&k);
    // a quoted key with escapes (`"pass\u0077ord_hash"`) may spell anything
    if k.contains('\\') {
        return true;
    }
    (k.contains("secret") || k.contains("password") || k == "token" || k.ends_with("_token"))
        && !k.ends_with("_env")
}

/// A URL's credentials replaced: its user information (`scheme://user:password@host`, or a token
/// alone before `@`) and its query, where API keys are passed.
pub fn url_secrets(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        let end = after
            .find(|c: char| c == '"' || c == '\'' || c == '`' || c.is_whitespace())
            .unwrap_or(after.len());
        let (url, tail) = after.split_at(end);
        let authority_end = url.find(['/', '?', '#']).unwrap_or(url.len());
        let (authority, path) = url.split_at(authority_end);
        match authority.rfind('@') {
            Some(at) => {
                out.push_str(REDACTED);
                out.push_str(authority.get(at..).unwrap_or(""));
            }
            None => out.push_str(authority),
        }
        match path.find('?') {
            Some(q) => {
                out.push_str(path.get(..=q).unwrap_or(""));
                out.push_str(REDACTED);
                if let Some(h) = path.get(q..).and_then(|p| p.find('#')) {
                    out.push_str(path.get(q + h..).unwrap_or(""));
                }
            }
            None => out.push_str(path),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

/// A configuration problem as the console shows it: without the line of the file a parse error
/// quotes (it may hold a secret), and with any URL's credentials replaced.
pub fn problem(text: &str) -> String {
    let text = text.replace('\n', " ");
    // `TOML parse error at line 3, column 17 | 3 | key = "…" | ^ message`: the position and the
    // message, never the quoted line
    let text = match (text.find(" | "), text.rfind('^')) {
        (Some(bar), Some(caret)) if bar < caret => format!(
            "{} —{}",
            text.get(..bar).unwrap_or("").trim_end(),
            text.get(caret + 1..).unwrap_or("").trim_start_matches('^')
        ),
        _ => text,
    };
    url_secrets(&redact_line(&text).0)
}

/// The byte at `i`, or 0 past the end.
fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

/// Part of a line, or nothing when the bounds are not on characters.
fn part(line: &str, from: usize, to: usize) -> &str {
    line.get(from..to.min(line.len())).unwrap_or("")
}

/// Where a quoted string that starts at `from` (on its quote) ends: the index after its closing
/// quote, or the line's end.
fn string_end(line: &str, from: usize) -> usize {
    let b = line.as_bytes();
    let q = at(b, from);
    let mut i = from + 1;
    while i < b.len() {
        let c = at(b, i);
        if c == b'\\' && q == b'"' {
            i += 2;
            continue;
        }
        if c == q {
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The end of a secret's value that starts at `v`, and whether it is a multi-line string that
/// does not end on this line.
fn value_end(line: &str, v: usize) -> (usize, bool) {
    let rest = part(line, v, line.len());
    let triple = if rest.starts_with("\"\"\"") {
        "\"\"\""
    } else if rest.starts_with("'''") {
        "'''"
    } else {
        return (string_end(line, v), false);
    };
    match part(line, v + 3, line.len()).find(triple) {
        Some(p) => (v + 6 + p, false),
        None => (line.len(), true),
    }
}

/// One line's `key = "value"` pairs (inline tables too) with the secret ones' values replaced.
/// Returns the line and whether a secret multi-line string opened on it.
fn redact_line(line: &str) -> (String, bool) {
    let b = line.as_bytes();
    let mut out = String::with_capacity(line.len());
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        let c = at(b, i);
        // a comment is read like the rest: a value commented out is still a secret
        if c == b'"' || c == b'\'' {
            i = string_end(line, i);
            continue;
        }
        if c != b'=' {
            i += 1;
            continue;
        }
        // the key before `=`
        let key_end = part(line, 0, i).trim_end().len();
        let before = part(line, 0, key_end);
        let key_start = before
            .rfind(|c: char| c.is_whitespace() || c == '{' || c == ',')
            .map_or(0, |p| p + 1);
        let key = part(line, key_start, key_end);
        let mut v = i + 1;
        while matches!(at(b, v), b' ' | b'\t') {
            v += 1;
        }
        let quoted = matches!(at(b, v), b'"' | b'\'');
        if secret_key(key) && quoted {
            out.push_str(part(line, copied, v));
            out.push('"');
            out.push_str(REDACTED);
            out.push('"');
            let (end, open) = value_end(line, v);
            if open {
                return (out, true);
            }
            copied = end;
            i = end;
            continue;
        }
        i += 1;
    }
    out.push_str(part(line, copied, line.len()));
    (out, false)
}

/// The whole text, redacted.
pub fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut open: Option<&str> = None;
    for line in text.lines() {
        if let Some(close) = open {
            // inside a secret's multi-line string: nothing of it is shown
            if line.contains(close) {
                open = None;
            }
            out.push_str("# [redacted]\n");
            continue;
        }
        let (l, opened) = redact_line(line);
        if opened {
            open = Some(if line.contains("'''") {
                "'''"
            } else {
                "\"\"\""
            });
        }
        out.push_str(&url_secrets(&l));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_go_and_their_variable_names_stay() {
        let text = "[[clients]]\nclient_id = \"svc\"\nsecret_hash = \"$argon2id$v=19$abc\" # the hash\n\
                    [[users]]\npassword_hash = '$2b$04$xyz'\n[[login_providers]]\nclient_secret_env = \"IDP_SECRET\"\n\
                    [store]\nurl = \"redis://gw:hunter2@redis:6379/0\"\n\
                    clients = [{ client_id = \"a\", client_secret = \"s3cr3t\\\"x\" }]\n\
                    name = \"password = 'no'\"\n";
        let r = redact(text);
        for secret in ["$argon2id$v=19$abc", "$2b$04$xyz", "hunter2", "s3cr3t"] {
            assert!(!r.contains(secret), "{secret} in\n{r}");
        }
        assert!(r.contains("secret_hash = \"[redacted]\" # the hash"));
        assert!(r.contains("client_secret_env = \"IDP_SECRET\""));
        assert!(r.contains("redis://[redacted]@redis:6379/0"));
        assert!(r.contains("client_id = \"a\", client_secret = \"[redacted]\" }"));
        assert!(
            r.contains("name = \"password = 'no'\""),
            "a string's text is not a key\n{r}"
        );
        assert_eq!(r.lines().count(), text.lines().count());
    }

    #[test]
    fn a_secret_over_several_lines_is_gone() {
        let text = "password_hash = \"\"\"\nline-one-secret\nline-two\"\"\"\nafter = 1\n";
        let r = redact(text);
        assert!(
            !r.contains("line-one-secret") && !r.contains("line-two"),
            "{r}"
        );
        assert!(r.contains("after = 1"));
        assert_eq!(r.lines().count(), 4);
    }

    #[test]
    fn tabs_comments_escaped_keys_and_urls_hide_nothing() {
        let text = "password_hash =\t\"tabbed-secret\"\n# secret_hash = \"old-secret\"\n\
                    \"pass\\u0077ord_hash\" = \"escaped-secret\"\n\
                    http_endpoint = \"https://tok3n@collector.example/v1?api_key=k3y#frag\"\n\
                    jwks_uri = \"https://idp.example/keys\"\n";
        let r = redact(text);
        for secret in [
            "tabbed-secret",
            "old-secret",
            "escaped-secret",
            "tok3n",
            "k3y",
        ] {
            assert!(!r.contains(secret), "{secret} in\n{r}");
        }
        assert!(
            r.contains("https://[redacted]@collector.example/v1?[redacted]#frag"),
            "{r}"
        );
        assert!(r.contains("jwks_uri = \"https://idp.example/keys\""));
    }

    #[test]
    fn a_problem_never_quotes_the_line() {
        let p = "TOML parse error at line 3, column 1\n  |\n3 | password_hash = \"$2b$04$abc\"\n  | ^\nduplicate key";
        let shown = problem(p);
        assert!(!shown.contains("$2b$04$abc"), "{shown}");
        assert!(
            shown.starts_with("TOML parse error at line 3, column 1"),
            "{shown}"
        );
        assert!(shown.ends_with("duplicate key"), "{shown}");
        assert_eq!(
            problem("audit.http_endpoint: https://u:pw@x.example/ must not carry a user"),
            "audit.http_endpoint: https://[redacted]@x.example/ must not carry a user"
        );
    }
}
