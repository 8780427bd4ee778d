//! The pages people see: sign-in, provider choice and messages, rendered on the server as one
//! branded card with no script and nothing loaded from elsewhere.

/// The organisation's look, from `[sessions]`.
#[derive(Debug, Clone)]
pub struct Brand {
    pub name: String,
    /// a `data:` URI
    pub logo: Option<String>,
    /// the organisation's own page around the card: HTML with `{{title}}`, `{{organisation}}`,
    /// `{{logo}}`, `{{style}}` and `{{content}}`
    pub template: Option<std::sync::Arc<str>>,
}

/// The placeholder a page template must have.
pub const CONTENT: &str = "{{content}}";

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Headers every page carries; `form_action` adds origins a form may post or redirect to.
pub fn page_headers(form_action: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-frame-options", "DENY".into()),
        ("referrer-policy", "no-referrer".into()),
        ("x-content-type-options", "nosniff".into()),
        (
            "content-security-policy",
            format!(
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'{form_action}; frame-ancestors 'none'; base-uri 'none'"
            ),
        ),
    ]
}

const STYLE: &str = ":root{color-scheme:light dark;--bg:#f3f4f6;--card:#fff;--fg:#111827;--muted:#6b7280;--line:#d1d5db;--accent:#2563eb;--accent-fg:#fff;--err-bg:#fef2f2;--err:#b91c1c}\
@media (prefers-color-scheme:dark){:root{--bg:#0f172a;--card:#1e293b;--fg:#f1f5f9;--muted:#94a3b8;--line:#334155;--accent:#3b82f6;--err-bg:#450a0a;--err:#fca5a5}}\
*{box-sizing:border-box}body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;padding:1rem}\
main{width:100%;max-width:24rem;background:var(--card);border:1px solid var(--line);border-radius:12px;padding:2rem;box-shadow:0 10px 30px rgba(0,0,0,.08)}\
header{text-align:center;margin-bottom:1.5rem}header img{max-height:48px;max-width:100%}.org{font-weight:600;color:var(--muted);margin:.5rem 0 0}\
h1{font-size:1.5rem;margin:.25rem 0 0}.app{color:var(--muted);margin:.25rem 0 0}\
label{display:block;font-weight:500;margin:1rem 0 .35rem}input{width:100%;padding:.65rem .75rem;border:1px solid var(--line);border-radius:8px;background:transparent;color:inherit;font:inherit}\
input:focus,button:focus,a:focus{outline:3px solid var(--accent);outline-offset:2px}\
button,.button{display:block;width:100%;margin-top:1.5rem;padding:.7rem;border:0;border-radius:8px;background:var(--accent);color:var(--accent-fg);font:inherit;font-weight:600;text-align:center;text-decoration:none;cursor:pointer}\
.choices .button{margin-top:.75rem}\
.error{background:var(--err-bg);color:var(--err);border-radius:8px;padding:.75rem;margin:0 0 1rem}p{margin:.5rem 0}";

/// One choice on the provider page: its label and where it starts.
pub struct Choice {
    pub label: String,
    pub href: String,
}

/// What a sign-in page shows.
#[derive(Default)]
pub struct SignInForm<'a> {
    /// where the form posts
    pub action: &'a str,
    /// hidden fields carried through the sign-in (request parameters, the CSRF token)
    pub hidden: Vec<(&'a str, String)>,
    pub username: &'a str,
    /// the application being entered, shown under the title
    pub app: Option<&'a str>,
    /// a message for the person: wrong password, lockout, expired form
    pub error: &'a str,
}

fn card(brand: &Brand, title: &str, body: &str) -> String {
    let logo = brand
        .logo
        .as_deref()
        .map(|l| format!("<img src=\"{}\" alt=\"\">", esc(l)))
        .unwrap_or_default();
    if let Some(t) = &brand.template {
        // the card's own text is escaped; the template is the operator's, taken as written
        return t
            .replace("{{title}}", &esc(title))
            .replace("{{organisation}}", &esc(&brand.name))
            .replace("{{logo}}", &logo)
            .replace("{{style}}", STYLE)
            .replace(CONTENT, &format!("<h1>{}</h1>{body}", esc(title)));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{title} · {org}</title><style>{STYLE}</style></head><body><main>\
         <header>{logo}<p class=\"org\">{org}</p><h1>{title}</h1></header>{body}</main></body></html>",
        title = esc(title),
        org = esc(&brand.name),
    )
}

fn error_box(error: &str) -> String {
    if error.is_empty() {
        String::new()
    } else {
        format!("<p class=\"error\" role=\"alert\">{}</p>", esc(error))
    }
}

