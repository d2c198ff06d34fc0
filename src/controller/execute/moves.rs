//! Moves onto one target ENI (of one address mode): each is confirmed against its target's
//! check, claimed in status (resourceVersion-checked) before EC2 is called, carried out in one
//! EC2 call for the whole batch, and recorded as soon as EC2 accepts it: the agent on the new
//! holder waits on that status write. The batch is read back after, and a mismatch planned
//! again at once (the claim in status names where the address must be).

use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::{ec2, Ctx, Outcome, StepError};
use crate::api::{FloatingIP, Mode, MoveReason, PendingMove};
use crate::cloud::{AddressMove, Cloud, CloudError};
use crate::mode::Moved;
use crate::status::conditions::Desired;
use crate::status::{Arrival, Observed, Seat};

/// One address moving in a batch.
pub(super) struct Claimed {
    pub fip: FloatingIP,
    pub from: Option<Seat>,
    pub to: Seat,
    pub reason: MoveReason,
    pub decided: Instant,
    /// Probed once more before the move (an unplanned one): the target must answer now.
    pub confirm: Option<crate::probe::Target>,
    /// Ready as the plan found it, written with the error if EC2 refuses the move: the
    /// holder's trouble stays visible while the move waits.
    pub ready: Desired,
}

impl Claimed {
    fn address_move(&self) -> AddressMove {
        AddressMove {
            address: crate::api::parse_address(&self.fip.spec.address).expect("validated"),
            from_eni: self.from.as_ref().map(|f| f.eni.clone()),
            allocation_id: (self.fip.spec.elastic_ip.as_ref()).map(|e| e.allocation_id.clone()),
            route_tables: self.fip.spec.route_table_ids.clone(),
        }
    }
}

impl<C: Cloud> Ctx<C> {
    /// Claims every move in the batch, moves all their addresses onto `eni` in one call,
    /// verifies, then records each move.
    pub(super) async fn move_batch(
        &self,
        mode: Mode,
        eni: &str,
        batch: Vec<Claimed>,
        out: &mut Outcome,
    ) {
        let batch = self.answering_now(batch, out).await;
        let batch = self.prechecked(mode, batch, out).await;
        let claimed = self.claim_all(batch, out).await;
        let Some(seat) = claimed.first().map(|c| c.to.clone()) else {
            return;
        };
        if (self.gate)().is_err() {
            out.retry = true;
            return;
        }
        let results = self.carry_out(mode, eni, &seat, claimed, out).await;
        let accepted: Vec<(FloatingIP, AddressMove, Moved)> = (results.iter())
            .filter_map(|(c, r)| Some((c.fip.clone(), c.address_move(), *r.as_ref().ok()?)))
            .collect();
        let mut settled = Outcome::default();
        let settles = results.into_iter().map(|(c, r)| async move {
            let mut one = Outcome::default();
            let done = self.settle(&c, r, &mut one).await;
            (c.fip.name_any(), done, one)
        });
        // The FloatingIPs as their arrival was written, for a write after the read-back.
        let mut written = std::collections::HashMap::new();
        for (name, done, one) in futures::future::join_all(settles).await {
            match done {
                Ok(Some(fip)) => drop(written.insert(name, fip)),
                Ok(None) => {}
                Err(e) => self.note_error(&name, &e, &mut settled),
            }
            settled.absorb(one);
        }
        out.absorb(settled);
        let accepted: Vec<(FloatingIP, AddressMove, Moved)> = (accepted.into_iter())
            .map(|(f, m, moved)| (written.remove(&f.name_any()).unwrap_or(f), m, moved))
            .collect();
        self.verify_after(mode, &seat, &accepted, out).await;
    }

    /// Reads the accepted moves back, after their status is written: EC2 said yes, so the agent
    /// need not wait on the read. A mismatch (EC2 answered but the address is not where it
    /// said, or still on a source) is planned again at once: status claims the target, and the
    /// next pass moves the address there from what EC2 shows.
    async fn verify_after(
        &self,
        mode: Mode,
        seat: &Seat,
        accepted: &[(FloatingIP, AddressMove, Moved)],
        out: &mut Outcome,
    ) {
        if accepted.is_empty() {
            return;
        }
        let moves: Vec<AddressMove> = accepted.iter().map(|(_, m, _)| m.clone()).collect();
        let Err(e) = ec2::verify(&self.cloud, mode, seat, &moves).await else {
            self.attached(accepted, out).await;
            return;
        };
        tracing::warn!(eni = %seat.eni, node = %seat.node, error = %e,
            "EC2 accepted the move but the read-back disagrees; planning again now");
        out.retry = true;
        out.recheck_soon = true;
        let note = format!(
            "EC2 accepted the move to {} ({}), but reading it back disagrees: {e}; planning it again",
            seat.node, seat.eni
        );
        for (fip, _, _) in accepted {
            // Best effort, as every Event: the next pass corrects whether or not it is recorded.
            let event = self.events.warning(fip, &e.code, "Verify", note.clone());
            if let Err(err) = event.await {
                tracing::warn!(error = %err, "could not publish the read-back Event");
            }
        }
    }

