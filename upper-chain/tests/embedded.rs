//! The interface tests against the embedded chain, in memory and in RocksDB, and its persistence.

#![allow(missing_docs, clippy::unwrap_used)]

mod common;

use std::sync::Arc;

use common::Harness;
use primitives::{Address, U256};
use upper_chain::{EmbeddedChain, Genesis, UpperChain};

fn genesis() -> Genesis {
    Genesis {
        admin: common::admin_key().address(),
        stake_cap: common::STAKE_CAP,
        sequencers: Vec::new(),
        sequencer_epoch_length: None,
        da_committee: Some(common::da_committee()),
    }
}

struct Embedded {
    chain: Arc<EmbeddedChain>,
    _dir: Option<tempfile::TempDir>,
}

impl common::Harness for Embedded {
    fn chain(&self) -> Arc<dyn UpperChain> {
        self.chain.clone()
    }

    fn deposit(&self, recipient: Address, amount: U256) {
        self.chain
            .deposit(Address::repeat_byte(0x0d), recipient, amount)
            .unwrap();
    }
}

fn in_memory() -> Embedded {
    Embedded {
        chain: Arc::new(EmbeddedChain::with_genesis(&genesis())),
        _dir: None,
    }
}

fn in_rocksdb() -> Embedded {
    let dir = tempfile::tempdir().unwrap();
    Embedded {
        chain: Arc::new(EmbeddedChain::open(dir.path(), &genesis()).unwrap()),
        _dir: Some(dir),
    }
}

mod memory {
    use super::*;
    interface_tests!(in_memory());

    #[test]
    fn sponsor_policies_by_the_sponsor_only() {
        common::sponsor_policies_by_the_sponsor_only(in_memory().chain.as_ref());
    }

    #[test]
    fn broken_preconfirmation_expels_the_sequencer() {
        common::broken_preconfirmation_expels_the_sequencer(in_memory().chain.as_ref());
    }

    #[test]
    fn strong_da_commitments_need_a_committee_quorum() {
        common::strong_da_commitments_need_a_committee_quorum(in_memory().chain.as_ref());
    }

    #[test]
    fn a_chain_without_a_da_committee_records_no_commitment() {
        let chain = EmbeddedChain::with_genesis(&Genesis {
            da_committee: None,
            ..genesis()
        });
        let commitment = primitives::B256::repeat_byte(1);
        let record = upper_chain::AvailabilityRecord {
            kind: upper_chain::AvailabilityKind::Batch,
            number: 1,
            commitment,
            certificate: common::availability_certificate(commitment, &[0, 1, 2]),
        };
        assert!(matches!(
            chain.record_availability(record),
            Err(upper_chain::ChainError::Unsupported(_))
        ));
        assert_eq!(chain.da_committee().unwrap(), None);
    }
}

mod rocksdb {
    use super::*;
    interface_tests!(in_rocksdb());

    #[test]
    fn sponsor_policies_by_the_sponsor_only() {
        common::sponsor_policies_by_the_sponsor_only(in_rocksdb().chain.as_ref());
    }
}

