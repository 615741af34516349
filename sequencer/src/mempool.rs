//! The local mempool: moves this sequencer acked and has not packed yet.
//!
//! It is never gossiped: each sequencer packs only what its own clients sent. Moves leave in the
//! order they were acked, which keeps each sender's nonces in order across blocks because
//! ingress only admits a sender's next pending nonce, and a replacement takes the place of the
//! move it replaces.
//!
//! # Bounds and eviction
//! The mempool holds at most its capacity ([`MEMPOOL_MOVES_MAX`] by default). It never evicts:
//! every move in it was acked with a signed promise of the tick by which it will be in a block,
//! and dropping one would break that promise. When it is full, ingress refuses new moves with
//! `MempoolFull` (back-pressure: the client retries after the next tick has emptied it). A
//! replacement does not grow the mempool, so it is still considered when the mempool is full.
//!
//! # Replacement
//! A move with the sender and nonce of a move still here (acked, not yet packed) may take that
//! move's place, at the same position, if the [`ReplacementPolicy`] allows it; once a move has
//! been packed its nonce is spent for this sequencer and a move with that nonce is refused with
//! `BadNonce`, like any stale nonce.

use std::collections::{BTreeMap, HashMap};

use primitives::{Address, VerifiedTransaction, api::ReplacementRefusal};

use crate::constants::MEMPOOL_MOVES_MAX;

/// When a move may replace the unpacked move of the same sender and nonce.
///
/// With a bump of `p` percent (geth's rule for its price bump, 10 % by default), a replacement
/// must offer a gas price of at least `old + ceil(old × p / 100)`, and when `p > 0` strictly
/// more than the old price, so a zero-price (sponsored or zero-gas) move is replaced only by one
/// that pays at least 1. A bump of 0 allows a replacement at the same price or more (free
/// replacement for zero-gas games, still bounded by the sender's rate limit). The replacement
/// also passes every other admission check as a new move would, against pending state without
/// the move it replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplacementPolicy {
    /// No pending move is ever replaced.
    Never,
    /// A replacement must raise the gas price by at least this many percent.
    PriceBump {
        /// The least raise, in percent of the old gas price.
        percent: u32,
    },
}

impl Default for ReplacementPolicy {
    /// geth's default price bump.
    fn default() -> Self {
        ReplacementPolicy::PriceBump { percent: 10 }
    }
}

impl ReplacementPolicy {
    /// Whether a move priced `new_gas_price` may replace one priced `old_gas_price`.
    pub fn check(
        &self,
        old_gas_price: u128,
        new_gas_price: u128,
    ) -> Result<(), ReplacementRefusal> {
        let ReplacementPolicy::PriceBump { percent } = *self else {
            return Err(ReplacementRefusal::NotAllowed);
        };
        let raise = old_gas_price
            .saturating_mul(u128::from(percent))
            .div_ceil(100);
        let raise = if percent > 0 { raise.max(1) } else { raise };
        let min_gas_price = old_gas_price.saturating_add(raise);
        if new_gas_price < min_gas_price {
            return Err(ReplacementRefusal::Underpriced {
                min_gas_price,
                got: new_gas_price,
            });
        }
        Ok(())
    }
}

