//! PBFT messages between sequencers (over batches), the evidence of equivocation a replica
//! reports, and commit certificates.

use consensus::{Message, constants::MESSAGE_BYTES_MAX};
use primitives::{Batch, Decode, bls::Certificate, pbft::EquivocationEvidence};

use crate::codec::{assert_canonical, canonical};

/// The bytes as a consensus message over batches (through the bounded wire entry point), as
/// equivocation evidence and as a certificate.
pub fn fuzz(data: &[u8]) {
    check_message(data);
    canonical::<EquivocationEvidence>(data);
    canonical::<Certificate>(data);
}

/// What a sequencer's replica does with a peer's consensus bytes: [`Message::from_wire`], which
/// refuses more than [`MESSAGE_BYTES_MAX`] before decoding.
pub fn check_message(data: &[u8]) {
    match Message::<Batch>::from_wire(data) {
        Ok(message) => {
            assert!(data.len() <= MESSAGE_BYTES_MAX);
            assert_canonical(&message, data);
            // Accessors of a decoded message never panic.
            let _ = (message.kind(), message.sequence());
        }
        Err(_) => assert!(
            data.len() > MESSAGE_BYTES_MAX || Message::<Batch>::from_bytes(data).is_err(),
            "from_wire refused bytes that decode and are within the bound"
        ),
    }
}
