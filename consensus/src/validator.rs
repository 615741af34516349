//! The validator set: who votes, who is primary, how many votes make a quorum.

use primitives::{NodeId, bls::BlsPublicKey, constants::VALIDATORS_MAX};

/// Faulty validators a set of `validators` tolerates: `f = (n - 1) / 3`.
pub const fn faults_max(validators: usize) -> usize {
    validators.saturating_sub(1) / 3
}

/// Votes that make a quorum in a set of `validators`: `n - f` (3 of 4, 6 of 8).
pub const fn quorum(validators: usize) -> usize {
    validators - faults_max(validators)
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatorSet {
    validators: Vec<Validator>,
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
        ValidatorSet { validators }
    }

    /// The validators, in order.
    pub fn validators(&self) -> &[Validator] {
        &self.validators
    }

    /// Their BLS keys, in order (what [`primitives::bls::Certificate::verify`] takes).
    pub fn keys(&self) -> Vec<BlsPublicKey> {
        self.validators
            .iter()
            .map(|validator| validator.key)
            .collect()
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
