//! Twenty-four shard nodes in one process whose group rounds travel over netstack: each node
//! has its own UDP socket on loopback and its own node key, registers that socket as its
//! endpoint on the upper chain, and hears only the nodes it shares an address state group with
//! over Noise-authenticated KCP sessions. Batches of cross-group moves execute, every touched
//! group certifies its root by BFT over those sessions, and the state equals a single-node
//! reference execution of the same batches. Then members of the group every move touches stop
//! and return: two stopped do not stop it; three stall it without a wrong root being
//! certified, and it resumes when they return.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant as WallClock},
};

use consensus::ReplicaConfig;
use execution::{AccountState, ExecutionEnv, InMemoryState, execute};
use primitives::{
    AccountAccess, AccountKey, Address, B256, Batch, BlockBody, BlockHeader, Bytes, DeclaredWrite,
    FinalizedBatch, NodeId, SignedTransaction, SlotAccess, SpaceAccessList, Transaction, U256,
    bls::{BlsSecretKey, Certificate},
    codec::Encode,
    time::Instant,
};
use shard_node::{
    ShardNetwork, ShardNode,
    transport::{
        group_peers,
        netstack::{GroupEndpoint, NetstackTransport, link_config},
    },
};
use upper_chain::{EmbeddedChain, GroupRootCommitment, UpperChain, group_id};

const NODES: u64 = 24;
const CHAIN_ID: u64 = 31;
/// Group roots are certified every second batch.
const INTERVAL: u64 = 2;
/// A contract every move of the store kind writes to: its group is touched by every batch.
const COUNTER: Address = Address::repeat_byte(0xc0);
const PLAYERS: u64 = 10;
const BALANCE: u64 = 1_000_000;
/// Longest a group may take to certify a round over loopback before the test gives up on it.
const ROUND_BUDGET: Duration = Duration::from_secs(60);

/// `SSTORE(CALLER, CALLDATALOAD(0))`.
fn counter_account() -> AccountState {
    AccountState {
        code: Bytes::from_static(&[0x60, 0x00, 0x35, 0x33, 0x55, 0x00]),
        ..AccountState::default()
    }
}

fn player_account() -> AccountState {
    AccountState {
        balance: U256::from(BALANCE),
        ..AccountState::default()
    }
}

fn node(index: u64) -> ShardNode {
    ShardNode::from_seed(7_000 + index)
}

fn slot_of(key: &AccountKey) -> B256 {
    B256::left_padding_from(key.address().as_slice())
}

/// The player stores `value` in its slot of the counter: read its account (another group's,
/// mostly, so its slice is shipped), write the counter's.
fn store(key: &AccountKey, nonce: u64, value: u64) -> SignedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to: COUNTER,
        value: U256::ZERO,
        data: Bytes::from(U256::from(value).to_be_bytes::<32>().to_vec()),
        gas_limit: 100_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(key.address()),
            AccountAccess {
                storage: vec![SlotAccess {
                    slot: slot_of(key),
                    write: Some(DeclaredWrite::Exact(U256::from(value))),
                }],
                ..AccountAccess::read(COUNTER)
            },
        ]),
    }
    .sign(key)
}

/// The player sends `value` to `to`: executed by the recipient's group, with the sender's slice
/// shipped by its own.
fn transfer(key: &AccountKey, nonce: u64, to: Address, value: u64) -> SignedTransaction {
    let amount = U256::from(value);
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to,
        value: amount,
        data: Bytes::new(),
        gas_limit: 21_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess {
                balance: Some(DeclaredWrite::Delta(DeclaredWrite::delta_between(
                    amount,
                    U256::ZERO,
                ))),
                ..AccountAccess::read(key.address())
            },
            AccountAccess {
                balance: Some(DeclaredWrite::Delta(DeclaredWrite::delta_between(
                    U256::ZERO,
                    amount,
                ))),
                ..AccountAccess::read(to)
            },
        ]),
    }
    .sign(key)
}

/// Batch `number` (from 1): every player stores a value and pays the next player.
fn batch_moves(players: &[AccountKey], number: u64) -> BlockBody {
    let mut moves = Vec::new();
    for (index, key) in players.iter().enumerate() {
        let nonce = 2 * (number - 1);
        moves.push(store(key, nonce, number * 100 + index as u64));
        let next = &players[(index + 1) % players.len()];
        moves.push(transfer(
            key,
            nonce + 1,
            next.address(),
            number + index as u64,
        ));
    }
    BlockBody { moves }
}