    /// Interface: the read-back saw each attached ENI `attached`; status says so, with how
    /// long the attach took, over the arrival's write.
    async fn attached(&self, accepted: &[(FloatingIP, AddressMove, Moved)], out: &mut Outcome) {
        for (fip, _, moved) in accepted {
            let Some(sent) = moved.attach_sent else {
                continue;
            };
            let observed = Observed::Attached {
                attach_took: sent.elapsed(),
            };
            if let Err(e) = self.write(fip, &observed).await {
                self.note_error(&fip.name_any(), &e, out);
            }
        }
    }

    /// The batch, unless the mode's reads find EC2 would refuse the move onto its target
    /// (one seat for the whole batch): then each FloatingIP gets the error, as a refused or
    /// failed move does, and nothing is claimed.
    async fn prechecked(&self, mode: Mode, batch: Vec<Claimed>, out: &mut Outcome) -> Vec<Claimed> {
        let Some(to) = batch.first().map(|c| c.to.clone()) else {
            return batch;
        };
        let Err(e) = ec2::precheck(&self.cloud, mode, &to).await else {
            return batch;
        };
        tracing::warn!(node = %to.node, error = %e, "EC2 would refuse a move there; not claiming it");
        for c in batch {
            let written = match e.retryable() {
                true => {
                    out.retry = true;
                    self.cloud_error(&c.fip, &e, vec![c.ready.clone()]).await
                }
                false => self.refused(&c.fip, &e, vec![c.ready.clone()]).await,
            };
            if let Err(err) = written {
                self.note_error(&c.fip.name_any(), &err, out);
            }
        }
        Vec::new()
    }

    /// Writes each move's claim (pendingMove) with the resourceVersion it was planned from, all
    /// at once; a move whose claim fails (409: someone wrote since) is left for the next pass.
    async fn claim_all(&self, batch: Vec<Claimed>, out: &mut Outcome) -> Vec<Claimed> {
        let now = Time(jiff::Timestamp::now());
        let claims = batch.into_iter().map(|mut c| {
            let pending = PendingMove {
                from: c.from.as_ref().map(|f| f.node.clone()),
                to: c.to.node.clone(),
                reason: c.reason,
                since: now.clone(),
            };
            async move {
                match self.write(&c.fip, &Observed::Claimed(pending)).await {
                    Ok(Some(updated)) => c.fip = updated,
                    Ok(None) => {}
                    Err(e) => return Err((c.fip.name_any(), e)),
                }
                Ok(c)
            }
        });
        let mut claimed = Vec::new();
        for r in futures::future::join_all(claims).await {
            match r {
                Ok(c) => claimed.push(c),
                Err((name, e)) => self.note_error(&name, &e, out),
            }
        }
        claimed
    }

    /// One EC2 call for the batch. EC2 refuses a whole call for one address it will not take:
    /// then each address is tried once on its own, so the good ones still move and only the
    /// bad one carries the error.
    async fn carry_out(
        &self,
        mode: Mode,
        eni: &str,
        seat: &Seat,
        claimed: Vec<Claimed>,
        out: &mut Outcome,
    ) -> Vec<(Claimed, Result<Moved, CloudError>)> {
        let moves: Vec<AddressMove> = claimed.iter().map(Claimed::address_move).collect();
        match self.assign(mode, seat, &moves, out).await {
            Err(e) if !e.retryable() && claimed.len() > 1 => {
                tracing::warn!(eni, error = %e, addresses = claimed.len(), "EC2 refused a batched move; trying each address on its own");
                let mut each = Vec::new();
                for (c, m) in claimed.into_iter().zip(moves) {
                    let one = std::slice::from_ref(&m);
                    let r = self.assign(mode, seat, one, out).await;
                    each.push((c, r));
                }
                each
            }
            r => claimed.into_iter().map(|c| (c, r.clone())).collect(),
        }
    }

