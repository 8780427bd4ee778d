//! DPoP (RFC 9449): proofs of possession of a key, checked where a token is asked for and where one
//! is used, each proof taken once across the fleet, with optional server nonces.

pub mod headers;
pub mod key;
pub mod nonce;
pub mod proof;

use crate::clock::SharedClock;
use crate::config::DpopSettings;
use std::sync::Arc;

/// Why a proof is not taken. Descriptions never quote the proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// `invalid_dpop_proof`
    Proof(&'static str),
    /// `use_dpop_nonce`: the proof must carry this nonce (sent in `DPoP-Nonce`)
    UseNonce(String),
    /// the proof ids cannot be checked (the shared store is away): refused, not taken unchecked
    Unavailable,
    /// `invalid_token`: a bound token without its proof, a bearer token where only DPoP is taken,
    /// or a bearer token sent as DPoP
    Binding(&'static str),
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Proof(_) => "invalid_dpop_proof",
            Refusal::UseNonce(_) => "use_dpop_nonce",
            Refusal::Unavailable => "temporarily_unavailable",
            Refusal::Binding(_) => "invalid_token",
        }
    }

    pub fn description(&self) -> &'static str {
        match self {
            Refusal::Proof(d) | Refusal::Binding(d) => d,
            Refusal::UseNonce(_) => "the DPoP proof must carry the nonce in DPoP-Nonce",
            Refusal::Unavailable => "DPoP proofs cannot be checked right now",
        }
    }

    /// The nonce to send in `DPoP-Nonce`, when the client needs one.
    pub fn nonce(&self) -> Option<&str> {
        match self {
            Refusal::UseNonce(n) => Some(n),
            _ => None,
        }
    }
}

/// The one `DPoP` header of a request: `None` without one; two, or one that is not text, are
/// refused (RFC 9449 §4.3: exactly one proof).
pub fn proof_header(headers: &http::HeaderMap) -> Result<Option<&str>, Refusal> {
    let mut all = headers.get_all("dpop").iter();
    let Some(v) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(Refusal::Proof("the request has more than one DPoP header"));
    }
    v.to_str()
        .map(Some)
        .map_err(|_| Refusal::Proof("the DPoP header is not ASCII"))
}

/// The request a proof must fit.
pub struct Request<'a> {
    pub method: &'a str,
    /// `scheme://host[:port]/path`, normalised, without query
    pub url: &'a str,
    /// the hash of the access token the proof goes with ([`proof::token_hash`]: resources,
    /// userinfo); none at the token endpoint
    pub ath: Option<&'a str>,
    /// the thumbprint the access token is bound to (`cnf.jkt`), which the proof's key must have
    pub bound_to: Option<&'a str>,
}

/// An access token as presented to a resource (or userinfo), for its binding to be judged.
pub struct Presentation<'a> {
    pub headers: &'a http::HeaderMap,
    pub method: &'a str,
    pub token: &'a str,
    /// the token's hash, when it was kept with the verified token (else it is computed)
    pub ath: Option<&'a str>,
    /// sent as `Authorization: DPoP`
    pub as_dpop: bool,
    /// the verified token's `cnf.jkt`
    pub bound_to: Option<&'a str>,
    /// the resource takes DPoP-bound tokens only
    pub required: bool,
}

/// Judges DPoP proofs for one configuration generation.
pub struct Dpop {
    pub settings: DpopSettings,
    /// the algorithms as a challenge names them: `ES256 RS256 EdDSA PS256`
    pub algs: Arc<str>,
    leeway: u64,
    clock: SharedClock,
    seen: Arc<crate::store::seen::SeenIds>,
    nonces: Option<nonce::Nonces>,
    headers: headers::KnownHeaders,
}

