//! Rules of the common shapes (names compared with literals, membership in roles, scopes and
//! lists, `glob`, `ip_in`, prefixes, joined by `&&`, `||` and `!`) judged by direct comparisons of
//! the request's own strings, with CEL's answers; anything else is left to the interpreter.

use super::check::Reads;
use super::facts::{spend, Facts, MAX_ITEMS};
use crate::wire::forwarded::Cidr;
use cel::common::ast::{operators, Expr, IdedExpr, LiteralValue};
use serde_json::Value;
use std::cell::OnceCell;

/// What a direct check found: CEL's result, or that only the interpreter can tell (a claim that is
/// not a string, a repeated header, claims over the entry budget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    True,
    False,
    /// CEL would fail (a missing claim or header, an index past the end): never a pass
    Error,
    Unknown,
}

impl From<bool> for Answer {
    fn from(b: bool) -> Answer {
        if b {
            Answer::True
        } else {
            Answer::False
        }
    }
}

/// A rule compiled to comparisons, evaluated with CEL's commutative `&&` and `||`: `false && error`
/// is false, `true || error` is true.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Const(bool),
    And(Box<Check>, Box<Check>),
    Or(Box<Check>, Box<Check>),
    Not(Box<Check>),
    /// `a == b` (or `!=` when the flag is false)
    Equal(Operand, Operand, bool),
    /// `text in ['a', 'b']`
    OneOf(Text, Vec<String>),
    /// `'ops' in roles`
    Holds(Listed, Operand),
    /// `glob(text, 'pattern')`
    Glob(Text, String),
    /// `ip_in(client.ip, 'block')`
    IpIn(Cidr),
    /// `has(claims.name)`
    Has(String),
    /// `text.startsWith('x')`, `endsWith`, `contains`
    Affix(Text, Affix, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Affix {
    Starts,
    Ends,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    Text(Text),
    Literal(String),
}

/// A string the request or its identity holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Subject,
    Issuer,
    ClientId,
    Method,
    Path,
    Host,
    McpMethod,
    McpTool,
    /// `request.segments[i]`
    Segment(usize),
    /// `request.headers['name']`, the name in lower case
    Header(String),
    /// `claims.name`, or `claims['name']` when indexed
    Claim(String, bool),
}

/// A list the identity holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Listed {
    Roles,
    Scopes,
    Claim(String, bool),
}

/// One request's facts as direct checks read them.
pub struct Seen<'a> {
    facts: &'a Facts<'a>,
    claims: Option<&'a Value>,
    reads: &'a Reads,
    /// the named claims bring at most `MAX_ITEMS` entries, so the interpreter could not run out
    /// of budget reading them in any order: only then are claims answered here
    claims_fit: OnceCell<bool>,
}

