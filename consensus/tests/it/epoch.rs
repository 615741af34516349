//! Validator sets per epoch: the old set certifies the last sequence of its epoch and nothing
//! after it; every replica switches after that sequence, in the epoch's first view; a node that
//! left is refused with its reason, and retires itself; a next epoch that does not follow is
//! refused. The seeded world then changes sets mid-run, under faults (`world_epochs`).

use consensus::{
    MemoryMedium, Message, PrePrepare, RejectReason, Replica, ReplicaConfig, ReplicaEvent,
    ReplicaInput, ReplicaLog, ReplicaState, Validator, ValidatorSet, Vote, epoch_first_view,
    harness::{node_id, operator_key, replica_keys, secret_key},
    world::{Behaviour, EpochChange, Scenario, World},
};
use primitives::{
    B256,
    machine::{Machine, Origin},
    time::Instant,
};

use crate::value;

/// The last sequence of epoch 0 in these tests.
const END: u64 = 2;

fn set(nodes: &[usize], epoch: u64, start: u64, end: Option<u64>) -> ValidatorSet {
    ValidatorSet::for_epoch(
        nodes
            .iter()
            .map(|node| Validator {
                id: node_id(*node),
                key: secret_key(*node).public_key(),
            })
            .collect(),
        epoch,
        start,
        end,
    )
}

/// Epoch 0: nodes 0..4 through sequence `END`. Epoch 1: nodes 1..5 (node 0 leaves, 4 joins).
fn epochs() -> (ValidatorSet, ValidatorSet) {
    (
        set(&[0, 1, 2, 3], 0, 0, Some(END)),
        set(&[1, 2, 3, 4], 1, END, None),
    )
}

/// Node `node`'s replica of epoch 0, durable, its log and what it emitted.
struct Node {
    replica: Replica<B256>,
    log: ReplicaLog<B256, MemoryMedium>,
    events: Vec<ReplicaEvent<B256>>,
}

impl Node {
    fn new(node: usize) -> Node {
        let (first, _) = epochs();
        Node {
            replica: Replica::restore(
                first,
                node,
                replica_keys(node),
                ReplicaConfig::default(),
                Instant::ZERO,
                ReplicaState::genesis(),
            ),
            log: ReplicaLog::open(MemoryMedium::new()).expect("opens").0,
            events: Vec::new(),
        }
    }

    /// Crashes and restarts from the log, built with the epoch-0 set as at first.
    fn restart(self, node: usize) -> Node {
        let (log, _) = ReplicaLog::open(self.log.into_medium()).expect("recovers");
        let (first, _) = epochs();
        Node {
            replica: Replica::restore(
                first,
                node,
                replica_keys(node),
                ReplicaConfig::default(),
                Instant::ZERO,
                log.state().clone(),
            ),
            log,
            events: Vec::new(),
        }
    }

    fn drain(&mut self) {
        let mut records = Vec::new();
        while let Some(record) = self.replica.poll_persist() {
            records.push(record);
        }
        self.log.append(&records).expect("durable");
        while self.replica.poll_transmit(Instant::ZERO).is_some() {}
        while let Some(event) = self.replica.poll_event() {
            self.events.push(event);
        }
    }

    fn from(&mut self, node: usize, message: Message<B256>) -> Result<(), RejectReason> {
        let result = self.replica.step(
            Instant::ZERO,
            Origin::Peer(node_id(node)),
            ReplicaInput::Decoded(message),
        );
        self.drain();
        result
    }

    fn local(&mut self, input: ReplicaInput<B256>) -> Result<(), RejectReason> {
        let result = self.replica.step(Instant::ZERO, Origin::Local, input);
        self.drain();
        result
    }

    /// Decides `value(sequence)` at `sequence` in view 0 of epoch 0: the primary (node 0)
    /// proposes, nodes 1..3 prepare and commit (this node votes itself, if a backup).
    fn decide_in_epoch_zero(&mut self, sequence: u64) {
        let me = self.replica.index();
        let digest = value(sequence);
        if me != 0 {
            let pre_prepare = PrePrepare::new(&operator_key(0), 0, sequence, digest);
            self.from(0, Message::PrePrepare(pre_prepare))
                .expect("pre-prepare");
            self.local(ReplicaInput::Verified {
                sequence,
                digest,
                valid: true,
            })
            .expect("verdict");
        } else {
            self.local(ReplicaInput::Propose(digest)).expect("proposes");
        }
        for node in 1..4usize {
            if node != me {
                let vote = Vote::prepare(&operator_key(node), 0, sequence, digest, node as u16);
                self.from(node, Message::Prepare(vote)).expect("prepare");
            }
        }
        for node in 0..4usize {
            if node != me {
                let vote = Vote::commit(&secret_key(node), 0, sequence, digest, node as u16);
                let _ = self.from(node, Message::Commit(vote));
            }
        }
        assert_eq!(self.replica.last_committed(), sequence);
    }
}

