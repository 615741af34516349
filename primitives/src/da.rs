//! What strong DA and the upper chain must agree on: the message a DA node signs to attest
//! that it holds its verified chunk of a payload. `da-strong` signs and aggregates it; the
//! upper chain checks availability certificates over it before recording a commitment.

use crate::B256;

/// Domain tag of availability attestations, so that an attestation can never be replayed as a
/// vote of another Tickrate protocol signed with the same kind of key.
pub const AVAILABILITY_DOMAIN: &[u8] = b"tickrate/da/available/v1";

/// The bytes every DA node signs to attest it holds its verified chunk of `commitment`.
pub fn availability_message(commitment: &B256) -> Vec<u8> {
    let mut message = Vec::with_capacity(AVAILABILITY_DOMAIN.len() + 32);
    message.extend_from_slice(AVAILABILITY_DOMAIN);
    message.extend_from_slice(commitment.as_slice());
    message
}
