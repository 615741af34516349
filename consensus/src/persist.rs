//! What a replica must not forget across a crash, as records the core emits and a state the
//! records fold into.
//!
//! The core stays sans-IO, as raft-rs's `Ready` does: a durable replica (one built with
//! [`Replica::restore`](crate::Replica::restore)) queues a [`Record`] for everything it promises
//! before it sends the message that promises it, and the driver drains them with
//! [`Replica::poll_persist`](crate::Replica::poll_persist) **before** it drains
//! [`poll_transmit`](primitives::machine::Machine::poll_transmit) and
//! [`poll_event`](primitives::machine::Machine::poll_event), and makes them durable (written and
//! synced) before sending any of those transmits or acting on any of those events. Records fold
//! into a [`ReplicaState`] ([`ReplicaState::apply`]), from which a restarted replica continues;
//! [`crate::store`] keeps them in an append-only file.
//!
//! # What is recorded, and why that is enough
//! - [`Record::ViewChange`]: the view change this replica sends to leave its view, written
//!   before it goes out, so a restarted replica never votes again in a view it asked to leave
//!   (its view change claimed it prepared nothing more there), and can still hand its view
//!   change for an earlier view to a replica stuck in that view. [`Record::View`]: the view it
//!   entered.
//! - [`Record::Proposal`]: the pre-prepare this replica stands behind at a sequence of its
//!   current view: its own proposal as primary (before the pre-prepare goes out), or the one it
//!   prepares as a backup (before its prepare goes out). A restarted replica refuses any other
//!   pre-prepare for that slot, and a restarted primary never assigns the sequence again.
//! - [`Record::Prepared`]: the proof that it prepared a value, written before its commit goes
//!   out. It implies the commit (in the proof's view) and is what its view changes carry, so a
//!   value that may have been decided is never lost by a restart.
//! - [`Record::Decided`]: a decided entry, written before the owner hears of it: the committed
//!   sequence, the history chain and the entries kept for peers that fall behind.
//! - [`Record::Stable`]: a stable checkpoint with its proof; everything at or below it folds away.
//!
//! Votes are not recorded one by one: BLS signatures are deterministic, so the replica re-signs
//! its prepare or commit from the recorded pre-prepare or proof and gets the same bytes.

use std::collections::BTreeMap;

use primitives::{B256, Decode, DecodeError, Decoder, Encode, codec::put_list};

use crate::{
    constants::{CHECKPOINT_INTERVAL, DECIDED_RETAINED, SEQUENCE_WINDOW},
    log::chain_history,
    message::{Checkpoint, DecidedEntry, PrePrepare, PreparedProof, ViewChange},
    validator::{ValidatorSet, epoch_first_view},
    value::Value,
};

const RECORD_VERSION: u8 = 2;
const TAG_VIEW: u8 = 0;
const TAG_PROPOSAL: u8 = 1;
const TAG_PREPARED: u8 = 2;
const TAG_DECIDED: u8 = 3;
const TAG_STABLE: u8 = 4;
const TAG_EPOCH: u8 = 5;
const TAG_VIEW_CHANGE: u8 = 6;

/// Own view changes a state keeps: as many as the replica keeps per sender.
pub(crate) const OWN_VIEW_CHANGES: usize = 4;
const STATE_VERSION: u8 = 2;

/// Most entries of each kind a [`ReplicaState`] holds: the window's slots, or the decided
/// entries retained below the window.
const STATE_ENTRIES_MAX: usize = (SEQUENCE_WINDOW + DECIDED_RETAINED) as usize;

