//! What an operator does to the token service from the console: revoke one access token by its id,
//! a refresh family, or a subject's tokens; list and delete registered clients.

use super::*;
use crate::store::{run_blocking, RegisteredClient, StoreError};

impl TokenService {
    /// Revokes one of this service's access tokens by its `jti`, at the edge at once and in the
    /// store (so every gateway sharing it refuses the token), until the longest such a token lives.
    pub(crate) async fn revoke_jti(&self, jti: &str) -> Result<(), StoreError> {
        let exp = self.clock.now_secs() + self.settings.access_token_ttl.as_secs() + self.leeway;
        let j = jti.to_string();
        run_blocking(&self.store, move |s| s.revoke(&j, exp)).await?;
        self.revocations.add(jti, exp);
        Ok(())
    }

    /// Revokes a refresh family by its id and the access tokens issued from it; how many access
    /// tokens that was.
    pub(crate) async fn revoke_family_by_operator(
        &self,
        family: &str,
    ) -> Result<usize, StoreError> {
        self.revoke_family(family.to_string())
            .await
            .map_err(|_| StoreError::Unavailable("the store cannot be reached".into()))
    }

    /// The clients that registered themselves, oldest first.
    pub(crate) async fn registered_clients(&self) -> Result<Vec<RegisteredClient>, StoreError> {
        run_blocking(&self.store, |s| s.registered_clients()).await
    }

    /// Deletes a registered client: its next request is an unknown client's, here at once and on
    /// other gateways within their short cache of registered clients.
    pub(crate) async fn delete_registered(&self, client_id: &str) -> Result<bool, StoreError> {
        let id = client_id.to_string();
        let removed = run_blocking(&self.store, move |s| s.remove_client(&id)).await?;
        self.directory.forget(client_id).await;
        Ok(removed)
    }

    /// Disables (or enables again) a registered client: a disabled one is an unknown client to the
    /// token endpoint, here at once and on other gateways within their short cache; tokens it
    /// already has live out their time. False when there is no such client.
    pub(crate) async fn set_registered_disabled(
        &self,
        client_id: &str,
        disabled: bool,
    ) -> Result<bool, StoreError> {
        let id = client_id.to_string();
        let changed = run_blocking(&self.store, move |s| {
            let Some(mut c) = s.registered_client(&id)? else {
                return Ok(false);
            };
            c.disabled = disabled;
            s.put_client(&c)?;
            Ok(true)
        })
        .await?;
        self.directory.forget(client_id).await;
        Ok(changed)
    }

    /// Clears the lockout of a user (`who` a username) or a client (`client` true) at an address,
    /// and the address's own count for people; false when the shared counters could not be
    /// reached.
    pub(crate) async fn clear_lockout(&self, who: &str, address: &str, client: bool) -> bool {
        let key = if client {
            Self::lockout_key(who, &format!("ip:{address}"))
        } else {
            format!("user:{who}@ip:{address}")
        };
        let mut ok = self.failures.clear(&key).await;
        if !client {
            ok &= self.failures.clear(&format!("ip:{address}")).await;
        }
        ok
    }
}
