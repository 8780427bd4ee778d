//! What a rule reads about one request, built lazily: a variable is made the first time a rule
//! reads it, holding only the claims and request fields the route's rules name, borrowing the
//! identity's already decoded claims rather than copying or parsing them again.

use super::check::Reads;
use cel::common::types::{CelBool, CelDouble};
use cel::common::types::{CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, CelTimestamp};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use serde_json::Value;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The most list and map entries one request's claims may bring into the rules: with no
/// comprehension inside another (refused at load), a rule's work is bounded by this times its size.
pub const MAX_ITEMS: usize = 1000;

/// Who made the request, as the rules see it; implemented for the gateway's verified identity.
pub trait Caller: Sync {
    /// the verified claims, when the route decoded them (`Rules::needs_claims`)
    fn claims(&self) -> Option<&Value>;
    /// the claims as the token carried them (base64url JSON), read for the claims the rules name
    /// when the route did not decode them all
    fn payload(&self) -> &[u8];
    fn subject(&self) -> &str;
    fn issuer(&self) -> &str;
    fn client_id(&self) -> &str;
    fn roles(&self) -> Vec<&str>;
    fn scopes(&self) -> Vec<&str>;
    /// `'name' in roles`, answered without building the list
    fn has_role(&self, name: &str) -> bool {
        self.roles().contains(&name)
    }
    /// `'name' in scopes`, answered without building the list
    fn has_scope(&self, name: &str) -> bool {
        self.scopes().contains(&name)
    }
}

/// The MCP call a request makes, on MCP routes (empty when it makes none).
#[derive(Debug, Clone, Copy, Default)]
pub struct McpCall<'a> {
    pub method: &'a str,
    pub tool: &'a str,
}

/// Everything a rule may read about one request.
pub struct Facts<'a> {
    pub caller: &'a dyn Caller,
    pub method: &'a str,
    /// normalised
    pub path: &'a str,
    pub host: &'a str,
    /// the raw query, parsed only when a rule reads `request.query`
    pub query: Option<&'a str>,
    /// after the identity headers were removed
    pub headers: &'a http::HeaderMap,
    /// after `trusted_proxies`
    pub client_ip: Option<IpAddr>,
    /// since the Unix epoch, from the gateway's clock
    pub now: Duration,
    pub mcp: Option<McpCall<'a>>,
}

type Boxed<'a> = Box<dyn Val + 'a>;

/// The names a rule's variables are looked up by: each variable, and the fields of `request`,
/// `client` and `mcp` by their whole dotted name, which CEL resolves before the variable (so
/// `request.path` is answered without building the `request` map).
pub(super) const NAMES: [&str; 19] = [
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
    "request.method",
    "request.path",
    "request.segments",
    "request.host",
    "request.query",
    "request.headers",
    "client.ip",
    "mcp.method",
    "mcp.tool",
];

/// The variables of one evaluation, each built at most once.
pub struct Bindings<'a> {
    facts: &'a Facts<'a>,
    /// the claims the rules name, decoded for them when the identity carries none decoded
    named_claims: Option<&'a Value>,
    reads: &'a Reads,
    made: [OnceLock<Option<Boxed<'a>>>; NAMES.len()],
    /// the claims the rules name, each built when a rule reads it as `claims.<name>` (in the order
    /// of `Reads::claim_names`), without the map of them all
    claims_by_name: Vec<OnceLock<Option<Boxed<'a>>>>,
    /// list and map entries the claims read by name may still bring in
    budget: AtomicUsize,
    /// a claim list or map was larger than `MAX_ITEMS` allows
    pub over_budget: AtomicBool,
}

