//! The console's overview (the configuration serving, uptime, listeners, and live charts of the
//! last 15 minutes), its issuers page and its upstreams page.

use super::chart::{svg, Series};
use super::history::{Point, Totals, POINTS};
use super::{page, Asked, Console};
use crate::pages::esc;
use crate::proxy::Shared;
use crate::upstream::UpstreamRuntime;
use std::collections::BTreeMap;

/// Reads the counters the charts are drawn from.
pub fn totals(s: &Shared) -> Totals {
    let mut t = Totals::default();
    for sample in s.metrics.request_samples() {
        let label = |k: &str| {
            sample
                .labels
                .iter()
                .find(|(n, _)| *n == k)
                .map_or(String::new(), |(_, v)| v.clone())
        };
        match sample.family {
            "gatehouse_requests_total" => {
                *t.requests.entry(label("route")).or_default() += sample.value;
            }
            "gatehouse_denials_total" => {
                *t.refusals.entry(label("reason")).or_default() += sample.value;
            }
            _ => {}
        }
    }
    t.buckets = s.metrics.duration_buckets();
    t.tokens_issued = s.tokens.as_ref().map_or(0, |x| x.tokens_issued());
    (t.cache_hits, t.cache_misses) = s.verifier.lookups();
    t
}

/// The busiest names of a family over the points kept, at most `n`, each as a line.
fn busiest(
    points: &[Point],
    pick: impl Fn(&Point) -> &BTreeMap<String, f64>,
    n: usize,
) -> Vec<Series> {
    let mut sums: BTreeMap<&str, f64> = BTreeMap::new();
    for p in points {
        for (k, v) in pick(p) {
            *sums.entry(k).or_default() += v;
        }
    }
    let mut names: Vec<(&str, f64)> = sums.into_iter().filter(|(_, v)| *v > 0.0).collect();
    names.sort_by(|a, b| b.1.total_cmp(&a.1));
    names
        .into_iter()
        .take(n)
        .map(|(name, _)| Series {
            name: name.to_string(),
            values: points
                .iter()
                .map(|p| Some(pick(p).get(name).copied().unwrap_or(0.0)))
                .collect(),
        })
        .collect()
}

/// The charts, also fetched alone every few seconds by the page's script.
pub fn charts(console: &Console) -> String {
    let points = console.history.points();
    let span = "15 min";
    let line = |name: &str, f: &dyn Fn(&Point) -> Option<f64>| Series {
        name: name.into(),
        values: points.iter().map(f).collect(),
    };
    let charts = [
        svg(
            "Requests per second by route",
            "req/s",
            &busiest(&points, |p| &p.requests, 6),
            POINTS,
            span,
        ),
        svg(
            "Refusals per second by reason",
            "req/s",
            &busiest(&points, |p| &p.refusals, 6),
            POINTS,
            span,
        ),
        svg(
            "Latency",
            "ms",
            &[line("p50", &|p| p.p50_ms), line("p99", &|p| p.p99_ms)],
            POINTS,
            span,
        ),
        svg(
            "Tokens issued per second",
            "tokens/s",
            &[line("issued", &|p| Some(p.tokens_issued))],
            POINTS,
            span,
        ),
        svg(
            "Token cache hit ratio",
            "hits/lookups",
            &[line("hit ratio", &|p| p.cache_hit_ratio)],
            POINTS,
            span,
        ),
    ];
    let titles = ["Requests", "Refusals", "Latency", "Token endpoint", "Cache"];
    let mut out = String::new();
    for (t, c) in titles.iter().zip(charts) {
        out.push_str(&format!("<section><h2>{t}</h2>{c}</section>"));
    }
    out
}

pub fn page(console: &Console, a: &Asked<'_>) -> String {
    let c = &a.shared.config;
    let now = a.shared.clock.now_secs();
    let up = now.saturating_sub(console.started);
    let listeners: Vec<String> = c
        .server
        .listen_tls
        .iter()
        .map(|l| format!("{l} (TLS)"))
        .chain(c.server.listen_plain.iter().map(|l| format!("{l} (plain)")))
        .chain(c.server.admin_listen.iter().map(|l| format!("{l} (admin)")))
        .collect();
    let body = format!(
        "<section><dl><dt>Configuration</dt><dd><code>{file}</code></dd>\
         <dt>Generation</dt><dd id=\"generation\">{generation}</dd><dt>File hash</dt><dd><code>{hash}</code></dd>\
         <dt>Reloads refused</dt><dd>{failures}</dd><dt>Up for</dt><dd>{up}</dd>\
         <dt>Listeners</dt><dd>{listeners}</dd><dt>Routes</dt><dd>{routes}</dd></dl></section>\
         <div class=\"charts\" data-live=\"/console?part=charts\">{charts}</div>",
        file = esc(&c.file.display().to_string()),
        generation = a.reloader.generation(),
        hash = esc(&c.file_hash),
        failures = a.reloader.reload_failures(),
        up = humantime::format_duration(std::time::Duration::from_secs(up)),
        listeners = esc(&listeners.join(", ")),
        routes = c.routes.len(),
        charts = charts(console),
    );
    page::frame("Overview", "/console", Some(&a.viewer()), &body)
}

