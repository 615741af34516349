//! Moves with their Space Access Lists, and the client API messages around them: what a player
//! sends a sequencer over KCP, and what a sequencer answers.

use primitives::{
    SignedTransaction, SpaceAccessList,
    api::{ClientRequest, ServerMessage},
};

use crate::codec::canonical;

/// A chain ID for signature checks; any value exercises the same paths.
const CHAIN_ID: u64 = 1;

/// The bytes as a move, a SAL, a client request and a server message.
pub fn fuzz(data: &[u8]) {
    if let Some(signed) = canonical::<SignedTransaction>(data) {
        check_move(signed);
    }
    canonical::<SpaceAccessList>(data);
    if let Some(ClientRequest::Submit(signed)) = canonical::<ClientRequest>(data) {
        check_move(signed);
    }
    canonical::<ServerMessage>(data);
}

/// A decoded move's hash is stable, and its signature check answers with a value.
fn check_move(signed: SignedTransaction) {
    let hash = signed.hash();
    assert_eq!(
        hash,
        signed.clone().hash(),
        "a move's hash is deterministic"
    );
    if let Ok(verified) = signed.clone().verify(CHAIN_ID) {
        assert_eq!(verified.tx(), &signed.tx, "verification keeps the move");
    }
}
