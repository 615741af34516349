//! The shard nodes of one devnet, grouped by XOR distance, executing finalized batches.
//!
//! Every node keeps its state in a [`NodeState`] (RocksDB, one directory per node under the
//! network's state directory, named by node ID). A batch runs move by move: the members of the
//! `to` address's group each execute the move against their own items and the slices other
//! groups ship with proofs; the quorum's outcome is applied by every member of every group
//! holding a written address. At the end of the batch every node stores the batch's writes at
//! the batch's number, so all nodes share one height, and a network reopened from the same
//! directories resumes at the next batch.
//!
//! A shipped slice carries a [`execution::SliceProof`] against the shipping group's root as of
//! the last batch, which the group's quorum agreed on; the receiver checks it before executing,
//! and puts over it the writes of the batch's earlier moves, which are the quorum outcomes every
//! group has seen. A shipment that fails its proof is refused and the next member is asked.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, btree_map::Entry},
    path::{Path, PathBuf},
    sync::Arc,
};

use consensus::ReplicaConfig;
use execution::{
    AccountDiff, AccountState, ExecutedBatch, ExecutionEnv, ExecutionError, MoveOutcome, StateDiff,
    StateSlice, execute,
    schedule::{Access, accesses},
};
use primitives::{
    AccountAccess, Address, B256, BlockBody, FailureReason, FinalizedBatch, NodeId,
    SignedTransaction, U256, VerifiedTransaction, bls::BlsError, constants::GROUP_SIZE,
    finality::StateItem, time::Instant,
};
use tracing::{debug, warn};
use upper_chain::{ChainError, GroupRootCommitment, RegistrySnapshot, UpperChain, quorum};

use crate::{
    groups::{Group, GroupMap},
    node::ShardNode,
    record::{ExecutionRecord, RecordLog, RecordedMove},
    state::{NodeState, NodeStateError, merge_change, overlay_writes},
    transport::{GroupTransport, InMemoryTransport},
};

