//! Secret and password hashes: formats, constant-time checks, a bounded pool for slow hashes, random
//! values, and SHA-256 as hex. A leaf: it imports no other module of the crate.

pub mod files;
pub mod tls;
pub mod verify_keys;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// How a client secret is stored: never the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretHash {
    /// SHA-256 of a generated high-entropy secret
    Sha256([u8; 32]),
    /// a PHC string: `$argon2id$...`
    Argon2(String),
    /// `$2b$...`
    Bcrypt(String),
}

impl SecretHash {
    /// The algorithm's name, for a span (never the hash).
    pub fn algorithm(&self) -> &'static str {
        match self {
            SecretHash::Sha256(_) => "sha256",
            SecretHash::Argon2(_) => "argon2id",
            SecretHash::Bcrypt(_) => "bcrypt",
        }
    }

    pub fn parse(s: &str) -> Result<SecretHash, String> {
        if let Some(hex) = s.strip_prefix("sha256:") {
            let bytes = (0..hex.len())
                .step_by(2)
                .map(|i| {
                    hex.get(i..i + 2)
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                })
                .collect::<Option<Vec<u8>>>();
            return match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(b) if hex.len() == 64 && hex.bytes().all(|c| !c.is_ascii_uppercase()) => {
                    Ok(SecretHash::Sha256(b))
                }
                _ => Err("sha256: must be followed by 64 lowercase hex digits".into()),
            };
        }
        if s.starts_with("$argon2id$") {
            return Ok(SecretHash::Argon2(s.to_string()));
        }
        if s.starts_with("$2b$") || s.starts_with("$2a$") || s.starts_with("$2y$") {
            return Ok(SecretHash::Bcrypt(s.to_string()));
        }
        Err("not a recognised hash: use \"sha256:<hex>\", \"$argon2id$...\" or bcrypt \"$2b$...\" (gatehouse hash-secret makes one)".into())
    }
}

/// base64url (unpadded) SHA-256 of a text: a PKCE S256 challenge, a DPoP proof's `ath`, a JWK
/// thumbprint.
pub fn sha256_b64url(s: &str) -> String {
    use base64::Engine;
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d.as_ref())
}

/// Lowercase hex SHA-256 of a text.
pub fn sha256_hex(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    // By hand: a `format!` per byte cost more than the hash (it runs on every session request).
    let mut out = String::with_capacity(64);
    for &b in d.as_ref() {
        for nibble in [b >> 4, b & 15] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

/// SHA-256 of the secret, compared in constant time.
pub fn sha256_matches(secret: &str, want: &[u8; 32]) -> bool {
    let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
    aws_lc_rs::constant_time::verify_slices_are_equal(got.as_ref(), want).is_ok()
}

/// Checks a secret against its stored hash; every format compares in constant time.
pub fn secret_matches(secret: &str, hash: &SecretHash) -> bool {
    match hash {
        SecretHash::Sha256(want) => sha256_matches(secret, want),
        SecretHash::Argon2(phc) => {
            use argon2::password_hash::{PasswordHash, PasswordVerifier};
            PasswordHash::new(phc)
                .map(|h| {
                    argon2::Argon2::default()
                        .verify_password(secret.as_bytes(), &h)
                        .is_ok()
                })
                .unwrap_or(false)
        }
        SecretHash::Bcrypt(h) => bcrypt::verify(secret, h).unwrap_or(false),
    }
}

/// True for hashes that take milliseconds: they run on the bounded pool, never on a request thread.
pub fn is_slow(hash: &SecretHash) -> bool {
    !matches!(hash, SecretHash::Sha256(_))
}

/// `"sha256:" + hex` of a secret.
pub fn sha256_hash(secret: &str) -> String {
    format!("sha256:{}", sha256_hex(secret))
}

/// An argon2id PHC string for a human-chosen secret.
pub fn argon2_hash(secret: &str) -> Result<String, String> {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let mut salt = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    argon2::Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// The system's random generator failed: nothing predictable is handed out instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random generator failed")]
pub struct NoRandomness;

/// `bytes` random bytes, base64url: client secrets, codes, refresh tokens, token and session ids.
/// A generator failure is an error, never a predictable value.
pub fn random_token(bytes: usize) -> Result<String, NoRandomness> {
    let mut b = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| NoRandomness)?;
    Ok(URL_SAFE_NO_PAD.encode(b))
}

/// The secret of a process that was given no shared one: random, made once and kept across
/// reloads, so what it keyed stays good when the configuration changes (but only in this process).
pub fn process_secret() -> Result<&'static [u8; 32], NoRandomness> {
    static SECRET: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    if let Some(s) = SECRET.get() {
        return Ok(s);
    }
    let mut fresh = [0u8; 32];
    aws_lc_rs::rand::fill(&mut fresh).map_err(|_| NoRandomness)?;
    // two threads racing here both end up with whichever value was stored first
    Ok(SECRET.get_or_init(|| fresh))
}

/// An HMAC-SHA256 key derived (HKDF, `salt` and `info` naming its use) from `secret`, which
/// replicas share, or from this process's own: the secret itself never keys anything, so one
/// secret serves several uses with unrelated keys.
pub fn hmac_key(
    secret: Option<&[u8]>,
    salt: &[u8],
    info: &[u8],
) -> Result<aws_lc_rs::hmac::Key, NoRandomness> {
    use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
    let ikm: &[u8] = match secret {
        Some(s) => s,
        None => process_secret()?,
    };
    let prk = Salt::new(HKDF_SHA256, salt).extract(ikm);
    let info = [info];
    let okm = (prk.expand(&info, aws_lc_rs::hmac::HMAC_SHA256)).map_err(|_| NoRandomness)?;
    Ok(aws_lc_rs::hmac::Key::from(okm))
}

/// A random 128-bit key for keyed hashes (SipHash).
pub fn random_key() -> Result<(u64, u64), NoRandomness> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| NoRandomness)?;
    let (a, c) = b.split_at(8);
    Ok((
        u64::from_le_bytes(a.try_into().map_err(|_| NoRandomness)?),
        u64::from_le_bytes(c.try_into().map_err(|_| NoRandomness)?),
    ))
}

