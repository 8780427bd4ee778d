//! Prometheus metrics for the admin listener, encoded by the `prometheus` crate: request counters,
//! duration histograms, and the values read at scrape time, each family with its HELP and TYPE.
//! Counting a request costs a few atomic additions, no lock and no allocation.

use super::DenyReason;
use crate::config::RouteId;
use crate::rules::{RuleKind, RuleRef};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds, in seconds, of the request-duration buckets.
const REQUEST_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];
/// Upper bounds, in seconds, of the revocation-propagation buckets.
const PROPAGATION_BUCKETS: [f64; 9] = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

/// The HELP text of every family the gateway exposes; a name ending in `_total` is a counter.
const HELP: &[(&str, &str)] = &[
    (
        "gatehouse_requests_total",
        "Requests answered, by route and status class.",
    ),
    (
        "gatehouse_forward_auth_answers_total",
        "Questions the forward-auth endpoint answered, by status class (also counted in gatehouse_requests_total under the route asked about).",
    ),
    (
        "gatehouse_denials_total",
        "Requests the gateway refused, by reason.",
    ),
    (
        "gatehouse_rule_denials_total",
        "Requests a route rule refused, by route and rule (allow_if[i], deny_if[i]).",
    ),
    (
        "gatehouse_config_generation",
        "The configuration generation serving: 1 at start, one more per reload.",
    ),
    (
        "gatehouse_config_reload_failures_total",
        "Reloads refused because the configuration had problems.",
    ),
    (
        "gatehouse_verified_tokens_cached",
        "Entries in the verified-token cache.",
    ),
    (
        "gatehouse_verified_tokens_cached_bytes",
        "Bytes the verified-token cache holds, as its weigher counts them.",
    ),
    (
        "gatehouse_token_cache_lookups_total",
        "Bearer tokens answered from the verified-token cache (hit) or verified by signature (miss), since the last reload.",
    ),
    (
        "gatehouse_jwks_fetches_total",
        "Key-set fetches by issuer and result.",
    ),
    (
        "gatehouse_upstream_peer_healthy",
        "1 while the upstream peer passes its health check.",
    ),
    (
        "gatehouse_store_operations_total",
        "Operations sent to a shared store (Redis).",
    ),
    (
        "gatehouse_store_errors_total",
        "Store operations that failed.",
    ),
    (
        "gatehouse_store_reconnects_total",
        "Connections made to the store again after one was lost.",
    ),
    (
        "gatehouse_sign_ins_total",
        "People signed in on the sign-in page: sign-in sessions made.",
    ),
    (
        "gatehouse_tokens_issued_total",
        "Access tokens the token service signed, every grant, since the last reload.",
    ),
    (
        "gatehouse_audit_events_total",
        "Audit events a sink wrote (file, stdout) or a collector took (http).",
    ),
    (
        "gatehouse_audit_events_dropped_total",
        "Audit events lost by a sink: its queue was full, the write failed, or the collector refused them.",
    ),
    (
        "gatehouse_otlp_exported_total",
        "Spans (traces) and audit log records (logs) the OTLP collector took.",
    ),
    (
        "gatehouse_otlp_dropped_total",
        "Spans and log records lost on the way to the OTLP collector: the queue was full, or the collector refused them or was away.",
    ),
    (
        "gatehouse_token_exchanges_total",
        "Tokens issued by token exchange (RFC 8693), by the upstream they were minted for (\"-\": asked at the token endpoint).",
    ),
];

/// How long revocations made on other gateways took to arrive: one histogram for the process,
/// shown by every configuration generation.
pub fn propagation_histogram() -> prometheus::Result<Histogram> {
    let opts = HistogramOpts::new(
        "gatehouse_revocation_propagation_seconds",
        "From a revocation on one gateway to this one learning it (shared store).",
    )
    .buckets(PROPAGATION_BUCKETS.to_vec());
    Histogram::with_opts(opts)
}

/// One value read at scrape time: a family, its labels, the value.
pub struct Sample {
    pub family: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: u64,
}

impl Sample {
    pub fn new(family: &'static str, value: u64) -> Sample {
        Sample {
            family,
            labels: vec![],
            value,
        }
    }