/// Why a batch could not be executed or state could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShardError {
    /// The registry snapshot has fewer nodes than a group.
    #[error("{registered} nodes registered, a group needs {GROUP_SIZE}")]
    TooFewNodes {
        /// Nodes in the snapshot.
        registered: usize,
    },
    /// A node of this network is not in the registry snapshot.
    #[error("node {0} is not registered for this epoch")]
    NotRegistered(NodeId),
    /// Batches must execute in order.
    #[error("batch {got} is not the next batch {expected}")]
    NotNext {
        /// The next batch number.
        expected: u64,
        /// The number received.
        got: u64,
    },
    /// The bodies given do not match the batch's headers.
    #[error("body {index} does not match its header")]
    BodyMismatch {
        /// Index of the header.
        index: usize,
    },
    /// A slice did not hold exactly the items of its list: a bug in slice shipping.
    #[error("slice error: {0}")]
    Slice(#[from] ExecutionError),
    /// Members of a group did not reach a quorum on one outcome or root.
    #[error("group diverged on {what}")]
    Diverged {
        /// What they disagreed on.
        what: String,
    },
    /// The upper chain refused a commitment, or a read from it failed.
    #[error("upper chain: {0}")]
    Chain(#[from] ChainError),
    /// A certificate could not be built.
    #[error("certificate: {0}")]
    Certificate(#[from] BlsError),
    /// A node's store could not be opened, read or written.
    #[error("state of node {node}: {message}")]
    State {
        /// The node.
        node: NodeId,
        /// What the store said ([`NodeStateError`] is not comparable, so it is kept as text).
        message: String,
    },
    /// The nodes' stores are at different heights, so they cannot run one batch together.
    #[error("node {node} is at height {height:?}, the network at {expected:?}")]
    HeightsDiffer {
        /// The node out of step.
        node: NodeId,
        /// Its height.
        height: Option<u64>,
        /// The height of the first node.
        expected: Option<u64>,
    },
    /// Genesis accounts can only be added before the first batch is stored.
    #[error("genesis is already stored")]
    GenesisStored,
    /// A node cannot be restarted while it holds writes not yet stored.
    #[error("node {0} holds writes not yet stored")]
    PendingWrites(NodeId),
    /// No member of the holding group shipped an account that its proof confirms.
    #[error("no member of group {group} shipped a proven slice of {address}")]
    Unproven {
        /// The holding group.
        group: B256,
        /// The account.
        address: Address,
    },
    /// An execution record could not be written.
    #[error("execution record: {0}")]
    Record(String),
    /// The node is in the network already.
    #[error("node {0} is in the network already")]
    AlreadyMember(NodeId),
    /// The network cannot move to the next registry epoch now.
    #[error("cannot enter epoch {epoch} now: {why}")]
    EpochSwitch {
        /// The epoch.
        epoch: u64,
        /// Why not (the caller advances the group rounds or runs to a commit batch, then
        /// tries again).
        why: &'static str,
    },
}

impl ShardError {
    fn record(error: crate::record::RecordLogError) -> ShardError {
        ShardError::Record(error.to_string())
    }

    fn state(node: NodeId, error: NodeStateError) -> ShardError {
        ShardError::State {
            node,
            message: error.to_string(),
        }
    }
}

/// One node of the network with the state it holds.
#[derive(Debug)]
struct Member {
    node: ShardNode,
    state: NodeState,
}

/// Every shard node of one devnet.
pub struct ShardNetwork {
    chain_id: u64,
    chain: Arc<dyn UpperChain>,
    snapshot: RegistrySnapshot,
    ids: Vec<NodeId>,
    members: BTreeMap<NodeId, Member>,
    groups: GroupMap,
    /// Whether genesis is stored (every node's height is `Some`).
    started: bool,
    last_batch: u64,
    last_group_roots: Vec<GroupRootCommitment>,
    /// Groups touched since their roots were last committed.
    uncommitted: BTreeMap<B256, Group>,
    root_commit_interval: u64,
    /// Roots the groups' quorums hold as of the last batch, by group ID.
    agreed_roots: HashMap<B256, B256>,
    /// This batch's outcomes so far, merged by address.
    batch_writes: BTreeMap<Address, AccountDiff>,
    /// Shipped slices refused because their proof failed.
    refused_slices: u64,
    /// Threads a wave of moves runs on.
    execution_threads: usize,
    /// Each touched group's members' BFT cores, by group ID.
    rounds: BTreeMap<B256, rounds::GroupCores>,
    /// Members stopped in group rounds ([`ShardNetwork::stop_member`]).
    stopped: BTreeSet<NodeId>,
    /// The clock of the group rounds, as the caller last set it.
    now: Instant,
    /// The timeouts of the group rounds' replicas.
    replica_config: ReplicaConfig,
    /// Carries the group rounds' messages ([`crate::transport`]).
    transport: Box<dyn GroupTransport>,
    /// Group messages delivered that no core of the receiving member could take (undecodable
    /// envelope, or a group the member has no core for).
    unroutable: u64,
    /// The last root each group certified.
    certified: HashMap<B256, GroupRootCommitment>,
    /// The members credited with each group's last certified round so far, and the batch it
    /// was credited at ([`service`]): every member's certificate adds its signers, so a member
    /// that committed is credited even when the first certificate left it out.
    round_credits: HashMap<B256, (u64, BTreeSet<usize>)>,
    /// Roots certified since the last batch or [`ShardNetwork::advance`] began.
    certified_now: Vec<GroupRootCommitment>,
    /// What each member did, per accounting epoch ([`service`]).
    service: service::ServiceTally,
    /// Evictions this network's groups recorded on the upper chain, in order.
    evictions: Vec<upper_chain::Departure>,
    /// Where the nodes' stores live ([`node_dir`]).
    state_dir: PathBuf,
    /// The last batch's moves with the slices they ran on and their outcomes.
    last_record: ExecutionRecord,
    /// Where every batch's record is written, if anywhere.
    record_log: Option<RecordLog>,
    /// Where every batch's record, the genesis and (from the driver) every finalized batch
    /// are dispersed, if anywhere.
    strong_da: Option<crate::strong_da::StrongDaPublisher>,
    /// The genesis accounts inserted, as one diff over the empty state.
    genesis: StateDiff,
    /// Accounts handed over to each node at epoch boundaries, so far.
    accounts_synced: BTreeMap<NodeId, u64>,
    /// Evictions recorded by groups each node is a member of, so far.
    evictions_seen: BTreeMap<NodeId, u64>,
    /// Members whose cores are given a root other than the one their store computes (tests and
    /// simulations of a byzantine member).
    #[cfg(any(test, feature = "byzantine"))]
    lying: BTreeSet<NodeId>,
}

/// Batches between two commitments of group roots to the upper chain by default. Signing and
/// certifying a root costs every member a BLS signature and the chain a pairing, so roots are
/// settled at an interval (100 ms at a 10 ms tick), not after every batch.
pub const ROOT_COMMIT_INTERVAL_BATCHES: u64 = 10;

impl std::fmt::Debug for ShardNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardNetwork")
            .field("epoch", &self.snapshot.epoch)
            .field("nodes", &self.ids.len())
            .field("last_batch", &self.last_batch)
            .finish()
    }
}

/// The directory of a node's store under the network's state directory.
pub fn node_dir(state_dir: &Path, id: &NodeId) -> PathBuf {
    state_dir.join(format!("{:x}", id.0))
}

