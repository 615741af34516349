//! Operator accounting from a terminal.
//!
//! - `tickrate-accounting report --chain URL --chain-id N --from E --to E --rates rates.toml
//!   --usage usage.jsonl [--observations seen.jsonl] [--receipts receipts.jsonl] --out report.csv`
//!   writes the compensation report of an epoch range: one row per node registered in it.
//! - `tickrate-accounting plan --report report.csv` prints the payouts the report calls for,
//!   per wallet and method, without paying anything.
//! - `tickrate-accounting pay --report report.csv --receipts receipts.jsonl --chain URL
//!   --registry 0x… --treasury-key treasury.key [ROLLUP]` makes the report's upper-chain payouts
//!   as value transfers from the treasury key and appends their receipts; payouts already in
//!   the receipts are skipped, so running it again pays nothing twice. With the rollup options
//!   (ROLLUP: `--bridge 0x… [--bridge-block N] --directory 0x… --payout-token 0x…
//!   --prover-keys DIR --treasury-asset-seed FILE [--treasury-notes FILE]`) it also pays the
//!   wallets with the `assets` feature, one proven transfer each inside the asset rollup;
//!   without them those payouts wait.
//! - `tickrate-accounting fund-rollup --chain URL --treasury-key treasury.key --amount N ROLLUP`
//!   bridges N of the payout token from the treasury's upper-chain account into the rollup,
//!   for the treasury's asset address, and mints it there.
//! - `tickrate-accounting set-payout-recipient --chain URL --bridge 0x… --directory 0x…
//!   --wallet-key wallet.key --asset-seed FILE` registers, for the reward wallet whose key
//!   sends it, the asset address (of the 32-byte hex seed in FILE) its rollup payouts go to.
//!
//! Usage files hold one signed usage report (JSON) per line, as nodes write them; observation
//! files one observation per line, as group members and relayed peers write them.
//! `--usage-dir DIR` reads both from every node directory under DIR, as the devnet writes them
//! (`DIR/<node id>/usage.jsonl`, `DIR/<node id>/observations.jsonl`).

use std::{fs::File, path::PathBuf, sync::Arc};

use accounting::{
    Payout, PayoutMethod, PayoutRail, Rates, ReceiptBook, SignedUsage,
    meter::read_jsonl,
    payout::{self, plan},
    rails::{RollupRail, UpperChainRail},
    report::{self, Period},
    usage::{Observation, summarise},
};
use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use primitives::{Address, B256, U256, keyfile::OperatorKeys};
use upper_chain::{
    ChainConfig, EmbeddedChain, EvmChain, EvmConfig, Genesis, UpperChain, connect,
    rollup::EvmAssets,
};