/// One thing a replica must remember across a crash (see the [module docs](self)).
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a record is moved once from the replica to the log"
)]
pub enum Record<V> {
    /// The replica moved to `view`: in its normal case (`active`) or changing to it.
    View {
        /// The view.
        view: u64,
        /// Whether the replica entered the view (false: it asked for it and waits for the new
        /// view).
        active: bool,
    },
    /// This replica's view change: it left its view and asks for the view change's view.
    ViewChange(ViewChange<V>),
    /// The pre-prepare this replica stands behind at its sequence, in its current view.
    Proposal(PrePrepare<V>),
    /// This replica prepared the proof's value, and commits it in the proof's view.
    Prepared(PreparedProof<V>),
    /// A decided entry, delivered in sequence order.
    Decided(DecidedEntry<V>),
    /// The replica delivered its epoch's last sequence and switched to this set (see
    /// [`ValidatorSet`]'s epochs): a new log from the set's start, in the epoch's first view.
    Epoch(ValidatorSet),
    /// A stable checkpoint.
    Stable {
        /// The checkpoint's sequence.
        sequence: u64,
        /// The history chain at it.
        history: B256,
        /// A quorum of signed checkpoint votes proving it.
        proof: Vec<Checkpoint>,
    },
}

impl<V: Value> Encode for Record<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(RECORD_VERSION);
        match self {
            Record::View { view, active } => {
                out.push(TAG_VIEW);
                out.extend_from_slice(&view.to_be_bytes());
                out.push(u8::from(*active));
            }
            Record::ViewChange(view_change) => {
                out.push(TAG_VIEW_CHANGE);
                view_change.encode(out);
            }
            Record::Proposal(pre_prepare) => {
                out.push(TAG_PROPOSAL);
                pre_prepare.encode(out);
            }
            Record::Prepared(proof) => {
                out.push(TAG_PREPARED);
                proof.encode(out);
            }
            Record::Decided(entry) => {
                out.push(TAG_DECIDED);
                entry.encode(out);
            }
            Record::Epoch(validators) => {
                out.push(TAG_EPOCH);
                validators.encode(out);
            }
            Record::Stable {
                sequence,
                history,
                proof,
            } => {
                out.push(TAG_STABLE);
                out.extend_from_slice(&sequence.to_be_bytes());
                out.extend_from_slice(history.as_slice());
                put_list(out, proof);
            }
        }
    }
}

impl<V: Value> Decode for Record<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("replica record", &[RECORD_VERSION])?;
        match decoder.u8()? {
            TAG_VIEW => Ok(Record::View {
                view: decoder.u64()?,
                active: decoder.bool()?,
            }),
            TAG_VIEW_CHANGE => Ok(Record::ViewChange(ViewChange::decode(decoder)?)),
            TAG_PROPOSAL => Ok(Record::Proposal(PrePrepare::decode(decoder)?)),
            TAG_PREPARED => Ok(Record::Prepared(PreparedProof::decode(decoder)?)),
            TAG_DECIDED => Ok(Record::Decided(DecidedEntry::decode(decoder)?)),
            TAG_EPOCH => Ok(Record::Epoch(ValidatorSet::decode(decoder)?)),
            TAG_STABLE => Ok(Record::Stable {
                sequence: decoder.u64()?,
                history: decoder.b256()?,
                proof: decoder.list("checkpoint proof", primitives::constants::VALIDATORS_MAX)?,
            }),
            tag => Err(DecodeError::UnknownTag {
                what: "replica record",
                tag,
            }),
        }
    }
}

/// Why a record cannot follow the state it is applied to: the log is not one this replica
/// wrote in order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// A decided entry that does not follow the last committed sequence.
    #[error("decided entry {sequence} does not follow the last committed {last_committed}")]
    DecidedOutOfOrder {
        /// The entry's sequence.
        sequence: u64,
        /// The last committed sequence of the state.
        last_committed: u64,
    },
    /// A view below the state's view.
    #[error("view {view} recorded after view {current}")]
    ViewBackwards {
        /// The recorded view.
        view: u64,
        /// The state's view.
        current: u64,
    },
    /// An epoch that does not start at the last committed sequence.
    #[error("epoch {epoch} starts after {start}, not after the last committed {last_committed}")]
    EpochOutOfOrder {
        /// The epoch.
        epoch: u64,
        /// The sequence it starts after.
        start: u64,
        /// The last committed sequence of the state.
        last_committed: u64,
    },
    /// A stable checkpoint at a sequence that is not a checkpoint sequence.
    #[error("stable checkpoint at {sequence}, not a checkpoint sequence")]
    NotCheckpoint {
        /// The recorded sequence.
        sequence: u64,
    },
}

