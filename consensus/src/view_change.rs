//! Checking view-change and new-view messages, and deriving a new view's proposals.
//!
//! Pure functions of a message and the validator set: the replica calls them before a view
//! change or new view changes anything, and the new primary derives its pre-prepares with the
//! same [`derive_new_view`] every backup recomputes.
//!
//! Why the derivation is safe (Castro and Liskov, section 4.4): a value decided at sequence `s`
//! in view `v` was prepared by a quorum in `v`, so every quorum of view changes for a later view
//! holds at least one correct replica with a prepared proof for it at `s`, and no prepared proof
//! from a view above `v` names another value (by induction over the views). Picking, at each
//! sequence, the proof of the highest view therefore re-proposes every value that may have been
//! decided.

use std::collections::{BTreeMap, BTreeSet};

use primitives::{
    B256,
    bls::{BlsSignature, Certificate},
    pbft::prepare_prehash,
};

use crate::{
    constants::{CHECKPOINT_INTERVAL, SEQUENCE_WINDOW},
    error::RejectReason,
    message::{Checkpoint, NewView, PrePrepare, PreparedProof, ViewChange, checkpoint_message},
    validator::ValidatorSet,
    value::Value,
};

/// Prepared proofs already verified, by the keccak digest of their encoding: a replica sees the
/// same proof again in resent view changes and in the new view, and each costs a recovery per
/// signature.
/// Bounded: forgotten wholesale when full.
#[derive(Clone, Debug, Default)]
pub struct ProofCache {
    verified: BTreeSet<B256>,
}

/// Most proofs a [`ProofCache`] remembers.
const PROOF_CACHE_MAX: usize = 4096;

impl ProofCache {
    fn key<V: Value>(proof: &PreparedProof<V>) -> B256 {
        primitives::keccak256(primitives::Encode::to_bytes(proof))
    }

    /// Whether `proof` was verified before.
    pub fn contains<V: Value>(&self, proof: &PreparedProof<V>) -> bool {
        self.verified.contains(&Self::key(proof))
    }

    fn insert<V: Value>(&mut self, proof: &PreparedProof<V>) {
        if self.verified.len() >= PROOF_CACHE_MAX {
            self.verified.clear();
        }
        self.verified.insert(Self::key(proof));
    }
}

fn invalid(what: &'static str, why: &'static str) -> RejectReason {
    RejectReason::InvalidProof { what, why }
}

/// Checks a stable-checkpoint proof: a quorum of distinct validators' checkpoint votes for one
/// `(sequence, history)`, verified in one aggregate check. Returns the pair, or `(0, zero)` for
/// the empty proof of genesis.
pub fn verify_checkpoint_proof(
    validators: &ValidatorSet,
    proof: &[Checkpoint],
) -> Result<(u64, B256), RejectReason> {
    const WHAT: &str = "checkpoint proof";
    let Some(first) = proof.first() else {
        // No checkpoint yet in this epoch: its start.
        return Ok((validators.start(), B256::ZERO));
    };
    if first.sequence == 0 || !first.sequence.is_multiple_of(CHECKPOINT_INTERVAL) {
        return Err(invalid(WHAT, "not a checkpoint sequence"));
    }
    if first.sequence <= validators.start() {
        return Err(invalid(WHAT, "a checkpoint of an earlier epoch"));
    }
    let mut signers = BTreeSet::new();
    for vote in proof {
        if vote.sequence != first.sequence || vote.history != first.history {
            return Err(invalid(WHAT, "votes for different checkpoints"));
        }
        if usize::from(vote.replica) >= validators.n() {
            return Err(invalid(WHAT, "vote from outside the set"));
        }
        if !signers.insert(vote.replica) {
            return Err(invalid(WHAT, "two votes from one validator"));
        }
    }
    if signers.len() < validators.quorum() {
        return Err(invalid(WHAT, "fewer votes than a quorum"));
    }
    let votes: Vec<(usize, BlsSignature)> = proof
        .iter()
        .map(|vote| (usize::from(vote.replica), vote.signature))
        .collect();
    let aggregate =
        Certificate::aggregate(&votes).map_err(|_| invalid(WHAT, "signatures do not aggregate"))?;
    validators
        .verify_certificate(
            &aggregate,
            &checkpoint_message(first.sequence, &first.history),
            validators.quorum(),
        )
        .map_err(|_| invalid(WHAT, "bad signature"))?;
    Ok((first.sequence, first.history))
}