/// The sign-in form for the gateway's own users.
pub fn sign_in(brand: &Brand, f: &SignInForm<'_>) -> String {
    let mut body = String::new();
    if let Some(app) = f.app {
        body.push_str(&format!(
            "<p class=\"app\">to continue to <strong>{}</strong></p>",
            esc(app)
        ));
    }
    body.push_str(&error_box(f.error));
    body.push_str(&format!(
        "<form method=\"post\" action=\"{}\">",
        esc(f.action)
    ));
    for (k, v) in &f.hidden {
        body.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
            esc(k),
            esc(v)
        ));
    }
    body.push_str(&format!(
        "<label for=\"username\">Email</label><input id=\"username\" name=\"username\" type=\"text\" \
         autocomplete=\"username\" autocapitalize=\"none\" spellcheck=\"false\" required autofocus value=\"{}\">\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" \
         autocomplete=\"current-password\" required><button type=\"submit\">Sign in</button></form>",
        esc(f.username)
    ));
    card(brand, "Sign in", &body)
}

/// The choice between several ways to sign in.
pub fn choose(brand: &Brand, app: Option<&str>, choices: &[Choice]) -> String {
    let mut body = String::new();
    if let Some(app) = app {
        body.push_str(&format!(
            "<p class=\"app\">to continue to <strong>{}</strong></p>",
            esc(app)
        ));
    }
    body.push_str("<nav class=\"choices\" aria-label=\"Ways to sign in\">");
    for c in choices {
        body.push_str(&format!(
            "<a class=\"button\" href=\"{}\">Sign in with {}</a>",
            esc(&c.href),
            esc(&c.label)
        ));
    }
    body.push_str("</nav>");
    card(brand, "Sign in", &body)
}

/// A message page (an error or a signed-out notice), with a link to go on.
pub fn message(brand: &Brand, title: &str, text: &str, link: Option<(&str, &str)>) -> String {
    let mut body = format!("<p role=\"status\">{}</p>", esc(text));
    if let Some((href, label)) = link {
        body.push_str(&format!(
            "<a class=\"button\" href=\"{}\">{}</a>",
            esc(href),
            esc(label)
        ));
    }
    card(brand, title, &body)
}

/// A question answered by one button that posts to `action` (e.g. a sign-out another site linked to).
pub fn confirm(brand: &Brand, title: &str, text: &str, action: &str, button: &str) -> String {
    let body = format!(
        "<p>{}</p><form method=\"post\" action=\"{}\"><button type=\"submit\">{}</button></form>",
        esc(text),
        esc(action),
        esc(button)
    );
    card(brand, title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brand() -> Brand {
        Brand {
            name: "Acme <Corp>".into(),
            logo: None,
            template: None,
        }
    }

    #[test]
    fn an_organisation_may_bring_its_own_page() {
        let b = Brand {
            template: Some(
                "<html><head><style>{{style}}</style><title>{{title}}</title></head><body class=acme>{{logo}}<b>{{organisation}}</b><main>{{content}}</main></body></html>".into(),
            ),
            ..brand()
        };
        let page = message(&b, "Sign <out>", "bye", None);
        assert!(page.starts_with("<html><head><style>:root{"));
        assert!(page.contains("<title>Sign &lt;out&gt;</title>"));
        assert!(page.contains("<b>Acme &lt;Corp&gt;</b>"));
        assert!(page.contains("<main><h1>Sign &lt;out&gt;</h1><p role=\"status\">bye</p></main>"));
    }

    #[test]
    fn everything_written_into_a_page_is_escaped() {
        let page = sign_in(
            &brand(),
            &SignInForm {
                action: "/oauth/login",
                hidden: vec![("rd", "/x\"><script>".into())],
                username: "<b>",
                app: Some("a&b"),
                error: "wrong <password>",
            },
        );
        assert!(page.contains("Acme &lt;Corp&gt;"));
        assert!(page.contains("value=\"/x&quot;&gt;&lt;script&gt;\""));
        assert!(page.contains("value=\"&lt;b&gt;\""));
        assert!(page.contains("<strong>a&amp;b</strong>"));
        assert!(page.contains("role=\"alert\">wrong &lt;password&gt;"));
        assert!(!page.contains("<script>"));
        assert!(page.contains("<label for=\"password\">"));
    }

    #[test]
    fn the_choice_page_links_every_provider() {
        let page = choose(
            &brand(),
            None,
            &[
                Choice {
                    label: "corp".into(),
                    href: "/oauth/login?provider=corp&rd=%2F".into(),
                },
                Choice {
                    label: "email and password".into(),
                    href: "/oauth/login?via=local&rd=%2F".into(),
                },
            ],
        );
        assert!(page.contains("href=\"/oauth/login?provider=corp&amp;rd=%2F\""));
        assert!(page.contains("Sign in with email and password"));
        assert!(page.contains("prefers-color-scheme:dark"));
    }

    #[test]
    fn pages_load_nothing_from_elsewhere() {
        let csp = &page_headers("")[3].1;
        assert!(csp.starts_with("default-src 'none'"));
        assert!(csp.contains("frame-ancestors 'none'"));
    }
}
