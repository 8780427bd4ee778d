//! The CEL environment route rules run in: the standard library plus `ip_in` and `glob`.

use crate::wire::forwarded::Cidr;
use cel::common::types::{CelBool, CelString, STRING_TYPE};
use cel::common::value::{CowVal, Val};
use cel::{Env, ExecutionError};
use std::net::IpAddr;

/// The functions the gateway adds to standard CEL, each taking two strings.
pub const HELPERS: [&str; 2] = ["ip_in", "glob"];

/// The standard library without the optional-value syntax, with the two helpers. Built once per
/// configuration generation and shared by every rule and every request.
pub fn env() -> Result<Env, cel::DeclarationError> {
    let mut env = Env::stdlib().with_optional_support(false);
    env.add_overload(
        "ip_in",
        "ip_in_string_string",
        vec![STRING_TYPE, STRING_TYPE],
        |args| {
            let (ip, cidr) = two_strings("ip_in", &args)?;
            Ok(CowVal::owned(CelBool::from(ip_in(ip, cidr))))
        },
    )?;
    env.add_overload(
        "glob",
        "glob_string_string",
        vec![STRING_TYPE, STRING_TYPE],
        |args| {
            let (text, pattern) = two_strings("glob", &args)?;
            Ok(CowVal::owned(CelBool::from(glob(pattern, text))))
        },
    )?;
    Ok(env)
}

fn two_strings<'a>(
    f: &str,
    args: &'a [CowVal<'_, '_>],
) -> Result<(&'a str, &'a str), ExecutionError> {
    let text = |i: usize| -> Result<&'a str, ExecutionError> {
        args.get(i)
            .and_then(|v| v.downcast_ref::<CelString>())
            .map(|s| s.inner())
            .ok_or_else(|| ExecutionError::function_error(f, "takes two strings"))
    };
    Ok((text(0)?, text(1)?))
}

/// `ip_in(ip, "10.0.0.0/8")`: the address lies in the block. An address or block that does not
/// parse is not in it (the block of a literal is checked when the configuration loads).
pub fn ip_in(ip: &str, cidr: &str) -> bool {
    match (ip.parse::<IpAddr>(), Cidr::parse(cidr)) {
        (Ok(ip), Ok(block)) => block.contains(ip),
        _ => false,
    }
}

/// `*` matches any run of characters (none included); everything else matches itself. Linear in
/// the text for each `*`, never backtracking.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(at) => rest = rest.get(at + p.len()..).unwrap_or_default(),
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether a value is true: a rule's result that is not a bool is no answer.
pub fn is_true(v: &dyn Val) -> Option<bool> {
    v.downcast_ref::<CelBool>().map(|b| *b.inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_in_reads_v4_v6_and_mapped_addresses() {
        assert!(ip_in("10.1.2.3", "10.0.0.0/8"));
        assert!(!ip_in("11.1.2.3", "10.0.0.0/8"));
        assert!(ip_in("2001:db8::1", "2001:db8::/32"));
        assert!(ip_in("::ffff:10.0.0.1", "10.0.0.0/8"));
        assert!(ip_in("192.0.2.7", "192.0.2.7"));
        assert!(!ip_in("", "10.0.0.0/8"), "no address is in no block");
        assert!(
            !ip_in("10.0.0.1", "10.0.0.0/33"),
            "a bad block holds nothing"
        );
    }

    #[test]
    fn glob_stars_match_any_run() {
        assert!(glob("a/*", "a/b/c"));
        assert!(glob("a/*", "a/"));
        assert!(!glob("a/*", "b/a"));
        assert!(glob("*.pdf", "x.pdf"));
        assert!(glob("/t/*/x", "/t/acme/x"));
        assert!(!glob("/t/*/x", "/t/acme/y"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("ab*ba", "aba"), "the parts may not overlap");
    }
}
