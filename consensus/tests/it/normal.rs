//! The normal case: proposals commit, in order, everywhere, with checkable certificates.

use consensus::{
    ReplicaEvent, ReplicaInput, ValidatorSet, Value, constants::CHECKPOINT_INTERVAL,
    constants::SEQUENCE_WINDOW, harness::Cluster, harness::node_id, quorum,
    verify_commit_certificate,
};
use primitives::{B256, Batch, FinalizedBatch, machine::Origin};

use crate::value;

/// Checks that every replica in `replicas` committed exactly `values`, in order, with
/// certificates a quorum of `validators` signed.
fn assert_committed(cluster: &Cluster<B256>, replicas: &[usize], values: &[B256]) {
    let keys = cluster.validators().keys();
    let quorum = cluster.validators().quorum();
    for &index in replicas {
        let committed = cluster.committed(index);
        assert_eq!(committed.len(), values.len(), "replica {index}");
        for (position, decided) in committed.iter().enumerate() {
            let sequence = position as u64 + 1;
            assert_eq!(decided.sequence, sequence);
            let value = decided
                .value
                .as_ref()
                .expect("no nulls without a view change");
            assert_eq!(*value, values[position], "replica {index} at {sequence}");
            assert_eq!(decided.certificate.signers.count(), quorum);
            let message = consensus::commit_message(decided.view, sequence, &value.digest());
            assert_eq!(decided.certificate.verify(&message, keys, quorum), Ok(()));
        }
    }
}

#[test]
fn commits_signed_ahead_are_the_commits_a_replica_would_have_sent() {
    let values: Vec<B256> = (0..6).map(value).collect();
    let run = |presign: bool| {
        let mut cluster = Cluster::<B256>::new(4, 5);
        let mut signed_ahead = 0;
        for value in &values {
            cluster.propose(*value).expect("the primary proposes");
            if presign {
                signed_ahead += cluster.presign_all();
            }
            while cluster.step() {
                if presign {
                    signed_ahead += cluster.presign_all();
                }
            }
        }
        (cluster, signed_ahead)
    };
    let (plain, _) = run(false);
    let (ahead, signed_ahead) = run(true);
    // Each replica signs each slot's commit ahead once: the primary on proposing, a backup
    // once it checked the proposal.
    assert_eq!(signed_ahead, 4 * values.len());
    assert_committed(&ahead, &[0, 1, 2, 3], &values);
    for index in 0..4 {
        assert_eq!(plain.committed(index), ahead.committed(index));
        assert_eq!(
            plain.replica(index).fingerprint(),
            ahead.replica(index).fingerprint()
        );
    }
    assert_eq!(plain.counts(), ahead.counts());
}

#[test]
fn signing_ahead_stops_after_a_bounded_number_of_commits() {
    let mut cluster = Cluster::<B256>::new(4, 6);
    // The primary proposes a run of values whose prepares never arrive.
    for position in 0..20 {
        cluster
            .propose(value(position))
            .expect("the primary proposes");
    }
    assert_eq!(cluster.presign_all(), consensus::constants::PRESIGNED_MAX);
    assert_eq!(cluster.presign_all(), 0);
    // Once the messages flow, every slot commits, the signatures made ahead among them.
    while cluster.step() {
        cluster.presign_all();
    }
    let values: Vec<B256> = (0..20).map(value).collect();
    assert_committed(&cluster, &[0, 1, 2, 3], &values);
}

#[test]
fn four_replicas_commit_proposals_in_order() {
    let mut cluster = Cluster::<B256>::new(4, 1);
    assert_eq!(cluster.validators().quorum(), 3);
    let values: Vec<B256> = (0..10).map(value).collect();
    for (position, value) in values.iter().enumerate() {
        assert_eq!(cluster.propose(*value), Ok(position as u64 + 1));
        cluster.deliver_all();
    }
    assert_committed(&cluster, &[0, 1, 2, 3], &values);
    for index in 0..4 {
        let replica = cluster.replica(index);
        assert_eq!(replica.last_committed(), 10);
        assert_eq!(replica.stats().rejected.total(), 0, "replica {index}");
        assert_eq!(replica.history(), cluster.replica(0).history());
    }
}

