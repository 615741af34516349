//! The interface tests every [`UpperChain`] implementation must pass: the embedded chain (in
//! memory and in RocksDB), the embedded chain served over TCP, and the `Registry` contract on a
//! real EVM dev node.

#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;

use primitives::{
    AccountKey, Address, B256, NodeId, U256,
    bls::{BlsError, BlsSecretKey, BlsSignature, Certificate},
    pbft::{
        EquivocationEvidence, EvidenceError, EvidenceKind, PbftSignature, Signed, commit_message,
        pre_prepare_prehash, prepare_prehash,
    },
};
use upper_chain::{
    AdminOp, ChainError, Departure, DepartureKind, DepartureProof, DepositStream,
    GroupRootCommitment, Registration, SequencerCandidate, SequencerRecord, SyncedRoot, UpperChain,
    WalletUpdate, group_id, quorum,
    sponsorship::{SponsorPolicyRecord, SponsorPolicyUpdate, SponsorTerms},
};

/// The stake cap every test chain starts with.
pub const STAKE_CAP: u128 = 1_000;

/// The admin key of every test chain.
pub fn admin_key() -> AccountKey {
    AccountKey::from_seed(900)
}

/// A fresh chain under test.
pub trait Harness {
    /// The chain.
    fn chain(&self) -> Arc<dyn UpperChain>;
    /// Makes a bridge deposit on the chain (what a user's deposit transaction does).
    fn deposit(&self, recipient: Address, amount: U256);
}

/// Generates one `#[test]` per interface test, each on a fresh harness from `$make`.
///
/// With `skippable`, `$make` gives an `Option` of a harness, and `None` skips the test (a chain
/// that cannot be started here; the harness decides, and never skips under `CI=true`).
#[macro_export]
macro_rules! interface_tests {
    (skippable $make:expr) => {
        $crate::interface_tests!(@each_skippable $make;
            registration_by_the_signer_only,
            double_registration_fails,
            group_root_needs_a_genuine_quorum,
            epoch_snapshots_are_deterministic,
            deposits_arrive_exactly_once,
            batches_need_a_sequencer_quorum,
            sequencer_set_management,
            synced_roots,
            wallet_updates_by_the_owner_only,
            exits_and_evictions,
            equivocation_expels_the_offender,
            pre_prepare_equivocation_is_signed_by_the_operator_key,
        );
    };
    (@each_skippable $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let Some(harness) = $make else {
                    return;
                };
                common::$name(&harness);
            }
        )*
    };
    ($make:expr) => {
        $crate::interface_tests!(@each $make;
            registration_by_the_signer_only,
            double_registration_fails,
            group_root_needs_a_genuine_quorum,
            epoch_snapshots_are_deterministic,
            deposits_arrive_exactly_once,
            batches_need_a_sequencer_quorum,
            sequencer_set_management,
            synced_roots,
            wallet_updates_by_the_owner_only,
            exits_and_evictions,
            equivocation_expels_the_offender,
            pre_prepare_equivocation_is_signed_by_the_operator_key,
        );
    };
    (@each $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let harness = $make;
                common::$name(&harness);
            }
        )*
    };
}

fn registration(seed: u8) -> (Registration, BlsSecretKey) {
    let bls = BlsSecretKey::from_seed(&[seed; 32]);
    let registration = Registration {
        endpoint: format!("127.0.0.1:{}", 9000 + u16::from(seed)),
        reward_wallet: Address::repeat_byte(seed),
        wallet_features: vec![
            "erc20".into(),
            "zksync".into(),
            "flag-from-the-future".into(),
        ],
        bls_key: bls.public_key(),
        bls_possession: bls.proof_of_possession(),
    };
    (registration, bls)
}

/// The operator key of test node `seed`.
pub fn node_key(seed: u8) -> AccountKey {
    AccountKey::from_seed(u64::from(seed))
}

/// Registers node `seed`; returns its ID and BLS secret.
fn register(chain: &dyn UpperChain, seed: u8) -> (NodeId, BlsSecretKey) {
    let (registration, bls) = registration(seed);
    let signature = node_key(seed).sign_prehash(&registration.signing_hash());
    let id = chain.register_node(registration, &signature).unwrap();
    (id, bls)
}

fn admin(chain: &dyn UpperChain, op: AdminOp) -> Result<(), ChainError> {
    let nonce = chain.admin_nonce().unwrap();
    let signature = admin_key().sign_prehash(&op.signing_hash(nonce));
    chain.admin(op, &signature)
}

fn advance_epoch(chain: &dyn UpperChain) -> u64 {
    admin(chain, AdminOp::AdvanceEpoch).unwrap();
    chain.epoch().unwrap()
}

fn certificate(secrets: &[BlsSecretKey], signers: &[usize], message: &[u8]) -> Certificate {
    let votes: Vec<(usize, BlsSignature)> = signers
        .iter()
        .map(|index| (*index, secrets[*index].sign(message)))
        .collect();
    Certificate::aggregate(&votes).unwrap()
}

/// Eight nodes registered and active in the current epoch.
fn group(chain: &dyn UpperChain) -> (Vec<NodeId>, Vec<BlsSecretKey>) {
    let (members, secrets): (Vec<NodeId>, Vec<BlsSecretKey>) =
        (1..=8).map(|seed| register(chain, seed)).unzip();
    advance_epoch(chain);
    (members, secrets)
}

pub fn registration_by_the_signer_only(harness: &impl Harness) {
    let chain = harness.chain();
    let key = node_key(5);
    let (first, _) = registration(1);
    let signature = key.sign_prehash(&first.signing_hash());
    let id = chain.register_node(first.clone(), &signature).unwrap();
    assert_eq!(id, NodeId(key.address()));

    // Someone else signing the same registration (the same BLS key) is refused.
    let intruder = node_key(6);
    assert_eq!(
        chain.register_node(first.clone(), &intruder.sign_prehash(&first.signing_hash())),
        Err(ChainError::BlsKeyTaken)
    );
    // Someone else's BLS key without its proof of possession is refused.
    let (mut stolen, _) = registration(2);
    stolen.bls_possession = first.bls_possession;
    assert_eq!(
        chain.register_node(
            stolen.clone(),
            &intruder.sign_prehash(&stolen.signing_hash())
        ),
        Err(ChainError::BadPossession)
    );
    // A registration altered after signing is not the signer's.
    let (mut altered, _) = registration(3);
    let signature = intruder.sign_prehash(&altered.signing_hash());
    altered.endpoint = "10.0.0.1:1".into();
    let other = chain.register_node(altered, &signature).unwrap();
    assert_ne!(other, NodeId(intruder.address()));

    advance_epoch(chain.as_ref());
    let snapshot = chain.registry_snapshot(1).unwrap();
    assert_eq!(snapshot.node(&id).unwrap().registration, first);
    assert!(snapshot.node(&NodeId(intruder.address())).is_none());
}

pub fn double_registration_fails(harness: &impl Harness) {
    let chain = harness.chain();
    let (id, _) = register(chain.as_ref(), 1);
    let (again, _) = registration(1);
    let signature = node_key(1).sign_prehash(&again.signing_hash());
    assert_eq!(
        chain.register_node(again, &signature),
        Err(ChainError::AlreadyRegistered(id))
    );
    // Nor with a fresh BLS key.
    let (fresh, _) = registration(9);
    let signature = node_key(1).sign_prehash(&fresh.signing_hash());
    assert_eq!(
        chain.register_node(fresh, &signature),
        Err(ChainError::AlreadyRegistered(id))
    );
    advance_epoch(chain.as_ref());
    assert_eq!(chain.registry_snapshot(1).unwrap().ids(), vec![id]);
}

