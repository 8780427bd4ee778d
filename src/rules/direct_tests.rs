//! Direct checks against the interpreter: every shape they take gives CEL's own answer, on
//! identities and requests chosen to reach each error and each case left to the interpreter.

use super::*;
use crate::rules::tests::Who;
use crate::rules::{McpCall, Outcome, RuleKind, RuleRef, Rules, Scope};
use serde_json::json;

fn encoded(claims: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string())
}

/// Identities: claims decoded by the route, read from the payload, absent, over the entry budget.
fn callers() -> Vec<Who> {
    let full = json!({"tenant": "acme", "groups": ["ops", "dev"], "n": 5, "mixed": ["a", 1],
        "org": {"id": 7}, "s": "x"});
    let many: Vec<String> = (0..1001).map(|i| format!("g{i}")).collect();
    let big = json!({"tenant": "acme", "groups": many});
    let half: Vec<String> = (0..600).map(|i| format!("g{i}")).collect();
    let halves = json!({"tenant": "acme", "groups": half, "mixed": half, "org": {"id": 7}});
    let mut out = vec![];
    for claims in [full, big, halves, json!({})] {
        out.push(Who {
            claims: Some(claims.clone()),
            payload: String::new(),
            roles: vec!["ops"],
        });
        out.push(Who::undecoded(encoded(&claims)));
    }
    out.push(Who {
        roles: vec!["dev"],
        ..Who::undecoded("not base64 JSON".into())
    });
    out
}

/// The shared requests' headers, with a value that is not text, alone and beside one that is.
fn headers() -> http::HeaderMap {
    let mut h = crate::rules::tests::headers();
    h.insert("x-bad", http::HeaderValue::from_bytes(b"\xff").unwrap());
    h.append("x-half", http::HeaderValue::from_bytes(b"\xff").unwrap());
    h.append("x-half", "ok".parse().unwrap());
    h
}

const EXPRESSIONS: [&str; 47] = [
    "true",
    "has(claims.tenant)",
    "'ops' in roles || (has(claims.tenant) && claims.tenant == request.segments[1])",
    "!has(claims.missing) && has(claims.groups)",
    "'ops' in roles",
    "'read' in scopes",
    "'x' in roles",
    "subject == 'alice'",
    "issuer != 'https://idp.test'",
    "client_id == 'web'",
    "request.method == 'POST'",
    "request.method in ['GET', 'HEAD']",
    "request.path.startsWith('/acme')",
    "request.host.endsWith('.test')",
    "request.path.contains('cm')",
    "glob(request.path, '/acme/*')",
    "ip_in(client.ip, '10.0.0.0/8')",
    "claims.tenant == 'acme'",
    "claims['tenant'] == request.segments[0]",
    "claims.tenant == request.segments[1]",
    "claims.n == 'five'",
    "claims.n != 'five'",
    "claims.missing == 'x'",
    "claims.org == 'x'",
    "'ops' in claims.groups",
    "'g5' in claims['groups']",
    "'a' in claims.mixed",
    "'x' in claims.s",
    "'x' in claims.missing",
    "request.headers['x-team'] == 'blue'",
    "request.headers['accept'] == 'a/b, c/d'",
    "request.headers['x-bad'] == 'x'",
    "request.headers['x-half'] == 'ok'",
    "request.headers['missing'] == 'x'",
    "mcp.tool == 'read_file'",
    "mcp.method == 'tools/call'",
    "claims.missing == 'x' || 'ops' in roles",
    "'ops' in roles || claims.missing == 'x'",
    "claims.missing == 'x' && false",
    "claims.missing == 'x' && true",
    "!(claims.missing == 'x')",
    "!(request.method in ['GET'])",
    "claims.n == 'x' || subject == 'alice'",
    "false && claims.missing == 'x'",
    "claims.mixed == 'x' || claims.missing == 'y'",
    "request.segments[5] == 'x' && request.path != '/'",
    "'tenant' in claims && claims['tenant'] == 'acme'",
];

