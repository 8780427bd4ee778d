//! Unit tests of route rules: each variable and helper, each compile error and its message, the
//! cost limit, and which rule a refusal names.

use super::*;
use serde_json::{json, Value as Json};
use std::time::Duration;

/// A verified identity as the rules see it: subject `alice`, issuer `https://idp.test`, client
/// `web`, scope `read`.
pub(super) struct Who {
    /// the claims as the route decoded them; `None`: read from `payload` for the rules
    pub(super) claims: Option<Json>,
    pub(super) payload: String,
    pub(super) roles: Vec<&'static str>,
}

impl Who {
    /// Claims the route decoded, and the roles `ops` and `dev`.
    pub(super) fn with(claims: Json) -> Who {
        Who {
            claims: Some(claims),
            payload: "bm90IHJlYWQ".into(),
            roles: vec!["ops", "dev"],
        }
    }

    /// Claims the route did not decode: the rules read the ones they name from the payload.
    pub(super) fn undecoded(payload: String) -> Who {
        Who {
            claims: None,
            payload,
            roles: vec![],
        }
    }
}

impl Caller for Who {
    fn claims(&self) -> Option<&Json> {
        self.claims.as_ref()
    }
    fn payload(&self) -> &[u8] {
        self.payload.as_bytes()
    }
    fn subject(&self) -> &str {
        "alice"
    }
    fn issuer(&self) -> &str {
        "https://idp.test"
    }
    fn client_id(&self) -> &str {
        "web"
    }
    fn roles(&self) -> Vec<&str> {
        self.roles.clone()
    }
    fn scopes(&self) -> Vec<&str> {
        vec!["read"]
    }
}

pub(super) fn headers() -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("x-team", "blue".parse().unwrap());
    h.append("accept", "a/b".parse().unwrap());
    h.append("accept", "c/d".parse().unwrap());
    h
}

/// 2024-01-01T10:30:00Z, a Monday
const MONDAY_1030: u64 = 1_704_105_000;

pub(super) fn facts<'a>(
    who: &'a Who,
    headers: &'a http::HeaderMap,
    mcp: Option<McpCall<'a>>,
) -> Facts<'a> {
    Facts {
        caller: who,
        method: "POST",
        path: "/t/acme/x",
        host: "api.test",
        query: Some("page=2&q=a%20b"),
        headers,
        client_ip: Some("10.1.2.3".parse().unwrap()),
        now: Duration::from_secs(MONDAY_1030),
        mcp,
    }
}

pub(super) fn rules(allow: &[&str], deny: &[&str], scope: Scope) -> Rules {
    let env = environment().unwrap();
    let mut reads = Reads::default();
    let mut build = |list: &[&str]| -> Vec<Rule> {
        list.iter()
            .map(|s| {
                let (rule, r) = compile(&env, s, scope).unwrap_or_else(|e| panic!("{s}: {e:?}"));
                reads.merge(r);
                rule
            })
            .collect()
    };
    let (a, d) = (build(allow), build(deny));
    Rules::new(env, a, d, reads)
}

/// The outcome of one expression as an `allow_if` for the standard request.
fn holds(expr: &str, claims: Json) -> Outcome {
    let scope = Scope { mcp: true };
    let r = rules(&[expr], &[], scope);
    let (who, h) = (Who::with(claims), headers());
    let call = McpCall {
        method: "tools/call",
        tool: "read_file",
    };
    let f = facts(&who, &h, Some(call));
    r.explain(&f).pop().unwrap().2
}

fn errors(expr: &str, scope: Scope) -> Vec<String> {
    compile(&environment().unwrap(), expr, scope).unwrap_err()
}

