//! End-to-end tests of the engine: deposits, transfers and withdraws proven with Groth16 and
//! applied to the state, and every way a bad one is refused without changing anything.

use std::sync::OnceLock;

use alloy_primitives::{Address as EvmAddress, U256};
use ark_bn254::Fr;
use ark_rand_chacha::ChaCha20Rng;
use ark_std::rand::SeedableRng;

use crate::{
    constants::TREE_DEPTH,
    error::AssetsError,
    keys::SpendingKey,
    output::Output,
    prover::{self, DepositProver, DepositVerifier, Prover, TransferTx, Verifier},
    state::{AssetState, Deposit},
    transfer::{InputNote, SignedTransfer, TransferPlan, TransferWitness},
};

/// Seed of the dev setup the tests use.
const TEST_SETUP_SEED: u64 = 16;

/// The prover and verifier, set up once per test binary and read back from key files.
fn keys() -> &'static (Prover, Verifier) {
    static KEYS: OnceLock<(Prover, Verifier)> = OnceLock::new();
    KEYS.get_or_init(|| {
        let (proving_key, verifying_key) = prover::dev_setup(TEST_SETUP_SEED).expect("setup");
        let directory = tempfile::tempdir().expect("temporary directory");
        prover::write_keys(directory.path(), &proving_key, &verifying_key).expect("write keys");
        let prover = Prover::from_file(directory.path()).expect("read proving key");
        let verifier = Verifier::from_file(directory.path()).expect("read verifying key");
        (prover, verifier)
    })
}

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn token() -> U256 {
    // An ERC-20 contract address as the asset type.
    U256::from_be_slice(&[0x70; 20])
}

fn item() -> U256 {
    // An ERC-721 contract and item id packed into one asset type.
    (U256::from_be_slice(&[0x72; 20]) << 96) | U256::from(7)
}

/// Alice holds 100 and 50 tokens (leaves 0 and 1) and one item (leaf 2), all deposited.
struct World {
    state: AssetState,
    alice: SpendingKey,
    bob: SpendingKey,
    deposits: Vec<Output>,
}

fn world() -> World {
    let alice = SpendingKey::from_seed([0xa1; 32]);
    let bob = SpendingKey::from_seed([0xb0; 32]);
    let mut state = AssetState::new();
    let deposits: Vec<Output> = [(token(), 100), (token(), 50), (item(), 1)]
        .iter()
        .enumerate()
        .map(|(id, (asset, amount))| {
            let deposit = Deposit {
                deposit_id: id as u64,
                owner: alice.address(),
                asset: *asset,
                amount: U256::from(*amount),
            };
            let leaf = state.apply_deposit(&deposit).expect("fresh deposit");
            assert_eq!(leaf, id as u64);
            deposit.output()
        })
        .collect();
    World {
        state,
        alice,
        bob,
        deposits,
    }
}

impl World {
    fn input(&self, leaf: u64) -> InputNote {
        InputNote {
            output: self.deposits[leaf as usize],
            leaf_index: leaf,
            path: self.state.path(leaf).expect("leaf exists"),
        }
    }

    /// Alice pays Bob 120 of her 150 tokens and keeps 30.
    fn payment(&self) -> TransferPlan {
        TransferPlan {
            root: self.state.root(),
            inputs: [self.input(0), self.input(1)],
            outputs: [
                Output {
                    owner: self.bob.address(),
                    asset: token(),
                    amount: U256::from(120),
                    blinding: Fr::from(11u64),
                },
                Output {
                    owner: self.alice.address(),
                    asset: token(),
                    amount: U256::from(30),
                    blinding: Fr::from(12u64),
                },
            ],
            withdraw_to: None,
        }
    }

    fn signed_by_alice(&self, plan: TransferPlan) -> SignedTransfer {
        plan.sign([&self.alice, &self.alice])
    }

    /// `transfer` placed in the current state.
    fn prepared(&self, transfer: &SignedTransfer) -> TransferWitness {
        self.state.prepare(transfer).expect("room in the tree")
    }

