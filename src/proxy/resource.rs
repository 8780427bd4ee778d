//! A protected resource at the edge: its metadata document (RFC 9728) and, on MCP routes, the
//! `Origin` guard against DNS rebinding.

use crate::config::{McpSettings, ProtectedResource};
use crate::respond::{Answer, Rejection};
use bytes::Bytes;
use http::Method;
use pingora::http::RequestHeader;

/// The metadata document, to anyone (a browser-based client reads it from another origin).
pub fn metadata(req: &RequestHeader, p: &ProtectedResource) -> Answer {
    let cors = || vec![("access-control-allow-origin", "*".to_string())];
    match req.method {
        Method::GET | Method::HEAD => {
            let mut headers = cors();
            headers.push(("cache-control", "public, max-age=3600".to_string()));
            let body = Bytes::from(p.document().to_string());
            Answer::body(200, "application/json", headers, body)
        }
        Method::OPTIONS => {
            let mut headers = cors();
            headers.push(("access-control-allow-methods", "GET, HEAD".to_string()));
            headers.push(("access-control-max-age", "600".to_string()));
            Answer::empty(204, headers)
        }
        _ => Answer::refuse(&Rejection::MethodNotAllowed(vec![
            Method::GET,
            Method::HEAD,
        ])),
    }
}

/// The DNS-rebinding guard: a request that names an `Origin` must name the gateway's own public
/// origin or one of the route's `allowed_origins`. The request's own `Host` proves nothing here, as
/// a rebound name points the attacker's host at the gateway. A request without `Origin` (an SDK,
/// a CLI) is no browser and passes.
pub fn origin_allowed(req: &RequestHeader, mcp: &McpSettings, public_origin: &str) -> bool {
    let origin = match crate::wire::header_value::single(&req.headers, "origin") {
        Ok(None) => return true,
        Ok(Some(o)) => o,
        Err(_) => return false,
    };
    let origin = origin.trim_end_matches('/');
    origin.eq_ignore_ascii_case(public_origin)
        || mcp
            .allowed_origins
            .iter()
            .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testing::get;

    fn mcp(origins: &[&str]) -> McpSettings {
        McpSettings {
            allowed_origins: origins.iter().map(|o| o.to_string()).collect(),
            tools: vec![],
        }
    }

    #[test]
    fn only_the_gateway_and_allowed_origins_pass() {
        let own = "https://gw.test";
        let m = mcp(&["https://app.test"]);
        assert!(origin_allowed(&get("/mcp", &[]), &m, own));
        assert!(origin_allowed(
            &get("/mcp", &[("origin", "https://gw.test")]),
            &m,
            own
        ));
        assert!(origin_allowed(
            &get("/mcp", &[("origin", "https://app.test")]),
            &m,
            own
        ));
        // a rebound name: the Host agrees with the Origin, and that proves nothing
        let rebound = [
            ("origin", "http://evil.test:8080"),
            ("host", "evil.test:8080"),
        ];
        assert!(!origin_allowed(&get("/mcp", &rebound), &m, own));
        assert!(!origin_allowed(
            &get("/mcp", &[("origin", "null")]),
            &m,
            own
        ));
        let twice = [
            ("origin", "https://gw.test"),
            ("origin", "https://evil.test"),
        ];
        assert!(!origin_allowed(&get("/mcp", &twice), &m, own));
    }

    #[test]
    fn the_metadata_is_public_and_read_only() {
        let p = ProtectedResource {
            resource: "https://gw.test/mcp".into(),
            metadata_path: "/.well-known/oauth-protected-resource/mcp".into(),
            metadata_url: "https://gw.test/.well-known/oauth-protected-resource/mcp".into(),
            authorization_servers: vec!["https://gw.test".into()],
            name: "tools".into(),
            scopes: vec!["mcp:read".into()],
            required: vec![],
            bearer_methods: vec!["header"],
        };
        let a = metadata(&get("/x", &[]), &p);
        assert_eq!(
            (a.status(), a.header("access-control-allow-origin")),
            (200, Some("*"))
        );
        let Answer::Response(r) = a else {
            panic!("a document")
        };
        let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(doc["resource"], "https://gw.test/mcp");
        assert_eq!(doc["authorization_servers"][0], "https://gw.test");
        assert_eq!(doc["scopes_supported"][0], "mcp:read");
        assert_eq!(doc["bearer_methods_supported"][0], "header");
        let mut post = get("/x", &[]);
        post.set_method(Method::POST);
        assert_eq!(metadata(&post, &p).status(), 405);
    }
}
