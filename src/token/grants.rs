//! The grants: client_credentials, jwt-bearer, password, refresh rotation, and minting access tokens.

use super::request::{self, Grant, TokenRequest};
use super::*;
use crate::store::{RefreshRecord, Rotation};

impl TokenService {
    /// The scopes to grant: what was asked, each allowed; nothing asked means the defaults.
    pub(super) fn scopes(
        client: &Client,
        asked: Option<&[String]>,
    ) -> Result<Vec<String>, OAuthError> {
        match asked {
            None => Ok(client.default_scopes.clone()),
            Some(asked) => {
                if asked.iter().any(|a| !client.scopes.contains(a)) {
                    return Err(oauth(
                        400,
                        OAuthErrorCode::InvalidScope,
                        "a requested scope is not allowed for this client",
                    ));
                }
                Ok(asked.to_vec())
            }
        }
    }

    /// A request to the token endpoint from an authenticated (or identified public) client; `jkt`:
    /// the key its DPoP proof proved, which what it is issued is bound to.
    pub(super) async fn token(
        &self,
        client: &Client,
        form: &HashMap<String, String>,
        (address, jkt): (&str, Option<&str>),
    ) -> Result<Value, OAuthError> {
        let grant_type = request::grant_type(form)?;
        if !client.grant_types.contains(&grant_type) {
            return Err(oauth(
                400,
                OAuthErrorCode::UnauthorizedClient,
                "the client may not use this grant type",
            ));
        }
        if client.dpop_bound && jkt.is_none() {
            return Err(oauth(
                400,
                OAuthErrorCode::InvalidDpopProof,
                "this client's tokens are DPoP-bound: send a DPoP proof",
            ));
        }
        let req = TokenRequest::parse(grant_type, form)?;
        let asked = req.scope.as_deref();
        // Judged before any grant runs: an unknown resource uses up no code and rotates nothing.
        let resource = self.resources.check(req.resource.as_deref())?;
        let (subject, scopes) = match req.grant {
            Grant::AuthorizationCode {
                code,
                verifier,
                redirect_uri,
            } => {
                let sent = (redirect_uri.as_deref(), resource.as_deref());
                return self.code_grant(client, &code, &verifier, sent, jkt).await;
            }
            Grant::Password { username, password } => {
                let credentials = (username.as_str(), password.as_str());
                let asked = (asked, resource.as_deref());
                return self
                    .password_grant(client, credentials, asked, (address, jkt))
                    .await;
            }
            Grant::RefreshToken { refresh_token } => {
                let asked = (req.scope, resource);
                return self.refresh_grant(client, &refresh_token, asked, jkt).await;
            }
            Grant::TokenExchange(ex) => {
                let asked = (asked, resource.as_deref());
                return self.exchange_traced(client, &ex, asked).await;
            }
            Grant::JwtBearer { assertion } => {
                let scopes = Self::scopes(client, asked)?;
                (self.asserted_subject(client, &assertion).await?, scopes)
            }
            Grant::ClientCredentials => {
                let scopes = Self::scopes(client, asked)?;
                if client.public {
                    return Err(oauth(
                        400,
                        OAuthErrorCode::UnauthorizedClient,
                        "a public client cannot use client_credentials",
                    ));
                }
                (client.client_id.clone(), scopes)
            }
        };
        let grantee = Grantee {
            grant: audit_name(&grant_type),
            subject: &subject,
            resource: resource.as_deref(),
            jkt,
        };
        let (token, ttl, _) =
            self.mint(client, grantee, &scopes, &client.roles, Default::default())?;
        let mut body =
            json!({"access_token": token, "token_type": token_type(jkt), "expires_in": ttl});
        if !scopes.is_empty() {
            put(&mut body, "scope", json!(scopes.join(" ")));
        }
        Ok(body)
    }

