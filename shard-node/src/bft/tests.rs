//! One group's 8 cores in memory: the normal case, refusals that change nothing, and a primary
//! proposing a root the others did not compute.

use std::collections::BTreeSet;

use consensus::{PrePrepare, Validator, Vote, constants::VIEW_TIMEOUT_US};
use std::time::Duration;

use primitives::{AccountKey, Address, bls::BlsSecretKey};

use super::*;

const EPOCH: u64 = 3;
const GROUP: B256 = B256::repeat_byte(0x47);
const INTERVAL: u64 = 10;

/// A group of 8 in ID order, with their keys.
fn members() -> Vec<(NodeId, ReplicaKeys)> {
    let mut members: Vec<(NodeId, ReplicaKeys)> = (0..8u8)
        .map(|index| {
            let operator = AccountKey::from_seed(0x6000 + u64::from(index));
            let keys = ReplicaKeys {
                bls: BlsSecretKey::from_seed(&[index + 1; 32]),
                operator,
            };
            (NodeId(keys.operator.address()), keys)
        })
        .collect();
    members.sort_by_key(|(id, _)| *id);
    members
}

struct Group {
    ids: Vec<NodeId>,
    secrets: Vec<BlsSecretKey>,
    operators: Vec<AccountKey>,
    cores: Vec<GroupBft>,
    now: Instant,
    down: BTreeSet<usize>,
    certified: Vec<(usize, GroupRootCommitment, GroupDecision, Certificate)>,
    /// Evictions by the member that gathered the quorum.
    evictions: Vec<(usize, Eviction)>,
    keys: Vec<primitives::bls::BlsPublicKey>,
}

impl Group {
    fn new() -> Group {
        let members = members();
        let set = ValidatorSet::for_epoch(
            members
                .iter()
                .map(|(id, keys)| Validator {
                    id: *id,
                    key: keys.bls.public_key(),
                })
                .collect(),
            EPOCH,
            0,
            None,
        );
        let config = GroupConfig {
            epoch: EPOCH,
            group: GROUP,
            commit_interval: INTERVAL,
            replica: ReplicaConfig::default(),
        };
        let cores = members
            .iter()
            .enumerate()
            .map(|(index, (_, keys))| GroupBft::new(config, set.clone(), index, keys.clone()))
            .collect();
        Group {
            ids: members.iter().map(|(id, _)| *id).collect(),
            secrets: members.iter().map(|(_, keys)| keys.bls.clone()).collect(),
            operators: members
                .iter()
                .map(|(_, keys)| keys.operator.clone())
                .collect(),
            keys: set.keys().to_vec(),
            cores,
            now: Instant::ZERO,
            down: BTreeSet::new(),
            certified: Vec::new(),
            evictions: Vec::new(),
        }
    }

    fn index(&self, id: &NodeId) -> usize {
        self.ids
            .iter()
            .position(|other| other == id)
            .expect("a member")
    }

    /// Gives every member its root, `roots[i]` to member `i`.
    fn roots(&mut self, batch: u64, roots: &[B256]) {
        for (core, root) in self.cores.iter_mut().zip(roots) {
            core.step(
                self.now,
                Origin::Local,
                GroupInput::Root { batch, root: *root },
            )
            .expect("own root taken");
        }
        self.deliver();
    }

    fn deliver(&mut self) {
        let mut queue: VecDeque<(usize, Transmit)> = VecDeque::new();
        loop {
            for (index, core) in self.cores.iter_mut().enumerate() {
                while let Some(transmit) = core.poll_transmit(self.now) {
                    if !self.down.contains(&index) {
                        queue.push_back((index, transmit));
                    }
                }
                while let Some(event) = core.poll_event() {
                    match event {
                        GroupEvent::Certified {
                            commitment,
                            decision,
                            certificate,
                        } => self
                            .certified
                            .push((index, commitment, decision, certificate)),
                        GroupEvent::Evict(eviction) => self.evictions.push((index, eviction)),
                        _ => {}
                    }
                }
            }
            let Some((from, transmit)) = queue.pop_front() else {
                return;
            };
            let to = self.index(&transmit.to);
            if self.down.contains(&to) {
                continue;
            }
            let _ = self.cores[to].step(
                self.now,
                Origin::Peer(self.ids[from]),
                GroupInput::Message(transmit.bytes),
            );
        }
    }

