//! The console's configuration page: the running configuration with its secrets redacted, the file
//! on disk checked as `gatehouse check` would, the difference between the two, and "reload".

use super::redact::{problem, redact};
use super::{page, Asked};
use crate::config::Config;
use crate::pages::esc;
use similar::{ChangeTag, TextDiff};

/// The lines that differ between two texts with a few around each change, as HTML.
pub fn diff(running: &str, on_disk: &str) -> String {
    let d = TextDiff::from_lines(running, on_disk);
    let mut out = String::new();
    for group in d.grouped_ops(2) {
        for op in group {
            for change in d.iter_changes(&op) {
                let (class, sign) = match change.tag() {
                    ChangeTag::Delete => ("del", '-'),
                    ChangeTag::Insert => ("add", '+'),
                    ChangeTag::Equal => ("", ' '),
                };
                out.push_str(&format!(
                    "<span class=\"{class}\">{sign} {}</span>\n",
                    esc(change.value().trim_end_matches('\n'))
                ));
            }
        }
        out.push_str("<span class=\"muted\">…</span>\n");
    }
    out
}

pub fn page(a: &Asked<'_>) -> String {
    let c = &a.shared.config;
    let running = redact(&c.text);
    let mut body = page::notice(
        a.query.get("notice").map(String::as_str),
        a.query.get("n").map(String::as_str),
    );
    let (check, disk) = match std::fs::read_to_string(&c.file) {
        Err(e) => (
            format!(
                "<p class=\"error\">The file cannot be read: {}</p>",
                esc(&e.kind().to_string())
            ),
            None,
        ),
        Ok(text) => {
            let check = match Config::from_toml(&text, &c.file) {
                Ok(_) => "<p>The file on disk has no problems.</p>".to_string(),
                Err(e) => {
                    let items: Vec<String> = e
                        .problems
                        .iter()
                        .map(|p| format!("<li>{}</li>", esc(&problem(&p.to_string()))))
                        .collect();
                    format!(
                        "<p class=\"error\">The file on disk has {} problem(s); a reload would be refused:</p><ul>{}</ul>",
                        e.problems.len(),
                        items.join("")
                    )
                }
            };
            (check, Some(redact(&text)))
        }
    };
    let changes = match &disk {
        Some(d) if *d == running => {
            "<p class=\"muted\">The file on disk is the one running.</p>".to_string()
        }
        Some(d) => format!("<pre class=\"diff\">{}</pre>", diff(&running, d)),
        None => String::new(),
    };
    let reload = if a.read_only() {
        String::new()
    } else {
        page::form(
            "/console/config/reload",
            &a.op.csrf,
            &[],
            "Reload the file",
            "",
        )
    };
    body.push_str(&format!(
        "<section><h2>The file on disk</h2>{check}<h2>Changes from the running configuration</h2>{changes}{reload}</section>\
         <section><h2>Running: generation {}, <code>{}</code></h2><pre>{}</pre></section>",
        a.reloader.generation(),
        esc(&c.file_hash),
        esc(&running)
    ));
    page::frame("Configuration", "/console/config", Some(&a.viewer()), &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diff_shows_changes_with_their_context() {
        let d = diff("a\nb\nc\n", "a\nB\nc\n");
        assert!(d.contains("<span class=\"del\">- b</span>"));
        assert!(d.contains("<span class=\"add\">+ B</span>"));
        assert!(d.contains("<span class=\"\">  a</span>"));
        assert_eq!(diff("same\n", "same\n"), "");
    }
}