    pub fn labelled(
        family: &'static str,
        labels: Vec<(&'static str, String)>,
        value: u64,
    ) -> Sample {
        Sample {
            family,
            labels,
            value,
        }
    }
}

/// The request metrics of one configuration generation.
pub struct Metrics {
    registry: Registry,
    route_names: Vec<String>,
    /// requests per route (the last slot: no route matched) and status class (index status / 100)
    requests: Vec<[AtomicU64; 6]>,
    /// forward-auth answers by status class
    forward_auth: [AtomicU64; 6],
    /// denials, one counter per reason (index `DenyReason::index`)
    denials: [AtomicU64; DenyReason::COUNT],
    /// refusals by route rule: per route, one counter per `allow_if`, then per `deny_if`
    rule_denials: Vec<[Vec<AtomicU64>; 2]>,
    duration: Histogram,
}

impl Metrics {
    /// `propagation` is the process's histogram, shown with this generation's metrics.
    pub fn new(route_names: Vec<String>, propagation: &Histogram) -> prometheus::Result<Self> {
        let requests = (0..=route_names.len())
            .map(|_| Default::default())
            .collect();
        let registry = Registry::new();
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "gatehouse_request_duration_seconds",
                "Time from the request header to the access-log line.",
            )
            .buckets(REQUEST_BUCKETS.to_vec()),
        )?;
        for h in [&duration, propagation] {
            registry.register(Box::new(h.clone()))?;
        }
        Ok(Metrics {
            registry,
            route_names,
            requests,
            forward_auth: Default::default(),
            denials: std::array::from_fn(|_| AtomicU64::new(0)),
            rule_denials: Vec::new(),
            duration,
        })
    }

    /// Counts refusals by rule too: `rules` holds each route's (`allow_if`, `deny_if`) counts, in
    /// route order.
    pub fn with_rules(mut self, rules: Vec<(usize, usize)>) -> Self {
        let counters = |n: usize| (0..n).map(|_| AtomicU64::new(0)).collect();
        self.rule_denials = rules
            .into_iter()
            .map(|(allow, deny)| [counters(allow), counters(deny)])
            .collect();
        self
    }

    /// Counts one refusal by a route's rule.
    pub fn observe_rule(&self, route: Option<RouteId>, rule: RuleRef) {
        let kind = match rule.kind {
            RuleKind::AllowIf => 0,
            RuleKind::DenyIf => 1,
        };
        let counter = route
            .and_then(|r| self.rule_denials.get(r.position()))
            .and_then(|kinds| kinds.get(kind))
            .and_then(|c| c.get(usize::from(rule.index)));
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The rule refusals that are not zero, as samples.
    fn rule_samples(&self, out: &mut Vec<Sample>) {
        for (i, kinds) in self.rule_denials.iter().enumerate() {
            let route = self.route_names.get(i).map(String::as_str).unwrap_or("-");
            for (kind, counters) in [RuleKind::AllowIf, RuleKind::DenyIf].into_iter().zip(kinds) {
                for (j, c) in counters.iter().enumerate() {
                    let n = c.load(Ordering::Relaxed);
                    if n > 0 {
                        let rule = RuleRef::new(kind, j).to_string();
                        out.push(Sample::labelled(
                            "gatehouse_rule_denials_total",
                            vec![("route", route.to_string()), ("rule", rule)],
                            n,
                        ));
                    }
                }
            }
        }
    }

    pub fn observe(
        &self,
        route: Option<RouteId>,
        status: u16,
        micros: u64,
        denial: Option<DenyReason>,
    ) {
        // counters are kept in route order, with one more for requests no route took
        let slot = route
            .map_or(self.route_names.len(), RouteId::position)
            .min(self.route_names.len());
        if let Some(counters) = self.requests.get(slot) {
            count(counters, status);
        }
        if let Some(c) = denial.and_then(|d| self.denials.get(d.index())) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.duration.observe(micros as f64 / 1e6);
    }

    /// Counts one answer of the forward-auth endpoint.
    pub fn observe_forward_auth(&self, status: u16) {
        count(&self.forward_auth, status);
    }

    /// The request-duration histogram: each bucket's upper bound in seconds with its cumulative
    /// count, ending with `+Inf`.
    pub fn duration_buckets(&self) -> Vec<(f64, u64)> {
        let m = prometheus::core::Metric::metric(&self.duration);
        let h = m.get_histogram();
        let mut out: Vec<(f64, u64)> = h
            .get_bucket()
            .iter()
            .map(|b| (b.upper_bound(), b.cumulative_count()))
            .collect();
        out.push((f64::INFINITY, h.get_sample_count()));
        out
    }

    /// The request counts that are not zero, as samples.
    pub fn request_samples(&self) -> Vec<Sample> {
        let mut out = Vec::new();
        for (i, counters) in self.requests.iter().enumerate() {
            let route = self.route_names.get(i).map(String::as_str).unwrap_or("-");
            for (class, n) in by_class(counters) {
                out.push(Sample::labelled(
                    "gatehouse_requests_total",
                    vec![("route", route.to_string()), ("status", class)],
                    n,
                ));
            }
        }
        for (class, n) in by_class(&self.forward_auth) {
            out.push(Sample::labelled(
                "gatehouse_forward_auth_answers_total",
                vec![("status", class)],
                n,
            ));
        }
        // by reason text, as they were listed when a map held them
        let mut reasons = DenyReason::ALL;
        reasons.sort_by_key(|r| r.as_str());
        for r in reasons {
            let n = self
                .denials
                .get(r.index())
                .map_or(0, |c| c.load(Ordering::Relaxed));
            if n > 0 {
                out.push(Sample::labelled(
                    "gatehouse_denials_total",
                    vec![("reason", r.as_str().to_string())],
                    n,
                ));
            }
        }
        self.rule_samples(&mut out);
        out
    }

    /// The Prometheus text exposition of this generation's metrics and of `samples`.
    pub fn render(&self, samples: Vec<Sample>) -> String {
        let scrape = Registry::new();
        let mut all = self.request_samples();
        all.extend(samples);
        let mut families: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
        for s in all {
            families.entry(s.family).or_default().push(s);
        }
        for (family, samples) in families {
            if let Err(e) = register_family(&scrape, family, &samples) {
                tracing::warn!(family, error = %e, "a metric family could not be rendered");
            }
        }
        let mut metric_families = self.registry.gather();
        metric_families.extend(scrape.gather());
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&metric_families, &mut out) {
            tracing::warn!(error = %e, "the metrics could not be encoded");
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

/// Adds one to the counter of the status's class (index status / 100; 0 when nothing was written).
fn count(counters: &[AtomicU64; 6], status: u16) {
    if let Some(c) = counters.get(usize::from(status / 100).min(5)) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// The counts that are not zero, labelled by status class (`2xx`; `none` when nothing was written).
fn by_class(counters: &[AtomicU64; 6]) -> impl Iterator<Item = (String, u64)> + '_ {
    counters.iter().enumerate().filter_map(|(class, n)| {
        let n = n.load(Ordering::Relaxed);
        let label = match class {
            0 => "none".to_string(),
            c => format!("{c}xx"),
        };
        (n > 0).then_some((label, n))
    })
}

/// Registers one family's samples: counters for `_total` names, gauges for the others.
fn register_family(
    registry: &Registry,
    family: &'static str,
    samples: &[Sample],
) -> prometheus::Result<()> {
    let help = HELP
        .iter()
        .find(|(n, _)| *n == family)
        .map_or(family, |(_, h)| h);
    let counter = family.ends_with("_total");
    let names: Vec<&str> = samples
        .first()
        .map(|s| s.labels.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    let opts = Opts::new(family, help);
    if names.is_empty() {
        let value = samples.iter().map(|s| s.value).sum::<u64>();
        if counter {
            let c = IntCounter::with_opts(opts)?;
            c.inc_by(value);
            registry.register(Box::new(c))
        } else {
            let g = IntGauge::with_opts(opts)?;
            g.set(i64::try_from(value).unwrap_or(i64::MAX));
            registry.register(Box::new(g))
        }
    } else if counter {
        let v = IntCounterVec::new(opts, &names)?;
        for s in samples {
            let values: Vec<&str> = s.labels.iter().map(|(_, v)| v.as_str()).collect();
            v.get_metric_with_label_values(&values)?.inc_by(s.value);
        }
        registry.register(Box::new(v))
    } else {
        let v = IntGaugeVec::new(opts, &names)?;
        for s in samples {
            let values: Vec<&str> = s.labels.iter().map(|(_, v)| v.as_str()).collect();
            v.get_metric_with_label_values(&values)?
                .set(i64::try_from(s.value).unwrap_or(i64::MAX));
        }
        registry.register(Box::new(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one route of these tests, "api".
    const API: RouteId = RouteId::at(0);

    #[test]
    fn families_carry_help_type_and_histogram_buckets() {
        let propagation = propagation_histogram().unwrap();
        propagation.observe(0.002);
        let m = Metrics::new(vec!["api".into()], &propagation).unwrap();
        m.observe(Some(API), 200, 300, None);
        m.observe(Some(API), 401, 20_000, Some(DenyReason::Expired));
        m.observe(None, 404, 20_000_000, Some(DenyReason::NotFound));
        let text = m.render(vec![
            Sample::new("gatehouse_config_generation", 2),
            Sample::labelled(
                "gatehouse_upstream_peer_healthy",
                vec![("upstream", "u".into()), ("peer", "127.0.0.1:9".into())],
                0,
            ),
        ]);
        assert!(
            text.contains("# TYPE gatehouse_request_duration_seconds histogram"),
            "{text}"
        );
        assert!(text.contains("gatehouse_request_duration_seconds_bucket{le=\"0.0005\"} 1"));
        assert!(text.contains("gatehouse_request_duration_seconds_bucket{le=\"0.025\"} 2"));
        assert!(text.contains("gatehouse_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("gatehouse_request_duration_seconds_count 3"));
        assert!(text.contains("gatehouse_requests_total{route=\"api\",status=\"4xx\"} 1"));
        assert!(text.contains("gatehouse_requests_total{route=\"-\",status=\"4xx\"} 1"));
        assert!(text.contains("# TYPE gatehouse_requests_total counter"));
        assert!(text.contains("# HELP gatehouse_config_generation "));
        assert!(text.contains("gatehouse_config_generation 2"));
        assert!(text.contains("gatehouse_revocation_propagation_seconds_count 1"));
        assert!(text.contains("peer=\"127.0.0.1:9\""), "{text}");
        assert!(text.contains("# HELP gatehouse_denials_total "));
    }

    #[test]
    fn denials_render_one_line_per_reason_seen() {
        let propagation = propagation_histogram().unwrap();
        let m = Metrics::new(vec!["api".into()], &propagation).unwrap();
        m.observe(Some(API), 401, 10, Some(DenyReason::Expired));
        m.observe(Some(API), 401, 10, Some(DenyReason::Expired));
        m.observe(Some(API), 403, 10, Some(DenyReason::ScopesAll));
        m.observe(Some(API), 413, 10, Some(DenyReason::RequestTooLarge));
        m.observe(Some(API), 401, 10, Some(DenyReason::Critical));
        m.observe(Some(API), 200, 10, None);
        let text = m.render(vec![]);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("gatehouse_denials_total"))
            .collect();
        assert_eq!(
            lines,
            [
                "gatehouse_denials_total{reason=\"crit\"} 1",
                "gatehouse_denials_total{reason=\"expired\"} 2",
                "gatehouse_denials_total{reason=\"request_too_large\"} 1",
                "gatehouse_denials_total{reason=\"scopes_all\"} 1",
            ]
        );
        assert!(
            text.contains("# TYPE gatehouse_denials_total counter"),
            "{text}"
        );
    }

    #[test]
    fn rule_refusals_are_counted_by_route_and_rule() {
        let propagation = propagation_histogram().unwrap();
        let m = Metrics::new(vec!["api".into()], &propagation)
            .unwrap()
            .with_rules(vec![(2, 1)]);
        m.observe_rule(Some(API), RuleRef::new(RuleKind::AllowIf, 1));
        m.observe_rule(Some(API), RuleRef::new(RuleKind::DenyIf, 0));
        m.observe_rule(Some(API), RuleRef::new(RuleKind::DenyIf, 0));
        m.observe_rule(Some(API), RuleRef::new(RuleKind::DenyIf, 5));
        m.observe_rule(None, RuleRef::new(RuleKind::DenyIf, 0));
        let text = m.render(vec![]);
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("gatehouse_rule_denials_total"))
            .collect();
        assert_eq!(
            lines,
            [
                "gatehouse_rule_denials_total{route=\"api\",rule=\"allow_if[1]\"} 1",
                "gatehouse_rule_denials_total{route=\"api\",rule=\"deny_if[0]\"} 2",
            ]
        );
    }

    #[test]
    fn no_denial_no_denial_family() {
        let propagation = propagation_histogram().unwrap();
        let m = Metrics::new(vec![], &propagation).unwrap();
        m.observe(None, 200, 10, None);
        assert!(!m.render(vec![]).contains("gatehouse_denials_total"));
    }
}