/// Checks a prepared proof: the pre-prepare is signed by the primary of its view, and a
/// quorum minus one distinct backups (never that primary), listed by ascending index, signed
/// the matching prepare.
pub fn verify_prepared<V: Value>(
    validators: &ValidatorSet,
    proof: &PreparedProof<V>,
) -> Result<(), RejectReason> {
    const WHAT: &str = "prepared proof";
    let pre_prepare = &proof.pre_prepare;
    let primary = validators.primary_index(pre_prepare.view);
    let digest = pre_prepare.digest();
    pre_prepare
        .verify(validators, &digest)
        .map_err(|_| invalid(WHAT, "pre-prepare not signed by its primary"))?;
    if proof.prepares.len() != validators.quorum() - 1 {
        return Err(invalid(WHAT, "not a quorum of prepares"));
    }
    if !proof
        .prepares
        .windows(2)
        .all(|pair| pair[0].replica < pair[1].replica)
    {
        return Err(invalid(
            WHAT,
            "prepares not in ascending order of their backups",
        ));
    }
    if proof
        .prepares
        .iter()
        .any(|prepare| usize::from(prepare.replica) == primary)
    {
        return Err(invalid(WHAT, "the primary among the preparers"));
    }
    let prehash = prepare_prehash(pre_prepare.view, pre_prepare.sequence, &digest);
    for prepare in &proof.prepares {
        validators
            .verify_operator(usize::from(prepare.replica), &prehash, &prepare.signature)
            .map_err(|_| invalid(WHAT, "prepares do not verify"))?;
    }
    Ok(())
}

/// Checks a view change from validator `sender`: its signature, its stable checkpoint proof,
/// and every prepared proof (ascending sequences inside its window, views below the one asked
/// for).
pub fn verify_view_change<V: Value>(
    validators: &ValidatorSet,
    sender: u16,
    view_change: &ViewChange<V>,
    cache: &mut ProofCache,
) -> Result<(), RejectReason> {
    const WHAT: &str = "view change";
    if view_change.replica != sender {
        return Err(invalid(WHAT, "sent by another validator than it names"));
    }
    if validators.get(usize::from(sender)).is_none() {
        return Err(invalid(WHAT, "sender outside the set"));
    }
    validators.verify_signature(
        usize::from(sender),
        &view_change.signed_message(),
        &view_change.signature,
    )?;
    let stable = verify_checkpoint_proof(validators, &view_change.stable_proof)?;
    if stable != (view_change.stable, view_change.history) {
        return Err(invalid(WHAT, "stable checkpoint does not match its proof"));
    }
    let mut previous = view_change.stable;
    for proof in &view_change.prepared {
        let pre_prepare = &proof.pre_prepare;
        if pre_prepare.sequence <= previous {
            return Err(invalid(
                WHAT,
                "prepared sequences not ascending above the checkpoint",
            ));
        }
        if pre_prepare.sequence > view_change.stable + SEQUENCE_WINDOW {
            return Err(invalid(WHAT, "prepared sequence beyond the window"));
        }
        if pre_prepare.view >= view_change.view {
            return Err(invalid(
                WHAT,
                "prepared in a view not below the one asked for",
            ));
        }
        if !cache.contains(proof) {
            verify_prepared(validators, proof)?;
            cache.insert(proof);
        }
        previous = pre_prepare.sequence;
    }
    Ok(())
}