impl ShardNetwork {
    /// Forms the network from nodes already registered on `chain` for its current epoch, each
    /// with its store in [`node_dir`] under `state_dir` (created if missing, resumed if there).
    /// Every store must be at the same height; the network resumes after it.
    pub fn new(
        chain: Arc<dyn UpperChain>,
        chain_id: u64,
        nodes: Vec<ShardNode>,
        state_dir: &Path,
    ) -> Result<Self, ShardError> {
        let snapshot = chain.registry_snapshot(chain.epoch()?)?;
        if snapshot.nodes.len() < GROUP_SIZE {
            return Err(ShardError::TooFewNodes {
                registered: snapshot.nodes.len(),
            });
        }
        let mut by_id = BTreeMap::new();
        for node in nodes {
            let id = node.id();
            if snapshot.node(&id).is_none() {
                return Err(ShardError::NotRegistered(id));
            }
            by_id.insert(id, node);
        }
        let ids = snapshot.ids();
        if let Some(missing) = ids.iter().find(|id| !by_id.contains_key(id)) {
            return Err(ShardError::NotRegistered(*missing));
        }
        let mut members = BTreeMap::new();
        let mut height = None;
        for (index, (id, node)) in by_id.into_iter().enumerate() {
            let state = NodeState::open(node_dir(state_dir, &id))
                .map_err(|error| ShardError::state(id, error))?;
            if index == 0 {
                height = state.height();
            } else if state.height() != height {
                return Err(ShardError::HeightsDiffer {
                    node: id,
                    height: state.height(),
                    expected: height,
                });
            }
            members.insert(id, Member { node, state });
        }
        let mut groups = GroupMap::new(&ids, GROUP_SIZE);
        // After a restart the groups touched since the last commitment are unknown: all of them
        // commit at the next interval.
        let uncommitted = match height {
            Some(height) if height > 0 => groups
                .all_groups()
                .into_iter()
                .map(|group| (group.id, group))
                .collect(),
            _ => BTreeMap::new(),
        };
        if let Some(height) = height {
            debug!(target: "shard_node", height, nodes = members.len(), "resumed from the nodes' stores");
        }
        Ok(ShardNetwork {
            chain_id,
            chain,
            snapshot,
            ids,
            members,
            groups,
            started: height.is_some(),
            last_batch: height.unwrap_or(0),
            last_group_roots: Vec::new(),
            uncommitted,
            root_commit_interval: ROOT_COMMIT_INTERVAL_BATCHES,
            agreed_roots: HashMap::new(),
            batch_writes: BTreeMap::new(),
            refused_slices: 0,
            execution_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rounds: BTreeMap::new(),
            stopped: BTreeSet::new(),
            now: Instant::ZERO,
            replica_config: ReplicaConfig::default(),
            transport: Box::new(InMemoryTransport::new()),
            unroutable: 0,
            certified: HashMap::new(),
            round_credits: HashMap::new(),
            certified_now: Vec::new(),
            service: service::ServiceTally::default(),
            evictions: Vec::new(),
            state_dir: state_dir.to_path_buf(),
            last_record: ExecutionRecord::default(),
            record_log: None,
            strong_da: None,
            genesis: StateDiff::default(),
            accounts_synced: BTreeMap::new(),
            evictions_seen: BTreeMap::new(),
            #[cfg(any(test, feature = "byzantine"))]
            lying: BTreeSet::new(),
        })
    }

    /// Makes member `id` byzantine: from its next group round on, it vouches for a root that
    /// is not its store's (what a member with corrupt state or a malicious operator does), so
    /// the group must certify the honest root without it. For simulations (`sim::world`).
    #[cfg(any(test, feature = "byzantine"))]
    pub fn set_lying(&mut self, id: NodeId) {
        self.lying.insert(id);
    }

    /// The group of `address`: the registered nodes nearest to it, sorted by ID.
    pub fn group_of(&mut self, address: &Address) -> Arc<[NodeId]> {
        self.groups.group_of(address).members
    }

    /// What `id` has done, for its metrics ([`crate::metrics`]); `None` if it is not in the
    /// network.
    pub fn node_report(&self, id: &NodeId) -> Option<crate::metrics::NodeReport> {
        let member = self.members.get(id)?;
        Some(crate::metrics::NodeReport {
            height: member.state.height().unwrap_or(0),
            registry_epoch: self.snapshot.epoch,
            accounts_synced: self.accounts_synced.get(id).copied().unwrap_or(0),
            evictions: self.evictions_seen.get(id).copied().unwrap_or(0),
            evicted: self.evictions.iter().any(|departure| departure.node == *id),
        })
    }

