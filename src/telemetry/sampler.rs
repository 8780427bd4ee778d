//! Which requests are traced: parent-based (a caller's sampled `traceparent` is always followed,
//! an unsampled one never), otherwise `sample_ratio` by trace id.

use super::traceparent::TraceParent;
use std::cell::Cell;

/// The ids of a traced request: its trace, the caller's span, the gateway's server span and the
/// span of its call to the upstream (whose id the upstream sees as its parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub parent: Option<[u8; 8]>,
    pub server: [u8; 8],
    pub upstream: [u8; 8],
}

/// A ratio (0 to 1) as the bound a uniform `u64` draw falls under that often.
pub fn threshold(ratio: f64) -> u64 {
    if ratio <= 0.0 {
        0
    } else if ratio >= 1.0 {
        u64::MAX
    } else {
        (ratio * u64::MAX as f64) as u64
    }
}

/// The share of new traces kept, as a threshold on the trace id's last eight bytes (as
/// OpenTelemetry's ratio sampler reads them, so every hop that samples by ratio agrees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    below: u64,
    all: bool,
}

impl Sampler {
    pub fn new(ratio: f64) -> Sampler {
        Sampler {
            below: threshold(ratio),
            all: ratio >= 1.0,
        }
    }

    /// Whether a trace without a parent's decision is kept.
    pub fn keeps(&self, trace_id: &[u8; 16]) -> bool {
        let mut low = [0u8; 8];
        low.copy_from_slice(trace_id.get(8..).unwrap_or(&[0; 8]));
        self.all || u64::from_be_bytes(low) < self.below
    }

    /// Whether no request without a sampled parent can be traced: then no random ids are made.
    pub fn never(&self) -> bool {
        self.below == 0
    }

    /// The decision for a request: `incoming` is the caller's `traceparent` when well formed.
    /// A new trace's id ends in `draw`'s eight bytes, by which the ratio decides, so a request not
    /// kept costs one draw; `random` supplies the other 24 bytes of ids, only for a request that
    /// is traced. A request either cannot supply is not traced.
    pub fn decide(
        &self,
        incoming: Option<TraceParent>,
        draw: impl FnOnce() -> Option<u64>,
        random: impl FnOnce() -> Option<[u8; 24]>,
    ) -> Option<SpanIds> {
        match incoming {
            Some(p) if !p.sampled => None,
            Some(p) => {
                let (_, server, upstream) = split(random()?);
                Some(SpanIds {
                    trace_id: p.trace_id,
                    parent: Some(p.span_id),
                    server,
                    upstream,
                })
            }
            None if self.never() => None,
            None => {
                let low = draw()?;
                if !self.all && low >= self.below {
                    return None;
                }
                let (high, server, upstream) = split(random()?);
                let mut trace_id = [0u8; 16];
                let bytes = high.into_iter().chain(low.to_be_bytes());
                for (o, b) in trace_id.iter_mut().zip(bytes) {
                    *o = b;
                }
                Some(SpanIds {
                    trace_id,
                    parent: None,
                    server,
                    upstream,
                })
            }
        }
    }
}

/// 24 random bytes as a trace id's first half and two span ids; a zero span id (invalid) and a zero
/// half (which could make a zero trace id) are made non-zero.
fn split(r: [u8; 24]) -> ([u8; 8], [u8; 8], [u8; 8]) {
    let (mut t, mut a, mut b) = ([0u8; 8], [0u8; 8], [0u8; 8]);
    t.copy_from_slice(r.get(..8).unwrap_or(&[1; 8]));
    a.copy_from_slice(r.get(8..16).unwrap_or(&[1; 8]));
    b.copy_from_slice(r.get(16..).unwrap_or(&[1; 8]));
    for id in [&mut t, &mut a, &mut b] {
        if *id == [0; 8] {
            *id = [0, 0, 0, 0, 0, 0, 0, 1];
        }
    }
    (t, a, b)
}

/// 24 bytes for a traced request's ids, from this worker's draws: ids must be unique and
/// unpredictable enough to spread, not secret (OpenTelemetry's own SDKs use a seeded fast
/// generator), and a draw of the system generator cost more than the rest of the span. `None` when
/// seeding fails, and that request goes untraced.
pub fn span_ids() -> Option<[u8; 24]> {
    let mut b = [0u8; 24];
    for chunk in b.chunks_exact_mut(8) {
        chunk.copy_from_slice(&fast_draw()?.to_le_bytes());
    }
    Some(b)
}

/// A new span's id (never zero, which is invalid), from this worker's draws.
pub fn span_id() -> Option<[u8; 8]> {
    let id = fast_draw()?.max(1);
    Some(id.to_le_bytes())
}

thread_local! {
    /// each worker's draws for sampling and ids: a splitmix64 state, seeded from the system
    /// generator (0: not yet)
    static DRAW: Cell<u64> = const { Cell::new(0) };
}

