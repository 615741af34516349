//! Local nonce bookkeeping for one account, so that a game sends its next move without waiting
//! for the last ack.
//!
//! A sequencer admits an account's moves in nonce order and refuses a move whose nonce is not
//! the next one in its pending state; a refused move consumes nothing. So when a move in flight
//! is refused, every later move of the account already sent is refused too (with `BadNonce`,
//! naming the refused nonce as expected), and the next move sent must reuse the refused nonce.
//! This core tracks the nonces in flight to rewind exactly once per refusal: the refusals that
//! follow from the first are recognized as its consequences and move nothing.
//!
//! Sans-IO: no clock, no socket; the owner reports sends, acks and refusals.

use std::collections::{BTreeMap, HashSet};

use primitives::{TxHash, api::Refusal};

/// The nonces of one account: the next to assign and the moves in flight (sent, not acked).
#[derive(Clone, Debug, Default)]
pub struct NonceTracker {
    next: u64,
    in_flight: BTreeMap<u64, TxHash>,
    /// Moves sent after a refused one: the sequencer refuses them too, and those refusals are
    /// already accounted for.
    doomed: HashSet<TxHash>,
}

impl NonceTracker {
    /// A tracker whose next nonce is `next` (the account's pending nonce at the sequencer).
    pub fn new(next: u64) -> Self {
        NonceTracker {
            next,
            ..NonceTracker::default()
        }
    }

    /// The nonce the next move will take.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Takes the next nonce for a move about to be signed.
    pub fn allocate(&mut self) -> u64 {
        let nonce = self.next;
        self.next += 1;
        nonce
    }

    /// The move signed with `nonce` (from [`allocate`](Self::allocate)) was sent as `hash`.
    pub fn sent(&mut self, nonce: u64, hash: TxHash) {
        self.in_flight.insert(nonce, hash);
    }

    /// The sequencer acked `hash`: its nonce is spent.
    pub fn acked(&mut self, nonce: u64, hash: &TxHash) {
        if self.in_flight.get(&nonce) == Some(hash) {
            self.in_flight.remove(&nonce);
        }
    }

    /// Whether `hash` was sent after a refused move of the account, so that its own refusal
    /// is a consequence of that one.
    pub fn is_doomed(&self, hash: &TxHash) -> bool {
        self.doomed.contains(hash)
    }

    /// Moves in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The sequencer refused `hash`, sent with `nonce`. Rewinds the next nonce to the first one
    /// the sequencer will take, and returns whether this refusal moved it (`false` for the
    /// refusals that follow from an earlier one).
    pub fn refused(&mut self, nonce: u64, hash: &TxHash, refusal: &Refusal) -> bool {
        if self.doomed.remove(hash) {
            return false;
        }
        if self.in_flight.get(&nonce) == Some(hash) {
            self.in_flight.remove(&nonce);
        }
        match refusal {
            // The nonce was spent already (by another device of the account, or a move this
            // client lost track of): the sequencer says where the account stands.
            Refusal::BadNonce { expected, got } if expected > got => {
                self.doom_from(*expected);
                let moved = *expected != self.next;
                self.next = *expected;
                moved
            }
            Refusal::BadNonce { expected, .. } => self.rewind(*expected),
            _ => self.rewind(nonce),
        }
    }

    /// Every move in flight from `nonce` on will be refused: they are marked, and the next move
    /// takes `nonce`.
    fn rewind(&mut self, nonce: u64) -> bool {
        if nonce >= self.next {
            return false;
        }
        self.doom_from(nonce);
        self.next = nonce;
        true
    }

    fn doom_from(&mut self, nonce: u64) {
        let later = self.in_flight.split_off(&nonce);
        self.doomed.extend(later.into_values());
    }
}

#[cfg(test)]
mod tests {
    use primitives::B256;

    use super::*;

    fn hash(nonce: u64) -> TxHash {
        B256::left_padding_from(&nonce.to_be_bytes())
    }

    /// Sends a move; `salt` tells apart two moves signed with one nonce.
    fn send(tracker: &mut NonceTracker, salt: u8) -> (u64, TxHash) {
        let nonce = tracker.allocate();
        let mut hash = hash(nonce);
        hash.0[0] = salt;
        tracker.sent(nonce, hash);
        (nonce, hash)
    }

    #[test]
    fn pipelined_moves_take_consecutive_nonces_without_waiting_for_acks() {
        let mut tracker = NonceTracker::new(5);
        let moves: Vec<_> = (0..4).map(|_| send(&mut tracker, 0)).collect();
        assert_eq!(
            moves.iter().map(|(nonce, _)| *nonce).collect::<Vec<_>>(),
            [5, 6, 7, 8]
        );
        for (nonce, hash) in &moves {
            tracker.acked(*nonce, hash);
        }
        assert_eq!(tracker.in_flight(), 0);
        assert_eq!(tracker.allocate(), 9);
    }

    #[test]
    fn a_refusal_rewinds_once_and_its_consequences_move_nothing() {
        let mut tracker = NonceTracker::new(0);
        let moves: Vec<_> = (0..4).map(|_| send(&mut tracker, 0)).collect();
        tracker.acked(moves[0].0, &moves[0].1);
        // Move 1 is refused; 2 and 3 were sent behind it and are refused as consequences.
        assert!(tracker.refused(1, &moves[1].1, &Refusal::RateLimited));
        assert_eq!(tracker.next(), 1);
        // The game sends again at once, before the consequences arrive.
        let (again, again_hash) = send(&mut tracker, 1);
        assert_eq!(again, 1);
        let consequence = Refusal::BadNonce {
            expected: 1,
            got: 2,
        };
        assert!(!tracker.refused(2, &moves[2].1, &consequence));
        assert!(!tracker.refused(3, &moves[3].1, &consequence));
        assert_eq!(tracker.next(), 2, "the new move 1 keeps its nonce");
        tracker.acked(again, &again_hash);
        assert_eq!(tracker.allocate(), 2);
    }

    #[test]
    fn a_nonce_spent_elsewhere_moves_the_account_forward() {
        let mut tracker = NonceTracker::new(3);
        let (nonce, hash) = send(&mut tracker, 0);
        let (_, later) = send(&mut tracker, 0);
        assert!(tracker.refused(
            nonce,
            &hash,
            &Refusal::BadNonce {
                expected: 10,
                got: 3
            }
        ));
        assert_eq!(tracker.next(), 10);
        assert!(!tracker.refused(
            4,
            &later,
            &Refusal::BadNonce {
                expected: 10,
                got: 4
            }
        ));
        assert_eq!(tracker.allocate(), 10);
        // A refusal of a nonce not assigned yet moves nothing.
        assert!(!tracker.refused(12, &super::tests::hash(12), &Refusal::MempoolFull));
        assert_eq!(tracker.next(), 11);
    }
}