pub fn group_root_needs_a_genuine_quorum(harness: &impl Harness) {
    let chain = harness.chain();
    let (members, secrets) = group(chain.as_ref());
    let commitment = GroupRootCommitment {
        epoch: 1,
        group: group_id(&members),
        batch: 1,
        root: B256::repeat_byte(4),
    };
    let message = commitment.signing_bytes();
    assert_eq!(quorum(8), 6);

    // Short: five of eight.
    assert_eq!(
        chain.commit_group_root(
            commitment.clone(),
            &members,
            &certificate(&secrets, &[0, 1, 2, 3, 4], &message)
        ),
        Err(ChainError::BadCertificate(BlsError::TooFewSigners {
            signers: 5,
            quorum: 6
        }))
    );
    // Forged: six named, but one vote is by a key outside the group.
    let mut forged_secrets: Vec<BlsSecretKey> = secrets.clone();
    forged_secrets[5] = BlsSecretKey::from_seed(&[77; 32]);
    assert_eq!(
        chain.commit_group_root(
            commitment.clone(),
            &members,
            &certificate(&forged_secrets, &[0, 1, 2, 3, 4, 5], &message)
        ),
        Err(ChainError::BadCertificate(BlsError::BadSignature))
    );
    // Forged: a genuine quorum, but over another root.
    let other = GroupRootCommitment {
        root: B256::repeat_byte(5),
        ..commitment.clone()
    };
    assert_eq!(
        chain.commit_group_root(
            commitment.clone(),
            &members,
            &certificate(&secrets, &[0, 1, 2, 3, 4, 5], &other.signing_bytes())
        ),
        Err(ChainError::BadCertificate(BlsError::BadSignature))
    );
    // A signer beyond the group.
    let mut extra = secrets.clone();
    extra.push(BlsSecretKey::from_seed(&[78; 32]));
    assert_eq!(
        chain.commit_group_root(
            commitment.clone(),
            &members,
            &certificate(&extra, &[0, 1, 2, 3, 4, 8], &message)
        ),
        Err(ChainError::BadCertificate(BlsError::UnknownSigner {
            index: 8,
            validators: 8
        }))
    );
    // A member named twice.
    let mut doubled = members.clone();
    doubled[7] = members[0];
    assert_eq!(
        chain.commit_group_root(
            commitment.clone(),
            &doubled,
            &certificate(&secrets, &[0, 1, 2, 3, 4, 5], &message)
        ),
        Err(ChainError::DuplicateMember(members[0]))
    );
    // Members that are not the committed group.
    assert_eq!(
        chain.commit_group_root(
            GroupRootCommitment {
                group: B256::repeat_byte(9),
                ..commitment.clone()
            },
            &members,
            &certificate(&secrets, &[0, 1, 2, 3, 4, 5], &message)
        ),
        Err(ChainError::UnknownMember(members[0]))
    );
    // An epoch that has not begun.
    assert_eq!(
        chain.commit_group_root(
            GroupRootCommitment {
                epoch: 2,
                ..commitment.clone()
            },
            &members,
            &certificate(&secrets, &[0, 1, 2, 3, 4, 5], &message)
        ),
        Err(ChainError::BadEpoch { got: 2, current: 1 })
    );
    assert_eq!(chain.group_root(&commitment.group).unwrap(), None);

    chain
        .commit_group_root(
            commitment.clone(),
            &members,
            &certificate(&secrets, &[2, 3, 4, 5, 6, 7], &message),
        )
        .unwrap();
    assert_eq!(
        chain.group_root(&commitment.group).unwrap(),
        Some(commitment.clone())
    );

    // An older root does not replace a newer one.
    let older = GroupRootCommitment {
        batch: 0,
        root: B256::repeat_byte(6),
        ..commitment.clone()
    };
    chain
        .commit_group_root(
            older.clone(),
            &members,
            &certificate(&secrets, &[0, 1, 2, 3, 4, 5], &older.signing_bytes()),
        )
        .unwrap();
    assert_eq!(
        chain.group_root(&commitment.group).unwrap(),
        Some(commitment)
    );
}

pub fn epoch_snapshots_are_deterministic(harness: &impl Harness) {
    let chain = harness.chain();
    let early: Vec<NodeId> = [3, 1, 2]
        .into_iter()
        .map(|seed| register(chain.as_ref(), seed).0)
        .collect();
    assert!(chain.registry_snapshot(0).unwrap().nodes.is_empty());
    assert_eq!(advance_epoch(chain.as_ref()), 1);
    let first = chain.registry_snapshot(1).unwrap();
    let mut sorted = early.clone();
    sorted.sort();
    assert_eq!(first.ids(), sorted);
    assert_eq!(
        first.node(&early[0]).unwrap().registration.wallet_features,
        vec!["erc20", "zksync", "flag-from-the-future"]
    );

    // Later registrations and departures never change an epoch that has begun.
    let late = register(chain.as_ref(), 4).0;
    let exit = Departure {
        node: early[1],
        kind: DepartureKind::Exit,
        epoch: 3,
        evidence: b"operator leaves".to_vec(),
    };
    let signature = node_key(1).sign_prehash(&exit.signing_hash());
    chain
        .record_departure(exit, &DepartureProof::NodeSignature(signature))
        .unwrap();
    assert_eq!(chain.registry_snapshot(1).unwrap(), first);
    assert_eq!(
        chain.registry_snapshot(1).unwrap(),
        chain.registry_snapshot(1).unwrap()
    );

    assert_eq!(advance_epoch(chain.as_ref()), 2);
    let second = chain.registry_snapshot(2).unwrap();
    let mut all = early.clone();
    all.push(late);
    all.sort();
    assert_eq!(second.ids(), all);
    assert_eq!(chain.registry_snapshot(1).unwrap(), first);

    assert_eq!(advance_epoch(chain.as_ref()), 3);
    let third = chain.registry_snapshot(3).unwrap();
    all.retain(|id| *id != early[1]);
    assert_eq!(third.ids(), all);
    assert_eq!(chain.registry_snapshot(2).unwrap(), second);
}

pub fn deposits_arrive_exactly_once(harness: &impl Harness) {
    let chain = harness.chain();
    let mut stream = DepositStream::new(chain.clone());
    assert!(stream.poll().unwrap().is_empty());
    for amount in [10u64, 20, 30] {
        harness.deposit(Address::repeat_byte(0xaa), U256::from(amount));
    }
    let first = stream.poll().unwrap();
    assert_eq!(
        first
            .iter()
            .map(|d| (d.index, d.amount))
            .collect::<Vec<_>>(),
        vec![
            (0, U256::from(10)),
            (1, U256::from(20)),
            (2, U256::from(30))
        ]
    );
    assert!(
        first
            .iter()
            .all(|d| d.recipient == Address::repeat_byte(0xaa))
    );
    assert!(stream.poll().unwrap().is_empty());
    harness.deposit(Address::repeat_byte(0xbb), U256::from(40));
    let second = stream.poll().unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].index, 3);
    assert_eq!(second[0].recipient, Address::repeat_byte(0xbb));
    assert!(stream.poll().unwrap().is_empty());
    assert_eq!(stream.cursor(), 4);

    // A bridge resuming from its saved cursor sees the rest, once.
    let mut resumed = DepositStream::starting_at(chain, 2);
    let rest = resumed.poll().unwrap();
    assert_eq!(rest.iter().map(|d| d.index).collect::<Vec<_>>(), vec![2, 3]);
    assert_eq!(rest[1], second[0]);
    assert!(resumed.poll().unwrap().is_empty());
}

fn sequencer(seed: u8) -> (SequencerRecord, BlsSecretKey, BlsSignature) {
    let bls = BlsSecretKey::from_seed(&[100 + seed; 32]);
    let record = SequencerRecord {
        id: NodeId(AccountKey::from_seed(100 + u64::from(seed)).address()),
        bls_key: bls.public_key(),
    };
    let possession = bls.proof_of_possession();
    (record, bls, possession)
}

fn whitelist(chain: &dyn UpperChain, seed: u8, stake: u128) -> Result<(), ChainError> {
    let (record, _, possession) = sequencer(seed);
    admin(
        chain,
        AdminOp::Whitelist {
            record,
            possession,
            stake,
        },
    )
}

