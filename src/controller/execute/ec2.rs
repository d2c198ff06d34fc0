//! The executor's three EC2 steps, each one call to the FloatingIP's address mode
//! ([`crate::mode::Carrier`]): move a batch of addresses onto a seat, verify it there, release
//! an address from an ENI. The executor does not know which mode it moves.

use std::net::IpAddr;

use crate::api::FloatingIPSpec;
use crate::api::Mode;
use crate::cloud::{AddressMove, Cloud, CloudError, ErrorKind};
use crate::mode::{Carrier, Moved};
use crate::status::Seat;

/// The calls of `mode`. The plan places only modes this version carries out, so the error is
/// a guard that never fires, never a panic.
fn carrier<C: Cloud>(mode: Mode) -> Result<&'static dyn Carrier<C>, CloudError> {
    crate::mode::carrier::<C>(mode).ok_or_else(|| CloudError {
        action: "none",
        code: "ModeNotSupported".into(),
        message: format!("mode {mode} is not carried out by this version"),
        kind: ErrorKind::Permanent,
    })
}

/// Puts every address of `moves` on `seat`, taking them off where they are, in as few calls as
/// the mode allows (SecondaryIP: one).
/// `leading` is asked again before each later call of a move whose calls are far apart.
pub(super) async fn move_to<C: Cloud>(
    cloud: &C,
    mode: Mode,
    seat: &Seat,
    moves: &[AddressMove],
    leading: &(dyn Fn() -> bool + Send + Sync),
) -> Result<Moved, CloudError> {
    carrier(mode)?.move_gated(cloud, seat, moves, leading).await
}

/// What EC2 would refuse of a move onto `seat`, read before the move is claimed.
pub(super) async fn precheck<C: Cloud>(
    cloud: &C,
    mode: Mode,
    seat: &Seat,
) -> Result<(), CloudError> {
    carrier(mode)?.precheck(cloud, seat).await
}

/// Reads the batch back: every address on `seat` and on none of its sources.
pub(super) async fn verify<C: Cloud>(
    cloud: &C,
    mode: Mode,
    seat: &Seat,
    moves: &[AddressMove],
) -> Result<(), CloudError> {
    carrier(mode)?.verify(cloud, seat, moves).await
}

/// Takes `address` off `eni`.
pub(super) async fn release<C: Cloud>(
    cloud: &C,
    spec: &FloatingIPSpec,
    eni: &str,
    address: IpAddr,
) -> Result<(), CloudError> {
    carrier(spec.mode)?.release(cloud, spec, eni, address).await
}

/// Associates an Elastic IP where the address already is.
pub(super) async fn associate<C: Cloud>(
    cloud: &C,
    a: &crate::mode::Associate,
) -> Result<(), CloudError> {
    (cloud.associate(
        &a.allocation_id,
        &a.eni,
        a.private_ip,
        a.allow_reassociation,
    ))
    .await
}
