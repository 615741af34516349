//! `tickrate`: a player's terminal client. So far its `assets` commands, the asset wallet of
//! `client_sdk::assets`:
//!
//! ```text
//! tickrate assets keygen   --key FILE [--account-key HEX]
//! tickrate assets address  --key FILE
//! tickrate assets deposit  --token ADDR (--amount N | --item ID)          ROLLUP
//! tickrate assets transfer --to tka… --token ADDR (--amount N | --item ID) ROLLUP
//! tickrate assets withdraw --to 0xACCOUNT --token ADDR (--amount N | --item ID) [--no-claim] ROLLUP
//! tickrate assets claim                                                   ROLLUP
//! tickrate assets balance                                                 ROLLUP
//! ROLLUP: --key FILE --chain URL --bridge ADDR [--bridge-block N] [--chain-id N] --proving-keys DIR
//! ```
//!
//! Every option of ROLLUP also reads an environment variable (`TICKRATE_ASSET_KEY`,
//! `TICKRATE_CHAIN`, `TICKRATE_BRIDGE`, `TICKRATE_BRIDGE_BLOCK`, `TICKRATE_CHAIN_ID`,
//! `TICKRATE_PROVING_KEYS`). Proving takes seconds; a spinner with the elapsed time shows what
//! the wallet is doing (on a terminal only).

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use assets::{asset, note::PaymentAddress};
use clap::{Args, Parser, Subcommand};
use client_sdk::assets::{AssetKeys, AssetWallet, RollupConfig, Stage, unhex32};
use indicatif::{ProgressBar, ProgressStyle};
use primitives::{AccountKey, Address, U256};

/// A player's terminal client for Tickrate.
#[derive(Parser, Debug)]
#[command(name = "tickrate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Game assets bridged from the upper chain: deposit, transfer, withdraw, balance.
    #[command(subcommand)]
    Assets(AssetsCommand),
}

#[derive(Subcommand, Debug)]
enum AssetsCommand {
    /// Writes a new asset key file (owner-only permissions; never overwrites).
    Keygen {
        /// The key file to write.
        #[arg(long, env = "TICKRATE_ASSET_KEY")]
        key: PathBuf,
        /// An existing upper-chain account key (32 bytes hex) to pay gas and hold tokens with,
        /// instead of a new one.
        #[arg(long, env = "TICKRATE_ACCOUNT_KEY", hide_env_values = true)]
        account_key: Option<String>,
    },
    /// Prints the wallet's payment address (what senders pay to) and upper-chain account.
    Address {
        /// The asset key file.
        #[arg(long, env = "TICKRATE_ASSET_KEY")]
        key: PathBuf,
    },
    /// Locks tokens (or an item) of the wallet's account in the bridge and mints them into the
    /// rollup for this wallet.
    Deposit {
        #[command(flatten)]
        what: AssetAmount,
        #[command(flatten)]
        rollup: RollupArgs,
    },
    /// Pays an amount (or an item) to a payment address.
    Transfer {
        /// The recipient's payment address (`tka…`).
        #[arg(long)]
        to: String,
        #[command(flatten)]
        what: AssetAmount,
        #[command(flatten)]
        rollup: RollupArgs,
    },
    /// Withdraws an amount (or an item) to an upper-chain account, and claims it there.
    Withdraw {
        /// The upper-chain account that receives the tokens.
        #[arg(long)]
        to: Address,
        /// Prove the withdrawal only; claim it later with `claim`.
        #[arg(long)]
        no_claim: bool,
        #[command(flatten)]
        what: AssetAmount,
        #[command(flatten)]
        rollup: RollupArgs,
    },
    /// Claims every proven, unreleased withdrawal to an upper-chain account.
    Claim {
        /// The account (default: the wallet's own).
        #[arg(long)]
        to: Option<Address>,
        #[command(flatten)]
        rollup: RollupArgs,
    },
    /// Prints the wallet's unspent balance per asset, deposits not minted yet, and withdrawals
    /// to its account not claimed yet.
    Balance {
        #[command(flatten)]
        rollup: RollupArgs,
    },
}