impl Dpop {
    /// `secret`: what replicas share to accept each other's nonces (`[sessions] state_secret_env`);
    /// without it each process keys its own.
    pub fn new(
        settings: DpopSettings,
        leeway: u64,
        clock: SharedClock,
        seen: Arc<crate::store::seen::SeenIds>,
        secret: Option<&[u8]>,
    ) -> Result<Dpop, crate::crypto::NoRandomness> {
        let nonces = match settings.nonce {
            true => Some(nonce::Nonces::new(secret, settings.max_age.as_secs())?),
            false => None,
        };
        let algs = (settings.algorithms.iter())
            .map(|a| format!("{a:?}"))
            .collect::<Vec<_>>()
            .join(" ")
            .into();
        Ok(Dpop {
            settings,
            algs,
            leeway,
            clock,
            seen,
            nonces,
            headers: headers::KnownHeaders::default(),
        })
    }

    /// How long a proof id is remembered: as long as its `iat` could still be accepted.
    fn remembered(&self) -> std::time::Duration {
        self.settings.max_age + std::time::Duration::from_secs(2 * self.leeway)
    }

    /// Checks `proof` for `req`: the proof itself, the key binding, the nonce, and that its id is
    /// new. Returns the thumbprint of the proof's key.
    pub async fn check(&self, proof: &str, req: &Request<'_>) -> Result<String, Refusal> {
        let now = self.clock.now_secs();
        let expect = proof::Expect {
            method: req.method,
            url: req.url,
            ath: req.ath,
            algorithms: &self.settings.algorithms,
            now,
            max_age: self.settings.max_age.as_secs(),
            leeway: self.leeway,
        };
        let segment = proof::header_segment(proof);
        let known = self.headers.get(segment);
        let read_here = known.is_none();
        let (checked, key) = proof::check(proof, &expect, known).map_err(Refusal::Proof)?;
        if read_here {
            self.headers.keep(segment, key);
        }
        if req.bound_to.is_some_and(|jkt| jkt != checked.jkt) {
            return Err(Refusal::Proof(
                "the DPoP proof is signed by another key than the token is bound to",
            ));
        }
        if let Some(n) = &self.nonces {
            if !checked.nonce.as_deref().is_some_and(|x| n.valid(x, now)) {
                return Err(Refusal::UseNonce(n.issue(now)));
            }
        }
        let id = [checked.jkt.as_str(), checked.jti.as_str()];
        match self.seen.first_use(&id, self.remembered()).await {
            Ok(true) => Ok(checked.jkt),
            Ok(false) => Err(Refusal::Proof("the DPoP proof was used before")),
            Err(e) => {
                tracing::warn!(error = %e, "DPoP proof ids cannot be checked; the proof is refused");
                Err(Refusal::Unavailable)
            }
        }
    }

    /// Judges a presented token's binding and, for a DPoP token, its proof for the request at
    /// `url` (made only then: a bearer request pays nothing).
    pub async fn judge_token(
        &self,
        p: &Presentation<'_>,
        url: impl FnOnce() -> String,
    ) -> Result<(), Refusal> {
        let jkt = match (p.as_dpop, p.bound_to) {
            (false, None) if !p.required => return Ok(()),
            (false, None) => {
                return Err(Refusal::Binding(
                    "this resource takes DPoP-bound tokens only",
                ))
            }
            (false, Some(_)) => {
                return Err(Refusal::Binding(
                    "the token is DPoP-bound: send it as Authorization: DPoP with a proof",
                ))
            }
            (true, None) => {
                return Err(Refusal::Binding(
                    "the token is not DPoP-bound: send it as Authorization: Bearer",
                ))
            }
            (true, Some(jkt)) => jkt,
        };
        let proof = proof_header(p.headers)?
            .ok_or(Refusal::Proof("a DPoP token needs a DPoP proof header"))?;
        let url = url();
        let ath = match p.ath {
            Some(h) => std::borrow::Cow::Borrowed(h),
            None => std::borrow::Cow::Owned(proof::token_hash(p.token)),
        };
        let r = Request {
            method: p.method,
            url: &url,
            ath: Some(&ath),
            bound_to: Some(jkt),
        };
        self.check(proof, &r).await.map(|_| ())
    }