#[test]
fn every_variable_reads_the_request_and_identity() {
    let claims = json!({"tenant": "acme", "groups": ["a", "ops"], "org": {"id": 7}, "n": 1.5});
    for expr in [
        "claims.tenant == 'acme'",
        "claims['tenant'] == request.segments[1]",
        "'ops' in claims.groups && claims.org.id == 7 && claims.n > 1.0",
        "claims.exists(k, k == 'org')",
        "subject == 'alice' && issuer == 'https://idp.test' && client_id == 'web'",
        "'ops' in roles && roles.size() == 2 && scopes == ['read']",
        "request.method == 'POST' && request.path == '/t/acme/x' && request.host == 'api.test'",
        "request.segments == ['t', 'acme', 'x']",
        "request.query.page == '2' && request.query.q == 'a b'",
        "request.headers['x-team'] == 'blue' && request.headers.accept == 'a/b, c/d'",
        "client.ip == '10.1.2.3'",
        "now == timestamp('2024-01-01T10:30:00Z') && now.getHours() == 10 && now.getDayOfWeek() == 1",
        "mcp.method == 'tools/call' && mcp.tool == 'read_file'",
        "!has(claims.missing) && has(claims.tenant)",
    ] {
        assert_eq!(holds(expr, claims.clone()), Outcome::True, "{expr}");
    }
    assert_eq!(
        holds("claims.tenant == 'other'", claims.clone()),
        Outcome::False
    );
}

#[test]
fn helpers_match_blocks_and_globs() {
    for (expr, want) in [
        ("ip_in(client.ip, '10.0.0.0/8')", Outcome::True),
        ("ip_in(client.ip, '192.168.0.0/16')", Outcome::False),
        ("glob(request.path, '/t/*/x')", Outcome::True),
        ("glob(request.path, '/admin/*')", Outcome::False),
    ] {
        assert_eq!(holds(expr, json!({})), want, "{expr}");
    }
}

#[test]
fn a_rule_that_cannot_be_evaluated_never_passes() {
    let o = holds("claims.tenant == 'acme'", json!({}));
    assert_eq!(o, Outcome::Error("no such key 'tenant'".into()));
    let o = holds("claims.tenant > 3", json!({"tenant": "secret-value"}));
    let Outcome::Error(message) = o else {
        panic!("{o:?}")
    };
    assert!(!message.contains("secret-value"), "{message}");
    assert_eq!(
        holds("1", json!({})),
        Outcome::Error("the result is not a bool".into())
    );
}

#[test]
fn compile_errors_name_the_reference_and_where_it_is() {
    let off = Scope::default();
    assert_eq!(
        errors("claim.x == 'a'", off),
        ["undeclared reference to 'claim' at 1:1"]
    );
    assert_eq!(
        errors("subject == 'a' &&\n  reqest.path == '/'", off),
        ["undeclared reference to 'reqest' at 2:3"]
    );
    assert_eq!(
        errors("request.methd == 'GET'", off)[0],
        "'request' has no field 'methd' at 1:8"
    );
    assert_eq!(
        errors("lookup(subject)", off),
        ["undeclared reference to 'lookup' at 1:7"]
    );
    assert_eq!(
        errors("subject.matches('a')", off)[0],
        "undeclared reference to 'matches' at 1:16"
    );
    assert_eq!(
        errors("mcp.tool == 'x'", off),
        ["'mcp' is declared on MCP routes only (mcp = true) at 1:1"]
    );
    assert_eq!(
        errors("ip_in(client.ip, '10.0.0.0/33')", off),
        ["ip_in: \"10.0.0.0/33\": the prefix length must be 0 to 32 at 1:18"]
    );
    let parse = errors("subject == ", off);
    assert!(parse[0].ends_with("at 1:12"), "{parse:?}");
    let nested = errors("roles.exists(r, scopes.exists(s, s == r))", off);
    assert_eq!(
        nested,
        ["a comprehension inside another comprehension's body is not allowed (cost limit) at 1:30"]
    );
    // a comprehension over another's result is one pass after another, not nested
    assert!(compile(
        &environment().unwrap(),
        "roles.map(r, r + 'x').exists(s, s == 'opsx')",
        off
    )
    .is_ok());
    // names a comprehension binds are not variables
    assert!(compile(
        &environment().unwrap(),
        "roles.all(claims, claims != '')",
        off
    )
    .is_ok());
}

