//! `shard-node`: an execution node operator's command.
//!
//! - `shard-node keygen --out node.key` writes a new key file (owner-only) and prints the node ID.
//! - `shard-node register --config node.toml` registers the node ID on the upper chain the
//!   configuration names, with its endpoint, reward wallet and wallet features
//!   (`WALLET_FEATURES` overrides the file's list).
//! - `shard-node status --config node.toml [--json]` prints what the upper chain holds for it.
//! - `shard-node set-wallet --config node.toml [--reward-wallet 0x…] [--wallet-features LIST]`
//!   changes the registered node's reward wallet and payout features on the upper chain (signed
//!   by the node's key: only its operator can). Each defaults to the configuration file's value;
//!   `WALLET_FEATURES` overrides the file's list, and an empty list clears the features.
//!
//! - `shard-node verify --records DIR --chain URL --chain-id ID` re-executes the batches of an
//!   execution record log from its genesis, as a single node holding all state would, and checks
//!   every group root the upper chain holds for a replayed batch. It prints the first move whose
//!   recorded slice or outcome diverges, or the committed root that does not match, and exits
//!   non-zero then. With `--da ADDR=CERT,ADDR=CERT,…` instead of `--records` it reads the genesis
//!   and the records from strong DA: the DA nodes' QUIC addresses and certificate files, in
//!   committee order (their BLS keys and the erasure code come from the chain's DA committee),
//!   each record found by its commitment on the upper chain and rebuilt from any k nodes.
//!
//! Running the node itself (`run`) comes with its networked groups.

use std::path::{Path, PathBuf};

use alloy_primitives::hex;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use rand::RngCore;
use shard_node::{
    ShardNode,
    config::{KNOWN_WALLET_FEATURES, NodeConfig, parse_wallet_features},
    identity::NodeKeys,
};
use tracing::{info, warn};
use upper_chain::{ChainConfig, ChainError, UpperChain, WalletUpdate, connect};

#[derive(Parser, Debug)]
#[command(version, about = "A Tickrate execution node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes a new key file; its operator key's address is the node ID.
    Keygen {
        /// Where to write it (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
    /// Registers the node on the upper chain.
    Register {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Payout features of the reward wallet, comma-separated (overrides the file).
        #[arg(long, env = "WALLET_FEATURES")]
        wallet_features: Option<String>,
    },
    /// Changes the registered node's reward wallet and payout features on the upper chain.
    SetWallet {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The new reward wallet (default: the configuration file's).
        #[arg(long)]
        reward_wallet: Option<alloy_primitives::Address>,
        /// Payout features of the wallet, comma-separated (default: the file's; empty: none).
        #[arg(long, env = "WALLET_FEATURES")]
        wallet_features: Option<String>,
    },
    /// Re-executes an execution record log and checks the group roots committed upstream.
    Verify {
        /// The record log's directory (a devnet writes it under `DATA_DIR/records`).
        #[arg(long, required_unless_present = "da", conflicts_with = "da")]
        records: Option<PathBuf>,
        /// Read the records from strong DA instead: each DA node as `ADDR=CERT_FILE` (its QUIC
        /// address and the DER certificate it pins), comma-separated, in committee order (a
        /// devnet prints them and writes them to `DATA_DIR/strong-da/nodes`).
        #[arg(long, value_delimiter = ',')]
        da: Vec<String>,
        /// The upper chain's URL.
        #[arg(long)]
        chain: String,
        /// The upper chain's chain id.
        #[arg(long)]
        chain_id: u64,
        /// The Registry contract (EVM chains only).
        #[arg(long)]
        registry: Option<alloy_primitives::Address>,
        /// The chain id moves are signed for (default: `--chain-id`, as on the devnet).
        #[arg(long)]
        moves_chain_id: Option<u64>,
        /// Stop after this batch (default: the last record).
        #[arg(long)]
        through: Option<u64>,
    },
    /// Prints what the upper chain holds for the node.
    Status {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print JSON instead of lines.
        #[arg(long)]
        json: bool,
    },
}

/// mimalloc, as every node binary: see the workspace's Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Keygen { out } => keygen(&out),
        Command::Register {
            config,
            wallet_features,
        } => register(&config, wallet_features),
        Command::SetWallet {
            config,
            reward_wallet,
            wallet_features,
        } => set_wallet(&config, reward_wallet, wallet_features),
        Command::Status { config, json } => status(&config, json),
        Command::Verify {
            records,
            da,
            chain,
            chain_id,
            registry,
            moves_chain_id,
            through,
        } => verify(
            records.as_deref(),
            &da,
            ChainConfig {
                url: chain,
                chain_id,
                registry,
                sender: None,
            },
            moves_chain_id.unwrap_or(chain_id),
            through,
        ),
    }
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    let mut operator = [0u8; 32];
    let mut bls_seed = [0u8; 32];
    let mut rng = rand::rng();
    // A draw that is not a valid secp256k1 secret (probability ~2^-128) is drawn again.
    let keys = loop {
        rng.fill_bytes(&mut operator);
        rng.fill_bytes(&mut bls_seed);
        if let Ok(keys) = NodeKeys::from_entropy(operator, bls_seed) {
            break keys;
        }
    };
    keys.save(out)?;
    let node = ShardNode::from_keys(&keys);
    println!("node_id {}", node.id().0);
    println!(
        "bls_key {}",
        hex::encode_prefixed(node.bls().public_key().to_bytes())
    );
    println!("key_file {}", out.display());
    Ok(())
}