/// Everything a replica recovers from its log: the fold of its [`Record`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaState<V> {
    pub(crate) view: u64,
    pub(crate) active: bool,
    pub(crate) last_committed: u64,
    /// History chain through `last_committed`.
    pub(crate) history: B256,
    pub(crate) low_watermark: u64,
    /// History chain at `low_watermark` (as proven by `stable_proof`).
    pub(crate) stable_history: B256,
    pub(crate) stable_proof: Vec<Checkpoint>,
    /// This replica's own history at each checkpoint sequence above the low watermark it
    /// committed through.
    pub(crate) checkpoints: BTreeMap<u64, B256>,
    /// The pre-prepares it stands behind in `view`, by sequence (above the low watermark).
    pub(crate) proposals: BTreeMap<u64, PrePrepare<V>>,
    /// Its prepared proofs above the low watermark, the highest view's per sequence.
    pub(crate) prepared: BTreeMap<u64, PreparedProof<V>>,
    /// Decided entries retained for peers catching up, through `last_committed`.
    pub(crate) decided: BTreeMap<u64, DecidedEntry<V>>,
    /// The set of the epoch the replica switched to or joined, if any (else the one it was
    /// built with).
    pub(crate) epoch: Option<ValidatorSet>,
    /// Its own latest view changes, by view.
    pub(crate) view_changes: BTreeMap<u64, ViewChange<V>>,
}

impl<V> Default for ReplicaState<V> {
    fn default() -> Self {
        ReplicaState {
            view: 0,
            active: true,
            last_committed: 0,
            history: B256::ZERO,
            low_watermark: 0,
            stable_history: B256::ZERO,
            stable_proof: Vec::new(),
            checkpoints: BTreeMap::new(),
            proposals: BTreeMap::new(),
            prepared: BTreeMap::new(),
            decided: BTreeMap::new(),
            epoch: None,
            view_changes: BTreeMap::new(),
        }
    }
}

impl<V: Value> ReplicaState<V> {
    /// The state of a replica that has recorded nothing: view 0, nothing committed.
    pub fn genesis() -> Self {
        Self::default()
    }

    /// The state of a node that joins the validator set at the start of `validators`' epoch:
    /// nothing committed of its own, the window from the epoch's start, its first view.
    pub fn joining(validators: &ValidatorSet) -> Self {
        let mut state = Self::genesis();
        state.last_committed = validators.start();
        state.low_watermark = validators.start();
        state
            .apply(&Record::Epoch(validators.clone()))
            .expect("an epoch starts at the joiner's last sequence");
        state
    }

    /// The set of the epoch the replica switched to or joined, if it did.
    pub fn epoch(&self) -> Option<&ValidatorSet> {
        self.epoch.as_ref()
    }

    /// The recorded view.
    pub fn view(&self) -> u64 {
        self.view
    }

    /// Whether the replica was in the normal case of its view (false: changing to it).
    pub fn active(&self) -> bool {
        self.active
    }

    /// The last committed sequence.
    pub fn last_committed(&self) -> u64 {
        self.last_committed
    }

    /// The history chain through [`ReplicaState::last_committed`].
    pub fn history(&self) -> B256 {
        self.history
    }

    /// The last stable checkpoint.
    pub fn low_watermark(&self) -> u64 {
        self.low_watermark
    }

    /// The pre-prepare this replica stands behind at `sequence` in its view, if any.
    pub fn proposal(&self, sequence: u64) -> Option<&PrePrepare<V>> {
        self.proposals.get(&sequence)
    }

    /// Its prepared proof at `sequence`, if any.
    pub fn prepared(&self, sequence: u64) -> Option<&PreparedProof<V>> {
        self.prepared.get(&sequence)
    }