/// An ERC-20 amount or an ERC-721 item.
#[derive(Args, Debug)]
struct AssetAmount {
    /// The token contract on the upper chain.
    #[arg(long)]
    token: Address,
    /// An ERC-20 amount (in the token's smallest unit).
    #[arg(long, required_unless_present = "item", conflicts_with = "item")]
    amount: Option<U256>,
    /// An ERC-721 item id.
    #[arg(long)]
    item: Option<U256>,
}

impl AssetAmount {
    /// The asset type and amount.
    fn asset(&self) -> anyhow::Result<(U256, U256)> {
        match (self.amount, self.item) {
            (Some(amount), None) => Ok((asset::erc20(self.token), amount)),
            (None, Some(id)) => Ok((
                asset::erc721(self.token, id).context("item id")?,
                U256::from(1),
            )),
            _ => bail!("give exactly one of --amount and --item"),
        }
    }
}

/// Where the wallet's key, the rollup and the proving keys are.
#[derive(Args, Debug)]
struct RollupArgs {
    /// The asset key file.
    #[arg(long, env = "TICKRATE_ASSET_KEY")]
    key: PathBuf,
    /// The upper chain's JSON-RPC URL.
    #[arg(long, env = "TICKRATE_CHAIN")]
    chain: String,
    /// The upper chain's id.
    #[arg(long, env = "TICKRATE_CHAIN_ID", default_value_t = 31337)]
    chain_id: u64,
    /// The `AssetBridge` contract.
    #[arg(long, env = "TICKRATE_BRIDGE")]
    bridge: Address,
    /// The block the bridge was deployed in (events are read from there).
    #[arg(long, env = "TICKRATE_BRIDGE_BLOCK", default_value_t = 0)]
    bridge_block: u64,
    /// The Groth16 key directory written by `assets-setup` (`transfer.pk`, `deposit.pk`).
    #[arg(long, env = "TICKRATE_PROVING_KEYS")]
    proving_keys: PathBuf,
}

impl RollupArgs {
    fn open(&self) -> anyhow::Result<AssetWallet> {
        let keys = AssetKeys::load(&self.key)?;
        let config = RollupConfig {
            url: self.chain.clone(),
            chain_id: self.chain_id,
            bridge: self.bridge,
            deploy_block: self.bridge_block,
            proving_keys: self.proving_keys.clone(),
        };
        let progress = Progress::new();
        progress.show(Stage::Syncing);
        let wallet = AssetWallet::open(&keys, &config)
            .with_context(|| format!("opening the wallet on {}", self.chain));
        progress.finish();
        wallet
    }
}

/// The spinner that shows what the wallet is doing; drawn on a terminal only.
struct Progress {
    bar: ProgressBar,
}

impl Progress {
    fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    fn show(&self, stage: Stage) {
        let message = match stage {
            Stage::Syncing => "reading the rollup".to_string(),
            Stage::LoadingKey(file) => format!("loading the proving key {file}"),
            Stage::Proving(what) => format!("proving the {what}"),
            Stage::Submitting(what) => format!("sending {what} to the upper chain"),
        };
        self.bar.set_message(message);
    }

