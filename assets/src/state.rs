//! The UTXO state of an asset group: the output tree, the nullifier set, minted deposits and
//! pending withdrawals. Every operation checks everything before it changes anything, so a
//! rejected one leaves the state as it was.
//!
//! A proof moves the state from its current root to the next (the upper chain's rollup contract
//! follows the same roots, see [`crate::deposit`] and [`crate::transfer`]), so a transfer is
//! placed in the state ([`AssetState::prepare`]) right before it is proven, and a proof made
//! against an older root is refused as stale: its transfer is prepared and proven again.

use std::collections::HashSet;

use ark_bn254::Fr;
use ark_ff::Zero;

use crate::{
    error::AssetsError,
    prover::{TransferTx, Verifier},
    transfer::{Insertion, SignedTransfer, TransferWitness, Withdrawal},
    tree::{MerklePath, OutputTree},
};

pub use crate::deposit::{Deposit, DepositPublic, DepositWitness};

/// What an accepted transfer changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferReceipt {
    /// Leaf indices of the outputs appended to the tree.
    pub leaves: Vec<u64>,
    /// The withdrawal now claimable upstream, for a withdraw.
    pub withdrawal: Option<Withdrawal>,
}

/// The state of the bridge group's UTXO engine.
#[derive(Debug, Clone, Default)]
pub struct AssetState {
    tree: OutputTree,
    nullifiers: HashSet<Fr>,
    /// Deposits minted so far: the next one to mint has this id.
    deposits_minted: u64,
    withdrawals: Vec<Withdrawal>,
}

impl PartialEq for AssetState {
    fn eq(&self, other: &Self) -> bool {
        self.tree.root() == other.tree.root()
            && self.tree.len() == other.tree.len()
            && self.nullifiers == other.nullifiers
            && self.deposits_minted == other.deposits_minted
            && self.withdrawals == other.withdrawals
    }
}

impl AssetState {
    /// An empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current root of the output tree.
    pub fn root(&self) -> Fr {
        self.tree.root()
    }

    /// Leaves of the output tree: the next output's index.
    pub fn leaf_count(&self) -> u64 {
        self.tree.len()
    }

    /// Deposits minted so far (the next deposit's id).
    pub fn deposits_minted(&self) -> u64 {
        self.deposits_minted
    }

    /// Whether `nullifier` was published.
    pub fn is_spent(&self, nullifier: &Fr) -> bool {
        self.nullifiers.contains(nullifier)
    }

    /// The path of leaf `index` to the current root.
    pub fn path(&self, index: u64) -> Result<MerklePath, AssetsError> {
        self.tree.path(index)
    }

    /// Withdrawals accepted so far, in order: what the upper chain may release.
    pub fn withdrawals(&self) -> &[Withdrawal] {
        &self.withdrawals
    }

    /// Places a signed transfer in the current state for its proof: its real inputs' paths are
    /// taken from the tree as it is now (an input whose leaf is not its output keeps the path it
    /// came with, and the checks refuse it), and its outputs go to the next leaves. Changes
    /// nothing.
    pub fn prepare(&self, transfer: &SignedTransfer) -> Result<TransferWitness, AssetsError> {
        let mut transfer = transfer.clone();
        transfer.plan.root = self.root();
        for note in transfer.plan.inputs.iter_mut() {
            let is_real = !note.output.amount.is_zero();
            if is_real && self.tree.leaf(note.leaf_index) == Some(note.output.commitment()) {
                note.path = self.tree.path(note.leaf_index)?;
            }
        }
        let appended = transfer.effects.appended();
        let (paths, new_root) = self.tree.append_paths(&appended)?;
        let paths: [MerklePath; 2] = paths.try_into().expect("one path per appended leaf");
        Ok(TransferWitness {
            transfer,
            insertion: Insertion {
                old_root: self.root(),
                new_root,
                leaf_index: self.tree.len(),
                paths,
            },
        })
    }

    /// Places the next deposit in the current state for the proof the upper chain's rollup
    /// takes. Changes nothing.
    pub fn prepare_deposit(&self, deposit: &Deposit) -> Result<DepositWitness, AssetsError> {
        self.check_deposit_order(deposit)?;
        let (mut paths, new_root) = self.tree.append_paths(&[deposit.output().commitment()])?;
        Ok(DepositWitness {
            public: DepositPublic {
                old_root: self.root(),
                new_root,
                leaf_index: self.tree.len(),
                deposit: *deposit,
            },
            path: paths.pop().expect("one path per appended leaf"),
        })
    }

