//! The UTXO state of an asset group: the output tree, the roots a transfer may be proven
//! against, the nullifier set, minted deposits and pending withdrawals. Every operation checks
//! everything before it changes anything, so a rejected one leaves the state as it was.

use std::collections::{HashSet, VecDeque};

use ark_bn254::Fr;

use crate::{
    constants::{ROOT_HISTORY_MAX, TREE_LEAVES_MAX},
    error::AssetsError,
    output::Output,
    prover::{TransferTx, Verifier},
    transfer::Withdrawal,
    tree::{MerklePath, OutputTree},
};

/// A deposit: tokens locked in the bridge contract upstream, minted here as one output. Its
/// data is public (it comes from a `Deposit` event), so it needs no proof; its id (the event's
/// sequence number on the bridge) makes a replayed event mint nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deposit {
    /// The bridge's sequence number of the deposit.
    pub deposit_id: u64,
    /// The output minted.
    pub output: Output,
}

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
    recent_roots: VecDeque<Fr>,
    nullifiers: HashSet<Fr>,
    deposits: HashSet<u64>,
    withdrawals: Vec<Withdrawal>,
}

impl PartialEq for AssetState {
    fn eq(&self, other: &Self) -> bool {
        self.tree.root() == other.tree.root()
            && self.tree.len() == other.tree.len()
            && self.recent_roots == other.recent_roots
            && self.nullifiers == other.nullifiers
            && self.deposits == other.deposits
            && self.withdrawals == other.withdrawals
    }
}

impl AssetState {
    /// An empty state.
    pub fn new() -> Self {
        let tree = OutputTree::new();
        let recent_roots = VecDeque::from([tree.root()]);
        Self {
            tree,
            recent_roots,
            ..Self::default()
        }
    }

    /// The current root of the output tree.
    pub fn root(&self) -> Fr {
        self.tree.root()
    }

    /// Whether a transfer may be proven against `root`.
    pub fn knows_root(&self, root: &Fr) -> bool {
        self.recent_roots.contains(root)
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

    /// Mints a deposit once; returns its leaf index.
    pub fn apply_deposit(&mut self, deposit: &Deposit) -> Result<u64, AssetsError> {
        if self.deposits.contains(&deposit.deposit_id) {
            return Err(AssetsError::DepositReplayed {
                deposit_id: deposit.deposit_id,
            });
        }
        let leaf = self.append(deposit.output.commitment())?;
        self.deposits.insert(deposit.deposit_id);
        Ok(leaf)
    }

    /// Verifies and applies a transfer or withdraw.
    pub fn apply_transfer(
        &mut self,
        verifier: &Verifier,
        transfer: &TransferTx,
    ) -> Result<TransferReceipt, AssetsError> {
        let public = &transfer.public;
        if !self.knows_root(&public.root) {
            return Err(AssetsError::UnknownRoot);
        }
        if public.nullifiers[0] == public.nullifiers[1] {
            return Err(AssetsError::DuplicateNullifier);
        }
        for (input, nullifier) in public.nullifiers.iter().enumerate() {
            if self.is_spent(nullifier) {
                return Err(AssetsError::NullifierSpent { input });
            }
        }
        if public.withdrawal.is_some_and(|w| w.recipient.is_zero()) {
            return Err(AssetsError::WithdrawalToZero);
        }
        let appended: Vec<Fr> = match public.withdrawal {
            Some(_) => vec![public.commitments[0]],
            None => public.commitments.to_vec(),
        };
        if self.tree.len() + appended.len() as u64 > TREE_LEAVES_MAX {
            return Err(AssetsError::TreeFull {
                max: TREE_LEAVES_MAX,
            });
        }
        if !verifier.verify(public, &transfer.proof) {
            return Err(AssetsError::ProofInvalid);
        }
        // Everything is checked: from here on nothing fails.
        self.nullifiers.extend(public.nullifiers);
        let leaves = appended
            .into_iter()
            .map(|commitment| self.append(commitment).expect("room was checked"))
            .collect();
        if let Some(withdrawal) = public.withdrawal {
            self.withdrawals.push(withdrawal);
        }
        Ok(TransferReceipt {
            leaves,
            withdrawal: public.withdrawal,
        })
    }

    fn append(&mut self, commitment: Fr) -> Result<u64, AssetsError> {
        let leaf = self.tree.append(commitment)?;
        if self.recent_roots.len() == ROOT_HISTORY_MAX {
            self.recent_roots.pop_front();
        }
        self.recent_roots.push_back(self.tree.root());
        Ok(leaf)
    }
}
