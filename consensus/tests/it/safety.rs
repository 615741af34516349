//! Safety under faults: over many seeds, no two replicas commit different values at one
//! sequence, whatever the network drops, duplicates or reorders, and whatever a faulty primary
//! sends.

use consensus::{
    Message, PrePrepare, ReplicaInput, Vote,
    harness::{Cluster, node_id, operator_key, secret_key},
};
use primitives::{B256, machine::Origin};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::value;

/// Seeds of the lossy-network run; `TICKRATE_SEED=<n>` replays one.
const SEEDS: u64 = 200;

fn seeds() -> Vec<u64> {
    match std::env::var("TICKRATE_SEED") {
        Ok(seed) => vec![seed.parse().expect("TICKRATE_SEED is a number")],
        Err(_) => (0..SEEDS).collect(),
    }
}

/// One run: a random cluster size, random lossy links, duplicates, reordering, proposals
/// interleaved with deliveries. Returns how many replicas committed every proposal.
fn lossy_run(seed: u64) -> usize {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5afe);
    let n = if seed % 10 == 9 { 7 } else { 4 };
    let mut cluster = Cluster::<B256>::new(n, seed);
    cluster.reorder(rng.random_bool(0.8));
    cluster.duplicate(rng.random_range(0.0..0.3));
    for _ in 0..rng.random_range(0..=n) {
        let from = rng.random_range(0..n);
        let to = rng.random_range(0..n);
        if from != to {
            cluster.drop(from, to, rng.random_range(0.0..0.5));
        }
    }
    if rng.random_bool(0.2) {
        cluster.isolate(rng.random_range(0..n));
    }
    let proposals = rng.random_range(1..=4u64);
    for proposal in 0..proposals {
        cluster
            .propose(value(seed * 100 + proposal))
            .expect("the primary accepts proposals");
        for _ in 0..rng.random_range(0..30) {
            cluster.step();
        }
    }
    cluster.deliver_all();
    cluster.check_agreement();
    (0..n)
        .filter(|index| cluster.committed(*index).len() as u64 == proposals)
        .count()
}

#[test]
fn no_two_replicas_commit_different_values_over_lossy_networks() {
    let seeds = seeds();
    let mut complete = 0;
    for &seed in &seeds {
        if lossy_run(seed) > 0 {
            complete += 1;
        }
    }
    eprintln!(
        "{complete} of {} lossy runs committed every proposal somewhere",
        seeds.len()
    );
    // Losses stall some runs (there is no retransmission or view change yet), not all.
    if seeds.len() as u64 == SEEDS {
        assert!(
            complete > SEEDS / 4,
            "only {complete} of {SEEDS} runs committed everything"
        );
    }
}

/// A faulty primary (replica 0, driven by hand) sends value A to some backups and value B to the
/// others, and commit votes for either, over a network that duplicates and reorders. At most one
/// value can gather a quorum, and only with `quorum - 1` honest backups behind it.
#[test]
fn an_equivocating_primary_cannot_split_the_replicas() {
    for seed in 0..50u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = if seed % 2 == 0 { 4 } else { 7 };
        let mut cluster = Cluster::<B256>::new(n, seed);
        cluster.isolate(0); // The honest code of replica 0 stays out; we speak for it.
        cluster.reorder(true);
        cluster.duplicate(0.2);
        let (a, b) = (value(1), value(2));
        let mut backers_a = 0;
        for backup in 1..n {
            let chosen = if rng.random_bool(0.5) { a } else { b };
            if chosen == a {
                backers_a += 1;
            }
            let pre_prepare = PrePrepare::new(&operator_key(0), 0, 1, chosen);
            let input = ReplicaInput::Decoded(Message::PrePrepare(pre_prepare));
            cluster
                .input(backup, Origin::Peer(node_id(0)), input)
                .expect("a pre-prepare from the primary");
            let order = if rng.random_bool(0.5) { [a, b] } else { [b, a] };
            for digest in order {
                let vote = Vote::commit(&secret_key(0), 0, 1, digest, 0);
                // The second is refused as conflicting: the first vote stands.
                let _ = cluster.input(
                    backup,
                    Origin::Peer(node_id(0)),
                    ReplicaInput::Decoded(Message::Commit(vote)),
                );
            }
        }
        cluster.deliver_all();
        cluster.check_agreement();
        // Every backup caught the primary's two commits and holds checked evidence of them.
        for backup in 1..n {
            let evidence = cluster.evidence(backup);
            assert_eq!(evidence.len(), 1, "seed {seed}: replica {backup}");
            assert_eq!(
                (evidence[0].kind, evidence[0].offender, evidence[0].sequence),
                (consensus::EvidenceKind::Commit, 0, 1)
            );
        }
        let quorum = cluster.validators().quorum();
        for backup in 1..n {
            if let Some(decided) = cluster.committed(backup).first() {
                let backers = if decided.value == Some(a) {
                    backers_a
                } else {
                    n - 1 - backers_a
                };
                assert!(
                    backers >= quorum - 1,
                    "seed {seed}: replica {backup} committed with {backers} backers"
                );
            }
        }
    }
}