    fn check_deposit_order(&self, deposit: &Deposit) -> Result<(), AssetsError> {
        let expected = self.deposits_minted;
        if deposit.deposit_id < expected {
            return Err(AssetsError::DepositReplayed {
                deposit_id: deposit.deposit_id,
            });
        }
        if deposit.deposit_id > expected {
            return Err(AssetsError::DepositOutOfOrder {
                expected,
                got: deposit.deposit_id,
            });
        }
        Ok(())
    }

    /// Mints the next deposit (deposits are minted once each, in the bridge's order); returns
    /// its leaf index.
    pub fn apply_deposit(&mut self, deposit: &Deposit) -> Result<u64, AssetsError> {
        self.check_deposit_order(deposit)?;
        let leaf = self.tree.append(deposit.output().commitment())?;
        self.deposits_minted += 1;
        Ok(leaf)
    }

    /// Follows a deposit mint the upper chain's rollup accepted (its proof verified there), as
    /// a client replaying the rollup's events does: the deposit must be the next one, its leaf
    /// the next leaf, and the root it gives the root the rollup reported. Changes nothing when
    /// refused.
    pub fn follow_deposit(
        &mut self,
        deposit: &Deposit,
        leaf_index: u64,
        new_root: Fr,
    ) -> Result<(), AssetsError> {
        self.check_deposit_order(deposit)?;
        self.check_next_leaf(leaf_index)?;
        let (_, root) = self.tree.append_paths(&[deposit.output().commitment()])?;
        if root != new_root {
            return Err(AssetsError::NewRootMismatch);
        }
        self.apply_deposit(deposit).map(|_| ())
    }

    /// Follows a transfer or withdraw the upper chain's rollup accepted (its proof verified
    /// there), from the values its `TransferApplied` event publishes: its nullifiers are spent
    /// and its commitments appended from `leaf_index` on (a zero second commitment is a
    /// withdraw's, which never enters the tree), and the root they give must be `new_root`.
    /// Returns the leaves appended. Withdrawals are not recorded here (the event does not carry
    /// them). Changes nothing when refused.
    pub fn follow_transfer(
        &mut self,
        leaf_index: u64,
        nullifiers: [Fr; 2],
        commitments: [Fr; 2],
        new_root: Fr,
    ) -> Result<Vec<u64>, AssetsError> {
        self.check_next_leaf(leaf_index)?;
        if nullifiers[0] == nullifiers[1] {
            return Err(AssetsError::DuplicateNullifier);
        }
        for (input, nullifier) in nullifiers.iter().enumerate() {
            if self.is_spent(nullifier) {
                return Err(AssetsError::NullifierSpent { input });
            }
        }
        let appended = if commitments[1].is_zero() {
            &commitments[..1]
        } else {
            &commitments[..]
        };
        let (_, root) = self.tree.append_paths(appended)?;
        if root != new_root {
            return Err(AssetsError::NewRootMismatch);
        }
        self.nullifiers.extend(nullifiers);
        Ok(appended
            .iter()
            .map(|commitment| self.tree.append(*commitment).expect("room was checked"))
            .collect())
    }

    /// The commitment at leaf `index`.
    pub fn leaf(&self, index: u64) -> Option<Fr> {
        self.tree.leaf(index)
    }

    fn check_next_leaf(&self, leaf_index: u64) -> Result<(), AssetsError> {
        if leaf_index != self.tree.len() {
            return Err(AssetsError::WrongLeafIndex {
                expected: self.tree.len(),
                got: leaf_index,
            });
        }
        Ok(())
    }

