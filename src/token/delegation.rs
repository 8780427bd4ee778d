//! Token exchange's pure rules (RFC 8693): `act` nesting, scope narrowing, `may_act`, expiry.

use serde_json::{json, Map, Value};

/// Why a rule refused an exchange; the grant turns each into its OAuth error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// a scope beyond the subject token's or the client's (`invalid_scope`)
    Widening,
    /// the subject token's `may_act` does not name this actor (`invalid_grant`)
    NotAllowedToAct,
}

/// The `act` claim of a token issued to `actor` for a subject token whose own `act` is `prior`
/// (RFC 8693 §4.1): the new actor outermost, the earlier chain nested inside it, so the current
/// actor is read first and the history stays whole.
pub(super) fn act(actor: &str, prior: Option<&Value>) -> Value {
    let mut a = json!({ "sub": actor });
    if let (Some(o), Some(p)) = (a.as_object_mut(), prior.filter(|p| p.is_object())) {
        o.insert("act".into(), p.clone());
    }
    a
}

/// The scopes of an exchanged token: the ones asked for, when each is granted both by the subject
/// token and to the client; without a request, every scope the two share. An exchange can narrow,
/// never widen: it must not give a token more than the one it replaces, nor the client more than
/// its own configuration allows.
pub(super) fn scopes(
    asked: Option<&[String]>,
    subject: &[&str],
    client: &[String],
) -> Result<Vec<String>, Refusal> {
    let allowed = |s: &str| subject.contains(&s) && client.iter().any(|c| c == s);
    match asked {
        Some(asked) if asked.iter().all(|s| allowed(s)) => Ok(asked.to_vec()),
        Some(_) => Err(Refusal::Widening),
        None => Ok(subject
            .iter()
            .filter(|s| allowed(s))
            .map(|s| s.to_string())
            .collect()),
    }
}

/// RFC 8693 §4.4: a subject token with `may_act` may be exchanged only by the party it names.
/// Every member it names must equal the actor's (`sub`, and `iss` when it names one); a `may_act`
/// that is not an object, or names a member the actor lacks, allows no one.
pub(super) fn may_act(may_act: Option<&Value>, actor: &Map<String, Value>) -> Result<(), Refusal> {
    let Some(rule) = may_act else {
        return Ok(());
    };
    match rule.as_object() {
        Some(o) if !o.is_empty() && o.iter().all(|(k, v)| actor.get(k) == Some(v)) => Ok(()),
        _ => Err(Refusal::NotAllowedToAct),
    }
}

/// When an exchanged token expires: the service's lifetime from now, but never after the subject
/// token, so exchanging again and again cannot stretch a token's life.
pub(super) fn expiry(now: u64, ttl: u64, subject_exp: u64) -> u64 {
    now.saturating_add(ttl).min(subject_exp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn act_nests_the_earlier_chain_inside_the_new_actor() {
        assert_eq!(act("svc-a", None), json!({"sub": "svc-a"}));
        let first = act("svc-a", None);
        let second = act("svc-b", Some(&first));
        assert_eq!(second, json!({"sub": "svc-b", "act": {"sub": "svc-a"}}));
        let third = act("gw", Some(&second));
        assert_eq!(
            third,
            json!({"sub": "gw", "act": {"sub": "svc-b", "act": {"sub": "svc-a"}}})
        );
        // something that is not an actor is not carried along
        assert_eq!(act("svc-a", Some(&json!("x"))), json!({"sub": "svc-a"}));
    }

    #[test]
    fn scopes_only_narrow() {
        let client = vec!["a".to_string(), "b".to_string(), "c".to_string()];
        let subject = ["a", "b", "d"];
        let asked = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            scopes(Some(&asked(&["a"])), &subject, &client),
            Ok(asked(&["a"]))
        );
        assert_eq!(scopes(None, &subject, &client), Ok(asked(&["a", "b"])));
        // beyond the subject token, or beyond the client
        assert_eq!(
            scopes(Some(&asked(&["c"])), &subject, &client),
            Err(Refusal::Widening)
        );
        assert_eq!(
            scopes(Some(&asked(&["a", "d"])), &subject, &client),
            Err(Refusal::Widening)
        );
        assert_eq!(scopes(None, &[], &client), Ok(vec![]));
    }

    #[test]
    fn may_act_names_the_only_actor() {
        let svc = actor(json!({"sub": "svc-a"}));
        assert_eq!(may_act(None, &svc), Ok(()));
        assert_eq!(may_act(Some(&json!({"sub": "svc-a"})), &svc), Ok(()));
        for refused in [
            json!({"sub": "svc-b"}),
            json!({"sub": "svc-a", "iss": "https://other"}),
            json!({}),
            json!("svc-a"),
            json!(null),
        ] {
            assert_eq!(
                may_act(Some(&refused), &svc),
                Err(Refusal::NotAllowedToAct),
                "{refused}"
            );
        }
        let with_iss = actor(json!({"sub": "svc-a", "iss": "https://idp"}));
        let rule = json!({"sub": "svc-a", "iss": "https://idp"});
        assert_eq!(may_act(Some(&rule), &with_iss), Ok(()));
    }

    #[test]
    fn an_exchanged_token_never_outlives_its_subject() {
        assert_eq!(expiry(1000, 600, 5000), 1600);
        assert_eq!(expiry(1000, 600, 1200), 1200);
        assert_eq!(expiry(u64::MAX - 1, 600, u64::MAX), u64::MAX);
    }
}
