//! The validator set: who votes, who is primary, how many votes make a quorum, and the checks
//! of their signatures.

use std::{
    collections::{HashSet, VecDeque},
    sync::Arc,
};

use parking_lot::Mutex;
use primitives::{
    B256, Decode, DecodeError, Decoder, Encode, NodeId, Signature,
    bls::{BlsError, BlsPublicKey, BlsSignature, Certificate, HashedMessage},
    constants::VALIDATORS_MAX,
};

use crate::{constants::VERIFIED_MEMO_MAX, error::RejectReason};

/// Faulty validators a set of `validators` tolerates: `f = (n - 1) / 3`.
pub const fn faults_max(validators: usize) -> usize {
    validators.saturating_sub(1) / 3
}

/// Votes that make a quorum in a set of `validators`: `n - f` (3 of 4, 6 of 8).
pub const fn quorum(validators: usize) -> usize {
    validators - faults_max(validators)
}

/// The view every replica starts epoch `epoch` in: views of different epochs never meet.
pub const fn epoch_first_view(epoch: u64) -> u64 {
    epoch << 32
}

/// One voting member: its node ID (what the transport authenticates) and its BLS key (what its
/// votes are checked with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validator {
    /// The node ID the transport reports as the origin of its messages.
    pub id: NodeId,
    /// The key its votes are signed with.
    pub key: BlsPublicKey,
}

/// An ordered set of validators; a validator's index in it is its identity in votes and in
/// certificate bitmaps.
///
/// The set checks signatures and certificates, and remembers (boundedly) those that passed: a
/// replica meets the same signed bytes many times — a primary's pre-prepare inside every view
/// change's prepared proofs, a view change again inside the new view — and a pairing check costs
/// a millisecond. A clone starts with an empty memory; [`share_memory`](Self::share_memory)
/// gives a copy that shares it, which a process running many replicas of one network (the
/// seeded world) uses so that each message is checked once, not once per replica. Remembering
/// only what verified changes no outcome: the same bytes verify the same way every time.
///
/// # Epochs
/// A set belongs to an epoch ([`ValidatorSet::epoch`]) and decides the sequences of its span:
/// after [`ValidatorSet::start`] through [`ValidatorSet::end`] (open-ended if `None`).
/// [`ValidatorSet::new`] is epoch 0 from the first sequence, with no end: a set that never
/// changes. The upper chain fixes each epoch's span when it publishes the set, so every
/// correct replica knows where the epoch ends before it gets there: the old set certifies its
/// last sequence, and the next set (given with
/// [`ReplicaInput::NextEpoch`](crate::ReplicaInput::NextEpoch)) takes over from the next one.
#[derive(Debug)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
    keys: Vec<BlsPublicKey>,
    epoch: u64,
    start: u64,
    end: Option<u64>,
    verified: Arc<VerifiedMemo>,
}

impl Clone for ValidatorSet {
    fn clone(&self) -> Self {
        ValidatorSet {
            validators: self.validators.clone(),
            keys: self.keys.clone(),
            epoch: self.epoch,
            start: self.start,
            end: self.end,
            verified: Arc::default(),
        }
    }
}

impl PartialEq for ValidatorSet {
    fn eq(&self, other: &Self) -> bool {
        self.validators == other.validators
            && (self.epoch, self.start, self.end) == (other.epoch, other.start, other.end)
    }
}

impl Eq for ValidatorSet {}

/// Digests of signed bytes that verified, oldest evicted first.
#[derive(Debug, Default)]
struct VerifiedMemo {
    inner: Mutex<MemoInner>,
}

#[derive(Debug, Default)]
struct MemoInner {
    present: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl VerifiedMemo {
    fn contains(&self, digest: &[u8; 32]) -> bool {
        self.inner.lock().present.contains(digest)
    }

    fn insert(&self, digest: [u8; 32]) {
        let mut inner = self.inner.lock();
        if !inner.present.insert(digest) {
            return;
        }
        inner.order.push_back(digest);
        if inner.order.len() > VERIFIED_MEMO_MAX
            && let Some(oldest) = inner.order.pop_front()
        {
            inner.present.remove(&oldest);
        }
    }
}

/// What distinguishes one check from another: the kind, who (a signer or a certificate's
/// bitmap and threshold), the signed bytes and the signature.
fn memo_digest(kind: u8, who: &[u8], message: &[u8], signature: &BlsSignature) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(&(who.len() as u64).to_be_bytes());
    hasher.update(who);
    hasher.update(&(message.len() as u64).to_be_bytes());
    hasher.update(message);
    hasher.update(&signature.to_bytes());
    *hasher.finalize().as_bytes()
}

