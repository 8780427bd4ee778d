//! Forwarding headers (X-Forwarded-*, X-Real-IP, Forwarded): set by the gateway, believed only from trusted proxies.

use crate::wire::header_value::{push_int, same_folded};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::net::IpAddr;

/// An address block from `[server] trusted_proxies`: `10.0.0.0/8`, `::1`, `192.0.2.7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => match b.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Cidr { net, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack listener.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        let (a, b, width) = match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        if shift >= 128 {
            return true;
        }
        (a >> shift) == (b >> shift)
    }
}

/// True for a header that carries forwarding information, spelled with `-` or `_`.
pub fn is_forwarding_header(name: &str) -> bool {
    name.get(..12)
        .is_some_and(|p| same_folded(p, "x-forwarded-"))
        || same_folded(name, "x-real-ip")
        || same_folded(name, "forwarded")
}

/// An address as text; IPv4 by hand, which costs a tenth of `Display`'s padding-aware formatting.
pub fn ip_text(ip: IpAddr) -> String {
    let mut out = String::with_capacity(15);
    push_ip(&mut out, ip);
    out
}

/// Appends an address as `ip_text` writes it.
pub fn push_ip(out: &mut String, ip: IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_int(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => {
            use std::fmt::Write;
            let _ = write!(out, "{v6}");
        }
    }
}

/// True when the connection comes from a trusted proxy, whose forwarding headers are believed.
pub fn trusts(peer: Option<IpAddr>, trusted: &[Cidr]) -> bool {
    peer.is_some_and(|ip| trusted.iter().any(|c| c.contains(ip)))
}

/// The address of the connection's other end, when it is an IP socket.
pub fn peer(session: &Session) -> Option<IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// The client a request comes from, for counters that lock or limit: the peer, or, when the peer is
/// a trusted proxy, the nearest `X-Forwarded-For` address no trusted proxy holds (read from the
/// right, as each proxy appends, so a client cannot choose it by writing the header itself).
pub fn client_ip(session: &Session, trusted: &[Cidr]) -> Option<IpAddr> {
    let peer = peer(session)?;
    let chain = session
        .req_header()
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    Some(nearest_untrusted(peer, chain, trusted))
}

/// The address `nearest_untrusted` reads: a bare IP, or one with a port or brackets.
fn hop_address(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    if let Ok(ip) = e.parse() {
        return Some(ip);
    }
    if let Some(rest) = e.strip_prefix('[') {
        return rest.split_once(']')?.0.parse().ok();
    }
    e.rsplit_once(':')?.0.parse().ok()
}

/// `client_ip` for a request already taken from its session: `peer` is the connection's address.
pub fn client_ip_from(peer: IpAddr, req: &RequestHeader, trusted: &[Cidr]) -> IpAddr {
    let chain = req
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok());
    nearest_untrusted(peer, chain, trusted)
}

fn nearest_untrusted<'a>(
    peer: IpAddr,
    headers: impl Iterator<Item = &'a str>,
    trusted: &[Cidr],
) -> IpAddr {
    let mut nearest = peer;
    if !trusts(Some(peer), trusted) {
        return nearest;
    }
    let entries: Vec<&str> = headers.flat_map(|h| h.split(',')).collect();
    for entry in entries.iter().rev() {
        // what cannot be read is where belief stops: the last trusted hop answers for it
        let Some(ip) = hop_address(entry) else {
            return nearest;
        };
        nearest = ip;
        if !trusts(Some(ip), trusted) {
            return ip;
        }
    }
    nearest
}

/// What the gateway knows of the connection a request came on.
pub struct Hop<'a> {
    pub peer: Option<IpAddr>,
    pub host: Option<&'a str>,
    pub tls: bool,
}

