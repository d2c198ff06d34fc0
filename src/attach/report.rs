//! The AttachFailed condition: on each FloatingIP whose subnet this node could not prepare.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use crate::api::condition as cond;
use crate::api::FloatingIP;
use crate::status::conditions::{self, Desired};

use super::outcome::hint;
use super::{dedicated, Summary};

/// Says on each FloatingIP whose subnet this node could not prepare why (condition
/// AttachFailed, naming the node), and sets it False on those whose subnet it did prepare.
/// Best effort: a failed write is logged, and the next attach tries again.
pub(super) async fn report_subnets(
    api: &Api<FloatingIP>,
    mine: &[&FloatingIP],
    me: &str,
    summary: &Summary,
) {
    let now = Time(jiff::Timestamp::now());
    for f in mine.iter().filter(|f| dedicated(f)) {
        let subnet = f.spec.subnet_id.as_deref().unwrap_or_default();
        let failed = summary.skipped.iter().find(|(s, _)| s == subnet);
        let mut obj = (*f).clone();
        let status = obj.status.get_or_insert_with(Default::default);
        let g = f.metadata.generation;
        let changed = match failed {
            Some((_, e)) => {
                let msg = format!(
                    "floatip attach on {me} could not prepare subnet {subnet}: {e}; {}",
                    hint(e)
                );
                let d = Desired::new(cond::ATTACH_FAILED, true, &e.code_reason(), msg);
                conditions::set(&mut status.conditions, &d, g, &now)
            }
            // Resolved (False, never removed) where it was reported; nothing to write elsewhere.
            None if conditions::is_true(&status.conditions, cond::ATTACH_FAILED) => {
                let ok = conditions::resolved(cond::ATTACH_FAILED);
                conditions::set(&mut status.conditions, &ok, g, &now)
            }
            None => false,
        };
        if changed {
            // Every status write carries every condition type.
            conditions::complete(&mut status.conditions, g, &now);
        }
        if changed {
            if let Err(e) = api
                .replace_status(&f.name_any(), &PostParams::default(), &obj)
                .await
            {
                tracing::warn!(floatingip = %f.name_any(), error = %e, "could not report the subnet on the FloatingIP");
            }
        }
    }
}
