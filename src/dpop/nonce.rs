//! Server nonces for DPoP proofs (RFC 9449 §8), stateless: a nonce names its period and carries an
//! HMAC of it, so every replica with the same secret issues and accepts the same nonces without
//! asking anyone. A nonce is good in its period and the next one.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The key is derived, never the secret itself, so `state_secret_env` also sealing pre-login
/// cookies yields an unrelated key here.
const KEY_SALT: &[u8] = b"gatehouse dpop nonce";
const KEY_INFO: &[u8] = b"DPoP-Nonce, HMAC-SHA256, v1";
/// Bytes of the tag a nonce carries: 128 bits cannot be guessed within a period.
const TAG: usize = 16;

/// Issues and checks nonces.
pub struct Nonces {
    key: hmac::Key,
    /// seconds per period
    period: u64,
}

impl Nonces {
    /// Nonces keyed by `secret` (shared by every replica given it), else by this process's own.
    pub fn new(secret: Option<&[u8]>, period: u64) -> Result<Nonces, crate::crypto::NoRandomness> {
        Ok(Nonces {
            key: crate::crypto::hmac_key(secret, KEY_SALT, KEY_INFO)?,
            period: period.max(1),
        })
    }

    fn tag(&self, period: u64) -> hmac::Tag {
        hmac::sign(&self.key, &period.to_be_bytes())
    }

    /// The nonce of the period `now` falls in.
    pub fn issue(&self, now: u64) -> String {
        let period = now / self.period;
        let mut raw = Vec::with_capacity(8 + TAG);
        raw.extend_from_slice(&period.to_be_bytes());
        raw.extend(self.tag(period).as_ref().iter().take(TAG));
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// True for a nonce of this period or the one before, issued with this key.
    pub fn valid(&self, nonce: &str, now: u64) -> bool {
        // room for the decoder's estimate; a nonce decodes to exactly 24 bytes
        let mut raw = [0u8; 8 + TAG + 3];
        if nonce.len() != 32 || URL_SAFE_NO_PAD.decode_slice(nonce, &mut raw) != Ok(8 + TAG) {
            return false;
        }
        let (head, rest) = raw.split_at(8);
        let Ok(head) = <[u8; 8]>::try_from(head) else {
            return false;
        };
        let period = u64::from_be_bytes(head);
        let current = now / self.period;
        if period != current && period.saturating_add(1) != current {
            return false;
        }
        let tag = self.tag(period);
        match (rest.get(..TAG), tag.as_ref().get(..TAG)) {
            (Some(sent), Some(want)) => verify_slices_are_equal(sent, want).is_ok(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_good_for_its_period_and_the_next_on_every_replica() {
        let a = Nonces::new(Some(b"a shared secret of at least 32 bytes!"), 300).unwrap();
        let b = Nonces::new(Some(b"a shared secret of at least 32 bytes!"), 300).unwrap();
        let n = a.issue(1000);
        assert_eq!(n.len(), 32);
        assert_eq!(n, b.issue(1100), "one period, one nonce, on every replica");
        assert!(b.valid(&n, 1000) && b.valid(&n, 1199));
        assert!(b.valid(&n, 1200), "the next period still takes it");
        assert!(!b.valid(&n, 1500), "two periods on it is stale");
        assert!(
            !b.valid(&n, 800),
            "a nonce from the future is not one we issued"
        );
        assert_ne!(a.issue(1200), n, "it rotates");
    }

    #[test]
    fn nonces_of_another_key_or_forged_are_refused() {
        let a = Nonces::new(Some(b"a shared secret of at least 32 bytes!"), 60).unwrap();
        let other = Nonces::new(Some(b"another secret of at least 32 bytes!!"), 60).unwrap();
        let own = Nonces::new(None, 60).unwrap();
        assert!(!a.valid(&other.issue(100), 100));
        assert!(!a.valid(&own.issue(100), 100));
        assert!(own.valid(&own.issue(100), 100));
        let mut forged = a.issue(100).into_bytes();
        forged[20] = if forged[20] == b'A' { b'B' } else { b'A' };
        assert!(!a.valid(&String::from_utf8(forged).unwrap(), 100));
        assert!(!a.valid("", 100) && !a.valid("not a nonce", 100));
        assert!(!a.valid(&"A".repeat(32), 100));
    }
}
