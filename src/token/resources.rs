//! RFC 8707 resource indicators: the protected resources this service issues tokens for, and the
//! one resource a request may name.

use super::{oauth, OAuthError, OAuthErrorCode};
use std::collections::HashSet;

/// The resources of the configured routes that name this service as their authorization server,
/// worked out once when the service is built.
#[derive(Debug, Default)]
pub(super) struct Resources(HashSet<String>);

fn invalid_target(description: &'static str) -> OAuthError {
    oauth(400, OAuthErrorCode::InvalidTarget, description)
}

/// RFC 8707 §2: an absolute URI (it has a scheme) without a fragment.
fn well_formed(resource: &str) -> bool {
    !resource.contains('#') && url::Url::parse(resource).is_ok()
}

impl Resources {
    pub(super) fn new(known: impl IntoIterator<Item = String>) -> Resources {
        Resources(known.into_iter().collect())
    }

    /// The resource a request names, when this service issues tokens for it; `None` when the
    /// request names none. Compared exactly: a client uses the `resource` the route's metadata
    /// publishes.
    pub(super) fn check(&self, asked: Option<&str>) -> Result<Option<String>, OAuthError> {
        let Some(resource) = asked else {
            return Ok(None);
        };
        if !well_formed(resource) {
            return Err(invalid_target(
                "the resource must be an absolute URI without a fragment",
            ));
        }
        if !self.0.contains(resource) {
            return Err(invalid_target(
                "the resource is not one this service issues tokens for",
            ));
        }
        Ok(Some(resource.to_string()))
    }

    /// The resource a code exchange or a refresh goes on with: the one granted (empty: none). The
    /// request may name it again but not another (one resource can only be kept, so narrowing is
    /// equality), and it must still be configured: a resource removed since gets no new tokens.
    pub(super) fn keep(
        &self,
        granted: &str,
        asked: Option<&str>,
    ) -> Result<Option<String>, OAuthError> {
        if asked.is_some_and(|a| a != granted) {
            return Err(invalid_target(
                "the resource differs from the one that was granted",
            ));
        }
        if granted.is_empty() {
            return Ok(None);
        }
        self.check(Some(granted))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Resources {
        Resources::new(["https://gw.test/mcp".to_string()])
    }

    #[test]
    fn only_a_configured_well_formed_resource_is_accepted() {
        let r = known();
        assert_eq!(r.check(None), Ok(None));
        assert_eq!(
            r.check(Some("https://gw.test/mcp")),
            Ok(Some("https://gw.test/mcp".to_string()))
        );
        for (asked, why) in [
            ("https://gw.test/mcp/", "not one this service"),
            ("https://gw.test/other", "not one this service"),
            ("urn:example:thing", "not one this service"),
            ("https://gw.test/mcp#frag", "without a fragment"),
            ("/mcp", "absolute URI"),
            ("not a uri", "absolute URI"),
        ] {
            let e = r.check(Some(asked)).unwrap_err();
            assert_eq!((e.status, e.code), (400, OAuthErrorCode::InvalidTarget));
            assert!(e.description.contains(why), "{asked}: {}", e.description);
        }
    }

    #[test]
    fn a_granted_resource_is_kept_never_changed_or_added() {
        let r = known();
        let mcp = "https://gw.test/mcp";
        assert_eq!(r.keep(mcp, None), Ok(Some(mcp.to_string())));
        assert_eq!(r.keep(mcp, Some(mcp)), Ok(Some(mcp.to_string())));
        assert_eq!(r.keep("", None), Ok(None));
        let changed = r.keep(mcp, Some("https://gw.test/other")).unwrap_err();
        let added = r.keep("", Some(mcp)).unwrap_err();
        for e in [changed, added] {
            assert_eq!(e.code, OAuthErrorCode::InvalidTarget);
            assert!(e.description.contains("differs"), "{}", e.description);
        }
        // configured when granted, removed by a reload since
        let gone = r.keep("https://gw.test/removed", None).unwrap_err();
        assert_eq!(gone.code, OAuthErrorCode::InvalidTarget);
    }
}