    /// Batches between two commitments of group roots.
    pub fn root_commit_interval(&self) -> u64 {
        self.root_commit_interval
    }

    /// Commits group roots every `batches` batches (at least 1).
    pub fn set_root_commit_interval(&mut self, batches: u64) {
        self.root_commit_interval = batches.max(1);
    }

    /// Checks signatures and runs the moves of a wave on up to `threads` threads (1: one by one
    /// on the caller's).
    pub fn set_execution_threads(&mut self, threads: usize) {
        self.execution_threads = threads.max(1);
    }

    /// The group roots certified and committed by the last commit-interval batch's rounds (a
    /// group whose round could not finish then is missing; it commits on a later
    /// [`ShardNetwork::advance`]).
    pub fn last_group_roots(&self) -> &[GroupRootCommitment] {
        &self.last_group_roots
    }

    /// The execution record of the last batch executed: what anyone needs to re-execute it
    /// ([`crate::record`]).
    pub fn last_record(&self) -> &ExecutionRecord {
        &self.last_record
    }

    /// Writes the genesis and every batch's execution record to `log` from now on, for anyone
    /// to re-execute (`shard-node verify`).
    pub fn set_record_log(&mut self, log: RecordLog) {
        self.record_log = Some(log);
    }

    /// Disperses the genesis and every batch's execution record to strong DA from now on, and
    /// has the driver disperse every finalized batch ([`crate::strong_da`]).
    pub fn set_strong_da(&mut self, publisher: crate::strong_da::StrongDaPublisher) {
        self.strong_da = Some(publisher);
    }

    /// The strong-DA publisher, if set.
    pub fn strong_da(&self) -> Option<crate::strong_da::StrongDaPublisher> {
        self.strong_da.clone()
    }

    /// Number of the last executed batch.
    pub fn last_batch(&self) -> u64 {
        self.last_batch
    }

    /// The registry snapshot the groups come from.
    pub fn snapshot(&self) -> &RegistrySnapshot {
        &self.snapshot
    }

    /// A node's stored height and the root of everything it stores, if it is in the network.
    pub fn node_status(&self, id: &NodeId) -> Option<(Option<u64>, B256)> {
        self.members
            .get(id)
            .map(|member| (member.state.height(), member.state.root()))
    }

    /// Shipped slices refused so far because their proof did not hold.
    pub fn refused_slices(&self) -> u64 {
        self.refused_slices
    }

    /// Puts a genesis account into the state of every member of its group. Genesis is stored
    /// with the first batch; once it is, this is refused.
    pub fn insert_genesis(
        &mut self,
        address: Address,
        account: AccountState,
    ) -> Result<(), ShardError> {
        if self.started {
            return Err(ShardError::GenesisStored);
        }
        let change = AccountDiff {
            balance: Some(account.balance),
            nonce: Some(account.nonce),
            code: Some(account.code),
            storage: account.storage,
        };
        let diff = StateDiff {
            accounts: BTreeMap::from([(address, change)]),
        };
        for member in self.groups.group_of(&address).members.iter() {
            self.member_mut(member)?.state.apply(&diff);
        }
        self.genesis.accounts.extend(diff.accounts);
        Ok(())
    }

    /// Closes a node's store and opens it again from its directory, as a node process that
    /// restarts would. The node must be between batches; it comes back at its stored height.
    pub fn restart_node(&mut self, id: &NodeId) -> Result<(), ShardError> {
        let member = self.members.get(id).ok_or(ShardError::NotRegistered(*id))?;
        if member.state.has_pending() {
            return Err(ShardError::PendingWrites(*id));
        }
        let Some(Member { node, state }) = self.members.remove(id) else {
            return Err(ShardError::NotRegistered(*id));
        };
        let dir = state.dir().to_path_buf();
        let expected = state.height();
        drop(state);
        let state = NodeState::open(&dir).map_err(|error| ShardError::state(*id, error))?;
        let height = state.height();
        self.members.insert(*id, Member { node, state });
        if height != expected {
            return Err(ShardError::HeightsDiffer {
                node: *id,
                height,
                expected,
            });
        }
        debug!(target: "shard_node", node = %id, ?height, "node reopened its store");
        Ok(())
    }

    fn member_mut(&mut self, id: &NodeId) -> Result<&mut Member, ShardError> {
        self.members
            .get_mut(id)
            .ok_or(ShardError::NotRegistered(*id))
    }

