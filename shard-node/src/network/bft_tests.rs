//! Group BFT in a network of 24 nodes: members stopped, members lying, and what the upper chain
//! ends up holding.

use std::time::Duration;

use upper_chain::{EmbeddedChain, UpperChain};

use crate::bft::GroupBft;

use super::{
    tests::{COUNTER, batch_moves, finalized, network, players, reference, reference_root},
    *,
};

const NODES: usize = 24;
const INTERVAL: u64 = 2;
/// Time between two batches.
const TICK: Duration = Duration::from_millis(100);

struct Run {
    network: ShardNetwork,
    chain: Arc<EmbeddedChain>,
    players: Vec<primitives::AccountKey>,
    bodies: Vec<BlockBody>,
    /// The group holding the counter contract: every move writes to it.
    group: Group,
    _dir: tempfile::TempDir,
}

impl Run {
    fn new() -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut network, chain) = network(NODES, dir.path());
        network.set_root_commit_interval(INTERVAL);
        let group = network.groups.group_of(&COUNTER);
        Run {
            network,
            chain,
            players: players(6),
            bodies: Vec::new(),
            group,
            _dir: dir,
        }
    }

    /// Executes the next batch, `TICK` after the last.
    fn batch(&mut self) {
        let number = self.bodies.len() as u64 + 1;
        let body = batch_moves(&self.players, number);
        let now = self.network.now() + TICK;
        self.network
            .execute_batch_at(
                now,
                &finalized(number, std::slice::from_ref(&body)),
                std::slice::from_ref(&body),
            )
            .expect("executes");
        self.bodies.push(body);
    }

    /// Lets time pass in view-timeout steps until the group's root of `batch` is on the chain,
    /// or `budget` has passed; returns whether it got there.
    fn wait_for(&mut self, batch: u64, budget: Duration) -> bool {
        let deadline = self.network.now() + budget;
        while self.network.now() < deadline {
            if self.on_chain().is_some_and(|root| root.batch >= batch) {
                return true;
            }
            let now = self.network.now() + Duration::from_millis(250);
            self.network.advance(now).expect("advances");
        }
        self.on_chain().is_some_and(|root| root.batch >= batch)
    }

    fn on_chain(&self) -> Option<GroupRootCommitment> {
        self.chain.group_root(&self.group.id).expect("reads")
    }

    /// The root the group must certify now: that of its addresses after every batch so far,
    /// executed by one node holding everything.
    fn expected_root(&mut self) -> B256 {
        let state = reference(&self.bodies);
        reference_root(&state, &mut self.network, &self.group.id)
    }

    fn member(&self, index: usize) -> NodeId {
        self.group.members[index]
    }
}

#[test]
fn twenty_four_nodes_with_two_members_of_a_group_stopped_still_certify_its_roots() {
    let mut run = Run::new();
    assert_eq!(run.network.ids.len(), NODES);
    // The primary of view 0 and another member stop.
    let (primary, other) = (run.member(0), run.member(5));
    run.network.stop_member(&primary).expect("a member");
    run.network.stop_member(&other).expect("a member");
    run.batch();
    run.batch();
    assert!(
        run.on_chain().is_none(),
        "the primary is down: a view change is needed first"
    );
    assert!(
        run.wait_for(2, Duration::from_secs(30)),
        "certified after a view change"
    );
    let expected = run.expected_root();
    assert_eq!(run.on_chain().map(|root| root.root), Some(expected));
    // The next rounds go through the new primary at once.
    run.batch();
    run.batch();
    assert_eq!(run.on_chain().map(|root| root.batch), Some(4));
    assert_eq!(
        run.on_chain().map(|root| root.root),
        Some(run.expected_root())
    );
    // Every group touched with at most two members stopped certified too.
    assert!(run.network.last_group_roots().len() > 1);
    for commitment in run.network.last_group_roots() {
        let on_chain = run.chain.group_root(&commitment.group).expect("reads");
        assert_eq!(on_chain.as_ref(), Some(commitment));
    }
    // The stopped members come back and catch up by the group's state transfer.
    run.network.resume_member(&primary).expect("stopped");
    run.network.resume_member(&other).expect("stopped");
    run.batch();
    run.batch();
    assert!(run.wait_for(6, Duration::from_secs(60)));
    assert_eq!(
        run.on_chain().map(|root| root.root),
        Some(run.expected_root())
    );
    // The six certified batch 6 without the two; those learn the decisions they missed by
    // state transfer, which a replica asks for when its timer finds it behind.
    let all_caught_up = |network: &ShardNetwork| {
        network
            .cores(&run.group.id)
            .is_some_and(|cores| cores.values().all(|core| core.last_certified() == 6))
    };
    let deadline = run.network.now() + Duration::from_secs(60);
    while !all_caught_up(&run.network) && run.network.now() < deadline {
        let now = run.network.now() + Duration::from_millis(250);
        run.network.advance(now).expect("advances");
    }
    let cores = run
        .network
        .cores(&run.group.id)
        .expect("the group has cores");
    assert!(
        cores.values().all(|core| core.last_certified() == 6),
        "every member, the returned ones too, saw batch 6 certified: {:?}",
        cores
            .values()
            .map(GroupBft::last_certified)
            .collect::<Vec<_>>()
    );
}

