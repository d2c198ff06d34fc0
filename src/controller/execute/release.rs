//! A FloatingIP being deleted: its address off every ENI that holds it, then its finalizer.

use std::net::IpAddr;

use kube::ResourceExt;

use super::{ec2, Ctx, Outcome, StepError};
use crate::api::FloatingIP;
use crate::cloud::Cloud;
use crate::controller::plan::has_finalizer;

impl<C: Cloud> Ctx<C> {
    pub(super) async fn release(
        &self,
        fip: &FloatingIP,
        address: IpAddr,
        from: &[String],
        out: &mut Outcome,
    ) -> Result<(), StepError> {
        if !has_finalizer(fip) {
            return Ok(());
        }
        for eni in from {
            self.check()?;
            out.ec2_mutations += 1;
            if let Err(e) = ec2::release(&self.cloud, &fip.spec, eni, address).await {
                out.retry |= e.retryable();
                return self.cloud_error(fip, &e, vec![]).await;
            }
            tracing::info!(floatingip = %fip.name_any(), %address, eni, "released the address");
        }
        self.drop_finalizer(fip).await
    }
}