pub fn batches_need_a_sequencer_quorum(harness: &impl Harness) {
    let chain = harness.chain();
    for seed in 1..=4 {
        whitelist(chain.as_ref(), seed, 100).unwrap();
    }
    admin(chain.as_ref(), AdminOp::Rotate { size: 4 }).unwrap();
    let set = chain.sequencer_set().unwrap();
    assert_eq!(set.len(), 4);
    // Certificates index the set in its order (by ID after a rotation).
    let secrets = secrets_of(&set);
    let message = b"batch 1 commit".to_vec();
    assert_eq!(chain.last_batch().unwrap(), 0);
    assert_eq!(
        chain.commit_batch(
            2,
            B256::repeat_byte(1),
            &message,
            &certificate(&secrets, &[0, 1, 2], &message)
        ),
        Err(ChainError::BatchOutOfOrder {
            expected: 1,
            got: 2
        })
    );
    assert_eq!(
        chain.commit_batch(
            1,
            B256::repeat_byte(1),
            &message,
            &certificate(&secrets, &[0, 1], &message)
        ),
        Err(ChainError::BadCertificate(BlsError::TooFewSigners {
            signers: 2,
            quorum: 3
        }))
    );
    assert_eq!(
        chain.commit_batch(
            1,
            B256::repeat_byte(1),
            &message,
            &certificate(&secrets, &[0, 1, 2], b"another message")
        ),
        Err(ChainError::BadCertificate(BlsError::BadSignature))
    );
    chain
        .commit_batch(
            1,
            B256::repeat_byte(1),
            &message,
            &certificate(&secrets, &[1, 2, 3], &message),
        )
        .unwrap();
    assert_eq!(chain.last_batch().unwrap(), 1);
    assert_eq!(chain.batch_hash(1).unwrap(), Some(B256::repeat_byte(1)));
    assert_eq!(chain.batch_hash(2).unwrap(), None);
}

pub fn sequencer_set_management(harness: &impl Harness) {
    let chain = harness.chain();
    assert_eq!(chain.stake_cap().unwrap(), STAKE_CAP);
    // Only the admin, and only with the current nonce.
    let (record, _, possession) = sequencer(1);
    let op = AdminOp::Whitelist {
        record,
        possession,
        stake: 100,
    };
    let nonce = chain.admin_nonce().unwrap();
    let intruder = AccountKey::from_seed(901);
    assert_eq!(
        chain.admin(op.clone(), &intruder.sign_prehash(&op.signing_hash(nonce))),
        Err(ChainError::NotAdmin(intruder.address()))
    );
    let signature = admin_key().sign_prehash(&op.signing_hash(nonce));
    chain.admin(op.clone(), &signature).unwrap();
    assert_eq!(chain.admin_nonce().unwrap(), nonce + 1);
    // Replaying the same signed operation is refused (the nonce moved on).
    assert!(matches!(
        chain.admin(op, &signature),
        Err(ChainError::NotAdmin(_))
    ));
    assert_eq!(
        whitelist(chain.as_ref(), 1, 100),
        Err(ChainError::AlreadyWhitelisted(sequencer(1).0.id))
    );
    assert_eq!(
        whitelist(chain.as_ref(), 2, STAKE_CAP + 1),
        Err(ChainError::StakeCapExceeded {
            stake: STAKE_CAP + 1,
            cap: STAKE_CAP
        })
    );
    // A key without its proof of possession.
    let (record, _, _) = sequencer(2);
    let (_, _, wrong) = sequencer(3);
    assert_eq!(
        admin(
            chain.as_ref(),
            AdminOp::Whitelist {
                record,
                possession: wrong,
                stake: 1
            }
        ),
        Err(ChainError::BadPossession)
    );
    whitelist(chain.as_ref(), 2, 900).unwrap();
    whitelist(chain.as_ref(), 3, 500).unwrap();
    let candidates = chain.sequencer_candidates().unwrap();
    let mut ids: Vec<NodeId> = (1..=3).map(|seed| sequencer(seed).0.id).collect();
    ids.sort();
    assert_eq!(
        candidates.iter().map(|c| c.record.id).collect::<Vec<_>>(),
        ids
    );

    // Rotation ranks by stake counted up to the cap: with a cap of 400, sequencers 2 and 3 tie
    // at 400 and both beat sequencer 1.
    admin(chain.as_ref(), AdminOp::SetStakeCap(400)).unwrap();
    assert_eq!(chain.stake_cap().unwrap(), 400);
    admin(chain.as_ref(), AdminOp::Rotate { size: 2 }).unwrap();
    let mut expected = vec![sequencer(2).0, sequencer(3).0];
    expected.sort_by_key(|record| record.id);
    assert_eq!(chain.sequencer_set().unwrap(), expected);
    assert_eq!(
        admin(chain.as_ref(), AdminOp::Rotate { size: 4 }),
        Err(ChainError::BadRotation {
            size: 4,
            candidates: 3
        })
    );
    // Removal takes a sequencer off the whitelist and out of the set.
    admin(chain.as_ref(), AdminOp::Remove(sequencer(2).0.id)).unwrap();
    assert_eq!(chain.sequencer_set().unwrap(), vec![sequencer(3).0]);
    assert_eq!(chain.sequencer_candidates().unwrap().len(), 2);
    assert_eq!(
        admin(chain.as_ref(), AdminOp::Remove(sequencer(2).0.id)),
        Err(ChainError::UnknownSequencer(sequencer(2).0.id))
    );
}

pub fn synced_roots(harness: &impl Harness) {
    let chain = harness.chain();
    let (id, _) = register(chain.as_ref(), 1);
    let report = SyncedRoot {
        node: id,
        epoch: 1,
        group: B256::repeat_byte(1),
        batch: 7,
        root: B256::repeat_byte(2),
    };
    let intruder = node_key(2);
    assert_eq!(
        chain.record_synced_root(
            report.clone(),
            &intruder.sign_prehash(&report.signing_hash())
        ),
        Err(ChainError::WrongSigner {
            node: id,
            signer: intruder.address()
        })
    );
    assert_eq!(chain.synced_root(&id).unwrap(), None);
    chain
        .record_synced_root(
            report.clone(),
            &node_key(1).sign_prehash(&report.signing_hash()),
        )
        .unwrap();
    assert_eq!(chain.synced_root(&id).unwrap(), Some(report.clone()));
    let older = SyncedRoot {
        batch: 6,
        ..report.clone()
    };
    assert_eq!(
        chain.record_synced_root(
            older.clone(),
            &node_key(1).sign_prehash(&older.signing_hash())
        ),
        Err(ChainError::Stale {
            recorded: 7,
            got: 6
        })
    );
    // An unregistered node.
    let stranger = SyncedRoot {
        node: NodeId(intruder.address()),
        ..report
    };
    assert_eq!(
        chain.record_synced_root(
            stranger.clone(),
            &intruder.sign_prehash(&stranger.signing_hash())
        ),
        Err(ChainError::NotRegistered(NodeId(intruder.address())))
    );
}

/// The registration of node `id` as the registry shows it now.
fn registered(chain: &dyn UpperChain, id: &NodeId) -> Registration {
    let epoch = chain.epoch().unwrap();
    chain
        .registry_snapshot(epoch + 1)
        .unwrap()
        .node(id)
        .expect("registered")
        .registration
        .clone()
}