#[test]
fn what_the_rules_read_is_found_at_load() {
    let r = rules(
        &["claims.tenant == 'a'", "claims['org'] != null"],
        &["request.path == '/x'"],
        Scope::default(),
    );
    assert!(r.reads.variables.contains("claims") && !r.needs_claims());
    assert!(!r.reads.all_claims);
    let names: Vec<&str> = r.reads.claim_names.iter().map(String::as_str).collect();
    assert_eq!(names, ["org", "tenant"]);
    let fields: Vec<&str> = r.reads.request_fields.iter().copied().collect();
    assert_eq!(fields, ["path"]);
    let whole = rules(&["'x' in claims"], &[], Scope::default());
    assert!(whole.reads.all_claims);
    let none = rules(&["'ops' in roles"], &[], Scope::default());
    assert!(!none.needs_claims() && !none.reads_client() && !none.reads_mcp());
}

#[test]
fn a_huge_claim_list_is_refused_by_the_cost_limit() {
    let big: Vec<String> = (0..10_000).map(|i| format!("g{i}")).collect();
    let r = rules(
        &["claims.groups.exists(g, g == 'g9999')"],
        &[],
        Scope::default(),
    );
    let (who, h) = (Who::with(json!({"groups": big})), headers());
    let f = facts(&who, &h, None);
    // refused by the entry budget (1,000), not by how long a comparison of 10,000 takes
    assert_eq!(r.judge(&f), Err(RuleRef::new(RuleKind::AllowIf, 0)));
    let why = r.explain(&f).pop().unwrap().2;
    assert_eq!(
        why,
        Outcome::Error("a claim list or map is larger than the cost limit (1000 entries)".into())
    );
    // within the limit the same rule runs
    let small: Vec<String> = (0..900).map(|i| format!("g{i}")).collect();
    let who = Who::with(json!({"groups": small}));
    let r = rules(
        &["claims.groups.exists(g, g == 'g899')"],
        &[],
        Scope::default(),
    );
    assert_eq!(r.judge(&facts(&who, &h, None)), Ok(()));
}

#[test]
fn a_refusal_names_the_rule_that_refused() {
    let (who, h) = (Who::with(json!({"tenant": "acme"})), headers());
    let f = facts(&who, &h, None);
    let off = Scope::default();
    let r = rules(&["'ops' in roles", "claims.tenant == 'other'"], &[], off);
    assert_eq!(r.judge(&f), Err(RuleRef::new(RuleKind::AllowIf, 1)));
    let r = rules(
        &["'ops' in roles"],
        &["request.method == 'GET'", "request.method == 'POST'"],
        off,
    );
    assert_eq!(
        r.judge(&f).map_err(|r| r.to_string()),
        Err("deny_if[1]".into())
    );
    // a deny_if that cannot be evaluated refuses too: failing closed
    let r = rules(&[], &["claims.missing == 'x'"], off);
    assert_eq!(
        r.judge(&f).map_err(|r| r.to_string()),
        Err("deny_if[0]".into())
    );
    let r = rules(&["'ops' in roles"], &["'x' in roles"], off);
    assert_eq!(r.judge(&f), Ok(()));
}

