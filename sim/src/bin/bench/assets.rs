//! `assets`: the UTXO engine's Groth16 proofs on this machine, and their cost on an EVM.
//!
//! Figures: constraints of one 2-in 2-out transfer (membership, nullifiers, signatures,
//! conservation, and the move from the old root to the new one) and of one deposit mint; the
//! seeded dev setup's time and key-file sizes; proving time per transfer (p50 and max of 16) and
//! for a batch of 16 transfers proven one after another, each against the root the previous one
//! left and each proof using every core (the engine proves one transfer per proof: see below);
//! proof size; native verify time (p50 of 16). Every proof is applied to the state, so a figure
//! from a proof that does not verify is never reported.
//!
//! On the EVM dev node (Hardhat, `upper_chain::devnode`; skipped without Node.js): the gas of a
//! transaction that only verifies one transfer proof with the verifier generated from the key
//! file (`verify_transfer_gas`: 21,000 intrinsic, calldata, one ECMUL + ECADD per public input,
//! one 4-pair pairing), the same for a deposit-mint proof, the marginal gas of one public input
//! (the two verifiers differ by one input), and the whole transactions: an ERC-20 deposit on the
//! bridge, its mint in the rollup, a transfer, a withdraw and the release.
//!
//! Batches: one proof moves the rollup by one transfer, so a batch on chain is one transfer and
//! `verify_transfer_gas` is the verification gas per batch. A proof over 16 transfers with every
//! transfer's nine effect inputs public would have 3 + 16·9 = 147 public inputs; its estimated
//! verification gas, from the measured fixed and per-input costs, is
//! `verify_batch_16_inputs_estimated_gas`.
//!
//! Targets (issue 16): proving a 2-in 2-out transfer ≤ 2 s on 2 cores; on-chain verification
//! ≤ 300,000 gas per batch.

use std::time::Instant;

use ::assets::{
    Fr, U256, asset,
    keys::SpendingKey,
    output::Output,
    prover::{self, DepositProver, Prover, TransferTx, Verifier},
    solidity,
    state::{AssetState, Deposit},
    transfer::{InputNote, TransferPlan},
};
use anyhow::{Context, bail};
use ark_rand_chacha::{ChaCha20Rng, rand_core::SeedableRng};
use sim::report::{BenchReport, Op};
use upper_chain::{
    devnode::{CHAIN_ID, compile_solidity, devnode, funded_key},
    rollup::{EvmAssets, TransferInputs},
};

use crate::Args;

/// Transfers in the measured batch.
const BATCH_TRANSFERS: usize = 16;
/// Seed of the dev setup and of the proofs' randomness.
const BENCH_SEED: u64 = 16;
/// Public inputs of the transfer circuit that place it in the state (old root, new root, leaf).
const PLACEMENT_INPUTS: usize = 3;

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
    let deposit_constraints = ::assets::circuit::deposit_constraint_count()?;
    report.figure("deposit_constraints", deposit_constraints as f64);

    let started = Instant::now();
    let (proving_key, verifying_key) = prover::dev_setup(BENCH_SEED)?;
    report.figure("dev_setup_ms", millis(started));
    let directory = tempfile::tempdir()?;
    prover::write_keys(directory.path(), &proving_key, &verifying_key)?;
    drop(proving_key);
    let (proving_key, verifying_key) = prover::dev_setup_deposit(BENCH_SEED)?;
    prover::write_deposit_keys(directory.path(), &proving_key, &verifying_key)?;
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
    let deposit_prover = DepositProver::from_file(directory.path())?;

    // Alice holds two deposits for each transfer; each transfer pays Bob from two of them.
    let alice = SpendingKey::from_seed([0xa1; 32]);
    let bob = SpendingKey::from_seed([0xb0; 32]);
    let token = U256::from_be_slice(&[0x70; 20]);
    let mut state = AssetState::new();
    let mut deposits = Vec::new();
    let mut deposit_ms = Vec::new();
    let mut rng = ChaCha20Rng::seed_from_u64(BENCH_SEED);
    for id in 0..2 * BATCH_TRANSFERS as u64 {
        let deposit = Deposit {
            deposit_id: id,
            owner: alice.address(),
            asset: token,
            amount: U256::from(100 + id),
        };
        if id < 4 {
            let witness = state.prepare_deposit(&deposit)?;
            let started = Instant::now();
            deposit_prover.prove(&witness, &mut rng)?;
            deposit_ms.push(millis(started));
        }
        state.apply_deposit(&deposit)?;
        deposits.push(deposit.output());
    }
    report.figure("prove_deposit_p50_ms", median(deposit_ms));

    let mut prove_ms = Vec::with_capacity(BATCH_TRANSFERS);
    let mut verify_ms = Vec::with_capacity(BATCH_TRANSFERS);
    let mut first: Option<TransferTx> = None;
    let mut proving_total_ms = 0.0;
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
            root: state.root(),
            inputs,
            outputs,
            withdraw_to: None,
        };
        let witness = state.prepare(&plan.sign([&alice, &alice]))?;
        let started = Instant::now();
        let tx = prover.prove(&witness, &mut rng)?;
        let proving_ms = millis(started);
        proving_total_ms += proving_ms;
        prove_ms.push(proving_ms);
        let started = Instant::now();
        let valid = verifier.verify(&tx.public, &tx.proof);
        verify_ms.push(millis(started));
        if !valid {
            bail!("a proof of the batch does not verify");
        }
        state
            .apply_transfer(&verifier, &tx)
            .context("applying a proven transfer")?;
        first.get_or_insert(tx);
    }
    report.figure("prove_batch_16_ms", proving_total_ms);
    report.figure(
        "prove_transfer_max_ms",
        prove_ms.iter().copied().fold(0.0, f64::max),
    );
    report.figure("prove_transfer_p50_ms", median(prove_ms));
    let first = first.expect("a batch has transfers");
    report.figure(
        "proof_bytes",
        prover::proof_to_bytes(&first.proof).len() as f64,
    );
    report.figure("verify_transfer_p50_ms", median(verify_ms));

    match devnode() {
        Some(url) => measure_gas(&mut report, url, directory.path(), &prover, &deposit_prover)?,
        None => eprintln!("assets: no EVM dev node, the gas figures are not measured"),
    }

    report.target("prove_transfer_p50_ms", Op::AtMost, 2_000.0);
    report.target("verify_transfer_gas", Op::AtMost, 300_000.0);
    Ok(report)
}

