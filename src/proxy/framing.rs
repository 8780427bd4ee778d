//! Ambiguous HTTP/1 message framing (RFC 9112 §6.3), refused outright rather than guessed.

use pingora::proxy::Session;

/// Ambiguous message framing (RFC 9112 §6.3): refused outright rather than guessed, so no hop can disagree.
pub fn framing_problem(session: &Session) -> Option<&'static str> {
    let h = &session.req_header().headers;
    let mut te = h.get_all("transfer-encoding").iter();
    let mut cl = h.get_all("content-length").iter();
    let (te1, te2) = (te.next(), te.next());
    let (cl1, cl2) = (cl.next(), cl.next());
    if te1.is_some() && (cl1.is_some() || raw_content_length(session)) {
        return Some("Content-Length and Transfer-Encoding together");
    }
    if te2.is_some() || te1.is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"chunked")) {
        return Some("a Transfer-Encoding other than chunked");
    }
    if cl2.is_some()
        || cl1.is_some_and(|v| v.is_empty() || !v.as_bytes().iter().all(u8::is_ascii_digit))
    {
        return Some("an invalid or repeated Content-Length");
    }
    None
}

/// Pingora drops Content-Length when Transfer-Encoding is present; the raw HTTP/1 header still shows it.
fn raw_content_length(session: &Session) -> bool {
    match session.as_downstream() {
        pingora::protocols::http::ServerSession::H1(h1) => h1
            .get_headers_raw_bytes()
            .split(|b| *b == b'\n')
            .any(|line| {
                line.get(..15)
                    .is_some_and(|l| l.eq_ignore_ascii_case(b"content-length:"))
            }),
        _ => false,
    }
}