#[test]
fn proposals_pipeline_without_waiting_for_each_other() {
    let mut cluster = Cluster::<B256>::new(4, 2);
    let values: Vec<B256> = (0..12).map(value).collect();
    for value in &values {
        cluster
            .propose(*value)
            .expect("the primary accepts proposals");
    }
    cluster.deliver_all();
    assert_committed(&cluster, &[0, 1, 2, 3], &values);
}

#[test]
fn eight_replicas_commit_proposals_in_order() {
    let mut cluster = Cluster::<B256>::new(8, 3);
    assert_eq!(cluster.validators().f(), 2);
    assert_eq!(cluster.validators().quorum(), 6);
    let values: Vec<B256> = (100..105).map(value).collect();
    for value in &values {
        cluster
            .propose(*value)
            .expect("the primary accepts proposals");
        cluster.deliver_all();
    }
    assert_committed(&cluster, &(0..8).collect::<Vec<_>>(), &values);
}

#[test]
fn a_single_validator_commits_alone() {
    let mut cluster = Cluster::<B256>::new(1, 4);
    cluster
        .propose(value(1))
        .expect("the only validator is primary");
    assert_eq!(cluster.deliver_all(), 0);
    assert_committed(&cluster, &[0], &[value(1)]);
}

#[test]
fn batches_commit_with_certificates_anyone_can_check() {
    let mut cluster = Cluster::<Batch>::new(4, 5);
    let mut parent = B256::ZERO;
    for number in 1..=3 {
        let batch = Batch {
            number,
            parent,
            headers: Vec::new(),
        };
        parent = batch.hash();
        assert_eq!(cluster.propose(batch), Ok(number));
        cluster.deliver_all();
    }
    let keys = cluster.validators().keys();
    for index in 0..4 {
        let committed = cluster.committed(index);
        assert_eq!(committed.len(), 3);
        for decided in committed {
            let batch = decided
                .value
                .clone()
                .expect("no nulls without a view change");
            assert_eq!(batch.number, decided.sequence);
            let mut finalized = FinalizedBatch {
                batch,
                sequence: decided.sequence,
                view: decided.view,
                certificate: decided.certificate.clone(),
            };
            assert_eq!(verify_commit_certificate(&finalized, keys), Ok(()));
            // The certificate names the view.
            finalized.view += 1;
            assert!(verify_commit_certificate(&finalized, keys).is_err());
            finalized.view -= 1;
            // The certificate names the sequence and the digest: another batch does not pass.
            finalized.batch.number += 1;
            assert!(verify_commit_certificate(&finalized, keys).is_err());
            finalized.batch.number -= 1;
            finalized.sequence += 1;
            assert!(verify_commit_certificate(&finalized, keys).is_err());
            // Nor does a set of keys it was not signed by.
            assert!(verify_commit_certificate(&finalized, &keys[..1]).is_err());
            assert_eq!(
                verify_commit_certificate(&finalized, &[]),
                Err(consensus::CertificateError::NoValidators)
            );
        }
    }
}

#[test]
fn reordered_and_duplicated_messages_commit_the_same() {
    let values: Vec<B256> = (0..6).map(value).collect();
    for seed in 0..6 {
        let mut cluster = Cluster::<B256>::new(4, seed);
        cluster.reorder(true);
        cluster.duplicate(0.4);
        for value in &values {
            cluster
                .propose(*value)
                .expect("the primary accepts proposals");
        }
        cluster.deliver_all();
        let (_, duplicated, _) = cluster.counts();
        assert!(duplicated > 0, "seed {seed} duplicated something");
        assert_committed(&cluster, &[0, 1, 2, 3], &values);
        let duplicates: u64 = (0..4)
            .map(|index| cluster.replica(index).stats().rejected.duplicate)
            .sum();
        assert_eq!(
            duplicates, duplicated,
            "seed {seed}: every duplicate is refused"
        );
    }
}

