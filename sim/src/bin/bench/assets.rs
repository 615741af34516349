//! `assets`: the UTXO engine's Groth16 transfer proofs on this machine.
//!
//! Figures: constraints of one 2-in 2-out transfer; the seeded dev setup's time and key-file
//! sizes; proving time per transfer (p50 and max of 16) and for a batch of 16 transfers proven
//! one after another, each proof using every core (the engine proves one transfer per proof:
//! see the note on batches); proof size; native verify time (p50 of 16). Every proof is
//! then applied to the state, so a figure from a proof that does not verify is never reported.
//!
//! Target (issue 16): proving a 2-in 2-out transfer ≤ 2 s on 2 cores. On-chain verification gas
//! (≤ 300,000 a batch) needs the Solidity verifier of a later slice and is not measured here.

use std::time::Instant;

use ::assets::{
    Fr, U256,
    keys::SpendingKey,
    output::Output,
    prover::{self, Prover, Verifier},
    state::{AssetState, Deposit},
    transfer::{InputNote, TransferPlan},
};
use anyhow::{Context, bail};
use ark_rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
use sim::report::{BenchReport, Op};

use crate::Args;

/// Transfers in the measured batch.
const BATCH_TRANSFERS: usize = 16;
/// Seed of the dev setup and of the proofs' randomness.
const BENCH_SEED: u64 = 16;

pub async fn run(_args: &Args) -> anyhow::Result<BenchReport> {
    tokio::task::spawn_blocking(measure).await?
}

fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn measure() -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("assets");
    let constraints = ::assets::circuit::constraint_count().context("counting constraints")?;
    report.figure("transfer_constraints", constraints as f64);

    let started = Instant::now();
    let (proving_key, verifying_key) = prover::dev_setup(BENCH_SEED)?;
    report.figure("dev_setup_ms", millis(started));
    let directory = tempfile::tempdir()?;
    prover::write_keys(directory.path(), &proving_key, &verifying_key)?;
    drop(proving_key);
    let file_bytes = |name: &str| -> anyhow::Result<f64> {
        Ok(std::fs::metadata(directory.path().join(name))?.len() as f64)
    };
    report.figure("proving_key_bytes", file_bytes(prover::PROVING_KEY_FILE)?);
    report.figure(
        "verifying_key_bytes",
        file_bytes(prover::VERIFYING_KEY_FILE)?,
    );
    let prover = Prover::from_file(directory.path())?;
    let verifier = Verifier::from_file(directory.path())?;

    // Alice holds two deposits for each transfer; each transfer pays Bob from two of them.
    let alice = SpendingKey::from_seed([0xa1; 32]);
    let bob = SpendingKey::from_seed([0xb0; 32]);
    let token = U256::from_be_slice(&[0x70; 20]);
    let mut state = AssetState::new();
    let mut deposits = Vec::new();
    for id in 0..2 * BATCH_TRANSFERS as u64 {
        let output = Output {
            owner: alice.address(),
            asset: token,
            amount: U256::from(100 + id),
            blinding: Fr::from(id + 1),
        };
        state.apply_deposit(&Deposit {
            deposit_id: id,
            output,
        })?;
        deposits.push(output);
    }
    let root = state.root();
    let mut transfers = Vec::with_capacity(BATCH_TRANSFERS);
    for index in 0..BATCH_TRANSFERS {
        let leaves = [2 * index as u64, 2 * index as u64 + 1];
        let inputs = leaves.map(|leaf| InputNote {
            output: deposits[leaf as usize],
            leaf_index: leaf,
            path: state.path(leaf).expect("deposited leaf"),
        });
        let total = inputs[0].output.amount + inputs[1].output.amount;
        let pay = U256::from(150);
        let outputs = [
            Output {
                owner: bob.address(),
                asset: token,
                amount: pay,
                blinding: Fr::from(1_000 + index as u64),
            },
            Output {
                owner: alice.address(),
                asset: token,
                amount: total - pay,
                blinding: Fr::from(2_000 + index as u64),
            },
        ];
        let plan = TransferPlan {
            root,
            inputs,
            outputs,
            withdraw_to: None,
        };
        transfers.push(plan.sign([&alice, &alice]));
    }

    let mut rng = ChaCha20Rng::seed_from_u64(BENCH_SEED);
    let mut prove_ms = Vec::with_capacity(BATCH_TRANSFERS);
    let mut proven = Vec::with_capacity(BATCH_TRANSFERS);
    let batch_started = Instant::now();
    for transfer in &transfers {
        let started = Instant::now();
        proven.push(prover.prove(transfer, &mut rng)?);
        prove_ms.push(millis(started));
    }
    report.figure("prove_batch_16_ms", millis(batch_started));
    report.figure(
        "prove_transfer_max_ms",
        prove_ms.iter().copied().fold(0.0, f64::max),
    );
    report.figure("prove_transfer_p50_ms", median(prove_ms));
    report.figure(
        "proof_bytes",
        prover::proof_to_bytes(&proven[0].proof).len() as f64,
    );

    let mut verify_ms = Vec::with_capacity(BATCH_TRANSFERS);
    for tx in &proven {
        let started = Instant::now();
        let valid = verifier.verify(&tx.public, &tx.proof);
        verify_ms.push(millis(started));
        if !valid {
            bail!("a proof of the batch does not verify");
        }
    }
    report.figure("verify_transfer_p50_ms", median(verify_ms));
    for tx in &proven {
        state
            .apply_transfer(&verifier, tx)
            .context("applying a proven transfer")?;
    }

    report.target("prove_transfer_p50_ms", Op::AtMost, 2_000.0);
    Ok(report)
}