pub fn wallet_updates_by_the_owner_only(harness: &impl Harness) {
    let chain = harness.chain();
    let (id, _) = register(chain.as_ref(), 1);
    let before = registered(chain.as_ref(), &id);
    assert_eq!(chain.wallet_nonce(&id).unwrap(), 0);
    let update = WalletUpdate {
        node: id,
        reward_wallet: Address::repeat_byte(0x77),
        wallet_features: vec!["assets".into(), "flag-from-the-future".into()],
        nonce: 0,
    };

    // Only the node's own key may change its wallet; a refusal changes nothing.
    let intruder = node_key(2);
    assert_eq!(
        chain.update_wallet(
            update.clone(),
            &intruder.sign_prehash(&update.signing_hash())
        ),
        Err(ChainError::WrongSigner {
            node: id,
            signer: intruder.address()
        })
    );
    assert_eq!(registered(chain.as_ref(), &id), before);
    // A nonce ahead of the node's next is refused too.
    let ahead = WalletUpdate {
        nonce: 1,
        ..update.clone()
    };
    assert_eq!(
        chain.update_wallet(
            ahead.clone(),
            &node_key(1).sign_prehash(&ahead.signing_hash())
        ),
        Err(ChainError::WalletNonce {
            expected: 0,
            got: 1
        })
    );

    chain
        .update_wallet(
            update.clone(),
            &node_key(1).sign_prehash(&update.signing_hash()),
        )
        .unwrap();
    let after = registered(chain.as_ref(), &id);
    assert_eq!(after.reward_wallet, update.reward_wallet);
    assert_eq!(after.wallet_features, update.wallet_features);
    // Nothing else of the registration moves.
    assert_eq!(
        (after.endpoint, after.bls_key),
        (before.endpoint.clone(), before.bls_key)
    );
    assert_eq!(chain.wallet_nonce(&id).unwrap(), 1);

    // The same signed update again is a replay.
    assert_eq!(
        chain.update_wallet(
            update.clone(),
            &node_key(1).sign_prehash(&update.signing_hash())
        ),
        Err(ChainError::WalletNonce {
            expected: 1,
            got: 0
        })
    );
    // Back to no features at all, with the next nonce.
    let cleared = WalletUpdate {
        wallet_features: Vec::new(),
        nonce: 1,
        ..update
    };
    chain
        .update_wallet(
            cleared.clone(),
            &node_key(1).sign_prehash(&cleared.signing_hash()),
        )
        .unwrap();
    assert!(registered(chain.as_ref(), &id).wallet_features.is_empty());
    assert_eq!(chain.wallet_nonce(&id).unwrap(), 2);

    // An unregistered node has nothing to change.
    let stranger = WalletUpdate {
        node: NodeId(intruder.address()),
        nonce: 0,
        ..cleared
    };
    assert_eq!(
        chain.update_wallet(
            stranger.clone(),
            &intruder.sign_prehash(&stranger.signing_hash())
        ),
        Err(ChainError::NotRegistered(NodeId(intruder.address())))
    );

    // Once the node serves, a change waits for the next epoch: the epoch under way keeps the
    // wallet it began with, and so does its snapshot after the change is in force.
    let serving = advance_epoch(chain.as_ref());
    let wallet_in = |epoch: u64| {
        let record = chain
            .registry_snapshot(epoch)
            .unwrap()
            .node(&id)
            .expect("registered")
            .registration
            .clone();
        (record.reward_wallet, record.wallet_features)
    };
    let first = wallet_in(serving);
    assert_eq!(first, (Address::repeat_byte(0x77), Vec::new()));
    let moved = WalletUpdate {
        node: id,
        reward_wallet: Address::repeat_byte(0x78),
        wallet_features: vec!["assets".into()],
        nonce: 2,
    };
    chain
        .update_wallet(
            moved.clone(),
            &node_key(1).sign_prehash(&moved.signing_hash()),
        )
        .unwrap();
    // Of two changes in one epoch, the later is the one in force.
    let again = WalletUpdate {
        reward_wallet: Address::repeat_byte(0x79),
        nonce: 3,
        ..moved
    };
    chain
        .update_wallet(
            again.clone(),
            &node_key(1).sign_prehash(&again.signing_hash()),
        )
        .unwrap();
    assert_eq!(wallet_in(serving), first);
    let next = (Address::repeat_byte(0x79), vec!["assets".to_string()]);
    assert_eq!(wallet_in(serving + 1), next);
    assert_eq!(advance_epoch(chain.as_ref()), serving + 1);
    assert_eq!(wallet_in(serving), first);
    assert_eq!(wallet_in(serving + 1), next);
}

pub fn exits_and_evictions(harness: &impl Harness) {
    let chain = harness.chain();
    let (members, secrets) = group(chain.as_ref());
    let epoch = chain.epoch().unwrap();

    // An exit, signed by the node itself, effective in a future epoch.
    let exit = Departure {
        node: members[0],
        kind: DepartureKind::Exit,
        epoch: epoch + 1,
        evidence: b"maintenance".to_vec(),
    };
    let now = Departure {
        epoch,
        ..exit.clone()
    };
    assert_eq!(
        chain.record_departure(
            now.clone(),
            &DepartureProof::NodeSignature(node_key(1).sign_prehash(&now.signing_hash()))
        ),
        Err(ChainError::BadEpoch {
            got: epoch,
            current: epoch
        })
    );
    let intruder = node_key(2);
    assert_eq!(
        chain.record_departure(
            exit.clone(),
            &DepartureProof::NodeSignature(intruder.sign_prehash(&exit.signing_hash()))
        ),
        Err(ChainError::WrongSigner {
            node: members[0],
            signer: intruder.address()
        })
    );
    let proof = DepartureProof::NodeSignature(node_key(1).sign_prehash(&exit.signing_hash()));
    chain.record_departure(exit.clone(), &proof).unwrap();
    assert_eq!(chain.departure(&members[0]).unwrap(), Some(exit.clone()));
    assert_eq!(
        chain.record_departure(exit, &proof),
        Err(ChainError::AlreadyDeparted(members[0]))
    );

    // An eviction, certified by a quorum of a group the node is in.
    let eviction = Departure {
        node: members[7],
        kind: DepartureKind::Eviction,
        epoch: epoch + 1,
        evidence: b"equivocated on batch 12".to_vec(),
    };
    let message = eviction.signing_bytes();
    let short = DepartureProof::GroupCertificate {
        members: members.clone(),
        certificate: certificate(&secrets, &[0, 1, 2, 3, 4], &message),
    };
    assert_eq!(
        chain.record_departure(eviction.clone(), &short),
        Err(ChainError::BadCertificate(BlsError::TooFewSigners {
            signers: 5,
            quorum: 6
        }))
    );
    let outside = DepartureProof::GroupCertificate {
        members: members[..7].to_vec(),
        certificate: certificate(&secrets, &[0, 1, 2, 3, 4, 5], &message),
    };
    assert_eq!(
        chain.record_departure(eviction.clone(), &outside),
        Err(ChainError::BadDepartureProof)
    );
    let signed_by_node =
        DepartureProof::NodeSignature(node_key(8).sign_prehash(&eviction.signing_hash()));
    assert_eq!(
        chain.record_departure(eviction.clone(), &signed_by_node),
        Err(ChainError::BadDepartureProof)
    );
    let quorum_proof = DepartureProof::GroupCertificate {
        members: members.clone(),
        certificate: certificate(&secrets, &[0, 1, 2, 3, 4, 5], &message),
    };
    chain
        .record_departure(eviction.clone(), &quorum_proof)
        .unwrap();
    assert_eq!(chain.departure(&members[7]).unwrap(), Some(eviction));

    // Both leave the registry from the next epoch on; the current one is unchanged.
    assert_eq!(chain.registry_snapshot(epoch).unwrap().ids().len(), 8);
    let next = advance_epoch(chain.as_ref());
    let ids = chain.registry_snapshot(next).unwrap().ids();
    assert_eq!(ids.len(), 6);
    assert!(!ids.contains(&members[0]) && !ids.contains(&members[7]));
}

/// A commit `secret` signed for `digest` at view 3, sequence 9.
fn commit_vote(secret: &BlsSecretKey, digest: B256) -> Signed {
    Signed {
        digest,
        signature: PbftSignature::Bls(secret.sign(&commit_message(3, 9, &digest))),
    }
}