    /// Prepares and proves `transfer` with the checks of an honest prover.
    fn prove(&self, transfer: &SignedTransfer, seed: u64) -> Result<TransferTx, AssetsError> {
        keys().0.prove(&self.prepared(transfer), &mut rng(seed))
    }
}

/// A dishonest prover proves `transfer` anyway; the state must refuse the proof and stay as it
/// was.
fn assert_refused_unchecked(world: &mut World, transfer: &SignedTransfer, seed: u64) {
    let (prover, verifier) = keys();
    let tx = prover
        .prove_unchecked(&world.prepared(transfer), &mut rng(seed))
        .expect("proving runs");
    let before = world.state.clone();
    assert_eq!(
        world.state.apply_transfer(verifier, &tx),
        Err(AssetsError::ProofInvalid)
    );
    assert_eq!(world.state, before);
}

#[test]
fn deposit_is_minted_once() {
    let mut world = world();
    let before = world.state.clone();
    let replay = Deposit {
        deposit_id: 1,
        owner: world.alice.address(),
        asset: token(),
        amount: U256::from(50),
    };
    assert_eq!(
        world.state.apply_deposit(&replay),
        Err(AssetsError::DepositReplayed { deposit_id: 1 })
    );
    assert_eq!(
        world.state.prepare_deposit(&replay).map(|_| ()),
        Err(AssetsError::DepositReplayed { deposit_id: 1 })
    );
    // Deposits are minted in the bridge's order: one skipped ahead waits its turn.
    let ahead = Deposit {
        deposit_id: 5,
        ..replay
    };
    assert_eq!(
        world.state.apply_deposit(&ahead),
        Err(AssetsError::DepositOutOfOrder {
            expected: 3,
            got: 5
        })
    );
    assert_eq!(world.state, before);
}

#[test]
fn deposit_mint_proves_the_move_from_the_old_root_to_the_new() {
    let mut world = world();
    let (proving_key, verifying_key) = prover::dev_setup_deposit(TEST_SETUP_SEED).expect("setup");
    let directory = tempfile::tempdir().expect("temporary directory");
    prover::write_deposit_keys(directory.path(), &proving_key, &verifying_key).expect("write");
    let deposit_prover = DepositProver::from_file(directory.path()).expect("read proving key");
    let deposit_verifier = DepositVerifier::from_file(directory.path()).expect("read key");
    let deposit = Deposit {
        deposit_id: 3,
        owner: world.bob.address(),
        asset: item(),
        amount: U256::from(1),
    };
    let witness = world.state.prepare_deposit(&deposit).expect("next deposit");
    let tx = deposit_prover
        .prove(&witness, &mut rng(20))
        .expect("valid deposit proves");
    assert!(deposit_verifier.verify(&tx.public, &tx.proof));
    assert_eq!(tx.public.old_root, world.state.root());
    assert_eq!(world.state.apply_deposit(&deposit), Ok(3));
    assert_eq!(tx.public.new_root, world.state.root());
    // Another owner, amount or id, or another root, does not verify with this proof.
    let mut other = tx.public;
    other.deposit.amount = U256::from(2);
    assert!(!deposit_verifier.verify(&other, &tx.proof));
    let mut other = tx.public;
    other.deposit.owner = world.alice.address();
    assert!(!deposit_verifier.verify(&other, &tx.proof));
    let mut other = tx.public;
    other.deposit.deposit_id = 4;
    assert!(!deposit_verifier.verify(&other, &tx.proof));
    let mut other = tx.public;
    other.old_root = Fr::from(1u64);
    assert!(!deposit_verifier.verify(&other, &tx.proof));
    // A witness whose path does not lead to its roots is refused before proving.
    let mut forged = world
        .state
        .prepare_deposit(&Deposit {
            deposit_id: 4,
            ..deposit
        })
        .expect("next deposit");
    forged.public.new_root = Fr::from(7u64);
    assert_eq!(
        deposit_prover.prove(&forged, &mut rng(21)).map(|_| ()),
        Err(AssetsError::InsertionInvalid)
    );
}