/// Picks the stand-in hash for a name that matches no account: one of the configured hashes, chosen
/// by a keyed hash of the name. A given unknown name therefore always costs what some real account
/// costs, and the mix of costs over unknown names is the mix over real ones, so timing does not
/// tell an unknown client or user from a real one.
pub struct Decoys {
    hashes: Vec<SecretHash>,
    key: (u64, u64),
}

impl Decoys {
    pub fn new(hashes: Vec<SecretHash>) -> Result<Decoys, NoRandomness> {
        Ok(Decoys {
            hashes,
            key: random_key()?,
        })
    }

    pub fn for_name(&self, name: &str) -> SecretHash {
        use std::hash::Hasher;
        if self.hashes.is_empty() {
            return SecretHash::Sha256([0; 32]);
        }
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write(name.as_bytes());
        let i = (h.finish() % self.hashes.len() as u64) as usize;
        self.hashes
            .get(i)
            .cloned()
            .unwrap_or(SecretHash::Sha256([0; 32]))
    }
}

/// Slow hash checks answer this when the pool and its queue are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolFull;

/// Runs slow hash checks on blocking threads, at most `workers` at once and `queue` waiting; more
/// are refused at once rather than queued without bound, so a flood of sign-ins costs a bounded
/// share of the CPU and never stalls the proxy's request threads.
pub struct HashPool {
    running: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
}

impl HashPool {
    pub fn new(workers: usize, queue: usize) -> HashPool {
        HashPool {
            running: Arc::new(Semaphore::new(workers.max(1))),
            admitted: Arc::new(Semaphore::new(workers.max(1) + queue)),
        }
    }

    /// Sized for the machine: half the cores check hashes, the rest keep proxying.
    pub fn for_machine() -> HashPool {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        HashPool::new((cores / 2).max(1), 64)
    }

    /// Checks `secret` against `hash`; fast hashes inline, slow ones on the pool.
    pub async fn matches(&self, secret: &str, hash: &SecretHash) -> Result<bool, PoolFull> {
        if !is_slow(hash) {
            return Ok(secret_matches(secret, hash));
        }
        let Ok(_admitted) = self.admitted.clone().try_acquire_owned() else {
            return Err(PoolFull);
        };
        let Ok(_running) = self.running.clone().acquire_owned().await else {
            return Err(PoolFull);
        };
        let (secret, hash) = (secret.to_string(), hash.clone());
        // A failed hashing task is a failed check: fail closed.
        Ok(
            tokio::task::spawn_blocking(move || secret_matches(&secret, &hash))
                .await
                .unwrap_or(false),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_formats() {
        let s = "correct horse";
        let sha = SecretHash::parse(&sha256_hash(s)).unwrap();
        assert!(secret_matches(s, &sha));
        assert!(!secret_matches("wrong", &sha));
        let a = SecretHash::parse(&argon2_hash(s).unwrap()).unwrap();
        assert!(secret_matches(s, &a));
        assert!(!secret_matches("wrong", &a));
        let b = SecretHash::parse(&bcrypt::hash(s, 4).unwrap()).unwrap();
        assert!(secret_matches(s, &b));
        assert!(SecretHash::parse("plain-secret").is_err());
        assert!(SecretHash::parse("sha256:ABC").is_err());
        assert!(is_slow(&a) && is_slow(&b) && !is_slow(&sha));
    }

    #[test]
    fn decoys_are_stable_per_name_and_cover_every_kind() {
        let sha = SecretHash::parse(&sha256_hash("x")).unwrap();
        let bc = SecretHash::parse(&bcrypt::hash("x", 4).unwrap()).unwrap();
        let d = Decoys::new(vec![sha.clone(), bc.clone()]).unwrap();
        assert_eq!(d.for_name("ghost"), d.for_name("ghost"));
        let picked: Vec<_> = (0..64).map(|i| d.for_name(&format!("c{i}"))).collect();
        assert!(picked.contains(&sha) && picked.contains(&bc));
        assert_eq!(
            Decoys::new(vec![]).unwrap().for_name("a"),
            SecretHash::Sha256([0; 32])
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_full_pool_refuses_instead_of_queueing() {
        let slow = SecretHash::parse(&bcrypt::hash("x", 10).unwrap()).unwrap();
        let pool = Arc::new(HashPool::new(1, 1));
        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let (pool, slow) = (pool.clone(), slow.clone());
                tokio::spawn(async move { pool.matches("x", &slow).await })
            })
            .collect();
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.unwrap());
        }
        assert!(results.contains(&Err(PoolFull)), "{results:?}");
        assert!(results.contains(&Ok(true)), "{results:?}");
        // fast hashes never wait for the pool
        let sha = SecretHash::parse(&sha256_hash("x")).unwrap();
        assert_eq!(pool.matches("x", &sha).await, Ok(true));
    }

    #[test]
    fn known_digest() {
        assert_eq!(
            super::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
