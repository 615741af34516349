//! The rollup rail: payouts inside Tickrate's asset rollup, for wallets with the `assets`
//! feature.
//!
//! The network's treasury holds outputs of the payout token (an ERC-20) in the rollup: it funds
//! them by a bridge deposit to its own asset address ([`RollupRail::fund`]). For each payout the
//! rail proves and submits one transfer from treasury outputs to the wallet's asset address,
//! which the wallet registered itself in the `PayoutDirectory` contract
//! (`upper_chain::rollup::EvmAssets::set_payout_recipient`); a wallet that registered none, or an
//! address that is not a valid key, is refused before anything is proven.
//!
//! The rail keeps no copy of the rollup: before each payout it rebuilds the output tree from the
//! rollup's events ([`RollupLedger`]) and checks it reaches the root the contract holds. The
//! treasury's spendable outputs are its deposits (public) and the change of its earlier payouts,
//! which it writes to its notes file before submitting the transfer that creates them.
//!
//! The payout's output to the wallet is blinded by a hash of the payout's id ([`payout_output`]),
//! so it is found again in the tree: a payout asked twice (a crash between the transfer and its
//! receipt) answers with the first transfer's reference instead of paying again, and the
//! wallet's owner can rebuild the output it was paid (the report gives period, wallet and
//! amount) to spend it.

use std::{
    collections::{HashMap, HashSet},
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use ark_ec::AffineRepr;
use ark_ed_on_bn254::EdwardsAffine;
use ark_ff::PrimeField;
use ark_rand_chacha::ChaCha20Rng;
use ark_std::rand::SeedableRng;
use assets::{
    AssetsError, Fr, asset,
    deposit::canonical,
    keys::{self, SpendingKey},
    output::{Output, nullifier},
    prover::{DepositProver, Prover},
    solidity,
    state::{Deposit, DepositPublic, DepositWitness},
    transfer::{InputNote, Insertion, TransferPlan, TransferWitness},
    tree::{MerklePath, OutputTree},
};
use primitives::{Address, B256, U256, keccak256};
use serde::{Deserialize, Serialize};
use upper_chain::rollup::{BridgeDeposit, EvmAssets, RollupError, TransferInputs, TreeUpdate};

use crate::payout::{Payout, PayoutMethod, PayoutRail};

/// How many times a payout is proven again when another update moved the rollup's root between
/// the rail reading it and its transfer landing.
const STALE_RETRIES_MAX: u32 = 3;

/// Why the rollup rail refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RollupRailError {
    /// The rollup or the directory refused, or the endpoint failed.
    #[error("rollup: {0}")]
    Chain(#[from] RollupError),
    /// The assets engine refused (a proof, a path, a full tree).
    #[error("assets: {0}")]
    Assets(#[from] AssetsError),
    /// The wallet registered no asset address in the payout directory.
    #[error(
        "wallet {wallet} registered no asset address in the payout directory {directory} \
         (its owner sets one with `tickrate-accounting set-payout-recipient`)"
    )]
    NoRecipient {
        /// The wallet.
        wallet: Address,
        /// The directory.
        directory: Address,
    },
    /// The wallet's registered asset address is not a key anyone can spend with.
    #[error("wallet {wallet}'s asset address is not a valid key: {why}")]
    BadRecipient {
        /// The wallet.
        wallet: Address,
        /// What is wrong.
        why: &'static str,
    },
    /// The treasury's outputs do not cover the payout.
    #[error(
        "the treasury's two largest rollup outputs hold {available}, the payout needs {needed}: \
         fund it (`tickrate-accounting fund-rollup`)"
    )]
    Insufficient {
        /// What the payout needs.
        needed: U256,
        /// What two outputs can spend.
        available: U256,
    },
    /// The tree rebuilt from the rollup's events is not the one whose root it holds.
    #[error("the tree rebuilt from the rollup's events has root {rebuilt}, the rollup {held}")]
    Diverged {
        /// The rebuilt root.
        rebuilt: U256,
        /// The rollup's.
        held: U256,
    },
    /// A minted deposit the bridge has no record of.
    #[error("the rollup minted deposit {0}, which the bridge's events do not show")]
    UnknownDeposit(u64),
    /// The notes file could not be read or written.
    #[error("treasury notes {path}: {message}")]
    Notes {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

/// The output a payout creates for its wallet: the wallet's asset address, the payout asset, the
/// amount, and a blinding derived from the payout's id, so the payer finds it again and the
/// wallet's owner can rebuild it to spend it.
pub fn payout_output(
    payout_id: B256,
    recipient: keys::Address,
    asset: U256,
    amount: U256,
) -> Output {
    Output {
        owner: recipient,
        asset,
        amount,
        blinding: derive(b"tickrate:payout-output", &[payout_id.as_slice()]),
    }
}

/// A field element from a domain and parts (keccak256, reduced).
fn derive(domain: &[u8], parts: &[&[u8]]) -> Fr {
    Fr::from_be_bytes_mod_order(seed_of(domain, parts).as_slice())
}

fn seed_of(domain: &[u8], parts: &[&[u8]]) -> B256 {
    let mut bytes = domain.to_vec();
    for part in parts {
        bytes.extend_from_slice(part);
    }
    keccak256(&bytes)
}

/// An asset address read from the chain, checked: canonical words, a point on Baby Jubjub in
/// its prime-order subgroup (an output to anything else could never be spent).
pub fn recipient_address(words: [U256; 3]) -> Result<keys::Address, &'static str> {
    let [x, y, nullifier_key_hash] =
        words.map(|word| canonical(word).map_err(|_| "a word is not below the field modulus"));
    let signing_key = EdwardsAffine::new_unchecked(x?, y?);
    if !signing_key.is_on_curve() {
        return Err("the key is not on Baby Jubjub");
    }
    if !signing_key.is_in_correct_subgroup_assuming_on_curve() || signing_key.is_zero() {
        return Err("the key is not in the prime-order subgroup");
    }
    Ok(keys::Address {
        signing_key,
        nullifier_key_hash: nullifier_key_hash?,
    })
}