/// The configuration, the keys it names, and the chain it names, connected and checked.
fn open(
    config_path: &Path,
) -> anyhow::Result<(NodeConfig, NodeKeys, std::sync::Arc<dyn UpperChain>)> {
    let config = NodeConfig::load(config_path)?;
    let keys = NodeKeys::load(&config.key_file)?;
    let chain_config = ChainConfig {
        url: config.chain.url.clone(),
        chain_id: config.chain.chain_id,
        registry: config.chain.registry,
        // On an EVM chain the registry checks the node ID by `msg.sender`.
        sender: Some(keys.operator().clone()),
    };
    let chain = connect(&chain_config).with_context(|| {
        format!(
            "upper chain {} (chain id {})",
            config.chain.url, config.chain.chain_id
        )
    })?;
    Ok((config, keys, chain))
}

fn register(config_path: &Path, features_override: Option<String>) -> anyhow::Result<()> {
    let (config, keys, chain) = open(config_path)?;
    let list = features_override.unwrap_or_else(|| config.wallet_features.clone());
    let features = wallet_features(&list)?;
    let node = ShardNode::from_keys(&keys);
    let (registration, signature) =
        node.registration(config.endpoint.clone(), config.reward_wallet, features);
    match chain.register_node(registration, &signature) {
        Ok(id) => {
            // The registration stands even if the epoch read after it fails.
            println!("registered {}", id.0);
            let epoch = chain.epoch().with_context(|| {
                format!(
                    "node {} registered, but reading the chain's epoch failed",
                    id.0
                )
            })?;
            info!(node_id = %id.0, epoch, "registered");
            println!("active_from_epoch {}", epoch + 1);
            Ok(())
        }
        Err(ChainError::AlreadyRegistered(id)) => {
            bail!(
                "node {} is already registered; `shard-node status` shows its record",
                id.0
            )
        }
        Err(error) => Err(error).context("registration refused"),
    }
}

/// The features of `list` (validated as at registration), with a warning for each this build
/// does not know (kept as given).
fn wallet_features(list: &str) -> anyhow::Result<Vec<String>> {
    let features = parse_wallet_features(list)?;
    for feature in &features {
        if !KNOWN_WALLET_FEATURES.contains(&feature.as_str()) {
            warn!(
                feature,
                "wallet feature unknown to this build: registered as given"
            );
        }
    }
    Ok(features)
}

