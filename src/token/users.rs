//! People: the credential check with lockout shared by the sign-in page and the password grant, and
//! the claims a token's scopes release.

use super::*;

/// The user's claims a token's scopes release: `email`/`email_verified` with `email`, the others (and
/// `preferred_username`) with `profile`.
pub fn released_claims<S: AsRef<str>>(
    user: &crate::config::User,
    scopes: &[S],
) -> serde_json::Map<String, Value> {
    let has = |s: &str| scopes.iter().any(|x| x.as_ref() == s);
    let mut out = serde_json::Map::new();
    for (k, v) in &user.claims {
        let is_email = k == "email" || k == "email_verified";
        if (is_email && has("email")) || (!is_email && has("profile")) {
            out.insert(k.clone(), v.clone());
        }
    }
    if has("profile") {
        out.insert("preferred_username".into(), json!(user.username));
    }
    out
}

impl TokenService {
    /// Checks a person's credentials with the lockout shared by the sign-in page and the password
    /// grant, kept per account at the real client's address and per address (behind a proxy, one
    /// person's wrong passwords must not lock out everyone else). An unknown user costs the same
    /// hash check as a known one. `via`: the way in, for the audit stream (never the password).
    pub(crate) async fn sign_in(
        &self,
        username: &str,
        password: &str,
        address: &str,
        via: &'static str,
    ) -> SignIn<'_> {
        use crate::audit::Event;
        let user_key = format!("user:{username}@{address}");
        // the audit stream names the address itself, not the counters' key for it
        let shown = crate::wire::request::Request::shown_key(address);
        if self.failures.exceeded(&user_key).await || self.failures.exceeded(address).await {
            self.audit
                .emit(|| Event::sign_in_failed(username, via, shown, "locked_out"));
            return SignIn::LockedOut;
        }
        let user = self.users.get(username);
        let hash = user
            .map(|u| u.password.clone())
            .unwrap_or_else(|| self.user_decoys.for_name(username));
        // argon2 takes tens of milliseconds: on the bounded pool, off the request threads.
        let checked =
            super::client_auth::check_secret(&self.pool, "verify password", password, &hash);
        let Ok(ok) = checked.await else {
            return SignIn::Busy;
        };
        match user.filter(|_| ok) {
            Some(u) => {
                self.audit
                    .emit(|| Event::sign_in_succeeded(username, &u.subject, via, shown));
                SignIn::User(u)
            }
            None => {
                let user_within = self.failures.hit(&user_key).await;
                let address_within = self.failures.hit(address).await;
                self.audit
                    .emit(|| Event::sign_in_failed(username, via, shown, "wrong_credentials"));
                // the failure that reaches the limit engages the lockout: said once, by the
                // failure counted at the limit exactly (more counter reads, only with an audit
                // stream)
                if self.audit.enabled()
                    && ((user_within && self.failures.exceeded(&user_key).await)
                        || (address_within && self.failures.exceeded(address).await))
                {
                    let retry_after = self.failures.retry_after();
                    self.audit
                        .emit(|| Event::lockout(username, shown, retry_after));
                }
                SignIn::Wrong
            }
        }
    }

    /// The user of this username, while they are configured and enabled.
    pub(crate) fn user_named(&self, username: &str) -> Option<&crate::config::User> {
        self.users.get(username)
    }

    /// The user whose tokens carry this `sub`, if the subject is a person.
    pub(crate) fn user_by_subject(&self, subject: &str) -> Option<&crate::config::User> {
        self.users.values().find(|u| u.subject == subject)
    }
}

impl TokenService {
    /// A local sign-in session as the user's entry says today: `None` when the user is removed or
    /// disabled (the session must end), else the session with the user's current roles and claims,
    /// so a role taken away is gone from the next request.
    pub(crate) fn current_local(
        &self,
        mut found: crate::session::Found,
    ) -> Option<crate::session::Found> {
        let user = self.user_by_subject(&found.record.subject)?;
        found.data.claims = self.local_claims(user);
        Some(found)
    }

    /// The claims a local user's session carries: their claims, roles and this issuer.
    fn local_claims(&self, user: &crate::config::User) -> serde_json::Map<String, Value> {
        let mut claims = user.claims.clone();
        claims.insert("roles".into(), serde_json::json!(user.roles));
        claims.insert("iss".into(), serde_json::json!(self.settings.issuer));
        claims
    }

    /// True when an access token of this service names a client no longer configured: a removed
    /// client's tokens stop at the edge from the reload on.
    pub(crate) fn issued_to_removed_client(&self, p: &crate::auth::principal::Principal) -> bool {
        p.issuer == self.own_issuer.id
            && !self.encoded_clients.contains(p.client_id())
            && !self.directory.may_be_open(p.client_id())
    }

    /// A session for a user who signed in here: their roles and claims, as their tokens carry them.
    pub(crate) fn local_session(
        &self,
        user: &crate::config::User,
        now: u64,
    ) -> crate::session::NewSession {
        let claims = self.local_claims(user);
        crate::session::NewSession {
            subject: user.subject.clone(),
            provider: crate::config::LoginWay::Local.to_string(),
            provider_sid: String::new(),
            data: crate::session::SessionData {
                claims,
                id_token: None,
                ..Default::default()
            },
            auth_time: now,
        }
    }
}
