//! A seeded simulation with byzantine backups: up to `f` replicas other than the primary are
//! silent, vote for other values, vote twice, sign with the wrong key, or replay old messages,
//! over a network that reorders and duplicates. Checkers: safety (correct replicas never commit
//! different values at a sequence, every certificate verifies, evidence only ever names a
//! byzantine replica) and liveness (every correct replica commits every proposal).
//!
//! The primary stays correct and no link between correct replicas drops messages: without view
//! change, a faulty primary or a lost message may stall a run, which is not a failure here.
//!
//! Each seed is one tiny run (one proposal). `cargo test` runs [`SEEDS`] seeds per size so that
//! the suite stays fast in debug on a shared machine; `TICKRATE_SEEDS=1000` runs more (the timed
//! fault campaign of `world.rs` is where CI runs 1,000 seeds), `TICKRATE_SEED=<n>` replays one seed (of both sizes), and a failing seed names itself.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use consensus::{
    Message, ReplicaInput, Vote,
    harness::{Cluster, Envelope, node_id, operator_key, secret_key},
};
use primitives::{B256, Encode, machine::Origin};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::value;

/// Seeds per cluster size in a plain `cargo test` (`TICKRATE_SEEDS` overrides it).
const SEEDS: u64 = 100;

/// Proposed values cycle through this many, so that the byzantine votes' signatures, which
/// cost most of a run, are signed once per process and reused.
const VALUES: u64 = 16;

fn seeds() -> Vec<u64> {
    if let Ok(seed) = std::env::var("TICKRATE_SEED") {
        return vec![seed.parse().expect("TICKRATE_SEED is a number")];
    }
    let count = std::env::var("TICKRATE_SEEDS").map_or(SEEDS, |count| {
        count.parse().expect("TICKRATE_SEEDS is a number")
    });
    (0..count).collect()
}

/// What a byzantine replica does with its vote of one kind to one correct replica.
#[derive(Clone, Copy, Debug)]
enum Misbehaviour {
    /// Says nothing.
    Silent,
    /// Votes for the proposed value (byzantine replicas may vote right).
    Right,
    /// Votes for another value.
    Wrong,
    /// Votes for the proposed value and for another one, in a random order.
    Twice,
    /// Signs with another validator's key.
    Forged,
}

/// Encoded votes already signed, by `(commit, signer, voter, digest)`.
type Signed = BTreeMap<(bool, usize, usize, B256), Vec<u8>>;
static SIGNED: Mutex<Signed> = Mutex::new(BTreeMap::new());

fn vote(commit: bool, signer: usize, voter: usize, digest: B256) -> ReplicaInput<B256> {
    let key = (commit, signer, voter, digest);
    if let Some(bytes) = SIGNED.lock().expect("no test panics holding it").get(&key) {
        return ReplicaInput::Message(bytes.clone());
    }
    let index = u16::try_from(voter).expect("small cluster");
    let message = if commit {
        Message::<B256>::Commit(Vote::commit(&secret_key(signer), 0, 1, digest, index))
    } else {
        Message::Prepare(Vote::prepare(&operator_key(signer), 0, 1, digest, index))
    };
    let bytes = message.to_bytes();
    SIGNED
        .lock()
        .expect("no test panics holding it")
        .insert(key, bytes.clone());
    ReplicaInput::Message(bytes)
}