fn set_wallet(
    config_path: &Path,
    wallet_override: Option<alloy_primitives::Address>,
    features_override: Option<String>,
) -> anyhow::Result<()> {
    let (config, keys, chain) = open(config_path)?;
    let list = features_override.unwrap_or_else(|| config.wallet_features.clone());
    let features = wallet_features(&list)?;
    let update = WalletUpdate {
        node: keys.id(),
        reward_wallet: wallet_override.unwrap_or(config.reward_wallet),
        wallet_features: features,
        nonce: chain
            .wallet_nonce(&keys.id())
            .context("reading the node's wallet nonce")?,
    };
    let signature = keys.operator().sign_prehash(&update.signing_hash());
    match chain.update_wallet(update.clone(), &signature) {
        Ok(()) => {
            // A change takes effect in the next epoch; the epoch under way keeps its wallet.
            let from_epoch = chain.epoch().context("reading the chain's epoch")? + 1;
            info!(node_id = %update.node.0, nonce = update.nonce, from_epoch, "wallet updated");
            println!("updated {}", update.node.0);
            println!("reward_wallet {}", update.reward_wallet);
            println!("wallet_features {}", update.wallet_features.join(","));
            println!("from_epoch {from_epoch}");
            Ok(())
        }
        Err(ChainError::NotRegistered(id)) => {
            bail!(
                "node {} is not registered: `shard-node register` first",
                id.0
            )
        }
        Err(error) => Err(error).context("wallet update refused"),
    }
}