impl<'a> Seen<'a> {
    /// `named`: the claims the rules name, when the identity carries none decoded.
    pub fn new(facts: &'a Facts<'a>, named: Option<&'a Value>, reads: &'a Reads) -> Seen<'a> {
        Seen {
            facts,
            claims: facts.caller.claims().or(named),
            reads,
            claims_fit: OnceCell::new(),
        }
    }

    /// A claim by name; `indexed` (`claims['name']`) is read from the map of claims, which holds
    /// every claim when a rule reads them whole, so that budget is the interpreter's to judge.
    fn claim(&self, name: &str, indexed: bool) -> Result<&'a Value, Answer> {
        if (indexed && self.reads.all_claims) || !self.claims_fit() {
            return Err(Answer::Unknown);
        }
        self.claims.and_then(|c| c.get(name)).ok_or(Answer::Error)
    }

    /// `has(claims.name)`: asked of the map of claims (empty without any), as `indexed` above.
    fn has_claim(&self, name: &str) -> Answer {
        if self.reads.all_claims || !self.claims_fit() {
            return Answer::Unknown;
        }
        self.claims.and_then(|c| c.get(name)).is_some().into()
    }

    fn claims_fit(&self) -> bool {
        *self.claims_fit.get_or_init(|| {
            let mut budget = MAX_ITEMS;
            let claims = self.claims;
            (self.reads.claim_names.iter())
                .filter_map(|n| claims.and_then(|c| c.get(n.as_str())))
                .all(|v| spend(v, &mut budget))
        })
    }

    fn text(&self, t: &Text) -> Result<&'a str, Answer> {
        let f = self.facts;
        Ok(match t {
            Text::Subject => f.caller.subject(),
            Text::Issuer => f.caller.issuer(),
            Text::ClientId => f.caller.client_id(),
            Text::Method => f.method,
            Text::Path => f.path,
            Text::Host => f.host,
            Text::McpMethod => f.mcp.ok_or(Answer::Unknown)?.method,
            Text::McpTool => f.mcp.ok_or(Answer::Unknown)?.tool,
            Text::Segment(i) => (f.path.split('/').filter(|s| !s.is_empty()))
                .nth(*i)
                .ok_or(Answer::Error)?,
            Text::Header(name) => {
                let mut values = f
                    .headers
                    .get_all(name)
                    .iter()
                    .filter_map(|v| v.to_str().ok());
                match (values.next(), values.next()) {
                    (None, _) => return Err(Answer::Error),
                    (Some(one), None) => one,
                    // the interpreter joins them
                    (Some(_), Some(_)) => return Err(Answer::Unknown),
                }
            }
            Text::Claim(name, indexed) => match self.claim(name, *indexed)? {
                Value::String(s) => s,
                _ => return Err(Answer::Unknown),
            },
        })
    }

    fn operand<'b>(&self, o: &'b Operand) -> Result<&'b str, Answer>
    where
        'a: 'b,
    {
        match o {
            Operand::Text(t) => self.text(t),
            Operand::Literal(s) => Ok(s),
        }
    }

    fn holds(&self, list: &Listed, item: &str) -> Answer {
        let caller = self.facts.caller;
        match list {
            Listed::Roles => caller.has_role(item).into(),
            Listed::Scopes => caller.has_scope(item).into(),
            Listed::Claim(name, indexed) => match self.claim(name, *indexed) {
                Ok(Value::Array(items)) if items.iter().all(Value::is_string) => {
                    items.iter().any(|v| v.as_str() == Some(item)).into()
                }
                Ok(_) => Answer::Unknown,
                Err(a) => a,
            },
        }
    }
}

impl Check {
    pub fn eval(&self, seen: &Seen<'_>) -> Answer {
        use Answer::*;
        match self {
            Check::Const(b) => (*b).into(),
            Check::And(a, b) => match a.eval(seen) {
                False => False,
                x => match (x, b.eval(seen)) {
                    (_, False) => False,
                    (True, True) => True,
                    (Unknown, _) | (_, Unknown) => Unknown,
                    _ => Error,
                },
            },
            Check::Or(a, b) => match a.eval(seen) {
                True => True,
                x => match (x, b.eval(seen)) {
                    (_, True) => True,
                    (False, False) => False,
                    (Unknown, _) | (_, Unknown) => Unknown,
                    _ => Error,
                },
            },
            Check::Not(a) => match a.eval(seen) {
                True => False,
                False => True,
                other => other,
            },
            Check::Equal(a, b, equal) => match (seen.operand(a), seen.operand(b)) {
                (Ok(a), Ok(b)) => ((a == b) == *equal).into(),
                (Err(Unknown), _) | (_, Err(Unknown)) => Unknown,
                _ => Error,
            },
            Check::OneOf(t, values) => match seen.text(t) {
                Ok(s) => values.iter().any(|v| v == s).into(),
                Err(a) => a,
            },
            Check::Holds(list, item) => match seen.operand(item) {
                Ok(item) => seen.holds(list, item),
                Err(a) => a,
            },
            Check::Glob(t, pattern) => match seen.text(t) {
                Ok(s) => super::helpers::glob(pattern, s).into(),
                Err(a) => a,
            },
            Check::Has(name) => seen.has_claim(name),
            Check::IpIn(block) => seen
                .facts
                .client_ip
                .is_some_and(|ip| block.contains(ip))
                .into(),
            Check::Affix(t, how, part) => match seen.text(t) {
                Ok(s) => match how {
                    Affix::Starts => s.starts_with(part.as_str()),
                    Affix::Ends => s.ends_with(part.as_str()),
                    Affix::Contains => s.contains(part.as_str()),
                }
                .into(),
                Err(a) => a,
            },
        }
    }
}