#[test]
fn the_old_set_certifies_its_last_sequence_and_nothing_after() {
    let mut node = Node::new(1);
    assert_eq!(
        node.replica.high_watermark(),
        END,
        "the window stops at the epoch's end"
    );
    let beyond = PrePrepare::new(&operator_key(0), 0, END + 1, value(9));
    assert_eq!(
        node.from(0, Message::PrePrepare(beyond)),
        Err(RejectReason::OutsideWindow {
            sequence: END + 1,
            low: 0,
            high: END
        })
    );
    let mut primary = Node::new(0);
    primary.decide_in_epoch_zero(1);
    primary.decide_in_epoch_zero(2);
    assert_eq!(
        primary.local(ReplicaInput::Propose(value(3))),
        Err(RejectReason::WindowFull {
            sequence: END + 1,
            high: END
        }),
        "without the next set, the primary proposes nothing beyond the epoch"
    );
}

#[test]
fn replicas_switch_after_the_last_sequence_and_refuse_those_that_left() {
    let (_, next) = epochs();
    let mut node = Node::new(1);
    // The next set may come early: the switch waits for the last sequence.
    node.local(ReplicaInput::NextEpoch(next.clone()))
        .expect("the next epoch");
    node.decide_in_epoch_zero(1);
    assert_eq!(node.replica.epoch(), 0);
    node.decide_in_epoch_zero(2);
    assert_eq!(node.replica.epoch(), 1);
    assert!(node.events.contains(&ReplicaEvent::EpochEntered {
        epoch: 1,
        start: END,
        member: true
    }));
    assert_eq!(node.replica.view(), epoch_first_view(1));
    assert_eq!(node.replica.low_watermark(), END);
    assert_eq!(node.replica.index(), 0, "its place in the new set");
    // Node 0 left: its votes are refused with that reason.
    let late = Vote::prepare(&operator_key(0), epoch_first_view(1), END + 1, value(7), 0);
    assert_eq!(
        node.from(0, Message::Prepare(late)),
        Err(RejectReason::LeftValidatorSet {
            from: node_id(0),
            epoch: 1
        })
    );
    assert_eq!(node.replica.stats().rejected.left_validator_set, 1);
    // A stranger is still a stranger.
    let stranger = Vote::prepare(&operator_key(9), epoch_first_view(1), END + 1, value(7), 0);
    assert_eq!(
        node.from(9, Message::Prepare(stranger)),
        Err(RejectReason::NotValidator { from: node_id(9) })
    );
    // The new primary (node 1, index 0 of view 2^32) takes a pre-prepare from the new set.
    let pre_prepare = PrePrepare::new(&operator_key(2), epoch_first_view(1), END + 1, value(3));
    assert_eq!(
        node.from(2, Message::PrePrepare(pre_prepare)),
        Err(RejectReason::NotPrimary {
            view: epoch_first_view(1),
            index: 1
        }),
        "the primary of the epoch's first view is the new set's first member"
    );
}

#[test]
fn a_node_that_leaves_retires() {
    let (_, next) = epochs();
    let mut node = Node::new(0);
    node.local(ReplicaInput::NextEpoch(next))
        .expect("the next epoch");
    node.decide_in_epoch_zero(1);
    node.decide_in_epoch_zero(2);
    assert!(node.replica.is_retired());
    assert!(node.events.contains(&ReplicaEvent::EpochEntered {
        epoch: 1,
        start: END,
        member: false
    }));
    assert!(!node.replica.is_primary());
    assert_eq!(
        node.local(ReplicaInput::Propose(value(3))),
        Err(RejectReason::Retired { epoch: 1 })
    );
    assert_eq!(node.replica.poll_timeout(), None, "no timer runs");
    assert_eq!(node.replica.id(), node_id(0));
    let node = node.restart(0);
    assert!(node.replica.is_retired(), "still retired after a restart");
    assert_eq!(node.replica.id(), node_id(0));
}

#[test]
fn a_replica_restarted_after_the_switch_is_in_the_new_epoch() {
    let (_, next) = epochs();
    let mut node = Node::new(1);
    node.local(ReplicaInput::NextEpoch(next))
        .expect("the next epoch");
    node.decide_in_epoch_zero(1);
    node.decide_in_epoch_zero(2);
    let mut node = node.restart(1);
    assert_eq!(node.replica.epoch(), 1);
    assert_eq!(node.replica.index(), 0);
    assert_eq!(node.replica.view(), epoch_first_view(1));
    assert_eq!(node.replica.last_committed(), END);
    assert_eq!(
        node.replica.high_watermark(),
        END + consensus::constants::SEQUENCE_WINDOW
    );
    let late = Vote::prepare(&operator_key(0), epoch_first_view(1), END + 1, value(7), 0);
    assert_eq!(
        node.from(0, Message::Prepare(late)),
        Err(RejectReason::LeftValidatorSet {
            from: node_id(0),
            epoch: 1
        })
    );
}

