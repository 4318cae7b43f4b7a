//! Writing this crate's events through the audit log. Every write is awaited; when the log
//! cannot record an event the operation fails with [`AccessError::AuditUnavailable`].

use std::sync::Arc;

use audit::{
    AuditLog, AuthFailureReason, AuthMethod, AuthenticationAttempt, Event, KeyAction, KeyLifecycle,
    Outcome, PatientHasher, SealedDetail,
};

use crate::error::{AccessError, Result};
use crate::principal::RequestMeta;

#[derive(Clone)]
pub(crate) struct Auditor {
    pub(crate) log: AuditLog,
    pub(crate) hasher: Arc<dyn PatientHasher>,
}

impl std::fmt::Debug for Auditor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auditor").field("log", &self.log).finish()
    }
}

impl Auditor {
    pub(crate) async fn append(&self, event: Event, detail: Option<SealedDetail>) -> Result<u64> {
        self.log
            .append_with_detail(event, detail)
            .await
            .map_err(AccessError::AuditUnavailable)
    }

    /// Records an authentication attempt. `failure` is `None` on success.
    pub(crate) async fn authentication(
        &self,
        method: AuthMethod,
        principal: Option<&str>,
        meta: &RequestMeta,
        failure: Option<AuthFailureReason>,
    ) -> Result<()> {
        let event = Event::Authentication(AuthenticationAttempt {
            method,
            principal: principal.map(str::to_owned),
            source_address: meta.source_address.clone(),
            outcome: if failure.is_none() {
                Outcome::Success
            } else {
                Outcome::Failure
            },
            failure_reason: failure,
            request_id: meta.request_id.clone(),
        });
        self.append(event, None).await.map(|_| ())
    }

    /// Records a credential lifecycle step (API key, signing key, token revocation).
    pub(crate) async fn key_lifecycle(
        &self,
        actor: &str,
        key_id: &str,
        purpose: &str,
        action: KeyAction,
    ) -> Result<()> {
        let event = Event::KeyLifecycle(KeyLifecycle {
            principal: actor.to_owned(),
            key_id: key_id.to_owned(),
            key_purpose: purpose.to_owned(),
            action,
        });
        self.append(event, None).await.map(|_| ())
    }
}