    /// The nonce clients should use now, when nonces are on.
    pub fn current_nonce(&self) -> Option<String> {
        let now = self.clock.now_secs();
        self.nonces.as_ref().map(|n| n.issue(now))
    }
}

#[cfg(test)]
mod tests {
    use super::proof::tests::Prover;
    use super::*;
    use serde_json::json;

    fn dpop(nonce: bool) -> (Dpop, Arc<crate::clock::OffsetClock>) {
        let clock = Arc::new(crate::clock::OffsetClock::default());
        let settings = DpopSettings {
            nonce,
            ..DpopSettings::default()
        };
        let seen = Arc::new(
            crate::store::seen::SeenIds::new("dpop", crate::store::seen::PROOF_IDS, None).unwrap(),
        );
        let d = Dpop::new(settings, 30, clock.clone(), seen, Some(&[7; 32])).unwrap();
        (d, clock)
    }

    const URL: &str = "https://gw.test/oauth/token";

    fn request(bound_to: Option<&str>) -> Request<'_> {
        Request {
            method: "POST",
            url: URL,
            ath: None,
            bound_to,
        }
    }

    #[tokio::test]
    async fn a_proof_is_taken_once_and_must_be_the_bound_key() {
        let (d, clock) = dpop(false);
        assert_eq!(&*d.algs, "ES256 RS256 EdDSA PS256");
        let p = Prover::new();
        let now = crate::clock::Clock::now_secs(clock.as_ref());
        let proof = p.proof(&json!({"jti": "a", "htm": "POST", "htu": URL, "iat": now}));
        assert_eq!(d.check(&proof, &request(None)).await, Ok(p.jkt()));
        assert_eq!(
            d.check(&proof, &request(None)).await,
            Err(Refusal::Proof("the DPoP proof was used before"))
        );
        let next = p.proof(&json!({"jti": "b", "htm": "POST", "htu": URL, "iat": now}));
        let other = Prover::new().jkt();
        let e = d.check(&next, &request(Some(&other))).await.unwrap_err();
        assert_eq!(e.code(), "invalid_dpop_proof");
        assert_eq!(d.check(&next, &request(Some(&p.jkt()))).await, Ok(p.jkt()));
        assert_eq!(d.current_nonce(), None);
    }

    #[test]
    fn a_request_has_one_proof_header_at_most() {
        let mut h = http::HeaderMap::new();
        assert_eq!(proof_header(&h), Ok(None));
        h.append("dpop", http::HeaderValue::from_static("a.b.c"));
        assert_eq!(proof_header(&h), Ok(Some("a.b.c")));
        h.append("dpop", http::HeaderValue::from_static("d.e.f"));
        assert!(proof_header(&h).is_err());
    }

    #[tokio::test]
    async fn with_nonces_a_proof_needs_a_current_one() {
        let (d, clock) = dpop(true);
        let p = Prover::new();
        let now = crate::clock::Clock::now_secs(clock.as_ref());
        let bare = p.proof(&json!({"jti": "a", "htm": "POST", "htu": URL, "iat": now}));
        let e = d.check(&bare, &request(None)).await.unwrap_err();
        assert_eq!(
            (e.code(), e.nonce()),
            ("use_dpop_nonce", d.current_nonce().as_deref())
        );
        let nonce = e.nonce().unwrap().to_string();
        let with = |jti: &str, now: u64| {
            p.proof(&json!({"jti": jti, "htm": "POST", "htu": URL, "iat": now, "nonce": nonce}))
        };
        assert!(d.check(&with("b", now), &request(None)).await.is_ok());
        // two periods of dpop_max_age later the nonce is stale
        clock.advance(std::time::Duration::from_secs(600));
        let later = now + 600;
        let e = d
            .check(&with("c", later), &request(None))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "use_dpop_nonce");
        assert_ne!(e.nonce(), Some(nonce.as_str()));
    }
}
