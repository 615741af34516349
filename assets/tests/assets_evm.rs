//! The assets engine against a real EVM: Hardhat's dev node from npm (started by
//! `upper_chain::devnode`), Solidity compiled by the repository's solc-js.
//!
//! The Groth16 verifier generated from a verifying-key file accepts a real proof and refuses a
//! tampered proof, a proof with its G2 coordinates in arkworks' order instead of the
//! precompile's, wrong public inputs and a public input shifted by the field modulus.
//!
//! The bridge and rollup contracts with real OpenZeppelin ERC-20 and ERC-721 tokens: a deposit
//! locked upstream is read back from its `Deposit` event and minted once on both sides (the
//! bridge group's state here, the rollup's root there, proven with the deposit circuit); a
//! transfer and a withdraw move both roots together; the bridge releases the withdrawal once;
//! an item goes in and comes out the same item. Every refusal is typed on both sides and leaves
//! both as they were.
//!
//! Without Node.js the tests are skipped with a message, except under `CI=true`, where that
//! fails them.

#![allow(missing_docs, clippy::unwrap_used)]

use std::sync::OnceLock;

use alloy::{
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address as EvmAddress, B256, Bytes},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use ark_rand_chacha::ChaCha20Rng;
use ark_std::rand::SeedableRng;
use assets::{
    AssetsError, Fr, U256, asset,
    keys::SpendingKey,
    output::Output,
    prover::{self, DepositProver, Prover, TransferTx, Verifier},
    solidity,
    state::{AssetState, Deposit},
    transfer::{InputNote, SignedTransfer, TransferPlan, TransferPublic},
};
use primitives::AccountKey;
use upper_chain::{
    devnode::{CHAIN_ID, compile_solidity, devnode, funded_key},
    rollup::{BridgeDeposit, EvmAssets, ProvenWithdrawal, RollupError, TransferInputs},
};

/// Seed of the dev setup these tests use.
const SETUP_SEED: u64 = 16;

struct Keys {
    prover: Prover,
    verifier: Verifier,
    deposit_prover: DepositProver,
    /// The generated verifiers' creation bytecode.
    verifier_code: Vec<u8>,
    deposit_verifier_code: Vec<u8>,
    _directory: tempfile::TempDir,
}

/// Keys set up once, written to files, read back; the Solidity verifier generated from the
/// verifying-key file and compiled.
fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let directory = tempfile::tempdir().unwrap();
        let (proving_key, verifying_key) = prover::dev_setup(SETUP_SEED).unwrap();
        prover::write_keys(directory.path(), &proving_key, &verifying_key).unwrap();
        let (proving_key, verifying_key) = prover::dev_setup_deposit(SETUP_SEED).unwrap();
        prover::write_deposit_keys(directory.path(), &proving_key, &verifying_key).unwrap();
        let compiled = |key, name: &str| {
            let source = solidity::verifier_source(&key, name, "the test's key files");
            let path = directory.path().join(format!("{name}.sol"));
            std::fs::write(&path, source).unwrap();
            compile_solidity(&path, name).unwrap()
        };
        let verifier_code = compiled(
            prover::read_verifying_key(directory.path()).unwrap(),
            "TransferVerifier",
        );
        let deposit_verifier_code = compiled(
            prover::read_deposit_verifying_key(directory.path()).unwrap(),
            "DepositVerifier",
        );
        Keys {
            prover: Prover::from_file(directory.path()).unwrap(),
            verifier: Verifier::from_file(directory.path()).unwrap(),
            deposit_prover: DepositProver::from_file(directory.path()).unwrap(),
            verifier_code,
            deposit_verifier_code,
            _directory: directory,
        }
    })
}

/// A provider for `url` whose transactions a fresh funded dev key signs.
fn provider(url: &str) -> (DynProvider, EvmAddress) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = funded_key();
    let signer = PrivateKeySigner::from_bytes(&B256::from(key.secret_bytes())).unwrap();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_http(url.parse().unwrap())
        .erased();
    (provider, key.address())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Alice pays Bob 120 of her two deposits (100 and 50) and keeps 30.
