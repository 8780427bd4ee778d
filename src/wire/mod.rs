//! Reading and writing HTTP text: paths and hosts, header values, cookies, forms, forwarding headers,
//! requests to the gateway's own endpoints and what gRPC asks of them.

pub mod cookies;
pub mod form;
pub mod header_value;
pub mod path;
pub mod request;

pub mod forwarded;
pub mod grpc;

/// Requests for unit tests, built as a client would send them.
#[cfg(test)]
pub(crate) mod testing {
    use pingora::http::RequestHeader;

    /// A GET for `path` with these headers, repeats kept.
    pub fn get(path: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", path.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }
}