    /// A storage slot as the group holding it reads it; a quorum of members must agree.
    pub fn storage(&mut self, address: &Address, slot: &B256) -> Result<U256, ShardError> {
        let group = self.groups.group_of(address);
        let mut values = Vec::with_capacity(group.members.len());
        for id in group.members.iter() {
            let member = self.member_mut(id)?;
            values.push(
                member
                    .state
                    .storage(address, slot)
                    .map_err(|error| ShardError::state(*id, error))?,
            );
        }
        agreed(&values, group.members.len()).ok_or_else(|| ShardError::Diverged {
            what: format!("slot {slot} of {address}"),
        })
    }

    /// An account's nonce as its group holds it; a quorum of members must agree.
    pub fn nonce(&mut self, address: &Address) -> Result<u64, ShardError> {
        let group = self.groups.group_of(address);
        let mut values = Vec::with_capacity(group.members.len());
        for id in group.members.iter() {
            let member = self.member_mut(id)?;
            values.push(
                member
                    .state
                    .nonce(address)
                    .map_err(|error| ShardError::state(*id, error))?,
            );
        }
        agreed(&values, group.members.len()).ok_or_else(|| ShardError::Diverged {
            what: format!("nonce of {address}"),
        })
    }

    /// Each member's root of `group`'s addresses as of the last batch, in member order.
    fn member_roots(&mut self, group: &Group) -> Result<Vec<B256>, ShardError> {
        let mut roots = Vec::with_capacity(group.members.len());
        for id in group.members.iter() {
            let member = self
                .members
                .get_mut(id)
                .ok_or(ShardError::NotRegistered(*id))?;
            let root = member
                .state
                .group_root(group, &mut self.groups)
                .map_err(|error| ShardError::state(*id, error))?;
            roots.push(root);
        }
        Ok(roots)
    }

    /// The group holding `address` and the root of its addresses that a quorum of its members
    /// holds as of the last batch.
    pub fn group_root_of(&mut self, address: &Address) -> Result<(B256, B256), ShardError> {
        let group = self.groups.group_of(address);
        Ok((group.id, self.agreed_root(&group)?))
    }

    fn agreed_root(&mut self, group: &Group) -> Result<B256, ShardError> {
        if let Some(root) = self.agreed_roots.get(&group.id) {
            return Ok(*root);
        }
        let roots = self.member_roots(group)?;
        let root = agreed(&roots, group.members.len()).ok_or_else(|| ShardError::Diverged {
            what: format!("root of group {}", group.id),
        })?;
        self.agreed_roots.insert(group.id, root);
        Ok(root)
    }

    /// The slice of `access` shipped by `holders` to a member that does not hold it: stored
    /// values checked against the group's agreed root, with this batch's writes over them.
    /// Returns the shipping member with the slice, or `None` when no member shipped a slice its
    /// proof confirms.
    fn ship(
        &mut self,
        access: &AccountAccess,
        holders: &Group,
    ) -> Result<Option<(NodeId, StateSlice)>, ShardError> {
        let shipped = self.first_proven(&access.address, holders, |state, groups| {
            state.ship(access, holders, groups)
        })?;
        Ok(shipped.map(|(id, mut slice, _)| {
            overlay_writes(&mut slice, &self.batch_writes);
            (id, slice)
        }))
    }

    /// The first shipment of `address` by a member of `holders` whose proof holds against the
    /// group's agreed root, with its shipper; `None` if no member shipped one. A stopped member
    /// ships nothing, as a crashed node would not.
    fn first_proven(
        &mut self,
        address: &Address,
        holders: &Group,
        mut shipment: impl FnMut(
            &mut NodeState,
            &mut GroupMap,
        ) -> Result<(StateSlice, execution::SliceProof), NodeStateError>,
    ) -> Result<Option<(NodeId, StateSlice, execution::SliceProof)>, ShardError> {
        let root = self.agreed_root(holders)?;
        for id in holders.members.iter() {
            if self.stopped.contains(id) {
                continue;
            }
            let member = self
                .members
                .get_mut(id)
                .ok_or(ShardError::NotRegistered(*id))?;
            match shipment(&mut member.state, &mut self.groups) {
                Ok((slice, proof)) => match proof.verify(&root, &slice) {
                    Ok(()) => return Ok(Some((*id, slice, proof))),
                    Err(error) => {
                        self.refused_slices += 1;
                        warn!(target: "shard_node", node = %id, %address, %error, "shipment refused: its proof does not hold");
                    }
                },
                Err(error) => {
                    warn!(target: "shard_node", node = %id, %address, %error, "member could not ship");
                }
            }
        }
        warn!(target: "shard_node", group = %holders.id, %address, "no member of the group shipped a proven slice");
        Ok(None)
    }

    /// [`ShardNetwork::advance`] to `now`, then [`ShardNetwork::execute_batch`].
    pub fn execute_batch_at(
        &mut self,
        now: Instant,
        finalized: &FinalizedBatch,
        bodies: &[BlockBody],
    ) -> Result<ExecutedBatch, ShardError> {
        self.advance(now)?;
        self.execute_batch(finalized, bodies)
    }