    /// Lets `duration` pass and fires every timer due.
    fn pass(&mut self, duration: Duration) {
        self.now += duration;
        for (index, core) in self.cores.iter_mut().enumerate() {
            if !self.down.contains(&index)
                && core
                    .poll_timeout()
                    .is_some_and(|deadline| deadline <= self.now)
            {
                core.handle_timeout(self.now);
            }
        }
        self.deliver();
    }

    fn envelope(&self, message: &Message<GroupRoot>) -> Vec<u8> {
        GroupMessage {
            epoch: EPOCH,
            group: GROUP,
            kind: GroupPayload::Consensus,
            payload: message.to_bytes(),
        }
        .to_bytes()
    }

    fn value(batch: u64, root: B256) -> GroupRoot {
        GroupRoot(GroupRootCommitment {
            epoch: EPOCH,
            group: GROUP,
            batch,
            root,
        })
    }
}

/// Feeds each case to `core` and checks it is refused with its error and changes nothing: no
/// state, no transmit, no event, one more refusal counted.
fn assert_refused(
    core: &mut GroupBft,
    now: Instant,
    cases: Vec<(&str, NodeId, Vec<u8>, GroupError)>,
) {
    let before = core.fingerprint();
    let refused_before = core.stats().messages_refused;
    let count = cases.len() as u64;
    for (what, sender, bytes, expected) in cases {
        let result = core.step(now, Origin::Peer(sender), GroupInput::Message(bytes));
        assert_eq!(result, Err(expected), "{what}");
        assert_eq!(core.fingerprint(), before, "{what} changed nothing");
        assert!(core.poll_transmit(now).is_none(), "{what}");
        assert!(core.poll_event().is_none(), "{what}");
    }
    assert_eq!(core.stats().messages_refused, refused_before + count);
}

fn root(byte: u8) -> B256 {
    B256::repeat_byte(byte)
}

#[test]
fn a_group_certifies_the_root_all_members_computed_with_a_certificate_the_chain_checks() {
    let mut group = Group::new();
    group.roots(10, &[root(1); 8]);
    assert_eq!(
        group.certified.len(),
        8,
        "every member sees the certificate"
    );
    for (_, commitment, decision, certificate) in &group.certified {
        assert_eq!(commitment.root, root(1));
        assert_eq!(commitment.batch, 10);
        certificate
            .verify(
                &commitment.commit_message(decision.view, decision.sequence),
                &group.keys,
                consensus::quorum(8),
            )
            .expect("a quorum of the group signed the commit");
        assert!(certificate.signers.count() >= 6);
    }
    group.roots(20, &[root(2); 8]);
    assert!(group.cores.iter().all(|core| core.last_certified() == 20));
    assert!(group.cores.iter().all(|core| core.stats().certified == 2));
}

#[test]
fn a_primary_proposing_a_root_others_did_not_compute_is_refused_and_replaced_by_a_view_change() {
    let mut group = Group::new();
    // Member 0, the primary of view 0, computed a wrong root.
    let mut roots = [root(1); 8];
    roots[0] = root(0xee);
    group.roots(10, &roots);
    assert!(group.certified.is_empty(), "nothing certified in view 0");
    for core in &group.cores[1..] {
        assert_eq!(
            core.stats().roots_refused,
            1,
            "each honest member refused it"
        );
    }
    // The honest members' view timers fire; the next primary proposes its own root.
    for _ in 0..10 {
        group.pass(Duration::from_micros(VIEW_TIMEOUT_US));
    }
    assert!(
        !group.certified.is_empty(),
        "the group certified after a view change"
    );
    for (_, commitment, decision, _) in &group.certified {
        assert_eq!(commitment.root, root(1), "never the wrong root");
        assert!(decision.view >= 1);
    }
    // The liar itself sees the honest root certified, which is not its own.
    assert_eq!(group.cores[0].stats().certified_not_own, 1);
}