    /// The decided entries it keeps, in order.
    pub fn decided(&self) -> impl Iterator<Item = &DecidedEntry<V>> {
        self.decided.values()
    }

    /// Folds one record into the state.
    pub fn apply(&mut self, record: &Record<V>) -> Result<(), StateError> {
        match record {
            Record::View { view, active } => {
                if *view < self.view {
                    return Err(StateError::ViewBackwards {
                        view: *view,
                        current: self.view,
                    });
                }
                if *view > self.view {
                    self.proposals.clear();
                }
                self.view = *view;
                self.active = *active;
            }
            Record::ViewChange(view_change) => {
                let view = view_change.view;
                if view < self.view {
                    return Err(StateError::ViewBackwards {
                        view,
                        current: self.view,
                    });
                }
                if view > self.view {
                    self.proposals.clear();
                }
                self.view = view;
                self.active = false;
                self.view_changes.insert(view, view_change.clone());
                while self.view_changes.len() > OWN_VIEW_CHANGES {
                    self.view_changes.pop_first();
                }
            }
            Record::Proposal(pre_prepare) => {
                if pre_prepare.view == self.view && pre_prepare.sequence > self.low_watermark {
                    self.proposals
                        .insert(pre_prepare.sequence, pre_prepare.clone());
                }
            }
            Record::Prepared(proof) => {
                let sequence = proof.pre_prepare.sequence;
                let newer = self
                    .prepared
                    .get(&sequence)
                    .is_none_or(|held| held.pre_prepare.view <= proof.pre_prepare.view);
                if sequence > self.low_watermark && newer {
                    self.prepared.insert(sequence, proof.clone());
                }
            }
            Record::Decided(entry) => {
                if entry.sequence != self.last_committed + 1 {
                    return Err(StateError::DecidedOutOfOrder {
                        sequence: entry.sequence,
                        last_committed: self.last_committed,
                    });
                }
                self.history = chain_history(&self.history, entry.sequence, &entry.digest());
                self.last_committed = entry.sequence;
                if entry.sequence.is_multiple_of(CHECKPOINT_INTERVAL)
                    && entry.sequence > self.low_watermark
                {
                    self.checkpoints.insert(entry.sequence, self.history);
                    while self.checkpoints.len() > STATE_ENTRIES_MAX {
                        self.checkpoints.pop_first();
                    }
                }
                self.decided.insert(entry.sequence, entry.clone());
                self.trim_decided();
            }
            Record::Epoch(validators) => {
                if validators.start() != self.last_committed {
                    return Err(StateError::EpochOutOfOrder {
                        epoch: validators.epoch(),
                        start: validators.start(),
                        last_committed: self.last_committed,
                    });
                }
                self.view = epoch_first_view(validators.epoch());
                self.active = true;
                self.history = B256::ZERO;
                self.low_watermark = validators.start();
                self.stable_history = B256::ZERO;
                self.stable_proof.clear();
                self.checkpoints.clear();
                self.proposals.clear();
                self.prepared.clear();
                self.view_changes.clear();
                self.epoch = Some(validators.clone());
            }
            Record::Stable {
                sequence,
                history,
                proof,
            } => {
                if !sequence.is_multiple_of(CHECKPOINT_INTERVAL) {
                    return Err(StateError::NotCheckpoint {
                        sequence: *sequence,
                    });
                }
                if *sequence > self.low_watermark {
                    self.low_watermark = *sequence;
                    self.stable_history = *history;
                    self.stable_proof = proof.clone();
                    let above = sequence + 1;
                    self.checkpoints = self.checkpoints.split_off(&above);
                    self.proposals = self.proposals.split_off(&above);
                    self.prepared = self.prepared.split_off(&above);
                    self.trim_decided();
                }
            }
        }
        Ok(())
    }

