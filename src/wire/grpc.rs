//! What gRPC asks of a gateway: telling its requests apart, its deadlines (`grpc-timeout`), the
//! status codes and messages a refusal carries instead of an HTTP status, and how a refusal is sent.

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::HttpTask;
use pingora::proxy::Session;
use std::time::Duration;

/// The longest a gRPC deadline keeps the gateway waiting on an upstream.
pub const MAX_DEADLINE: Duration = Duration::from_secs(3600);

/// True for a gRPC call: `content-type: application/grpc` or `application/grpc+proto`, `…+json`.
pub fn is_grpc(req: &RequestHeader) -> bool {
    req.headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            let ct = ct.trim_start().as_bytes();
            ct.get(..16)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"application/grpc"))
                && matches!(ct.get(16), None | Some(b'+' | b';'))
        })
}

/// The deadline a call carries: `grpc-timeout` is at most 8 digits and a unit (H, M, S, m, u, n).
pub fn timeout(req: &RequestHeader) -> Option<Duration> {
    let v = req.headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at(v.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Every request's log line looks for it: the name as a value, not parsed each time.
const GRPC_STATUS: http::HeaderName = http::HeaderName::from_static("grpc-status");

/// The `grpc-status` a response's header block carries (a trailers-only answer), when it is one.
pub fn status_in_header(r: &pingora::http::ResponseHeader) -> Option<u8> {
    std::str::from_utf8(r.headers.get(&GRPC_STATUS)?.as_bytes())
        .ok()?
        .parse()
        .ok()
}

/// The gRPC status for an answer the gateway gives itself, by its HTTP status.
pub fn status(http: u16) -> u8 {
    match http {
        400 | 411 | 431 => 3, // INVALID_ARGUMENT
        401 => 16,            // UNAUTHENTICATED
        403 => 7,             // PERMISSION_DENIED
        404 => 5,             // NOT_FOUND
        405 | 501 => 12,      // UNIMPLEMENTED
        413 | 429 => 8,       // RESOURCE_EXHAUSTED
        502 | 503 => 14,      // UNAVAILABLE
        504 => 4,             // DEADLINE_EXCEEDED
        _ => 13,              // INTERNAL
    }
}

/// Writes a trailers-only response: a header block that ends the stream, which is all the C core
/// (grpcio) and grpc-go accept for a call answered without messages. Pingora's
/// `Session::write_response_header(.., true)` gives the end flag to its response modules but
/// writes the header to an HTTP/2 stream as if more followed; the stream is then ended by an empty
/// DATA frame, or reset with CANCEL when the answer came from `fail_to_proxy`. A task list carries
/// the flag down to the stream. HTTP/1.1 keeps the plain header write.
pub async fn write_trailers_only(
    session: &mut Session,
    header: ResponseHeader,
) -> pingora::Result<()> {
    if !session.is_http2() {
        return session.write_response_header(Box::new(header), true).await;
    }
    let header = HttpTask::Header(Box::new(header), true);
    session.write_response_tasks(vec![header]).await.map(|_| ())
}

/// `grpc-message` text: percent-encoded outside printable ASCII, and `%` itself.
pub fn message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/pkg.Svc/M", None).unwrap();
        for (k, v) in headers {
            r.insert_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn grpc_requests_are_told_by_their_content_type() {
        assert!(is_grpc(&req(&[("content-type", "application/grpc")])));
        assert!(is_grpc(&req(&[("content-type", "application/grpc+proto")])));
        assert!(is_grpc(&req(&[("content-type", "Application/GRPC+json")])));
        assert!(!is_grpc(&req(&[("content-type", "application/grpc-web")])));
        assert!(!is_grpc(&req(&[("content-type", "application/json")])));
        assert!(!is_grpc(&req(&[])));
    }

    #[test]
    fn deadlines_are_read_in_every_unit_and_nonsense_is_ignored() {
        let t = |v: &str| timeout(&req(&[("grpc-timeout", v)]));
        assert_eq!(t("2S"), Some(Duration::from_secs(2)));
        assert_eq!(t("100m"), Some(Duration::from_millis(100)));
        assert_eq!(t("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(t("5M"), Some(Duration::from_secs(300)));
        assert_eq!(t("7u"), Some(Duration::from_micros(7)));
        assert_eq!(t("9n"), Some(Duration::from_nanos(9)));
        for bad in ["", "S", "123456789S", "1x", "-1S", "1.5S"] {
            assert_eq!(t(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_header_blocks_grpc_status_is_read_and_anything_else_is_none() {
        let mut r = pingora::http::ResponseHeader::build(200, None).unwrap();
        assert_eq!(status_in_header(&r), None);
        r.insert_header("grpc-status", "16").unwrap();
        assert_eq!(status_in_header(&r), Some(16));
        r.insert_header("grpc-status", "sixteen").unwrap();
        assert_eq!(status_in_header(&r), None);
        r.insert_header("grpc-status", "999").unwrap();
        assert_eq!(status_in_header(&r), None);
    }

    #[test]
    fn statuses_and_messages_follow_the_grpc_spec() {
        assert_eq!(
            [401, 403, 404, 405, 429, 503, 502, 504, 400, 500].map(status),
            [16, 7, 5, 12, 8, 14, 14, 4, 3, 13]
        );
        assert_eq!(
            message("a token is 100% needed\n"),
            "a token is 100%25 needed%0A"
        );
    }
}