    /// Executes a finalized batch whose bodies (in header order) were pulled and checked by the
    /// caller, stores it on every node, and at the commit interval runs the BFT round of each
    /// touched group on its root, at the network's current `now` ([`ShardNetwork::advance`]);
    /// each root the round certifies is committed upstream with its commit certificate.
    pub fn execute_batch(
        &mut self,
        finalized: &FinalizedBatch,
        bodies: &[BlockBody],
    ) -> Result<ExecutedBatch, ShardError> {
        let batch = &finalized.batch;
        if batch.number != self.last_batch + 1 {
            return Err(ShardError::NotNext {
                expected: self.last_batch + 1,
                got: batch.number,
            });
        }
        if bodies.len() != batch.headers.len() {
            return Err(ShardError::BodyMismatch {
                index: bodies.len().min(batch.headers.len()),
            });
        }
        for (index, (header, body)) in batch.headers.iter().zip(bodies).enumerate() {
            if body.root() != header.root {
                return Err(ShardError::BodyMismatch { index });
            }
        }
        if !self.started {
            self.store_batch(0, &BTreeSet::new())?;
            self.started = true;
            if let Some(log) = &self.record_log {
                log.write_genesis(&self.genesis)
                    .map_err(ShardError::record)?;
            }
            if let Some(publisher) = &self.strong_da {
                publisher.publish(
                    upper_chain::AvailabilityKind::Genesis,
                    0,
                    primitives::Encode::to_bytes(&self.genesis),
                );
            }
        }
        let env = ExecutionEnv {
            chain_id: self.chain_id,
            block_number: batch.number,
            timestamp: batch.number,
        };
        let mut touched = std::mem::take(&mut self.uncommitted);
        let mut written = BTreeSet::new();
        self.batch_writes.clear();
        let moves: Vec<&SignedTransaction> = bodies.iter().flat_map(|body| &body.moves).collect();
        let results = match self.execute_moves(&env, &moves, &mut touched, &mut written) {
            Ok(results) => results,
            Err(error) => {
                // Nothing of a batch that did not finish is kept.
                for member in self.members.values_mut() {
                    member.state.discard_pending();
                }
                self.batch_writes.clear();
                self.uncommitted = touched;
                return Err(error);
            }
        };
        self.store_batch(batch.number, &written)?;
        self.last_batch = batch.number;
        let mut outcomes = Vec::with_capacity(results.len());
        let mut recorded = Vec::with_capacity(results.len());
        for (signed, (outcome, slice)) in moves.iter().zip(results) {
            outcomes.push(outcome.clone());
            recorded.push(RecordedMove {
                signed: (*signed).clone(),
                slice,
                outcome,
            });
        }
        self.last_record = ExecutionRecord {
            number: batch.number,
            moves: recorded,
        };
        if let Some(log) = &self.record_log {
            log.append(&self.last_record).map_err(ShardError::record)?;
        }
        if let Some(publisher) = &self.strong_da {
            publisher.publish(
                upper_chain::AvailabilityKind::ExecutionRecord,
                batch.number,
                primitives::Encode::to_bytes(&self.last_record),
            );
        }
        if batch.number.is_multiple_of(self.root_commit_interval) {
            let group_roots = self.commit_roots(batch.number, &touched)?;
            debug!(target: "shard_node", number = batch.number, groups = group_roots.len(), "committed group roots");
            self.last_group_roots = group_roots;
        } else {
            self.uncommitted = touched;
        }
        debug!(target: "shard_node", number = batch.number, moves = outcomes.len(), "executed batch");
        Ok(ExecutedBatch {
            number: batch.number,
            outcomes,
        })
    }

    /// Stores batch `number`'s writes on every node and forgets the written groups' roots.
    fn store_batch(&mut self, number: u64, written: &BTreeSet<B256>) -> Result<(), ShardError> {
        for (id, member) in &mut self.members {
            member
                .state
                .commit(number, &mut self.groups)
                .map_err(|error| ShardError::state(*id, error))?;
        }
        if number == 0 {
            self.agreed_roots.clear();
        }
        for group in written {
            self.agreed_roots.remove(group);
        }
        Ok(())
    }

