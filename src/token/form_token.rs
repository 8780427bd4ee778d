//! Sign-in form tokens (against cross-site request forgery): stateless, an HMAC over the browser's
//! pre-login cookie, the time and a nonce, so any replica given the same `[sessions]
//! state_secret_env` takes a form another one served; each is taken once, in the shared store when
//! replicas share one.

use crate::clock::SharedClock;
use crate::crypto::NoRandomness;
use crate::store::seen::{SeenIds, FORM_NONCES};
use crate::store::OnceIds;
use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::sync::Arc;
use std::time::Duration;

/// The key is derived, never the secret itself: the same secret seals pre-login cookies and keys
/// DPoP nonces with unrelated keys.
const KEY_SALT: &[u8] = b"gatehouse sign-in form";
const KEY_INFO: &[u8] = b"form token, HMAC-SHA256, v1";
/// Bytes of the tag a token carries: 128 bits cannot be guessed.
const TAG: usize = 16;
/// How far ahead of this replica's clock another replica's may be.
const SKEW: u64 = 60;

/// Issues and takes form tokens.
pub struct FormTokens {
    key: hmac::Key,
    clock: SharedClock,
    /// seconds a token is good for
    lifetime: u64,
    /// the nonces taken: here, or in the store replicas share
    used: SeenIds,
}

impl FormTokens {
    /// Tokens keyed by `secret` (shared by every replica given it), else by this process's own;
    /// `shared`: the store's one-time ids, when replicas share them.
    pub fn new(
        secret: Option<&[u8]>,
        clock: SharedClock,
        lifetime: u64,
        shared: Option<Arc<dyn OnceIds>>,
    ) -> Result<FormTokens, NoRandomness> {
        Ok(FormTokens {
            key: crate::crypto::hmac_key(secret, KEY_SALT, KEY_INFO)?,
            clock,
            lifetime,
            used: SeenIds::new("form", FORM_NONCES, shared)?,
        })
    }

    fn tag(&self, pre_login: &str, issued: u64, nonce: &str) -> hmac::Tag {
        hmac::sign(
            &self.key,
            format!("{pre_login}.{issued}.{nonce}").as_bytes(),
        )
    }

    /// A token for a form shown to the browser holding the pre-login cookie `pre_login`.
    pub fn issue(&self, pre_login: &str) -> Result<String, NoRandomness> {
        let nonce = crate::crypto::random_token(16)?;
        let issued = self.clock.now_secs();
        let tag = self.tag(pre_login, issued, &nonce);
        let tag = tag.as_ref().get(..TAG).unwrap_or_default();
        Ok(format!("{issued}.{nonce}.{}", URL_SAFE_NO_PAD.encode(tag)))
    }

    /// Takes a token sent with a form: true when it was issued (by any replica with the key) to
    /// the browser holding `pre_login`, is not too old, and was not taken before. A store that
    /// cannot answer refuses it.
    pub async fn take(&self, pre_login: &str, sent: &str) -> bool {
        let mut parts = sent.splitn(3, '.');
        let (Some(issued), Some(nonce), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(issued) = issued.parse::<u64>() else {
            return false;
        };
        let now = self.clock.now_secs();
        if issued > now.saturating_add(SKEW) || issued.saturating_add(self.lifetime) < now {
            return false;
        }
        let want = self.tag(pre_login, issued, nonce);
        let (Ok(tag), Some(want)) = (URL_SAFE_NO_PAD.decode(tag), want.as_ref().get(..TAG)) else {
            return false;
        };
        if verify_slices_are_equal(&tag, want).is_err() {
            return false;
        }
        let ttl = Duration::from_secs(self.lifetime + SKEW);
        self.used.first_use(&[nonce], ttl).await.unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::OffsetClock;

    fn tokens(secret: &[u8], clock: Arc<OffsetClock>) -> FormTokens {
        FormTokens::new(Some(secret), clock, 1800, None).unwrap()
    }

    #[tokio::test]
    async fn a_token_is_taken_once_by_its_browser_on_any_replica_with_the_key() {
        let clock = Arc::new(OffsetClock::default());
        let (one, two) = (tokens(b"s", clock.clone()), tokens(b"s", clock.clone()));
        let t = one.issue("browser-a").unwrap();
        assert!(!two.take("browser-b", &t).await, "another browser's cookie");
        assert!(
            two.take("browser-a", &t).await,
            "another replica with the key"
        );
        assert!(!two.take("browser-a", &t).await, "taken once");
        let other_key = tokens(b"other", clock.clone());
        let t = one.issue("browser-a").unwrap();
        assert!(!other_key.take("browser-a", &t).await);
        let mut forged = t.clone();
        forged.replace_range(forged.len() - 2.., "AA");
        assert!(!one.take("browser-a", &forged).await, "a changed tag");
        for junk in ["", "1.2", "x.n.t", "1.n.!!"] {
            assert!(!one.take("browser-a", junk).await, "{junk:?}");
        }
        assert!(one.take("browser-a", &t).await);
    }

    #[tokio::test]
    async fn a_token_lasts_its_lifetime_and_a_clock_ahead_within_the_skew() {
        let clock = Arc::new(OffsetClock::default());
        let f = tokens(b"s", clock.clone());
        let (first, second) = (f.issue("b").unwrap(), f.issue("b").unwrap());
        clock.advance(Duration::from_secs(1800));
        assert!(f.take("b", &first).await, "at the end of its lifetime");
        clock.advance(Duration::from_secs(2));
        assert!(!f.take("b", &second).await, "after it");
        // tokens from replicas whose clocks run ahead: within the skew, and beyond it
        let here = tokens(b"s", Arc::new(OffsetClock::default()));
        for (ahead, taken) in [(SKEW - 1, true), (SKEW + 2, false)] {
            let clock = Arc::new(OffsetClock::default());
            clock.advance(Duration::from_secs(ahead));
            let t = tokens(b"s", clock).issue("b").unwrap();
            assert_eq!(here.take("b", &t).await, taken, "{ahead} s ahead");
        }
    }
}