/// Left to the interpreter: shapes the direct checks do not take.
const INTERPRETED: [&str; 7] = [
    "now.getHours() < 8",
    "has(claims.org.id)",
    "size(roles) > 1",
    "request.headers['X-Team'] == 'blue'",
    "claims.org.id == 7",
    "roles.exists(r, r == 'ops')",
    "'tenant' in claims && claims['tenant'] == 'acme'",
];

fn facts<'a>(
    who: &'a Who,
    h: &'a http::HeaderMap,
    path: &'a str,
    mcp: Option<McpCall<'a>>,
    ip: Option<&str>,
) -> Facts<'a> {
    Facts {
        path,
        client_ip: ip.map(|ip| ip.parse().unwrap()),
        ..crate::rules::tests::facts(who, h, mcp)
    }
}

fn rules(allow: &[&str], deny: &[&str]) -> Rules {
    crate::rules::tests::rules(allow, deny, Scope { mcp: true })
}

/// The interpreter's verdict: the first rule `explain` does not find passing.
fn interpreted(r: &Rules, f: &Facts<'_>) -> Result<(), RuleRef> {
    let failing = r
        .explain(f)
        .into_iter()
        .find(|(at, _, outcome)| match at.kind {
            RuleKind::DenyIf => *outcome != Outcome::False,
            RuleKind::AllowIf => *outcome != Outcome::True,
        });
    failing.map_or(Ok(()), |(at, _, _)| Err(at))
}

#[test]
fn common_shapes_compile_to_direct_checks_and_others_do_not() {
    let direct = |s: &str| rules(&[s], &[]).allow_if[0].direct.clone();
    let last = EXPRESSIONS.len() - 1;
    for s in &EXPRESSIONS[..last] {
        assert!(direct(s).is_some(), "{s}");
    }
    for s in INTERPRETED {
        assert_eq!(direct(s), None, "{s}");
    }
}

#[test]
fn direct_checks_answer_as_the_interpreter_does() {
    let h = headers();
    let mcp = McpCall {
        method: "tools/call",
        tool: "read_file",
    };
    let (mut compared, mut unknown) = (0, 0);
    for who in &callers() {
        for (path, mcp, ip) in [
            ("/acme/x", Some(mcp), Some("10.1.2.3")),
            ("/", None, None),
            (
                "/other/acme",
                Some(McpCall::default()),
                Some("::ffff:10.0.0.1"),
            ),
        ] {
            let f = facts(who, &h, path, mcp, ip);
            for s in EXPRESSIONS {
                let r = rules(&[s], &[]);
                let Some(check) = &r.allow_if[0].direct else {
                    continue;
                };
                let named = r.kept.get(f.caller, &r.reads);
                let answer = check.eval(&Seen::new(&f, named.as_deref(), &r.reads));
                let expected = match &r.explain(&f)[0].2 {
                    Outcome::True => Answer::True,
                    Outcome::False => Answer::False,
                    Outcome::Error(_) => Answer::Error,
                };
                match answer {
                    Answer::Unknown => unknown += 1,
                    a => {
                        compared += 1;
                        assert_eq!(a, expected, "{s} on {path} for {:?}", who.claims);
                    }
                }
            }
        }
    }
    assert!(compared > 900, "{compared} compared");
    assert!(unknown > 20, "{unknown} left to the interpreter");
}

#[test]
fn a_route_judges_as_its_interpreted_rules_would() {
    let h = headers();
    let pairs = [
        "'ops' in roles",
        "claims.missing == 'x'",
        "claims['tenant'] == 'acme'",
        "'g5' in claims.groups",
        "size(claims) > 2",
        "claims.mixed == 'x' || claims.tenant == 'acme'",
        "has(claims.org) && claims.org.id == 7",
        "has(claims.tenant) || 'x' in roles",
        "request.headers['accept'] == 'a/b, c/d'",
        "false",
    ];
    for who in &callers() {
        let f = facts(who, &h, "/acme/x", None, None);
        for allow in pairs {
            for deny in pairs {
                let r = rules(&[allow, "true"], &[deny]);
                assert_eq!(
                    r.judge(&f),
                    interpreted(&r, &f),
                    "allow {allow}, deny {deny}, for {:?}",
                    who.claims
                );
            }
        }
    }
}
