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
    prover::{self, Prover, TransferTx, Verifier},
    state::{AssetState, Deposit},
    transfer::{InputNote, SignedTransfer, TransferPlan, TransferPublic},
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
    let deposits = vec![
        Output {
            owner: alice.address(),
            asset: token(),
            amount: U256::from(100),
            blinding: Fr::from(1u64),
        },
        Output {
            owner: alice.address(),
            asset: token(),
            amount: U256::from(50),
            blinding: Fr::from(2u64),
        },
        Output {
            owner: alice.address(),
            asset: item(),
            amount: U256::from(1),
            blinding: Fr::from(3u64),
        },
    ];
    for (id, output) in deposits.iter().enumerate() {
        let leaf = state
            .apply_deposit(&Deposit {
                deposit_id: id as u64,
                output: *output,
            })
            .expect("fresh deposit");
        assert_eq!(leaf, id as u64);
    }
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
}

/// A dishonest prover proves `transfer` anyway; the state must refuse the proof and stay as it
/// was.
fn assert_refused_unchecked(world: &mut World, transfer: &SignedTransfer, seed: u64) {
    let (prover, verifier) = keys();
    let tx = prover
        .prove_unchecked(transfer, &mut rng(seed))
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
        output: world.deposits[1],
    };
    assert_eq!(
        world.state.apply_deposit(&replay),
        Err(AssetsError::DepositReplayed { deposit_id: 1 })
    );
    assert_eq!(world.state, before);
}

#[test]
fn transfer_proves_verifies_and_the_recipient_spends_it() {
    let mut world = world();
    let (prover, verifier) = keys();
    let plan = world.payment();
    let outputs = plan.outputs;
    let transfer = world.signed_by_alice(plan);
    let tx = prover
        .prove(&transfer, &mut rng(1))
        .expect("valid transfer proves");
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
    assert!(tx.public.nullifiers.iter().all(|n| world.state.is_spent(n)));

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
        .prove(&plan.sign([&world.bob, &world.bob]), &mut rng(2))
        .expect("proves");
    assert_eq!(
        world.state.apply_transfer(verifier, &tx).map(|r| r.leaves),
        Ok(vec![5, 6])
    );
}

#[test]
fn withdraw_proves_verifies_and_never_enters_the_tree() {
    let mut world = world();
    let (prover, verifier) = keys();
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
    let tx = prover
        .prove(&world.signed_by_alice(plan), &mut rng(3))
        .expect("proves");
    assert_eq!(tx.public.commitments[1], Fr::from(0u64));
    // The same proof with the withdrawal redirected to another account does not verify.
    let mut redirected = tx.clone();
    let mut stolen = tx.public.withdrawal.expect("a withdraw");
    stolen.recipient = EvmAddress::repeat_byte(0x66);
    redirected.public.withdrawal = Some(stolen);
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
}

#[test]
fn double_spend_fails_and_changes_nothing() {
    let mut world = world();
    let (prover, verifier) = keys();
    let transfer = world.signed_by_alice(world.payment());
    let tx = prover.prove(&transfer, &mut rng(4)).expect("proves");
    world
        .state
        .apply_transfer(verifier, &tx)
        .expect("first spend");
    let after_first = world.state.clone();
    // The same transaction again.
    assert_eq!(
        world.state.apply_transfer(verifier, &tx),
        Err(AssetsError::NullifierSpent { input: 0 })
    );
    // A new transfer spending the same outputs against the new root.
    let mut plan = world.payment();
    plan.root = world.state.root();
    plan.inputs = [world.input(0), world.input(1)];
    plan.outputs[0].blinding = Fr::from(99u64);
    let again = prover
        .prove(&world.signed_by_alice(plan), &mut rng(5))
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
    transfer.signatures[1] = world.bob.sign(transfer.public.message());
    let before = world.state.clone();
    assert_eq!(
        keys().0.prove(&transfer, &mut rng(6)).map(|_| ()),
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
        keys().0.prove(&transfer, &mut rng(8)).map(|_| ()),
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
        keys().0.prove(&transfer, &mut rng(10)).map(|_| ()),
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
    let (prover, verifier) = keys();
    other
        .state
        .apply_deposit(&Deposit {
            deposit_id: 9,
            output: other.deposits[0],
        })
        .expect("fresh deposit");
    let tx = prover
        .prove(&other.signed_by_alice(other.payment()), &mut rng(12))
        .expect("proves");
    let before = world.state.clone();
    assert_eq!(
        world.state.apply_transfer(verifier, &tx),
        Err(AssetsError::UnknownRoot)
    );
    // The same proof relabelled with a root this state does know.
    let relabelled = TransferTx {
        public: TransferPublic {
            root: world.state.root(),
            ..tx.public
        },
        proof: tx.proof,
    };
    assert_eq!(
        world.state.apply_transfer(verifier, &relabelled),
        Err(AssetsError::ProofInvalid)
    );
    assert_eq!(world.state, before);
}

/// The constraint system of the circuit over `transfer`, synthesized as the prover does.
fn synthesize(
    circuit: crate::circuit::TransferCircuit,
) -> ark_relations::gr1cs::ConstraintSystemRef<Fr> {
    use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystem, OptimizationGoal};
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    circuit.generate_constraints(cs.clone()).expect("synthesis");
    cs.finalize();
    cs
}

/// Whether the circuit over `transfer` is satisfied (no proof: the constraint system alone).
fn satisfies_circuit(transfer: &SignedTransfer) -> bool {
    let cs = synthesize(crate::circuit::TransferCircuit::new(transfer.clone()));
    cs.is_satisfied().expect("assigned")
}

#[test]
fn circuit_holds_for_valid_transfers_only() {
    let world = world();
    assert!(satisfies_circuit(&world.signed_by_alice(world.payment())));
    // The blank circuit of the key setup is a valid transfer too, of the same shape: keys set
    // up over it prove every transfer.
    let blank = synthesize(crate::circuit::TransferCircuit::blank());
    assert!(blank.is_satisfied().expect("assigned"));
    let payment = synthesize(crate::circuit::TransferCircuit::new(
        world.signed_by_alice(world.payment()),
    ));
    assert_eq!(blank.num_constraints(), payment.num_constraints());
    let counted = crate::circuit::constraint_count().expect("synthesis");
    assert_eq!(counted, payment.num_constraints());

    let mut bad_signature = world.signed_by_alice(world.payment());
    bad_signature.signatures[0] = world.bob.sign(bad_signature.public.message());
    assert!(!satisfies_circuit(&bad_signature));

    let mut unbalanced = world.payment();
    unbalanced.outputs[1].amount = U256::from(31);
    assert!(!satisfies_circuit(&world.signed_by_alice(unbalanced)));

    let mut forged = world.payment();
    forged.inputs[1].output.amount = U256::from(60);
    forged.outputs[1].amount = U256::from(40);
    assert!(!satisfies_circuit(&world.signed_by_alice(forged)));

    let mut other_root = world.signed_by_alice(world.payment());
    other_root.public.root = Fr::from(1u64);
    assert!(!satisfies_circuit(&other_root));
}