#[test]
fn a_next_epoch_that_does_not_follow_is_refused() {
    let mut node = Node::new(1);
    for (wrong, why) in [
        (set(&[1, 2, 3, 4], 2, END, None), "not the next epoch"),
        (
            set(&[1, 2, 3, 4], 1, END + 1, None),
            "does not start right after the current epoch's end",
        ),
    ] {
        assert_eq!(
            node.local(ReplicaInput::NextEpoch(wrong.clone())),
            Err(RejectReason::BadEpoch {
                epoch: wrong.epoch(),
                start: wrong.start(),
                why
            })
        );
    }
    let mut open_ended = Replica::<B256>::new(set(&[0, 1, 2, 3], 0, 0, None), 1, replica_keys(1));
    let next = set(&[1, 2, 3, 4], 1, END, None);
    assert_eq!(
        open_ended.step(Instant::ZERO, Origin::Local, ReplicaInput::NextEpoch(next)),
        Err(RejectReason::BadEpoch {
            epoch: 1,
            start: END,
            why: "the current epoch has no end"
        })
    );
}

#[test]
fn a_joining_node_starts_at_the_epoch_boundary_and_restarts_there() {
    let (_, next) = epochs();
    let state = ReplicaState::joining(&next);
    let joiner = Replica::<B256>::restore(
        next.clone(),
        3,
        replica_keys(4),
        ReplicaConfig::default(),
        Instant::ZERO,
        state.clone(),
    );
    assert_eq!(joiner.epoch(), 1);
    assert_eq!(joiner.last_committed(), END);
    assert_eq!(joiner.view(), epoch_first_view(1));
    assert_eq!(joiner.next_sequence(), END + 1);
    // Its log starts from that state, and a restart finds it there.
    let (mut log, _) =
        consensus::ReplicaLog::<B256, _>::open(consensus::MemoryMedium::new()).expect("opens");
    log.start_from(state.clone()).expect("an empty log");
    let (log, _) = consensus::ReplicaLog::<B256, _>::open(log.into_medium()).expect("recovers");
    assert_eq!(log.state(), &state);
}

/// Seeds of the set-change runs; `TICKRATE_SEEDS` lowers or raises it.
const EPOCH_SEEDS: u64 = 48;

/// The seeded world changes sets mid-run, from 4 to 5 validators or by swapping one, with the
/// campaign's faults (losses, duplicates, partitions, crashes with restarts from the log, a
/// byzantine replica): every run stays safe (each epoch's decisions agree and carry its own
/// set's certificates; nobody signs twice) and live (values proposed after the heal are
/// committed by every correct validator of the new set, the node that joined included).
#[test]
fn world_epochs_change_sets_and_stay_safe_and_live() {
    let seeds = std::env::var("TICKRATE_SEEDS")
        .map_or(EPOCH_SEEDS, |count| count.parse().expect("a number"))
        .min(EPOCH_SEEDS);
    let mut switched = 0;
    for seed in 0..seeds {
        let mut scenario = Scenario::draw(4, seed ^ 0xE90C);
        let members = if seed % 2 == 0 {
            vec![0, 1, 2, 3, 4] // 4 to 5
        } else {
            vec![1, 2, 3, 4] // node 0 swapped for node 4
        };
        scenario.values = scenario.values.max(8);
        scenario.epoch_change = Some(EpochChange {
            end: 4,
            members: members.clone(),
            announce_us: (seed * 37_000) % 900_000,
        });
        let mut world = World::new(seed, scenario.clone());
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| world.run()));
        let report = match run {
            Ok(report) => report,
            Err(panic) => {
                eprintln!("epoch seed {seed} failed: {scenario:?}");
                std::panic::resume_unwind(panic);
            }
        };
        let correct_members = members
            .iter()
            .filter(|node| scenario.behaviour(**node) == Behaviour::Correct)
            .count() as u64;
        assert!(
            report.epochs_entered >= correct_members,
            "seed {seed}: every correct member of the new set entered it ({report:?})"
        );
        assert!(report.decided > 4, "seed {seed}: decided past the boundary");
        switched += 1;
    }
    eprintln!("{switched} seeds changed sets safely and stayed live");
}