    /// Keeps the decided entries from `DECIDED_RETAINED` below the low watermark (as the
    /// replica does), and never more than the bound below the last commit.
    fn trim_decided(&mut self) {
        let from = self
            .low_watermark
            .saturating_sub(DECIDED_RETAINED)
            .max(self.last_committed.saturating_sub(STATE_ENTRIES_MAX as u64))
            + 1;
        if self
            .decided
            .first_key_value()
            .is_some_and(|(first, _)| *first < from)
        {
            self.decided = self.decided.split_off(&from);
        }
    }
}

impl<V: Value> Encode for ReplicaState<V> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(STATE_VERSION);
        out.extend_from_slice(&self.view.to_be_bytes());
        out.push(u8::from(self.active));
        out.extend_from_slice(&self.last_committed.to_be_bytes());
        out.extend_from_slice(self.history.as_slice());
        out.extend_from_slice(&self.low_watermark.to_be_bytes());
        out.extend_from_slice(self.stable_history.as_slice());
        put_list(out, &self.stable_proof);
        let checkpoints: Vec<(u64, B256)> =
            self.checkpoints.iter().map(|(s, h)| (*s, *h)).collect();
        primitives::codec::put_length(out, checkpoints.len());
        for (sequence, history) in checkpoints {
            out.extend_from_slice(&sequence.to_be_bytes());
            out.extend_from_slice(history.as_slice());
        }
        let proposals: Vec<PrePrepare<V>> = self.proposals.values().cloned().collect();
        put_list(out, &proposals);
        let prepared: Vec<PreparedProof<V>> = self.prepared.values().cloned().collect();
        put_list(out, &prepared);
        let decided: Vec<DecidedEntry<V>> = self.decided.values().cloned().collect();
        put_list(out, &decided);
        match &self.epoch {
            Some(validators) => {
                out.push(1);
                validators.encode(out);
            }
            None => out.push(0),
        }
        let view_changes: Vec<ViewChange<V>> = self.view_changes.values().cloned().collect();
        put_list(out, &view_changes);
    }
}

impl<V: Value> Decode for ReplicaState<V> {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("replica state", &[STATE_VERSION])?;
        let view = decoder.u64()?;
        let active = decoder.bool()?;
        let last_committed = decoder.u64()?;
        let history = decoder.b256()?;
        let low_watermark = decoder.u64()?;
        let stable_history = decoder.b256()?;
        let stable_proof =
            decoder.list("checkpoint proof", primitives::constants::VALIDATORS_MAX)?;
        let count = decoder.length("own checkpoints", STATE_ENTRIES_MAX)?;
        let mut checkpoints = BTreeMap::new();
        for _ in 0..count {
            checkpoints.insert(decoder.u64()?, decoder.b256()?);
        }
        let proposals: Vec<PrePrepare<V>> = decoder.list("proposals", STATE_ENTRIES_MAX)?;
        let prepared: Vec<PreparedProof<V>> = decoder.list("prepared proofs", STATE_ENTRIES_MAX)?;
        let decided: Vec<DecidedEntry<V>> = decoder.list("decided entries", STATE_ENTRIES_MAX)?;
        let epoch = if decoder.bool()? {
            Some(ValidatorSet::decode(decoder)?)
        } else {
            None
        };
        let view_changes: Vec<ViewChange<V>> = decoder.list("view changes", OWN_VIEW_CHANGES)?;
        Ok(ReplicaState {
            epoch,
            view_changes: view_changes
                .into_iter()
                .map(|view_change| (view_change.view, view_change))
                .collect(),
            view,
            active,
            last_committed,
            history,
            low_watermark,
            stable_history,
            stable_proof,
            checkpoints,
            proposals: proposals
                .into_iter()
                .map(|pre_prepare| (pre_prepare.sequence, pre_prepare))
                .collect(),
            prepared: prepared
                .into_iter()
                .map(|proof| (proof.pre_prepare.sequence, proof))
                .collect(),
            decided: decided
                .into_iter()
                .map(|entry| (entry.sequence, entry))
                .collect(),
        })
    }
}