/// Acked moves waiting for the next tick.
#[derive(Debug)]
pub struct Mempool {
    /// Moves by ack position; a replacement keeps the position of the move it replaces.
    moves: BTreeMap<u64, VerifiedTransaction>,
    /// The position of each sender's move at each nonce.
    positions: HashMap<(Address, u64), u64>,
    next_position: u64,
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
            moves: BTreeMap::new(),
            positions: HashMap::new(),
            next_position: 0,
            capacity,
        }
    }

    /// Whether another move fits.
    pub fn has_room(&self) -> bool {
        self.moves.len() < self.capacity
    }

    /// Adds an acked move; the caller checked [`Mempool::has_room`] and that no move of the
    /// same sender and nonce is here.
    pub fn push(&mut self, verified: VerifiedTransaction) {
        assert!(self.has_room(), "ingress must check room before acking");
        let key = (verified.sender, verified.tx().nonce);
        let position = self.next_position;
        self.next_position += 1;
        let previous = self.positions.insert(key, position);
        assert!(previous.is_none(), "one move per sender and nonce");
        self.moves.insert(position, verified);
    }

    /// The move of `sender` at `nonce`, if it is still here.
    pub fn get(&self, sender: &Address, nonce: u64) -> Option<&VerifiedTransaction> {
        let position = self.positions.get(&(*sender, nonce))?;
        self.moves.get(position)
    }

    /// Puts `verified` in the place of the move of the same sender and nonce, which is
    /// returned; `None` (and nothing changes) if there is none.
    pub fn replace(&mut self, verified: VerifiedTransaction) -> Option<VerifiedTransaction> {
        let position = *self
            .positions
            .get(&(verified.sender, verified.tx().nonce))?;
        let slot = self
            .moves
            .get_mut(&position)
            .expect("positions and moves agree");
        Some(std::mem::replace(slot, verified))
    }

    /// Takes up to `max` moves in ack order.
    pub fn take(&mut self, max: usize) -> Vec<VerifiedTransaction> {
        let count = self.moves.len().min(max);
        let mut taken = Vec::with_capacity(count);
        while taken.len() < count {
            let (_, verified) = self.moves.pop_first().expect("counted");
            self.positions
                .remove(&(verified.sender, verified.tx().nonce));
            taken.push(verified);
        }
        taken
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

    #[test]
    fn a_replacement_keeps_its_place_and_leaves_with_it() {
        let (alice, bob) = (AccountKey::from_seed(1), AccountKey::from_seed(2));
        let mut mempool = Mempool::with_capacity(3);
        mempool.push(verified_by(&alice, 0));
        mempool.push(verified_by(&bob, 0));
        mempool.push(verified_by(&alice, 1));
        assert!(!mempool.has_room());
        let mut again = verified_by(&alice, 0).signed.tx;
        again.gas_price = 5;
        let again = again.sign(&alice).verify(1).expect("valid");
        // Full, yet a replacement fits: it takes the old move's place.
        let old = mempool
            .replace(again.clone())
            .expect("alice's nonce 0 is here");
        assert_eq!(old.tx().gas_price, 0);
        assert_eq!(mempool.len(), 3);
        assert_eq!(
            mempool.get(&alice.address(), 0).map(|m| m.hash),
            Some(again.hash)
        );
        // Nothing at a nonce not here: nothing changes.
        assert!(mempool.replace(verified_by(&bob, 7)).is_none());
        let taken = mempool.take(10);
        let order: Vec<_> = taken.iter().map(|m| (m.sender, m.tx().nonce)).collect();
        assert_eq!(
            order,
            [
                (alice.address(), 0),
                (bob.address(), 0),
                (alice.address(), 1)
            ]
        );
        assert_eq!(taken[0].hash, again.hash);
        // Once packed, the nonce is no longer here to replace.
        assert!(mempool.get(&alice.address(), 0).is_none());
        assert!(mempool.replace(again).is_none());
    }

    #[test]
    fn the_policy_asks_geths_bump_and_never_less_than_one_more() {
        let bump = ReplacementPolicy::default();
        assert_eq!(
            bump.check(100, 109),
            Err(ReplacementRefusal::Underpriced {
                min_gas_price: 110,
                got: 109
            })
        );
        assert_eq!(bump.check(100, 110), Ok(()));
        // 10 % of 15 rounds up to 2.
        assert!(bump.check(15, 16).is_err());
        assert_eq!(bump.check(15, 17), Ok(()));
        // A zero-price move is replaced only by a paying one.
        assert_eq!(
            bump.check(0, 0),
            Err(ReplacementRefusal::Underpriced {
                min_gas_price: 1,
                got: 0
            })
        );
        assert_eq!(bump.check(0, 1), Ok(()));
        let free = ReplacementPolicy::PriceBump { percent: 0 };
        assert_eq!(free.check(0, 0), Ok(()));
        assert!(free.check(3, 2).is_err());
        assert_eq!(
            ReplacementPolicy::Never.check(0, u128::MAX),
            Err(ReplacementRefusal::NotAllowed)
        );
    }
}
