//! State transfer: a replica that fell behind fetches decided entries from a peer.
//!
//! Every decided entry carries its commit certificate, so the replica checks each one against
//! the validator set and needs to trust no peer: a lying peer can only withhold. A replica
//! knows it fell behind when `f + 1` peers sign checkpoints beyond its last commit (one of them
//! is correct), when a new view's stable checkpoint is above it, or when its view timer finds
//! later sequences decided while the next one is not. It asks one peer at a time, and another on
//! each fetch timeout.

use primitives::{B256, Encode, machine::Transmit, time::Instant};
use tracing::{debug, warn};

use super::Replica;
use crate::{
    constants::{CHECKPOINT_INTERVAL, FETCH_ENTRIES_MAX},
    error::RejectReason,
    message::{Checkpoint, Decided, DecidedEntry, Message, commit_message},
    value::Value,
    view_change::verify_checkpoint_proof,
};

impl<V: Value> Replica<V> {
    /// Whether this replica knows it is behind the others.
    pub(super) fn lagging(&self) -> bool {
        let ahead = self
            .checkpoint_claims
            .values()
            .filter(|claimed| **claimed > self.last_committed)
            .count();
        ahead > self.validators.f()
            || self.adopted_history.is_some()
            || self
                .slots
                .range(self.last_committed + 2..)
                .any(|(_, slot)| slot.certificate.is_some())
    }

    /// A checkpoint beyond the window: too far ahead to vote on, but a sign this replica is
    /// behind. Its signature is checked, then it counts as the sender's claim.
    pub(super) fn claim_checkpoint(
        &mut self,
        sender: u16,
        checkpoint: Checkpoint,
    ) -> Result<(), RejectReason> {
        let sequence = checkpoint.sequence;
        if self
            .checkpoint_claims
            .get(&sender)
            .is_some_and(|claimed| *claimed >= sequence)
        {
            return Err(RejectReason::Duplicate {
                what: "checkpoint",
                sequence,
            });
        }
        self.stats.signature_checks += 1;
        checkpoint.verify(&self.validators)?;
        self.note_claim(sender, sequence);
        Ok(())
    }

    /// Records that `sender` signed a checkpoint at `sequence`, and fetches once `f + 1` peers
    /// are beyond this replica's window.
    pub(super) fn note_claim(&mut self, sender: u16, sequence: u64) {
        let claimed = self.checkpoint_claims.entry(sender).or_insert(0);
        *claimed = (*claimed).max(sequence);
        let high = self.high_watermark();
        let beyond = self
            .checkpoint_claims
            .values()
            .filter(|claimed| **claimed > high)
            .count();
        if beyond > self.validators.f() && self.fetch.is_none() {
            self.request_fetch(self.time_last, None);
        }
    }

    /// Asks one peer for the decided entries after `last_committed`: one that claimed to be
    /// ahead (not `avoid`, the one asked last), else the next validator after `avoid`.
    pub(super) fn request_fetch(&mut self, now: Instant, avoid: Option<u16>) {
        let n = u16::try_from(self.validators.n()).expect("validator indices fit u16");
        let ahead = self
            .checkpoint_claims
            .iter()
            .filter(|(peer, claimed)| **claimed > self.last_committed && Some(**peer) != avoid)
            .map(|(peer, _)| *peer)
            .min_by_key(|peer| (peer + n - avoid.unwrap_or(self.index)) % n);
        let peer = ahead.unwrap_or_else(|| {
            let mut peer = (avoid.unwrap_or(self.index) + 1) % n;
            if peer == self.index {
                peer = (peer + 1) % n;
            }
            peer
        });
        let from = self.last_committed + 1;
        let message: Message<V> = Message::Fetch { from };
        self.transmits.push_back(Transmit {
            to: self.validators.validators()[usize::from(peer)].id,
            bytes: message.to_bytes(),
        });
        self.fetch = Some((now + self.view_timeout(), peer));
        self.stats.fetches_sent += 1;
        debug!(target: "consensus", replica = self.index, peer, from, "fetching decided entries");
    }

    /// A peer asks for decided entries from `from`: answers with what this replica keeps, up to
    /// [`FETCH_ENTRIES_MAX`], and its stable checkpoint proof.
    pub(super) fn handle_fetch(&mut self, sender: u16, from: u64) -> Result<(), RejectReason> {
        if from == 0 {
            return Err(RejectReason::InvalidProof {
                what: "fetch",
                why: "sequences start at 1",
            });
        }
        let entries: Vec<DecidedEntry<V>> = self
            .decided
            .range(from..)
            .take(FETCH_ENTRIES_MAX)
            .map(|(_, entry)| entry.clone())
            .collect();
        if entries.is_empty() && self.stable_proof.is_empty() {
            return Ok(()); // Nothing this replica could teach it.
        }
        let message = Message::Decided(Decided {
            stable_proof: self.stable_proof.clone(),
            entries,
        });
        self.transmits.push_back(Transmit {
            to: self.validators.validators()[usize::from(sender)].id,
            bytes: message.to_bytes(),
        });
        Ok(())
    }

