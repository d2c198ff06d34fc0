//! The executor's three EC2 steps: move a batch of addresses onto a seat, verify it there,
//! release an address from an ENI. Everything mutating or reading back goes through these,
//! so that each is one call to an address mode when modes come.

use std::net::IpAddr;

use crate::cloud::{AddressMove, Cloud, CloudError, ErrorKind};
use crate::status::Seat;

/// Puts every address of `moves` on `seat`'s ENI in one call, taking them off where they are.
pub(super) async fn move_to<C: Cloud>(
    cloud: &C,
    seat: &Seat,
    moves: &[AddressMove],
) -> Result<(), CloudError> {
    cloud.assign(&seat.eni, moves).await
}

/// Reads the target and source ENIs back: every address on the target and on no source.
pub(super) async fn verify<C: Cloud>(
    cloud: &C,
    seat: &Seat,
    moves: &[AddressMove],
) -> Result<(), CloudError> {
    let eni = seat.eni.as_str();
    let mut ids = vec![eni.to_string()];
    let sources = moves.iter().filter_map(|m| m.from_eni.clone());
    ids.extend(sources.filter(|f| f != eni));
    ids.dedup();
    let enis = cloud.enis(&ids).await?;
    for m in moves {
        let on_target = enis.iter().any(|e| e.id == eni && e.holds(m.address));
        let elsewhere: Vec<&str> = enis
            .iter()
            .filter(|e| e.id != eni && e.holds(m.address))
            .map(|e| e.id.as_str())
            .collect();
        if !on_target || !elsewhere.is_empty() {
            return Err(CloudError {
                action: "DescribeNetworkInterfaces",
                code: "MoveNotVisible".into(),
                message: format!("after assigning {} to {eni}, EC2 shows it on {eni}: {on_target}, elsewhere: {elsewhere:?}", m.address),
                kind: ErrorKind::Transient,
            });
        }
    }
    Ok(())
}

/// Takes `address` off `eni`.
pub(super) async fn release<C: Cloud>(
    cloud: &C,
    eni: &str,
    address: IpAddr,
) -> Result<(), CloudError> {
    cloud.unassign(eni, &[address]).await
}
