//! Route rules (`allow_if`, `deny_if`): CEL expressions compiled once per configuration and judged
//! against each request's identity and target.

pub mod check;
mod claims;
mod direct;
pub mod facts;
pub mod helpers;
mod rule_ref;

pub use check::{Reads, Scope};
pub use facts::{Bindings, Caller, Facts, McpCall};
pub use rule_ref::{RuleKind, RuleRef};

use cel::{Context, Env, ExecutionError, Program, Value};
use std::cell::OnceCell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// One compiled expression and the text it was written as.
#[derive(Debug)]
pub struct Rule {
    pub source: String,
    program: Program,
    /// the same rule as direct comparisons, when it has that shape
    direct: Option<direct::Check>,
}

/// A route's rules, compiled: shared by every worker through the configuration's `Arc`.
pub struct Rules {
    env: Arc<Env>,
    pub allow_if: Vec<Rule>,
    pub deny_if: Vec<Rule>,
    /// what the rules read, so a request builds only that
    pub reads: Reads,
    /// the claims the rules name, of the tokens judged lately
    kept: claims::KeptClaims,
}

impl std::fmt::Debug for Rules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rules")
            .field("allow_if", &self.allow_if)
            .field("deny_if", &self.deny_if)
            .field("reads", &self.reads)
            .finish()
    }
}

/// How one rule came out for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    True,
    False,
    /// it could not be evaluated (a missing claim, a type mismatch, the cost limit): never a pass
    Error(String),
}

/// Builds the environment every rule of a configuration shares.
pub fn environment() -> Result<Arc<Env>, String> {
    helpers::env()
        .map(Arc::new)
        .map_err(|e| format!("the rule environment: {e}"))
}

/// Compiles one expression: parsed, every name checked. Problems read `message at line:column`.
pub fn compile(env: &Arc<Env>, source: &str, scope: Scope) -> Result<(Rule, Reads), Vec<String>> {
    let program = env.compile(source).map_err(|errors| {
        errors
            .errors
            .iter()
            .map(|e| format!("{} at {}:{}", e.msg, e.pos.0.max(1), e.pos.1.max(1)))
            .collect::<Vec<_>>()
    })?;
    match check::check(&program, env, scope) {
        Ok(reads) => Ok((
            Rule {
                source: source.to_string(),
                direct: direct::compile(program.expression()),
                program,
            },
            reads,
        )),
        Err(problems) => Err(problems
            .into_iter()
            .map(|(id, m)| format!("{m} at {}", check::position(&program, source, id)))
            .collect()),
    }
}

impl Rules {
    pub fn new(env: Arc<Env>, allow_if: Vec<Rule>, deny_if: Vec<Rule>, reads: Reads) -> Rules {
        Rules {
            env,
            allow_if,
            deny_if,
            reads,
            kept: claims::KeptClaims::default(),
        }
    }

    /// Whether a rule reads the claims as a whole, which the route must then decode; claims read by
    /// name are read from the token for the rules alone, unless the route decodes them anyway.
    pub fn needs_claims(&self) -> bool {
        self.reads.all_claims
    }

    /// Whether the rules read the MCP call, so they wait for the request's body.
    pub fn reads_mcp(&self) -> bool {
        self.reads.variables.contains("mcp")
    }

    /// Whether the rules read the client's address (found only for routes that do).
    pub fn reads_client(&self) -> bool {
        self.reads.variables.contains("client")
    }