/// What a new view must propose, derived from a quorum of view changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewViewPlan<V> {
    /// The highest stable checkpoint among the view changes: the new view's low watermark.
    pub stable: u64,
    /// Index, among the view changes, of one that proves `stable`.
    pub stable_from: usize,
    /// For each sequence in `(stable, highest prepared]`, ascending: the value prepared in the
    /// highest view, or `None` (a null) where no view change prepared one.
    pub proposals: Vec<(u64, Option<V>)>,
}

/// Derives the proposals of a new view from its view changes (already verified one by one).
pub fn derive_new_view<V: Value>(view_changes: &[ViewChange<V>]) -> NewViewPlan<V> {
    let (stable_from, stable) = view_changes
        .iter()
        .enumerate()
        .map(|(index, view_change)| (index, view_change.stable))
        .max_by_key(|(index, stable)| (*stable, std::cmp::Reverse(*index)))
        .unwrap_or((0, 0));
    // The highest-view prepared value at each sequence above `stable`; the first view change
    // wins a tie (two values prepared in one view would take more than `f` faulty replicas).
    let mut best: BTreeMap<u64, &PrePrepare<V>> = BTreeMap::new();
    for proof in view_changes
        .iter()
        .flat_map(|view_change| &view_change.prepared)
    {
        let pre_prepare = &proof.pre_prepare;
        if pre_prepare.sequence <= stable {
            continue;
        }
        let slot = best.entry(pre_prepare.sequence).or_insert(pre_prepare);
        if pre_prepare.view > slot.view {
            *slot = pre_prepare;
        }
    }
    let highest = best.keys().next_back().copied().unwrap_or(stable);
    let proposals = (stable + 1..=highest)
        .map(|sequence| {
            let value = best
                .get(&sequence)
                .and_then(|pre_prepare| pre_prepare.value.clone());
            (sequence, value)
        })
        .collect();
    NewViewPlan {
        stable,
        stable_from,
        proposals,
    }
}

/// Checks a new view from validator `sender`: sent and signed by the primary of its view, a
/// quorum of valid view changes for that view from distinct validators, and exactly the
/// pre-prepares [`derive_new_view`] gives, each signed by the primary. View changes for which
/// `verified` says so were checked already and are not checked again. Returns the plan.
pub fn verify_new_view<V: Value>(
    validators: &ValidatorSet,
    sender: u16,
    new_view: &NewView<V>,
    verified: impl Fn(&ViewChange<V>) -> bool,
    cache: &mut ProofCache,
) -> Result<NewViewPlan<V>, RejectReason> {
    const WHAT: &str = "new view";
    let primary = validators.primary_index(new_view.view);
    if usize::from(sender) != primary {
        return Err(RejectReason::NotPrimary {
            view: new_view.view,
            index: sender,
        });
    }
    validators.verify_signature(primary, &new_view.signed_message(), &new_view.signature)?;
    let mut senders = BTreeSet::new();
    for view_change in &new_view.view_changes {
        if view_change.view != new_view.view {
            return Err(invalid(WHAT, "a view change for another view"));
        }
        if !senders.insert(view_change.replica) {
            return Err(invalid(WHAT, "two view changes from one validator"));
        }
        if !verified(view_change) {
            verify_view_change(validators, view_change.replica, view_change, cache)?;
        }
    }
    if senders.len() < validators.quorum() {
        return Err(invalid(WHAT, "fewer view changes than a quorum"));
    }
    let plan = derive_new_view(&new_view.view_changes);
    if plan.proposals.len() != new_view.pre_prepares.len() {
        return Err(invalid(
            WHAT,
            "pre-prepares differ from the view changes' values",
        ));
    }
    for ((sequence, value), pre_prepare) in plan.proposals.iter().zip(&new_view.pre_prepares) {
        if pre_prepare.view != new_view.view
            || pre_prepare.sequence != *sequence
            || pre_prepare.value != *value
        {
            return Err(invalid(
                WHAT,
                "pre-prepares differ from the view changes' values",
            ));
        }
        pre_prepare.verify(validators, &pre_prepare.digest())?;
    }
    Ok(plan)
}