#[derive(Parser)]
#[command(
    name = "tickrate-accounting",
    about = "Operator compensation reports and payouts"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the compensation report of an epoch range as CSV.
    Report {
        /// The upper chain: `tickrate://host:port`, `http(s)://...`, or the directory of an
        /// embedded chain's store (a devnet's `DIR/upper-chain`, read after the devnet stopped).
        #[arg(long)]
        chain: String,
        /// The upper chain's chain id.
        #[arg(long, default_value_t = 31337)]
        chain_id: u64,
        /// The registry contract, for an EVM chain.
        #[arg(long)]
        registry: Option<primitives::Address>,
        /// First epoch of the period.
        #[arg(long)]
        from: u64,
        /// Last epoch of the period.
        #[arg(long)]
        to: u64,
        /// Seconds in an epoch (bounds a claimed uptime).
        #[arg(long, default_value_t = 3_600)]
        epoch_seconds: u64,
        /// The rate file (TOML).
        #[arg(long)]
        rates: PathBuf,
        /// Signed usage reports, one JSON object per line (repeatable).
        #[arg(long)]
        usage: Vec<PathBuf>,
        /// A directory of node data directories (a devnet's `accounting/`): every
        /// `usage.jsonl` and `observations.jsonl` in it or one level down (repeatable).
        #[arg(long)]
        usage_dir: Vec<PathBuf>,
        /// Observations of other nodes' work, one JSON object per line (repeatable).
        #[arg(long)]
        observations: Vec<PathBuf>,
        /// Receipts of earlier payouts (their amounts fill the `paid` column).
        #[arg(long, default_value = "receipts.jsonl")]
        receipts: PathBuf,
        /// Where to write the CSV.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints the payouts a report calls for, per wallet and method.
    Plan {
        /// The report CSV.
        #[arg(long)]
        report: PathBuf,
    },
    /// Makes a report's upper-chain payouts and records their receipts.
    Pay {
        /// The report CSV.
        #[arg(long)]
        report: PathBuf,
        /// The receipt file (appended; read to skip what was paid).
        #[arg(long, default_value = "receipts.jsonl")]
        receipts: PathBuf,
        /// The EVM upper chain's JSON-RPC URL.
        #[arg(long)]
        chain: String,
        /// Its chain id.
        #[arg(long, default_value_t = 31337)]
        chain_id: u64,
        /// The registry contract.
        #[arg(long)]
        registry: primitives::Address,
        /// The key file whose operator key pays (`shard-node keygen` writes one).
        #[arg(long)]
        treasury_key: PathBuf,
        /// The asset rollup, to pay wallets with the `assets` feature.
        #[command(flatten)]
        rollup: RollupArgs,
    },
    /// Bridges payout tokens from the treasury's upper-chain account into the asset rollup.
    FundRollup {
        /// The EVM upper chain's JSON-RPC URL.
        #[arg(long)]
        chain: String,
        /// Its chain id.
        #[arg(long, default_value_t = 31337)]
        chain_id: u64,
        /// The key file whose operator key holds the tokens.
        #[arg(long)]
        treasury_key: PathBuf,
        /// How much, in base units of the token.
        #[arg(long)]
        amount: u128,
        /// The asset rollup.
        #[command(flatten)]
        rollup: RollupArgs,
    },
    /// Registers where a reward wallet's rollup payouts go (sent by the wallet's own key).
    SetPayoutRecipient {
        /// The EVM upper chain's JSON-RPC URL.
        #[arg(long)]
        chain: String,
        /// Its chain id.
        #[arg(long, default_value_t = 31337)]
        chain_id: u64,
        /// The asset bridge.
        #[arg(long)]
        bridge: Address,
        /// The payout directory.
        #[arg(long)]
        directory: Address,
        /// The key file of the reward wallet (its operator key is the wallet).
        #[arg(long)]
        wallet_key: PathBuf,
        /// A file holding the 32-byte seed (hex) of the asset key that receives the payouts.
        #[arg(long)]
        asset_seed: PathBuf,
    },
}

/// Where the asset rollup is and how the treasury pays in it.
#[derive(clap::Args)]
struct RollupArgs {
    /// The asset bridge (its rollup is read from it); without it, no rollup payout is made.
    #[arg(long)]
    bridge: Option<Address>,
    /// The block the bridge was deployed in (logs are read from there).
    #[arg(long, default_value_t = 0)]
    bridge_block: u64,
    /// The payout directory where wallets register their asset addresses.
    #[arg(long)]
    directory: Option<Address>,
    /// The ERC-20 the rollup payouts are made in.
    #[arg(long)]
    payout_token: Option<Address>,
    /// The directory of the rollup circuits' key files (`assets-setup`).
    #[arg(long)]
    prover_keys: Option<PathBuf>,
    /// A file holding the 32-byte seed (hex) of the treasury's asset key.
    #[arg(long)]
    treasury_asset_seed: Option<PathBuf>,
    /// The treasury's change outputs in the rollup (appended, read back).
    #[arg(long, default_value = "treasury-notes.jsonl")]
    treasury_notes: PathBuf,
}