#[test]
fn three_members_stopped_stall_their_group_without_a_wrong_root_and_it_resumes_when_they_return() {
    let mut run = Run::new();
    run.batch();
    run.batch();
    assert_eq!(run.on_chain().map(|root| root.batch), Some(2));
    let stopped = [run.member(1), run.member(4), run.member(7)];
    for id in &stopped {
        run.network.stop_member(id).expect("a member");
    }
    run.batch();
    run.batch();
    // However long the five others wait, nothing of batch 4 is certified.
    assert!(
        !run.wait_for(4, Duration::from_secs(120)),
        "no quorum without the three"
    );
    assert_eq!(run.on_chain().map(|root| root.batch), Some(2));
    let certified = run.network.certified_root(&run.group.id).cloned();
    assert_eq!(certified.map(|root| root.batch), Some(2));
    let stats = run.network.group_stats(&run.group.id);
    assert!(
        stats.values().any(|stats| stats.certified == 1),
        "only batch 2 certified"
    );
    // They return: the group certifies batch 4's root, the right one.
    for id in &stopped {
        run.network.resume_member(id).expect("stopped");
    }
    assert!(
        run.wait_for(4, Duration::from_secs(300)),
        "the group resumed"
    );
    assert_eq!(
        run.on_chain().map(|root| root.root),
        Some(run.expected_root())
    );
    run.batch();
    run.batch();
    assert!(run.wait_for(6, Duration::from_secs(60)));
    assert_eq!(
        run.on_chain().map(|root| root.root),
        Some(run.expected_root())
    );
}

#[test]
fn a_byzantine_member_computing_a_wrong_root_cannot_get_it_certified() {
    let mut run = Run::new();
    // The primary of view 0 vouches for a root its store did not compute.
    let liar = run.member(0);
    run.network.lying.insert(liar);
    run.batch();
    run.batch();
    assert!(
        run.on_chain().is_none(),
        "the wrong proposal gathers no quorum"
    );
    let stats = run.network.group_stats(&run.group.id);
    for (id, stats) in &stats {
        if *id != liar {
            assert_eq!(stats.roots_refused, 1, "{id} refused the liar's root");
        }
    }
    assert!(
        run.wait_for(2, Duration::from_secs(30)),
        "an honest primary takes over"
    );
    assert_eq!(
        run.on_chain().map(|root| root.root),
        Some(run.expected_root())
    );
    // While the liar is merely a backup, its refusal changes nothing.
    run.batch();
    run.batch();
    assert_eq!(run.on_chain().map(|root| root.batch), Some(4));
    assert_eq!(
        run.on_chain().map(|root| root.root),
        Some(run.expected_root())
    );
    let liar_stats = run.network.group_stats(&run.group.id)[&liar];
    assert!(
        liar_stats.certified_not_own >= 1,
        "the liar sees the honest root certified"
    );
    // The certificate on the chain is a commit certificate of the group's quorum.
    let commitment = run.on_chain().expect("committed");
    assert_ne!(commitment.root, primitives::keccak256(commitment.root));
    assert_eq!(run.network.certified_root(&run.group.id), Some(&commitment));
}

#[test]
fn a_chain_refuses_a_root_whose_certificate_is_not_the_round_s() {
    let mut run = Run::new();
    run.batch();
    run.batch();
    let commitment = run.on_chain().expect("committed");
    // Take a member's core's certificate of a later round and pretend it certifies another root.
    let cores = run.network.cores(&run.group.id).expect("cores");
    let replica = cores.values().next().expect("a member").replica();
    let sequence = replica.last_committed();
    let view = replica.view();
    let forged = GroupRootCommitment {
        batch: commitment.batch + INTERVAL,
        root: B256::repeat_byte(0xee),
        ..commitment.clone()
    };
    let members: Vec<NodeId> = run.group.members.to_vec();
    let secrets: Vec<(usize, primitives::bls::BlsSignature)> = members
        .iter()
        .take(5)
        .enumerate()
        .map(|(index, id)| {
            let node = &run.network.members[id].node;
            (
                index,
                node.bls().sign(&forged.commit_message(view, sequence)),
            )
        })
        .collect();
    // Five of eight is not a quorum of the group.
    let certificate = primitives::bls::Certificate::aggregate(&secrets).expect("aggregates");
    let refused = run.chain.commit_group_root_decided(
        forged.clone(),
        upper_chain::GroupDecision { view, sequence },
        &members,
        &certificate,
    );
    assert!(matches!(
        refused,
        Err(upper_chain::ChainError::BadCertificate(_))
    ));
    assert_eq!(run.on_chain(), Some(commitment));
}

