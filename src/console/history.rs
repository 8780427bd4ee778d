//! The last 15 minutes of the gateway's own metrics, one point every 5 seconds, for the console's
//! charts: rates from the differences of counters (a reload starts them again from zero), and
//! latency quantiles from the histogram's buckets as Prometheus's `histogram_quantile` reads them.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

/// How often a point is taken.
pub const EVERY: Duration = Duration::from_secs(5);
/// 15 minutes of points.
pub const POINTS: usize = 180;

/// Counter totals read at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// requests by route
    pub requests: BTreeMap<String, u64>,
    /// refusals by reason
    pub refusals: BTreeMap<String, u64>,
    /// the duration histogram: upper bound (seconds), cumulative count
    pub buckets: Vec<(f64, u64)>,
    pub tokens_issued: u64,
    pub cache_hits: u64,
    pub cache_misses: u64,
}

/// One point of the charts: rates per second over the interval before `at`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// seconds since the Unix epoch
    pub at: u64,
    pub requests: BTreeMap<String, f64>,
    pub refusals: BTreeMap<String, f64>,
    /// milliseconds; none when no request ended in the interval
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub tokens_issued: f64,
    /// hits over lookups; none without lookups
    pub cache_hit_ratio: Option<f64>,
}

#[derive(Default)]
struct State {
    points: VecDeque<Point>,
    last: Option<(u64, Totals)>,
}

/// The points kept.
#[derive(Default)]
pub struct History(Mutex<State>);

/// How much a counter grew; a smaller total is a counter that started again (a reload).
fn grew(new: u64, old: u64) -> u64 {
    if new >= old {
        new - old
    } else {
        new
    }
}

fn rates(
    new: &BTreeMap<String, u64>,
    old: &BTreeMap<String, u64>,
    secs: f64,
) -> BTreeMap<String, f64> {
    new.iter()
        .map(|(k, &v)| {
            let before = old.get(k).copied().unwrap_or(0);
            (k.clone(), grew(v, before) as f64 / secs)
        })
        .collect()
}

/// The `q` quantile (0 to 1) of the observations between two readings of a cumulative histogram,
/// interpolated linearly inside the bucket it falls in; in seconds.
pub fn quantile(new: &[(f64, u64)], old: &[(f64, u64)], q: f64) -> Option<f64> {
    let counts: Vec<(f64, u64)> = new
        .iter()
        .enumerate()
        .map(|(i, &(le, n))| (le, grew(n, old.get(i).map_or(0, |b| b.1))))
        .collect();
    let total = counts.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(le, n) in &counts {
        if n as f64 >= rank {
            if le.is_infinite() {
                // past the last bound: the last bound is the best that can be said
                return Some(lower);
            }
            let inside = (n - below) as f64;
            let share = if inside > 0.0 {
                (rank - below as f64) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * share);
        }
        (lower, below) = (le, n);
    }
    Some(lower)
}

impl History {
    /// Takes a reading at `now` (seconds): the first only sets the baseline.
    pub fn record(&self, now: u64, totals: Totals) {
        let mut s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((then, old)) = s.last.take() {
            let secs = now.saturating_sub(then).max(1) as f64;
            let lookups = grew(totals.cache_hits, old.cache_hits)
                + grew(totals.cache_misses, old.cache_misses);
            let point = Point {
                at: now,
                requests: rates(&totals.requests, &old.requests, secs),
                refusals: rates(&totals.refusals, &old.refusals, secs),
                p50_ms: quantile(&totals.buckets, &old.buckets, 0.5).map(|s| s * 1e3),
                p99_ms: quantile(&totals.buckets, &old.buckets, 0.99).map(|s| s * 1e3),
                tokens_issued: grew(totals.tokens_issued, old.tokens_issued) as f64 / secs,
                cache_hit_ratio: (lookups > 0)
                    .then(|| grew(totals.cache_hits, old.cache_hits) as f64 / lookups as f64),
            };
            if s.points.len() == POINTS {
                s.points.pop_front();
            }
            s.points.push_back(point);
        }
        s.last = Some((now, totals));
    }

    /// The points kept, oldest first.
    pub fn points(&self) -> Vec<Point> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner());
        s.points.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(route: u64, refused: u64, hits: u64, misses: u64) -> Totals {
        Totals {
            requests: [("api".to_string(), route)].into(),
            refusals: [("expired".to_string(), refused)].into(),
            buckets: vec![(0.001, route), (0.01, route), (f64::INFINITY, route)],
            tokens_issued: refused,
            cache_hits: hits,
            cache_misses: misses,
        }
    }

    #[test]
    fn rates_come_from_differences_and_a_reload_starts_again() {
        let h = History::default();
        h.record(100, totals(1000, 10, 0, 0));
        assert!(h.points().is_empty(), "the first reading is a baseline");
        h.record(105, totals(1500, 20, 90, 10));
        h.record(110, totals(50, 5, 90, 10));
        let p = h.points();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].requests["api"], 100.0);
        assert_eq!(p[0].refusals["expired"], 2.0);
        assert_eq!(p[0].cache_hit_ratio, Some(0.9));
        assert_eq!(p[0].tokens_issued, 2.0);
        // counters smaller than before: a new generation counting from zero
        assert_eq!(p[1].requests["api"], 10.0);
        assert_eq!(p[1].cache_hit_ratio, None);
    }

    #[test]
    fn only_fifteen_minutes_are_kept() {
        let h = History::default();
        for i in 0..=(POINTS as u64 + 10) {
            h.record(i * 5, totals(i, 0, 0, 0));
        }
        let p = h.points();
        assert_eq!(p.len(), POINTS);
        assert_eq!(p[POINTS - 1].at, (POINTS as u64 + 10) * 5);
    }

    #[test]
    fn quantiles_interpolate_inside_their_bucket() {
        let old = vec![(0.01, 0), (0.1, 0), (f64::INFINITY, 0)];
        // 50 under 10 ms, 50 between 10 and 100 ms
        let new = vec![(0.01, 50), (0.1, 100), (f64::INFINITY, 100)];
        assert_eq!(quantile(&new, &old, 0.5), Some(0.01));
        let p99 = quantile(&new, &old, 0.99).unwrap();
        assert!((p99 - 0.0982).abs() < 1e-9, "{p99}");
        assert_eq!(quantile(&old, &old, 0.5), None, "nothing observed");
        // everything past the last bound: the last bound
        let slow = vec![(0.01, 0), (0.1, 0), (f64::INFINITY, 7)];
        assert_eq!(quantile(&slow, &old, 0.5), Some(0.1));
    }
}
