//! The check every rule passes when the configuration loads: each name it reads is declared, each
//! function exists, no comprehension runs inside another, and what it reads is recorded so a
//! request builds only that.

use cel::common::ast::{operators, EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::{Context, Env, Program};
use std::collections::BTreeSet;
use std::sync::Arc;

/// The variables a rule may read; `mcp` only on MCP routes.
pub const VARIABLES: [&str; 10] = [
    "claims",
    "subject",
    "roles",
    "scopes",
    "issuer",
    "client_id",
    "request",
    "client",
    "now",
    "mcp",
];
pub const REQUEST_FIELDS: [&str; 6] = ["method", "path", "segments", "host", "query", "headers"];
const CLIENT_FIELDS: [&str; 1] = ["ip"];
const MCP_FIELDS: [&str; 2] = ["method", "tool"];
/// Type names an expression may name, as in `type(x) == string`.
const TYPES: [&str; 11] = [
    "bool",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "timestamp",
];

/// What a rule reads, found once at load so a request builds only that.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reads {
    /// top-level variables read
    pub variables: BTreeSet<&'static str>,
    /// claims read by name (`claims.tenant`, `claims["tenant"]`)
    pub claim_names: BTreeSet<String>,
    /// the claims are read as a whole (iterated, `in`, a computed key): every claim is built
    pub all_claims: bool,
    /// `request.*` fields read; all of them when `request` is read whole
    pub request_fields: BTreeSet<&'static str>,
}

impl Reads {
    pub fn merge(&mut self, other: Reads) {
        self.variables.extend(other.variables);
        self.claim_names.extend(other.claim_names);
        self.all_claims |= other.all_claims;
        self.request_fields.extend(other.request_fields);
    }
}

/// Where the rule may run: `mcp` is declared on MCP routes only.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scope {
    pub mcp: bool,
}

struct Walk<'a> {
    env: &'a Arc<Env>,
    scope: Scope,
    bound: Vec<&'a str>,
    /// how many comprehension bodies the walk is inside
    depth: usize,
    reads: Reads,
    problems: Vec<(u64, String)>,
}

/// Checks a parsed rule; problems are messages with the expression id they point at.
pub fn check(program: &Program, env: &Arc<Env>, scope: Scope) -> Result<Reads, Vec<(u64, String)>> {
    let mut w = Walk {
        env,
        scope,
        bound: Vec::new(),
        depth: 0,
        reads: Reads::default(),
        problems: Vec::new(),
    };
    w.expr(program.expression());
    match w.problems.is_empty() {
        true => Ok(w.reads),
        false => Err(w.problems),
    }
}

/// `line:column` (1-based, in characters) of the expression `id` in `source`.
pub fn position(program: &Program, source: &str, id: u64) -> String {
    let Some((start, _)) = program.source_info().offset_for(id) else {
        return "1:1".into();
    };
    let (mut line, mut col) = (1, 1);
    for c in source.chars().take(start as usize) {
        if c == '\n' {
            (line, col) = (line + 1, 1);
        } else {
            col += 1;
        }
    }
    format!("{line}:{col}")
}

impl<'a> Walk<'a> {
    fn problem(&mut self, id: u64, message: String) {
        self.problems.push((id, message));
    }