#[test]
fn transfer_proves_verifies_and_the_recipient_spends_it() {
    let mut world = world();
    let (prover, verifier) = keys();
    let plan = world.payment();
    let outputs = plan.outputs;
    let transfer = world.signed_by_alice(plan);
    let tx = world.prove(&transfer, 1).expect("valid transfer proves");
    // The proof travels as 128 bytes and decodes to itself.
    let bytes = prover::proof_to_bytes(&tx.proof);
    assert_eq!(bytes.len(), prover::PROOF_BYTES);
    assert_eq!(prover::proof_from_bytes(&bytes), Ok(tx.proof.clone()));
    assert!(matches!(
        prover::proof_from_bytes(&bytes[1..]),
        Err(AssetsError::ProofMalformed(_))
    ));

    let receipt = world
        .state
        .apply_transfer(verifier, &tx)
        .expect("valid proof");
    assert_eq!(receipt.leaves, vec![3, 4]);
    assert_eq!(receipt.withdrawal, None);
    assert!(
        tx.public
            .effects
            .nullifiers
            .iter()
            .all(|n| world.state.is_spent(n))
    );
    assert_eq!(world.state.root(), tx.public.new_root);

    // Bob spends what he got: one real input and a dummy, to Alice.
    world.deposits.extend(outputs);
    let bob_owner = world.bob.address();
    let plan = TransferPlan {
        root: world.state.root(),
        inputs: [
            world.input(3),
            InputNote::dummy(bob_owner, token(), Fr::from(77u64)),
        ],
        outputs: [
            Output {
                owner: world.alice.address(),
                asset: token(),
                amount: U256::from(20),
                blinding: Fr::from(21u64),
            },
            Output {
                owner: bob_owner,
                asset: token(),
                amount: U256::from(100),
                blinding: Fr::from(22u64),
            },
        ],
        withdraw_to: None,
    };
    let tx = prover
        .prove(
            &world.prepared(&plan.sign([&world.bob, &world.bob])),
            &mut rng(2),
        )
        .expect("proves");
    assert_eq!(
        world.state.apply_transfer(verifier, &tx).map(|r| r.leaves),
        Ok(vec![5, 6])
    );
}

#[test]
fn withdraw_proves_verifies_and_never_enters_the_tree() {
    let mut world = world();
    let (_, verifier) = keys();
    let recipient = EvmAddress::repeat_byte(0x42);
    let alice = world.alice.address();
    let plan = TransferPlan {
        root: world.state.root(),
        inputs: [
            world.input(2),
            InputNote::dummy(alice, item(), Fr::from(5u64)),
        ],
        outputs: [
            Output {
                owner: alice,
                asset: item(),
                amount: U256::ZERO,
                blinding: Fr::from(6u64),
            },
            Output {
                owner: alice,
                asset: item(),
                amount: U256::from(1),
                blinding: Fr::from(7u64),
            },
        ],
        withdraw_to: Some(recipient),
    };
    let tx = world
        .prove(&world.signed_by_alice(plan), 3)
        .expect("proves");
    assert_eq!(tx.public.effects.commitments[1], Fr::from(0u64));
    // The same proof with the withdrawal redirected to another account does not verify.
    let mut redirected = tx.clone();
    let mut stolen = tx.public.effects.withdrawal.expect("a withdraw");
    stolen.recipient = EvmAddress::repeat_byte(0x66);
    redirected.public.effects.withdrawal = Some(stolen);
    let before = world.state.clone();
    assert_eq!(
        world.state.apply_transfer(verifier, &redirected),
        Err(AssetsError::ProofInvalid)
    );
    assert_eq!(world.state, before);

    let receipt = world
        .state
        .apply_transfer(verifier, &tx)
        .expect("valid withdraw");
    let withdrawal = receipt.withdrawal.expect("a withdrawal");
    assert_eq!(
        (withdrawal.recipient, withdrawal.asset, withdrawal.amount),
        (recipient, item(), U256::from(1))
    );
    // Only the change output entered the tree; the withdrawal is claimable upstream.
    assert_eq!(receipt.leaves, vec![3]);
    assert_eq!(world.state.withdrawals(), &[withdrawal]);
    assert_eq!(world.state.root(), tx.public.new_root);
}

