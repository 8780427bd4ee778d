//! The operators' listener: health, readiness, metrics, reload and session revocation, a small
//! HTTP service of its own.

use crate::observe::metrics::Sample;
use crate::proxy::Shared;
use crate::respond::{AsAnswer, Rejection};
use crate::server::reload::{Outcome, ReloadBy, Reloader};
use crate::upstream::UpstreamRuntime;
use arc_swap::ArcSwap;
use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct Admin {
    pub shared: Arc<ArcSwap<Shared>>,
    pub reloader: Arc<Reloader>,
    /// the operators' console, with `[admin] console`
    pub console: Option<Arc<crate::console::Console>>,
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Vec<u8>> {
    let mut r = Response::new(body.into_bytes());
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    let h = r.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    let len = r.body().len();
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}

#[async_trait]
impl crate::console::Server for Reloader {
    fn generation(&self) -> u64 {
        Reloader::generation(self)
    }

    fn reload_failures(&self) -> u64 {
        self.failures()
    }

    async fn reload_by_console(&self) -> Result<u64, usize> {
        match self.reload(ReloadBy::Console).await {
            Outcome::Applied { generation, .. } => Ok(generation),
            Outcome::Refused(problems) => Err(problems.len()),
        }
    }
}

/// Whether a request may reach the admin listener. The Host must be an IP address, `localhost`, or
/// one of `[server] admin_hosts`: a page whose own name resolves here (DNS rebinding) cannot read
/// `/metrics` or `/config`. A request that may change something comes from no browser, or from a
/// page of this very listener (`Origin` its own, `Sec-Fetch-Site` never another site): a cross-site
/// form cannot reload the gateway or end sessions.
fn admitted(req: &http::request::Parts, names: &[String]) -> Result<(), Box<Response<Vec<u8>>>> {
    let host = req
        .headers
        .get(http::header::HOST)
        // a Host that is not text is no host: "" fails the check below
        .map(|h| h.to_str().unwrap_or(""))
        .or_else(|| req.uri.authority().map(|a| a.as_str()));
    if let Some(host) = host {
        let name = crate::wire::path::normalise_host(host);
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let known = name.parse::<std::net::IpAddr>().is_ok()
            || name == "localhost"
            || names.iter().any(|n| n == name);
        if !known || !crate::wire::path::host_is_valid(host) {
            return Err(Box::new(refusal(
                421,
                "misdirected_request",
                "this listener answers only its IP addresses, localhost and [server] admin_hosts",
            )));
        }
    }
    if matches!(req.method, http::Method::GET | http::Method::HEAD) {
        return Ok(());
    }
    let cross_site = req
        .headers
        .get("sec-fetch-site")
        .is_some_and(|v| !matches!(v.as_bytes(), b"same-origin" | b"none"));
    let foreign_origin = match (req.headers.get(http::header::ORIGIN), host) {
        (None, _) => false,
        (Some(o), Some(h)) => o.as_bytes() != format!("http://{h}").as_bytes(),
        (Some(_), None) => true,
    };
    if cross_site || foreign_origin {
        return Err(Box::new(refusal(
            403,
            "cross_site_request",
            "the admin listener takes no writes from another site's pages",
        )));
    }
    Ok(())
}

fn refusal(status: u16, code: &str, description: &str) -> Response<Vec<u8>> {
    respond(
        status,
        "application/json",
        serde_json::json!({"error": code, "error_description": description}).to_string(),
    )
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let shared = self.shared.load_full();
        if let Err(refused) = admitted(session.req_header(), &shared.config.server.admin_hosts) {
            return *refused;
        }
        let post = session.req_header().method == http::Method::POST;
        let path = session.req_header().uri.path();
        if path == "/console" || path.starts_with("/console/") {
            if let Some(console) = &self.console {
                return console
                    .answer(shared, self.reloader.as_ref(), session)
                    .await;
            }
        }
        match session.req_header().uri.path() {
            // Reloads from this (loopback, operators') listener: what `gatehouse reload` calls.
            "/reload" if post => match self.reloader.reload(ReloadBy::Admin).await {
                Outcome::Applied {
                    generation,
                    needs_restart,
                } => respond(
                    200,
                    "application/json",
                    serde_json::json!({"status": "reloaded", "generation": generation,
                        "needs_restart": needs_restart})
                    .to_string(),
                ),
                Outcome::Refused(problems) => respond(
                    422,
                    "application/json",
                    serde_json::json!({"status": "refused", "problems": problems}).to_string(),
                ),
            },
            "/sessions/revoke" if post => self.revoke_sessions(&shared, session).await,
            "/tokens/revoke" if post => revoke_tokens(&shared, session).await,
            "/config" => respond(
                200,
                "application/json",
                serde_json::json!({"generation": self.reloader.generation(),
                    "hash": shared.config.file_hash, "file": shared.config.file.display().to_string(),
                    "reload_failures": self.reloader.failures()})
                .to_string(),
            ),
            "/healthz" => respond(200, "application/json", r#"{"status":"ok"}"#.into()),
            "/ready" => {
                // issuers without keys do not make the gateway unready (its other routes work),
                // but operators see which ones answer 503 for now
                let without = shared.verifier.jwks.issuers_without_keys().await;
                match self.not_ready().await {
                    None => respond(
                        200,
                        "application/json",
                        serde_json::json!({"status": "ready", "issuers_without_keys": without})
                            .to_string(),
                    ),
                    Some(reason) => respond(
                        503,
                        "application/json",
                        serde_json::json!({"status": "not ready", "reason": reason,
                            "issuers_without_keys": without})
                        .to_string(),
                    ),
                }
            }
            "/metrics" => respond(
                200,
                "text/plain; version=0.0.4",
                shared.metrics.render(gauges(&shared, &self.reloader)),
            ),
            _ => {
                let a = Rejection::NotFound.answer();
                respond(a.status, "application/json", a.body())
            }
        }
    }
}

/// The `?subject=` an operator's revocation names.
fn subject_of(session: &ServerSession) -> Option<String> {
    session
        .req_header()
        .uri
        .query()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "subject")
                .map(|(_, v)| v.into_owned())
        })
        .filter(|s| !s.is_empty())
}

