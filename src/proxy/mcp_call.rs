//! Per-tool policy on MCP routes: the JSON-RPC calls a POST makes, read once from its body
//! (bounded), checked against the `Mcp-Method` / `Mcp-Name` headers that name them, and judged by
//! the route's `[[routes.mcp_tools]]` (first matching rule decides).

use crate::auth::identity::Identity;
use crate::config::{McpSettings, ToolKind, ToolRule};
use crate::policy::authorize;
use crate::respond::Rejection;
use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use serde_json::Value;

/// The most body read to find the call. Pingora replays at most 64 KiB of a body read before
/// proxying, so a larger call on a route with tool rules is refused rather than cut.
pub const MAX_INSPECTED: usize = 64 * 1024;

/// One call a JSON-RPC message makes that a rule may be about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub method: String,
    pub kind: Option<ToolKind>,
    /// the tool or prompt name, or the resource URI
    pub name: String,
}

/// The calls in a JSON-RPC body: one request, or each request of a batch. Notifications and
/// responses name no tool and pass.
pub fn calls(body: &[u8]) -> Result<Vec<Call>, &'static str> {
    let v: Value = serde_json::from_slice(body).map_err(|_| "the body is not JSON-RPC")?;
    let messages = match v {
        Value::Array(a) => a,
        one => vec![one],
    };
    let mut out = Vec::new();
    for m in &messages {
        let Some(method) = m.get("method") else {
            continue;
        };
        let method = method
            .as_str()
            .ok_or("a JSON-RPC method must be a string")?;
        let (kind, field) = match method {
            "tools/call" => (Some(ToolKind::Tool), "name"),
            "prompts/get" => (Some(ToolKind::Prompt), "name"),
            "resources/read" => (Some(ToolKind::Resource), "uri"),
            _ => (None, ""),
        };
        let name = match kind {
            Some(_) => m
                .get("params")
                .and_then(|p| p.get(field))
                .and_then(Value::as_str)
                .ok_or("the call does not name what it calls")?,
            None => "",
        };
        out.push(Call {
            method: method.to_string(),
            kind,
            name: name.to_string(),
        });
    }
    Ok(out)
}

/// The headers that name a call (MCP 2026-07-28) must name the body's one call.
pub fn headers_agree(method: Option<&str>, name: Option<&str>, calls: &[Call]) -> bool {
    if method.is_none() && name.is_none() {
        return true;
    }
    let [one] = calls else {
        return false;
    };
    method.is_none_or(|m| m == one.method)
        && name.is_none_or(|n| one.kind.is_some() && n == one.name)
}

/// Judges each call by the first rule about it. A rule that denies, or whose roles or claims the
/// caller lacks, is 403 `access_denied`; one whose scopes the caller lacks is 403
/// `insufficient_scope` naming them, so the client can ask for a token that has them (step-up).
/// The challenge names the route's own scopes (`route_scopes`) too: the call needs them as well,
/// and a client that asks for just the rule's scopes would lose the route's.
pub fn judge(
    calls: &[Call],
    rules: &[ToolRule],
    id: Option<&Identity>,
    route_scopes: &[String],
) -> Result<(), Rejection> {
    for c in calls {
        let Some(kind) = c.kind else { continue };
        let Some(rule) = rules.iter().find(|r| r.matches(kind, &c.name)) else {
            continue;
        };
        if rule.deny {
            return Err(Rejection::ToolDenied);
        }
        let Some(id) = id else {
            return Err(Rejection::MissingToken);
        };
        if let Err(denied) = authorize(id, &rule.policy) {
            let by_scope = matches!(
                denied.reason,
                crate::observe::DenyReason::ScopesAll | crate::observe::DenyReason::ScopesAny
            );
            return Err(match by_scope {
                true => Rejection::InsufficientScope(crate::policy::Denied {
                    scope: Some(needed(route_scopes, denied.scope.as_deref())),
                    ..denied
                }),
                false => Rejection::ToolDenied,
            });
        }
    }
    Ok(())
}

/// The route's scopes, then the rule's that are not among them, as a challenge's `scope`.
fn needed(route_scopes: &[String], rule: Option<&str>) -> String {
    let mut all: Vec<&str> = route_scopes.iter().map(String::as_str).collect();
    for s in rule
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !all.contains(&s) {
            all.push(s);
        }
    }
    all.join(" ")
}

/// The name the access log gives a request's calls: the first one's, `-` for none.
pub fn log_name(calls: &[Call]) -> Option<String> {
    calls
        .iter()
        .find(|c| c.kind.is_some())
        .map(|c| c.name.clone())
}

/// Reads the body of a call on a route with tool rules, keeping it for Pingora to send upstream.
pub async fn read(session: &mut Session, limit: Option<u64>) -> Result<Bytes, Rejection> {
    let max = limit.map_or(MAX_INSPECTED, |l| (l as usize).min(MAX_INSPECTED));
    if crate::wire::header_value::content_length(session.req_header())
        .is_some_and(|n| n > max as u64)
    {
        return Err(Rejection::TooLarge);
    }
    session.enable_retry_buffering();
    let mut body = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) if body.len() + chunk.len() > max => return Err(Rejection::TooLarge),
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) => return Ok(body.freeze()),
            Err(_) => return Err(Rejection::BadRequest("the request body could not be read")),
        }
    }
}

