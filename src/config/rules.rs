//! Compiles a route's `allow_if` and `deny_if`: every expression parsed and checked at load, each
//! problem named by its route, key and index, and where in the expression it is.

use super::raw::OneOrMany;
use super::Compiler;
use crate::rules::{self, Reads, Rule, Rules, Scope};
use std::sync::Arc;

impl Compiler {
    /// The route's rules, or `None` without any (or when one does not compile: then reported).
    pub(super) fn rules(
        &mut self,
        i: usize,
        allow_if: Option<OneOrMany>,
        deny_if: Option<OneOrMany>,
        scope: Scope,
    ) -> Option<Arc<Rules>> {
        if allow_if.is_none() && deny_if.is_none() {
            return None;
        }
        let env = match &self.rule_env {
            Some(env) => env.clone(),
            None => match rules::environment() {
                Ok(env) => self.rule_env.insert(env).clone(),
                Err(e) => {
                    self.err(format!("routes[{i}]"), e);
                    return None;
                }
            },
        };
        let mut reads = Reads::default();
        let mut sound = true;
        let mut compiled = |c: &mut Compiler, key: &str, written: Option<OneOrMany>| {
            let list = written.map(OneOrMany::into_vec).unwrap_or_default();
            let mut out: Vec<Rule> = Vec::new();
            for (j, source) in list.iter().enumerate() {
                let at = format!("routes[{i}].{key}[{j}]");
                if source.trim().is_empty() {
                    c.err(at, "an empty expression");
                    sound = false;
                    continue;
                }
                match rules::compile(&env, source, scope) {
                    Ok((rule, r)) => {
                        reads.merge(r);
                        out.push(rule);
                    }
                    Err(problems) => {
                        sound = false;
                        for p in problems {
                            c.err(at.clone(), p);
                        }
                    }
                }
            }
            out
        };
        let written = (allow_if.is_some(), deny_if.is_some());
        let allow = compiled(self, "allow_if", allow_if);
        let deny = compiled(self, "deny_if", deny_if);
        if written == (true, false) && allow.is_empty() && sound {
            self.err(
                format!("routes[{i}].allow_if"),
                "name at least one expression",
            );
        }
        if written == (false, true) && deny.is_empty() && sound {
            self.err(
                format!("routes[{i}].deny_if"),
                "name at least one expression",
            );
        }
        let rules = Rules::new(env.clone(), allow, deny, reads);
        (sound && !(rules.allow_if.is_empty() && rules.deny_if.is_empty())).then(|| Arc::new(rules))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{compile, refused, BASE};

    fn route(body: &str) -> String {
        format!("{BASE}\n[[routes]]\npath_prefix = \"/r\"\nupstream = \"u\"\nauth = \"public\"\n{body}\n")
    }

    #[test]
    fn rules_take_a_string_or_a_list_and_decide_whether_claims_are_decoded() {
        let c = compile(&route("allow_if = \"'ops' in roles\"")).unwrap();
        let r = c.routes[1].rules.as_ref().unwrap();
        assert_eq!((r.allow_if.len(), r.deny_if.len()), (1, 0));
        assert!(
            !c.routes[1].needs_claims,
            "roles come from the verified principal"
        );
        let c = compile(&route(
            "allow_if = [\"claims.tenant == request.segments[1]\", \"true\"]\ndeny_if = \"false\"",
        ))
        .unwrap();
        let r = c.routes[1].rules.as_ref().unwrap();
        assert_eq!((r.allow_if.len(), r.deny_if.len()), (2, 1));
        assert!(
            !c.routes[1].needs_claims,
            "a claim read by name is read for the rules alone"
        );
        assert!(c.routes[0].rules.is_none());
        let c = compile(&route("allow_if = \"claims.exists(k, k == 'x')\"")).unwrap();
        assert!(
            c.routes[1].needs_claims,
            "the whole map is decoded by the route"
        );
    }

    #[test]
    fn every_broken_expression_is_named_by_route_key_and_index() {
        let text = route(
            "allow_if = [\"true\", \"claim.x == 'a'\"]\ndeny_if = [\"request.pth == '/'\", \"(\"]",
        );
        let problems = compile(&text).unwrap_err();
        assert!(
            problems.contains(
                &"routes[1].allow_if[1]: undeclared reference to 'claim' at 1:1".to_string()
            ),
            "{problems:?}"
        );
        assert!(
            problems
                .contains(&"routes[1].deny_if[0]: 'request' has no field 'pth' at 1:8".to_string()),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with("routes[1].deny_if[1]: ") && p.contains(" at 1:")),
            "{problems:?}"
        );
        refused(
            &route("allow_if = []"),
            "routes[1].allow_if",
            "name at least one expression",
        );
        refused(
            &route("deny_if = [\" \"]"),
            "routes[1].deny_if[0]",
            "an empty expression",
        );
        refused(
            &route("allow_if = \"mcp.tool == 'x'\""),
            "routes[1].allow_if[0]",
            "'mcp' is declared on MCP routes only",
        );
    }
}