/// Sets the forwarding headers of an upstream request. From a trusted proxy (`believed`, from
/// `trusts`), what it sent is kept and the peer is appended to `X-Forwarded-For`; from anyone else,
/// every client-sent forwarding header is replaced, so a backend never believes a spoofed client
/// address, host or scheme.
pub fn set_forwarding_headers(
    up: &mut RequestHeader,
    hop: &Hop<'_>,
    believed: bool,
) -> pingora::Result<()> {
    let proto = if hop.tls { "https" } else { "http" };
    if believed {
        if let Some(ip) = hop.peer {
            let ip = ip_text(ip);
            let xff = match up
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
            {
                Some(prev) => format!("{prev}, {ip}"),
                None => ip.clone(),
            };
            up.insert_header("x-forwarded-for", xff)?;
            if !up.headers.contains_key("x-real-ip") {
                up.insert_header("x-real-ip", ip)?;
            }
        }
        if !up.headers.contains_key("x-forwarded-proto") {
            up.insert_header("x-forwarded-proto", proto)?;
        }
        if let (false, Some(h)) = (up.headers.contains_key("x-forwarded-host"), hop.host) {
            up.insert_header("x-forwarded-host", h)?;
        }
        return Ok(());
    }
    let doomed: Vec<http::HeaderName> = up
        .headers
        .keys()
        .filter(|n| is_forwarding_header(n.as_str()))
        .cloned()
        .collect();
    for name in doomed {
        while up.remove_header(&name).is_some() {}
    }
    if let Some(ip) = hop.peer {
        // One value for both headers: the second costs a reference count, not a copy.
        let ip = http::HeaderValue::try_from(ip_text(ip)).map_err(|_| {
            pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "an address is not a header value",
            )
        })?;
        up.insert_header("x-forwarded-for", ip.clone())?;
        up.insert_header("x-real-ip", ip)?;
    }
    up.insert_header("x-forwarded-proto", proto)?;
    if let Some(h) = hop.host {
        up.insert_header("x-forwarded-host", h)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_read_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "10.9.99.100",
            "255.255.255.255",
            "127.0.0.1",
            "::1",
            "2001:db8::7",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.1.2.3".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(Cidr::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("nope").is_err());
    }

    fn spoofed() -> RequestHeader {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("X-Forwarded-For", "1.2.3.4").unwrap();
        r.append_header("X-Forwarded-Host", "evil.example").unwrap();
        r.append_header("X-Forwarded-Prefix", "/admin").unwrap();
        r.append_header("X_Forwarded_For", "5.6.7.8").unwrap();
        r.append_header("X-Real-IP", "1.2.3.4").unwrap();
        r.append_header("Forwarded", "for=1.2.3.4;host=evil.example")
            .unwrap();
        r
    }

    fn get(r: &RequestHeader, n: &str) -> Option<String> {
        r.headers.get(n).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn untrusted_peers_cannot_choose_forwarding_headers() {
        let mut r = spoofed();
        let hop = Hop {
            peer: Some("192.0.2.9".parse().unwrap()),
            host: Some("api.example.com"),
            tls: true,
        };
        let believed = trusts(hop.peer, &[Cidr::parse("10.0.0.0/8").unwrap()]);
        set_forwarding_headers(&mut r, &hop, believed).unwrap();
        assert_eq!(get(&r, "x-forwarded-for").as_deref(), Some("192.0.2.9"));
        assert_eq!(get(&r, "x-real-ip").as_deref(), Some("192.0.2.9"));
        assert_eq!(
            get(&r, "x-forwarded-host").as_deref(),
            Some("api.example.com")
        );
        assert_eq!(get(&r, "x-forwarded-proto").as_deref(), Some("https"));
        for gone in ["forwarded", "x-forwarded-prefix", "x_forwarded_for"] {
            assert_eq!(get(&r, gone), None, "{gone}");
        }
    }

    #[test]
    fn trusted_proxies_are_believed_and_appended_to() {
        let mut r = spoofed();
        let hop = Hop {
            peer: Some("10.0.0.5".parse().unwrap()),
            host: Some("api.example.com"),
            tls: false,
        };
        let believed = trusts(hop.peer, &[Cidr::parse("10.0.0.0/8").unwrap()]);
        set_forwarding_headers(&mut r, &hop, believed).unwrap();
        assert_eq!(
            get(&r, "x-forwarded-for").as_deref(),
            Some("1.2.3.4, 10.0.0.5")
        );
        assert_eq!(get(&r, "x-real-ip").as_deref(), Some("1.2.3.4"));
        assert_eq!(get(&r, "x-forwarded-host").as_deref(), Some("evil.example"));
        assert!(get(&r, "forwarded").is_some());
    }

    #[test]
    fn the_client_is_the_nearest_address_no_trusted_proxy_holds() {
        let t = vec![Cidr::parse("10.0.0.0/8").unwrap()];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let near = |peer: &str, h: &[&str]| nearest_untrusted(ip(peer), h.iter().copied(), &t);
        // an untrusted peer is the client, whatever it wrote
        assert_eq!(near("192.0.2.9", &["1.2.3.4"]), ip("192.0.2.9"));
        // behind trusted proxies: the rightmost address they did not add
        assert_eq!(
            near("10.0.0.1", &["6.6.6.6, 198.51.100.7"]),
            ip("198.51.100.7")
        );
        assert_eq!(
            near("10.0.0.1", &["6.6.6.6", "198.51.100.7, 10.0.0.2"]),
            ip("198.51.100.7")
        );
        assert_eq!(near("10.0.0.1", &["[2001:db8::1]:443"]), ip("2001:db8::1"));
        assert_eq!(near("10.0.0.1", &["198.51.100.7:5000"]), ip("198.51.100.7"));
        // garbage stops belief at the last trusted hop; an empty chain is the proxy itself
        assert_eq!(
            near("10.0.0.1", &["198.51.100.7, junk, 10.0.0.3"]),
            ip("10.0.0.3")
        );
        assert_eq!(near("10.0.0.1", &[]), ip("10.0.0.1"));
    }
}