/// Sends byzantine replica `byzantine`'s votes of one kind to correct replica `target`.
fn misbehave(
    cluster: &mut Cluster<B256>,
    rng: &mut ChaCha8Rng,
    commit: bool,
    (byzantine, target): (usize, usize),
    proposed: B256,
) {
    let other = value(0xBAD);
    let choice = match rng.random_range(0..5) {
        0 => Misbehaviour::Silent,
        1 => Misbehaviour::Right,
        2 => Misbehaviour::Wrong,
        3 => Misbehaviour::Twice,
        _ => Misbehaviour::Forged,
    };
    let from = Origin::Peer(node_id(byzantine));
    let inputs = match choice {
        Misbehaviour::Silent => vec![],
        Misbehaviour::Right => vec![vote(commit, byzantine, byzantine, proposed)],
        Misbehaviour::Wrong => vec![vote(commit, byzantine, byzantine, other)],
        Misbehaviour::Twice if rng.random_bool(0.5) => vec![
            vote(commit, byzantine, byzantine, proposed),
            vote(commit, byzantine, byzantine, other),
        ],
        Misbehaviour::Twice => vec![
            vote(commit, byzantine, byzantine, other),
            vote(commit, byzantine, byzantine, proposed),
        ],
        Misbehaviour::Forged => {
            let signer = (byzantine + 1) % cluster.n();
            vec![vote(commit, signer, byzantine, proposed)]
        }
    };
    for input in inputs {
        // Refusals are expected (conflicts, forgeries); the checkers judge the outcome.
        let _ = cluster.input(target, from, input);
    }
}

/// One run; panics with the seed if a checker fails.
fn run(n: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ ((n as u64) << 32));
    let mut cluster = Cluster::<B256>::new(n, seed);
    cluster.reorder(true);
    cluster.duplicate(rng.random_range(0.0..0.3));
    let faults = rng.random_range(0..=cluster.validators().f());
    let mut byzantine = BTreeSet::new();
    while byzantine.len() < faults {
        byzantine.insert(rng.random_range(1..n)); // Never the primary, replica 0.
    }
    for &index in &byzantine {
        cluster.isolate(index); // Its honest code stays out; the run speaks for it.
    }
    let correct: Vec<usize> = (0..n).filter(|index| !byzantine.contains(index)).collect();
    let proposed = value(seed % VALUES);
    cluster
        .propose(proposed)
        .expect("the primary accepts proposals");
    let early: Vec<Envelope> = cluster.in_flight().iter().cloned().collect();
    for &index in &byzantine {
        for &target in &correct {
            for commit in [false, true] {
                misbehave(&mut cluster, &mut rng, commit, (index, target), proposed);
                for _ in 0..rng.random_range(0..4) {
                    cluster.step();
                }
            }
        }
    }
    cluster.deliver_all();
    // Replay: the first messages of the run, once more, after the decision.
    for envelope in early
        .into_iter()
        .filter(|envelope| !byzantine.contains(&envelope.to))
    {
        let from = Origin::Peer(node_id(envelope.from));
        let replayed = cluster.input(envelope.to, from, ReplicaInput::Message(envelope.bytes));
        assert!(
            replayed.is_err(),
            "n = {n}, seed {seed}: a replay was accepted"
        );
    }
    cluster.deliver_all();
    cluster.check_agreement();
    for &index in &correct {
        let committed = cluster.committed(index);
        assert_eq!(
            committed.len(),
            1,
            "n = {n}, seed {seed}: correct replica {index} did not commit (liveness)"
        );
        assert_eq!(committed[0].value, Some(proposed), "n = {n}, seed {seed}");
        for evidence in cluster.evidence(index) {
            assert!(
                byzantine.contains(&usize::from(evidence.offender)),
                "n = {n}, seed {seed}: replica {index} accused a correct replica: {evidence:?}"
            );
        }
    }
}

fn run_all(n: usize) {
    let seeds = seeds();
    for &seed in &seeds {
        let outcome = std::panic::catch_unwind(|| run(n, seed));
        if let Err(panic) = outcome {
            eprintln!("n = {n}: seed {seed} failed; replay with TICKRATE_SEED={seed}");
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!("n = {n}: {} seeds safe and live", seeds.len());
}

#[test]
fn byzantine_backups_cannot_break_four() {
    run_all(4);
}

#[test]
fn byzantine_backups_cannot_break_eight() {
    run_all(8);
}
