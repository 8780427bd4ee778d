//! A request to one of the gateway's own endpoints as a value: its header, whether it came over
//! TLS, the real client's address and its form body, read in full first, so that every endpoint is
//! a function from this to an answer and is tested without a socket.

use super::form::{is_form_type, parse, FormError, Params};
use bytes::{Bytes, BytesMut};
use http::Method;
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::net::IpAddr;

/// The most body the gateway reads for its own endpoints.
pub const MAX_FORM: usize = 16 * 1024;

/// The body of a request to the gateway's own endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// not a POST: no body is read
    None,
    /// a form, read in full
    Form(Bytes),
    /// a JSON document, read in full
    Json(Bytes),
    /// a POST whose body is not a form (left unread) or could not be read whole
    Refused(FormError),
}

/// A request to one of the gateway's own endpoints.
pub struct Request<'a> {
    pub header: &'a RequestHeader,
    /// it came over TLS
    pub tls: bool,
    /// the real client, after `[server] trusted_proxies`
    pub client: IpAddr,
    pub body: Body,
}

impl Request<'_> {
    pub fn method(&self) -> &Method {
        &self.header.method
    }

    pub fn is_post(&self) -> bool {
        self.header.method == Method::POST
    }

    /// One header's value as text, when it is there once and is text.
    pub fn header_text(&self, name: &str) -> Option<&str> {
        super::header_value::single(&self.header.headers, name)
            .ok()
            .flatten()
    }

    /// The query's parameters, by the one rule of `wire::form`.
    pub fn query(&self) -> Result<Params, FormError> {
        parse(self.header.uri.query().unwrap_or("").as_bytes())
    }

    /// The form the body carries.
    pub fn form(&self) -> Result<Params, FormError> {
        match &self.body {
            Body::Form(b) => parse(b),
            Body::None | Body::Json(_) => Err(FormError::NotForm),
            Body::Refused(e) => Err(*e),
        }
    }

    /// The JSON document the body carries; `None` for any other body.
    pub fn json(&self) -> Option<serde_json::Value> {
        match &self.body {
            Body::Json(b) => serde_json::from_slice(b).ok(),
            _ => None,
        }
    }

    /// The client's address as counters key it: `ip:…`.
    pub fn client_key(&self) -> String {
        format!("ip:{}", self.client)
    }

    /// The address in a counter's key (`client_key`) as events show it: without its `ip:`.
    pub fn shown_key(key: &str) -> &str {
        key.strip_prefix("ip:").unwrap_or(key)
    }

    /// One cookie's value.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        super::cookies::value(self.header, name)
    }
}

/// Reads the form or JSON document a POST carries, at most `MAX_FORM` bytes; any other body is
/// left unread. A body that is announced or found too large is not read on, and the writer then closes
/// the connection, so the rest cannot be read as the next request.
pub async fn read_body(session: &mut Session) -> Body {
    let req = session.req_header();
    if req.method != Method::POST {
        return Body::None;
    }
    let content_type = req
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let json = content_type
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_form_type(content_type) && !json {
        return Body::Refused(FormError::NotForm);
    }
    if super::header_value::content_length(req).is_some_and(|n| n > MAX_FORM as u64) {
        return Body::Refused(FormError::TooLarge);
    }
    if req
        .headers
        .get("expect")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
    {
        let _ = session.as_downstream_mut().write_continue_response().await;
    }
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > MAX_FORM => {
                return Body::Refused(FormError::TooLarge)
            }
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) if json => return Body::Json(body.freeze()),
            Ok(None) => return Body::Form(body.freeze()),
            Err(_) => return Body::Refused(FormError::Unreadable),
        }
    }
}

/// Requests for unit tests of the endpoints.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// A request over TLS from 192.0.2.1 with this header and body.
    pub fn request(header: &RequestHeader, body: Body) -> Request<'_> {
        Request {
            header,
            tls: true,
            client: IpAddr::from([192, 0, 2, 1]),
            body,
        }
    }

    /// A form POST to `path`.
    pub fn post(path: &str, form: &str, headers: &[(&str, &str)]) -> (RequestHeader, Body) {
        let mut h = crate::wire::testing::get(path, headers);
        h.set_method(Method::POST);
        let _ = h.insert_header("content-type", "application/x-www-form-urlencoded");
        (h, Body::Form(Bytes::from(form.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn forms_and_queries_follow_one_rule() {
        let (h, body) = post("/oauth/token?a=1&a=2", "x=1&y=&x=2", &[]);
        let r = request(&h, body);
        assert_eq!(r.form(), Err(FormError::Repeated));
        assert_eq!(r.query(), Err(FormError::Repeated));
        let (h, body) = post("/oauth/token?rd=%2Fa", "x=1&y=", &[("cookie", "c=v")]);
        let r = request(&h, body);
        assert_eq!(r.form().map(|f| f.len()), Ok(1));
        assert_eq!(r.query().unwrap()["rd"], "/a");
        assert_eq!(r.cookie("c"), Some("v"));
        assert_eq!(r.client_key(), "ip:192.0.2.1");
        let get = crate::wire::testing::get("/", &[("a", "1"), ("a", "2"), ("b", "x")]);
        let r = request(&get, Body::None);
        assert_eq!(r.form(), Err(FormError::NotForm));
        // a repeated header has no one value
        assert_eq!((r.header_text("a"), r.header_text("b")), (None, Some("x")));
    }
}