/// The direct form of a checked rule, when it has one.
pub fn compile(e: &IdedExpr) -> Option<Check> {
    match &e.expr {
        Expr::Literal(LiteralValue::Boolean(b)) => Some(Check::Const(*b.inner())),
        Expr::Select(s) if s.test && matches!(&s.operand.expr, Expr::Ident(r) if r == "claims") => {
            Some(Check::Has(s.field.clone()))
        }
        Expr::Call(c) => {
            let args = c.args.as_slice();
            let both = |f: fn(Box<Check>, Box<Check>) -> Check| match args {
                [a, b] => Some(f(Box::new(compile(a)?), Box::new(compile(b)?))),
                _ => None,
            };
            match (c.func_name.as_str(), c.target.as_deref(), args) {
                (operators::LOGICAL_AND, None, _) => both(Check::And),
                (operators::LOGICAL_OR, None, _) => both(Check::Or),
                (operators::LOGICAL_NOT, None, [a]) => Some(Check::Not(Box::new(compile(a)?))),
                (operators::EQUALS, None, [a, b]) => {
                    Some(Check::Equal(operand(a)?, operand(b)?, true))
                }
                (operators::NOT_EQUALS, None, [a, b]) => {
                    Some(Check::Equal(operand(a)?, operand(b)?, false))
                }
                (operators::IN, None, [item, list]) => membership(item, list),
                ("glob", None, [t, pattern]) => Some(Check::Glob(text(t)?, literal(pattern)?)),
                ("ip_in", None, [ip, block]) if is_field(ip, "client", "ip") => {
                    Cidr::parse(&literal(block)?).ok().map(Check::IpIn)
                }
                (name, Some(t), [part]) => {
                    let how = match name {
                        "startsWith" => Affix::Starts,
                        "endsWith" => Affix::Ends,
                        "contains" => Affix::Contains,
                        _ => return None,
                    };
                    Some(Check::Affix(text(t)?, how, literal(part)?))
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn membership(item: &IdedExpr, list: &IdedExpr) -> Option<Check> {
    match &list.expr {
        Expr::Ident(name) if name == "roles" => Some(Check::Holds(Listed::Roles, operand(item)?)),
        Expr::Ident(name) if name == "scopes" => Some(Check::Holds(Listed::Scopes, operand(item)?)),
        Expr::List(l) if l.optional_indices.is_empty() => {
            let values = l.elements.iter().map(literal).collect::<Option<Vec<_>>>()?;
            Some(Check::OneOf(text(item)?, values))
        }
        _ => match text(list)? {
            Text::Claim(name, indexed) => {
                Some(Check::Holds(Listed::Claim(name, indexed), operand(item)?))
            }
            _ => None,
        },
    }
}

fn operand(e: &IdedExpr) -> Option<Operand> {
    match literal(e) {
        Some(s) => Some(Operand::Literal(s)),
        None => text(e).map(Operand::Text),
    }
}

fn literal(e: &IdedExpr) -> Option<String> {
    match &e.expr {
        Expr::Literal(LiteralValue::String(s)) => Some(s.inner().to_string()),
        _ => None,
    }
}

/// `root.field`, selected (not tested with `has`).
fn is_field(e: &IdedExpr, root: &str, field: &str) -> bool {
    matches!(&e.expr, Expr::Select(s) if !s.test && s.field == field
        && matches!(&s.operand.expr, Expr::Ident(r) if r == root))
}

fn text(e: &IdedExpr) -> Option<Text> {
    match &e.expr {
        Expr::Ident(name) => match name.as_str() {
            "subject" => Some(Text::Subject),
            "issuer" => Some(Text::Issuer),
            "client_id" => Some(Text::ClientId),
            _ => None,
        },
        Expr::Select(s) if !s.test => match (&s.operand.expr, s.field.as_str()) {
            (Expr::Ident(root), field) => match (root.as_str(), field) {
                ("request", "method") => Some(Text::Method),
                ("request", "path") => Some(Text::Path),
                ("request", "host") => Some(Text::Host),
                ("mcp", "method") => Some(Text::McpMethod),
                ("mcp", "tool") => Some(Text::McpTool),
                ("claims", name) => Some(Text::Claim(name.to_string(), false)),
                _ => None,
            },
            _ => None,
        },
        Expr::Call(c) if c.func_name == operators::INDEX && c.target.is_none() => {
            let [of, key] = c.args.as_slice() else {
                return None;
            };
            match &key.expr {
                Expr::Literal(LiteralValue::String(k)) => {
                    let k = k.inner();
                    if matches!(&of.expr, Expr::Ident(r) if r == "claims") {
                        return Some(Text::Claim(k.to_string(), true));
                    }
                    let lower =
                        http::HeaderName::from_bytes(k.as_bytes()).is_ok_and(|n| n.as_str() == k);
                    (is_field(of, "request", "headers") && lower)
                        .then(|| Text::Header(k.to_string()))
                }
                Expr::Literal(LiteralValue::Int(i)) if is_field(of, "request", "segments") => {
                    usize::try_from(*i.inner()).ok().map(Text::Segment)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;
