//! Writes the Groth16 keys of the transfer circuit: `transfer.pk` and `transfer.vk`.
//!
//! `cargo run -p assets --bin assets-setup -- --out DIR [--seed N]`
//!
//! This is the seeded **dev** setup (see `assets::prover`): its randomness comes from ChaCha20
//! seeded with `--seed`, so anyone can rebuild the same keys, and anyone who knows the seed can
//! forge proofs. Never use these keys where assets have value.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// Dev setup of the assets engine's Groth16 keys.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Directory to write `transfer.pk` and `transfer.vk` into.
    #[arg(long)]
    out: PathBuf,
    /// Seed of the setup's randomness (public: dev keys only).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let constraints = assets::circuit::constraint_count().context("counting constraints")?;
    let (proving_key, verifying_key) =
        assets::prover::dev_setup(args.seed).context("running the dev setup")?;
    assets::prover::write_keys(&args.out, &proving_key, &verifying_key)
        .context("writing the key files")?;
    println!(
        "transfer circuit: {constraints} constraints; keys written to {} (dev setup, seed {})",
        args.out.display(),
        args.seed
    );
    Ok(())
}