    /// Decided entries from a peer: every one that follows `last_committed` is checked against
    /// its certificate, all before any is delivered; then the peer's stable checkpoint is adopted
    /// if this replica reached it with the same history.
    pub(super) fn handle_decided(
        &mut self,
        sender: u16,
        decided: Decided<V>,
    ) -> Result<(), RejectReason> {
        let end = self.validators.end().unwrap_or(u64::MAX);
        // A stable checkpoint of a later epoch is signed by a set this replica does not hold.
        let stable = if decided
            .stable_proof
            .first()
            .is_some_and(|vote| vote.sequence > self.low_watermark && vote.sequence <= end)
        {
            self.stats.signature_checks += 1;
            Some(verify_checkpoint_proof(
                &self.validators,
                &decided.stable_proof,
            )?)
        } else {
            None
        };
        let mut next = self.last_committed + 1;
        let mut run = Vec::new();
        for entry in decided.entries {
            if entry.sequence < next {
                continue;
            }
            if entry.sequence != next || entry.sequence > end {
                break; // A gap, or the next epoch: its set checks those after the switch.
            }
            self.stats.signature_checks += 1;
            self.validators
                .verify_certificate(
                    &entry.certificate,
                    &commit_message(entry.view, entry.sequence, &entry.digest()),
                    self.validators.quorum(),
                )
                .map_err(|_| RejectReason::BadCertificate {
                    sequence: entry.sequence,
                })?;
            next += 1;
            run.push(entry);
        }
        let taken = run.len() as u64;
        for entry in run {
            self.deliver(entry);
        }
        self.stats.entries_fetched += taken;
        if let Some((sequence, history)) = stable {
            self.take_stable_from_peer(sequence, history, decided.stable_proof);
        }
        // Slots decided here beyond the gap can go out now.
        self.emit_committed();
        debug!(target: "consensus", replica = self.index, sender, taken,
            last_committed = self.last_committed, "decided entries taken");
        if taken > 0 && self.lagging() {
            self.request_fetch(self.time_last, None);
        } else if !self.lagging() {
            self.fetch = None;
        }
        Ok(())
    }

    /// Adopts a peer's proven stable checkpoint once this replica committed up to it with the
    /// same history.
    fn take_stable_from_peer(&mut self, sequence: u64, history: B256, proof: Vec<Checkpoint>) {
        if sequence <= self.low_watermark || sequence > self.last_committed {
            return;
        }
        match self.checkpoint_histories.get(&sequence) {
            Some(own) if *own == history => {
                self.low_watermark = sequence;
                self.stable_proof = proof;
                self.record_stable(history);
                self.discard_below_watermark();
                self.stats.checkpoints_stable += 1;
            }
            Some(_) => {
                self.stats.checkpoints_diverged += 1;
                warn!(target: "consensus", replica = self.index, sequence,
                    "a proven checkpoint's history differs from this replica's");
            }
            None => {}
        }
    }

    /// Moves the window up to a stable checkpoint proven in a new view. If this replica has not
    /// committed that far, it fetches the entries from `from`, which proved it, and checks its
    /// history when it gets there.
    pub(super) fn adopt_stable(
        &mut self,
        now: Instant,
        sequence: u64,
        history: B256,
        proof: Vec<Checkpoint>,
        from: u16,
    ) {
        assert!(
            sequence.is_multiple_of(CHECKPOINT_INTERVAL),
            "checkpoint sequence"
        );
        if sequence <= self.last_committed {
            if self
                .checkpoint_histories
                .get(&sequence)
                .is_some_and(|own| *own != history)
            {
                self.stats.checkpoints_diverged += 1;
                warn!(target: "consensus", replica = self.index, sequence,
                    "a new view's checkpoint history differs from this replica's");
            }
        } else {
            self.adopted_history = Some((sequence, history));
        }
        self.low_watermark = sequence;
        self.stable_proof = proof;
        self.record_stable(history);
        self.discard_below_watermark();
        self.stats.checkpoints_stable += 1;
        if sequence > self.last_committed {
            // `request_fetch` prefers peers that claimed to be ahead; `from` proved it is.
            self.checkpoint_claims.insert(from, sequence);
            self.request_fetch(now, None);
        }
    }
}