    /// Verifies and applies a transfer or withdraw proven from the current root.
    pub fn apply_transfer(
        &mut self,
        verifier: &Verifier,
        transfer: &TransferTx,
    ) -> Result<TransferReceipt, AssetsError> {
        let public = &transfer.public;
        let effects = &public.effects;
        if public.old_root != self.root() {
            return Err(AssetsError::StaleRoot);
        }
        if public.leaf_index != self.tree.len() {
            return Err(AssetsError::WrongLeafIndex {
                expected: self.tree.len(),
                got: public.leaf_index,
            });
        }
        if effects.nullifiers[0] == effects.nullifiers[1] {
            return Err(AssetsError::DuplicateNullifier);
        }
        for (input, nullifier) in effects.nullifiers.iter().enumerate() {
            if self.is_spent(nullifier) {
                return Err(AssetsError::NullifierSpent { input });
            }
        }
        if effects.withdrawal.is_some_and(|w| w.recipient.is_zero()) {
            return Err(AssetsError::WithdrawalToZero);
        }
        let appended = &effects.appended()[..effects.leaves_added() as usize];
        let (_, new_root) = self.tree.append_paths(appended)?;
        if !verifier.verify(public, &transfer.proof) {
            return Err(AssetsError::ProofInvalid);
        }
        // The proof binds the new root; a verified proof with another one would be a flaw of
        // the circuit, refused all the same.
        if new_root != public.new_root {
            return Err(AssetsError::NewRootMismatch);
        }
        // Everything is checked: from here on nothing fails.
        self.nullifiers.extend(effects.nullifiers);
        let leaves = appended
            .iter()
            .map(|commitment| self.tree.append(*commitment).expect("room was checked"))
            .collect();
        assert_eq!(
            self.tree.root(),
            public.new_root,
            "the appends were predicted"
        );
        if let Some(withdrawal) = effects.withdrawal {
            self.withdrawals.push(withdrawal);
        }
        Ok(TransferReceipt {
            leaves,
            withdrawal: effects.withdrawal,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        U256,
        keys::SpendingKey,
        output::Output,
        transfer::{InputNote, TransferPlan},
    };

    #[test]
    fn a_follower_replays_published_updates_and_refuses_inconsistent_ones() {
        let alice = SpendingKey::from_seed([0xa7; 32]);
        let bob = SpendingKey::from_seed([0xb7; 32]);
        let deposit = |deposit_id| Deposit {
            deposit_id,
            owner: alice.address(),
            asset: U256::from(3),
            amount: U256::from(10),
        };
        let mut follower = AssetState::new();
        // A deposit whose root is not the one reported is refused and changes nothing.
        assert_eq!(
            follower.follow_deposit(&deposit(0), 0, Fr::from(1u64)),
            Err(AssetsError::NewRootMismatch)
        );
        let witness = follower
            .prepare_deposit(&deposit(0))
            .expect("valid in this test");
        follower
            .follow_deposit(&deposit(0), 0, witness.public.new_root)
            .expect("valid in this test");
        assert_eq!(
            follower.follow_deposit(&deposit(0), 1, witness.public.new_root),
            Err(AssetsError::DepositReplayed { deposit_id: 0 })
        );

        // Alice pays Bob; the follower sees only the published values.
        let plan = TransferPlan {
            root: follower.root(),
            inputs: [
                InputNote {
                    output: deposit(0).output(),
                    leaf_index: 0,
                    path: follower.path(0).expect("valid in this test"),
                },
                InputNote::dummy(alice.address(), U256::from(3), Fr::from(4u64)),
            ],
            outputs: [
                Output {
                    owner: bob.address(),
                    asset: U256::from(3),
                    amount: U256::from(10),
                    blinding: Fr::from(5u64),
                },
                Output {
                    owner: alice.address(),
                    asset: U256::from(3),
                    amount: U256::ZERO,
                    blinding: Fr::from(6u64),
                },
            ],
            withdraw_to: None,
        };
        let public = follower
            .prepare(&plan.sign([&alice, &alice]))
            .expect("valid in this test")
            .public();
        let effects = public.effects;
        let before = follower.clone();
        assert_eq!(
            follower.follow_transfer(2, effects.nullifiers, effects.commitments, public.new_root),
            Err(AssetsError::WrongLeafIndex {
                expected: 1,
                got: 2
            })
        );
        assert_eq!(
            follower.follow_transfer(1, effects.nullifiers, effects.commitments, public.old_root),
            Err(AssetsError::NewRootMismatch)
        );
        assert_eq!(follower, before);
        assert_eq!(
            follower.follow_transfer(1, effects.nullifiers, effects.commitments, public.new_root),
            Ok(vec![1, 2])
        );
        assert_eq!(follower.root(), public.new_root);
        assert_eq!(follower.leaf(1), Some(effects.commitments[0]));
        assert!(follower.is_spent(&effects.nullifiers[0]));
        // The same nullifiers again are a double spend.
        let root = follower.root();
        assert_eq!(
            follower.follow_transfer(3, effects.nullifiers, effects.commitments, root),
            Err(AssetsError::NullifierSpent { input: 0 })
        );
    }
}
