//! Which requests are traced: parent-based (a caller's sampled `traceparent` is always followed,
//! an unsampled one never), otherwise `sample_ratio` by trace id.

use super::traceparent::TraceParent;

/// The ids of a traced request: its trace, the caller's span, the gateway's server span and the
/// span of its call to the upstream (whose id the upstream sees as its parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub parent: Option<[u8; 8]>,
    pub server: [u8; 8],
    pub upstream: [u8; 8],
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
        let below = if ratio <= 0.0 {
            0
        } else if ratio >= 1.0 {
            u64::MAX
        } else {
            (ratio * u64::MAX as f64) as u64
        };
        Sampler {
            below,
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

    /// The decision for a request: `incoming` is the caller's `traceparent` when well formed;
    /// `random` supplies 32 fresh bytes, and a request it cannot supply them for is not traced.
    pub fn decide(
        &self,
        incoming: Option<TraceParent>,
        random: impl FnOnce() -> Option<[u8; 32]>,
    ) -> Option<SpanIds> {
        match incoming {
            Some(p) if !p.sampled => None,
            Some(p) => {
                let r = random()?;
                let (_, ids) = split(r);
                Some(SpanIds {
                    trace_id: p.trace_id,
                    parent: Some(p.span_id),
                    server: ids.0,
                    upstream: ids.1,
                })
            }
            None if self.never() => None,
            None => {
                let (trace_id, ids) = split(random()?);
                self.keeps(&trace_id).then_some(SpanIds {
                    trace_id,
                    parent: None,
                    server: ids.0,
                    upstream: ids.1,
                })
            }
        }
    }
}

/// 32 random bytes as a trace id and two span ids; a zero span id (invalid) is made non-zero.
fn split(r: [u8; 32]) -> ([u8; 16], ([u8; 8], [u8; 8])) {
    let (mut t, mut a, mut b) = ([0u8; 16], [0u8; 8], [0u8; 8]);
    t.copy_from_slice(r.get(..16).unwrap_or(&[1; 16]));
    a.copy_from_slice(r.get(16..24).unwrap_or(&[1; 8]));
    b.copy_from_slice(r.get(24..).unwrap_or(&[1; 8]));
    for id in [&mut a[..], &mut b[..], &mut t[..]] {
        if id.iter().all(|&x| x == 0) {
            if let Some(last) = id.last_mut() {
                *last = 1;
            }
        }
    }
    (t, (a, b))
}

/// 32 bytes from the system generator; `None` when it fails, and that request goes untraced.
pub fn system_random() -> Option<[u8; 32]> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).ok().map(|_| b)
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

    fn random() -> Option<[u8; 32]> {
        let mut r = [0u8; 32];
        for (i, b) in r.iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        Some(r)
    }

    #[test]
    fn a_sampled_parent_is_followed_whatever_the_ratio_and_an_unsampled_one_never() {
        for ratio in [0.0, 0.5, 1.0] {
            let s = Sampler::new(ratio);
            let ids = s.decide(Some(parent(true)), random).unwrap();
            assert_eq!(ids.trace_id, [7; 16]);
            assert_eq!(ids.parent, Some([9; 8]));
            assert_ne!(ids.server, ids.upstream);
            assert_eq!(s.decide(Some(parent(false)), random), None);
        }
    }

    #[test]
    fn without_a_parent_the_ratio_decides_by_trace_id() {
        assert_eq!(Sampler::new(0.0).decide(None, random), None);
        let all = Sampler::new(1.0).decide(None, random).unwrap();
        assert_eq!(all.parent, None);
        assert_eq!(all.trace_id[0], 1);
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
        assert_eq!(Sampler::new(1.0).decide(None, || None), None);
        assert_eq!(Sampler::new(1.0).decide(Some(parent(true)), || None), None);
        let asked = std::cell::Cell::new(false);
        let ask = || {
            asked.set(true);
            random()
        };
        assert_eq!(Sampler::new(0.0).decide(None, ask), None);
        assert!(!asked.get());
    }

    #[test]
    fn zero_ids_are_never_made() {
        let (t, (a, b)) = split([0; 32]);
        assert_ne!(t, [0; 16]);
        assert_ne!(a, [0; 8]);
        assert_ne!(b, [0; 8]);
    }
}