impl ValidatorSet {
    /// A set in the given order (every replica must use the same order).
    ///
    /// # Panics
    /// If the set is empty, larger than [`VALIDATORS_MAX`], or names one node ID twice: the set
    /// comes from the node's configuration or the upper chain's registry, never from a peer.
    pub fn new(validators: Vec<Validator>) -> Self {
        assert!(
            !validators.is_empty(),
            "a validator set has at least one member"
        );
        assert!(validators.len() <= VALIDATORS_MAX, "too many validators");
        for (index, validator) in validators.iter().enumerate() {
            assert!(
                validators[..index]
                    .iter()
                    .all(|other| other.id != validator.id),
                "validator {} appears twice",
                validator.id
            );
        }
        let keys = validators.iter().map(|validator| validator.key).collect();
        ValidatorSet {
            validators,
            keys,
            epoch: 0,
            start: 0,
            end: None,
            verified: Arc::default(),
        }
    }

    /// The set of `epoch`, deciding the sequences after `start` through `end` (`None`: no end
    /// fixed, the set never changes).
    ///
    /// # Panics
    /// As [`ValidatorSet::new`], and if `end` is not after `start`.
    pub fn for_epoch(validators: Vec<Validator>, epoch: u64, start: u64, end: Option<u64>) -> Self {
        assert!(
            end.is_none_or(|end| end > start),
            "an epoch decides at least one sequence"
        );
        ValidatorSet {
            epoch,
            start,
            end,
            ..ValidatorSet::new(validators)
        }
    }

    /// The epoch this set belongs to.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The last sequence of the previous epoch: this set decides the sequences after it.
    pub fn start(&self) -> u64 {
        self.start
    }

    /// The last sequence this set decides, if its epoch's end is fixed.
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    /// A copy that shares this set's memory of verified signatures (see the type's docs).
    pub fn share_memory(&self) -> ValidatorSet {
        ValidatorSet {
            validators: self.validators.clone(),
            keys: self.keys.clone(),
            epoch: self.epoch,
            start: self.start,
            end: self.end,
            verified: self.verified.clone(),
        }
    }

    /// Whether another copy of this set shares its memory (only then is a replica's own
    /// signature worth remembering: nobody else in a node checks it).
    pub fn shares_memory(&self) -> bool {
        Arc::strong_count(&self.verified) > 1
    }

    /// Records a signature this process made itself as good, so that replicas sharing this
    /// set's memory do not check it again ([`share_memory`](Self::share_memory)).
    pub fn remember_signed(&self, signer: usize, message: &[u8], signature: &BlsSignature) {
        let digest = memo_digest(0, &(signer as u64).to_be_bytes(), message, signature);
        self.verified.insert(digest);
    }

    /// Whether validator `signer`'s signature on `message` is known good, without checking it.
    pub fn knows_signed(&self, signer: usize, message: &[u8], signature: &BlsSignature) -> bool {
        let digest = memo_digest(0, &(signer as u64).to_be_bytes(), message, signature);
        self.verified.contains(&digest)
    }

    /// Checks that validator `signer`'s operator key made `signature` over `prehash`: the
    /// signer recovered from it is the validator's node ID.
    pub fn verify_operator(
        &self,
        signer: usize,
        prehash: &B256,
        signature: &Signature,
    ) -> Result<(), RejectReason> {
        let validator = self
            .validators
            .get(signer)
            .ok_or(RejectReason::BadSignature)?;
        match signature.recover_address(prehash) {
            Ok(address) if address == validator.id.0 => Ok(()),
            _ => Err(RejectReason::BadSignature),
        }
    }

    /// Checks that validator `signer` signed `message`.
    pub fn verify_signature(
        &self,
        signer: usize,
        message: &[u8],
        signature: &BlsSignature,
    ) -> Result<(), RejectReason> {
        let key = self.keys.get(signer).ok_or(RejectReason::BadSignature)?;
        if self.knows_signed(signer, message, signature) {
            return Ok(());
        }
        key.verify(message, signature)
            .map_err(|_| RejectReason::BadSignature)?;
        self.remember_signed(signer, message, signature);
        Ok(())
    }

    /// Checks that at least `threshold` validators of this set signed `message` in
    /// `certificate`.
    pub fn verify_certificate(
        &self,
        certificate: &Certificate,
        message: &[u8],
        threshold: usize,
    ) -> Result<(), BlsError> {
        self.remembered(certificate, message, threshold, || {
            certificate.verify(message, &self.keys, threshold)
        })
    }

