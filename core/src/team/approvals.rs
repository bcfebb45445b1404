//! Two-person approval: a step that needs it publishes a request (what it covers, who asks)
//! and waits until a different account grants it from its own terminal (`opsdeck approve RUN
//! STEP`, or a key in that operator's console). Requests and grants carry their own expiry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Team, TeamError};
use crate::runbook::engine::Cover;

/// How long a grant stays valid.
pub const GRANT_TTL: Duration = Duration::from_secs(600);

/// What the requester asks a second person to approve.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub run: String,
    pub runbook: String,
    pub step: String,
    pub title: String,
    /// `account@machine`.
    pub requested_by: String,
    pub covers: Vec<Cover>,
    pub at: String,
}

/// A second person's yes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub run: String,
    pub step: String,
    /// `account@machine` of the approver.
    pub by: String,
    pub at: String,
}

/// The account part of `account@machine`.
pub fn account(operator: &str) -> &str {
    operator.rsplit_once('@').map_or(operator, |(a, _)| a)
}

impl Team {
    fn approval_key(&self, run: &str, step: &str, what: &str) -> String {
        self.key(&format!("approvals/{run}/{step}/{what}"))
    }

    /// Publishes a request (it expires with `GRANT_TTL` unless granted).
    pub async fn request_approval(&self, r: &Request) -> Result<(), TeamError> {
        let lease = self.client.grant(GRANT_TTL).await?;
        self.client
            .put(
                &self.approval_key(&r.run, &r.step, "request"),
                &serde_json::to_vec(r).unwrap_or_default(),
                Some(lease),
            )
            .await?;
        Ok(())
    }

    pub async fn approval_request(
        &self,
        run: &str,
        step: &str,
    ) -> Result<Option<Request>, TeamError> {
        Ok(self
            .client
            .get(&self.approval_key(run, step, "request"))
            .await?
            .and_then(|kv| serde_json::from_slice(&kv.value).ok()))
    }

    /// Grants a request as `by`. Refused when `by` is the requester's account.
    pub async fn grant_approval(&self, r: &Request, by: &str) -> Result<(), TeamError> {
        if account(by) == account(&r.requested_by) {
            return Err(TeamError::Etcd(super::etcd::EtcdError::Refused(format!(
                "{} asked for this approval: a second person must give it",
                account(by)
            ))));
        }
        let g = Grant {
            run: r.run.clone(),
            step: r.step.clone(),
            by: by.to_owned(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        };
        let lease = self.client.grant(GRANT_TTL).await?;
        self.client
            .put(
                &self.approval_key(&r.run, &r.step, "grant"),
                &serde_json::to_vec(&g).unwrap_or_default(),
                Some(lease),
            )
            .await?;
        Ok(())
    }

    /// A valid grant for (run, step) from someone other than `requester`, if there is one.
    pub async fn granted(
        &self,
        run: &str,
        step: &str,
        requester: &str,
    ) -> Result<Option<Grant>, TeamError> {
        let g: Option<Grant> = self
            .client
            .get(&self.approval_key(run, step, "grant"))
            .await?
            .and_then(|kv| serde_json::from_slice(&kv.value).ok());
        Ok(g.filter(|g| account(&g.by) != account(requester)))
    }

    /// Waits (watching) until a grant arrives or `wait` passes.
    pub async fn wait_for_grant(
        &self,
        run: &str,
        step: &str,
        requester: &str,
        wait: Duration,
    ) -> Result<Option<Grant>, TeamError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let rev = self.client.revision().await?;
            if let Some(g) = self.granted(run, step, requester).await? {
                return Ok(Some(g));
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let slice = left.min(Duration::from_secs(5));
            let _ = self
                .client
                .watch_once(&self.approval_key(run, step, ""), rev, slice)
                .await?;
        }
    }
}