#[test]
fn bad_or_stale_group_messages_are_refused_with_typed_errors_and_change_nothing() {
    let mut group = Group::new();
    group.roots(10, &[root(1); 8]);
    group.roots(20, &[root(2); 8]);
    let target = 3;
    let primary = group.operators[0].clone();
    let view = group.cores[target].view();
    let sequence = group.cores[target].replica().last_committed() + 1;
    let from = group.ids[0];

    let cases: Vec<(&str, NodeId, Vec<u8>, GroupError)> = vec![
        (
            "malformed bytes",
            from,
            vec![1, 2, 3],
            GroupError::Decode(DecodeError::UnexpectedEnd {
                needed: 8,
                remaining: 2,
            }),
        ),
        (
            "wrong epoch",
            from,
            GroupMessage {
                epoch: EPOCH - 1,
                group: GROUP,
                kind: GroupPayload::Consensus,
                payload: Vec::new(),
            }
            .to_bytes(),
            GroupError::WrongEpoch {
                got: EPOCH - 1,
                expected: EPOCH,
            },
        ),
        (
            "wrong group",
            from,
            GroupMessage {
                epoch: EPOCH,
                group: root(9),
                kind: GroupPayload::Consensus,
                payload: Vec::new(),
            }
            .to_bytes(),
            GroupError::WrongGroup {
                got: root(9),
                expected: GROUP,
            },
        ),
        (
            "unknown sender",
            NodeId(Address::repeat_byte(0x99)),
            group.envelope(&Message::Fetch { from: 1 }),
            GroupError::NotMember(NodeId(Address::repeat_byte(0x99))),
        ),
        (
            "stale batch",
            from,
            group.envelope(&Message::PrePrepare(PrePrepare::new(
                &primary,
                view,
                sequence,
                Group::value(20, root(2)),
            ))),
            GroupError::StaleBatch {
                batch: 20,
                certified: 20,
            },
        ),
        (
            "not a commit batch",
            from,
            group.envelope(&Message::PrePrepare(PrePrepare::new(
                &primary,
                view,
                sequence,
                Group::value(25, root(3)),
            ))),
            GroupError::WrongBatch {
                batch: 25,
                why: "not a batch at which roots are certified",
            },
        ),
        (
            "too far ahead",
            from,
            group.envelope(&Message::PrePrepare(PrePrepare::new(
                &primary,
                view,
                sequence,
                Group::value(10 * INTERVAL * BATCHES_AHEAD_INTERVALS_MAX, root(3)),
            ))),
            GroupError::WrongBatch {
                batch: 10 * INTERVAL * BATCHES_AHEAD_INTERVALS_MAX,
                why: "too far ahead of this member",
            },
        ),
        (
            "a value of another epoch",
            from,
            group.envelope(&Message::PrePrepare(PrePrepare::new(
                &primary,
                view,
                sequence,
                GroupRoot(GroupRootCommitment {
                    epoch: EPOCH + 1,
                    group: GROUP,
                    batch: 30,
                    root: root(3),
                }),
            ))),
            GroupError::WrongEpoch {
                got: EPOCH + 1,
                expected: EPOCH,
            },
        ),
        (
            "badly signed pre-prepare",
            from,
            group.envelope(&Message::PrePrepare(PrePrepare::new(
                &group.operators[5],
                view,
                sequence,
                Group::value(30, root(3)),
            ))),
            GroupError::BadSignature,
        ),
        (
            "badly signed prepare",
            group.ids[1],
            group.envelope(&Message::Prepare(Vote::prepare(
                &group.operators[5],
                view,
                sequence,
                Group::value(30, root(3)).digest(),
                1,
            ))),
            GroupError::BadSignature,
        ),
        (
            "badly signed commit",
            group.ids[1],
            group.envelope(&Message::Commit(Vote::commit(
                &group.secrets[5],
                view,
                sequence,
                Group::value(30, root(3)).digest(),
                1,
            ))),
            GroupError::BadSignature,
        ),
        (
            "a vote in another member's name",
            group.ids[1],
            group.envelope(&Message::Prepare(Vote::prepare(
                &group.operators[2],
                view,
                sequence,
                Group::value(30, root(3)).digest(),
                2,
            ))),
            GroupError::Replica(RejectReason::WrongSender {
                from: group.ids[1],
                claimed: 2,
            }),
        ),
        (
            "a duplicate vote",
            group.ids[1],
            group.envelope(&Message::Commit(Vote::commit(
                &group.secrets[1],
                view,
                sequence - 1,
                Group::value(20, root(2)).digest(),
                1,
            ))),
            GroupError::Replica(RejectReason::Duplicate {
                what: "commit",
                sequence: sequence - 1,
            }),
        ),
    ];
    assert_refused(&mut group.cores[target], group.now, cases);
    // A peer cannot give a member its own root; the owner cannot send as a peer.
    assert_eq!(
        group.cores[target].step(
            group.now,
            Origin::Peer(from),
            GroupInput::Root {
                batch: 30,
                root: root(3)
            }
        ),
        Err(GroupError::WrongOrigin { what: "own root" })
    );
    // And the group goes on as before.
    group.roots(30, &[root(3); 8]);
    assert!(group.cores.iter().all(|core| core.last_certified() == 30));
}