fn subject_missing(path: &str) -> Response<Vec<u8>> {
    refusal(
        400,
        "invalid_request",
        &format!("name the subject: {path}?subject=..., with the token service on"),
    )
}

fn store_unavailable() -> Response<Vec<u8>> {
    refusal(
        503,
        "temporarily_unavailable",
        "the store cannot be reached",
    )
}

/// Ends every refresh-token family of `?subject=` and the access tokens issued from them, on every
/// gateway sharing the store.
async fn revoke_tokens(shared: &Shared, session: &ServerSession) -> Response<Vec<u8>> {
    let (Some(subject), Some(tokens)) = (subject_of(session), shared.tokens.as_ref()) else {
        return subject_missing("/tokens/revoke");
    };
    match tokens.revoke_subject(&subject).await {
        Ok(n) => {
            tracing::info!(target: "gatehouse::token", families = n, "an operator ended a subject's refresh tokens");
            shared
                .audit
                .emit(|| crate::audit::Event::subject_tokens_revoked("admin", &subject, n));
            respond(
                200,
                "application/json",
                serde_json::json!({"families": n}).to_string(),
            )
        }
        Err(_) => store_unavailable(),
    }
}

impl Admin {
    /// Ends every browser session of `?subject=`, on every gateway sharing the store.
    async fn revoke_sessions(&self, shared: &Shared, session: &ServerSession) -> Response<Vec<u8>> {
        let (Some(subject), Some(tokens)) = (subject_of(session), shared.tokens.as_ref()) else {
            return subject_missing("/sessions/revoke");
        };
        match tokens
            .sessions
            .end_all(crate::store::SessionsOf::Subject(&subject), "admin")
            .await
        {
            Ok(n) => {
                tracing::info!(target: "gatehouse::sessions", ended = n, "an operator ended a subject's sessions");
                respond(
                    200,
                    "application/json",
                    serde_json::json!({"ended": n}).to_string(),
                )
            }
            Err(_) => store_unavailable(),
        }
    }

    /// Why this gateway should not take traffic now: its store cannot answer, or it does not know
    /// every revocation yet. `/healthz` stays process liveness.
    async fn not_ready(&self) -> Option<&'static str> {
        let shared = self.shared.load_full();
        if !shared.revocations_loaded.get() {
            return Some("revocations are not loaded from the store yet");
        }
        let store = shared.store.clone()?;
        let ping = crate::store::run_blocking(&store, |s| s.ping());
        match tokio::time::timeout(std::time::Duration::from_secs(3), ping).await {
            Ok(Ok(())) => None,
            _ => Some("the store is unavailable"),
        }
    }
}