    fn expr(&mut self, e: &'a IdedExpr) {
        match &e.expr {
            Expr::Ident(name) => self.ident(e.id, name),
            Expr::Select(s) => {
                if let Expr::Ident(root) = &s.operand.expr {
                    if !self.bound.contains(&root.as_str()) && self.field(e.id, root, &s.field) {
                        return;
                    }
                }
                self.expr(&s.operand);
            }
            Expr::Call(c) => {
                if !is_operator(&c.func_name) && !self.declared(&c.func_name) {
                    self.problem(e.id, format!("undeclared reference to '{}'", c.func_name));
                }
                if c.func_name == "ip_in" {
                    self.literal_block(c.args.get(1));
                }
                if let (
                    operators::INDEX,
                    [IdedExpr {
                        expr: Expr::Ident(root),
                        ..
                    }, key],
                ) = (c.func_name.as_str(), c.args.as_slice())
                {
                    if root == "claims" && !self.bound.contains(&"claims") {
                        if let Expr::Literal(LiteralValue::String(k)) = &key.expr {
                            self.reads.variables.insert("claims");
                            self.reads.claim_names.insert(k.inner().to_string());
                            return;
                        }
                    }
                }
                if let Some(t) = &c.target {
                    self.expr(t);
                }
                c.args.iter().for_each(|a| self.expr(a));
            }
            Expr::Comprehension(c) => {
                if self.depth > 0 {
                    self.problem(
                        e.id,
                        "a comprehension inside another comprehension's body is not allowed (cost limit)".into(),
                    );
                }
                self.expr(&c.iter_range);
                self.expr(&c.accu_init);
                let before = self.bound.len();
                self.bound.push(&c.iter_var);
                self.bound.extend(c.iter_var2.as_deref());
                self.bound.push(&c.accu_var);
                self.depth += 1;
                for part in [&c.loop_cond, &c.loop_step, &c.result] {
                    self.expr(part);
                }
                self.depth -= 1;
                self.bound.truncate(before);
            }
            Expr::List(l) => l.elements.iter().for_each(|x| self.expr(x)),
            Expr::Map(m) => {
                for entry in &m.entries {
                    if let EntryExpr::MapEntry(me) = &entry.expr {
                        self.expr(&me.key);
                        self.expr(&me.value);
                    }
                }
            }
            Expr::Struct(s) => {
                self.problem(e.id, format!("undeclared reference to '{}'", s.type_name))
            }
            Expr::Literal(_) | Expr::Unspecified => {}
        }
    }

    fn ident(&mut self, id: u64, name: &str) {
        if self.bound.contains(&name) || TYPES.contains(&name) {
            return;
        }
        match VARIABLES.iter().find(|v| **v == name) {
            Some(&"mcp") if !self.scope.mcp => self.problem(
                id,
                "'mcp' is declared on MCP routes only (mcp = true)".into(),
            ),
            Some(v) => {
                self.reads.variables.insert(v);
                match *v {
                    "claims" => self.reads.all_claims = true,
                    "request" => self.reads.request_fields.extend(REQUEST_FIELDS),
                    _ => {}
                }
            }
            None => self.problem(id, format!("undeclared reference to '{name}'")),
        }
    }

    /// A field of a declared variable, `root.field`; true when handled here.
    fn field(&mut self, id: u64, root: &str, field: &str) -> bool {
        let fields: &[&'static str] = match root {
            "request" => &REQUEST_FIELDS,
            "client" => &CLIENT_FIELDS,
            "mcp" if self.scope.mcp => &MCP_FIELDS,
            "claims" => {
                self.reads.variables.insert("claims");
                self.reads.claim_names.insert(field.to_string());
                return true;
            }
            _ => return false,
        };
        match fields.iter().find(|f| **f == field) {
            Some(f) => {
                let v = VARIABLES.iter().find(|v| **v == root).copied();
                self.reads.variables.extend(v);
                if root == "request" {
                    self.reads.request_fields.insert(f);
                }
            }
            None => self.problem(id, format!("'{root}' has no field '{field}'")),
        }
        true
    }

    /// The block of `ip_in(x, "10.0.0.0/8")`, when written as a literal, must parse.
    fn literal_block(&mut self, arg: Option<&IdedExpr>) {
        if let Some(IdedExpr {
            id,
            expr: Expr::Literal(LiteralValue::String(s)),
        }) = arg
        {
            if let Err(e) = crate::wire::forwarded::Cidr::parse(s.inner()) {
                self.problem(*id, format!("ip_in: {e}"));
            }
        }
    }

    /// A function the environment declares: probed by adding one of the same name, which the
    /// environment refuses exactly when it declares an overload (global or member) by that name.
    fn declared(&self, name: &str) -> bool {
        let mut probe = Context::with_env(self.env.clone());
        probe.add_function(name, |a: i64| a).is_err()
    }
}

/// Operators and the internal calls macros expand to, which the interpreter answers itself.
fn is_operator(name: &str) -> bool {
    name.starts_with('_')
        || name.starts_with('@')
        || name == operators::LOGICAL_NOT
        || name == operators::NEGATE
}