/// A prepare `operator` signed for `digest` at view 3, sequence 9.
fn prepare_vote(operator: &AccountKey, digest: B256) -> Signed {
    Signed {
        digest,
        signature: PbftSignature::Operator(operator.sign_prehash(&prepare_prehash(3, 9, &digest))),
    }
}

/// A pre-prepare `operator` signed for `digest` at view 3, sequence 9.
fn pre_prepare_proposal(operator: &AccountKey, digest: B256) -> Signed {
    Signed {
        digest,
        signature: PbftSignature::Operator(
            operator.sign_prehash(&pre_prepare_prehash(3, 9, &digest)),
        ),
    }
}

/// Four active sequencers; sequencer 3, primary of view 3, signs two pre-prepares for one slot
/// with its operator key. The chain checks them against the offender's ID, not its BLS key.
pub fn pre_prepare_equivocation_is_signed_by_the_operator_key(harness: &impl Harness) {
    let chain = harness.chain();
    let (offender, _, _) = sequencer(3);
    let index = four_active_sequencers(chain.as_ref(), offender.id);
    let operator = AccountKey::from_seed(100 + 3);
    assert_eq!(offender.id, NodeId(operator.address()));
    let evidence = EquivocationEvidence::new(
        EvidenceKind::PrePrepare,
        index,
        3,
        9,
        pre_prepare_proposal(&operator, B256::repeat_byte(7)),
        pre_prepare_proposal(&operator, B256::repeat_byte(1)),
    );
    let refused = |evidence: &EquivocationEvidence, id: NodeId, error: ChainError| {
        assert_report_refused(chain.as_ref(), evidence, id, error);
    };
    // Pinned on another sequencer; one proposal signed by another operator key.
    let other = sequencer(2).0.id;
    refused(
        &evidence,
        other,
        ChainError::InvalidEvidence(EvidenceError::BadSignature),
    );
    let mut forged = evidence.clone();
    forged.second = pre_prepare_proposal(&AccountKey::from_seed(100 + 2), forged.second.digest);
    refused(
        &forged,
        offender.id,
        ChainError::InvalidEvidence(EvidenceError::BadSignature),
    );
    // Another slot than the one signed.
    let mut moved = evidence.clone();
    moved.view = 4;
    refused(
        &moved,
        offender.id,
        ChainError::InvalidEvidence(EvidenceError::BadSignature),
    );
    chain.report_equivocation(&evidence, offender.id).unwrap();
    assert_eq!(
        chain.equivocations().unwrap(),
        vec![(offender.id, evidence)]
    );
    assert!(
        chain
            .sequencer_candidates()
            .unwrap()
            .iter()
            .all(|c| c.record.id != offender.id)
    );
}

/// Whitelists sequencers 1 to 4 and rotates them into the active set; returns the index
/// `offender` has in it.
fn four_active_sequencers(chain: &dyn UpperChain, offender: NodeId) -> u16 {
    for seed in 1..=4 {
        whitelist(chain, seed, 100).unwrap();
    }
    admin(chain, AdminOp::Rotate { size: 4 }).unwrap();
    chain
        .sequencer_set()
        .unwrap()
        .iter()
        .position(|record| record.id == offender)
        .unwrap() as u16
}

/// Asserts that `chain` refuses the report with `error`, and that the refusal changed nothing.
fn assert_report_refused(
    chain: &dyn UpperChain,
    evidence: &EquivocationEvidence,
    id: NodeId,
    error: ChainError,
) {
    let before = sequencer_state(chain);
    assert_eq!(chain.report_equivocation(evidence, id), Err(error));
    assert_eq!(sequencer_state(chain), before, "a refusal changed state");
}

/// The active set, the whitelist, the equivocations and the admin nonce.
type SequencerState = (
    Vec<SequencerRecord>,
    Vec<SequencerCandidate>,
    Vec<(NodeId, EquivocationEvidence)>,
    u64,
);

/// What a chain shows about its sequencers, to check a refused report changed nothing.
fn sequencer_state(chain: &dyn UpperChain) -> SequencerState {
    (
        chain.sequencer_set().unwrap(),
        chain.sequencer_candidates().unwrap(),
        chain.equivocations().unwrap(),
        chain.admin_nonce().unwrap(),
    )
}

/// Four active sequencers; sequencer 2 signs two conflicting commits. Reports prove only what
/// they say; the first genuine one expels it, and nothing else does.
pub fn equivocation_expels_the_offender(harness: &impl Harness) {
    let chain = harness.chain();
    let (offender, secret, _) = sequencer(2);
    let index = four_active_sequencers(chain.as_ref(), offender.id);
    let evidence = EquivocationEvidence::new(
        EvidenceKind::Commit,
        index,
        3,
        9,
        commit_vote(&secret, B256::repeat_byte(7)),
        commit_vote(&secret, B256::repeat_byte(1)),
    );
    assert_eq!(evidence.verify(&offender.id, &offender.bls_key), Ok(()));

    let before = sequencer_state(chain.as_ref());
    let refused = |evidence: &EquivocationEvidence, id: NodeId, error: ChainError| {
        assert_report_refused(chain.as_ref(), evidence, id, error);
    };
    // A stranger to the whitelist.
    let stranger = sequencer(7).0.id;
    refused(&evidence, stranger, ChainError::UnknownSequencer(stranger));
    // Genuine evidence, pinned on another sequencer.
    let (other, other_secret, _) = sequencer(3);
    refused(
        &evidence,
        other.id,
        ChainError::InvalidEvidence(EvidenceError::BadSignature),
    );
    // One signature forged (another sequencer's key over the same commit).
    let mut forged = evidence.clone();
    forged.second = commit_vote(&other_secret, forged.second.digest);
    refused(
        &forged,
        offender.id,
        ChainError::InvalidEvidence(EvidenceError::BadSignature),
    );
    // The signatures swapped between the digests.
    let mut crossed = evidence.clone();
    std::mem::swap(&mut crossed.first.signature, &mut crossed.second.signature);
    refused(
        &crossed,
        offender.id,
        ChainError::InvalidEvidence(EvidenceError::BadSignature),
    );
    // The pair swapped (not canonical), and one vote twice (no offence).
    let mut swapped = evidence.clone();
    std::mem::swap(&mut swapped.first, &mut swapped.second);
    refused(
        &swapped,
        offender.id,
        ChainError::InvalidEvidence(EvidenceError::NotCanonical),
    );
    let mut equal = evidence.clone();
    equal.second = equal.first;
    refused(
        &equal,
        offender.id,
        ChainError::InvalidEvidence(EvidenceError::NotCanonical),
    );
    // Commits passed off as another slot.
    let mut moved = evidence.clone();
    moved.sequence = 10;
    refused(
        &moved,
        offender.id,
        ChainError::InvalidEvidence(EvidenceError::BadSignature),
    );

    // The genuine report, by anyone: recorded, and the offender is off the whitelist.
    chain.report_equivocation(&evidence, offender.id).unwrap();
    assert_eq!(
        chain.equivocations().unwrap(),
        vec![(offender.id, evidence.clone())]
    );
    let candidates = chain.sequencer_candidates().unwrap();
    assert_eq!(candidates.len(), 3);
    assert!(candidates.iter().all(|c| c.record.id != offender.id));
    assert_eq!(chain.admin_nonce().unwrap(), before.3);
    // It stays in the active set until the next rotation, so certificates of the running set
    // still commit batches.
    assert_eq!(chain.sequencer_set().unwrap(), before.0);
    let secrets = secrets_of(&chain.sequencer_set().unwrap());
    let message = commit_message(3, 9, &B256::repeat_byte(7));
    chain
        .commit_batch(
            1,
            B256::repeat_byte(7),
            &message,
            &certificate(&secrets, &[0, 1, 2], &message),
        )
        .unwrap();

    // A second report, of this offence or of another, changes nothing.
    let after = sequencer_state(chain.as_ref());
    let refused_after = |evidence: &EquivocationEvidence| {
        assert_eq!(
            chain.report_equivocation(evidence, offender.id),
            Err(ChainError::EquivocationRecorded(offender.id))
        );
        assert_eq!(sequencer_state(chain.as_ref()), after);
    };
    refused_after(&evidence);
    let operator = AccountKey::from_seed(102);
    assert_eq!(NodeId(operator.address()), offender.id);
    refused_after(&EquivocationEvidence::new(
        EvidenceKind::Prepare,
        index,
        3,
        9,
        prepare_vote(&operator, B256::repeat_byte(1)),
        prepare_vote(&operator, B256::repeat_byte(2)),
    ));
    // It cannot come back, and the admin has nothing left to remove.
    assert_eq!(
        whitelist(chain.as_ref(), 2, 100),
        Err(ChainError::Expelled(offender.id))
    );
    assert_eq!(
        admin(chain.as_ref(), AdminOp::Remove(offender.id)),
        Err(ChainError::UnknownSequencer(offender.id))
    );
    // The next rotation chooses among the rest only.
    assert_eq!(
        admin(chain.as_ref(), AdminOp::Rotate { size: 4 }),
        Err(ChainError::BadRotation {
            size: 4,
            candidates: 3
        })
    );
    admin(chain.as_ref(), AdminOp::Rotate { size: 3 }).unwrap();
    let set = chain.sequencer_set().unwrap();
    assert_eq!(set.len(), 3);
    assert!(set.iter().all(|record| record.id != offender.id));
}