    fn reporter(&self) -> impl FnMut(Stage) + '_ {
        move |stage| self.show(stage)
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn describe(asset_type: U256) -> String {
    let token = asset::token_of(asset_type);
    let item = asset::item_id_of(asset_type);
    if item.is_zero() {
        format!("{token}")
    } else {
        format!("{token} item {item}")
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Assets(command) = Cli::parse().command;
    match command {
        AssetsCommand::Keygen { key, account_key } => {
            let account = account_key
                .map(|text| {
                    unhex32(&text)
                        .map_err(anyhow::Error::msg)
                        .and_then(|bytes| AccountKey::from_bytes(bytes).map_err(Into::into))
                        .context("--account-key")
                })
                .transpose()?;
            let keys = AssetKeys::generate(account);
            keys.save(&key)?;
            print_addresses(&keys);
        }
        AssetsCommand::Address { key } => print_addresses(&AssetKeys::load(&key)?),
        AssetsCommand::Deposit { what, rollup } => {
            let (_, amount) = what.asset()?;
            let mut wallet = rollup.open()?;
            let progress = Progress::new();
            let deposit = match what.item {
                Some(id) => wallet.deposit_erc721(what.token, id, &mut progress.reporter()),
                None => wallet.deposit_erc20(what.token, amount, &mut progress.reporter()),
            };
            progress.finish();
            let deposit = deposit.context("deposit")?;
            println!(
                "deposit {} of {} {} minted",
                deposit.deposit_id,
                deposit.amount,
                describe(deposit.asset)
            );
        }
        AssetsCommand::Transfer { to, what, rollup } => {
            let to: PaymentAddress = to
                .parse()
                .with_context(|| format!("--to {to}: not a payment address"))?;
            let (asset_type, amount) = what.asset()?;
            let mut wallet = rollup.open()?;
            let progress = Progress::new();
            let leaf = wallet.transfer(&to, asset_type, amount, &mut progress.reporter());
            progress.finish();
            let leaf = leaf.context("transfer")?;
            println!(
                "paid {amount} {} (output at leaf {leaf})",
                describe(asset_type)
            );
        }
        AssetsCommand::Withdraw {
            to,
            no_claim,
            what,
            rollup,
        } => {
            let (asset_type, amount) = what.asset()?;
            let mut wallet = rollup.open()?;
            let progress = Progress::new();
            let withdrawn = wallet
                .withdraw(to, asset_type, amount, &mut progress.reporter())
                .context("withdraw");
            let withdrawal = match withdrawn {
                Ok(withdrawal) => withdrawal,
                Err(error) => {
                    progress.finish();
                    return Err(error);
                }
            };
            let claimed = if no_claim {
                None
            } else {
                Some(wallet.claim(&withdrawal, &mut progress.reporter()))
            };
            progress.finish();
            println!(
                "withdrawal {} of {amount} {} to {to} proven",
                withdrawal.withdrawal_id,
                describe(asset_type)
            );
            if let Some(claimed) = claimed {
                claimed.context("claim")?;
                println!("claimed: released to {to}");
            }
        }
        AssetsCommand::Claim { to, rollup } => {
            let mut wallet = rollup.open()?;
            let to = to.unwrap_or(wallet.account());
            let unclaimed = wallet.unclaimed_withdrawals(to)?;
            if unclaimed.is_empty() {
                println!("nothing to claim for {to}");
            }
            let progress = Progress::new();
            for withdrawal in unclaimed {
                let claimed = wallet.claim(&withdrawal, &mut progress.reporter());
                claimed.with_context(|| format!("claim {}", withdrawal.withdrawal_id))?;
                println!(
                    "claimed withdrawal {}: {} {} to {to}",
                    withdrawal.withdrawal_id,
                    withdrawal.amount,
                    describe(withdrawal.asset)
                );
            }
            progress.finish();
        }
        AssetsCommand::Balance { rollup } => {
            let wallet = rollup.open()?;
            let balances = wallet.balances();
            if balances.is_empty() {
                println!("no assets");
            }
            for (asset_type, amount) in balances {
                println!("{amount} {}", describe(asset_type));
            }
            for deposit in wallet.pending_deposits() {
                println!(
                    "pending deposit {}: {} {} (not minted yet)",
                    deposit.deposit_id,
                    deposit.amount,
                    describe(deposit.asset)
                );
            }
            for withdrawal in wallet.unclaimed_withdrawals(wallet.account())? {
                println!(
                    "unclaimed withdrawal {}: {} {} (tickrate assets claim)",
                    withdrawal.withdrawal_id,
                    withdrawal.amount,
                    describe(withdrawal.asset)
                );
            }
        }
    }
    Ok(())
}

fn print_addresses(keys: &AssetKeys) {
    let address = keys.spending_key().viewing_key().payment_address();
    println!("payment address: {address}");
    println!("account: {}", keys.account().address());
}