pub async fn issuers(a: &Asked<'_>) -> String {
    let ms = |t: u64| page::when(t / 1000);
    let mut rows = Vec::new();
    for i in a.shared.verifier.jwks.status().await {
        let keys: Vec<String> = i
            .keys
            .iter()
            .map(|(kid, alg)| {
                format!(
                    "<code>{}</code> {}",
                    esc(if kid.is_empty() { "(no kid)" } else { kid }),
                    esc(alg)
                )
            })
            .collect();
        let fetched = matches!(i.source.as_str(), "static" | "own");
        let action = if fetched || a.read_only() {
            String::new()
        } else {
            page::form(
                "/console/issuers/refresh",
                &a.op.csrf,
                &[("issuer", &i.name)],
                "Refresh now",
                "",
            )
        };
        rows.push(vec![
            esc(&i.name),
            esc(&super::redact::url_secrets(&i.source)),
            keys.join("<br>"),
            if fetched {
                "—".into()
            } else {
                ms(i.fetched_ms)
            },
            if fetched {
                "—".into()
            } else {
                ms(i.refresh_ms)
            },
            format!("{} ok, {} failed", i.fetches_ok, i.fetches_failed),
            format!("<span class=\"error\">{}</span>", esc(&i.last_error)),
            action,
        ]);
    }
    let head = [
        "Issuer",
        "Keys from",
        "Keys",
        "Last fetch",
        "Next refresh",
        "Fetches",
        "Last error",
        "",
    ];
    let body = format!(
        "{}<section>{}</section>",
        page::notice(a.query.get("notice").map(String::as_str), None),
        page::table(&head, &rows, "No issuers are configured.")
    );
    page::frame("Issuers", "/console/issuers", Some(&a.viewer()), &body)
}

/// One peer's row: its health and its latest check.
fn peer_row(upstream: &str, pool: &crate::upstream::Pool, b: &pingora::lb::Backend) -> Vec<String> {
    let ready = pool.lb.backends().ready(b);
    let peer = b.addr.to_string();
    let check = pool.checks.latest(&peer);
    vec![
        esc(upstream),
        format!("<code>{}</code>", esc(&peer)),
        if ready {
            "healthy".into()
        } else {
            "<span class=\"error\">unhealthy</span>".into()
        },
        check.as_ref().map_or("not yet".into(), |c| {
            format!("{} s ago", c.at.elapsed().as_secs())
        }),
        check.as_ref().map_or(String::new(), |c| {
            format!("{:.1} ms", c.took.as_secs_f64() * 1e3)
        }),
        check.map_or(String::new(), |c| {
            format!("<span class=\"error\">{}</span>", esc(&c.error))
        }),
    ]
}

/// A pool's traffic: requests in flight (its connections in use) and connections made or reused.
fn traffic_row(upstream: &str, pool: &crate::upstream::Pool) -> Vec<String> {
    use std::sync::atomic::Ordering::Relaxed;
    let t = &pool.traffic;
    vec![
        esc(upstream),
        t.in_flight.load(Relaxed).to_string(),
        t.connections_new.load(Relaxed).to_string(),
        t.connections_reused.load(Relaxed).to_string(),
    ]
}

pub fn upstreams(a: &Asked<'_>) -> String {
    let (mut rows, mut traffic) = (Vec::new(), Vec::new());
    for (u, rt) in a.shared.config.upstreams.iter().zip(&a.shared.upstreams) {
        match rt {
            UpstreamRuntime::Pool(p) => {
                traffic.push(traffic_row(&u.name, p));
                for b in p.lb.backends().get_backend().iter() {
                    rows.push(peer_row(&u.name, p, b));
                }
            }
            UpstreamRuntime::Whoami => {
                let mut row = vec![esc(&u.name), "built-in whoami".into(), "healthy".into()];
                row.resize(6, String::new());
                rows.push(row);
            }
        }
    }
    let head = [
        "Upstream",
        "Peer",
        "Health",
        "Last check",
        "Check took",
        "Last error",
    ];
    let flows = [
        "Upstream",
        "Requests in flight (connections in use)",
        "Connections made",
        "Connections reused",
    ];
    let body = format!(
        "<section><h2>Peers</h2>{}</section><section><h2>Traffic since the last reload</h2>{}</section>",
        page::table(&head, &rows, "No upstreams are configured."),
        page::table(&flows, &traffic, "No proxied upstreams.")
    );
    page::frame("Upstreams", "/console/upstreams", Some(&a.viewer()), &body)
}