/// Where a leaf of the tree came from: the transaction that appended it and the root after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeafOrigin {
    /// The transaction.
    pub transaction: B256,
    /// The rollup's root after it.
    pub root: U256,
}

/// The rollup's output tree and spent nullifiers, rebuilt from its events and checked against
/// the root it holds.
pub struct RollupLedger {
    tree: OutputTree,
    leaves: HashMap<Fr, u64>,
    origins: Vec<LeafOrigin>,
    spent: HashSet<Fr>,
    deposits: Vec<BridgeDeposit>,
    deposits_minted: u64,
}

impl RollupLedger {
    /// Reads every deposit of the bridge and every update of the rollup, and replays them.
    pub fn read(chain: &EvmAssets) -> Result<RollupLedger, RollupRailError> {
        let deposits = chain.deposits(0)?;
        let mut ledger = RollupLedger {
            tree: OutputTree::new(),
            leaves: HashMap::new(),
            origins: Vec::new(),
            spent: HashSet::new(),
            deposits,
            deposits_minted: 0,
        };
        for update in chain.tree_updates()? {
            match update {
                TreeUpdate::DepositMinted {
                    deposit_id,
                    new_root,
                    transaction,
                    ..
                } => {
                    let event = ledger
                        .deposits
                        .get(deposit_id as usize)
                        .copied()
                        .ok_or(RollupRailError::UnknownDeposit(deposit_id))?;
                    let commitment = deposit_of(&event)?.output().commitment();
                    ledger.append(commitment, transaction, new_root)?;
                    ledger.deposits_minted += 1;
                }
                TreeUpdate::TransferApplied {
                    new_root,
                    nullifiers,
                    commitments,
                    transaction,
                    ..
                } => {
                    for spent in nullifiers {
                        ledger.spent.insert(canonical(spent)?);
                    }
                    ledger.append(canonical(commitments[0])?, transaction, new_root)?;
                    // A withdraw's second commitment is zero and never a leaf.
                    if !commitments[1].is_zero() {
                        ledger.append(canonical(commitments[1])?, transaction, new_root)?;
                    }
                }
            }
        }
        let rebuilt = solidity::fr_to_u256(ledger.tree.root());
        let held = chain.root()?;
        if rebuilt != held {
            return Err(RollupRailError::Diverged { rebuilt, held });
        }
        Ok(ledger)
    }