/// The judgement of a POST on an MCP route with tool rules, whose own scopes are `route_scopes`;
/// the calls found, for the log.
pub async fn check(
    session: &mut Session,
    mcp: &McpSettings,
    route_scopes: &[String],
    limit: Option<u64>,
    id: Option<&Identity>,
) -> Result<Vec<Call>, Rejection> {
    let body = read(session, limit).await?;
    let calls = calls(&body).map_err(Rejection::BadRequest)?;
    // a repeated or unreadable naming header is refused: a server might read the other copy
    let headers = &session.req_header().headers;
    let named = |n: &str| crate::wire::header_value::single(headers, n);
    let (Ok(method), Ok(name)) = (named("mcp-method"), named("mcp-name")) else {
        return Err(Rejection::BadRequest(
            "Mcp-Method and Mcp-Name may come once each, as text",
        ));
    };
    if !headers_agree(method, name, &calls) {
        return Err(Rejection::BadRequest(
            "Mcp-Method or Mcp-Name does not name the call in the body",
        ));
    }
    judge(&calls, &mcp.tools, id, route_scopes)?;
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_read_from_requests_and_batches() {
        let one = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_user","arguments":{}}}"#;
        let c = calls(one).unwrap();
        assert_eq!(
            (c[0].kind, c[0].name.as_str()),
            (Some(ToolKind::Tool), "delete_user")
        );
        let batch = br#"[{"jsonrpc":"2.0","method":"notifications/initialized"},
            {"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc"}},
            {"jsonrpc":"2.0","id":3,"result":{}}]"#;
        let c = calls(batch).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[1].kind, c[1].name.as_str()),
            (Some(ToolKind::Resource), "file:///etc")
        );
        assert!(calls(b"not json").is_err());
        assert!(calls(br#"{"method":"tools/call","params":{}}"#).is_err());
        assert!(calls(br#"{"method":7}"#).is_err());
    }

    #[test]
    fn headers_must_name_the_bodys_call() {
        let c = calls(br#"{"method":"tools/call","params":{"name":"read"}}"#).unwrap();
        assert!(headers_agree(None, None, &c));
        assert!(headers_agree(Some("tools/call"), Some("read"), &c));
        assert!(!headers_agree(Some("tools/call"), Some("delete"), &c));
        assert!(!headers_agree(Some("tools/list"), None, &c));
        let list = calls(br#"{"method":"tools/list"}"#).unwrap();
        assert!(headers_agree(Some("tools/list"), None, &list));
        assert!(!headers_agree(Some("tools/list"), Some("x"), &list));
    }

    #[test]
    fn the_first_rule_about_a_call_decides() {
        let rule = |pattern: &str, deny: bool, scopes: &[&str]| ToolRule {
            pattern: pattern.into(),
            kind: ToolKind::Tool,
            deny,
            policy: crate::config::Policy {
                scopes_all: scopes.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
        };
        let rules = [
            rule("drop_*", true, &[]),
            rule("delete_*", false, &["admin"]),
        ];
        let call = |n: &str| {
            calls(format!(r#"{{"method":"tools/call","params":{{"name":"{n}"}}}}"#).as_bytes())
                .unwrap()
        };
        assert_eq!(judge(&call("read"), &rules, None, &[]), Ok(()));
        assert_eq!(
            judge(&call("drop_table"), &rules, None, &[]),
            Err(Rejection::ToolDenied)
        );
        assert_eq!(
            judge(&call("delete_user"), &rules, None, &[]),
            Err(Rejection::MissingToken)
        );
    }

    #[test]
    fn a_scope_challenge_names_the_routes_scopes_and_the_rules() {
        let rule = ToolRule {
            pattern: "delete_*".into(),
            kind: ToolKind::Tool,
            deny: false,
            policy: crate::config::Policy {
                scopes_all: vec!["mcp:admin".into()],
                ..Default::default()
            },
        };
        let issuer = crate::auth::principal::tests::issuer();
        let claims = serde_json::json!({"scope": "mcp"});
        let id = Identity {
            principal: std::sync::Arc::new(crate::auth::principal::Principal::new(
                &issuer, &claims, 0,
            )),
            payload: http::HeaderValue::from_static("e30"),
            claims: None,
            token_key: None,
        };
        let call = calls(br#"{"method":"tools/call","params":{"name":"delete_user"}}"#).unwrap();
        let route = ["mcp".to_string()];
        let Err(Rejection::InsufficientScope(d)) = judge(&call, &[rule], Some(&id), &route) else {
            panic!("a scope refusal");
        };
        assert_eq!(d.scope.as_deref(), Some("mcp mcp:admin"));
        assert_eq!(needed(&[], Some("a b")), "a b");
        assert_eq!(needed(&route, Some("mcp")), "mcp");
    }
}