    /// Passes when no `deny_if` holds and every `allow_if` does; else the first rule that refused.
    /// A rule that cannot be evaluated refuses, whichever key it is under. Rules of the common
    /// shapes are judged directly; the interpreter is set up only for a rule that needs it.
    pub fn judge(&self, facts: &Facts<'_>) -> Result<(), RuleRef> {
        let named = self.kept.get(facts.caller, &self.reads);
        let seen = direct::Seen::new(facts, named.as_deref(), &self.reads);
        let bindings = OnceCell::new();
        let ctx = OnceCell::new();
        let interpreted = |r: &Rule| {
            let ctx = ctx.get_or_init(|| {
                let mut ctx = Context::with_env(self.env.clone());
                ctx.set_variable_resolver(
                    bindings.get_or_init(|| Bindings::new(facts, &self.reads, named.as_deref())),
                );
                ctx
            });
            eval(r, ctx)
        };
        let outcome = |r: &Rule| match r.direct.as_ref().map(|d| d.eval(&seen)) {
            Some(direct::Answer::True) => Ok(true),
            Some(direct::Answer::False) => Ok(false),
            Some(direct::Answer::Error) => Err(()),
            Some(direct::Answer::Unknown) | None => interpreted(r).map_err(|_| ()),
        };
        for (i, r) in self.deny_if.iter().enumerate() {
            if outcome(r) != Ok(false) {
                return Err(RuleRef::new(RuleKind::DenyIf, i));
            }
        }
        for (i, r) in self.allow_if.iter().enumerate() {
            if outcome(r) != Ok(true) {
                return Err(RuleRef::new(RuleKind::AllowIf, i));
            }
        }
        Ok(())
    }

    /// Every rule's outcome, `deny_if` first, for an operator asking why (`gatehouse explain`).
    pub fn explain(&self, facts: &Facts<'_>) -> Vec<(RuleRef, &Rule, Outcome)> {
        let named = self.kept.get(facts.caller, &self.reads);
        let bindings = Bindings::new(facts, &self.reads, named.as_deref());
        let mut ctx = Context::with_env(self.env.clone());
        ctx.set_variable_resolver(&bindings);
        let kinds = [
            (RuleKind::DenyIf, &self.deny_if),
            (RuleKind::AllowIf, &self.allow_if),
        ];
        let mut out = Vec::new();
        for (kind, rules) in kinds {
            for (i, r) in rules.iter().enumerate() {
                let outcome = match eval(r, &ctx) {
                    Ok(true) => Outcome::True,
                    Ok(false) => Outcome::False,
                    Err(_) if bindings.over_budget.load(Ordering::Relaxed) => {
                        Outcome::Error(format!(
                            "a claim list or map is larger than the cost limit ({} entries)",
                            facts::MAX_ITEMS
                        ))
                    }
                    Err(e) => Outcome::Error(e),
                };
                out.push((RuleRef::new(kind, i), r, outcome));
            }
        }
        out
    }
}

/// A rule's result; an error says what went wrong without any value it met.
fn eval(rule: &Rule, ctx: &Context<'_, '_>) -> Result<bool, String> {
    match Value::resolve_val(rule.program.expression(), ctx) {
        Ok(v) => helpers::is_true(&*v).ok_or_else(|| "the result is not a bool".to_string()),
        Err(e) => Err(describe(&e)),
    }
}

/// An evaluation error, by kind: never the values it met, which may be claims.
fn describe(e: &ExecutionError) -> String {
    match e {
        ExecutionError::NoSuchKey(k) => format!("no such key '{k}'"),
        ExecutionError::UndeclaredReference(r) => format!("'{r}' is not available here"),
        ExecutionError::NoSuchOverload(o) => format!(
            "'{}' does not apply to ({})",
            o.function(),
            o.argument_types().join(", ")
        ),
        ExecutionError::ValuesNotComparable(..) => "values of different types compared".into(),
        ExecutionError::IndexOutOfBounds(_) => "an index out of bounds".into(),
        ExecutionError::DivisionByZero(_) | ExecutionError::RemainderByZero(_) => {
            "a division by zero".into()
        }
        ExecutionError::Overflow(op, ..) => format!("an overflow in '{op}'"),
        ExecutionError::FunctionError { function, .. } => format!("'{function}' failed"),
        _ => "the expression could not be evaluated".into(),
    }
}

#[cfg(test)]
mod tests;