    fn append(
        &mut self,
        commitment: Fr,
        transaction: B256,
        root: U256,
    ) -> Result<(), RollupRailError> {
        let leaf = self.tree.append(commitment)?;
        // The first leaf with a commitment is the one that can be spent first; equal
        // commitments have different nullifiers (the leaf index is in them).
        self.leaves.entry(commitment).or_insert(leaf);
        self.origins.push(LeafOrigin { transaction, root });
        Ok(())
    }

    /// The current root.
    pub fn root(&self) -> Fr {
        self.tree.root()
    }

    /// Leaves in the tree.
    pub fn leaf_count(&self) -> u64 {
        self.tree.len()
    }

    /// The leaf holding `output`, if it was appended.
    pub fn leaf_of(&self, output: &Output) -> Option<u64> {
        self.leaves.get(&output.commitment()).copied()
    }

    /// The transaction and root that appended leaf `leaf`.
    pub fn origin(&self, leaf: u64) -> Option<LeafOrigin> {
        self.origins.get(leaf as usize).copied()
    }

    /// Whether `nullifier` was spent.
    pub fn is_spent(&self, nullifier: &Fr) -> bool {
        self.spent.contains(nullifier)
    }

    /// The path of leaf `leaf` to the current root.
    pub fn path(&self, leaf: u64) -> Result<MerklePath, AssetsError> {
        self.tree.path(leaf)
    }

    /// The bridge's deposits (minted or not), in order.
    pub fn deposits(&self) -> &[BridgeDeposit] {
        &self.deposits
    }

    /// Deposits the rollup minted so far.
    pub fn deposits_minted(&self) -> u64 {
        self.deposits_minted
    }
}

fn deposit_of(event: &BridgeDeposit) -> Result<Deposit, AssetsError> {
    Deposit::from_event(event.deposit_id, event.owner, event.asset, event.amount)
}

/// A change output the treasury made, as its notes file holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Note {
    /// The payout whose transfer makes it.
    payout: B256,
    /// The asset type.
    asset: U256,
    /// The amount.
    amount: U256,
    /// The blinding, as a field element's integer.
    blinding: U256,
}

/// A treasury output that can be spent now.
#[derive(Clone, Debug)]
struct Spendable {
    output: Output,
    leaf: u64,
}

/// Pays by transfers inside the asset rollup, from the treasury's outputs there.
pub struct RollupRail {
    chain: EvmAssets,
    directory: Address,
    token: Address,
    treasury_seed: [u8; 32],
    treasury: SpendingKey,
    prover: Prover,
    deposit_prover: DepositProver,
    notes_path: PathBuf,
}