/// Gauges read at scrape time: the verified-token cache, key fetches, upstream peer health.
fn gauges(s: &Shared, reloader: &Reloader) -> Vec<Sample> {
    let mut g = vec![
        Sample::new("gatehouse_config_generation", reloader.generation()),
        Sample::new(
            "gatehouse_config_reload_failures_total",
            reloader.failures(),
        ),
        Sample::new(
            "gatehouse_verified_tokens_cached",
            s.verifier.cached_tokens(),
        ),
        Sample::new(
            "gatehouse_verified_tokens_cached_bytes",
            s.verifier.cached_bytes(),
        ),
    ];
    let (hits, misses) = s.verifier.lookups();
    for (result, n) in [("hit", hits), ("miss", misses)] {
        g.push(Sample::labelled(
            "gatehouse_token_cache_lookups_total",
            vec![("result", result.to_string())],
            n,
        ));
    }
    for (issuer, ok, failed) in s.verifier.jwks.fetch_counts() {
        for (result, n) in [("ok", ok), ("error", failed)] {
            g.push(Sample::labelled(
                "gatehouse_jwks_fetches_total",
                vec![("issuer", issuer.clone()), ("result", result.to_string())],
                n,
            ));
        }
    }
    if let Some(store) = &s.store {
        let st = store.stats();
        g.push(Sample::new(
            "gatehouse_store_operations_total",
            st.operations,
        ));
        g.push(Sample::new("gatehouse_store_errors_total", st.errors));
        g.push(Sample::new(
            "gatehouse_store_reconnects_total",
            st.reconnects,
        ));
    }
    if let Some(t) = &s.tokens {
        g.push(Sample::new("gatehouse_sign_ins_total", t.sign_ins()));
        g.push(Sample::new(
            "gatehouse_tokens_issued_total",
            t.tokens_issued(),
        ));
        for (upstream, n) in t.exchanges().counts() {
            g.push(Sample::labelled(
                "gatehouse_token_exchanges_total",
                vec![("upstream", upstream)],
                n,
            ));
        }
    }
    g.extend(s.audit.samples());
    g.extend(s.telemetry.samples());
    for u in &s.upstreams {
        if let UpstreamRuntime::Pool(p) = u {
            for b in p.lb.backends().get_backend().iter() {
                let healthy = p.lb.backends().ready(b) as u64;
                g.push(Sample::labelled(
                    "gatehouse_upstream_peer_healthy",
                    vec![("upstream", p.name.clone()), ("peer", b.addr.to_string())],
                    healthy,
                ));
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method(method).uri("/reload");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn status(r: Result<(), Box<Response<Vec<u8>>>>) -> u16 {
        r.err().map_or(200, |r| r.status().as_u16())
    }

    #[test]
    fn only_its_own_names_are_answered() {
        let names = ["admin.internal".to_string()];
        for ok in [
            "127.0.0.1:9901",
            "[::1]:9901",
            "localhost:9901",
            "Admin.Internal:9901",
            "10.1.2.3",
        ] {
            assert_eq!(
                status(admitted(&req("GET", &[("host", ok)]), &names)),
                200,
                "{ok}"
            );
        }
        for bad in [
            "evil.example:9901",
            "localhost.evil.example",
            "a b",
            "admin.internal:1:2",
        ] {
            assert_eq!(
                status(admitted(&req("GET", &[("host", bad)]), &names)),
                421,
                "{bad}"
            );
        }
        assert_eq!(
            status(admitted(&req("GET", &[]), &names)),
            200,
            "HTTP/1.0 sends none"
        );
    }

    #[test]
    fn writes_come_from_no_browser_or_from_this_listener() {
        let h = ("host", "127.0.0.1:9901");
        let post = |more: &[(&str, &str)]| {
            let mut all = vec![h];
            all.extend_from_slice(more);
            status(admitted(&req("POST", &all), &[]))
        };
        assert_eq!(post(&[]), 200, "curl, gatehouse reload");
        assert_eq!(post(&[("origin", "http://127.0.0.1:9901")]), 200);
        assert_eq!(post(&[("sec-fetch-site", "same-origin")]), 200);
        assert_eq!(post(&[("origin", "https://evil.example")]), 403);
        assert_eq!(
            post(&[("origin", "http://127.0.0.1:3000")]),
            403,
            "another port"
        );
        assert_eq!(post(&[("origin", "null")]), 403);
        assert_eq!(post(&[("sec-fetch-site", "cross-site")]), 403);
        assert_eq!(post(&[("sec-fetch-site", "same-site")]), 403);
        // reads are the Host check's: a cross-site read is the browser's to block
        let get = req("GET", &[h, ("origin", "https://evil.example")]);
        assert_eq!(status(admitted(&get, &[])), 200);
    }
}
