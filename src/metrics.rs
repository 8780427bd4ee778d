//! Prometheus metrics for the admin listener: request counters, duration histograms, and the gauges
//! read at scrape time, each family with its HELP and TYPE. Counting costs no lock or allocation.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds, in seconds, of the request-duration buckets.
const REQUEST_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Upper bounds, in seconds, of the revocation-propagation buckets.
pub const PROPAGATION_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// A Prometheus histogram over fixed buckets, in microseconds inside.
#[derive(Debug)]
pub struct Histogram {
    bounds_us: Vec<u64>,
    /// one counter per bucket (not cumulative), and one past the last bound
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn new(bounds_seconds: &[f64]) -> Histogram {
        Histogram {
            bounds_us: bounds_seconds.iter().map(|b| (b * 1e6) as u64).collect(),
            counts: (0..=bounds_seconds.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_us: AtomicU64::new(0),
        }
    }

    pub fn observe_us(&self, us: u64) {
        let i = self
            .bounds_us
            .iter()
            .position(|b| us <= *b)
            .unwrap_or(self.bounds_us.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str) {
        let mut cumulative = 0;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Ordering::Relaxed);
            match self.bounds_us.get(i) {
                Some(b) => {
                    let le = *b as f64 / 1e6;
                    let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

/// HELP and TYPE of every family the gateway exposes.
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "gatehouse_requests_total",
        "counter",
        "Requests answered, by route and status class.",
    ),
    (
        "gatehouse_denials_total",
        "counter",
        "Requests the gateway refused, by reason.",
    ),
    (
        "gatehouse_request_duration_seconds",
        "histogram",
        "Time from request header to the last log line.",
    ),
    (
        "gatehouse_config_generation",
        "gauge",
        "The configuration generation serving: 1 at start, one more per reload.",
    ),
    (
        "gatehouse_config_reload_failures_total",
        "counter",
        "Reloads refused because the configuration had problems.",
    ),
    (
        "gatehouse_verified_tokens_cached",
        "gauge",
        "Entries in the verified-token cache.",
    ),
    (
        "gatehouse_verified_tokens_cached_bytes",
        "gauge",
        "Bytes the verified-token cache holds, as its weigher counts them.",
    ),
    (
        "gatehouse_jwks_fetches_total",
        "counter",
        "Key-set fetches by issuer and result.",
    ),
    (
        "gatehouse_upstream_peer_healthy",
        "gauge",
        "1 while the upstream peer passes its health check.",
    ),
    (
        "gatehouse_store_operations_total",
        "counter",
        "Operations sent to a shared store (Redis).",
    ),
    (
        "gatehouse_sign_ins_total",
        "counter",
        "People signed in on the sign-in page: sign-in sessions made.",
    ),
    (
        "gatehouse_store_errors_total",
        "counter",
        "Store operations that failed.",
    ),
    (
        "gatehouse_store_reconnects_total",
        "counter",
        "Connections made to the store again after one was lost.",
    ),
    (
        "gatehouse_revocation_propagation_seconds",
        "histogram",
        "From a revocation on one gateway to this one learning it (shared store).",
    ),
];

fn header(out: &mut String, family: &str) {
    if let Some((name, kind, help)) = FAMILIES.iter().find(|(n, _, _)| *n == family) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
    }
}

/// The request counters of one configuration generation.
pub struct Metrics {
    route_names: Vec<String>,
    /// requests per route (the last slot: no route matched) and status class (index status / 100)
    requests: Vec<[AtomicU64; 6]>,
    /// denials by reason; reasons are a small fixed set of static strings
    denials: Mutex<BTreeMap<&'static str, u64>>,
    duration: Histogram,
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

impl Metrics {
    pub fn new(route_names: Vec<String>) -> Self {
        let requests = (0..=route_names.len())
            .map(|_| Default::default())
            .collect();
        Metrics {
            route_names,
            requests,
            denials: Mutex::new(BTreeMap::new()),
            duration: Histogram::new(&REQUEST_BUCKETS),
        }
    }

    pub fn observe(
        &self,
        route: Option<usize>,
        status: u16,
        micros: u64,
        denial: Option<&'static str>,
    ) {
        let slot = route
            .unwrap_or(self.route_names.len())
            .min(self.route_names.len());
        if let Some(counters) = self.requests.get(slot) {
            if let Some(c) = counters.get(usize::from(status / 100).min(5)) {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(d) = denial {
            if let Ok(mut m) = self.denials.lock() {
                *m.entry(d).or_default() += 1;
            }
        }
        self.duration.observe_us(micros);
    }

    /// Prometheus text exposition. `extra` are lines `family{labels} value` computed by the caller,
    /// grouped by family; `histograms` more histograms by name.
    pub fn render(&self, extra: &[(String, u64)], histograms: &[(&str, &Histogram)]) -> String {
        let mut out = String::new();
        header(&mut out, "gatehouse_requests_total");
        for (i, counters) in self.requests.iter().enumerate() {
            let route = self.route_names.get(i).map(String::as_str).unwrap_or("-");
            for (class, n) in counters.iter().enumerate() {
                let n = n.load(Ordering::Relaxed);
                if n > 0 {
                    let status = if class == 0 {
                        "none".to_string()
                    } else {
                        format!("{class}xx")
                    };
                    let _ = writeln!(
                        out,
                        "gatehouse_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                        escape(route)
                    );
                }
            }
        }
        header(&mut out, "gatehouse_denials_total");
        if let Ok(m) = self.denials.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(out, "gatehouse_denials_total{{reason=\"{reason}\"}} {n}");
            }
        }
        header(&mut out, "gatehouse_request_duration_seconds");
        self.duration
            .render(&mut out, "gatehouse_request_duration_seconds");
        let mut last_family = "";
        for (line, v) in extra {
            let family = line.split('{').next().unwrap_or(line);
            if family != last_family {
                header(&mut out, family);
                last_family = family;
            }
            let _ = writeln!(out, "{line} {v}");
        }
        for (name, h) in histograms {
            header(&mut out, name);
            h.render(&mut out, name);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative_with_help_and_type() {
        let m = Metrics::new(vec!["api".into()]);
        m.observe(Some(0), 200, 300, None);
        m.observe(Some(0), 401, 20_000, Some("expired"));
        m.observe(None, 404, 20_000_000, Some("not_found"));
        let text = m.render(&[("gatehouse_config_generation".into(), 2)], &[]);
        assert!(text.contains("# TYPE gatehouse_request_duration_seconds histogram"));
        assert!(text.contains("gatehouse_request_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("gatehouse_request_duration_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("gatehouse_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("gatehouse_request_duration_seconds_count 3"));
        assert!(text.contains("gatehouse_requests_total{route=\"api\",status=\"4xx\"} 1"));
        assert!(text.contains("gatehouse_requests_total{route=\"-\",status=\"4xx\"} 1"));
        assert!(text.contains("# HELP gatehouse_config_generation "));
        assert!(text.contains("gatehouse_config_generation 2"));
        for family in ["gatehouse_requests_total", "gatehouse_denials_total"] {
            assert!(text.contains(&format!("# HELP {family} ")), "{family}");
        }
    }
}