/// The BLS secrets of sequencers 1..=4 (see `sequencer`), in the order of `set`.
fn secrets_of(set: &[SequencerRecord]) -> Vec<BlsSecretKey> {
    set.iter()
        .map(|record| {
            (1..=4)
                .map(sequencer)
                .find(|(r, _, _)| r.id == record.id)
                .unwrap()
                .1
        })
        .collect()
}

/// Sequences in a sequencer epoch of [`epochs_genesis`].
pub const EPOCH_LENGTH: u64 = 4;

/// The genesis of a chain with sequencer epochs of [`EPOCH_LENGTH`] sequences, whose first set
/// is sequencers 1..=4 (see `sequencer`), by ID.
pub fn epochs_genesis() -> upper_chain::Genesis {
    let mut sequencers: Vec<SequencerRecord> = (1..=4).map(|seed| sequencer(seed).0).collect();
    sequencers.sort_by_key(|record| record.id);
    upper_chain::Genesis {
        admin: admin_key().address(),
        stake_cap: STAKE_CAP,
        sequencers,
        sequencer_epoch_length: Some(EPOCH_LENGTH),
        da_committee: Some(da_committee()),
    }
}

/// Makes a chain deployed with sequencer epochs of [`EPOCH_LENGTH`] (and no set yet) what
/// [`epochs_genesis`] starts with: sequencers 1..=4 whitelisted and rotated in, which fixes
/// epoch 0.
pub fn fix_epochs_genesis(chain: &dyn UpperChain) {
    for seed in 1..=4 {
        whitelist(chain, seed, 10).unwrap();
    }
    admin(chain, AdminOp::Rotate { size: 4 }).unwrap();
    let zero = chain.sequencer_epoch(0).unwrap().unwrap();
    assert_eq!(zero.sequencers, epochs_genesis().sequencers);
    assert_eq!(chain.sequencer_epoch(1).unwrap(), None);
}

/// The BLS secrets of sequencers 1..=5, in the order of `set`.
fn secrets_in(set: &[SequencerRecord]) -> Vec<BlsSecretKey> {
    set.iter()
        .map(|record| {
            (1..=5)
                .map(sequencer)
                .find(|(r, _, _)| r.id == record.id)
                .unwrap()
                .1
        })
        .collect()
}

/// Commits batch `number`, decided at PBFT `sequence`, with a quorum of `set`.
fn commit_at(
    chain: &dyn UpperChain,
    set: &[SequencerRecord],
    number: u64,
    sequence: u64,
) -> Result<(), ChainError> {
    let message = commit_message(0, sequence, &B256::repeat_byte(number as u8));
    let secrets = secrets_in(set);
    let signers: Vec<usize> = (0..quorum(set.len())).collect();
    chain.commit_batch(
        number,
        B256::repeat_byte(number as u8),
        &message,
        &certificate(&secrets, &signers, &message),
    )
}

/// On a chain from [`epochs_genesis`]: a sequencer whitelisted during epoch 0 serves from epoch
/// 1, one expelled for equivocation during epoch 1 is gone from epoch 2, each epoch's set is
/// the one rule over the whitelist as of its boundary, and a commitment is checked against the
/// set of the epoch its sequence falls in.
pub fn sequencer_sets_change_only_at_epoch_boundaries(chain: &dyn UpperChain) {
    let genesis = epochs_genesis().sequencers;
    let zero = chain.sequencer_epoch(0).unwrap().unwrap();
    assert_eq!(
        (zero.epoch, zero.first, zero.length, zero.last()),
        (0, 1, Some(EPOCH_LENGTH), Some(EPOCH_LENGTH))
    );
    assert_eq!(zero.sequencers, genesis);
    assert_eq!(chain.sequencer_epoch(1).unwrap(), None);

    // A fifth sequencer is whitelisted and the size raised during epoch 0: nothing changes yet.
    whitelist(chain, 5, 10).unwrap();
    admin(chain, AdminOp::Rotate { size: 5 }).unwrap();
    assert_eq!(chain.sequencer_epoch(0).unwrap().unwrap(), zero);
    assert_eq!(chain.sequencer_set().unwrap(), genesis);
    for (number, sequence) in [(1, 1), (2, 2), (3, 3)] {
        commit_at(chain, &genesis, number, sequence).unwrap();
    }
    assert_eq!(chain.sequencer_epoch(1).unwrap(), None);
    // Nobody certifies a sequence of an epoch not fixed yet; a non-commit message proves nothing.
    assert_eq!(
        commit_at(chain, &genesis, 4, EPOCH_LENGTH + 1),
        Err(ChainError::UnknownSequencerEpoch(1))
    );
    let secrets = secrets_in(&genesis);
    assert_eq!(
        chain.commit_batch(
            4,
            B256::repeat_byte(4),
            b"not a commit",
            &certificate(&secrets, &[0, 1, 2], b"not a commit")
        ),
        Err(ChainError::BadCommitMessage)
    );

    // The commitment of epoch 0's last sequence fixes epoch 1: the rule over the whitelist now.
    commit_at(chain, &genesis, 4, EPOCH_LENGTH).unwrap();
    let one = chain.sequencer_epoch(1).unwrap().unwrap();
    assert_eq!(
        (one.first, one.last()),
        (EPOCH_LENGTH + 1, Some(2 * EPOCH_LENGTH))
    );
    let candidates = chain.sequencer_candidates().unwrap();
    assert_eq!(
        one.sequencers,
        upper_chain::select_sequencers(&candidates, STAKE_CAP, 5)
    );
    let fifth = sequencer(5).0;
    assert_eq!(one.sequencers.len(), 5);
    assert!(one.sequencers.contains(&fifth));
    assert_eq!(chain.sequencer_set().unwrap(), one.sequencers);
    // Epoch 1's commitments need a quorum of epoch 1's set (4 of 5), not of epoch 0's.
    assert!(matches!(
        commit_at(chain, &genesis, 5, EPOCH_LENGTH + 1),
        Err(ChainError::BadCertificate(_))
    ));
    commit_at(chain, &one.sequencers, 5, EPOCH_LENGTH + 1).unwrap();

    // Sequencer 2 equivocates in epoch 1: recorded, it still serves out epoch 1 ...
    let (offender, secret, _) = sequencer(2);
    let index = one
        .sequencers
        .iter()
        .position(|record| record.id == offender.id)
        .unwrap() as u16;
    let evidence = EquivocationEvidence::new(
        EvidenceKind::Commit,
        index,
        3,
        9,
        commit_vote(&secret, B256::repeat_byte(1)),
        commit_vote(&secret, B256::repeat_byte(2)),
    );
    chain.report_equivocation(&evidence, offender.id).unwrap();
    assert_eq!(chain.sequencer_epoch(1).unwrap().unwrap(), one);
    // ... and the commitment of epoch 1's last sequence (after two nulls) fixes epoch 2 without it.
    commit_at(chain, &one.sequencers, 6, 2 * EPOCH_LENGTH).unwrap();
    let two = chain.sequencer_epoch(2).unwrap().unwrap();
    assert_eq!(two.first, 2 * EPOCH_LENGTH + 1);
    assert!(!two.sequencers.iter().any(|record| record.id == offender.id));
    assert_eq!(two.sequencers.len(), 4);
    assert_eq!(
        two.sequencers,
        upper_chain::select_sequencers(&chain.sequencer_candidates().unwrap(), STAKE_CAP, 5)
    );
    assert_eq!(chain.sequencer_epoch(3).unwrap(), None);
    commit_at(chain, &two.sequencers, 7, 2 * EPOCH_LENGTH + 1).unwrap();
    assert_eq!(chain.last_batch().unwrap(), 7);
}

