//! SHA-256 as lowercase hex: how stored secrets, codes and session ids are keyed, and how a
//! configuration file is fingerprinted. No crate module below it, so anything may use it.

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

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        assert_eq!(
            super::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