#[test]
fn with_two_members_down_the_group_certifies_and_with_three_it_waits_for_them() {
    let mut group = Group::new();
    // The primary of view 0 and one more are down: a view change, then a certificate.
    group.down = BTreeSet::from([0, 5]);
    group.roots(10, &[root(1); 8]);
    for _ in 0..10 {
        group.pass(Duration::from_micros(VIEW_TIMEOUT_US));
    }
    assert!(
        group
            .certified
            .iter()
            .any(|(_, commitment, ..)| commitment.batch == 10 && commitment.root == root(1))
    );
    // Three down: nothing is certified however long the others wait. Members 0 and 5, down
    // while batch 10 was decided, come back and may learn that decision now by state transfer:
    // that is the certificate the six made, not a new one.
    group.down = BTreeSet::from([1, 2, 3]);
    let certified = group.certified.len();
    group.roots(20, &[root(2); 8]);
    for _ in 0..40 {
        group.pass(Duration::from_micros(4 * VIEW_TIMEOUT_US));
    }
    for (index, commitment, decision, certificate) in &group.certified[certified..] {
        assert_eq!(
            (commitment.batch, commitment.root),
            (10, root(1)),
            "no quorum, no certificate: member {index} saw one in view {}",
            decision.view
        );
        assert!(
            [0, 5].contains(index),
            "only a member that missed it learns it late"
        );
        certificate
            .verify(
                &commitment.commit_message(decision.view, decision.sequence),
                &group.keys,
                consensus::quorum(8),
            )
            .expect("the six's certificate");
    }
    assert!(
        group
            .cores
            .iter()
            .all(|core| core.last_certified() <= 10 && core.stats().certified <= 1),
        "no member saw batch 20 certified"
    );
    // They come back: the group certifies the root everyone computed.
    group.down.clear();
    for _ in 0..200 {
        group.pass(Duration::from_micros(4 * VIEW_TIMEOUT_US));
        if group
            .certified
            .iter()
            .any(|(_, commitment, ..)| commitment.batch == 20)
        {
            break;
        }
    }
    let batch_20: Vec<_> = group
        .certified
        .iter()
        .filter(|(_, commitment, ..)| commitment.batch == 20)
        .collect();
    assert!(!batch_20.is_empty(), "the group resumed");
    assert!(
        batch_20
            .iter()
            .all(|(_, commitment, ..)| commitment.root == root(2))
    );
}