/// Terms for the sponsorship tests: `budget` gas per player, ten times that in total.
pub fn sponsor_terms(target: Address, budget: u64) -> SponsorTerms {
    SponsorTerms {
        targets: vec![target],
        player_gas_budget: budget,
        total_gas_budget: budget * 10,
        player_moves_per_second: 10,
        player_moves_burst: 10,
    }
}

/// A sponsor sets, changes and withdraws its own policy; nobody else can, and an old update
/// cannot be replayed. Not run on the EVM chain: the `Registry` contract keeps no policies.
pub fn sponsor_policies_by_the_sponsor_only(chain: &dyn UpperChain) {
    let sponsor = AccountKey::from_seed(0x5905);
    let intruder = AccountKey::from_seed(0x1417);
    let game = Address::repeat_byte(0x42);
    assert!(chain.sponsor_policies().unwrap().is_empty());
    assert_eq!(chain.sponsor_nonce(&sponsor.address()).unwrap(), 0);
    let update = SponsorPolicyUpdate {
        sponsor: sponsor.address(),
        terms: Some(sponsor_terms(game, 100_000)),
        nonce: 0,
    };
    // Signed by another key: refused, nothing changes.
    assert_eq!(
        chain.set_sponsor_policy(
            update.clone(),
            &intruder.sign_prehash(&update.signing_hash())
        ),
        Err(ChainError::NotSponsor {
            sponsor: sponsor.address(),
            signer: intruder.address()
        })
    );
    let ahead = SponsorPolicyUpdate {
        nonce: 1,
        ..update.clone()
    };
    assert_eq!(
        chain.set_sponsor_policy(ahead.clone(), &sponsor.sign_prehash(&ahead.signing_hash())),
        Err(ChainError::SponsorNonce {
            expected: 0,
            got: 1
        })
    );
    assert!(chain.sponsor_policies().unwrap().is_empty());

    chain
        .set_sponsor_policy(
            update.clone(),
            &sponsor.sign_prehash(&update.signing_hash()),
        )
        .unwrap();
    assert_eq!(
        chain.sponsor_policies().unwrap(),
        [SponsorPolicyRecord {
            sponsor: sponsor.address(),
            terms: sponsor_terms(game, 100_000),
            nonce: 0
        }]
    );
    assert_eq!(chain.sponsor_nonce(&sponsor.address()).unwrap(), 1);
    // A replay of the same update is refused.
    assert_eq!(
        chain.set_sponsor_policy(
            update.clone(),
            &sponsor.sign_prehash(&update.signing_hash())
        ),
        Err(ChainError::SponsorNonce {
            expected: 1,
            got: 0
        })
    );
    // The intruder's own policy is its own business, and sits beside the sponsor's.
    let own = SponsorPolicyUpdate {
        sponsor: intruder.address(),
        terms: Some(sponsor_terms(game, 5)),
        nonce: 0,
    };
    chain
        .set_sponsor_policy(own.clone(), &intruder.sign_prehash(&own.signing_hash()))
        .unwrap();
    assert_eq!(chain.sponsor_policies().unwrap().len(), 2);
    // Changed, then withdrawn.
    let changed = SponsorPolicyUpdate {
        terms: Some(sponsor_terms(game, 7)),
        nonce: 1,
        ..update.clone()
    };
    chain
        .set_sponsor_policy(
            changed.clone(),
            &sponsor.sign_prehash(&changed.signing_hash()),
        )
        .unwrap();
    let policies = chain.sponsor_policies().unwrap();
    let mine = policies
        .iter()
        .find(|policy| policy.sponsor == sponsor.address())
        .unwrap();
    assert_eq!((mine.terms.player_gas_budget, mine.nonce), (7, 1));
    let withdrawn = SponsorPolicyUpdate {
        terms: None,
        nonce: 2,
        ..update
    };
    chain
        .set_sponsor_policy(
            withdrawn.clone(),
            &sponsor.sign_prehash(&withdrawn.signing_hash()),
        )
        .unwrap();
    let policies = chain.sponsor_policies().unwrap();
    assert_eq!(policies.len(), 1);
    assert_eq!(policies[0].sponsor, intruder.address());
    assert_eq!(chain.sponsor_nonce(&sponsor.address()).unwrap(), 3);
}

/// A move of `player` the preconfirmation tests promise: its list names the sender and the
/// called account, as every move a sequencer takes must.
fn promised_move(player: &AccountKey, nonce: u64) -> primitives::SignedTransaction {
    use primitives::{AccountAccess, SpaceAccessList, Transaction};
    let to = Address::repeat_byte(0x77);
    Transaction {
        chain_id: 1,
        nonce,
        to,
        value: U256::ZERO,
        data: primitives::Bytes::new(),
        gas_limit: 30_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([player.address(), to].map(|address| AccountAccess {
            address,
            balance: None,
            nonce: None,
            storage: Vec::new(),
        })),
    }
    .sign(player)
}

/// What a chain records about sequencers, to check that a refused report changed nothing.
fn expulsion_state(
    chain: &dyn UpperChain,
) -> (
    Vec<SequencerCandidate>,
    Vec<(NodeId, primitives::preconf::SignedPreconfirmation)>,
    Vec<SequencerRecord>,
) {
    (
        chain.sequencer_candidates().unwrap(),
        chain.broken_preconfirmations().unwrap(),
        chain.sequencer_set().unwrap(),
    )
}