/// A uniform `u64` for the sampling decision and a new trace id's last eight bytes: a splitmix64
/// step, far cheaper than the system generator that seeds it (per thread, once); `None` when
/// seeding fails.
pub fn fast_draw() -> Option<u64> {
    DRAW.with(|state| {
        let mut x = state.get();
        if x == 0 {
            let mut seed = [0u8; 8];
            aws_lc_rs::rand::fill(&mut seed).ok()?;
            x = u64::from_le_bytes(seed) | 1;
        }
        x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
        state.set(x);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Some(z ^ (z >> 31))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(sampled: bool) -> TraceParent {
        TraceParent {
            trace_id: [7; 16],
            span_id: [9; 8],
            sampled,
        }
    }

    fn draw() -> Option<u64> {
        Some(7)
    }

    fn random() -> Option<[u8; 24]> {
        let mut r = [0u8; 24];
        for (i, b) in r.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        Some(r)
    }

    #[test]
    fn a_sampled_parent_is_followed_whatever_the_ratio_and_an_unsampled_one_never() {
        for ratio in [0.0, 0.5, 1.0] {
            let s = Sampler::new(ratio);
            let ids = s.decide(Some(parent(true)), draw, random).unwrap();
            assert_eq!(ids.trace_id, [7; 16]);
            assert_eq!(ids.parent, Some([9; 8]));
            assert_ne!(ids.server, ids.upstream);
            assert_eq!(s.decide(Some(parent(false)), draw, random), None);
        }
    }

    #[test]
    fn without_a_parent_the_ratio_decides_by_trace_id() {
        assert_eq!(Sampler::new(0.0).decide(None, draw, random), None);
        let all = Sampler::new(1.0).decide(None, draw, random).unwrap();
        assert_eq!(all.parent, None);
        // the first half from the ids drawn, the second the draw the ratio decided by
        assert_eq!(
            all.trace_id,
            [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 0, 0, 0, 7]
        );
        assert!(Sampler::new(0.5).keeps(&all.trace_id));
        let high = || Some(u64::MAX - 1);
        assert_eq!(Sampler::new(0.5).decide(None, high, random), None);
        let half = Sampler::new(0.5);
        let mut low = [0u8; 16];
        low[8] = 0x10;
        let mut high = [0u8; 16];
        high[8] = 0xf0;
        assert!(half.keeps(&low) && !half.keeps(&high));
        let mut kept = 0;
        for i in 0..4000u32 {
            let mut t = [0u8; 16];
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &i.to_le_bytes());
            t.copy_from_slice(&d.as_ref()[..16]);
            kept += usize::from(Sampler::new(0.25).keeps(&t));
        }
        assert!((800..1200).contains(&kept), "{kept} of 4000 at 0.25");
    }

    #[test]
    fn no_randomness_no_trace_and_none_is_asked_for_when_none_could_be_kept() {
        assert_eq!(Sampler::new(1.0).decide(None, || None, random), None);
        assert_eq!(Sampler::new(1.0).decide(None, draw, || None), None);
        assert_eq!(
            Sampler::new(1.0).decide(Some(parent(true)), draw, || None),
            None
        );
        let asked = std::cell::Cell::new(false);
        let ask = || {
            asked.set(true);
            random()
        };
        let drawn = std::cell::Cell::new(false);
        let ask_draw = || {
            drawn.set(true);
            draw()
        };
        assert_eq!(Sampler::new(0.0).decide(None, ask_draw, ask), None);
        assert!(!asked.get() && !drawn.get());
        // a request the ratio does not keep costs no system randomness
        assert_eq!(
            Sampler::new(0.5).decide(None, || Some(u64::MAX - 1), ask),
            None
        );
        assert!(!asked.get());
    }

    #[test]
    fn zero_ids_are_never_made() {
        let (t, a, b) = split([0; 24]);
        assert!(t != [0; 8] && a != [0; 8] && b != [0; 8]);
    }

    #[test]
    fn the_ratio_becomes_a_threshold_from_none_to_all() {
        assert_eq!(threshold(0.0), 0);
        assert_eq!(threshold(-1.0), 0);
        assert_eq!(threshold(1.0), u64::MAX);
        let half = threshold(0.5);
        assert!(half > u64::MAX / 2 - (1 << 20) && half < u64::MAX / 2 + (1 << 20));
    }

    #[test]
    fn span_ids_are_never_zero_and_never_repeat() {
        let ids: std::collections::HashSet<[u8; 8]> =
            (0..4000).map(|_| span_id().unwrap()).collect();
        assert_eq!(ids.len(), 4000);
        assert!(!ids.contains(&[0; 8]));
        let (a, b) = (span_ids().unwrap(), span_ids().unwrap());
        assert_ne!(a, b);
        assert!(a.chunks(8).all(|c| c != [0; 8]));
    }

    #[test]
    fn the_draws_spread_over_the_range() {
        let draws: Vec<u64> = (0..4000).map(|_| fast_draw().unwrap()).collect();
        let low = draws.iter().filter(|&&d| d < u64::MAX / 4).count();
        assert!((800..1200).contains(&low), "{low} of 4000 under a quarter");
        assert!(draws.windows(2).all(|w| w[0] != w[1]));
    }
}
