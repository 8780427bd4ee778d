//! Which rule of a route refused, named as the configuration writes it (`deny_if[0]`).

/// Which key of a route's rules refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleKind {
    AllowIf,
    DenyIf,
}

/// The rule that refused a request, named as the configuration writes it (`deny_if[0]`): the
/// access log and the metrics carry it, never a value the rule read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleRef {
    pub kind: RuleKind,
    pub index: u16,
}

impl RuleRef {
    pub fn new(kind: RuleKind, index: usize) -> RuleRef {
        RuleRef {
            kind,
            index: u16::try_from(index).unwrap_or(u16::MAX),
        }
    }
}

impl std::fmt::Display for RuleRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key = match self.kind {
            RuleKind::AllowIf => "allow_if",
            RuleKind::DenyIf => "deny_if",
        };
        write!(f, "{key}[{}]", self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_is_named_by_its_key_and_index() {
        assert_eq!(RuleRef::new(RuleKind::DenyIf, 0).to_string(), "deny_if[0]");
        assert_eq!(
            RuleRef::new(RuleKind::AllowIf, 2).to_string(),
            "allow_if[2]"
        );
        assert_eq!(RuleRef::new(RuleKind::AllowIf, 70_000).index, u16::MAX);
    }
}