/// Every interface test, run on a RocksDB chain that is then reopened: the reopened chain holds
/// exactly what the first one did.
#[test]
fn reopening_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Embedded {
        chain: Arc::new(EmbeddedChain::open(dir.path(), &genesis()).unwrap()),
        _dir: None,
    };
    common::exits_and_evictions(&harness);
    common::batches_need_a_sequencer_quorum(&harness);
    let chain: Arc<dyn UpperChain> = harness.chain.clone();
    // Node 2 of the group is registered and still there.
    let node = primitives::NodeId(common::node_key(2).address());
    let report = upper_chain::SyncedRoot {
        node,
        epoch: 1,
        group: primitives::B256::repeat_byte(1),
        batch: 3,
        root: primitives::B256::repeat_byte(2),
    };
    let signature = common::node_key(2).sign_prehash(&report.signing_hash());
    chain.record_synced_root(report, &signature).unwrap();
    let update = upper_chain::WalletUpdate {
        node,
        reward_wallet: Address::repeat_byte(0x55),
        wallet_features: vec!["assets".into()],
        nonce: 0,
    };
    let signature = common::node_key(2).sign_prehash(&update.signing_hash());
    chain.update_wallet(update, &signature).unwrap();
    common::sponsor_policies_by_the_sponsor_only(chain.as_ref());
    common::strong_da_commitments_need_a_committee_quorum(chain.as_ref());
    for amount in 1..=3u64 {
        harness.deposit(Address::repeat_byte(1), U256::from(amount));
    }
    let before = state_of(chain.as_ref());
    drop(chain);
    drop(harness);

    // A different genesis is ignored: the stored chain keeps its own.
    let reopened = EmbeddedChain::open(dir.path(), &Genesis::default()).unwrap();
    assert_eq!(state_of(&reopened), before);
    // And it goes on from where it was.
    assert_eq!(reopened.advance_epoch(), before.epoch + 1);
    drop(reopened);
    let again = EmbeddedChain::open(dir.path(), &Genesis::default()).unwrap();
    assert_eq!(again.epoch().unwrap(), before.epoch + 1);
}

#[derive(Debug, PartialEq)]
struct State {
    epoch: u64,
    snapshots: Vec<upper_chain::RegistrySnapshot>,
    sequencers: Vec<upper_chain::SequencerRecord>,
    candidates: Vec<upper_chain::SequencerCandidate>,
    stake_cap: u128,
    admin_nonce: u64,
    last_batch: u64,
    batches: Vec<Option<primitives::B256>>,
    synced: Vec<Option<upper_chain::SyncedRoot>>,
    departures: Vec<Option<upper_chain::Departure>>,
    equivocations: Vec<(primitives::NodeId, primitives::pbft::EquivocationEvidence)>,
    deposits: Vec<upper_chain::Deposit>,
    wallet_nonces: Vec<u64>,
    sponsor_policies: Vec<upper_chain::SponsorPolicyRecord>,
    sponsor_nonces: Vec<u64>,
    da_committee: Option<upper_chain::DaCommittee>,
    availability: Vec<Option<upper_chain::AvailabilityRecord>>,
}

fn state_of(chain: &dyn UpperChain) -> State {
    let epoch = chain.epoch().unwrap();
    let snapshots: Vec<_> = (0..=epoch + 1)
        .map(|e| chain.registry_snapshot(e).unwrap())
        .collect();
    let ids = snapshots
        .iter()
        .flat_map(|s| s.ids())
        .collect::<std::collections::BTreeSet<_>>();
    let availability = [
        upper_chain::AvailabilityKind::Batch,
        upper_chain::AvailabilityKind::ExecutionRecord,
        upper_chain::AvailabilityKind::Genesis,
    ]
    .into_iter()
    .flat_map(|kind| (0..3).map(move |number| (kind, number)))
    .map(|(kind, number)| chain.availability(kind, number).unwrap())
    .collect();
    State {
        epoch,
        da_committee: chain.da_committee().unwrap(),
        availability,
        sequencers: chain.sequencer_set().unwrap(),
        candidates: chain.sequencer_candidates().unwrap(),
        stake_cap: chain.stake_cap().unwrap(),
        admin_nonce: chain.admin_nonce().unwrap(),
        last_batch: chain.last_batch().unwrap(),
        batches: (0..=chain.last_batch().unwrap() + 1)
            .map(|n| chain.batch_hash(n).unwrap())
            .collect(),
        synced: ids
            .iter()
            .map(|id| chain.synced_root(id).unwrap())
            .collect(),
        departures: ids.iter().map(|id| chain.departure(id).unwrap()).collect(),
        equivocations: chain.equivocations().unwrap(),
        deposits: chain.deposits_since(0, usize::MAX).unwrap(),
        wallet_nonces: ids
            .iter()
            .map(|id| chain.wallet_nonce(id).unwrap())
            .collect(),
        sponsor_nonces: [0x5905, 0x1417]
            .into_iter()
            .map(|seed| {
                let sponsor = primitives::AccountKey::from_seed(seed).address();
                chain.sponsor_nonce(&sponsor).unwrap()
            })
            .collect(),
        sponsor_policies: chain.sponsor_policies().unwrap(),
        snapshots,
    }
}

