//! What each member did for the network, per accounting epoch, as its group saw it: the moves it
//! executed with the outcome its group agreed on, the group rounds it committed (its signature
//! is on a commit certificate of the round: any member's, so that the members left out of the
//! first certificate by a faster quorum are still counted), and the state slices it shipped to
//! members of other groups.
//!
//! An accounting epoch is a fixed number of batches ([`USAGE_EPOCH_BATCHES`] by default): epoch
//! `e` holds batches `(e - 1) * n + 1 ..= e * n`. Moves and slices count in the epoch of the
//! batch they belong to; a round counts in the epoch open when it is certified (the round of an
//! epoch's last batch is certified once that batch is stored, so it counts in the next epoch),
//! which keeps an epoch closed once its last batch has run. Nodes turn these tallies into
//! signed usage and peer ledgers (the `accounting` crate); the network only counts.

use std::{collections::BTreeMap, sync::Arc};

use execution::MoveOutcome;
use primitives::{B256, NodeId};

use super::ShardNetwork;
use crate::groups::Group;

/// Batches in an accounting epoch by default: 10 s at a 10 ms tick.
pub const USAGE_EPOCH_BATCHES: u64 = 1_000;

/// Moves a group executed and rounds it certified in one epoch, per member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupService {
    /// The members, sorted by ID (the index of the two lists below).
    pub members: Arc<[NodeId]>,
    /// Moves each member executed with the outcome the group agreed on.
    pub moves: Vec<u64>,
    /// Certified rounds each member committed (its signature on some member's certificate).
    pub rounds: Vec<u64>,
}

impl GroupService {
    fn new(members: Arc<[NodeId]>) -> GroupService {
        let count = members.len();
        GroupService {
            members,
            moves: vec![0; count],
            rounds: vec![0; count],
        }
    }
}

/// Everything the members did in one epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochService {
    /// By group ID.
    pub groups: BTreeMap<B256, GroupService>,
    /// State slices shipped, by (shipping member, receiving member).
    pub slices: BTreeMap<(NodeId, NodeId), u64>,
}

impl EpochService {
    /// The moves each node executed, over all its groups.
    pub fn moves_per_node(&self) -> BTreeMap<NodeId, u64> {
        let mut moves = BTreeMap::new();
        for group in self.groups.values() {
            for (id, count) in group.members.iter().zip(&group.moves) {
                *moves.entry(*id).or_default() += *count;
            }
        }
        moves
    }
}

/// The tallies of the epochs not yet taken ([`ShardNetwork::take_service`]).
#[derive(Debug)]
pub(super) struct ServiceTally {
    epoch_batches: u64,
    epochs: BTreeMap<u64, EpochService>,
}

impl Default for ServiceTally {
    fn default() -> Self {
        ServiceTally {
            epoch_batches: USAGE_EPOCH_BATCHES,
            epochs: BTreeMap::new(),
        }
    }
}

impl ServiceTally {
    fn epoch_of(&self, batch: u64) -> u64 {
        batch.saturating_sub(1) / self.epoch_batches + 1
    }

    fn group(&mut self, epoch: u64, id: B256, members: &Arc<[NodeId]>) -> &mut GroupService {
        self.epochs
            .entry(epoch)
            .or_default()
            .groups
            .entry(id)
            .or_insert_with(|| GroupService::new(members.clone()))
    }

    /// The executing group agreed on `outcome`; `results` are its members' own, in member order.
    pub(super) fn moves(
        &mut self,
        batch: u64,
        executing: &Group,
        results: &[MoveOutcome],
        outcome: &MoveOutcome,
    ) {
        let epoch = self.epoch_of(batch);
        let group = self.group(epoch, executing.id, &executing.members);
        for (count, result) in group.moves.iter_mut().zip(results) {
            if result == outcome {
                *count += 1;
            }
        }
    }

    /// `members` at `signers` (indices into `members`) took part in a certified round.
    pub(super) fn round(
        &mut self,
        batch: u64,
        group: B256,
        members: &Arc<[NodeId]>,
        signers: impl Iterator<Item = usize>,
    ) {
        let epoch = self.epoch_of(batch);
        let service = self.group(epoch, group, members);
        for index in signers {
            if let Some(count) = service.rounds.get_mut(index) {
                *count += 1;
            }
        }
    }

    /// `shipper` shipped a slice to `receiver`.
    pub(super) fn slice(&mut self, batch: u64, shipper: NodeId, receiver: NodeId) {
        let epoch = self.epoch_of(batch);
        *self
            .epochs
            .entry(epoch)
            .or_default()
            .slices
            .entry((shipper, receiver))
            .or_default() += 1;
    }
}

impl ShardNetwork {
    /// Makes accounting epochs `batches` batches long (at least 1). Set it before the first
    /// batch: epochs already counted keep the length they had.
    pub fn set_usage_epoch_batches(&mut self, batches: u64) {
        self.service.epoch_batches = batches.max(1);
    }

    /// Batches in an accounting epoch.
    pub fn usage_epoch_batches(&self) -> u64 {
        self.service.epoch_batches
    }

    /// The accounting epoch open now: that of the next batch. Every earlier epoch is complete.
    pub fn usage_epoch(&self) -> u64 {
        self.service.epoch_of(self.last_batch + 1)
    }

    /// Takes the tallies of the epochs before `before` (normally [`ShardNetwork::usage_epoch`]:
    /// the complete ones). An epoch not taken yet keeps counting; once taken, anything still
    /// counted in it would start a new tally, so a caller takes the open epoch only when it
    /// stops counting.
    pub fn take_service(&mut self, before: u64) -> BTreeMap<u64, EpochService> {
        let open = self.service.epochs.split_off(&before);
        std::mem::replace(&mut self.service.epochs, open)
    }
}