fn proven_transfer() -> TransferTx {
    let alice = SpendingKey::from_seed([0xa1; 32]);
    let bob = SpendingKey::from_seed([0xb0; 32]);
    let token = U256::from_be_slice(&[0x70; 20]);
    let mut state = AssetState::new();
    let deposits: Vec<Output> = [100u64, 50]
        .iter()
        .enumerate()
        .map(|(id, amount)| {
            let deposit = Deposit {
                deposit_id: id as u64,
                owner: alice.address(),
                asset: token,
                amount: U256::from(*amount),
            };
            state.apply_deposit(&deposit).unwrap();
            deposit.output()
        })
        .collect();
    let input = |leaf: u64| InputNote {
        output: deposits[leaf as usize],
        leaf_index: leaf,
        path: state.path(leaf).unwrap(),
    };
    let pay = |owner: &SpendingKey, amount: u64, blinding: u64| Output {
        owner: owner.address(),
        asset: token,
        amount: U256::from(amount),
        blinding: Fr::from(blinding),
    };
    let plan = TransferPlan {
        root: state.root(),
        inputs: [input(0), input(1)],
        outputs: [pay(&bob, 120, 11), pay(&alice, 30, 12)],
        withdraw_to: None,
    };
    let witness = state.prepare(&plan.sign([&alice, &alice])).unwrap();
    keys()
        .prover
        .prove(&witness, &mut ChaCha20Rng::seed_from_u64(1))
        .unwrap()
}

#[test]
fn the_generated_verifier_accepts_a_real_proof_and_refuses_tampered_ones() {
    let Some(url) = devnode() else {
        return;
    };
    let keys = keys();
    let tx = proven_transfer();
    assert!(keys.verifier.verify(&tx.public, &tx.proof));
    let proof = solidity::proof_to_words(&tx.proof);
    let inputs = solidity::inputs_to_words(&tx.public.to_field_elements());

    let (provider, from) = provider(url);
    let runtime = runtime();
    let verifier = runtime.block_on(async {
        let deploy = TransactionRequest::default()
            .with_from(from)
            .with_deploy_code(keys.verifier_code.clone());
        let receipt = provider
            .send_transaction(deploy)
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap();
        assert!(receipt.status());
        receipt.contract_address.unwrap()
    });
    let verifies = |proof: &[U256; solidity::PROOF_WORDS], inputs: &[U256]| -> bool {
        let call = TransactionRequest::default()
            .with_to(verifier)
            .with_input(Bytes::from(solidity::verify_calldata(proof, inputs)));
        let answer = runtime
            .block_on(async { provider.call(call).await })
            .unwrap();
        assert_eq!(
            answer.len(),
            32,
            "verifyProof returns one bool and never reverts"
        );
        U256::from_be_slice(&answer) == U256::from(1)
    };

    assert!(verifies(&proof, &inputs), "a real proof verifies on chain");

    // A point moved off its curve.
    let mut tampered = proof;
    tampered[0] += U256::from(1);
    assert!(!verifies(&tampered, &inputs));
    // A valid point, but not the proof's: C replaced by A.
    let mut swapped = proof;
    swapped[6] = proof[0];
    swapped[7] = proof[1];
    assert!(!verifies(&swapped, &inputs));
    // B with arkworks' coordinate order (real part first) instead of EIP-197's.
    let mut real_first = proof;
    real_first.swap(2, 3);
    real_first.swap(4, 5);
    assert!(!verifies(&real_first, &inputs));

    // Wrong public inputs: another old root, new root, leaf, nullifier.
    for index in [0, 1, 2, 3] {
        let mut wrong = inputs.clone();
        wrong[index] += U256::from(1);
        assert!(!verifies(&proof, &wrong));
    }
    // The same nullifier plus the field modulus: equal in the field, refused as non-canonical.
    let modulus = U256::from_str_radix(
        "21888242871839275222246405745257275088548364400416034343698204186575808495617",
        10,
    )
    .unwrap();
    let mut aliased = inputs.clone();
    aliased[3] += modulus;
    assert!(!verifies(&proof, &aliased));
    // The untouched proof still verifies: the refusals changed nothing.
    assert!(verifies(&proof, &inputs));
}