    /// The subject a jwt-bearer assertion names, when the client may act for it.
    async fn asserted_subject(
        &self,
        client: &Client,
        assertion: &str,
    ) -> Result<String, OAuthError> {
        let claims = self.check_assertion(client, assertion, false).await?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(invalid_grant("the assertion names no subject"))?;
        if !subjects::may_assert(client, sub) {
            tracing::info!(target: "gatehouse::token", client = %client.client_id,
                "a jwt-bearer assertion named a subject the client may not act for");
            return Err(invalid_grant(
                "the client may not act for this subject (jwt_bearer_subjects)",
            ));
        }
        Ok(sub.to_string())
    }
    /// Signs an RFC 9068 access token for a subject; its `aud` is the resource asked for (RFC 8707),
    /// else the client's audience; a proven key binds it (`cnf.jkt`, RFC 9449 §6.1).
    pub(crate) fn mint(
        &self,
        client: &Client,
        grantee: Grantee<'_>,
        scopes: &[String],
        roles: &[String],
        extra: serde_json::Map<String, Value>,
    ) -> Result<(String, u64, String), OAuthError> {
        let key = self.keys.current().ok_or(no_signing_key())?;
        let now = self.clock.now_secs();
        let ttl = self.settings.access_token_ttl.as_secs();
        let jti = random_token(16).map_err(no_randomness)?;
        let mut header = jsonwebtoken::Header::new(key.alg);
        header.typ = Some("at+jwt".into());
        header.kid = Some(key.kid.clone());
        // RFC 8707 §2: a token asked for a resource is for that resource alone.
        let (subject, resource) = (grantee.subject, grantee.resource);
        let aud = match (resource, client.audience.as_slice()) {
            (Some(r), _) => json!(r),
            (None, [one]) => json!(one),
            (None, many) => json!(many),
        };
        let mut claims = json!({
            "iss": self.settings.issuer,
            "sub": subject,
            "aud": aud,
            "exp": now + ttl,
            "iat": now,
            "jti": jti,
            "client_id": client.client_id,
        });
        if !scopes.is_empty() {
            put(&mut claims, "scope", json!(scopes.join(" ")));
        }
        if !roles.is_empty() {
            put(&mut claims, "roles", json!(roles));
        }
        if let Some(jkt) = grantee.jkt {
            put(&mut claims, "cnf", json!({ "jkt": jkt }));
        }
        // A user's claims the scopes allow, never overriding the token's own; only an earlier
        // `exp` may replace the service's, so an exchanged token ends with the token it replaced.
        for (k, v) in extra {
            let sooner = k == "exp" && v.as_u64().is_some_and(|e| e < now + ttl);
            if sooner || claims.get(&k).is_none() {
                put(&mut claims, k, v);
            }
        }
        let token = key.sign(&header, &claims).map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            oauth(
                500,
                OAuthErrorCode::ServerError,
                "the token could not be signed",
            )
        })?;
        self.issued
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.audit.emit(|| {
            crate::audit::Event::token_issued(&crate::audit::Issue {
                grant: grantee.grant,
                client_id: &client.client_id,
                subject,
                scopes,
                audience: claims.get("aud").unwrap_or(&Value::Null),
                jti: &jti,
                expires_in: ttl,
                dpop_bound: grantee.jkt.is_some(),
            })
        });
        Ok((token, ttl, jti))
    }

    /// The legacy resource-owner password grant, for clients that list it: the user's credentials
    /// are checked against `[[users]]`, with a lockout per user and per address.
    pub(super) async fn password_grant(
        &self,
        client: &Client,
        (username, password): (&str, &str),
        (asked, resource): (Option<&[String]>, Option<&str>),
        (address, jkt): (&str, Option<&str>),
    ) -> Result<Value, OAuthError> {
        let scopes = Self::scopes(client, asked)?;
        let user = match self
            .sign_in(username, password, address, "password_grant")
            .await
        {
            SignIn::User(u) => u,
            SignIn::LockedOut => {
                return Err(OAuthError {
                    retry_after: Some(self.failures.retry_after()),
                    ..oauth(
                        400,
                        OAuthErrorCode::InvalidGrant,
                        "too many failed sign-ins for this user or address; try again later",
                    )
                })
            }
            SignIn::Wrong => {
                tracing::info!(target: "gatehouse::token", client = %client.client_id, "password sign-in failed");
                return Err(invalid_grant("the username or password is wrong"));
            }
            SignIn::Busy => return Err(busy()),
        };
        let grantee = Grantee {
            grant: "password",
            subject: &user.subject,
            resource,
            jkt,
        };
        self.issue_for_user(client, grantee, &scopes, &user.roles, Family::New)
            .await
            .map(|(body, _)| body)
    }

    /// An access token for a user (for `resource` when one was asked), and a new refresh-token
    /// family, bound to that resource, when the client may refresh and `Family::New` is asked. A
    /// public client's family is bound to the DPoP key too (RFC 9449 §5).
    pub(super) async fn issue_for_user(
        &self,
        client: &Client,
        grantee: Grantee<'_>,
        scopes: &[String],
        roles: &[String],
        family: Family<'_>,
    ) -> Result<(Value, Issued), OAuthError> {
        let (subject, resource) = (grantee.subject, grantee.resource);
        let extra = self
            .user_by_subject(subject)
            .map(|u| released_claims(u, scopes))
            .unwrap_or_default();
        let (token, ttl, jti) = self.mint(client, grantee, scopes, roles, extra)?;
        let mut issued = Issued {
            jti,
            exp: self.clock.now_secs() + ttl,
            family: String::new(),
        };
        let mut body = json!({"access_token": token, "token_type": token_type(grantee.jkt), "expires_in": ttl});
        if !scopes.is_empty() {
            put(&mut body, "scope", json!(scopes.join(" ")));
        }
        if let Family::Continue(f) = family {
            issued.family = f.to_string();
        } else if matches!(family, Family::New)
            && client.grant_types.contains(&GrantType::RefreshToken)
        {
            let now = self.clock.now_secs();
            let refresh = random_token(32).map_err(no_randomness)?;
            let family_expires_at = now + self.settings.refresh_token_ttl.as_secs();
            issued.family = random_token(16).map_err(no_randomness)?;
            let rec = RefreshRecord {
                hash: sha256_hex(&refresh),
                family: issued.family.clone(),
                client_id: client.client_id.clone(),
                subject: subject.to_string(),
                scopes: scopes.join(" "),
                resource: resource.unwrap_or_default().to_string(),
                // a confidential client's refresh token is bound by its authentication instead
                jkt: match client.public {
                    true => grantee.jkt.unwrap_or_default().to_string(),
                    false => String::new(),
                },
                expires_at: family_expires_at,
                family_expires_at,
            };
            // Stored before the answer: a refresh token the client holds always exists.
            run_blocking(&self.store, move |s| s.put_refresh(&rec))
                .await
                .map_err(|_| unavailable())?;
            put(&mut body, "refresh_token", json!(refresh));
        }
        if !issued.family.is_empty() {
            // Revoking the family later revokes this access token too, at the edge at once.
            let (f, j, e) = (issued.family.clone(), issued.jti.clone(), issued.exp);
            run_blocking(&self.store, move |s| s.family_token(&f, &j, e))
                .await
                .map_err(|_| unavailable())?;
        }
        Ok((body, issued))
    }

    /// Refresh-token rotation: each refresh token works once; presenting a used one revokes its family.
    /// The successor keeps the family's resource and DPoP key; a refresh may name the resource
    /// again, never another, and a bound family's refresh must prove its key.
    pub(super) async fn refresh_grant(
        &self,
        client: &Client,
        presented: &str,
        (asked, resource): (Option<Vec<String>>, Option<String>),
        jkt: Option<&str>,
    ) -> Result<Value, OAuthError> {
        let now = self.clock.now_secs();
        let next = random_token(32).map_err(no_randomness)?;
        let (old, new_hash, client_id) = (
            sha256_hex(presented),
            sha256_hex(&next),
            client.client_id.clone(),
        );
        let (wanted, resources) = (asked.clone(), self.resources.clone());
        let proved = jkt.map(str::to_string);
        let rotation = run_blocking(&self.store, move |s| {
            let current = s.active_refresh(&old, now)?;
            // Scope, resource and key are checked before rotating: a refused refresh leaves the
            // token usable.
            if let Some(rec) = &current {
                let fits = refresh_fits(rec, wanted.as_deref(), resource.as_deref(), &resources)
                    .and_then(|_| same_key(rec, proved.as_deref()));
                if let Err(e) = fits {
                    return Ok(Err(e));
                }
            }
            // The family's end bounds every successor, however often it rotates.
            let family_end = current.map(|r| r.family_expires_at).unwrap_or(now);
            s.rotate_refresh(&old, &client_id, &new_hash, family_end, now)
                .map(Ok)
        })
        .await
        .map_err(|_| unavailable())??;
        let rec = match rotation {
            Rotation::Rotated(rec) => rec,
            Rotation::Reused { family } => {
                tracing::warn!(target: "gatehouse::token", client = %client.client_id,
                    "a rotated refresh token was presented again; its family is revoked");
                let revoked = self.revoke_family(family).await?;
                self.audit
                    .emit(|| crate::audit::Event::refresh_reused(&client.client_id, revoked));
                return Err(invalid_grant(
                    "the refresh token was already used; its family is revoked",
                ));
            }
            Rotation::Invalid => return Err(invalid_grant("the refresh token is not valid")),
        };
        // Every family belongs to a user who signed in here; one removed or disabled since ends
        // with it, and the roles are the user's today.
        let Some(user) = self.user_by_subject(&rec.subject) else {
            tracing::info!(target: "gatehouse::token", client = %client.client_id,
                "a refresh for a user no longer configured; its family is revoked");
            self.revoke_family(rec.family).await?;
            return Err(invalid_grant("the refresh token's user no longer exists"));
        };
        let scopes = asked.unwrap_or_else(|| split_scopes(&rec.scopes));
        let roles = user.roles.clone();
        let grantee = Grantee {
            grant: "refresh_token",
            subject: &rec.subject,
            resource: non_empty(&rec.resource),
            jkt,
        };
        let (mut body, issued) = self
            .issue_for_user(
                client,
                grantee,
                &scopes,
                &roles,
                Family::Continue(&rec.family),
            )
            .await?;
        self.audit.emit(|| {
            crate::audit::Event::refresh_rotated(&client.client_id, &rec.subject, &issued.jti)
        });
        put(&mut body, "refresh_token", json!(next));
        Ok(body)
    }
}