/// Four active sequencers; sequencer 2 packs blocks at heights 0..=2, each finalized in a
/// committed batch of its own, and promised a move at heights 1..=2 that none of them holds.
/// Evidence that proves nothing (the move where promised, a forged or foreign signature, a
/// batch the chain never committed, a window not yet finalized) is refused, typed, and changes
/// nothing; the genuine evidence expels sequencer 2 as an equivocation would, once.
pub fn broken_preconfirmation_expels_the_sequencer(chain: &dyn UpperChain) {
    use primitives::{
        Batch, BlockBody, BlockHeader, Encode,
        pbft::commit_message,
        preconf::{
            Preconfirmation, PreconfirmationError, PreconfirmationEvidence, SignedPreconfirmation,
        },
    };
    let (offender, _, _) = sequencer(2);
    let operator = AccountKey::from_seed(102);
    assert_eq!(NodeId(operator.address()), offender.id);
    four_active_sequencers(chain, offender.id);
    let secrets = secrets_of(&chain.sequencer_set().unwrap());

    let player = AccountKey::from_seed(600);
    let dropped = promised_move(&player, 0);
    let kept = promised_move(&AccountKey::from_seed(601), 0);
    let bodies = [
        BlockBody {
            moves: vec![promised_move(&AccountKey::from_seed(602), 0)],
        },
        BlockBody::default(),
        BlockBody {
            moves: vec![kept.clone()],
        },
    ];
    // One block a batch, batches 1..=3 committed with a quorum of the set's commit votes.
    let mut parent = B256::ZERO;
    let mut batches = Vec::new();
    for (height, body) in bodies.iter().enumerate() {
        let header = BlockHeader::seal(
            &operator,
            height as u64,
            parent,
            0,
            body,
            body.to_bytes().len() as u32,
        );
        parent = header.hash();
        let batch = Batch {
            number: height as u64 + 1,
            parent: batches.last().map_or(B256::ZERO, Batch::hash),
            headers: vec![header],
        };
        let message = commit_message(0, batch.number, &batch.hash());
        chain
            .commit_batch(
                batch.number,
                batch.hash(),
                &message,
                &certificate(&secrets, &[0, 1, 2], &message),
            )
            .unwrap();
        batches.push(batch);
    }

    let promise = |hash, first, last| Preconfirmation {
        hash,
        sequencer: offender.id,
        seq: 9,
        tick: 40 + last,
        height_first: first,
        height_last: last,
    };
    let signed = |key: &AccountKey, promise| {
        SignedPreconfirmation::sign_group(key, &[promise, promise]).remove(1)
    };
    let evidence =
        |preconfirmation, signed_move: &primitives::SignedTransaction| PreconfirmationEvidence {
            preconfirmation,
            signed_move: signed_move.clone(),
            batches: batches[1..].to_vec(),
            bodies: bodies[1..].to_vec(),
        };
    let genuine = evidence(signed(&operator, promise(dropped.hash(), 1, 2)), &dropped);

    let before = expulsion_state(chain);
    let refused = |evidence: &PreconfirmationEvidence, error: ChainError| {
        assert_eq!(chain.report_broken_preconfirmation(evidence), Err(error));
        assert_eq!(expulsion_state(chain), before, "a refusal changed state");
    };
    // The promise was kept: the move is in the block at height 2.
    refused(
        &evidence(signed(&operator, promise(kept.hash(), 1, 2)), &kept),
        ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::Kept { height: 2 }),
    );
    // A promise in the sequencer's name signed by another key.
    let impostor = AccountKey::from_seed(103);
    refused(
        &evidence(signed(&impostor, promise(dropped.hash(), 1, 2)), &dropped),
        ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::WrongSigner {
            sequencer: offender.id,
            signer: impostor.address(),
        }),
    );
    // A promise of a sequencer not on the whitelist.
    let stranger = AccountKey::from_seed(107);
    let mut foreign = genuine.clone();
    foreign.preconfirmation = SignedPreconfirmation::sign_group(
        &stranger,
        &[Preconfirmation {
            sequencer: NodeId(stranger.address()),
            ..promise(dropped.hash(), 1, 2)
        }],
    )
    .remove(0);
    refused(
        &foreign,
        ChainError::UnknownSequencer(NodeId(stranger.address())),
    );
    // Batches the chain never committed: the batch at height 1 rebuilt without its block.
    let mut uncommitted = genuine.clone();
    uncommitted.batches[0].headers.clear();
    refused(
        &uncommitted,
        ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::BatchNotCommitted {
            number: 2,
        }),
    );
    // A window reaching a height not finalized yet proves nothing.
    let mut unfinished = evidence(signed(&operator, promise(dropped.hash(), 1, 3)), &dropped);
    unfinished.bodies.push(BlockBody::default());
    refused(
        &unfinished,
        ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::HeightNotFinalized {
            height: 3,
        }),
    );

    // The genuine evidence, from anyone: recorded, and the sequencer off the whitelist.
    chain.report_broken_preconfirmation(&genuine).unwrap();
    assert_eq!(
        chain.broken_preconfirmations().unwrap(),
        vec![(offender.id, genuine.preconfirmation.clone())]
    );
    let candidates = chain.sequencer_candidates().unwrap();
    assert_eq!(candidates.len(), 3);
    assert!(candidates.iter().all(|c| c.record.id != offender.id));
    // Once: a second report, and a whitelisting, are refused.
    assert_eq!(
        chain.report_broken_preconfirmation(&genuine),
        Err(ChainError::Expelled(offender.id))
    );
    assert_eq!(
        whitelist(chain, 2, 100),
        Err(ChainError::Expelled(offender.id))
    );
    // The next rotation leaves it out.
    admin(chain, AdminOp::Rotate { size: 3 }).unwrap();
    assert!(
        chain
            .sequencer_set()
            .unwrap()
            .iter()
            .all(|record| record.id != offender.id)
    );
}

/// The BLS keys of the test DA committee's four nodes.
pub fn da_keys() -> Vec<BlsSecretKey> {
    (0..4u8)
        .map(|index| BlsSecretKey::from_seed(&[0xda - index; 32]))
        .collect()
}

/// The strong-DA committee of the test chains: four nodes, k = 2, quorum 3.
pub fn da_committee() -> upper_chain::DaCommittee {
    upper_chain::DaCommittee {
        keys: da_keys().iter().map(BlsSecretKey::public_key).collect(),
        data_chunks: 2,
        quorum: 3,
    }
}

/// An availability certificate of `commitment` signed by the test committee's `signers`.
pub fn availability_certificate(commitment: B256, signers: &[usize]) -> Certificate {
    let keys = da_keys();
    let message = primitives::da::availability_message(&commitment);
    let votes: Vec<(usize, BlsSignature)> = signers
        .iter()
        .map(|index| (*index, keys[*index].sign(&message)))
        .collect();
    Certificate::aggregate(&votes).unwrap()
}

/// Strong-DA commitments: recorded with a quorum of the genesis committee and found by kind and
/// batch number; too few signers, a certificate over another commitment, or a second commitment
/// for the same payload are refused and change nothing; the recorded one may be sent again.
pub fn strong_da_commitments_need_a_committee_quorum(chain: &dyn UpperChain) {
    use upper_chain::{AvailabilityKind, AvailabilityRecord};

    assert_eq!(chain.da_committee().unwrap(), Some(da_committee()));
    let record = |kind, number, commitment: B256, signers: &[usize]| AvailabilityRecord {
        kind,
        number,
        commitment,
        certificate: availability_certificate(commitment, signers),
    };
    let first = B256::repeat_byte(1);
    assert!(matches!(
        chain.record_availability(record(AvailabilityKind::Batch, 1, first, &[0, 1])),
        Err(ChainError::BadCertificate(BlsError::TooFewSigners { .. }))
    ));
    let mut forged = record(AvailabilityKind::Batch, 1, first, &[0, 1, 2]);
    forged.certificate = availability_certificate(B256::repeat_byte(2), &[0, 1, 2]);
    assert!(matches!(
        chain.record_availability(forged),
        Err(ChainError::BadCertificate(_))
    ));
    assert_eq!(
        chain.availability(AvailabilityKind::Batch, 1).unwrap(),
        None
    );

    let batch = record(AvailabilityKind::Batch, 1, first, &[0, 2, 3]);
    chain.record_availability(batch.clone()).unwrap();
    chain.record_availability(batch.clone()).unwrap();
    let genesis = record(
        AvailabilityKind::Genesis,
        0,
        B256::repeat_byte(3),
        &[1, 2, 3],
    );
    chain.record_availability(genesis.clone()).unwrap();
    let other = B256::repeat_byte(4);
    assert_eq!(
        chain.record_availability(record(AvailabilityKind::Batch, 1, other, &[0, 1, 2, 3])),
        Err(ChainError::AvailabilityConflict {
            kind: AvailabilityKind::Batch,
            number: 1,
            recorded: first,
        })
    );
    assert_eq!(
        chain.availability(AvailabilityKind::Batch, 1).unwrap(),
        Some(batch)
    );
    assert_eq!(
        chain.availability(AvailabilityKind::Genesis, 0).unwrap(),
        Some(genesis)
    );
    // Kinds are separate: the record of batch 1 is not the batch.
    assert_eq!(
        chain
            .availability(AvailabilityKind::ExecutionRecord, 1)
            .unwrap(),
        None
    );
}