fn finalized(number: u64, body: &BlockBody) -> FinalizedBatch {
    let header = BlockHeader::seal(
        &AccountKey::from_seed(1),
        0,
        B256::ZERO,
        0,
        body,
        body.to_bytes().len() as u32,
    );
    let batch = Batch {
        number,
        parent: B256::ZERO,
        headers: vec![header],
    };
    let sequencer = BlsSecretKey::from_seed(&[1; 32]);
    FinalizedBatch {
        batch,
        sequence: number,
        view: 0,
        certificate: Certificate::aggregate(&[(0, sequencer.sign(b"test"))]).expect("one vote"),
    }
}

/// The whole state after `bodies`, executed move by move by one node holding everything.
fn reference(players: &[AccountKey], bodies: &[BlockBody]) -> InMemoryState {
    let mut state = InMemoryState::new();
    state.insert_account(COUNTER, counter_account());
    for key in players {
        state.insert_account(key.address(), player_account());
    }
    for (index, body) in bodies.iter().enumerate() {
        let env = ExecutionEnv {
            chain_id: CHAIN_ID,
            block_number: index as u64 + 1,
            timestamp: index as u64 + 1,
        };
        for signed in &body.moves {
            let verified = signed.clone().verify(CHAIN_ID).expect("signed well");
            let slice = state.slice(&verified.tx().access_list);
            let outcome = execute(&env, &verified, &slice).expect("the slice matches the list");
            state.apply(&outcome.diff);
        }
    }
    state
}

/// Twenty-four nodes, each on its own loopback socket, with their group rounds on netstack.
struct Net {
    network: ShardNetwork,
    chain: Arc<EmbeddedChain>,
    players: Vec<AccountKey>,
    bodies: Vec<BlockBody>,
    /// Where the nodes registered their group sockets.
    endpoints: BTreeMap<NodeId, SocketAddr>,
    started: WallClock,
    _dir: tempfile::TempDir,
    // Last: the sockets' tasks end with it, after the network that sends on them.
    _runtime: tokio::runtime::Runtime,
}

impl Net {
    fn new() -> Net {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let ids: Vec<NodeId> = (0..NODES).map(|index| node(index).id()).collect();
        let peers = group_peers(&ids);
        // Each node binds its own socket, admitting the nodes it shares a group with.
        let mut sockets = Vec::new();
        for index in 0..NODES {
            let node = node(index);
            let endpoint = runtime
                .block_on(GroupEndpoint::bind(
                    node.network_identity(),
                    SocketAddr::from(([127, 0, 0, 1], 0)),
                    link_config(),
                    peers[&node.id()].clone(),
                ))
                .expect("binds a loopback socket");
            sockets.push(endpoint);
        }
        // ... and registers it as its endpoint.
        let chain = Arc::new(EmbeddedChain::new(Vec::new()));
        for (index, socket) in sockets.iter().enumerate() {
            let (registration, signature) = node(index as u64).registration(
                socket.local_addr().to_string(),
                Address::ZERO,
                vec![],
            );
            chain
                .register_node(registration, &signature)
                .expect("registers");
        }
        chain.advance_epoch();
        let dir = tempfile::tempdir().expect("temporary directory");
        let nodes: Vec<ShardNode> = (0..NODES).map(node).collect();
        let mut network =
            ShardNetwork::new(chain.clone(), CHAIN_ID, nodes, dir.path()).expect("forms");
        network.set_root_commit_interval(INTERVAL);
        // Views change after a second without a commit (doubling up to four): a round of every
        // touched group, with its signature checks, fits well inside it on a loaded machine.
        network.set_replica_config(ReplicaConfig {
            view_timeout_us: 1_000_000,
            view_timeout_max_us: 4_000_000,
        });
        let players: Vec<AccountKey> = (0..PLAYERS)
            .map(|seed| AccountKey::from_seed(900 + seed))
            .collect();
        network
            .insert_genesis(COUNTER, counter_account())
            .expect("before the first batch");
        for key in &players {
            network
                .insert_genesis(key.address(), player_account())
                .expect("before the first batch");
        }
        // The directory is what the chain holds, not what the test bound.
        let endpoints = NetstackTransport::directory_of(network.snapshot());
        assert_eq!(endpoints.len(), NODES as usize);
        let transport =
            NetstackTransport::new(runtime.handle().clone(), sockets, endpoints.clone());
        network.set_transport(Box::new(transport));
        Net {
            network,
            chain,
            players,
            bodies: Vec::new(),
            endpoints,
            started: WallClock::now(),
            _dir: dir,
            _runtime: runtime,
        }
    }