    /// [`verify_certificate`](Self::verify_certificate) with `message` hashed once already
    /// (`hashed` is [`HashedMessage::new`] of `message`).
    pub fn verify_certificate_hashed(
        &self,
        certificate: &Certificate,
        message: &[u8],
        hashed: &HashedMessage,
        threshold: usize,
    ) -> Result<(), BlsError> {
        self.remembered(certificate, message, threshold, || {
            certificate.verify_hashed(hashed, &self.keys, threshold)
        })
    }

    /// Runs `check` on a certificate unless this set's memory knows it good, and remembers it
    /// if it is.
    fn remembered(
        &self,
        certificate: &Certificate,
        message: &[u8],
        threshold: usize,
        check: impl FnOnce() -> Result<(), BlsError>,
    ) -> Result<(), BlsError> {
        let mut who = (threshold as u64).to_be_bytes().to_vec();
        certificate.signers.encode(&mut who);
        let digest = memo_digest(1, &who, message, &certificate.signature);
        if self.verified.contains(&digest) {
            return Ok(());
        }
        check()?;
        self.verified.insert(digest);
        Ok(())
    }

    /// The validators, in order.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// Their BLS keys, in order (what [`primitives::bls::Certificate::verify`] takes).
    pub fn keys(&self) -> &[BlsPublicKey] {
        &self.keys
    }

    /// Number of validators, `n`.
    pub fn n(&self) -> usize {
        self.validators.len()
    }

    /// Faulty validators tolerated, `f = (n - 1) / 3`.
    pub fn f(&self) -> usize {
        faults_max(self.n())
    }

    /// Votes that make a quorum, `n - f`.
    pub fn quorum(&self) -> usize {
        quorum(self.n())
    }

    /// The validator at `index`, if any.
    pub fn get(&self, index: usize) -> Option<&Validator> {
        self.validators.get(index)
    }

    /// The index of the validator with node ID `id`, if it is one.
    pub fn index_of(&self, id: &NodeId) -> Option<usize> {
        self.validators
            .iter()
            .position(|validator| validator.id == *id)
    }

    /// The index of the primary of `view`: `view mod n`.
    pub fn primary_index(&self, view: u64) -> usize {
        // n <= VALIDATORS_MAX, so both conversions are exact.
        (view % self.n() as u64) as usize
    }

    /// The primary of `view`.
    pub fn primary(&self, view: u64) -> &Validator {
        &self.validators[self.primary_index(view)]
    }
}

impl Encode for ValidatorSet {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(&self.start.to_be_bytes());
        match self.end {
            Some(end) => {
                out.push(1);
                out.extend_from_slice(&end.to_be_bytes());
            }
            None => out.push(0),
        }
        primitives::codec::put_length(out, self.validators.len());
        for validator in &self.validators {
            validator.id.encode(out);
            validator.key.encode(out);
        }
    }
}

impl Decode for ValidatorSet {
    /// Decodes a set written by this node (its log); a set with no member, too many or one
    /// listed twice is an error, not a panic.
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let epoch = decoder.u64()?;
        let start = decoder.u64()?;
        let end = if decoder.bool()? {
            Some(decoder.u64()?)
        } else {
            None
        };
        let count = decoder.length("validators", VALIDATORS_MAX)?;
        let mut validators: Vec<Validator> = Vec::with_capacity(count);
        for _ in 0..count {
            let validator = Validator {
                id: NodeId::decode(decoder)?,
                key: BlsPublicKey::decode(decoder)?,
            };
            if validators.iter().any(|other| other.id == validator.id) {
                return Err(DecodeError::Invalid {
                    what: "validator set",
                    why: "a validator listed twice",
                });
            }
            validators.push(validator);
        }
        if validators.is_empty() || end.is_some_and(|end| end <= start) {
            return Err(DecodeError::Invalid {
                what: "validator set",
                why: "no validator, or an empty epoch",
            });
        }
        Ok(ValidatorSet::for_epoch(validators, epoch, start, end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_is_n_minus_f() {
        assert_eq!((faults_max(1), quorum(1)), (0, 1));
        assert_eq!((faults_max(3), quorum(3)), (0, 3));
        assert_eq!((faults_max(4), quorum(4)), (1, 3));
        assert_eq!((faults_max(7), quorum(7)), (2, 5));
        assert_eq!((faults_max(8), quorum(8)), (2, 6));
        for n in 1..=VALIDATORS_MAX {
            // Two quorums always share an honest validator.
            assert!(2 * quorum(n) > n + faults_max(n), "n = {n}");
        }
    }
}
