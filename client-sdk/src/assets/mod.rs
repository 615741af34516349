//! The asset wallet (feature `assets`): game assets bridged from the upper chain into Tickrate's
//! asset rollup, held as outputs only their owner can spend, moved by transfers proven in zero
//! knowledge, and taken back out by withdrawals claimed on the upper chain.
//!
//! An [`AssetWallet`] holds one owner's keys ([`AssetKeys`], a key file), the rollup's contracts
//! on the upper chain (`upper_chain::rollup::EvmAssets`) and the Groth16 proving keys (a key
//! directory from `assets-setup`). It keeps a replica of the rollup's state, rebuilt from the
//! chain's events ([`AssetWallet::sync`]): every deposit minted (its data is public in the
//! bridge's `Deposit` event), every transfer applied (nullifiers and commitments), every note
//! and withdrawal; each step is checked to give the root the rollup reported, so a node that
//! serves a wrong history is caught. Its own outputs are the deposits made to its address and
//! the outputs whose notes its viewing key opens (`assets::note`); those whose nullifiers are
//! published are spent. [`AssetWallet::balances`] sums the rest per asset type.
//!
//! [`AssetWallet::transfer`] and [`AssetWallet::withdraw`] choose inputs (one output that covers
//! the amount, or two), pay the change back to the wallet, seal a note for every new output,
//! sign, prove against the replica's current root and submit with the notes. If another update
//! lands first the proof is stale; the wallet syncs and proves again, a bounded number of times.
//! A withdrawal is then claimed ([`AssetWallet::claim`]): the bridge releases the tokens to the
//! upper-chain account named in it. Deposits lock tokens in the bridge, and the wallet mints
//! them into the rollup itself (a deposit proof; minting is open to anyone, in the bridge's
//! order), so no operator is needed for the round trip.
//!
//! Proving takes seconds; the wallet reports what it is doing through a [`Stage`] callback, which
//! is how `tickrate assets` draws its progress bar.

mod keyfile;

pub use keyfile::{AssetKeyFileError, AssetKeys, unhex32};

use std::{collections::BTreeMap, path::PathBuf, sync::OnceLock};

use ark_rand_chacha::ChaCha20Rng;
use ark_std::{UniformRand, rand::SeedableRng};
use assets::{
    AssetsError, Fr,
    deposit::canonical,
    keys::SpendingKey,
    note::{NOTE_BYTES, NoteError, PaymentAddress, ViewingKey},
    output::{Output, nullifier},
    prover::{DepositProver, Prover, TransferTx},
    solidity,
    state::{AssetState, Deposit},
    transfer::{InputNote, TransferPlan, TransferPublic},
};
use primitives::{Address, U256};
use tracing::{debug, info, warn};
use upper_chain::rollup::{
    BridgeDeposit, EvmAssets, ProvenWithdrawal, RollupError, RollupEvent, TransferInputs,
};

/// Times a transfer is proven again after another update moved the root first.
pub const STALE_RETRIES_MAX: u32 = 3;