impl std::fmt::Debug for RollupRail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RollupRail")
            .field("chain", &self.chain)
            .field("directory", &self.directory)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl RollupRail {
    /// A rail paying `token` (an ERC-20 bridged into the rollup) through `chain` (the bridge
    /// and rollup, sent to by the treasury's upper-chain key) to the asset addresses wallets
    /// registered in `directory`. The treasury's asset key comes from `treasury_seed`; proofs
    /// are made with the key files in `prover_keys` (`assets-setup`'s output, the keys of the
    /// rollup's verifiers); the treasury's change outputs are kept in `notes_path`.
    pub fn new(
        chain: EvmAssets,
        directory: Address,
        token: Address,
        treasury_seed: [u8; 32],
        prover_keys: &Path,
        notes_path: PathBuf,
    ) -> Result<RollupRail, RollupRailError> {
        Ok(RollupRail {
            chain,
            directory,
            token,
            treasury_seed,
            treasury: SpendingKey::from_seed(treasury_seed),
            prover: Prover::from_file(prover_keys)?,
            deposit_prover: DepositProver::from_file(prover_keys)?,
            notes_path,
        })
    }

    /// The payout asset's type.
    pub fn asset(&self) -> U256 {
        asset::erc20(self.token)
    }

    /// The treasury's asset address.
    pub fn treasury_address(&self) -> keys::Address {
        self.treasury.address()
    }

    /// The bridge and rollup the rail pays through.
    pub fn chain(&self) -> &EvmAssets {
        &self.chain
    }

    /// Locks `amount` of the payout token (from the treasury's upper-chain account, which must
    /// hold it) in the bridge for the treasury's asset address, and mints it in the rollup.
    pub fn fund(&self, amount: U256) -> Result<(), RollupRailError> {
        let owner = solidity::address_words(&self.treasury.address());
        self.chain.approve_erc20(self.token, amount)?;
        self.chain.deposit_erc20(self.token, amount, owner)?;
        self.mint_pending()?;
        Ok(())
    }

    /// Mints every deposit the bridge recorded and the rollup did not mint yet, in order, each
    /// with its proof (deposits are public: anyone may mint them). Returns how many it minted.
    pub fn mint_pending(&self) -> Result<u64, RollupRailError> {
        let mut ledger = RollupLedger::read(&self.chain)?;
        let pending: Vec<BridgeDeposit> = ledger
            .deposits
            .iter()
            .skip(ledger.deposits_minted as usize)
            .copied()
            .collect();
        for event in &pending {
            let deposit = deposit_of(event)?;
            let commitment = deposit.output().commitment();
            let (mut paths, new_root) = ledger.tree.append_paths(&[commitment])?;
            let path = paths.pop().ok_or(AssetsError::InsertionInvalid)?;
            let witness = DepositWitness {
                public: DepositPublic {
                    old_root: ledger.root(),
                    new_root,
                    leaf_index: ledger.leaf_count(),
                    deposit,
                },
                path,
            };
            let mut rng = self.rng(b"deposit", &event.deposit_id.to_be_bytes());
            let minted = self.deposit_prover.prove(&witness, &mut rng)?;
            let new_root_word = solidity::fr_to_u256(minted.public.new_root);
            self.chain.mint_deposit(
                event,
                new_root_word,
                solidity::proof_to_words(&minted.proof),
            )?;
            ledger.append(commitment, B256::ZERO, new_root_word)?;
            ledger.deposits_minted += 1;
            tracing::info!(deposit = event.deposit_id, "deposit minted in the rollup");
        }
        Ok(pending.len() as u64)
    }

    /// What the treasury can spend in the rollup now, in the payout asset.
    pub fn balance(&self) -> Result<U256, RollupRailError> {
        let ledger = RollupLedger::read(&self.chain)?;
        Ok(self
            .spendable(&ledger)?
            .iter()
            .map(|spendable| spendable.output.amount)
            .fold(U256::ZERO, |sum, amount| sum.saturating_add(amount)))
    }

    /// The treasury's outputs of the payout asset that are in the tree and unspent, largest
    /// first.
    fn spendable(&self, ledger: &RollupLedger) -> Result<Vec<Spendable>, RollupRailError> {
        let me = self.treasury.address();
        let asset = self.asset();
        let mut candidates: Vec<Output> = Vec::new();
        for event in &ledger.deposits {
            if let Ok(deposit) = deposit_of(event)
                && deposit.owner == me
                && deposit.asset == asset
            {
                candidates.push(deposit.output());
            }
        }
        for note in self.read_notes()? {
            if note.asset == asset {
                candidates.push(Output {
                    owner: me,
                    asset,
                    amount: note.amount,
                    blinding: canonical(note.blinding)?,
                });
            }
        }
        let mut spendable: Vec<Spendable> = candidates
            .into_iter()
            .filter(|output| !output.amount.is_zero())
            .filter_map(|output| {
                let leaf = ledger.leaf_of(&output)?;
                let spent = nullifier(self.treasury.nullifier_key(), output.commitment(), leaf);
                (!ledger.is_spent(&spent)).then_some(Spendable { output, leaf })
            })
            .collect();
        spendable.sort_by_key(|spendable| std::cmp::Reverse(spendable.output.amount));
        let mut seen = HashSet::new();
        spendable.retain(|spendable| seen.insert(spendable.leaf));
        Ok(spendable)
    }

    fn read_notes(&self) -> Result<Vec<Note>, RollupRailError> {
        let error = |message: String| RollupRailError::Notes {
            path: self.notes_path.display().to_string(),
            message,
        };
        let file = match File::open(&self.notes_path) {
            Ok(file) => file,
            Err(missing) if missing.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Vec::new());
            }
            Err(other) => return Err(error(other.to_string())),
        };
        let mut notes = Vec::new();
        for (index, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| error(e.to_string()))?;
            if line.trim().is_empty() {
                continue;
            }
            let note: Note = serde_json::from_str(&line)
                .map_err(|e| error(format!("line {}: {e}", index + 1)))?;
            notes.push(note);
        }
        Ok(notes)
    }

    /// Appends a note and syncs it: it must be on disk before the transfer making its output
    /// is sent, or a crash would leave the treasury an output it does not know it has.
    fn write_note(&self, note: &Note) -> Result<(), RollupRailError> {
        let error = |message: String| RollupRailError::Notes {
            path: self.notes_path.display().to_string(),
            message,
        };
        let mut line = serde_json::to_string(note).map_err(|e| error(e.to_string()))?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.notes_path)
            .map_err(|e| error(e.to_string()))?;
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| error(e.to_string()))
    }

    /// Proof randomness: secret (the treasury's seed) and different for every proof.
    fn rng(&self, what: &[u8], id: &[u8]) -> ChaCha20Rng {
        ChaCha20Rng::from_seed(
            seed_of(b"tickrate:payout-proof", &[&self.treasury_seed, what, id]).0,
        )
    }

    /// The wallet's registered asset address, checked.
    pub fn recipient(&self, wallet: Address) -> Result<keys::Address, RollupRailError> {
        let words = self.chain.payout_recipient(self.directory, wallet)?.ok_or(
            RollupRailError::NoRecipient {
                wallet,
                directory: self.directory,
            },
        )?;
        recipient_address(words).map_err(|why| RollupRailError::BadRecipient { wallet, why })
    }

    /// Pays one payout: the reference of the transfer that paid it, made now or before.
    pub fn pay_payout(&self, payout: &Payout) -> Result<String, RollupRailError> {
        let recipient = self.recipient(payout.wallet)?;
        let amount = U256::from(payout.amount);
        let paid = payout_output(payout.id(), recipient, self.asset(), amount);
        let mut attempt = 0;
        loop {
            let ledger = RollupLedger::read(&self.chain)?;
            if let Some(reference) = reference(&ledger, &paid) {
                tracing::info!(id = %payout.id(), "rollup payout found made already");
                return Ok(reference);
            }
            match self.transfer(&ledger, payout, paid) {
                Err(RollupRailError::Chain(
                    RollupError::StaleRoot { .. } | RollupError::WrongLeafIndex { .. },
                )) if attempt < STALE_RETRIES_MAX => {
                    attempt += 1;
                    tracing::warn!(id = %payout.id(), attempt, "the rollup moved: proving again");
                }
                Err(error) => return Err(error),
                Ok(()) => {
                    let ledger = RollupLedger::read(&self.chain)?;
                    return reference(&ledger, &paid).ok_or_else(|| {
                        RollupRailError::Chain(RollupError::Chain(upper_chain::ChainError::Rpc(
                            "the payout's transfer landed but its output is not in the tree".into(),
                        )))
                    });
                }
            }
        }
    }

    /// Proves and submits the transfer of `paid` from the treasury's outputs.
    fn transfer(
        &self,
        ledger: &RollupLedger,
        payout: &Payout,
        paid: Output,
    ) -> Result<(), RollupRailError> {
        let spendable = self.spendable(ledger)?;
        let inputs: Vec<&Spendable> = match spendable.first() {
            Some(largest) if largest.output.amount >= paid.amount => vec![largest],
            _ => spendable.iter().take(2).collect(),
        };
        let available = inputs
            .iter()
            .map(|input| input.output.amount)
            .fold(U256::ZERO, |sum, amount| sum.saturating_add(amount));
        if available < paid.amount {
            return Err(RollupRailError::Insufficient {
                needed: paid.amount,
                available,
            });
        }
        let me = self.treasury.address();
        let asset = self.asset();
        let id = payout.id();
        let mut notes: Vec<InputNote> = Vec::with_capacity(2);
        for input in &inputs {
            notes.push(InputNote {
                output: input.output,
                leaf_index: input.leaf,
                path: ledger.path(input.leaf)?,
            });
        }
        if notes.len() < 2 {
            // A fresh blinding per payout and root, so the dummy's nullifier is never reused.
            let blinding = derive(
                b"tickrate:payout-dummy",
                &[
                    &self.treasury_seed,
                    id.as_slice(),
                    &ledger.leaf_count().to_be_bytes(),
                ],
            );
            notes.push(InputNote::dummy(me, asset, blinding));
        }
        let change = Output {
            owner: me,
            asset,
            amount: available - paid.amount,
            blinding: derive(
                b"tickrate:payout-change",
                &[&self.treasury_seed, id.as_slice()],
            ),
        };
        let inputs: [InputNote; 2] = notes
            .try_into()
            .map_err(|_| AssetsError::InsertionInvalid)?;
        let plan = TransferPlan {
            root: ledger.root(),
            inputs,
            outputs: [paid, change],
            withdraw_to: None,
        };
        let transfer = plan.sign([&self.treasury, &self.treasury]);
        let (paths, new_root) = ledger.tree.append_paths(&transfer.effects.appended())?;
        let paths: [MerklePath; 2] = paths
            .try_into()
            .map_err(|_| AssetsError::InsertionInvalid)?;
        let witness = TransferWitness {
            transfer,
            insertion: Insertion {
                old_root: ledger.root(),
                new_root,
                leaf_index: ledger.leaf_count(),
                paths,
            },
        };
        let mut proof_id = id.to_vec();
        proof_id.extend_from_slice(&ledger.leaf_count().to_be_bytes());
        let mut rng = self.rng(b"transfer", &proof_id);
        let proven = self.prover.prove(&witness, &mut rng)?;
        self.write_note(&Note {
            payout: id,
            asset,
            amount: change.amount,
            blinding: solidity::fr_to_u256(change.blinding),
        })?;
        let public = &proven.public;
        let word = solidity::fr_to_u256;
        let inputs = TransferInputs {
            old_root: word(public.old_root),
            new_root: word(public.new_root),
            leaf_index: public.leaf_index,
            nullifiers: public.effects.nullifiers.map(word),
            commitments: public.effects.commitments.map(word),
            recipient: Address::ZERO,
            asset: U256::ZERO,
            amount: U256::ZERO,
        };
        self.chain
            .transfer(&inputs, solidity::proof_to_words(&proven.proof))?;
        tracing::info!(%id, wallet = %payout.wallet, amount = %paid.amount, "rollup payout made");
        Ok(())
    }
}