fn word(value: Fr) -> U256 {
    solidity::fr_to_u256(value)
}

/// Deploys the verifiers generated from the key files, the bridge and rollup, and measures a
/// deposit, its mint, a transfer, a withdraw and a release, and each verifier alone.
fn measure_gas(
    report: &mut BenchReport,
    url: &str,
    keys: &std::path::Path,
    prover: &Prover,
    deposit_prover: &DepositProver,
) -> anyhow::Result<()> {
    let compiled = |key, name: &str| -> anyhow::Result<Vec<u8>> {
        let path = keys.join(format!("{name}.sol"));
        std::fs::write(
            &path,
            solidity::verifier_source(&key, name, "the bench's key files"),
        )?;
        compile_solidity(&path, name).map_err(anyhow::Error::msg)
    };
    let transfer_code = compiled(prover::read_verifying_key(keys)?, "TransferVerifier")?;
    let deposit_code = compiled(prover::read_deposit_verifying_key(keys)?, "DepositVerifier")?;
    let operator = funded_key();
    let chain = EvmAssets::deploy(
        url,
        CHAIN_ID,
        &operator,
        transfer_code,
        deposit_code,
        word(AssetState::new().root()),
    )?;
    let user_key = funded_key();
    let user = EvmAssets::connect(
        url,
        CHAIN_ID,
        &user_key,
        chain.bridge(),
        chain.deploy_block(),
    )?;
    let token = user.deploy_test_erc20("GOLD", U256::from(1_000_000))?;
    user.approve_erc20(token, U256::from(1_000))?;

    let alice = SpendingKey::from_seed([0xa1; 32]);
    let bob = SpendingKey::from_seed([0xb0; 32]);
    let owner = solidity::address_words(&alice.address());
    let mut state = AssetState::new();
    let mut rng = ChaCha20Rng::seed_from_u64(BENCH_SEED + 1);
    let mut outputs = Vec::new();
    let mut deposit_gas = Vec::new();
    let mut mint_gas = Vec::new();
    let mut verify_deposit_gas = 0;
    for amount in [100u64, 50] {
        let (event, gas) = user.deposit_erc20(token, U256::from(amount), owner)?;
        deposit_gas.push(gas);
        let deposit =
            Deposit::from_event(event.deposit_id, event.owner, event.asset, event.amount)?;
        let witness = state.prepare_deposit(&deposit)?;
        let tx = deposit_prover.prove(&witness, &mut rng)?;
        let proof = solidity::proof_to_words(&tx.proof);
        let inputs = solidity::inputs_to_words(&tx.public.to_field_elements());
        let (_, deposit_verifier) = chain.verifiers()?;
        verify_deposit_gas =
            chain.send_raw(deposit_verifier, solidity::verify_calldata(&proof, &inputs))?;
        mint_gas.push(chain.mint_deposit(&event, word(tx.public.new_root), proof)?);
        state.apply_deposit(&deposit)?;
        outputs.push(deposit.output());
    }
    report.figure("bridge_deposit_erc20_gas", deposit_gas[1] as f64);
    report.figure("rollup_mint_deposit_gas", mint_gas[1] as f64);
    report.figure("verify_deposit_gas", verify_deposit_gas as f64);

    let asset = asset::erc20(token);
    let pay = |owner: &SpendingKey, amount: u64, blinding: u64| Output {
        owner: owner.address(),
        asset,
        amount: U256::from(amount),
        blinding: Fr::from(blinding),
    };
    let submit = |state: &mut AssetState,
                  plan: TransferPlan,
                  key: &SpendingKey,
                  rng: &mut ChaCha20Rng|
     -> anyhow::Result<(u64, u64, Option<upper_chain::rollup::ProvenWithdrawal>)> {
        let witness = state.prepare(&plan.sign([key, key]))?;
        let tx = prover.prove(&witness, rng)?;
        let proof = solidity::proof_to_words(&tx.proof);
        let inputs = solidity::inputs_to_words(&tx.public.to_field_elements());
        let (transfer_verifier, _) = chain.verifiers()?;
        let verify_gas = chain.send_raw(
            transfer_verifier,
            solidity::verify_calldata(&proof, &inputs),
        )?;
        let public = &tx.public;
        let withdrawal = public.effects.withdrawal;
        let applied = chain.transfer(
            &TransferInputs {
                old_root: word(public.old_root),
                new_root: word(public.new_root),
                leaf_index: public.leaf_index,
                nullifiers: public.effects.nullifiers.map(word),
                commitments: public.effects.commitments.map(word),
                recipient: withdrawal.map(|w| w.recipient).unwrap_or_default(),
                asset: withdrawal.map(|w| w.asset).unwrap_or_default(),
                amount: withdrawal.map(|w| w.amount).unwrap_or_default(),
            },
            proof,
        )?;
        state.apply_transfer(&Verifier::new(&prover::read_verifying_key(keys)?), &tx)?;
        if chain.root()? != word(state.root()) {
            bail!("the rollup's root and the state's differ");
        }
        Ok((verify_gas, applied.gas_used, applied.withdrawal))
    };
    let input = |state: &AssetState, output: Output, leaf: u64| -> anyhow::Result<InputNote> {
        Ok(InputNote {
            output,
            leaf_index: leaf,
            path: state.path(leaf)?,
        })
    };
    let plan = TransferPlan {
        root: state.root(),
        inputs: [input(&state, outputs[0], 0)?, input(&state, outputs[1], 1)?],
        outputs: [pay(&bob, 120, 11), pay(&alice, 30, 12)],
        withdraw_to: None,
    };
    let (verify_transfer_gas, transfer_gas, _) = submit(&mut state, plan, &alice, &mut rng)?;
    let recipient = primitives::AccountKey::from_seed(0xb0b).address();
    let plan = TransferPlan {
        root: state.root(),
        inputs: [
            input(&state, pay(&bob, 120, 11), 2)?,
            InputNote::dummy(bob.address(), asset, Fr::from(77u64)),
        ],
        outputs: [pay(&bob, 20, 21), pay(&bob, 100, 22)],
        withdraw_to: Some(recipient),
    };
    let (_, withdraw_gas, withdrawal) = submit(&mut state, plan, &bob, &mut rng)?;
    let withdrawal = withdrawal.context("a withdraw proves a withdrawal")?;
    let release_gas = user.release(&withdrawal)?;
    if user.erc20_balance(token, recipient)? != U256::from(100) {
        bail!("the release did not pay the recipient");
    }

    report.figure("verify_transfer_gas", verify_transfer_gas as f64);
    report.figure("rollup_transfer_gas", transfer_gas as f64);
    report.figure("rollup_withdraw_gas", withdraw_gas as f64);
    report.figure("bridge_release_gas", release_gas as f64);
    let transfer_inputs = ::assets::constants::TRANSFER_PUBLIC_INPUTS as f64;
    let deposit_inputs = ::assets::constants::DEPOSIT_PUBLIC_INPUTS as f64;
    let per_input = (verify_transfer_gas as f64 - verify_deposit_gas as f64)
        / (transfer_inputs - deposit_inputs);
    report.figure("verify_gas_per_public_input", per_input);
    let fixed = verify_transfer_gas as f64 - transfer_inputs * per_input;
    let batch_inputs =
        PLACEMENT_INPUTS + BATCH_TRANSFERS * ::assets::constants::TRANSFER_EFFECT_INPUTS;
    report.figure(
        "verify_batch_16_inputs_estimated_gas",
        fixed + batch_inputs as f64 * per_input,
    );
    Ok(())
}