impl<'a> Bindings<'a> {
    pub fn new(
        facts: &'a Facts<'a>,
        reads: &'a Reads,
        named_claims: Option<&'a Value>,
    ) -> Bindings<'a> {
        Bindings {
            facts,
            named_claims,
            reads,
            made: Default::default(),
            claims_by_name: (reads.claim_names.iter())
                .map(|_| OnceLock::new())
                .collect(),
            budget: AtomicUsize::new(MAX_ITEMS),
            over_budget: AtomicBool::new(false),
        }
    }

    fn make(&self, name: &str) -> Option<Boxed<'a>> {
        let f = self.facts;
        let text = |s: &'a str| -> Option<Boxed<'a>> { Some(Box::new(CelString::from(s))) };
        match name {
            "claims" => self.claims(),
            "subject" => text(f.caller.subject()),
            "issuer" => text(f.caller.issuer()),
            "client_id" => text(f.caller.client_id()),
            "roles" => Some(list(f.caller.roles())),
            "scopes" => Some(list(f.caller.scopes())),
            "request" => Some(self.request()),
            "client" => Some(map(vec![(CelMapKey::from("ip"), self.client_ip())])),
            "client.ip" => Some(self.client_ip()),
            "now" => {
                let at =
                    chrono::DateTime::from_timestamp(f.now.as_secs() as i64, f.now.subsec_nanos())?;
                Some(Box::new(CelTimestamp::from(at.fixed_offset())))
            }
            "mcp" => {
                let call = f.mcp?;
                Some(map(vec![
                    (
                        CelMapKey::from("method"),
                        Box::new(CelString::from(call.method)),
                    ),
                    (
                        CelMapKey::from("tool"),
                        Box::new(CelString::from(call.tool)),
                    ),
                ]))
            }
            "mcp.method" => text(f.mcp?.method),
            "mcp.tool" => text(f.mcp?.tool),
            other => self.request_field(other.strip_prefix("request.")?),
        }
    }

    fn client_ip(&self) -> Boxed<'a> {
        let ip = self
            .facts
            .client_ip
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        Box::new(CelString::from(ip))
    }

    /// One claim the rules name, read as `claims.<name>`; none when the token lacks it (the map
    /// then answers, and refuses) or past the entry budget.
    fn claim(&self, name: &str) -> Option<Boxed<'a>> {
        let decoded = self.facts.caller.claims().or(self.named_claims)?;
        let mut budget = self.budget.load(Ordering::Relaxed);
        let value = json(decoded.get(name)?, &mut budget);
        match value {
            Some(_) => self.budget.store(budget, Ordering::Relaxed),
            None => self.over_budget.store(true, Ordering::Relaxed),
        }
        value
    }

    /// The claims the rules read, or all of them when a rule reads the map as a whole.
    fn claims(&self) -> Option<Boxed<'a>> {
        let decoded = self.facts.caller.claims().or(self.named_claims);
        let Some(Value::Object(all)) = decoded else {
            return Some(map(vec![]));
        };
        let mut budget = MAX_ITEMS;
        let mut entries = Vec::new();
        let mut add = |k: &'a str, v: &'a Value| match json(v, &mut budget) {
            Some(val) => {
                entries.push((CelMapKey::from(k), val));
                true
            }
            None => false,
        };
        let fits = match self.reads.all_claims {
            true => all.iter().all(|(k, v)| add(k, v)),
            false => self
                .reads
                .claim_names
                .iter()
                .filter_map(|n| all.get_key_value(n.as_str()))
                .all(|(k, v)| add(k, v)),
        };
        if !fits {
            self.over_budget.store(true, Ordering::Relaxed);
            return None;
        }
        Some(map(entries))
    }

    /// `request`, with the fields the rules read (when a rule reads the map as a whole).
    fn request(&self) -> Boxed<'a> {
        let entries = self.reads.request_fields.iter().filter_map(|field| {
            self.request_field(field)
                .map(|value| (CelMapKey::from(*field), value))
        });
        map(entries.collect())
    }

    /// One field of `request`; a query with a repeated parameter is none, so rules reading it fail.
    fn request_field(&self, field: &str) -> Option<Boxed<'a>> {
        let f = self.facts;
        Some(match field {
            "method" => Box::new(CelString::from(f.method)),
            "path" => Box::new(CelString::from(f.path)),
            "host" => Box::new(CelString::from(f.host)),
            "segments" => list(f.path.split('/').filter(|s| !s.is_empty()).collect()),
            "headers" => headers(f.headers),
            "query" => {
                let params = crate::wire::form::parse(f.query.unwrap_or("").as_bytes()).ok()?;
                let text = |(k, v): (String, String)| {
                    (
                        CelMapKey::from(k),
                        Box::new(CelString::from(v)) as Boxed<'a>,
                    )
                };
                map(params.into_iter().map(text).collect())
            }
            _ => return None,
        })
    }
}

