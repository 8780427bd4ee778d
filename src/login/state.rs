//! The pre-login cookie: a sign-in attempt's state, nonce, PKCE verifier and return address, sealed
//! with AES-256-GCM so the browser carries them without reading or changing them.

use crate::config::{SecretText, SessionSettings};
use aws_lc_rs::aead::{Aad, Nonce, RandomizedNonceKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{KeyType, Salt, HKDF_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// Pre-login cookies are named after the first characters of their `state`, so sign-ins started in
/// several tabs each keep their own. Every cookie with this prefix is the gateway's.
pub const PRE_LOGIN: &str = "__Host-gatehouse-login-";
const STATE_PREFIX: usize = 12;
/// The sealing key is derived, never the secret itself: a secret that also serves elsewhere (or a
/// later second sealed cookie) then yields unrelated keys.
const KEY_SALT: &[u8] = b"gatehouse sealed state";
const KEY_INFO: &[u8] = b"pre-login cookie, AES-256-GCM, v1";
const KEY_LEN: usize = 32;

/// What the pre-login cookie holds: everything the callback must check or send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreLogin {
    /// provider name
    pub p: String,
    pub state: String,
    pub nonce: String,
    /// PKCE code verifier
    pub v: String,
    /// where to land afterwards
    pub rd: String,
    /// the redirect URI sent, to send again at the exchange
    pub u: String,
    /// expiry, seconds since the epoch
    pub exp: u64,
}

impl PreLogin {
    pub fn cookie_name(state: &str) -> String {
        format!("{PRE_LOGIN}{}", state.get(..STATE_PREFIX).unwrap_or(state))
    }
}

/// The sealing key could not be had (the system's random generator failed): no sign-in starts or
/// finishes rather than one with state the browser could change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoKey;

/// HKDF output length for the AES-256 key.
struct KeyLen;

impl KeyType for KeyLen {
    fn len(&self) -> usize {
        KEY_LEN
    }
}

/// Seals and opens pre-login cookies with a key derived from `[sessions] state_secret_env` (shared
/// by every gateway given the same secret) or from the process's own random secret.
pub struct Sealer(RandomizedNonceKey);

impl Sealer {
    pub fn new(secret: Option<&SecretText>) -> Result<Sealer, NoKey> {
        let ikm: &[u8] = match secret {
            Some(s) => s.0.as_bytes(),
            None => crate::crypto::process_secret().map_err(|_| NoKey)?,
        };
        let prk = Salt::new(HKDF_SHA256, KEY_SALT).extract(ikm);
        let mut key = [0u8; KEY_LEN];
        prk.expand(&[KEY_INFO], KeyLen)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| NoKey)?;
        RandomizedNonceKey::new(&AES_256_GCM, &key)
            .map(Sealer)
            .map_err(|_| NoKey)
    }

    pub fn for_sessions(settings: &SessionSettings) -> Result<Sealer, NoKey> {
        Sealer::new(settings.state_secret.as_ref())
    }

    /// The cookie value: base64url of nonce, ciphertext and tag. The cookie's name is authenticated
    /// too, so a sealed value answers only for the attempt it was made for.
    pub fn seal(&self, pre: &PreLogin, name: &str) -> Result<String, NoKey> {
        let mut data = serde_json::to_vec(pre).map_err(|_| NoKey)?;
        let nonce = self
            .0
            .seal_in_place_append_tag(Aad::from(name.as_bytes()), &mut data)
            .map_err(|_| NoKey)?;
        let nonce: &[u8; NONCE_LEN] = nonce.as_ref();
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(URL_SAFE_NO_PAD.encode(out))
    }

    /// The attempt a cookie value holds; `None` for anything this gateway did not seal under `name`.
    pub fn open(&self, value: &str, name: &str) -> Option<PreLogin> {
        let raw = URL_SAFE_NO_PAD.decode(value).ok()?;
        let (nonce, sealed) = raw.split_at_checked(NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut sealed)
            .ok()?;
        serde_json::from_slice(plain).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt() -> PreLogin {
        PreLogin {
            p: "corp".into(),
            state: "abcdefghijklmnopqrstuvwxyz".into(),
            nonce: "n".into(),
            v: "v".into(),
            rd: "/app".into(),
            u: "https://h/oauth/callback".into(),
            exp: 5,
        }
    }

    #[test]
    fn a_sealed_attempt_opens_only_unchanged_under_its_name_and_key() {
        let secret = SecretText("a shared secret of at least thirty-two bytes".into());
        let s = Sealer::new(Some(&secret)).unwrap();
        let p = attempt();
        let name = PreLogin::cookie_name(&p.state);
        assert_eq!(name, "__Host-gatehouse-login-abcdefghijkl");
        let sealed = s.seal(&p, &name).unwrap();
        assert_eq!(s.open(&sealed, &name), Some(p.clone()));
        // nothing readable: the return address and verifier are not in the clear
        let raw = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        assert!(!raw.windows(4).any(|w| w == b"/app"));
        // each sealing uses a fresh nonce
        assert_ne!(s.seal(&p, &name).unwrap(), sealed);
        // another replica with the same secret opens it; another secret or process does not
        assert_eq!(
            Sealer::new(Some(&secret)).unwrap().open(&sealed, &name),
            Some(p.clone())
        );
        let other = SecretText("another secret of at least thirty-two bytes".into());
        assert_eq!(
            Sealer::new(Some(&other)).unwrap().open(&sealed, &name),
            None
        );
        assert_eq!(Sealer::new(None).unwrap().open(&sealed, &name), None);
        // moved to another attempt's cookie, cut, flipped or forged: refused
        assert_eq!(s.open(&sealed, "__Host-gatehouse-login-zzzzzzzzzzzz"), None);
        assert_eq!(s.open(&sealed[..sealed.len() - 2], &name), None);
        let mut flipped = raw.clone();
        flipped[NONCE_LEN + 3] ^= 1;
        assert_eq!(s.open(&URL_SAFE_NO_PAD.encode(flipped), &name), None);
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&p).unwrap());
        assert_eq!(s.open(&forged, &name), None);
        assert_eq!(s.open("not base64!", &name), None);
        assert_eq!(s.open("", &name), None);
    }

    #[test]
    fn without_a_configured_secret_the_process_keeps_one_key() {
        let p = attempt();
        let sealed = Sealer::new(None).unwrap().seal(&p, "n").unwrap();
        assert_eq!(Sealer::new(None).unwrap().open(&sealed, "n"), Some(p));
    }
}
