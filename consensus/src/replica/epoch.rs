//! Epochs: the validator set changes at a sequence fixed in advance.
//!
//! A set knows its epoch's span ([`ValidatorSet::start`], [`ValidatorSet::end`]). A replica
//! never takes a message for a sequence beyond its epoch's end (its high watermark stops
//! there), so the old set certifies the epoch's last sequence and nothing after it. The next
//! set comes from the driver ([`ReplicaInput::NextEpoch`](super::ReplicaInput::NextEpoch)),
//! read from the upper chain; once the replica has delivered the last sequence of its epoch and
//! holds the next set, it switches: every correct replica does so after the same sequence, and
//! starts the new epoch in the same view, [`epoch_first_view`], with an empty log whose low
//! watermark is the boundary and whose history chain starts again from zero. A replica that is
//! not in the new set retires (it refuses every input with [`RejectReason::Retired`]); messages
//! from a node that left are refused with [`RejectReason::LeftValidatorSet`]. A node that joins
//! starts from [`ReplicaState::joining`](crate::ReplicaState::joining).

use tracing::info;

use super::{Replica, ReplicaEvent};
use crate::{
    error::RejectReason, persist::Record, validator::ValidatorSet, validator::epoch_first_view,
    value::Value,
};

impl<V: Value> Replica<V> {
    /// The driver hands over the next epoch's set.
    pub(super) fn handle_next_epoch(&mut self, next: ValidatorSet) -> Result<(), RejectReason> {
        let bad = |why| RejectReason::BadEpoch {
            epoch: next.epoch(),
            start: next.start(),
            why,
        };
        let current = &self.validators;
        if next.epoch() != current.epoch() + 1 {
            if next.epoch() <= current.epoch()
                || self
                    .next_epoch
                    .as_ref()
                    .is_some_and(|held| held.epoch() >= next.epoch())
            {
                return Err(bad("not after the current epoch"));
            }
            return Err(bad("not the next epoch"));
        }
        let Some(end) = current.end() else {
            return Err(bad("the current epoch has no end"));
        };
        if next.start() != end {
            return Err(bad("does not start right after the current epoch's end"));
        }
        if let Some(held) = &self.next_epoch {
            return if *held == next {
                Err(RejectReason::Duplicate {
                    what: "next epoch",
                    sequence: end,
                })
            } else {
                Err(bad("another set was given for this epoch"))
            };
        }
        self.next_epoch = Some(next);
        self.maybe_enter_epoch();
        Ok(())
    }

    /// Switches to the next epoch if this replica delivered the current one's last sequence and
    /// holds the next set.
    pub(super) fn maybe_enter_epoch(&mut self) {
        if self.validators.end() != Some(self.last_committed) {
            return;
        }
        let Some(next) = self.next_epoch.take() else {
            return;
        };
        let id = self.id();
        let epoch = next.epoch();
        let start = next.start();
        self.record(|| Record::Epoch(next.clone()));
        let previous = std::mem::replace(&mut self.validators, next);
        self.previous = Some(previous);
        let member = self.validators.index_of(&id);
        self.events.push_back(ReplicaEvent::EpochEntered {
            epoch,
            start,
            member: member.is_some(),
        });
        self.reset_for_epoch(start);
        match member {
            Some(index) => {
                self.index = u16::try_from(index).expect("validator indices fit u16");
                info!(target: "consensus", replica = self.index, epoch, start,
                    n = self.validators.n(), "entered a new epoch");
            }
            None => {
                self.retired = true;
                info!(target: "consensus", epoch, start, "left the validator set");
            }
        }
    }

    /// Starts the epoch after `start` with an empty log: the first view of the epoch, the
    /// window from `start`, the history chain from zero. Decided entries stay, for peers that
    /// catch up on the previous epoch.
    pub(super) fn reset_for_epoch(&mut self, start: u64) {
        self.view = epoch_first_view(self.validators.epoch());
        self.active = true;
        self.next_sequence = start + 1;
        self.low_watermark = start;
        self.history = primitives::B256::ZERO;
        self.slots.clear();
        self.checkpoint_votes.clear();
        self.checkpoint_histories.clear();
        self.stable_proof.clear();
        self.view_changes.clear();
        self.new_view = None;
        self.future.clear();
        self.timer = None;
        self.view_change_quorum = false;
        self.views_without_progress = 0;
        self.checkpoint_claims.clear();
        self.fetch = None;
        self.peer_views.clear();
        self.stale_replies.clear();
        self.gap_fetched = None;
        self.adopted_history = None;
        self.proof_cache = crate::view_change::ProofCache::default();
    }
}