impl VariableResolver for Bindings<'_> {
    fn resolve<'b>(&'b self, variable: &str) -> Option<CowVal<'b, 'b>> {
        let made = match NAMES.iter().position(|v| *v == variable) {
            Some(slot) => self.made.get(slot)?.get_or_init(|| self.make(variable)),
            // `claims.tenant` by its dotted name, as CEL asks first; `claims.org.id` is not a
            // claim's name, so CEL goes on to `claims.org` and selects `id` in it
            None => {
                let name = variable
                    .strip_prefix("claims.")
                    .filter(|n| !n.contains('.'))?;
                let i = self.reads.claim_names.iter().position(|n| n == name)?;
                self.claims_by_name.get(i)?.get_or_init(|| self.claim(name))
            }
        };
        made.as_deref().map(CowVal::Borrowed)
    }
}

fn list<'a>(items: Vec<&'a str>) -> Boxed<'a> {
    let items: Vec<Boxed<'a>> = items
        .into_iter()
        .map(|s| Box::new(CelString::from(s)) as Boxed<'a>)
        .collect();
    Box::new(CelList::from(items))
}

fn map<'a>(entries: Vec<(CelMapKey<'a>, Boxed<'a>)>) -> Boxed<'a> {
    Box::new(CelMap::from(entries.into_iter().collect::<HashMap<_, _>>()))
}

/// Header names are lower-case already; a repeated header's values are joined with `, `, and a
/// value that is not text is left out.
fn headers(h: &http::HeaderMap) -> Boxed<'_> {
    let mut entries = Vec::with_capacity(h.keys_len());
    for name in h.keys() {
        let mut values = h.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let Some(first) = values.next() else { continue };
        let value: Boxed<'_> = match values.next() {
            None => Box::new(CelString::from(first)),
            Some(second) => {
                let mut all = format!("{first}, {second}");
                values.for_each(|v| {
                    all.push_str(", ");
                    all.push_str(v);
                });
                Box::new(CelString::from(all))
            }
        };
        entries.push((CelMapKey::from(name.as_str()), value));
    }
    map(entries)
}

/// Takes from `budget` the list and map entries a claim brings into the rules, at every depth;
/// false when they exceed it, found before a list past it is walked. The direct checks count by
/// the same rule, so both refuse the same claims.
pub(super) fn spend(v: &Value, budget: &mut usize) -> bool {
    let mut take = |n: usize| budget.checked_sub(n).map(|left| *budget = left).is_some();
    match v {
        Value::Array(items) => take(items.len()) && items.iter().all(|i| spend(i, budget)),
        Value::Object(fields) => take(fields.len()) && fields.values().all(|i| spend(i, budget)),
        _ => true,
    }
}

/// A claim as a CEL value, borrowing its strings; `None` past the entry budget.
fn json<'a>(v: &'a Value, budget: &mut usize) -> Option<Boxed<'a>> {
    spend(v, budget).then(|| value(v))
}

fn value(v: &Value) -> Boxed<'_> {
    match v {
        Value::Null => Box::new(CelNull),
        Value::Bool(b) => Box::new(CelBool::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Box::new(CelInt::from(i)),
            None => Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN))),
        },
        Value::String(s) => Box::new(CelString::from(s.as_str())),
        Value::Array(items) => Box::new(CelList::from(items.iter().map(value).collect::<Vec<_>>())),
        Value::Object(fields) => {
            let entries = fields
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), value(v)));
            map(entries.collect())
        }
    }
}