    /// The group rounds' clock: real time since the network formed.
    fn now(&self) -> Instant {
        Instant::from_micros(self.started.elapsed().as_micros() as u64)
    }

    /// Executes the next batch now; every move of it succeeds.
    fn batch(&mut self) -> u64 {
        let number = self.bodies.len() as u64 + 1;
        let body = batch_moves(&self.players, number);
        let now = self.now();
        let executed = self
            .network
            .execute_batch_at(now, &finalized(number, &body), std::slice::from_ref(&body))
            .expect("executes");
        assert!(
            executed.outcomes.iter().all(|outcome| outcome.is_success()),
            "{:?}",
            executed.outcomes
        );
        self.bodies.push(body);
        number
    }

    /// Takes what arrives and fires what is due until `done` holds or `budget` has passed;
    /// returns whether `done` held.
    fn run_until(
        &mut self,
        budget: Duration,
        mut done: impl FnMut(&mut ShardNetwork) -> bool,
    ) -> bool {
        let deadline = WallClock::now() + budget;
        loop {
            let now = self.now();
            self.network.advance(now).expect("group rounds run");
            if done(&mut self.network) {
                return true;
            }
            if WallClock::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The groups holding an account the given batches' moves touch.
    fn touched(&mut self, bodies: std::ops::Range<usize>) -> BTreeSet<B256> {
        let addresses: BTreeSet<Address> = self.bodies[bodies]
            .iter()
            .flat_map(|body| &body.moves)
            .flat_map(|signed| {
                let list = &signed.tx.access_list;
                list.accounts()
                    .iter()
                    .map(|access| access.address)
                    .collect::<Vec<_>>()
            })
            .collect();
        addresses
            .iter()
            .map(|address| group_id(&self.network.group_of(address)))
            .collect()
    }

    /// The root of exactly `group`'s accounts after every batch so far, as one node holding
    /// everything computes it.
    fn expected_root(&mut self, group: &B256) -> B256 {
        let state = reference(&self.players, &self.bodies);
        let mut own = InMemoryState::new();
        for (address, account) in state.accounts() {
            if group_id(&self.network.group_of(address)) == *group {
                own.insert_account(*address, account.clone());
            }
        }
        own.authenticated_root()
    }

    fn certified(&self, group: &B256) -> Option<GroupRootCommitment> {
        self.network.certified_root(group).cloned()
    }

    fn on_chain(&self, group: &B256) -> Option<GroupRootCommitment> {
        self.chain
            .group_root(group)
            .expect("the embedded chain reads")
    }

    /// Waits until every group of `groups` certified `batch`; returns whether they did.
    fn wait_certified(&mut self, groups: &BTreeSet<B256>, batch: u64, budget: Duration) -> bool {
        self.run_until(budget, |network| {
            groups.iter().all(|group| {
                network
                    .certified_root(group)
                    .is_some_and(|root| root.batch >= batch)
            })
        })
    }

    /// Checks that each of `groups` certified `batch` with the reference root, and that the
    /// upper chain holds exactly that.
    fn assert_certified_roots(&mut self, groups: &BTreeSet<B256>, batch: u64) {
        for group in groups {
            let expected = self.expected_root(group);
            let certified = self.certified(group).expect("certified");
            assert_eq!(
                (certified.batch, certified.root),
                (batch, expected),
                "group {group}"
            );
            assert_eq!(self.on_chain(group), Some(certified), "group {group}");
        }
    }

    fn counter_group(&mut self) -> (B256, Arc<[NodeId]>) {
        let members = self.network.group_of(&COUNTER);
        (group_id(&members), members)
    }
}

/// Cross-group moves over four batches: every touched group certifies each commit batch's root
/// over netstack, and it is the reference execution's; every account's group holds the
/// reference state. Then two members of the counter's group (its first primary among them)
/// stop: the group still certifies the right roots; they return and the group goes on.
#[test]
fn twenty_four_nodes_over_netstack_certify_the_reference_roots_and_survive_two_stopped_members() {
    let mut net = Net::new();
    assert_eq!(net.network.snapshot().nodes.len(), NODES as usize);
    let (counter_group, members) = net.counter_group();
    // The moves cross groups: players are held by other groups than the counter, and payers by
    // other groups than their payees.
    let addresses: Vec<Address> = net.players.iter().map(AccountKey::address).collect();
    let player_groups: BTreeSet<B256> = addresses
        .iter()
        .map(|address| group_id(&net.network.group_of(address)))
        .collect();
    assert!(player_groups.len() > 2, "players spread over groups");
    assert!(player_groups.iter().any(|group| *group != counter_group));

    for commit in [2, 4] {
        net.batch();
        net.batch();
        let touched = net.touched(commit as usize - 2..commit as usize);
        assert!(touched.len() > 2, "cross-group batches touch many groups");
        assert!(
            net.wait_certified(&touched, commit, ROUND_BUDGET),
            "every touched group certified batch {commit}"
        );
        net.assert_certified_roots(&touched, commit);
    }
    // The nodes' state is the reference state, account by account and group by group.
    let reference = reference(&net.players, &net.bodies);
    for (address, account) in reference.accounts() {
        let (group, root) = net.network.group_root_of(address).expect("a quorum agrees");
        assert_eq!(root, net.expected_root(&group));
        assert_eq!(net.network.nonce(address), Ok(account.nonce));
    }
    for key in &net.players {
        assert_eq!(
            net.network.storage(&COUNTER, &slot_of(key)),
            Ok(reference.storage(&COUNTER, &slot_of(key)))
        );
    }
    // The rounds went over the sockets, and no one outside a group was let in.
    let stats = net.network.transport_stats();
    assert!(stats.messages_received > 0);
    assert_eq!(stats.peers_refused, 0);
    assert_eq!(net.network.unroutable_messages(), 0);
    assert_eq!(net.endpoints.len(), NODES as usize);

    // Two members of the counter's group stop, the primary of its first view among them.
    let stopped = [members[0], members[5]];
    for id in &stopped {
        net.network.stop_member(id).expect("a member");
    }
    let group = BTreeSet::from([counter_group]);
    for commit in [6, 8] {
        net.batch();
        net.batch();
        assert!(
            net.wait_certified(&group, commit, ROUND_BUDGET),
            "six members certify batch {commit}"
        );
        net.assert_certified_roots(&group, commit);
    }
    // They return; the group goes on with them.
    for id in &stopped {
        net.network.resume_member(id).expect("stopped");
    }
    net.batch();
    net.batch();
    assert!(net.wait_certified(&group, 10, ROUND_BUDGET));
    net.assert_certified_roots(&group, 10);
    // No member of any group ever saw a root certified other than the one it computed.
    for group in net.touched(0..net.bodies.len()) {
        for (id, stats) in net.network.group_stats(&group) {
            assert_eq!(stats.certified_not_own, 0, "member {id} of group {group}");
        }
    }
}

/// Three members of the counter's group stop: its rounds stall however long the other five
/// wait, and nothing but the last root certified before is ever on the chain; they return and
/// the group certifies the right root of the batches it missed.
#[test]
fn three_stopped_members_stall_a_group_over_netstack_without_a_wrong_root_and_it_resumes() {
    let mut net = Net::new();
    let (counter_group, members) = net.counter_group();
    let group = BTreeSet::from([counter_group]);
    net.batch();
    net.batch();
    assert!(net.wait_certified(&group, 2, ROUND_BUDGET));
    net.assert_certified_roots(&group, 2);

    let stopped = [members[1], members[4], members[7]];
    for id in &stopped {
        net.network.stop_member(id).expect("a member");
    }
    net.batch();
    net.batch();
    // Five of eight are not a quorum: through several view changes, nothing of batch 4.
    assert!(
        !net.wait_certified(&group, 4, Duration::from_secs(8)),
        "no quorum without the three"
    );
    let certified = net.certified(&counter_group).expect("batch 2");
    assert_eq!(certified.batch, 2);
    assert_eq!(net.on_chain(&counter_group), Some(certified));
    let views: u64 = net
        .network
        .group_stats(&counter_group)
        .values()
        .map(|stats| stats.views_entered)
        .sum();
    let refused: u64 = net
        .network
        .group_stats(&counter_group)
        .values()
        .map(|stats| stats.roots_refused + stats.certified_not_own)
        .sum();
    assert_eq!(refused, 0, "no member was offered or shown a wrong root");
    // They return: the group certifies batch 4's root, the right one, and goes on.
    for id in &stopped {
        net.network.resume_member(id).expect("stopped");
    }
    assert!(
        net.wait_certified(&group, 4, Duration::from_secs(120)),
        "the group resumed (views entered while stalled: {views})"
    );
    net.assert_certified_roots(&group, 4);
    net.batch();
    net.batch();
    assert!(net.wait_certified(&group, 6, ROUND_BUDGET));
    net.assert_certified_roots(&group, 6);
}

/// A member of the counter's group stops answering: after `EVICTION_SILENT_ROUNDS` rounds the
/// others vote it out over their sessions, a quorum's certificate records the eviction on the
/// upper chain, and the next epoch's groups exclude it, while its group certified the right
/// roots throughout.
#[test]
fn an_unreachable_member_is_evicted_over_netstack_and_the_next_epochs_groups_exclude_it() {
    use shard_node::bft::{EVICTION_SILENT_ROUNDS, EvictionEvidence};
    use upper_chain::DepartureKind;

    let mut net = Net::new();
    let epoch = net.network.snapshot().epoch;
    let (counter_group, members) = net.counter_group();
    let group = BTreeSet::from([counter_group]);
    let unreachable = members[3];
    net.network.stop_member(&unreachable).expect("a member");
    for round in 1..=u64::from(EVICTION_SILENT_ROUNDS) {
        net.batch();
        net.batch();
        assert!(
            net.wait_certified(&group, round * INTERVAL, ROUND_BUDGET),
            "seven members certify batch {}",
            round * INTERVAL
        );
        net.assert_certified_roots(&group, round * INTERVAL);
    }
    let chain = net.chain.clone();
    assert!(
        net.run_until(ROUND_BUDGET, |_| chain
            .departure(&unreachable)
            .expect("reads")
            .is_some()),
        "the eviction reached the upper chain"
    );
    let departure = chain
        .departure(&unreachable)
        .expect("reads")
        .expect("evicted");
    assert_eq!(departure.kind, DepartureKind::Eviction);
    assert_eq!(departure.epoch, epoch + 1);
    let evidence =
        <EvictionEvidence as primitives::Decode>::from_bytes(&departure.evidence).expect("decodes");
    assert_eq!(evidence.silent_rounds, EVICTION_SILENT_ROUNDS);
    assert_eq!(evidence.epoch, epoch);
    assert_eq!(net.network.evictions(), std::slice::from_ref(&departure));
    for id in members.iter().filter(|id| **id != unreachable) {
        assert_eq!(chain.departure(id).expect("reads"), None, "{id}");
    }
    let next = chain.registry_snapshot(epoch + 1).expect("reads");
    let next_group = next.group_of(&COUNTER);
    assert!(!next_group.contains(&unreachable));
    assert_eq!(next_group.len(), members.len());
    assert!(
        chain
            .registry_snapshot(epoch)
            .expect("reads")
            .group_of(&COUNTER)
            .contains(&unreachable),
        "it serves out the epoch it was evicted in"
    );

    // The epoch turns: the evicted node leaves, the next nearest node takes its place in the
    // counter's group with the group's accounts, its socket now admits its new peers, and the
    // new group certifies the reference roots over netstack.
    chain.advance_epoch();
    let mut change = None;
    assert!(
        net.run_until(ROUND_BUDGET, |network| {
            change = network.enter_epoch().ok().flatten();
            change.is_some()
        }),
        "the network enters the next epoch once its rounds are certified"
    );
    let change = change.expect("entered");
    assert_eq!(change.departed, vec![unreachable]);
    let (counter_group, members) = net.counter_group();
    assert!(!members.contains(&unreachable));
    let newcomer = *members
        .iter()
        .find(|id| !before_members(&chain, epoch).contains(id))
        .expect("someone took its place");
    assert!(change.synced.get(&newcomer).is_some_and(|count| *count > 0));
    let group = BTreeSet::from([counter_group]);
    let last = u64::from(EVICTION_SILENT_ROUNDS) * INTERVAL;
    net.batch();
    net.batch();
    assert!(
        net.wait_certified(&group, last + INTERVAL, ROUND_BUDGET),
        "the new group certifies over netstack"
    );
    net.assert_certified_roots(&group, last + INTERVAL);
    // The newcomer took part: it saw the round certified, with its own root.
    let stats = net.network.group_stats(&counter_group);
    assert_eq!(stats[&newcomer].certified, 1);
    assert_eq!(stats[&newcomer].certified_not_own, 0);
}

/// The counter's group in registry epoch `epoch`.
fn before_members(chain: &EmbeddedChain, epoch: u64) -> Vec<NodeId> {
    chain
        .registry_snapshot(epoch)
        .expect("reads")
        .group_of(&COUNTER)
}