#[test]
fn later_sequences_wait_for_earlier_ones() {
    let mut cluster = Cluster::<B256>::new(4, 6);
    cluster.propose(value(1)).expect("proposal");
    cluster.propose(value(2)).expect("proposal");
    // Everything about sequence 2 first: it is decided everywhere but not yet handed out.
    let about_two = |bytes: &[u8]| {
        consensus::Message::<B256>::from_wire(bytes)
            .expect("replicas send valid messages")
            .sequence()
            == 2
    };
    cluster.deliver_where(|envelope| about_two(&envelope.bytes));
    for index in 0..4 {
        assert_eq!(cluster.committed(index).len(), 0, "replica {index}");
        assert_eq!(cluster.replica(index).last_committed(), 0);
    }
    cluster.deliver_all();
    assert_committed(&cluster, &[0, 1, 2, 3], &[value(1), value(2)]);
}

#[test]
fn one_silent_replica_does_not_stop_four() {
    let mut cluster = Cluster::<B256>::new(4, 7);
    cluster.isolate(3);
    let values: Vec<B256> = (0..5).map(value).collect();
    for value in &values {
        cluster
            .propose(*value)
            .expect("the primary accepts proposals");
        cluster.deliver_all();
    }
    assert_committed(&cluster, &[0, 1, 2], &values);
    assert!(cluster.committed(3).is_empty());
}

#[test]
fn two_silent_replicas_do_not_stop_eight() {
    let mut cluster = Cluster::<B256>::new(8, 8);
    cluster.isolate(5);
    cluster.isolate(7);
    let values: Vec<B256> = (0..3).map(value).collect();
    for value in &values {
        cluster
            .propose(*value)
            .expect("the primary accepts proposals");
        cluster.deliver_all();
    }
    assert_committed(&cluster, &[0, 1, 2, 3, 4, 6], &values);
}

#[test]
fn more_than_f_silent_replicas_stop_progress() {
    let mut cluster = Cluster::<B256>::new(4, 9);
    cluster.isolate(2);
    cluster.isolate(3);
    cluster.propose(value(1)).expect("proposal");
    cluster.deliver_all();
    for index in 0..4 {
        assert!(cluster.committed(index).is_empty(), "replica {index}");
    }
}

#[test]
fn a_replica_that_refuses_the_value_does_not_prepare_it() {
    let mut cluster = Cluster::<B256>::new(4, 10);
    cluster.refuse_values(2);
    let values: Vec<B256> = (0..3).map(value).collect();
    for value in &values {
        cluster
            .propose(*value)
            .expect("the primary accepts proposals");
        cluster.deliver_all();
    }
    let refuser = cluster.replica(2).stats();
    assert_eq!(refuser.values_refused, 3);
    assert_eq!(refuser.values_accepted, 0);
    assert_eq!(refuser.prepares_sent, 0);
    assert_eq!(refuser.commits_sent, 0);
    // The others hold a quorum without it, and it learns what they decided.
    assert_committed(&cluster, &[0, 1, 2, 3], &values);
    for index in [1, 3] {
        assert_eq!(cluster.replica(index).stats().prepares_sent, 3);
    }
}

#[test]
fn a_value_refused_by_more_than_f_replicas_is_not_committed() {
    let mut cluster = Cluster::<B256>::new(4, 11);
    cluster.refuse_values(1);
    cluster.refuse_values(2);
    cluster.propose(value(1)).expect("proposal");
    cluster.deliver_all();
    for index in 0..4 {
        assert!(cluster.committed(index).is_empty(), "replica {index}");
        assert_eq!(cluster.replica(index).stats().commits_sent, 0);
    }
}