#[test]
fn double_spend_fails_and_changes_nothing() {
    let mut world = world();
    let (_, verifier) = keys();
    let transfer = world.signed_by_alice(world.payment());
    let tx = world.prove(&transfer, 4).expect("proves");
    world
        .state
        .apply_transfer(verifier, &tx)
        .expect("first spend");
    let after_first = world.state.clone();
    // The same transaction again: its root is gone.
    assert_eq!(
        world.state.apply_transfer(verifier, &tx),
        Err(AssetsError::StaleRoot)
    );
    // A new transfer spending the same outputs against the new root.
    let mut plan = world.payment();
    plan.root = world.state.root();
    plan.inputs = [world.input(0), world.input(1)];
    plan.outputs[0].blinding = Fr::from(99u64);
    let again = world
        .prove(&world.signed_by_alice(plan), 5)
        .expect("proves");
    assert_eq!(
        world.state.apply_transfer(verifier, &again),
        Err(AssetsError::NullifierSpent { input: 0 })
    );
    assert_eq!(world.state, after_first);
}

#[test]
fn wrong_signature_fails_and_changes_nothing() {
    let mut world = world();
    let mut transfer = world.signed_by_alice(world.payment());
    // Bob signs Alice's input.
    transfer.signatures[1] = world.bob.sign(transfer.effects.message());
    let before = world.state.clone();
    assert_eq!(
        world.prove(&transfer, 6).map(|_| ()),
        Err(AssetsError::SignatureInvalid { input: 1 })
    );
    assert_eq!(world.state, before);
    assert_refused_unchecked(&mut world, &transfer, 7);
}

#[test]
fn unbalanced_amounts_fail_and_change_nothing() {
    let mut world = world();
    let mut plan = world.payment();
    plan.outputs[0].amount = U256::from(121);
    let transfer = world.signed_by_alice(plan);
    assert_eq!(
        world.prove(&transfer, 8).map(|_| ()),
        Err(AssetsError::Unbalanced { asset: token() })
    );
    assert_refused_unchecked(&mut world, &transfer, 9);

    // Amounts that balance in total but not per asset type: a token input pays for an item.
    let mut plan = world.payment();
    plan.outputs[1].asset = item();
    let transfer = world.signed_by_alice(plan);
    assert!(matches!(
        transfer.check(),
        Err(AssetsError::Unbalanced { .. })
    ));
}

#[test]
fn forged_merkle_path_fails_and_changes_nothing() {
    let mut world = world();
    let mut plan = world.payment();
    // Alice claims an output of 1,000 tokens that was never minted, on leaf 0's path.
    plan.inputs[0].output.amount = U256::from(1_000);
    plan.outputs[0].amount = U256::from(1_020);
    let transfer = world.signed_by_alice(plan);
    assert_eq!(
        world.prove(&transfer, 10).map(|_| ()),
        Err(AssetsError::MerklePathInvalid { input: 0 })
    );
    assert_refused_unchecked(&mut world, &transfer, 11);
    assert_eq!(world.input(0).path.positions.len(), TREE_DEPTH);
}

#[test]
fn proof_for_another_root_fails_and_changes_nothing() {
    // A valid proof against the root of another state (one more deposit there).
    let mut other = world();
    let mut world = world();
    let (_, verifier) = keys();
    other
        .state
        .apply_deposit(&Deposit {
            deposit_id: 3,
            owner: other.alice.address(),
            asset: token(),
            amount: U256::from(5),
        })
        .expect("next deposit");
    let tx = other
        .prove(&other.signed_by_alice(other.payment()), 12)
        .expect("proves");
    let before = world.state.clone();
    assert_eq!(
        world.state.apply_transfer(verifier, &tx),
        Err(AssetsError::StaleRoot)
    );
    // The same proof relabelled with this state's root and next leaf.
    let mut relabelled = tx.clone();
    relabelled.public.old_root = world.state.root();
    relabelled.public.leaf_index = world.state.leaf_count();
    assert_eq!(
        world.state.apply_transfer(verifier, &relabelled),
        Err(AssetsError::ProofInvalid)
    );
    // A proof made here, but before another deposit moved the root: stale, proven again.
    let stale = world
        .prove(&world.signed_by_alice(world.payment()), 13)
        .expect("proves");
    world
        .state
        .apply_deposit(&Deposit {
            deposit_id: 3,
            owner: world.bob.address(),
            asset: token(),
            amount: U256::from(5),
        })
        .expect("next deposit");
    let before = {
        assert_ne!(world.state, before);
        world.state.clone()
    };
    assert_eq!(
        world.state.apply_transfer(verifier, &stale),
        Err(AssetsError::StaleRoot)
    );
    assert_eq!(world.state, before);
    let fresh = world
        .prove(&world.signed_by_alice(world.payment()), 14)
        .expect("the same signed transfer proves against the new root");
    assert_eq!(
        world
            .state
            .apply_transfer(verifier, &fresh)
            .map(|r| r.leaves),
        Ok(vec![4, 5])
    );
}

