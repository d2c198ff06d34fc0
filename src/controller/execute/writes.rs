//! The executor's writes to the API server: status (built by [`crate::status::next`]) and the
//! finalizer. Each is resourceVersion-checked and gated on the Lease right before it is sent.

use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serde_json::json;

use super::{Ctx, StepError};
use crate::api::{condition as cond, FloatingIP, FloatingIPStatus};
use crate::cloud::{Cloud, CloudError};
use crate::controller::plan::{has_finalizer, FINALIZER};
use crate::metrics::{FloatingIpState, Holding};
use crate::status::{conditions, next, Observed};

/// What the per-FloatingIP metrics show of `status`.
pub(super) fn exported(fip: &FloatingIP, status: &FloatingIPStatus) -> FloatingIpState {
    FloatingIpState {
        ready: conditions::is_true(&status.conditions, cond::READY),
        healthy: conditions::is_true(&status.conditions, cond::HEALTHY),
        holder: status.holder.as_ref().map(|h| Holding {
            node: h.node.clone(),
            address: fip.spec.address.clone(),
            mode: fip.spec.mode.to_string(),
        }),
    }
}

impl<C: Cloud> Ctx<C> {
    /// Writes the status `observed` calls for, when it differs from the object's; the
    /// replace carries the object's resourceVersion, so a write since it was read is a 409.
    /// A write that turns CloudError, NoCandidates or Conflict True is also a Warning Event
    /// ([`crate::controller::events::warnings`]). Returns the object as written, None when no
    /// write was due.
    pub(super) async fn write(
        &self,
        fip: &FloatingIP,
        observed: &Observed<'_>,
    ) -> Result<Option<FloatingIP>, StepError> {
        let now = Time(jiff::Timestamp::now());
        let old = fip.status.clone().unwrap_or_default();
        let Some(status) = next(&old, fip.metadata.generation, observed, &now) else {
            if self.check().is_ok() {
                self.metrics
                    .floatingip(&fip.name_any(), &exported(fip, &old));
            }
            return Ok(None);
        };
        let mut obj = fip.clone();
        obj.status = Some(status);
        self.check()?;
        let written = self
            .api()
            .replace_status(&fip.name_any(), &PostParams::default(), &obj)
            .await?;
        if let Some(new) = &obj.status {
            self.events.warn_on_change(fip, &old, new).await;
        }
        let status = written.status.clone().unwrap_or_default();
        self.metrics
            .floatingip(&written.name_any(), &exported(&written, &status));
        Ok(Some(written))
    }

    /// The CloudError condition (and `extra` ones) for a failed EC2 call.
    pub(super) async fn cloud_error(
        &self,
        fip: &FloatingIP,
        error: &CloudError,
        extra: Vec<crate::status::conditions::Desired>,
    ) -> Result<(), StepError> {
        let observed = Observed::CloudFailed { error, extra };
        self.write(fip, &observed).await.map(drop)
    }

    /// EC2 refused this FloatingIP's address: hold it back (jittered exponential), and say so
    /// on its status beside the error (and the `extra` conditions).
    pub(super) async fn refused(
        &self,
        fip: &FloatingIP,
        e: &CloudError,
        extra: Vec<crate::status::conditions::Desired>,
    ) -> Result<(), StepError> {
        let entry = {
            let mut backoffs = self.backoffs.lock().expect("backoffs lock");
            let g = fip.metadata.generation;
            backoffs.refused(&fip.name_any(), g, e).clone()
        };
        let until = entry.until_wall.as_second();
        self.metrics.backoff(&fip.name_any(), Some(until));
        tracing::warn!(floatingip = %fip.name_any(), error = %e, attempts = entry.attempts,
            until = %entry.until_wall, "EC2 refused the address; backing off");
        let mut conditions = vec![crate::controller::backoff::condition(&entry)];
        conditions.extend(extra);
        self.cloud_error(fip, e, conditions).await
    }

    pub(super) async fn ensure_finalizer(
        &self,
        fip: &Arc<FloatingIP>,
    ) -> Result<FloatingIP, StepError> {
        if has_finalizer(fip) {
            return Ok((**fip).clone());
        }
        let mut finalizers = fip.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        self.set_finalizers(fip, finalizers).await
    }

    pub(super) async fn drop_finalizer(&self, fip: &FloatingIP) -> Result<(), StepError> {
        let rest: Vec<String> = fip
            .finalizers()
            .iter()
            .filter(|f| *f != FINALIZER)
            .cloned()
            .collect();
        self.set_finalizers(fip, rest).await.map(drop)
    }

    async fn set_finalizers(
        &self,
        fip: &FloatingIP,
        finalizers: Vec<String>,
    ) -> Result<FloatingIP, StepError> {
        self.check()?;
        let rv = fip.resource_version();
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": rv}});
        let params = PatchParams::default();
        Ok(self
            .api()
            .patch(&fip.name_any(), &params, &Patch::Merge(patch))
            .await?)
    }
}