/// Rounds `first..first + count` (in commit intervals), every member computing the same root.
fn rounds(group: &mut Group, first: u64, count: u64) {
    for round in first..first + count {
        group.roots(round * INTERVAL, &[root(round as u8); 8]);
    }
}

#[test]
fn a_member_silent_for_six_rounds_is_voted_out_by_a_quorum_whose_certificate_the_chain_checks() {
    let mut group = Group::new();
    let silent = 3;
    group.down.insert(silent);
    rounds(&mut group, 1, u64::from(EVICTION_SILENT_ROUNDS) - 1);
    assert!(group.evictions.is_empty(), "not before the sixth round");
    assert_eq!(
        group.cores[0].silent_rounds(&group.ids[silent]),
        Some(EVICTION_SILENT_ROUNDS - 1)
    );
    assert_eq!(group.cores[0].silent_rounds(&group.ids[1]), Some(0));
    rounds(&mut group, u64::from(EVICTION_SILENT_ROUNDS), 1);

    // Every running member gathered the quorum and reports the same eviction once.
    let reporters: BTreeSet<usize> = group.evictions.iter().map(|(index, _)| *index).collect();
    assert_eq!(reporters, (0..8).filter(|index| *index != silent).collect());
    let (_, eviction) = &group.evictions[0];
    assert_eq!(eviction.departure.node, group.ids[silent]);
    assert_eq!(
        eviction.departure.kind,
        upper_chain::DepartureKind::Eviction
    );
    assert_eq!(eviction.departure.epoch, EPOCH + 1);
    let evidence =
        EvictionEvidence::from_bytes(&eviction.departure.evidence).expect("evidence decodes");
    assert_eq!(
        evidence,
        EvictionEvidence {
            group: GROUP,
            epoch: EPOCH,
            silent_rounds: EVICTION_SILENT_ROUNDS,
        }
    );
    assert!(!eviction.certificate.signers.contains(silent));
    assert!(eviction.certificate.signers.count() >= 6);
    eviction
        .certificate
        .verify(&eviction.departure.signing_bytes(), &group.keys, 6)
        .expect("the quorum's certificate verifies over the departure");
    // Certification went on meanwhile, and more rounds report nothing again.
    assert!(group.cores[0].last_certified() >= 5 * INTERVAL);
    let reported = group.evictions.len();
    rounds(&mut group, u64::from(EVICTION_SILENT_ROUNDS) + 1, 3);
    assert_eq!(group.evictions.len(), reported);
}

#[test]
fn three_silent_members_or_one_heard_again_in_time_are_not_evicted() {
    // Three down: the five left are no quorum, so nobody is voted out.
    let mut group = Group::new();
    group.down.extend([1, 4, 6]);
    rounds(&mut group, 1, 2 * u64::from(EVICTION_SILENT_ROUNDS));
    assert!(group.evictions.is_empty());

    // One down for five rounds, then back: its silence starts over.
    let mut group = Group::new();
    group.down.insert(2);
    rounds(&mut group, 1, u64::from(EVICTION_SILENT_ROUNDS) - 1);
    group.down.clear();
    rounds(&mut group, u64::from(EVICTION_SILENT_ROUNDS), 4);
    assert!(group.evictions.is_empty());
    assert!(
        group
            .cores
            .iter()
            .all(|core| core.silent_rounds(&group.ids[2]) == Some(0))
    );
}