fn status(config_path: &Path, json: bool) -> anyhow::Result<()> {
    let (_config, keys, chain) = open(config_path)?;
    let id = keys.id();
    let epoch = chain.epoch().context("reading the chain's epoch")?;
    let record = match chain
        .registry_snapshot(epoch)
        .with_context(|| format!("reading the registry of epoch {epoch}"))?
        .node(&id)
    {
        Some(record) => Some(record.clone()),
        None => chain
            .registry_snapshot(epoch + 1)
            .with_context(|| format!("reading the registry of epoch {}", epoch + 1))?
            .node(&id)
            .cloned(),
    };
    // A wallet change made this epoch shows in the next epoch's registry only.
    let next_wallet = match &record {
        Some(record) if record.active_in(epoch) => chain
            .registry_snapshot(epoch + 1)
            .with_context(|| format!("reading the registry of epoch {}", epoch + 1))?
            .node(&id)
            .map(|next| next.registration.clone())
            .filter(|next| {
                (&next.reward_wallet, &next.wallet_features)
                    != (
                        &record.registration.reward_wallet,
                        &record.registration.wallet_features,
                    )
            }),
        _ => None,
    };
    let synced = chain.synced_root(&id)?;
    let departure = chain.departure(&id)?;
    let why = departure.as_ref().map(shard_node::bft::describe_departure);
    let state = match (&record, &departure) {
        (_, Some(_)) => "departed",
        (Some(record), None) if record.active_in(epoch) => "active",
        (Some(_), None) => "registered",
        (None, None) => "unregistered",
    };
    if json {
        let value = serde_json::json!({
            "node_id": id.0.to_string(),
            "epoch": epoch,
            "state": state,
            "active_from_epoch": record.as_ref().map(|record| record.active_from_epoch),
            "endpoint": record.as_ref().map(|record| record.registration.endpoint.clone()),
            "reward_wallet": record.as_ref().map(|record| record.registration.reward_wallet.to_string()),
            "wallet_features": record.as_ref().map(|record| record.registration.wallet_features.clone()),
            "next_wallet": next_wallet.as_ref().map(|next| serde_json::json!({
                "from_epoch": epoch + 1,
                "reward_wallet": next.reward_wallet.to_string(),
                "wallet_features": next.wallet_features.clone(),
            })),
            "synced_root": synced.as_ref().map(|synced| serde_json::json!({
                "epoch": synced.epoch, "batch": synced.batch, "root": synced.root.to_string(),
            })),
            "departure": departure.as_ref().map(|departure| serde_json::json!({
                "kind": format!("{:?}", departure.kind), "epoch": departure.epoch, "why": why,
            })),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(());
    }
    println!("node_id {}", id.0);
    println!("chain_epoch {epoch}");
    println!("state {state}");
    if let Some(record) = &record {
        println!("active_from_epoch {}", record.active_from_epoch);
        println!("endpoint {}", record.registration.endpoint);
        println!("reward_wallet {}", record.registration.reward_wallet);
        println!(
            "wallet_features {}",
            record.registration.wallet_features.join(",")
        );
    }
    if let Some(next) = &next_wallet {
        println!(
            "next_wallet {} features {} from_epoch {}",
            next.reward_wallet,
            next.wallet_features.join(","),
            epoch + 1
        );
    }
    if let Some(synced) = &synced {
        println!(
            "synced_root {} (epoch {}, batch {})",
            synced.root, synced.epoch, synced.batch
        );
    }
    if let Some(departure) = &departure {
        println!(
            "departure {:?} from epoch {}",
            departure.kind, departure.epoch
        );
    }
    if let Some(why) = &why {
        println!("departure_reason {why}");
    }
    Ok(())
}

/// One `ADDR=CERT_FILE` of `--da`.
fn parse_da_node(
    text: &str,
) -> anyhow::Result<(
    std::net::SocketAddr,
    da_strong::client::CertificateDer<'static>,
)> {
    let (address, certificate) = text
        .split_once('=')
        .with_context(|| format!("--da {text:?}: expected ADDR=CERT_FILE"))?;
    let address = address
        .trim()
        .parse()
        .with_context(|| format!("--da {text:?}: not a socket address"))?;
    let certificate = std::fs::read(certificate.trim())
        .with_context(|| format!("--da {text:?}: reading the certificate"))?;
    Ok((
        address,
        da_strong::client::CertificateDer::from(certificate),
    ))
}

fn verify(
    records: Option<&Path>,
    da: &[String],
    chain_config: ChainConfig,
    moves_chain_id: u64,
    through: Option<u64>,
) -> anyhow::Result<()> {
    use shard_node::{
        record::RecordLog,
        strong_da::StrongDaReader,
        verify::{RecordSource, StrongDaRecords, VerifyError, verify},
    };

    let chain = connect(&chain_config).with_context(|| {
        format!(
            "upper chain {} (chain id {})",
            chain_config.url, chain_config.chain_id
        )
    })?;
    // Strong DA's client runs on a runtime of its own; the replay blocks on it from here.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the DA client's runtime")?;
    let mut source: Box<dyn RecordSource> = match records {
        Some(records) => {
            if !records.is_dir() {
                bail!("{} is not a directory", records.display());
            }
            Box::new(RecordLog::open(records)?)
        }
        None => {
            let nodes = da
                .iter()
                .map(|node| parse_da_node(node))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let reader = {
                let _entered = runtime.enter();
                StrongDaReader::connect(chain.clone(), nodes).context("strong DA")?
            };
            Box::new(StrongDaRecords::new(reader, runtime.handle().clone()))
        }
    };
    let from = match records {
        Some(records) => records.display().to_string(),
        None => "strong DA".to_string(),
    };
    let report = match verify(source.as_mut(), chain.as_ref(), moves_chain_id, through) {
        Ok(report) => report,
        Err(VerifyError::Diverges(divergence)) => {
            println!("diverges {divergence}");
            bail!("the records do not re-execute as recorded and committed: {divergence}");
        }
        Err(error) => return Err(error).with_context(|| format!("verifying from {from}")),
    };
    for commitment in &report.roots_checked {
        println!(
            "root_ok group {} batch {} root {}",
            commitment.group, commitment.batch, commitment.root
        );
    }
    info!(batches = report.batches, moves = report.moves, roots = report.roots_checked.len(), %from, "verified");
    println!("replayed_batches {}", report.batches);
    println!("replayed_moves {}", report.moves);
    println!("roots_checked {}", report.roots_checked.len());
    println!("roots_after_the_records {}", report.roots_after);
    println!("batches_matched {}", report.batches_matched);
    Ok(())
}