    /// Runs the moves of a batch in conflict-free waves ([`waves`]): signatures are checked on
    /// the execution threads, the slices of a wave's moves are read first (no move of the wave
    /// changes what another reads), every member's execution of every move of the wave runs on
    /// the execution threads, and the outcomes are applied in batch order, so the result is
    /// that of running the moves one by one.
    fn execute_moves(
        &mut self,
        env: &ExecutionEnv,
        moves: &[&SignedTransaction],
        touched: &mut BTreeMap<B256, Group>,
        written: &mut BTreeSet<B256>,
    ) -> Result<Vec<(MoveOutcome, StateSlice)>, ShardError> {
        let chain_id = self.chain_id;
        let verified: Vec<Result<VerifiedTransaction, B256>> =
            map_on_threads(moves, self.execution_threads, |signed| {
                let hash = signed.hash();
                (*signed).clone().verify(chain_id).map_err(|error| {
                    warn!(target: "shard_node", %hash, %error, "invalid move in a finalized batch");
                    hash
                })
            });
        // Each move's outcome and the slice it ran on (empty if it did not run).
        let mut outcomes: Vec<Option<(MoveOutcome, StateSlice)>> = vec![None; moves.len()];
        for wave in waves(&verified) {
            let mut prepared = Vec::with_capacity(wave.len());
            for index in &wave {
                match &verified[*index] {
                    Ok(tx) => prepared.push((*index, self.prepare_move(tx)?)),
                    Err(hash) => {
                        outcomes[*index] = Some((
                            not_run(*hash, FailureReason::InvalidMove),
                            StateSlice::default(),
                        ));
                    }
                }
            }
            let runs: Vec<(&VerifiedTransaction, &StateSlice)> = prepared
                .iter()
                .flat_map(|(index, prepared)| {
                    let tx = verified[*index].as_ref().ok();
                    prepared
                        .slices
                        .iter()
                        .filter_map(move |slice| tx.map(|tx| (tx, slice)))
                })
                .collect();
            let mut results = map_on_threads(&runs, self.execution_threads, |(tx, slice)| {
                execute(env, tx, slice)
            })
            .into_iter();
            for (index, prepared) in prepared {
                if let Some(address) = prepared.unavailable {
                    outcomes[index] = Some((
                        not_run(prepared.hash, FailureReason::SliceUnavailable(address)),
                        StateSlice::default(),
                    ));
                    continue;
                }
                let mine: Vec<MoveOutcome> = results
                    .by_ref()
                    .take(prepared.slices.len())
                    .collect::<Result<_, _>>()?;
                outcomes[index] = Some(self.finish_move(prepared, &mine, touched, written)?);
            }
        }
        Ok(outcomes.into_iter().flatten().collect())
    }

    /// The slice each member of the executing group runs `tx` on: its own items, and the
    /// proven slices other groups ship.
    fn prepare_move(&mut self, tx: &VerifiedTransaction) -> Result<Prepared, ShardError> {
        let access_list = &tx.tx().access_list;
        let holders: Vec<Group> = access_list
            .accounts()
            .iter()
            .map(|access| self.groups.group_of(&access.address))
            .collect();
        let executing = self.groups.group_of(&tx.tx().to);
        // What other groups ship is the same for every member that does not hold the items.
        let mut shipped: BTreeMap<Address, (NodeId, StateSlice)> = BTreeMap::new();
        let mut slices = Vec::with_capacity(executing.members.len());
        for id in executing.members.iter() {
            let mut slice = StateSlice::default();
            for (access, holder) in access_list.accounts().iter().zip(&holders) {
                let account = if holder.members.contains(id) {
                    self.member_mut(id)?
                        .state
                        .account_slice(access)
                        .map_err(|error| ShardError::state(*id, error))?
                } else {
                    let (shipper, shipment) = match shipped.entry(access.address) {
                        Entry::Occupied(entry) => entry.into_mut(),
                        Entry::Vacant(entry) => match self.ship(access, holder)? {
                            Some(shipment) => entry.insert(shipment),
                            // One decision for the whole group, taken before any member runs
                            // the move: none of them gets this slice.
                            None => {
                                return Ok(Prepared {
                                    hash: tx.hash,
                                    executing,
                                    slices: Vec::new(),
                                    unavailable: Some(access.address),
                                });
                            }
                        },
                    };
                    self.service.slice(self.last_batch + 1, *shipper, *id);
                    shipment
                        .accounts
                        .get(&access.address)
                        .cloned()
                        .unwrap_or_default()
                };
                slice.accounts.insert(access.address, account);
            }
            slices.push(slice);
        }
        Ok(Prepared {
            hash: tx.hash,
            executing,
            slices,
            unavailable: None,
        })
    }