/// The constraint system of a circuit, synthesized as the prover does.
fn synthesize(
    circuit: impl ark_relations::gr1cs::ConstraintSynthesizer<Fr>,
) -> ark_relations::gr1cs::ConstraintSystemRef<Fr> {
    use ark_relations::gr1cs::{ConstraintSystem, OptimizationGoal};
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    circuit.generate_constraints(cs.clone()).expect("synthesis");
    cs.finalize();
    cs
}

/// Whether the circuit over `witness` is satisfied (no proof: the constraint system alone).
fn satisfies_circuit(witness: &TransferWitness) -> bool {
    let cs = synthesize(crate::circuit::TransferCircuit::new(witness.clone()));
    cs.is_satisfied().expect("assigned")
}

#[test]
fn circuit_holds_for_valid_transfers_only() {
    let world = world();
    let valid = world.prepared(&world.signed_by_alice(world.payment()));
    assert!(satisfies_circuit(&valid));
    // The blank circuit of the key setup is a valid transfer too, of the same shape: keys set
    // up over it prove every transfer.
    let blank = synthesize(crate::circuit::TransferCircuit::blank());
    assert!(blank.is_satisfied().expect("assigned"));
    let payment = synthesize(crate::circuit::TransferCircuit::new(valid.clone()));
    assert_eq!(blank.num_constraints(), payment.num_constraints());
    let counted = crate::circuit::constraint_count().expect("synthesis");
    assert_eq!(counted, payment.num_constraints());
    let deposit = synthesize(crate::circuit::DepositCircuit::blank());
    assert!(deposit.is_satisfied().expect("assigned"));

    let mut bad_signature = world.signed_by_alice(world.payment());
    bad_signature.signatures[0] = world.bob.sign(bad_signature.effects.message());
    assert!(!satisfies_circuit(&world.prepared(&bad_signature)));

    let mut unbalanced = world.payment();
    unbalanced.outputs[1].amount = U256::from(31);
    assert!(!satisfies_circuit(
        &world.prepared(&world.signed_by_alice(unbalanced))
    ));

    let mut forged = world.payment();
    forged.inputs[1].output.amount = U256::from(60);
    forged.outputs[1].amount = U256::from(40);
    assert!(!satisfies_circuit(
        &world.prepared(&world.signed_by_alice(forged))
    ));

    // The state transition: another old root, another new root, another leaf.
    let mut other_root = valid.clone();
    other_root.insertion.old_root = Fr::from(1u64);
    assert!(!satisfies_circuit(&other_root));
    let mut other_new_root = valid.clone();
    other_new_root.insertion.new_root = Fr::from(1u64);
    assert!(!satisfies_circuit(&other_new_root));
    let mut other_leaf = valid.clone();
    other_leaf.insertion.leaf_index += 1;
    assert!(!satisfies_circuit(&other_leaf));
    // Appending at a leaf that is taken: the path from an empty leaf misses the old root.
    let mut taken = valid;
    taken.insertion.leaf_index = 2;
    taken.insertion.paths[0] = world.state.path(2).expect("leaf 2");
    assert!(!satisfies_circuit(&taken));
}