/// `rollup tx HASH root ROOT leaf N` of the leaf holding `paid`, if it is in the tree.
fn reference(ledger: &RollupLedger, paid: &Output) -> Option<String> {
    let leaf = ledger.leaf_of(paid)?;
    let origin = ledger.origin(leaf)?;
    Some(format!(
        "rollup tx {} root {:#066x} leaf {leaf}",
        origin.transaction, origin.root
    ))
}

impl PayoutRail for RollupRail {
    fn method(&self) -> PayoutMethod {
        PayoutMethod::Rollup
    }

    fn pay(&mut self, payout: &Payout) -> Result<String, String> {
        self.pay_payout(payout).map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_key_in_the_subgroup_is_a_recipient() {
        let owner = SpendingKey::from_seed([5; 32]).address();
        let words = solidity::address_words(&owner);
        assert_eq!(recipient_address(words), Ok(owner));
        let mut off_curve = words;
        off_curve[0] += U256::from(1);
        assert!(recipient_address(off_curve).is_err());
        let mut too_large = words;
        too_large[2] = U256::MAX;
        assert!(recipient_address(too_large).is_err());
        // The identity (0, 1) is on the curve and in every subgroup, but no one's key.
        let identity = [U256::ZERO, U256::from(1), words[2]];
        assert!(recipient_address(identity).is_err());
    }

    #[test]
    fn a_payout_output_is_the_same_for_its_payout_and_differs_between_payouts() {
        let owner = SpendingKey::from_seed([6; 32]).address();
        let asset = U256::from(9);
        let amount = U256::from(1_000);
        let first = payout_output(B256::repeat_byte(1), owner, asset, amount);
        assert_eq!(
            first,
            payout_output(B256::repeat_byte(1), owner, asset, amount)
        );
        let second = payout_output(B256::repeat_byte(2), owner, asset, amount);
        assert_ne!(first.commitment(), second.commitment());
        assert_eq!(
            (first.owner, first.asset, first.amount),
            (owner, asset, amount)
        );
    }
}
