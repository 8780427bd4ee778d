//! The error codes the token service answers with (RFC 6749 §4.1.2.1 and §5.2, RFC 7009, RFC 8707,
//! OIDC Core §3.1.2.6, RFC 9449).

/// An OAuth `error` value. The JSON and redirect parameters carry `as_str`, exactly as the RFCs
/// spell it; code compares the enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnauthorizedClient,
    UnsupportedGrantType,
    UnsupportedResponseType,
    InvalidScope,
    /// RFC 8707 §2: a `resource` that is malformed or not one the service issues tokens for
    InvalidTarget,
    /// OIDC Core: `prompt=none` and nobody is signed in
    LoginRequired,
    /// RFC 9449 §5: the DPoP proof is missing where it is needed, or refused
    InvalidDpopProof,
    /// RFC 9449 §8: the DPoP proof must carry the nonce sent in `DPoP-Nonce`
    UseDpopNonce,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::LoginRequired => "login_required",
            OAuthErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            OAuthErrorCode::UseDpopNonce => "use_dpop_nonce",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl std::fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for OAuthErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::OAuthErrorCode::*;

    #[test]
    fn codes_serialise_as_the_rfcs_spell_them() {
        let all = [
            (InvalidRequest, "invalid_request"),
            (InvalidClient, "invalid_client"),
            (InvalidGrant, "invalid_grant"),
            (UnauthorizedClient, "unauthorized_client"),
            (UnsupportedGrantType, "unsupported_grant_type"),
            (UnsupportedResponseType, "unsupported_response_type"),
            (InvalidScope, "invalid_scope"),
            (InvalidTarget, "invalid_target"),
            (LoginRequired, "login_required"),
            (InvalidDpopProof, "invalid_dpop_proof"),
            (UseDpopNonce, "use_dpop_nonce"),
            (ServerError, "server_error"),
            (TemporarilyUnavailable, "temporarily_unavailable"),
        ];
        for (code, text) in all {
            assert_eq!(code.as_str(), text);
            assert_eq!(code.to_string(), text);
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
    }

    #[test]
    fn an_error_answer_carries_the_code_as_before() {
        use crate::respond::AsAnswer;
        let e = crate::token::OAuthError {
            status: 400,
            code: InvalidGrant,
            description: "the code is not valid",
            basic: false,
            retry_after: None,
            allow: None,
            dpop_nonce: None,
        };
        let body: serde_json::Value = serde_json::from_str(&e.answer().body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": "invalid_grant", "error_description": "the code is not valid"})
        );
    }
}
