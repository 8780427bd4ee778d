//! The operators' console at `/console` on the admin listener: pages drawn on the server to watch
//! the gateway live (metrics, issuers, upstreams, sessions, tokens, refusals, configuration) and
//! act on it, for the gateway's own users holding a console role.

mod access;
mod actions;
mod chart;
mod config_view;
mod events;
pub mod history;
mod lockouts;
mod overview;
mod page;
mod people;
mod redact;
mod sign_in;

use crate::audit::recent::Recent;
use crate::config::AdminSettings;
use crate::proxy::Shared;
use crate::wire::form::{self, FormError, Params};
use access::{ConsoleSessions, Operator};
use http::Response;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

/// What the console asks of the running server: its configuration generation, and a reload.
#[async_trait::async_trait]
pub trait Server: Send + Sync {
    fn generation(&self) -> u64;
    /// reloads refused so far
    fn reload_failures(&self) -> u64;
    /// Reloads the configuration file: the new generation, or how many problems refused it.
    async fn reload_by_console(&self) -> Result<u64, usize>;
}

/// The console's state that outlives configuration generations.
pub struct Console {
    sessions: ConsoleSessions,
    pub history: Arc<history::History>,
    events: Arc<Recent>,
    /// seconds since the epoch when the gateway started
    started: u64,
}

/// What a page or an action is given: the generation serving, who asks, and their form fields.
pub struct Asked<'a> {
    pub shared: Arc<Shared>,
    pub reloader: &'a dyn Server,
    pub op: Arc<Operator>,
    pub query: Params,
    pub form: Params,
}

impl Asked<'_> {
    pub fn param(&self, k: &str) -> &str {
        self.form
            .get(k)
            .or_else(|| self.query.get(k))
            .map_or("", String::as_str)
    }

    pub fn read_only(&self) -> bool {
        self.shared.config.admin.console_read_only
    }

    pub fn viewer(&self) -> page::Viewer<'_> {
        page::Viewer {
            username: &self.op.username,
            csrf: &self.op.csrf,
            read_only: self.read_only(),
        }
    }
}

/// The most a console form may send.
const MAX_FORM: usize = 16 * 1024;

/// The form a POST sends, read with the gateway's one form parser (a repeated parameter is refused).
async fn read_form(session: &mut ServerSession) -> Result<Params, FormError> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_FORM => {
                return Err(FormError::TooLarge)
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return form::parse(&body),
            Err(_) => return Err(FormError::Unreadable),
        }
    }
}

fn bad_form(e: FormError) -> Response<Vec<u8>> {
    let status = if e == FormError::TooLarge { 413 } else { 400 };
    let text = format!(
        "<p class=\"error\">{}</p>",
        crate::pages::esc(e.description())
    );
    page::html(status, page::frame("Refused", "", None, &text))
}

impl Console {
    pub fn new(settings: &AdminSettings, events: Arc<Recent>, started: u64) -> Console {
        Console {
            sessions: ConsoleSessions::new(settings.session_ttl, settings.idle_timeout),
            history: Arc::default(),
            events,
            started,
        }
    }

    /// Takes a reading of the metrics for the charts.
    pub fn sample(&self, shared: &Shared) {
        self.history
            .record(shared.clock.now_secs(), overview::totals(shared));
    }

    /// Answers a request whose path starts with `/console`.
    pub async fn answer(
        &self,
        shared: Arc<Shared>,
        reloader: &dyn Server,
        session: &mut ServerSession,
    ) -> Response<Vec<u8>> {
        let req = session.req_header();
        let path = req.uri.path().to_string();
        let post = req.method == http::Method::POST;
        let query = match form::parse(req.uri.query().unwrap_or("").as_bytes()) {
            Ok(q) => q,
            Err(e) => return bad_form(e),
        };
        match path.as_str() {
            "/console/static/console.css" => {
                return page::answer(200, "text/css; charset=utf-8", page::STYLE.into())
            }
            "/console/static/console.js" => {
                return page::answer(200, "text/javascript; charset=utf-8", page::SCRIPT.into())
            }
            _ => {}
        }
        let form = if post {
            match read_form(session).await {
                Ok(f) => f,
                Err(e) => return bad_form(e),
            }
        } else {
            Params::new()
        };
        if path == "/console/sign-in" {
            return sign_in::answer(self, &shared, session, post, &form).await;
        }
        let part = query.contains_key("part");
        let Some(op) = self.operator(&shared, session, !part) else {
            // a page's live part asks with fetch: a redirect would put the sign-in page inside it
            if part {
                return page::html(401, String::new());
            }
            return if post {
                page::html(
                    401,
                    page::frame(
                        "Signed out",
                        "",
                        None,
                        "<p>Sign in again: <a href=\"/console/sign-in\">sign in</a>.</p>",
                    ),
                )
            } else {
                page::see_other("/console/sign-in", None)
            };
        };
        let asked = Asked {
            shared,
            reloader,
            op,
            query,
            form,
        };
        if post {
            return actions::act(self, session, &asked, &path).await;
        }
        self.page(&asked, &path).await
    }

    /// The operator the request's session names, if they still hold a console role (a reload that
    /// takes it away, or removes them, ends their console sessions).
    fn operator(
        &self,
        shared: &Shared,
        session: &ServerSession,
        active: bool,
    ) -> Option<Arc<Operator>> {
        let now = shared.clock.now_secs();
        let op = self.sessions.find(session.req_header(), now, active)?;
        let still = shared
            .tokens
            .as_ref()
            .and_then(|t| t.user_named(&op.username))
            .filter(|u| u.subject == op.subject)
            .is_some_and(|u| access::may_use(&u.roles, &shared.config.admin.console_roles));
        if !still {
            self.sessions.end_subject(&op.subject);
            return None;
        }
        Some(op)
    }

    async fn page(&self, a: &Asked<'_>, path: &str) -> Response<Vec<u8>> {
        let part = a.query.contains_key("part");
        let body = match path {
            "/console" if part => return page::html(200, overview::charts(self)),
            "/console" => overview::page(self, a),
            "/console/issuers" => overview::issuers(a).await,
            "/console/upstreams" => overview::upstreams(a),
            "/console/sessions" => people::page(a).await,
            "/console/tokens" => people::tokens(self, a).await,
            "/console/events" if part => return page::html(200, events::table(self, a)),
            "/console/events" => events::page(self, a),
            "/console/config" => config_view::page(a),
            _ => return page::html(404, page::frame("Not found", "", Some(&a.viewer()), "")),
        };
        page::html(200, body)
    }
}