#[test]
fn an_unreachable_member_is_evicted_on_the_upper_chain_and_the_next_epochs_groups_exclude_it() {
    use crate::bft::{EVICTION_SILENT_ROUNDS, EvictionEvidence};
    use primitives::Decode;
    use upper_chain::DepartureKind;

    let mut run = Run::new();
    let epoch = run.network.snapshot().epoch;
    let unreachable = run.member(3);
    assert!(
        run.chain
            .registry_snapshot(epoch + 1)
            .expect("reads")
            .group_of(&COUNTER)
            .contains(&unreachable),
        "a member of the counter's group until evicted"
    );
    run.network.stop_member(&unreachable).expect("a member");
    // Every batch writes the counter, so its group has a round at every commit batch.
    for _ in 0..INTERVAL * u64::from(EVICTION_SILENT_ROUNDS) {
        run.batch();
    }
    let departure = run
        .chain
        .departure(&unreachable)
        .expect("reads")
        .expect("evicted on the upper chain");
    assert_eq!(departure.kind, DepartureKind::Eviction);
    assert_eq!(departure.epoch, epoch + 1);
    let evidence = EvictionEvidence::from_bytes(&departure.evidence).expect("decodes");
    assert_eq!(evidence.epoch, epoch);
    assert_eq!(evidence.silent_rounds, EVICTION_SILENT_ROUNDS);
    // Recorded once, whichever of its groups got there first.
    assert_eq!(run.network.evictions(), std::slice::from_ref(&departure));
    // Nobody else was evicted, and the group kept certifying the right roots.
    for id in run.network.ids.clone() {
        if id != unreachable {
            assert_eq!(run.chain.departure(&id).expect("reads"), None, "{id}");
        }
    }
    assert_eq!(
        run.on_chain().map(|root| root.batch),
        Some(INTERVAL * u64::from(EVICTION_SILENT_ROUNDS))
    );
    assert_eq!(
        run.on_chain().map(|root| root.root),
        Some(run.expected_root())
    );
    // This epoch's groups keep it; the next epoch's exclude it and are still full.
    let now = run.chain.registry_snapshot(epoch).expect("reads");
    assert!(now.group_of(&COUNTER).contains(&unreachable));
    let next = run.chain.registry_snapshot(epoch + 1).expect("reads");
    let next_group = next.group_of(&COUNTER);
    assert!(!next_group.contains(&unreachable));
    assert_eq!(next_group.len(), run.group.members.len());
    assert!(next.ids().iter().all(|id| *id != unreachable));

    // The epoch turns: the evicted node leaves the network, its place in the counter's group
    // is taken by the next nearest node, handed the group's accounts, and the group goes on.
    run.chain.advance_epoch();
    let change = run
        .network
        .enter_epoch()
        .expect("switches at a commit batch")
        .expect("a new epoch");
    assert_eq!(change.departed, vec![unreachable]);
    assert!(change.joined.is_empty());
    assert!(run.network.node_status(&unreachable).is_none());
    run.group = run.network.groups.group_of(&COUNTER);
    let mut expected_members = next_group.clone();
    expected_members.sort();
    assert_eq!(run.group.members.to_vec(), expected_members);
    let newcomer = *next_group
        .iter()
        .find(|id| !now.group_of(&COUNTER).contains(id))
        .expect("someone took its place");
    assert!(change.synced.get(&newcomer).is_some_and(|count| *count > 0));
    let before = INTERVAL * u64::from(EVICTION_SILENT_ROUNDS);
    run.batch();
    run.batch();
    let certified = run.on_chain().expect("the new group certified");
    assert_eq!((certified.epoch, certified.batch), (epoch + 1, before + 2));
    assert_eq!(certified.root, run.expected_root());
    let stats = run.network.group_stats(&run.group.id);
    assert_eq!(
        stats[&newcomer].certified_not_own, 0,
        "the newcomer holds the group's state"
    );
}

#[test]
fn every_member_that_commits_a_round_is_credited_with_it_not_only_the_first_certificate_s() {
    let mut run = Run::new();
    for _ in 0..4 {
        run.batch();
    }
    assert!(run.wait_for(4, Duration::from_secs(30)), "certified");
    // Let every member's copy of the last round arrive.
    let later = run.network.now() + Duration::from_millis(250);
    run.network.advance(later).expect("advances");
    let mut rounds: BTreeMap<NodeId, u64> = BTreeMap::new();
    for service in run.network.take_service(u64::MAX).values() {
        let group = &service.groups[&run.group.id];
        for (id, count) in group.members.iter().zip(&group.rounds) {
            *rounds.entry(*id).or_default() += count;
        }
    }
    // Two rounds (every second batch); a certificate carries a quorum of 6, yet all 8
    // members took part in both.
    assert_eq!(rounds.len(), GROUP_SIZE);
    assert!(rounds.values().all(|count| *count == 2), "{rounds:?}");
}
