//! Route policy: does a verified principal hold the roles, scopes and claims a route asks for, and
//! who that principal is to the route's rules.

use crate::auth::identity::Identity;
use crate::config::Policy;
use crate::observe::DenyReason;
use crate::rules::Caller;
use serde_json::Value;

/// The rules read the verified identity: its decoded claims (present whenever a rule reads them),
/// and the subject, issuer, client, roles and scopes its principal holds, as they are forwarded.
impl Caller for Identity {
    fn claims(&self) -> Option<&Value> {
        self.claims.as_ref()
    }
    fn payload(&self) -> &[u8] {
        self.payload.as_bytes()
    }
    fn subject(&self) -> &str {
        self.principal.subject().unwrap_or_default()
    }
    fn issuer(&self) -> &str {
        self.principal.issuer_text()
    }
    fn client_id(&self) -> &str {
        self.principal.client_id()
    }
    fn roles(&self) -> Vec<&str> {
        self.principal.roles().collect()
    }
    fn scopes(&self) -> Vec<&str> {
        self.principal.scopes().collect()
    }
    fn has_role(&self, name: &str) -> bool {
        self.principal.roles().any(|r| r == name)
    }
    fn has_scope(&self, name: &str) -> bool {
        self.principal.scopes().any(|s| s == name)
    }
}

/// A request without an identity (a public route, or an optional one without a token): no claims,
/// empty names, no roles or scopes.
pub struct Anonymous;

impl Caller for Anonymous {
    fn claims(&self) -> Option<&Value> {
        None
    }
    fn payload(&self) -> &[u8] {
        b""
    }
    fn subject(&self) -> &str {
        ""
    }
    fn issuer(&self) -> &str {
        ""
    }
    fn client_id(&self) -> &str {
        ""
    }
    fn roles(&self) -> Vec<&str> {
        vec![]
    }
    fn scopes(&self) -> Vec<&str> {
        vec![]
    }
}

/// The policy was not met; `scope` names the scopes a client should ask for, when scopes were required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    pub reason: DenyReason,
    pub scope: Option<String>,
}

/// Claim conditions read the identity's decoded claims (present whenever the route has any).
pub fn authorize(id: &Identity, policy: &Policy) -> Result<(), Denied> {
    let (p, claims) = (&id.principal, id.claims.as_ref());
    let scope_hint = || {
        let mut s: Vec<&str> = policy.scopes_all.iter().map(String::as_str).collect();
        if s.is_empty() {
            s = policy.scopes_any.iter().map(String::as_str).collect();
        }
        (!s.is_empty()).then(|| s.join(" "))
    };
    let has_role = |r: &String| p.has_role(r);
    let has_scope = |s: &String| p.has_scope(s);
    if !policy.roles_any.is_empty() && !policy.roles_any.iter().any(has_role) {
        return Err(Denied {
            reason: DenyReason::RolesAny,
            scope: scope_hint(),
        });
    }
    if !policy.roles_all.iter().all(has_role) {
        return Err(Denied {
            reason: DenyReason::RolesAll,
            scope: scope_hint(),
        });
    }
    if !policy.scopes_any.is_empty() && !policy.scopes_any.iter().any(has_scope) {
        return Err(Denied {
            reason: DenyReason::ScopesAny,
            scope: scope_hint(),
        });
    }
    if !policy.scopes_all.iter().all(has_scope) {
        return Err(Denied {
            reason: DenyReason::ScopesAll,
            scope: scope_hint(),
        });
    }
    for (path, want) in &policy.claims {
        let ok = match claims.and_then(|c| path.lookup(c)) {
            Some(Value::Array(items)) => items.iter().any(|i| i == want),
            Some(v) => v == want,
            None => false,
        };
        if !ok {
            return Err(Denied {
                reason: DenyReason::Claims,
                scope: scope_hint(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::principal::Principal;
    use crate::config::ClaimPath;
    use std::sync::Arc;

    fn identity(p: &Arc<Principal>, claims: Option<&Value>) -> Identity {
        Identity {
            principal: p.clone(),
            payload: http::HeaderValue::from_static("e30"),
            claims: claims.cloned(),
            token_key: None,
        }
    }

    #[test]
    fn roles_scopes_and_claims() {
        let issuer = crate::auth::principal::tests::issuer();
        let claims = serde_json::json!({"realm": {"roles": ["a", "b"]}, "scope": "read",
            "tenant": "acme", "groups": ["x", "y"]});
        let p = Arc::new(Principal::new(&issuer, &claims, 0));
        let c = Some(&claims);
        let mut pol = Policy {
            roles_any: vec!["z".into(), "b".into()],
            ..Default::default()
        };
        assert!(authorize(&identity(&p, c), &pol).is_ok());
        pol.roles_all = vec!["a".into(), "c".into()];
        assert_eq!(
            authorize(&identity(&p, c), &pol)
                .unwrap_err()
                .reason
                .as_str(),
            "roles_all"
        );
        pol.roles_all = vec![];
        pol.scopes_all = vec!["read".into(), "write".into()];
        let d = authorize(&identity(&p, c), &pol).unwrap_err();
        assert_eq!(d.scope.as_deref(), Some("read write"));
        pol.scopes_all = vec![];
        pol.claims = vec![
            (ClaimPath::new("tenant"), serde_json::json!("acme")),
            (ClaimPath::new("groups"), serde_json::json!("y")),
        ];
        assert!(authorize(&identity(&p, c), &pol).is_ok());
        assert_eq!(
            authorize(&identity(&p, None), &pol)
                .unwrap_err()
                .reason
                .as_str(),
            "claims"
        );
        pol.claims = vec![(ClaimPath::new("tenant"), serde_json::json!("other"))];
        assert_eq!(
            authorize(&identity(&p, c), &pol)
                .unwrap_err()
                .reason
                .as_str(),
            "claims"
        );
    }
}