impl RollupArgs {
    /// The rollup rail, sending with `treasury`; `None` without `--bridge`.
    fn rail(
        &self,
        chain: &str,
        chain_id: u64,
        treasury: &primitives::AccountKey,
    ) -> Result<Option<RollupRail>> {
        let Some(bridge) = self.bridge else {
            return Ok(None);
        };
        let (Some(directory), Some(token), Some(keys), Some(seed)) = (
            self.directory,
            self.payout_token,
            self.prover_keys.as_ref(),
            self.treasury_asset_seed.as_ref(),
        ) else {
            bail!(
                "--bridge needs --directory, --payout-token, --prover-keys and \
                 --treasury-asset-seed"
            );
        };
        let assets = EvmAssets::connect(chain, chain_id, treasury, bridge, self.bridge_block)
            .with_context(|| format!("asset bridge {bridge} on {chain}"))?;
        let rail = RollupRail::new(
            assets,
            directory,
            token,
            read_seed(seed)?,
            keys,
            self.treasury_notes.clone(),
        )?;
        Ok(Some(rail))
    }
}

/// A 32-byte seed written as hex (with or without `0x`) in a file.
fn read_seed(path: &std::path::Path) -> Result<[u8; 32]> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the seed file {}", path.display()))?;
    let seed: B256 = text
        .trim()
        .parse()
        .map_err(|_| anyhow::anyhow!("{}: not 32 bytes of hex", path.display()))?;
    Ok(seed.0)
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Report {
            chain,
            chain_id,
            registry,
            from,
            to,
            epoch_seconds,
            rates,
            usage,
            usage_dir,
            observations,
            receipts,
            out,
        } => {
            if usage.is_empty() && usage_dir.is_empty() {
                bail!("no usage given: pass --usage FILE or --usage-dir DIR");
            }
            let Some(period) = Period::new(from, to) else {
                bail!("--from {from} is after --to {to}");
            };
            let rates = Rates::load(&rates)?;
            let book = ReceiptBook::open(&receipts)?;
            book.check_period(period)?;
            let mut reports: Vec<SignedUsage> = read_lines(&usage)?;
            let mut observations: Vec<Observation> = read_lines(&observations)?;
            for dir in &usage_dir {
                let (more_reports, more_observations) = accounting::node::collect(dir)?;
                reports.extend(more_reports);
                observations.extend(more_observations);
            }
            let summary = summarise(period.epochs(), epoch_seconds, &reports, &observations);
            for refused in &summary.refused {
                tracing::warn!(%refused, "usage refused");
            }
            for cut in &summary.discrepancies {
                tracing::warn!(
                    node = %cut.node,
                    epoch = cut.epoch,
                    figure = cut.figure.name(),
                    claimed = cut.claimed,
                    accepted = cut.accepted,
                    "claim cut to what witnesses saw"
                );
            }
            let mut config = ChainConfig::new(chain.clone(), chain_id);
            config.registry = registry;
            // A report only reads the chain, but an EVM connection is made with a sender: give
            // it a key that never signs anything.
            config.sender = Some(primitives::AccountKey::from_seed(0));
            let chain: Arc<dyn UpperChain> = if std::path::Path::new(&chain).is_dir() {
                // An existing store keeps its own genesis; the one given here is ignored.
                Arc::new(
                    EmbeddedChain::open(&chain, &Genesis::default())
                        .with_context(|| format!("upper chain store {chain}"))?,
                )
            } else {
                connect(&config).with_context(|| format!("upper chain {chain}"))?
            };
            let nodes = report::registry_over(chain.as_ref(), period)?;
            let rows = report::build(period, &nodes, &summary, &rates, |node| {
                book.paid(period, node)
            });
            let file = File::create(&out).with_context(|| format!("creating {}", out.display()))?;
            report::write_csv(&rows, file)?;
            let owed: u128 = rows.iter().map(|row| row.owed).sum();
            let outstanding: u128 = rows.iter().map(|row| row.outstanding()).sum();
            println!(
                "{} nodes, period {period}: owed {owed}, outstanding {outstanding} -> {}",
                rows.len(),
                out.display()
            );
        }
        Command::Plan { report } => {
            let file =
                File::open(&report).with_context(|| format!("opening {}", report.display()))?;
            let rows = report::read_csv(file)?;
            println!(
                "{:<14} {:<44} {:<12} {:>24}  nodes",
                "id", "wallet", "method", "amount"
            );
            for payout in plan(&rows) {
                println!(
                    "{:<14} {:<44} {:<12} {:>24}  {}",
                    format!("{:.12}", payout.id().to_string()),
                    payout.wallet.to_string(),
                    payout.method.to_string(),
                    payout.amount,
                    payout.nodes.len()
                );
            }
        }
        Command::Pay {
            report,
            receipts,
            chain,
            chain_id,
            registry,
            treasury_key,
            rollup,
        } => {
            let file =
                File::open(&report).with_context(|| format!("opening {}", report.display()))?;
            let rows = report::read_csv(file)?;
            let treasury = OperatorKeys::load(&treasury_key)
                .with_context(|| format!("treasury key {}", treasury_key.display()))?;
            let mut rollup_rail = rollup.rail(&chain, chain_id, treasury.operator())?;
            let (to_pay, waiting): (Vec<Payout>, Vec<Payout>) =
                plan(&rows).into_iter().partition(|payout| {
                    payout.method == PayoutMethod::UpperChain || rollup_rail.is_some()
                });
            for payout in &waiting {
                println!(
                    "not paid: {} to {} by {} needs the asset rollup (--bridge and its options)",
                    payout.amount, payout.wallet, payout.method
                );
            }
            let config = EvmConfig::new(
                chain.clone(),
                chain_id,
                registry,
                treasury.operator().clone(),
            );
            let evm = EvmChain::connect(config).with_context(|| format!("upper chain {chain}"))?;
            let mut rail = UpperChainRail::new(Arc::new(evm));
            let mut book = ReceiptBook::open(&receipts)?;
            let mut rails: Vec<&mut dyn PayoutRail> = vec![&mut rail];
            if let Some(rollup_rail) = rollup_rail.as_mut() {
                rails.push(rollup_rail);
            }
            let made = payout::execute(&to_pay, &mut rails, &mut book)?;
            for receipt in &made {
                println!(
                    "paid {} to {} by {}: {}",
                    receipt.amount, receipt.wallet, receipt.method, receipt.reference
                );
            }
            println!(
                "{} payouts made, {} already paid, {} waiting for the rollup; receipts in {}",
                made.len(),
                to_pay.len() - made.len(),
                waiting.len(),
                receipts.display()
            );
        }
        Command::FundRollup {
            chain,
            chain_id,
            treasury_key,
            amount,
            rollup,
        } => {
            let treasury = OperatorKeys::load(&treasury_key)
                .with_context(|| format!("treasury key {}", treasury_key.display()))?;
            let Some(rail) = rollup.rail(&chain, chain_id, treasury.operator())? else {
                bail!("fund-rollup needs --bridge and its options");
            };
            rail.fund(U256::from(amount))?;
            println!(
                "funded {amount}; the treasury can spend {} in the rollup",
                rail.balance()?
            );
        }
        Command::SetPayoutRecipient {
            chain,
            chain_id,
            bridge,
            directory,
            wallet_key,
            asset_seed,
        } => {
            let wallet = OperatorKeys::load(&wallet_key)
                .with_context(|| format!("wallet key {}", wallet_key.display()))?;
            let owner = assets::keys::SpendingKey::from_seed(read_seed(&asset_seed)?).address();
            let words = assets::solidity::address_words(&owner);
            let assets = EvmAssets::connect(&chain, chain_id, wallet.operator(), bridge, 0)
                .with_context(|| format!("asset bridge {bridge} on {chain}"))?;
            assets.set_payout_recipient(directory, words)?;
            println!(
                "wallet {} takes its rollup payouts at asset address {:#x} {:#x} {:#x}",
                wallet.operator().address(),
                words[0],
                words[1],
                words[2]
            );
        }
    }
    Ok(())
}

/// Every JSON line of every file, parsed; an unparsable line is an error naming it.
fn read_lines<T: serde::de::DeserializeOwned>(paths: &[PathBuf]) -> Result<Vec<T>> {
    let mut items = Vec::new();
    for path in paths {
        items.extend(read_jsonl(path)?);
    }
    Ok(items)
}
