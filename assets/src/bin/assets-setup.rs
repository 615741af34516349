//! Writes the Groth16 keys of the transfer circuit (`transfer.pk`, `transfer.vk`) and of the
//! deposit circuit (`deposit.pk`, `deposit.vk`), and the Solidity verifier of a verifying-key
//! file.
//!
//! `cargo run -p assets --bin assets-setup -- --out DIR [--seed N]`
//! `cargo run -p assets --bin assets-setup -- export-verifier --keys DIR --out FILE.sol
//!  [--circuit transfer|deposit] [--name NAME]`
//!
//! The first is the seeded **dev** setup (see `assets::prover`): its randomness comes from
//! ChaCha20 seeded with `--seed`, so anyone can rebuild the same keys, and anyone who knows the
//! seed can forge proofs. Never use these keys where assets have value. The second reads the
//! verifying key of a key directory (dev or ceremony) and writes the contract that verifies its
//! proofs on an EVM chain (`assets::solidity`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// Dev setup of the assets engine's Groth16 keys, and their Solidity verifier.
#[derive(Parser, Debug)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Directory to write the key files into.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Seed of the setup's randomness (public: dev keys only).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Writes the Solidity Groth16 verifier of a key directory's verifying key.
    ExportVerifier {
        /// The key directory holding `transfer.vk` and `deposit.vk`.
        #[arg(long)]
        keys: PathBuf,
        /// The `.sol` file to write.
        #[arg(long)]
        out: PathBuf,
        /// Which circuit's verifying key.
        #[arg(long, value_enum, default_value_t = Circuit::Transfer)]
        circuit: Circuit,
        /// The contract's name (default `TransferVerifier` or `DepositVerifier`).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Circuit {
    Transfer,
    Deposit,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Some(Command::ExportVerifier {
            keys,
            out,
            circuit,
            name,
        }) => export_verifier(&keys, &out, circuit, name),
        None => {
            let out = args.out.context("--out DIR is required for the setup")?;
            setup(&out, args.seed)
        }
    }
}

fn setup(out: &std::path::Path, seed: u64) -> anyhow::Result<()> {
    let constraints = assets::circuit::constraint_count().context("counting constraints")?;
    let (proving_key, verifying_key) =
        assets::prover::dev_setup(seed).context("running the dev setup")?;
    assets::prover::write_keys(out, &proving_key, &verifying_key)
        .context("writing the key files")?;
    let deposit_constraints =
        assets::circuit::deposit_constraint_count().context("counting constraints")?;
    let (proving_key, verifying_key) =
        assets::prover::dev_setup_deposit(seed).context("running the deposit dev setup")?;
    assets::prover::write_deposit_keys(out, &proving_key, &verifying_key)
        .context("writing the deposit key files")?;
    println!(
        "transfer circuit: {constraints} constraints, deposit circuit: {deposit_constraints}; \
         keys written to {} (dev setup, seed {seed})",
        out.display(),
    );
    Ok(())
}

fn export_verifier(
    keys: &std::path::Path,
    out: &std::path::Path,
    circuit: Circuit,
    name: Option<String>,
) -> anyhow::Result<()> {
    let (default_name, file) = match circuit {
        Circuit::Transfer => ("TransferVerifier", assets::prover::VERIFYING_KEY_FILE),
        Circuit::Deposit => (
            "DepositVerifier",
            assets::prover::DEPOSIT_VERIFYING_KEY_FILE,
        ),
    };
    let name = name.unwrap_or_else(|| default_name.to_string());
    let name = name.as_str();
    anyhow::ensure!(
        !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit()),
        "--name must be a Solidity identifier, not {name:?}"
    );
    let verifying_key = match circuit {
        Circuit::Transfer => assets::prover::read_verifying_key(keys),
        Circuit::Deposit => assets::prover::read_deposit_verifying_key(keys),
    }
    .context("reading the verifying key")?;
    let origin = keys.join(file);
    let source =
        assets::solidity::verifier_source(&verifying_key, name, &origin.display().to_string());
    std::fs::write(out, source).with_context(|| format!("writing {}", out.display()))?;
    println!(
        "{name}: Groth16 verifier of {} ({} public inputs) written to {}",
        origin.display(),
        assets::solidity::public_input_count(&verifying_key),
        out.display()
    );
    Ok(())
}
