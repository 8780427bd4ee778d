//! Every answer the gateway gives itself, as a value (`Answer`), and the one writer that sends it.

use super::{AsAnswer, ErrorAnswer};
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

/// What the gateway answers a request with, decided without touching the connection.
#[derive(Debug)]
pub enum Answer {
    /// a response it composed: a document, a page, a redirect
    Response(Response),
    /// an error: JSON to an HTTP client, a trailers-only response to a gRPC one
    Error(ErrorAnswer),
    /// an error as plain HTTP even to a gRPC request: a forward-auth no, which a proxy in front
    /// would otherwise read as a yes (a gRPC refusal is an HTTP 200)
    PlainError(ErrorAnswer),
    /// a header block that ends the stream: the forward-auth yes
    Head(Box<ResponseHeader>),
}

/// A response the gateway composed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// `Set-Cookie` may come several times; another header given replaces a default
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(status: u16, headers: Vec<(&'static str, String)>, body: String) -> Answer {
        Answer::body(status, "application/json", headers, Bytes::from(body))
    }

    /// A server-rendered page.
    pub fn html(status: u16, headers: Vec<(&'static str, String)>, body: String) -> Answer {
        let ct = "text/html; charset=utf-8";
        Answer::body(status, ct, headers, Bytes::from(body))
    }

    /// No body: a status and headers.
    pub fn empty(status: u16, headers: Vec<(&'static str, String)>) -> Answer {
        Answer::body(status, "text/plain", headers, Bytes::new())
    }

    /// Sends the browser on with `303 See Other`, setting these cookies.
    pub fn see_other(to: &str, cookies: &[String]) -> Answer {
        let mut headers = vec![("location", to.to_string())];
        headers.extend(cookies.iter().map(|c| ("set-cookie", c.clone())));
        Answer::empty(303, headers)
    }

    pub fn body(
        status: u16,
        content_type: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Bytes,
    ) -> Answer {
        Answer::Response(Response {
            status,
            content_type,
            headers,
            body,
        })
    }

    /// A refusal, in the form its request reads (gRPC or not).
    pub fn refuse(why: &impl AsAnswer) -> Answer {
        Answer::Error(why.answer())
    }

    /// The status the client is sent, as the access log names it.
    pub fn status(&self) -> u16 {
        match self {
            Answer::Response(r) => r.status,
            Answer::Error(e) | Answer::PlainError(e) => e.status,
            Answer::Head(h) => h.status.as_u16(),
        }
    }

    /// The value of a header this answer sets (the first, for `Set-Cookie`).
    pub fn header(&self, name: &str) -> Option<&str> {
        let headers = match self {
            Answer::Response(r) => &r.headers,
            Answer::Error(e) | Answer::PlainError(e) => &e.headers,
            Answer::Head(h) => return h.headers.get(name).and_then(|v| v.to_str().ok()),
        };
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl From<ErrorAnswer> for Answer {
    fn from(e: ErrorAnswer) -> Answer {
        Answer::Error(e)
    }
}

/// Writes an answer: the one writer of the proxy path. A request body the gateway has not read to
/// its end is never drained (it may be an unauthenticated upload): the connection is closed
/// instead, so the rest cannot be read as the next request.
pub async fn write(session: &mut Session, answer: Answer) -> pingora::Result<()> {
    if unread_body(session) {
        session.set_keepalive(None);
    }
    match answer {
        Answer::Response(r) => send(session, r).await,
        Answer::Error(e) if crate::wire::grpc::is_grpc(session.req_header()) => {
            crate::wire::grpc::write_trailers_only(session, e.grpc_header()?).await
        }
        Answer::Error(e) | Answer::PlainError(e) => {
            let body = e.body();
            let r = Response {
                status: e.status,
                content_type: "application/json",
                headers: e.headers,
                body: Bytes::from(body),
            };
            send(session, r).await
        }
        Answer::Head(h) => session.write_response_header(h, true).await,
    }
}

/// Writes an error where a response may already have begun (Pingora's `fail_to_proxy`).
pub async fn write_failure(session: &mut Session, e: &ErrorAnswer) {
    if crate::wire::grpc::is_grpc(session.req_header()) && session.response_written().is_none() {
        if let Err(err) = write(session, Answer::Error(e.clone())).await {
            tracing::debug!(error = %err, "could not write a gRPC error");
        }
        return;
    }
    let body = e.body();
    if let Ok(r) = e.response_header(body.len()) {
        let _ = session
            .as_downstream_mut()
            .write_error_response(r, Bytes::from(body))
            .await;
    }
}

/// True when the request announces a body that has not been read to its end.
fn unread_body(session: &mut Session) -> bool {
    let req = session.req_header();
    let announced = req.headers.get("transfer-encoding").is_some()
        || crate::wire::header_value::content_length(req).is_some_and(|n| n > 0);
    announced && !session.is_body_done()
}

async fn send(session: &mut Session, r: Response) -> pingora::Result<()> {
    let mut h = ResponseHeader::build(r.status, Some(3 + r.headers.len()))?;
    h.insert_header("content-type", r.content_type)?;
    h.insert_header("content-length", r.body.len().to_string())?;
    h.insert_header("cache-control", "no-store")?;
    for (k, v) in r.headers {
        // headers that may come more than once: cookies, and challenges (Bearer and DPoP)
        if k.eq_ignore_ascii_case("set-cookie") || k.eq_ignore_ascii_case("www-authenticate") {
            h.append_header(k, v)?;
        } else {
            h.insert_header(k, v)?;
        }
    }
    session.write_response_header(Box::new(h), false).await?;
    session.write_response_body(Some(r.body), true).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::respond::Rejection;

    #[test]
    fn answers_say_their_status_and_headers() {
        let a = Answer::see_other("/x", &["a=1".into(), "b=2".into()]);
        assert_eq!((a.status(), a.header("Location")), (303, Some("/x")));
        assert_eq!(a.header("set-cookie"), Some("a=1"));
        let r = Answer::refuse(&Rejection::MissingToken);
        assert_eq!(r.status(), 401);
        assert_eq!(
            r.header("www-authenticate"),
            Some("Bearer realm=\"gatehouse\"")
        );
        assert_eq!(Answer::json(200, vec![], "{}".into()).header("x"), None);
    }
}