    /// Takes the quorum's outcome of a move and applies its writes to every holder.
    fn finish_move(
        &mut self,
        prepared: Prepared,
        results: &[MoveOutcome],
        touched: &mut BTreeMap<B256, Group>,
        written: &mut BTreeSet<B256>,
    ) -> Result<(MoveOutcome, StateSlice), ShardError> {
        let Prepared {
            hash,
            executing,
            slices,
            ..
        } = prepared;
        let outcome =
            agreed(results, executing.members.len()).ok_or_else(|| ShardError::Diverged {
                what: format!("outcome of {hash}"),
            })?;
        // The slice of a member that reached the quorum's outcome, for the execution record.
        let slice = results
            .iter()
            .position(|result| *result == outcome)
            .and_then(|position| slices.into_iter().nth(position))
            .unwrap_or_default();
        self.service
            .moves(self.last_batch + 1, &executing, results, &outcome);
        touched.insert(executing.id, executing);
        for (address, change) in &outcome.diff.accounts {
            let holder = self.groups.group_of(address);
            let single = StateDiff {
                accounts: BTreeMap::from([(*address, change.clone())]),
            };
            for id in holder.members.iter() {
                self.member_mut(id)?.state.apply(&single);
            }
            merge_change(self.batch_writes.entry(*address).or_default(), change);
            written.insert(holder.id);
            touched.insert(holder.id, holder);
        }
        Ok((outcome, slice))
    }

    /// Runs the BFT round of every touched group for `batch` and delivers until no member has
    /// anything left to send at the current `now`; returns the roots certified (and committed
    /// upstream) meanwhile. A group that cannot finish now (a stopped primary, a refused root)
    /// finishes on a later [`ShardNetwork::advance`].
    fn commit_roots(
        &mut self,
        batch: u64,
        touched: &BTreeMap<B256, Group>,
    ) -> Result<Vec<GroupRootCommitment>, ShardError> {
        self.certified_now.clear();
        for group in touched.values() {
            self.start_round(batch, group)?;
        }
        self.deliver()?;
        Ok(std::mem::take(&mut self.certified_now))
    }
}

/// A move ready to run: its executing group and each member's slice, in member order; or,
/// when `unavailable` names an account no holder shipped, a move that fails without running.
struct Prepared {
    hash: B256,
    executing: Group,
    slices: Vec<StateSlice>,
    unavailable: Option<Address>,
}

/// The outcome of a move that did not run: it changed nothing.
fn not_run(hash: B256, reason: FailureReason) -> MoveOutcome {
    MoveOutcome {
        hash,
        status: Err(reason),
        gas_used: 0,
        logs: Vec::new(),
        diff: StateDiff::default(),
    }
}

/// The waves of a batch: indices of its moves, each wave in batch order, such that no move of a
/// wave reads or writes an item another move of the wave writes. Deltas count as writes here (a
/// wave's slices are all read before any of its moves runs), and a move that did not verify
/// touches nothing.
pub fn waves<E>(moves: &[Result<VerifiedTransaction, E>]) -> Vec<Vec<usize>> {
    // The last wave (from 1) that read and that wrote each item.
    let mut levels: HashMap<StateItem, (usize, usize)> = HashMap::new();
    let mut waves: Vec<Vec<usize>> = Vec::new();
    for (index, tx) in moves.iter().enumerate() {
        let items = tx.as_ref().map(accesses).unwrap_or_default();
        let mut wave = 1;
        for (item, access) in &items {
            if let Some((read, write)) = levels.get(item) {
                wave = wave.max(match access {
                    Access::Read => write + 1,
                    Access::Write | Access::Delta => read.max(write) + 1,
                });
            }
        }
        for (item, access) in &items {
            let (read, write) = levels.entry(*item).or_default();
            let level = match access {
                Access::Read => read,
                Access::Write | Access::Delta => write,
            };
            *level = (*level).max(wave);
        }
        if waves.len() < wave {
            waves.resize_with(wave, Vec::new);
        }
        waves[wave - 1].push(index);
    }
    waves
}

/// Items below which work runs on the calling thread: starting threads costs more than a few
/// signature checks or executions do.
pub const PARALLEL_MIN_ITEMS: usize = 16;

/// `f` of every item, on up to `threads` threads, results in input order.
fn map_on_threads<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    if threads <= 1 || items.len() < PARALLEL_MIN_ITEMS {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| scope.spawn(move || part.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| match handle.join() {
                Ok(results) => results,
                // A panic in the engine is a bug; carry it to the caller as one.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// The value that at least a quorum of `members` reported, if any.
fn agreed<T: PartialEq + Clone>(values: &[T], members: usize) -> Option<T> {
    let needed = quorum(members);
    values
        .iter()
        .find(|candidate| values.iter().filter(|value| value == candidate).count() >= needed)
        .cloned()
}

mod epoch;
mod estimate;
pub use epoch::EpochChange;
mod rounds;
pub mod service;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bft_tests;

#[cfg(test)]
mod epoch_tests;

#[cfg(test)]
mod record_tests;