/// The bridge group's state and the rollup on chain, moved together.
struct Rollup {
    state: AssetState,
    /// The operator's adapter (proves and submits).
    chain: EvmAssets,
    seed: u64,
}

fn word(value: Fr) -> U256 {
    solidity::fr_to_u256(value)
}

fn inputs_of(public: &TransferPublic) -> TransferInputs {
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

impl Rollup {
    fn deploy(url: &str) -> Self {
        let keys = keys();
        let chain = EvmAssets::deploy(
            url,
            CHAIN_ID,
            &funded_key(),
            keys.verifier_code.clone(),
            keys.deposit_verifier_code.clone(),
            word(AssetState::new().root()),
        )
        .unwrap();
        Self {
            state: AssetState::new(),
            chain,
            seed: 100,
        }
    }

    /// The same account on the same contracts.
    fn as_user(&self, url: &str, key: &AccountKey) -> EvmAssets {
        EvmAssets::connect(
            url,
            CHAIN_ID,
            key,
            self.chain.bridge(),
            self.chain.deploy_block(),
        )
        .unwrap()
    }

    fn rng(&mut self) -> ChaCha20Rng {
        self.seed += 1;
        ChaCha20Rng::seed_from_u64(self.seed)
    }

    fn assert_in_step(&self) {
        assert_eq!(self.chain.root().unwrap(), word(self.state.root()));
        assert_eq!(self.chain.leaf_count().unwrap(), self.state.leaf_count());
        assert_eq!(
            self.chain.deposits_minted().unwrap(),
            self.state.deposits_minted()
        );
    }

    /// What each side holds, to show a refusal changed nothing.
    fn snapshot(&self) -> (AssetState, U256, u64, u64, u64) {
        (
            self.state.clone(),
            self.chain.root().unwrap(),
            self.chain.leaf_count().unwrap(),
            self.chain.deposits_minted().unwrap(),
            self.chain.withdrawal_count().unwrap(),
        )
    }

    /// Mints a bridge deposit read from its event on both sides; returns its output.
    fn mint(&mut self, event: &BridgeDeposit) -> Output {
        let deposit =
            Deposit::from_event(event.deposit_id, event.owner, event.asset, event.amount).unwrap();
        let witness = self.state.prepare_deposit(&deposit).unwrap();
        let mut rng = self.rng();
        let tx = keys().deposit_prover.prove(&witness, &mut rng).unwrap();
        self.chain
            .mint_deposit(
                event,
                word(tx.public.new_root),
                solidity::proof_to_words(&tx.proof),
            )
            .unwrap();
        self.state.apply_deposit(&deposit).unwrap();
        self.assert_in_step();
        deposit.output()
    }

    fn prove(&mut self, transfer: &SignedTransfer) -> TransferTx {
        let witness = self.state.prepare(transfer).unwrap();
        let mut rng = self.rng();
        keys().prover.prove(&witness, &mut rng).unwrap()
    }

    /// Applies a proven transfer on both sides; returns the withdrawal the chain proved.
    fn apply(&mut self, tx: &TransferTx) -> Option<ProvenWithdrawal> {
        let receipt = self.state.apply_transfer(&keys().verifier, tx).unwrap();
        let applied = self
            .chain
            .transfer(&inputs_of(&tx.public), solidity::proof_to_words(&tx.proof))
            .unwrap();
        self.assert_in_step();
        assert_eq!(receipt.withdrawal.is_some(), applied.withdrawal.is_some());
        applied.withdrawal
    }

    /// Submits `tx` to both sides, expects both to refuse it, and both to be unchanged.
    fn assert_refused(&mut self, tx: &TransferTx, state: AssetsError, chain: RollupError) {
        let before = self.snapshot();
        assert_eq!(self.state.apply_transfer(&keys().verifier, tx), Err(state));
        assert_eq!(
            self.chain
                .transfer(&inputs_of(&tx.public), solidity::proof_to_words(&tx.proof)),
            Err(chain)
        );
        assert_eq!(self.snapshot(), before);
    }

    fn input(&self, output: Output, leaf: u64) -> InputNote {
        InputNote {
            output,
            leaf_index: leaf,
            path: self.state.path(leaf).unwrap(),
        }
    }
}

fn output(owner: &SpendingKey, asset: U256, amount: u64, blinding: u64) -> Output {
    Output {
        owner: owner.address(),
        asset,
        amount: U256::from(amount),
        blinding: Fr::from(blinding),
    }
}

#[test]
fn erc20_deposits_mint_once_move_and_withdraw_with_both_roots_in_step() {
    let Some(url) = devnode() else {
        return;
    };
    let mut rollup = Rollup::deploy(url);
    let alice = SpendingKey::from_seed([0xa1; 32]);
    let bob = SpendingKey::from_seed([0xb0; 32]);
    // Alice's upper-chain account holds the tokens and deposits them for her asset address.
    let alice_account = funded_key();
    let alice_chain = rollup.as_user(url, &alice_account);
    let token = alice_chain
        .deploy_test_erc20("GOLD", U256::from(1_000))
        .unwrap();
    let asset = asset::erc20(token);
    alice_chain.approve_erc20(token, U256::from(150)).unwrap();
    let owner = solidity::address_words(&alice.address());
    alice_chain
        .deposit_erc20(token, U256::from(100), owner)
        .unwrap();
    alice_chain
        .deposit_erc20(token, U256::from(50), owner)
        .unwrap();
    // Only what was approved can be locked; a refused deposit records nothing.
    assert!(matches!(
        alice_chain.deposit_erc20(token, U256::from(1), owner),
        Err(RollupError::Token(_))
    ));
    assert_eq!(
        alice_chain.deposit_erc20(token, U256::ZERO, owner),
        Err(RollupError::ZeroAmount)
    );
    assert_eq!(rollup.chain.deposit_count().unwrap(), 2);
    assert_eq!(
        alice_chain
            .erc20_balance(token, rollup.chain.bridge())
            .unwrap(),
        U256::from(150)
    );

    // The bridge group reads the events and mints each once, on both sides.
    let events = rollup.chain.deposits(0).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(
        (events[0].asset, events[0].amount, events[0].owner),
        (asset, U256::from(100), owner)
    );
    let first = rollup.mint(&events[0]);
    let second = rollup.mint(&events[1]);
    assert_eq!(first, output(&alice, asset, 100, 0));
    // Replayed events mint nothing, on either side.
    let before = rollup.snapshot();
    let replay = Deposit::from_event(1, events[1].owner, asset, events[1].amount).unwrap();
    assert_eq!(
        rollup.state.apply_deposit(&replay),
        Err(AssetsError::DepositReplayed { deposit_id: 1 })
    );
    let proof_of_first = {
        let mut state = AssetState::new();
        let deposit = Deposit::from_event(0, owner, asset, U256::from(100)).unwrap();
        let witness = state.prepare_deposit(&deposit).unwrap();
        state.apply_deposit(&deposit).unwrap();
        keys()
            .deposit_prover
            .prove(&witness, &mut ChaCha20Rng::seed_from_u64(9))
            .unwrap()
    };
    assert_eq!(
        rollup.chain.mint_deposit(
            &events[0],
            word(proof_of_first.public.new_root),
            solidity::proof_to_words(&proof_of_first.proof)
        ),
        Err(RollupError::DepositAlreadyMinted(0))
    );
    let mut not_yet = events[1];
    not_yet.deposit_id = 2;
    assert_eq!(
        rollup.chain.mint_deposit(
            &not_yet,
            U256::ZERO,
            solidity::proof_to_words(&proof_of_first.proof)
        ),
        Err(RollupError::UnknownDeposit(2))
    );
    assert_eq!(rollup.snapshot(), before);

    // Alice pays Bob 120 and keeps 30.
    let plan = TransferPlan {
        root: rollup.state.root(),
        inputs: [rollup.input(first, 0), rollup.input(second, 1)],
        outputs: [output(&bob, asset, 120, 11), output(&alice, asset, 30, 12)],
        withdraw_to: None,
    };
    let payment = plan.clone().sign([&alice, &alice]);
    let paid = rollup.prove(&payment);
    // A tampered proof is refused by the verifier contract, changing nothing.
    let mut tampered = paid.clone();
    tampered.proof.a = paid.proof.c;
    rollup.assert_refused(
        &tampered,
        AssetsError::ProofInvalid,
        RollupError::ProofInvalid,
    );
    // A dishonest prover's proof of a transfer Bob signed for Alice is refused too.
    let mut forged_signature = payment.clone();
    forged_signature.signatures[0] = bob.sign(forged_signature.effects.message());
    let forged = keys()
        .prover
        .prove_unchecked(
            &rollup.state.prepare(&forged_signature).unwrap(),
            &mut ChaCha20Rng::seed_from_u64(3),
        )
        .unwrap();
    rollup.assert_refused(
        &forged,
        AssetsError::ProofInvalid,
        RollupError::ProofInvalid,
    );
    assert!(rollup.apply(&paid).is_none());
    assert!(
        rollup
            .chain
            .is_spent(word(paid.public.effects.nullifiers[0]))
            .unwrap()
    );

    // The same proof again: its root is gone. The same outputs spent again from the new root:
    // their nullifiers are spent, on both sides.
    let current = word(rollup.state.root());
    rollup.assert_refused(
        &paid,
        AssetsError::StaleRoot,
        RollupError::StaleRoot {
            current,
            got: word(paid.public.old_root),
        },
    );
    let mut again = plan.clone();
    again.outputs[0].blinding = Fr::from(99u64);
    let again = rollup.prove(&again.sign([&alice, &alice]));
    rollup.assert_refused(
        &again,
        AssetsError::NullifierSpent { input: 0 },
        RollupError::NullifierSpent(word(again.public.effects.nullifiers[0])),
    );

    // Bob withdraws 100 of his 120 to an upper-chain account and keeps 20.
    let recipient = AccountKey::from_seed(0xb0b).address();
    let bob_output = output(&bob, asset, 120, 11);
    let withdraw = TransferPlan {
        root: rollup.state.root(),
        inputs: [
            rollup.input(bob_output, 2),
            InputNote::dummy(bob.address(), asset, Fr::from(77u64)),
        ],
        outputs: [output(&bob, asset, 20, 21), output(&bob, asset, 100, 22)],
        withdraw_to: Some(recipient),
    };
    let withdrawn = rollup.prove(&withdraw.sign([&bob, &bob]));
    let proven = rollup
        .apply(&withdrawn)
        .expect("a withdraw proves a withdrawal");
    assert_eq!(
        (proven.recipient, proven.asset, proven.amount),
        (recipient, asset, U256::from(100))
    );
    // Released once, to the recipient, by anyone.
    rollup.chain.release(&proven).unwrap();
    let balance = |account| alice_chain.erc20_balance(token, account).unwrap();
    assert_eq!(balance(recipient), U256::from(100));
    assert_eq!(balance(rollup.chain.bridge()), U256::from(50));
    assert_eq!(
        alice_chain.release(&proven),
        Err(RollupError::AlreadyReleased(proven.withdrawal_id))
    );
    let mut inflated = proven;
    inflated.amount = U256::from(150);
    assert_eq!(
        alice_chain.release(&inflated),
        Err(RollupError::UnknownWithdrawal(proven.withdrawal_id))
    );
    assert_eq!(balance(recipient), U256::from(100));
    assert_eq!(balance(rollup.chain.bridge()), U256::from(50));
    // The withdraw replayed: refused on both sides, nothing more released.
    rollup.assert_refused(
        &withdrawn,
        AssetsError::StaleRoot,
        RollupError::StaleRoot {
            current: word(rollup.state.root()),
            got: word(withdrawn.public.old_root),
        },
    );
    assert_eq!(rollup.chain.withdrawal_count().unwrap(), 1);
}

#[test]
fn an_item_travels_in_and_out_intact() {
    let Some(url) = devnode() else {
        return;
    };
    let mut rollup = Rollup::deploy(url);
    let alice = SpendingKey::from_seed([0xa2; 32]);
    let bob = SpendingKey::from_seed([0xb2; 32]);
    let depositor = funded_key();
    let user = rollup.as_user(url, &depositor);
    let items = user.deploy_test_erc721("SWORD").unwrap();
    let id = U256::from(7);
    user.mint_item(items, depositor.address(), id).unwrap();
    user.mint_item(items, depositor.address(), U256::from(1) << 96)
        .unwrap();
    user.approve_item(items, id).unwrap();
    let owner = solidity::address_words(&alice.address());
    // Ids that do not fit an asset type, and the item contract as an ERC-20, are refused.
    assert_eq!(
        user.deposit_erc721(items, U256::from(1) << 96, owner),
        Err(RollupError::ItemIdTooLarge(U256::from(1) << 96))
    );
    let (event, _) = user.deposit_erc721(items, id, owner).unwrap();
    assert_eq!(
        user.deposit_erc20(items, U256::from(1), owner),
        Err(RollupError::WrongKind(items))
    );
    assert_eq!(user.item_owner(items, id).unwrap(), rollup.chain.bridge());
    let asset = asset::erc721(items, id).unwrap();
    assert_eq!((event.asset, event.amount), (asset, U256::from(1)));
    let events = rollup.chain.deposits(0).unwrap();
    assert_eq!(events, vec![event]);
    let minted = rollup.mint(&events[0]);

    // Alice gives the item to Bob; Bob withdraws it to his upper-chain account.
    let to_bob = TransferPlan {
        root: rollup.state.root(),
        inputs: [
            rollup.input(minted, 0),
            InputNote::dummy(alice.address(), asset, Fr::from(5u64)),
        ],
        outputs: [output(&bob, asset, 1, 31), output(&alice, asset, 0, 32)],
        withdraw_to: None,
    };
    let given = rollup.prove(&to_bob.sign([&alice, &alice]));
    rollup.apply(&given);
    // Bob cannot split the item or make a second one.
    let recipient = AccountKey::from_seed(0x5a0d).address();
    let bobs = output(&bob, asset, 1, 31);
    let mut two = TransferPlan {
        root: rollup.state.root(),
        inputs: [
            rollup.input(bobs, 1),
            InputNote::dummy(bob.address(), asset, Fr::from(6u64)),
        ],
        outputs: [output(&bob, asset, 1, 41), output(&bob, asset, 1, 42)],
        withdraw_to: Some(recipient),
    };
    assert!(matches!(
        rollup
            .state
            .prepare(&two.clone().sign([&bob, &bob]))
            .and_then(|w| w.check()),
        Err(AssetsError::Unbalanced { .. })
    ));
    two.outputs[0].amount = U256::ZERO;
    let out = rollup.prove(&two.sign([&bob, &bob]));
    let proven = rollup.apply(&out).expect("a withdrawal");
    rollup.chain.release(&proven).unwrap();
    assert_eq!(user.item_owner(items, id).unwrap(), recipient);
    assert_eq!(
        rollup.chain.release(&proven),
        Err(RollupError::AlreadyReleased(proven.withdrawal_id))
    );
    assert_eq!(user.item_owner(items, id).unwrap(), recipient);
}
