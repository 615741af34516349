//! The local mempool: moves this sequencer acked and has not packed yet.
//!
//! It is never gossiped: each sequencer packs only what its own clients sent. Moves leave in the
//! order they were acked, which keeps each sender's nonces in order across blocks because
//! ingress only admits a sender's next pending nonce. It is bounded: when full, ingress refuses.

use std::collections::VecDeque;

use primitives::VerifiedTransaction;

use crate::constants::MEMPOOL_MOVES_MAX;

/// Acked moves waiting for the next tick.
#[derive(Debug)]
pub struct Mempool {
    moves: VecDeque<VerifiedTransaction>,
    capacity: usize,
}

impl Default for Mempool {
    fn default() -> Self {
        Mempool::with_capacity(MEMPOOL_MOVES_MAX)
    }
}

impl Mempool {
    /// A mempool holding at most `capacity` moves.
    pub fn with_capacity(capacity: usize) -> Self {
        assert!(capacity > 0, "a mempool must hold at least one move");
        Mempool {
            moves: VecDeque::new(),
            capacity,
        }
    }

    /// Whether another move fits.
    pub fn has_room(&self) -> bool {
        self.moves.len() < self.capacity
    }

    /// Adds an acked move; the caller checked [`Mempool::has_room`].
    pub fn push(&mut self, verified: VerifiedTransaction) {
        assert!(self.has_room(), "ingress must check room before acking");
        self.moves.push_back(verified);
    }

    /// Takes up to `max` moves in ack order.
    pub fn take(&mut self, max: usize) -> Vec<VerifiedTransaction> {
        let count = self.moves.len().min(max);
        self.moves.drain(..count).collect()
    }

    /// Moves waiting.
    pub fn len(&self) -> usize {
        self.moves.len()
    }

    /// Whether no move waits.
    pub fn is_empty(&self) -> bool {
        self.moves.is_empty()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use primitives::{
        AccountAccess, AccountKey, Address, Bytes, SpaceAccessList, Transaction, U256,
    };

    use super::*;

    /// A verified plain move of `key`'s at `nonce` (chain id 1), for the crate's unit tests.
    pub(crate) fn verified_by(key: &AccountKey, nonce: u64) -> VerifiedTransaction {
        Transaction {
            chain_id: 1,
            nonce,
            to: key.address(),
            value: U256::ZERO,
            data: Bytes::new(),
            gas_limit: 21_000,
            gas_price: 0,
            sponsor: None,
            access_list: SpaceAccessList::new([
                AccountAccess::read(key.address()),
                AccountAccess::read(Address::ZERO),
            ]),
        }
        .sign(key)
        .verify(1)
        .expect("valid")
    }

    fn verified(nonce: u64) -> VerifiedTransaction {
        verified_by(&AccountKey::from_seed(1), nonce)
    }

    #[test]
    fn takes_in_ack_order_and_stays_bounded() {
        let mut mempool = Mempool::with_capacity(2);
        mempool.push(verified(0));
        mempool.push(verified(1));
        assert!(!mempool.has_room());
        let taken = mempool.take(1);
        assert_eq!(taken[0].tx().nonce, 0);
        assert!(mempool.has_room());
        assert_eq!(mempool.take(10).len(), 1);
        assert!(mempool.is_empty());
    }
}