#[test]
fn the_application_is_asked_before_a_backup_prepares() {
    // Drive one backup by hand to see its Verify before any prepare leaves it.
    let mut cluster = Cluster::<B256>::new(4, 12);
    cluster.propose(value(1)).expect("proposal");
    let to_backup = cluster
        .in_flight()
        .iter()
        .find(|envelope| envelope.to == 1)
        .expect("a pre-prepare for replica 1")
        .clone();
    let validators: ValidatorSet = cluster.validators().clone();
    let mut backup =
        consensus::Replica::<B256>::new(validators, 1, consensus::harness::replica_keys(1));
    use primitives::machine::Machine;
    let now = primitives::Instant::ZERO;
    backup
        .step(
            now,
            Origin::Peer(node_id(0)),
            ReplicaInput::Message(to_backup.bytes),
        )
        .expect("the pre-prepare is accepted");
    assert_eq!(
        backup.poll_transmit(now),
        None,
        "no prepare before the verdict"
    );
    assert_eq!(
        backup.poll_event(),
        Some(ReplicaEvent::Verify {
            sequence: 1,
            value: value(1)
        })
    );
    backup
        .step(
            now,
            Origin::Local,
            ReplicaInput::Verified {
                sequence: 1,
                digest: value(1),
                valid: true,
            },
        )
        .expect("the verdict is expected");
    let mut prepared_to = Vec::new();
    while let Some(transmit) = backup.poll_transmit(now) {
        let message = consensus::Message::<B256>::from_wire(&transmit.bytes).expect("valid");
        assert!(matches!(message, consensus::Message::Prepare(_)));
        prepared_to.push(transmit.to);
    }
    assert_eq!(prepared_to, vec![node_id(0), node_id(2), node_id(3)]);
    // The view timer runs while the proposal is undecided.
    assert!(backup.poll_timeout().is_some());
}

#[test]
fn checkpoints_become_stable_and_the_window_moves() {
    let mut cluster = Cluster::<B256>::new(4, 13);
    let count = SEQUENCE_WINDOW + 2 * CHECKPOINT_INTERVAL + 3;
    let values: Vec<B256> = (0..count).map(value).collect();
    for value in &values {
        cluster
            .propose(*value)
            .expect("the window moves as checkpoints become stable");
        cluster.deliver_all();
    }
    assert_committed(&cluster, &[0, 1, 2, 3], &values);
    let stable = count / CHECKPOINT_INTERVAL * CHECKPOINT_INTERVAL;
    for index in 0..4 {
        let replica = cluster.replica(index);
        assert_eq!(replica.low_watermark(), stable, "replica {index}");
        assert_eq!(replica.high_watermark(), stable + SEQUENCE_WINDOW);
        assert!(replica.stable_proof().len() >= quorum(4));
        assert!(
            replica
                .stable_proof()
                .iter()
                .all(|vote| vote.sequence == stable)
        );
        assert_eq!(
            replica.stats().checkpoints_stable,
            count / CHECKPOINT_INTERVAL
        );
        assert_eq!(replica.stats().checkpoints_diverged, 0);
    }
}

#[test]
fn the_primary_stops_at_the_high_watermark() {
    let mut cluster = Cluster::<B256>::new(4, 14);
    // Without backups no checkpoint becomes stable, so the window cannot move.
    cluster.isolate(1);
    cluster.isolate(2);
    for sequence in 1..=SEQUENCE_WINDOW {
        assert_eq!(cluster.propose(value(sequence)), Ok(sequence));
    }
    let before = cluster.replica(0).fingerprint();
    assert_eq!(
        cluster.propose(value(0)),
        Err(consensus::RejectReason::WindowFull {
            sequence: SEQUENCE_WINDOW + 1,
            high: SEQUENCE_WINDOW
        })
    );
    assert_eq!(cluster.replica(0).fingerprint(), before);
    assert_eq!(cluster.replica(0).stats().rejected.window_full, 1);
}

#[test]
fn checkpoints_become_stable_under_reordering_and_duplicates() {
    let count = 2 * CHECKPOINT_INTERVAL + 5;
    let values: Vec<B256> = (0..count).map(value).collect();
    for seed in 40..43 {
        let mut cluster = Cluster::<B256>::new(4, seed);
        cluster.reorder(true);
        cluster.duplicate(0.2);
        for chunk in values.chunks(8) {
            for value in chunk {
                cluster.propose(*value).expect("the window has room");
            }
            cluster.deliver_all();
        }
        assert_committed(&cluster, &[0, 1, 2, 3], &values);
        for index in 0..4 {
            let replica = cluster.replica(index);
            assert_eq!(
                replica.low_watermark(),
                2 * CHECKPOINT_INTERVAL,
                "seed {seed}"
            );
            assert_eq!(replica.history(), cluster.replica(0).history());
        }
    }
}