/// An expulsion for equivocation survives a reopen: the evidence, the whitelist without the
/// offender, and the refusal to record or whitelist it again.
#[test]
fn equivocations_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let harness = Embedded {
        chain: Arc::new(EmbeddedChain::open(dir.path(), &genesis()).unwrap()),
        _dir: None,
    };
    common::equivocation_expels_the_offender(&harness);
    let chain: Arc<dyn UpperChain> = harness.chain.clone();
    let before = state_of(chain.as_ref());
    assert_eq!(before.equivocations.len(), 1);
    drop(chain);
    drop(harness);

    let reopened = EmbeddedChain::open(dir.path(), &Genesis::default()).unwrap();
    assert_eq!(state_of(&reopened), before);
    let (offender, evidence) = before.equivocations[0].clone();
    assert_eq!(
        reopened.report_equivocation(&evidence, offender),
        Err(upper_chain::ChainError::EquivocationRecorded(offender))
    );
    assert!(
        reopened
            .sequencer_candidates()
            .unwrap()
            .iter()
            .all(|c| c.record.id != offender)
    );
}

/// An expulsion for a broken preconfirmation survives a reopen: the promise, the whitelist
/// without the sequencer, and the refusal to whitelist it again.
#[test]
fn broken_preconfirmations_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let chain = EmbeddedChain::open(dir.path(), &genesis()).unwrap();
    common::broken_preconfirmation_expels_the_sequencer(&chain);
    let broken = chain.broken_preconfirmations().unwrap();
    let candidates = chain.sequencer_candidates().unwrap();
    assert_eq!(broken.len(), 1);
    drop(chain);

    let reopened = EmbeddedChain::open(dir.path(), &Genesis::default()).unwrap();
    assert_eq!(reopened.broken_preconfirmations().unwrap(), broken);
    assert_eq!(reopened.sequencer_candidates().unwrap(), candidates);
}

/// The devnet's constructor still works: a sequencer set without an admin.
#[test]
fn devnet_constructor_has_no_admin() {
    let chain = EmbeddedChain::new(Vec::new());
    assert_eq!(chain.advance_epoch(), 1);
    let op = upper_chain::AdminOp::AdvanceEpoch;
    let key = common::admin_key();
    assert!(matches!(
        chain.admin(op.clone(), &key.sign_prehash(&op.signing_hash(0))),
        Err(upper_chain::ChainError::NotAdmin(_))
    ));
    assert_eq!(chain.epoch().unwrap(), 1);
}

/// Sequencer epochs on the embedded chain, in memory and in RocksDB; the epochs fixed survive a
/// reopen.
#[test]
fn sequencer_sets_change_only_at_epoch_boundaries() {
    let chain = EmbeddedChain::with_genesis(&common::epochs_genesis());
    common::sequencer_sets_change_only_at_epoch_boundaries(&chain);

    let dir = tempfile::tempdir().unwrap();
    let stored = EmbeddedChain::open(dir.path(), &common::epochs_genesis()).unwrap();
    common::sequencer_sets_change_only_at_epoch_boundaries(&stored);
    let epochs: Vec<_> = (0..4).map(|e| stored.sequencer_epoch(e).unwrap()).collect();
    drop(stored);
    let reopened = EmbeddedChain::open(dir.path(), &Genesis::default()).unwrap();
    let again: Vec<_> = (0..4)
        .map(|e| reopened.sequencer_epoch(e).unwrap())
        .collect();
    assert_eq!(again, epochs);
    assert_eq!(
        reopened.sequencer_set().unwrap(),
        epochs[2].clone().unwrap().sequencers
    );
}