/// Whether a refresh asks only for what its family was granted: no scope beyond the family's, and
/// its resource, which must still be configured.
fn refresh_fits(
    rec: &RefreshRecord,
    scopes: Option<&[String]>,
    resource: Option<&str>,
    resources: &super::resources::Resources,
) -> Result<(), OAuthError> {
    if let Some(asked) = scopes {
        let granted = split_scopes(&rec.scopes);
        if asked.iter().any(|a| !granted.contains(a)) {
            return Err(oauth(
                400,
                OAuthErrorCode::InvalidScope,
                "a refresh cannot widen the granted scopes",
            ));
        }
    }
    resources.keep(&rec.resource, resource).map(|_| ())
}

/// A DPoP-bound family (a public client's) refreshes only with a proof of its key (RFC 9449 §5).
fn same_key(rec: &RefreshRecord, proved: Option<&str>) -> Result<(), OAuthError> {
    match (non_empty(&rec.jkt), proved) {
        (None, _) => Ok(()),
        (Some(bound), Some(p)) if bound == p => Ok(()),
        (Some(_), Some(_)) => Err(oauth(
            400,
            OAuthErrorCode::InvalidDpopProof,
            "the refresh token is bound to another DPoP key",
        )),
        (Some(_), None) => Err(oauth(
            400,
            OAuthErrorCode::InvalidDpopProof,
            "the refresh token is DPoP-bound: send a DPoP proof of its key",
        )),
    }
}

/// How the audit stream names the grants `token` answers itself.
fn audit_name(grant: &GrantType) -> &'static str {
    match grant {
        GrantType::JwtBearer => "jwt_bearer",
        _ => "client_credentials",
    }
}

/// A stored text that is empty when there is none, as an option.
pub(super) fn non_empty(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}