#[test]
fn bad_eviction_votes_are_refused_with_typed_errors_and_change_nothing() {
    let mut group = Group::new();
    rounds(&mut group, 1, 2);
    let target = 0;
    let evidence = EvictionEvidence {
        group: GROUP,
        epoch: EPOCH,
        silent_rounds: EVICTION_SILENT_ROUNDS,
    };
    let vote_bytes = |voter: usize, offender: u16, departure_of: usize| {
        let departure = evidence.departure(group.ids[departure_of]);
        let vote = EvictionVote {
            offender,
            signature: group.secrets[voter].sign(&departure.signing_bytes()),
        };
        GroupMessage {
            epoch: EPOCH,
            group: GROUP,
            kind: GroupPayload::EvictionVote,
            payload: vote.to_bytes(),
        }
        .to_bytes()
    };
    let mut unknown_kind = vote_bytes(1, 5, 5);
    unknown_kind[1 + 8 + 32] = 9;
    let mut consensus_in_a_kind_byte = vote_bytes(1, 5, 5);
    consensus_in_a_kind_byte[1 + 8 + 32] = 0;
    let cases: Vec<(&str, NodeId, Vec<u8>, GroupError)> = vec![
        (
            "a vote signed by another member",
            group.ids[1],
            vote_bytes(2, 5, 5),
            GroupError::BadSignature,
        ),
        (
            "a vote over another member's departure",
            group.ids[1],
            vote_bytes(1, 5, 4),
            GroupError::BadSignature,
        ),
        (
            "a member voting itself out",
            group.ids[5],
            vote_bytes(5, 5, 5),
            GroupError::EvictionVote(VoteError::SelfEviction),
        ),
        (
            "an offender outside the group",
            group.ids[1],
            vote_bytes(1, 8, 5),
            GroupError::EvictionVote(VoteError::NoSuchMember {
                index: 8,
                members: 8,
            }),
        ),
        (
            "an unknown payload kind",
            group.ids[1],
            unknown_kind,
            GroupError::Decode(DecodeError::UnknownTag {
                what: "group payload",
                tag: 9,
            }),
        ),
        (
            "a consensus message in a version 2 envelope",
            group.ids[1],
            consensus_in_a_kind_byte,
            GroupError::Decode(DecodeError::Invalid {
                what: "group message",
                why: "a consensus message travels in a version 1 envelope",
            }),
        ),
        (
            "a vote from outside the group",
            NodeId(Address::repeat_byte(0x99)),
            vote_bytes(1, 5, 5),
            GroupError::NotMember(NodeId(Address::repeat_byte(0x99))),
        ),
    ];
    assert_refused(&mut group.cores[target], group.now, cases);
    // A well-formed vote is taken (it alone is no quorum).
    assert_eq!(
        group.cores[target].step(
            group.now,
            Origin::Peer(group.ids[1]),
            GroupInput::Message(vote_bytes(1, 5, 5))
        ),
        Ok(())
    );
    assert!(group.cores[target].poll_event().is_none());
}

#[test]
fn eviction_votes_lost_on_the_way_are_sent_again_until_a_quorum_holds_them() {
    let mut group = Group::new();
    let silent = 3;
    group.down.insert(silent);
    rounds(&mut group, 1, u64::from(EVICTION_SILENT_ROUNDS) - 1);
    // The round in which every member votes loses every message.
    group.down.extend(0..8);
    rounds(&mut group, u64::from(EVICTION_SILENT_ROUNDS), 1);
    assert!(group.evictions.is_empty(), "no vote arrived anywhere");
    // The next round's messages arrive: the votes go again, and the eviction goes through.
    group.down = BTreeSet::from([silent]);
    rounds(&mut group, u64::from(EVICTION_SILENT_ROUNDS) + 1, 1);
    let reporters: BTreeSet<usize> = group.evictions.iter().map(|(index, _)| *index).collect();
    assert_eq!(reporters, (0..8).filter(|index| *index != silent).collect());
    assert!(
        group
            .evictions
            .iter()
            .all(|(_, eviction)| eviction.departure.node == group.ids[silent])
    );
}