    /// One assignment onto `seat`. Gated by the caller; read back after ([`Self::verify_after`]).
    async fn assign(
        &self,
        mode: Mode,
        seat: &Seat,
        moves: &[AddressMove],
        out: &mut Outcome,
    ) -> Result<Moved, CloudError> {
        out.ec2_mutations += 1;
        let gate = self.gate.clone();
        let leading = move || gate().is_ok();
        let moved = ec2::move_to(&self.cloud, mode, seat, moves, &leading).await?;
        if let Some(window) = moved.unassigned_for {
            self.metrics.unassigned_window(window.as_secs_f64());
        }
        Ok(moved)
    }

    /// After EC2 answered: record the move, or write why it did not happen (the claim stays,
    /// for the next pass or the next leader to see).
    /// Returns the FloatingIP as the arrival was written, if it was.
    async fn settle(
        &self,
        c: &Claimed,
        r: Result<Moved, CloudError>,
        out: &mut Outcome,
    ) -> Result<Option<FloatingIP>, StepError> {
        match r {
            Ok(moved) => {
                let at = Instant::now();
                self.accepted(&c.fip.name_any());
                let written = self.record_move(c, moved).await?;
                out.moved += 1;
                out.arrived.push((c.fip.name_any(), at));
                Ok(written)
            }
            Err(e) if e.retryable() => {
                out.retry = true;
                self.cloud_error(&c.fip, &e, vec![c.ready.clone()])
                    .await
                    .map(|()| None)
            }
            Err(e) => (self.refused(&c.fip, &e, vec![c.ready.clone()]).await).map(|()| None),
        }
    }

    async fn record_move(
        &self,
        c: &Claimed,
        moved: Moved,
    ) -> Result<Option<FloatingIP>, StepError> {
        let took = c.decided.elapsed();
        let from = c.from.as_ref().map(|f| f.node.clone());
        let arrival = Arrival {
            address: &c.fip.spec.address,
            from: from.clone(),
            to: &c.to,
            reason: c.reason,
            took,
            unassigned_for: moved.unassigned_for,
            attaching: moved.attach_sent.map(|_| crate::status::Attaching {
                detach_took: moved.detach_took,
            }),
        };
        let written = self.write(&c.fip, &Observed::Arrived(arrival)).await?;
        // From the decision to the status write the new holder's agent waits on.
        let took = c.decided.elapsed();
        self.metrics.moved(c.reason, took.as_secs_f64());
        self.metrics.floatingip_moved(&c.fip.name_any());
        let two_steps = moved.unassigned_for.map_or(String::new(), |w| {
            format!(
                " in two steps (UnassignIpv6Addresses, then AssignIpv6Addresses: on no ENI for {} ms)",
                w.as_millis()
            )
        });
        let note = format!(
            "moved {} from {} to {} ({}) in {} ms{two_steps}",
            c.fip.spec.address,
            from.as_deref().unwrap_or("nowhere"),
            c.to.node,
            c.reason.as_str(),
            took.as_millis()
        );
        tracing::info!(floatingip = %c.fip.name_any(), %note);
        // An Event is best effort: the move happened whether or not it is recorded.
        if let Err(e) = self.events.normal(&c.fip, "Moved", "Move", note).await {
            tracing::warn!(error = %e, "could not publish the Moved event");
        }
        Ok(written)
    }

    /// Keeps the moves whose target answers its check now: each target of an unplanned move is
    /// probed once more (in parallel, at most the check's timeout and never over 500 ms), so an
    /// address never goes to a node on evidence that went stale since the decision. A move
    /// left out is planned again shortly.
    async fn answering_now(&self, batch: Vec<Claimed>, out: &mut Outcome) -> Vec<Claimed> {
        let probes = batch.iter().map(confirm);
        let verdicts = futures::future::join_all(probes).await;
        let mut kept = Vec::new();
        for (c, verdict) in batch.into_iter().zip(verdicts) {
            match verdict {
                Ok(None) | Err(_) => kept.push(c),
                Ok(Some(why)) => {
                    tracing::info!(floatingip = %c.fip.name_any(), to = %c.to.node, why,
                        "the target did not answer right before the move; planning again");
                    out.recheck_soon = true;
                }
            }
        }
        kept
    }
}

/// Probes a move's target once: Some(why) when it does not answer.
async fn confirm(c: &Claimed) -> Result<Option<String>, String> {
    let (Some(target), Some(hc)) = (c.confirm, c.fip.spec.health_check.as_ref()) else {
        return Ok(None);
    };
    let spec = crate::probe::ProbeSpec::from_health_check(hc)?;
    let timeout = spec.timeout.min(Duration::from_millis(500));
    let payload = &spec.udp_payload;
    let answer = crate::probe::check::probe(
        target.protocol,
        target.addr,
        timeout,
        payload,
        spec.reply_required,
    )
    .await;
    Ok(answer.err().map(|failure| format!("{target}: {failure}")))
}
