//! Claiming the addresses nobody holds yet, race-free against other nodes and the
//! controller: a resourceVersion-checked write of pendingMove first, then EC2, then the
//! holder.

use std::cell::Cell;
use std::net::IpAddr;
use std::time::Instant;

use backon::Retryable;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use crate::api::{FloatingIP, MoveReason, PendingMove};
use crate::cloud::{Cloud, CloudError};
use crate::nodes::{node_fitness, NodeView};
use crate::retry;
use crate::status::{next, record_arrival, Arrival, Observed, Seat};

use super::eni::EniBySubnet;
use super::{unclaimed, AttachError};

/// Claims each FloatingIP of `mine` that nobody holds, when this node is fit to hold it and
/// has an ENI in its subnet; returns the names of those it claimed. The ENI is prepared
/// whenever the node is selected, since an init container often runs before the node is
/// Ready, but only a fit node claims.
pub(super) async fn claim_unheld<C: Cloud>(
    api: &Api<FloatingIP>,
    cloud: &C,
    view: &NodeView,
    instance_id: &str,
    mine: &[&FloatingIP],
    by_subnet: &EniBySubnet,
) -> Result<Vec<String>, AttachError> {
    let me = view.name.as_str();
    let mut claimed = Vec::new();
    for f in mine
        .iter()
        .filter(|f| super::claimable_mode(f))
        .filter(|f| unclaimed(f) && node_fitness(view, &f.spec).is_ok())
    {
        let key = (
            f.spec.subnet_id.clone().unwrap_or_default(),
            f.spec.interface.unwrap_or_default(),
        );
        let Some(eni) = by_subnet.get(&key) else {
            tracing::warn!(floatingip = %f.name_any(), "no ENI of this node in the FloatingIP's subnet; not claiming");
            continue;
        };
        let seat = Seat {
            node: me.to_string(),
            instance_id: instance_id.to_string(),
            eni: eni.id.clone(),
            mac: eni.mac.clone(),
            private_ip: None,
        };
        if claim(api, cloud, f, &seat).await? {
            claimed.push(f.name_any());
        }
    }
    Ok(claimed)
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Claims an address nobody holds for `seat`: a resourceVersion-checked write of
/// pendingMove, then one AssignPrivateIpAddresses without reassignment, then the holder.
/// Returns false when another node or the controller got there first.
async fn claim<C: Cloud>(
    api: &Api<FloatingIP>,
    cloud: &C,
    fip: &FloatingIP,
    seat: &Seat,
) -> Result<bool, AttachError> {
    let Some(address) = crate::api::parse_address(&fip.spec.address) else {
        return Ok(false);
    };
    let started = Instant::now();
    let Some(claimed) = write_claim(api, fip, &seat.node).await? else {
        return Ok(false);
    };
    if !assign_and_verify(api, cloud, &fip.name_any(), seat, address).await? {
        return Ok(false);
    }
    record_holder(api, claimed, seat, address, started).await
}

/// Writes pendingMove to this node, resourceVersion-checked: the claim. None when someone
/// else claimed it first.
async fn write_claim(
    api: &Api<FloatingIP>,
    fip: &FloatingIP,
    me: &str,
) -> Result<Option<FloatingIP>, AttachError> {
    let name = fip.name_any();
    let now = Time(jiff::Timestamp::now());
    let claim = Observed::Claimed(PendingMove {
        from: None,
        to: me.to_string(),
        reason: MoveReason::Initial,
        since: now.clone(),
    });
    // Built as the controller builds its claims; written even when unchanged (the same claim
    // left by an earlier run), since the resourceVersion check is what makes it a claim.
    let old = fip.status.clone().unwrap_or_default();
    let status = next(&old, fip.metadata.generation, &claim, &now).unwrap_or(old);
    let mut obj = fip.clone();
    obj.status = Some(status);
    match api
        .replace_status(&name, &PostParams::default(), &obj)
        .await
    {
        Ok(c) => Ok(Some(c)),
        Err(e) if is_conflict(&e) => {
            tracing::info!(floatingip = %name, "someone else claimed it first");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Assigns the claimed address to the seat's ENI and reads it back; takes the claim back and
/// returns false when EC2 says it is in use elsewhere or does not show it there.
async fn assign_and_verify<C: Cloud>(
    api: &Api<FloatingIP>,
    cloud: &C,
    name: &str,
    seat: &Seat,
    address: IpAddr,
) -> Result<bool, AttachError> {
    if let Err(e) = cloud.assign_unused(&seat.eni, &[address]).await {
        drop_claim(api, name, &seat.node).await;
        if e.code == "PrivateIpAddressInUse" || e.code.starts_with("InvalidParameterValue") {
            tracing::warn!(floatingip = %name, error = %e, "the address is in use elsewhere; leaving it to the controller");
            return Ok(false);
        }
        return Err(e.into());
    }
    let eni = &seat.eni;
    let verified = retry::poll(retry::READ_BACK, None, move || async move {
        let found = cloud.enis(std::slice::from_ref(eni)).await?;
        Ok::<_, CloudError>(found.iter().any(|e| e.holds(address)).then_some(()))
    })
    .await?;
    if verified.is_none() {
        drop_claim(api, name, &seat.node).await;
        tracing::warn!(floatingip = %name, "EC2 does not show the address on this node's ENI after assigning it; leaving it to the controller");
        return Ok(false);
    }
    Ok(true)
}

/// Writes `seat` as the holder over this node's claim, reading the FloatingIP again after a
/// conflict; false when the claim was replaced before the holder was written.
async fn record_holder(
    api: &Api<FloatingIP>,
    claimed: FloatingIP,
    seat: &Seat,
    address: IpAddr,
    started: Instant,
) -> Result<bool, AttachError> {
    let name = claimed.name_any();
    let fresh = Cell::new(Some(claimed));
    let (fresh, name_ref) = (&fresh, name.as_str());
    let write = move || async move {
        let mut current = match fresh.take() {
            Some(claimed) => claimed,
            None => api.get(name_ref).await?,
        };
        let ours = current
            .status
            .as_ref()
            .and_then(|s| s.pending_move.as_ref())
            .is_some_and(|p| p.to == seat.node && p.reason == MoveReason::Initial);
        if !ours {
            tracing::warn!(floatingip = %name_ref, "the claim was replaced before the holder was written");
            return Ok(false);
        }
        let g = current.metadata.generation;
        let arrival = Arrival {
            address: &address.to_string(),
            from: None,
            to: seat,
            reason: MoveReason::Initial,
            took: started.elapsed(),
            unassigned_for: None,
            attaching: None,
        };
        let now = Time(jiff::Timestamp::now());
        record_arrival(
            current.status.get_or_insert_with(Default::default),
            &arrival,
            g,
            &now,
        );
        api.replace_status(name_ref, &PostParams::default(), &current)
            .await?;
        tracing::info!(floatingip = %name_ref, %address, eni = %seat.eni, "claimed");
        Ok(true)
    };
    let recorded = write
        .retry(retry::AFTER_CONFLICT)
        .sleep(tokio::time::sleep)
        .when(is_conflict)
        .await;
    Ok(recorded?)
}

/// Takes back a claim whose EC2 call failed, if it is still ours. Best effort: a conflict is
/// read again up to twice, any other failure leaves it to the controller.
async fn drop_claim(api: &Api<FloatingIP>, name: &str, me: &str) {
    let take_back = move || async move {
        let Ok(mut f) = api.get(name).await else {
            return Ok(());
        };
        let s = f.status.get_or_insert_with(Default::default);
        if s.pending_move.as_ref().is_none_or(|p| p.to != me) {
            return Ok(());
        }
        s.pending_move = None;
        api.replace_status(name, &PostParams::default(), &f)
            .await
            .map(drop)
    };
    let _ = take_back
        .retry(retry::AFTER_CONFLICT.with_max_times(2))
        .sleep(tokio::time::sleep)
        .when(is_conflict)
        .await;
}