/// What the wallet is doing, reported while it works (proofs take seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Reading the rollup's events and replaying them.
    Syncing,
    /// Reading a proving key from the key directory.
    LoadingKey(&'static str),
    /// Proving (`what`: a deposit mint, a transfer, a withdraw).
    Proving(&'static str),
    /// Sending a transaction to the upper chain and waiting for it.
    Submitting(&'static str),
}

/// Why a wallet operation failed. A failed operation spends nothing.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The upper chain refused or could not be reached.
    #[error("upper chain: {0}")]
    Chain(#[from] RollupError),
    /// The assets engine refused (a transfer that would not verify, a bad key file).
    #[error("assets: {0}")]
    Assets(#[from] AssetsError),
    /// The rollup's published history does not replay: an event names an unknown deposit, or
    /// an update does not give the root the rollup reported.
    #[error("the rollup's history does not replay: {0}")]
    Inconsistent(String),
    /// Not enough of the asset in unspent outputs.
    #[error("insufficient funds of asset {asset:#x}: {have} held, {want} asked")]
    InsufficientFunds {
        /// The asset type.
        asset: U256,
        /// The wallet's unspent total.
        have: U256,
        /// The amount asked.
        want: U256,
    },
    /// The amount is held, but spread over more outputs than one transfer spends (two).
    #[error(
        "asset {asset:#x}: {want} is spread over more than two outputs; send some to yourself first"
    )]
    Fragmented {
        /// The asset type.
        asset: U256,
        /// The amount asked.
        want: U256,
    },
    /// A transfer, withdrawal or deposit of nothing.
    #[error("the amount is zero")]
    ZeroAmount,
    /// Other updates kept landing first.
    #[error("the rollup's root moved {0} times while proving; try again")]
    KeptStale(u32),
    /// The withdrawal to claim is not one the rollup proved for this wallet.
    #[error("withdrawal {0} is not proven")]
    UnknownWithdrawal(u64),
    /// The deposit to mint is not on the bridge.
    #[error("deposit {0} is not on the bridge")]
    UnknownDeposit(u64),
    /// Sealing a note failed.
    #[error("note: {0}")]
    Note(#[from] NoteError),
}

/// A field element from a word the chain published, refused if not canonical.
fn field(value: U256) -> Result<Fr, WalletError> {
    canonical(value).map_err(|_| WalletError::Inconsistent(format!("{value} is not a scalar")))
}

/// Proving keys of a key directory, read on first use (the transfer key is large).
struct ProvingKeys {
    directory: PathBuf,
    transfer: OnceLock<Prover>,
    deposit: OnceLock<DepositProver>,
}

impl ProvingKeys {
    fn transfer(&self, report: &mut dyn FnMut(Stage)) -> Result<&Prover, AssetsError> {
        if let Some(prover) = self.transfer.get() {
            return Ok(prover);
        }
        report(Stage::LoadingKey(assets::prover::PROVING_KEY_FILE));
        let prover = Prover::from_file(&self.directory)?;
        Ok(self.transfer.get_or_init(|| prover))
    }

    fn deposit(&self, report: &mut dyn FnMut(Stage)) -> Result<&DepositProver, AssetsError> {
        if let Some(prover) = self.deposit.get() {
            return Ok(prover);
        }
        report(Stage::LoadingKey(assets::prover::DEPOSIT_PROVING_KEY_FILE));
        let prover = DepositProver::from_file(&self.directory)?;
        Ok(self.deposit.get_or_init(|| prover))
    }
}

/// An owned output and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnedOutput {
    /// Its leaf index.
    pub leaf_index: u64,
    /// The output.
    pub output: Output,
    /// Whether its nullifier is published.
    pub spent: bool,
}

/// What the wallet knows of the rollup, rebuilt from the chain's events.
#[derive(Debug, Clone, Default)]
struct Replica {
    state: AssetState,
    /// The next block to read events from.
    next_block: u64,
    /// The bridge's deposits, by id.
    deposits: Vec<BridgeDeposit>,
    /// This wallet's outputs, by leaf.
    owned: BTreeMap<u64, Output>,
    /// Every withdrawal the rollup proved.
    withdrawals: Vec<ProvenWithdrawal>,
}

/// One owner's asset wallet on one rollup (see the module doc).
pub struct AssetWallet {
    spending: SpendingKey,
    viewing: ViewingKey,
    account: Address,
    chain: EvmAssets,
    provers: ProvingKeys,
    replica: Replica,
}

impl std::fmt::Debug for AssetWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AssetWallet")
            .field("account", &self.account)
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

/// Where a wallet finds the rollup and its proving keys.
#[derive(Debug, Clone)]
pub struct RollupConfig {
    /// The upper chain's JSON-RPC URL (`http(s)://`).
    pub url: String,
    /// Its chain id.
    pub chain_id: u64,
    /// The bridge contract (it names its rollup).
    pub bridge: Address,
    /// The block the bridge was deployed in (events are read from there).
    pub deploy_block: u64,
    /// The key directory of `assets-setup` (`transfer.pk`, `deposit.pk`).
    pub proving_keys: PathBuf,
}

impl AssetWallet {
    /// Opens the wallet of `keys` on the rollup of `config`, and syncs it.
    pub fn open(keys: &AssetKeys, config: &RollupConfig) -> Result<Self, WalletError> {
        let chain = EvmAssets::connect(
            &config.url,
            config.chain_id,
            keys.account(),
            config.bridge,
            config.deploy_block,
        )?;
        let spending = keys.spending_key();
        let mut wallet = Self {
            viewing: spending.viewing_key(),
            spending,
            account: keys.account().address(),
            chain,
            provers: ProvingKeys {
                directory: config.proving_keys.clone(),
                transfer: OnceLock::new(),
                deposit: OnceLock::new(),
            },
            replica: Replica {
                next_block: config.deploy_block,
                ..Replica::default()
            },
        };
        wallet.sync()?;
        Ok(wallet)
    }

    /// Where others send this wallet assets.
    pub fn payment_address(&self) -> PaymentAddress {
        self.viewing.payment_address()
    }

    /// The upper-chain account that signs this wallet's transactions.
    pub fn account(&self) -> Address {
        self.account
    }

    /// The rollup's contracts, as this wallet's account (token approvals, balances upstream).
    pub fn chain(&self) -> &EvmAssets {
        &self.chain
    }

    /// The replica of the rollup's state the wallet proves against.
    pub fn state(&self) -> &AssetState {
        &self.replica.state
    }

    /// Reads the rollup's new events and replays them (see the module doc).
    pub fn sync(&mut self) -> Result<(), WalletError> {
        // The history first: every deposit it mints was recorded before it, so the deposits
        // read next include them all.
        let history = self.chain.history(self.replica.next_block)?;
        let known = self.replica.deposits.len() as u64;
        self.replica.deposits.extend(self.chain.deposits(known)?);
        let mut replica = self.replica.clone();
        for event in history.events {
            self.replay(&mut replica, event)?;
        }
        // A node whose head is behind the last one read (another node, a restart) must not
        // make the wallet read the same events twice.
        replica.next_block = replica.next_block.max(history.to_block + 1);
        debug!(
            leaves = replica.state.leaf_count(),
            owned = replica.owned.len(),
            "asset wallet synced"
        );
        self.replica = replica;
        Ok(())
    }

    fn replay(&self, replica: &mut Replica, event: RollupEvent) -> Result<(), WalletError> {
        let inconsistent = |error: AssetsError| WalletError::Inconsistent(error.to_string());
        match event {
            RollupEvent::DepositMinted {
                deposit_id,
                leaf_index,
                new_root,
            } => {
                let recorded = usize::try_from(deposit_id)
                    .ok()
                    .and_then(|index| replica.deposits.get(index))
                    .ok_or_else(|| {
                        WalletError::Inconsistent(format!("deposit {deposit_id} minted, not made"))
                    })?;
                let deposit = Deposit::from_event(
                    deposit_id,
                    recorded.owner,
                    recorded.asset,
                    recorded.amount,
                )
                .map_err(inconsistent)?;
                replica
                    .state
                    .follow_deposit(&deposit, leaf_index, field(new_root)?)
                    .map_err(inconsistent)?;
                if deposit.owner == self.spending.address() {
                    replica.owned.insert(leaf_index, deposit.output());
                }
            }
            RollupEvent::TransferApplied {
                new_root,
                leaf_index,
                nullifiers,
                commitments,
            } => {
                let nullifiers = [field(nullifiers[0])?, field(nullifiers[1])?];
                let commitments = [field(commitments[0])?, field(commitments[1])?];
                replica
                    .state
                    .follow_transfer(leaf_index, nullifiers, commitments, field(new_root)?)
                    .map_err(inconsistent)?;
            }
            RollupEvent::OutputNote { leaf_index, note } => {
                // Anyone may publish a note: one that does not open to its leaf is passed over.
                let Some(commitment) = replica.state.leaf(leaf_index) else {
                    warn!(leaf_index, "a note for a leaf not in the tree");
                    return Ok(());
                };
                match self.viewing.open(commitment, &note) {
                    Ok(output) => {
                        replica.owned.insert(leaf_index, output);
                    }
                    Err(NoteError::Undecryptable) => {}
                    Err(error) => warn!(leaf_index, %error, "a note for this wallet refused"),
                }
            }
            RollupEvent::WithdrawalProven(withdrawal) => replica.withdrawals.push(withdrawal),
        }
        Ok(())
    }

    /// Every output this wallet owns, spent or not, by leaf.
    pub fn outputs(&self) -> Vec<OwnedOutput> {
        let key = self.spending.nullifier_key();
        self.replica
            .owned
            .iter()
            .map(|(leaf_index, output)| OwnedOutput {
                leaf_index: *leaf_index,
                output: *output,
                spent: self.replica.state.is_spent(&nullifier(
                    key,
                    output.commitment(),
                    *leaf_index,
                )),
            })
            .collect()
    }

    /// The unspent outputs of `asset` holding something.
    fn spendable(&self, asset: U256) -> Vec<OwnedOutput> {
        self.outputs()
            .into_iter()
            .filter(|owned| {
                !owned.spent && owned.output.asset == asset && !owned.output.amount.is_zero()
            })
            .collect()
    }

    /// Unspent amounts per asset type (as of the last sync).
    pub fn balances(&self) -> BTreeMap<U256, U256> {
        let mut balances = BTreeMap::new();
        for owned in self.outputs() {
            if owned.spent || owned.output.amount.is_zero() {
                continue;
            }
            let sum: &mut U256 = balances.entry(owned.output.asset).or_default();
            *sum = sum.saturating_add(owned.output.amount);
        }
        balances
    }

    /// Deposits made to this wallet that are not minted into the rollup yet.
    pub fn pending_deposits(&self) -> Vec<BridgeDeposit> {
        let owner = solidity::address_words(&self.spending.address());
        self.replica
            .deposits
            .iter()
            .skip(self.replica.state.deposits_minted() as usize)
            .filter(|deposit| deposit.owner == owner)
            .copied()
            .collect()
    }

    /// Withdrawals to `recipient` the rollup proved and the bridge has not released yet.
    pub fn unclaimed_withdrawals(
        &self,
        recipient: Address,
    ) -> Result<Vec<ProvenWithdrawal>, WalletError> {
        let mut unclaimed = Vec::new();
        for withdrawal in &self.replica.withdrawals {
            if withdrawal.recipient == recipient
                && !self.chain.is_released(withdrawal.withdrawal_id)?
            {
                unclaimed.push(*withdrawal);
            }
        }
        Ok(unclaimed)
    }

    /// Locks `amount` of ERC-20 `token` (held by the wallet's account) in the bridge for this
    /// wallet and mints it into the rollup; returns the deposit.
    pub fn deposit_erc20(
        &mut self,
        token: Address,
        amount: U256,
        report: &mut dyn FnMut(Stage),
    ) -> Result<BridgeDeposit, WalletError> {
        if amount.is_zero() {
            return Err(WalletError::ZeroAmount);
        }
        let owner = solidity::address_words(&self.spending.address());
        report(Stage::Submitting("approve"));
        self.chain.approve_erc20(token, amount)?;
        report(Stage::Submitting("deposit"));
        let (deposit, _) = self.chain.deposit_erc20(token, amount, owner)?;
        self.mint_through(deposit.deposit_id, report)?;
        Ok(deposit)
    }

    /// Locks item `token_id` of ERC-721 `token` (owned by the wallet's account) in the bridge
    /// for this wallet and mints it into the rollup; returns the deposit.
    pub fn deposit_erc721(
        &mut self,
        token: Address,
        token_id: U256,
        report: &mut dyn FnMut(Stage),
    ) -> Result<BridgeDeposit, WalletError> {
        let owner = solidity::address_words(&self.spending.address());
        report(Stage::Submitting("approve"));
        self.chain.approve_item(token, token_id)?;
        report(Stage::Submitting("deposit"));
        let (deposit, _) = self.chain.deposit_erc721(token, token_id, owner)?;
        self.mint_through(deposit.deposit_id, report)?;
        Ok(deposit)
    }

    /// Mints every unminted bridge deposit up to `last` (in the bridge's order: the rollup
    /// takes them no other way), proving each; deposits minted meanwhile by others are skipped.
    pub fn mint_through(
        &mut self,
        last: u64,
        report: &mut dyn FnMut(Stage),
    ) -> Result<(), WalletError> {
        let mut stale = 0;
        loop {
            report(Stage::Syncing);
            self.sync()?;
            let next = self.replica.state.deposits_minted();
            if next > last {
                return Ok(());
            }
            let recorded = *usize::try_from(next)
                .ok()
                .and_then(|index| self.replica.deposits.get(index))
                .ok_or(WalletError::UnknownDeposit(next))?;
            let deposit =
                Deposit::from_event(next, recorded.owner, recorded.asset, recorded.amount)?;
            let witness = self.replica.state.prepare_deposit(&deposit)?;
            let prover = self.provers.deposit(report)?;
            report(Stage::Proving("deposit"));
            let tx = prover.prove(&witness, &mut fresh_rng())?;
            report(Stage::Submitting("mintDeposit"));
            match self.chain.mint_deposit(
                &recorded,
                solidity::fr_to_u256(tx.public.new_root),
                solidity::proof_to_words(&tx.proof),
            ) {
                Ok(_) => info!(deposit_id = next, "deposit minted"),
                // Someone minted it, or moved the root, first: sync and carry on.
                Err(
                    RollupError::DepositAlreadyMinted(_)
                    | RollupError::StaleRoot { .. }
                    | RollupError::WrongLeafIndex { .. },
                ) if stale < STALE_RETRIES_MAX => stale += 1,
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// Pays `amount` of `asset` to `to`; returns the leaf of the recipient's output.
    pub fn transfer(
        &mut self,
        to: &PaymentAddress,
        asset: U256,
        amount: U256,
        report: &mut dyn FnMut(Stage),
    ) -> Result<u64, WalletError> {
        let (public, _) = self.spend(Spend::Pay(*to), asset, amount, report)?;
        Ok(public.leaf_index)
    }

    /// Withdraws `amount` of `asset` to the upper-chain account `recipient`; returns the
    /// withdrawal the rollup proved, to [`AssetWallet::claim`].
    pub fn withdraw(
        &mut self,
        recipient: Address,
        asset: U256,
        amount: U256,
        report: &mut dyn FnMut(Stage),
    ) -> Result<ProvenWithdrawal, WalletError> {
        let (_, applied) = self.spend(Spend::Withdraw(recipient), asset, amount, report)?;
        applied.ok_or_else(|| {
            WalletError::Inconsistent("a withdraw applied without a proven withdrawal".into())
        })
    }

    /// Claims a proven withdrawal: the bridge releases its tokens to its recipient (anyone may
    /// send the claim; this wallet's account pays its gas). Returns the gas used.
    pub fn claim(
        &mut self,
        withdrawal: &ProvenWithdrawal,
        report: &mut dyn FnMut(Stage),
    ) -> Result<u64, WalletError> {
        report(Stage::Submitting("release"));
        match self.chain.release(withdrawal) {
            Err(RollupError::UnknownWithdrawal(id)) => Err(WalletError::UnknownWithdrawal(id)),
            other => Ok(other?),
        }
    }

    /// Builds, proves and submits one spend, proving again if the root moves first.
    fn spend(
        &mut self,
        spend: Spend,
        asset: U256,
        amount: U256,
        report: &mut dyn FnMut(Stage),
    ) -> Result<(TransferPublic, Option<ProvenWithdrawal>), WalletError> {
        if amount.is_zero() {
            return Err(WalletError::ZeroAmount);
        }
        let mut attempt = 0;
        loop {
            report(Stage::Syncing);
            self.sync()?;
            let (tx, notes) = self.prove_spend(spend, asset, amount, report)?;
            report(Stage::Submitting(spend.name()));
            match self.chain.transfer_with_notes(
                &transfer_inputs(&tx.public),
                solidity::proof_to_words(&tx.proof),
                &notes,
            ) {
                Ok(applied) => {
                    info!(
                        leaf = tx.public.leaf_index,
                        gas = applied.gas_used,
                        "{} applied",
                        spend.name()
                    );
                    self.sync()?;
                    return Ok((tx.public, applied.withdrawal));
                }
                Err(RollupError::StaleRoot { .. } | RollupError::WrongLeafIndex { .. })
                    if attempt < STALE_RETRIES_MAX =>
                {
                    attempt += 1;
                    debug!(attempt, "the root moved while proving; proving again");
                }
                Err(RollupError::StaleRoot { .. } | RollupError::WrongLeafIndex { .. }) => {
                    return Err(WalletError::KeptStale(attempt + 1));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }

    /// The inputs that cover `amount` of `asset`: one output if one does (the smallest such),
    /// else the two largest.
    fn choose_inputs(
        &self,
        asset: U256,
        amount: U256,
    ) -> Result<(OwnedOutput, Option<OwnedOutput>), WalletError> {
        let mut spendable = self.spendable(asset);
        spendable.sort_by_key(|owned| owned.output.amount);
        if let Some(one) = spendable.iter().find(|owned| owned.output.amount >= amount) {
            return Ok((*one, None));
        }
        let have = spendable.iter().fold(U256::ZERO, |sum, owned| {
            sum.saturating_add(owned.output.amount)
        });
        if have < amount {
            return Err(WalletError::InsufficientFunds {
                asset,
                have,
                want: amount,
            });
        }
        match spendable.as_slice() {
            [.., second, first]
                if first.output.amount.saturating_add(second.output.amount) >= amount =>
            {
                Ok((*first, Some(*second)))
            }
            _ => Err(WalletError::Fragmented {
                asset,
                want: amount,
            }),
        }
    }

    fn prove_spend(
        &self,
        spend: Spend,
        asset: U256,
        amount: U256,
        report: &mut dyn FnMut(Stage),
    ) -> Result<(TransferTx, Vec<Vec<u8>>), WalletError> {
        let (first, second) = self.choose_inputs(asset, amount)?;
        let mut rng = fresh_rng();
        let mut blinding_rng = fresh_rng();
        let mut blinding = || Fr::rand(&mut blinding_rng);
        let me = self.spending.address();
        let held = first
            .output
            .amount
            .checked_add(second.map_or(U256::ZERO, |owned| owned.output.amount))
            .ok_or(AssetsError::AmountOverflow { asset })?;
        let change = Output {
            owner: me,
            asset,
            amount: held - amount,
            blinding: blinding(),
        };
        let input = |owned: OwnedOutput| -> Result<InputNote, WalletError> {
            Ok(InputNote {
                output: owned.output,
                leaf_index: owned.leaf_index,
                path: self.replica.state.path(owned.leaf_index)?,
            })
        };
        let inputs = [
            input(first)?,
            match second {
                Some(owned) => input(owned)?,
                None => InputNote::dummy(me, asset, blinding()),
            },
        ];
        let own_address = self.payment_address();
        let (outputs, withdraw_to, notes) = match spend {
            Spend::Pay(to) => {
                let paid = Output {
                    owner: to.owner,
                    asset,
                    amount,
                    blinding: blinding(),
                };
                let notes = vec![
                    to.seal(&paid, &mut rng)?.to_vec(),
                    own_address.seal(&change, &mut rng)?.to_vec(),
                ];
                ([paid, change], None, notes)
            }
            Spend::Withdraw(recipient) => {
                // The second output leaves: its owner and blinding are not used.
                let withdrawn = Output {
                    owner: me,
                    asset,
                    amount,
                    blinding: Fr::from(0u64),
                };
                let notes = vec![own_address.seal(&change, &mut rng)?.to_vec()];
                ([change, withdrawn], Some(recipient), notes)
            }
        };
        debug_assert!(notes.iter().all(|note| note.len() == NOTE_BYTES));
        let plan = TransferPlan {
            root: self.replica.state.root(),
            inputs,
            outputs,
            withdraw_to,
        };
        let signed = plan.sign([&self.spending, &self.spending]);
        let witness = self.replica.state.prepare(&signed)?;
        let prover = self.provers.transfer(report)?;
        report(Stage::Proving(spend.name()));
        let tx = prover.prove(&witness, &mut rng)?;
        Ok((tx, notes))
    }
}

/// What a spend does with the amount.
#[derive(Debug, Clone, Copy)]
enum Spend {
    /// Pays it to a payment address.
    Pay(PaymentAddress),
    /// Withdraws it to an upper-chain account.
    Withdraw(Address),
}

impl Spend {
    fn name(&self) -> &'static str {
        match self {
            Spend::Pay(_) => "transfer",
            Spend::Withdraw(_) => "withdraw",
        }
    }
}

/// The public values of a transfer proof as the rollup contract takes them.
pub fn transfer_inputs(public: &TransferPublic) -> TransferInputs {
    let word = solidity::fr_to_u256;
    let effects = &public.effects;
    let withdrawal = effects.withdrawal;
    TransferInputs {
        old_root: word(public.old_root),
        new_root: word(public.new_root),
        leaf_index: public.leaf_index,
        nullifiers: effects.nullifiers.map(word),
        commitments: effects.commitments.map(word),
        recipient: withdrawal.map(|w| w.recipient).unwrap_or_default(),
        asset: withdrawal.map(|w| w.asset).unwrap_or_default(),
        amount: withdrawal.map(|w| w.amount).unwrap_or_default(),
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use rand::RngCore;
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A proving and sealing RNG seeded from the operating system.
fn fresh_rng() -> ChaCha20Rng {
    ChaCha20Rng::from_seed(random_bytes::<32>())
}