#[test]
fn the_readme_examples_compile_and_judge() {
    let tenant = "'ops' in roles || (has(claims.tenant) && claims.tenant == request.segments[1])";
    let hours = "!(request.method in ['GET', 'HEAD']) && (now.getDayOfWeek('Europe/Paris') in [0, 6] || now.getHours('Europe/Paris') < 8 || now.getHours('Europe/Paris') >= 18)";
    let office = "!(request.method in ['GET', 'HEAD']) && !ip_in(client.ip, '192.0.2.0/24')";
    let tools =
        "glob(mcp.tool, 'delete_*') && !('oncall' in claims.groups && client_id == 'ops-console')";
    let mcp = Scope { mcp: true };
    // Monday 11:30 in Paris, a POST from 10.1.2.3 by a caller in ops, calling read_file
    assert_eq!(holds(tenant, json!({"tenant": "other"})), Outcome::True);
    assert_eq!(holds(hours, json!({})), Outcome::False);
    assert_eq!(holds(office, json!({})), Outcome::True);
    assert_eq!(holds(tools, json!({"groups": []})), Outcome::False);
    let r = rules(&[], &[hours, office], mcp);
    let (who, h) = (Who::with(json!({})), headers());
    assert_eq!(
        r.judge(&facts(&who, &h, None)).map_err(|r| r.to_string()),
        Err("deny_if[1]".into())
    );
}

#[test]
fn claims_read_by_name_are_read_from_the_token_when_the_route_decoded_none() {
    use base64::Engine;
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let who = Who::undecoded(encode(
        r#"{"tenant": "acme", "org": {"id": 7}, "big": ["x", "y"]}"#,
    ));
    let (h, nobody) = (headers(), Who::with(json!({})));
    let f = Facts {
        caller: &who,
        ..facts(&nobody, &h, None)
    };
    let named = [
        "claims.tenant == 'acme' && claims.org.id == 7",
        "!has(claims.missing)",
    ];
    let r = rules(&named, &[], Scope::default());
    assert!(
        !r.needs_claims(),
        "named claims need no decoding by the route"
    );
    assert_eq!(r.judge(&f), Ok(()));
    let built = claims::named_claims(&who, &r.reads).unwrap();
    assert_eq!(
        built,
        json!({"tenant": "acme", "org": {"id": 7}}),
        "only the named claims are built"
    );
    // a name written with escapes is read too
    let who = Who::undecoded(encode(r#"{"we\u0069rd": 1}"#));
    let f = Facts {
        caller: &who,
        ..facts(&nobody, &h, None)
    };
    assert_eq!(
        rules(&["claims.weird == 1"], &[], Scope::default()).judge(&f),
        Ok(())
    );
    // the whole map read: the route decodes the claims itself
    assert!(rules(&["'tenant' in claims"], &[], Scope::default()).needs_claims());
}

#[test]
fn a_repeated_token_has_its_named_claims_read_once() {
    use base64::Engine;
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let (h, nobody) = (headers(), Who::with(json!({})));
    let r = rules(&["claims.tenant == 'acme'"], &[], Scope::default());
    let kept = claims::KeptClaims::default();
    let acme = Who::undecoded(encode(r#"{"tenant": "acme"}"#));
    let first = kept.get(&acme, &r.reads).unwrap();
    let again = kept.get(&acme, &r.reads).unwrap();
    assert!(
        std::sync::Arc::ptr_eq(&first, &again),
        "kept, not read again"
    );
    let other = Who::undecoded(encode(r#"{"tenant": "globex"}"#));
    assert_eq!(
        *kept.get(&other, &r.reads).unwrap(),
        json!({"tenant": "globex"})
    );
    // judged through the rules' own store: each token by its own claims
    for (who, ok) in [(&acme, true), (&other, false), (&acme, true)] {
        let f = Facts {
            caller: who,
            ..facts(&nobody, &h, None)
        };
        assert_eq!(r.judge(&f).is_ok(), ok);
    }
}

#[test]
fn the_names_rules_are_answered_by_begin_with_the_declared_variables() {
    let declared = check::VARIABLES.len();
    assert_eq!(facts::NAMES[..declared], check::VARIABLES);
    for dotted in &facts::NAMES[declared..] {
        let (variable, _) = dotted.split_once('.').unwrap();
        assert!(check::VARIABLES.contains(&variable), "{dotted}");
    }
}
