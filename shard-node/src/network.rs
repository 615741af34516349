//! The shard nodes of one devnet, grouped by XOR distance, executing finalized batches.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use execution::{
    AccountState, ExecutedBatch, ExecutionEnv, ExecutionError, MoveOutcome, StateDiff, StateSlice,
    execute,
};
use primitives::{
    Address, B256, BlockBody, FailureReason, FinalizedBatch, NodeId, SpaceAccessList, U256,
    bls::{BlsError, BlsSignature, Certificate},
    constants::GROUP_SIZE,
};
use tracing::{debug, warn};
use upper_chain::{
    ChainError, GroupRootCommitment, RegistrySnapshot, UpperChain, group_id, quorum,
};

use crate::node::ShardNode;

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
}

/// Every shard node of one devnet.
pub struct ShardNetwork {
    chain_id: u64,
    chain: Arc<dyn UpperChain>,
    snapshot: RegistrySnapshot,
    ids: Vec<NodeId>,
    nodes: BTreeMap<NodeId, ShardNode>,
    groups: HashMap<Address, Group>,
    last_batch: u64,
    last_group_roots: Vec<GroupRootCommitment>,
    /// Groups touched since their roots were last committed.
    uncommitted: BTreeMap<B256, Arc<[NodeId]>>,
    root_commit_interval: u64,
}

/// Batches between two commitments of group roots to the upper chain by default. Signing and
/// certifying a root costs every member a BLS signature and the chain a pairing, so roots are
/// settled at an interval (100 ms at a 10 ms tick), not after every batch.
pub const ROOT_COMMIT_INTERVAL_BATCHES: u64 = 10;

/// An address state group: its members (nearest first) and its ID.
#[derive(Clone, Debug)]
struct Group {
    members: Arc<[NodeId]>,
    id: B256,
}

impl Group {
    fn of(snapshot: &RegistrySnapshot, address: &Address) -> Group {
        let members: Arc<[NodeId]> = snapshot.group_of(address).into();
        Group {
            id: group_id(&members),
            members,
        }
    }
}

impl std::fmt::Debug for ShardNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardNetwork")
            .field("epoch", &self.snapshot.epoch)
            .field("nodes", &self.ids.len())
            .field("last_batch", &self.last_batch)
            .finish()
    }
}

impl ShardNetwork {
    /// Forms the network from nodes already registered on `chain` for its current epoch.
    pub fn new(
        chain: Arc<dyn UpperChain>,
        chain_id: u64,
        nodes: Vec<ShardNode>,
    ) -> Result<Self, ShardError> {
        let snapshot = chain.registry_snapshot(chain.epoch()?)?;
        if snapshot.nodes.len() < GROUP_SIZE {
            return Err(ShardError::TooFewNodes {
                registered: snapshot.nodes.len(),
            });
        }
        let mut by_id = BTreeMap::new();
        for node in nodes {
            if snapshot.node(&node.id()).is_none() {
                return Err(ShardError::NotRegistered(node.id()));
            }
            by_id.insert(node.id(), node);
        }
        let ids = snapshot.ids();
        if let Some(missing) = ids.iter().find(|id| !by_id.contains_key(id)) {
            return Err(ShardError::NotRegistered(*missing));
        }
        Ok(ShardNetwork {
            chain_id,
            chain,
            snapshot,
            ids,
            nodes: by_id,
            groups: HashMap::new(),
            last_batch: 0,
            last_group_roots: Vec::new(),
            uncommitted: BTreeMap::new(),
            root_commit_interval: ROOT_COMMIT_INTERVAL_BATCHES,
        })
    }

    /// The group of `address`: the registered nodes nearest to it, nearest first.
    pub fn group_of(&mut self, address: &Address) -> Arc<[NodeId]> {
        self.group(address).members
    }

    fn group(&mut self, address: &Address) -> Group {
        let snapshot = &self.snapshot;
        self.groups
            .entry(*address)
            .or_insert_with(|| Group::of(snapshot, address))
            .clone()
    }

    /// Commits group roots every `batches` batches (at least 1).
    pub fn set_root_commit_interval(&mut self, batches: u64) {
        self.root_commit_interval = batches.max(1);
    }

    /// The group roots committed by the last commitment (after the batch that made it).
    pub fn last_group_roots(&self) -> &[GroupRootCommitment] {
        &self.last_group_roots
    }

    /// Number of the last executed batch.
    pub fn last_batch(&self) -> u64 {
        self.last_batch
    }

    /// The registry snapshot the groups come from.
    pub fn snapshot(&self) -> &RegistrySnapshot {
        &self.snapshot
    }

    /// Puts a genesis account into the state of every member of its group.
    pub fn insert_genesis(&mut self, address: Address, account: AccountState) {
        for member in self.group_of(&address).iter() {
            self.node_mut(member)
                .state
                .insert_account(address, account.clone());
        }
    }

    fn node_mut(&mut self, id: &NodeId) -> &mut ShardNode {
        self.nodes
            .get_mut(id)
            .expect("groups are drawn from this network's nodes")
    }

    fn node(&self, id: &NodeId) -> &ShardNode {
        self.nodes
            .get(id)
            .expect("groups are drawn from this network's nodes")
    }

    /// A storage slot as the group holding it reads it; every member must agree.
    pub fn storage(&mut self, address: &Address, slot: &B256) -> Result<U256, ShardError> {
        let group = self.group_of(address);
        let values: Vec<U256> = group
            .iter()
            .map(|member| self.node(member).state.storage(address, slot))
            .collect();
        agreed(&values, group.len()).ok_or_else(|| ShardError::Diverged {
            what: format!("slot {slot} of {address}"),
        })
    }

    /// An account's nonce as its group holds it; every member must agree.
    pub fn nonce(&mut self, address: &Address) -> Result<u64, ShardError> {
        let group = self.group_of(address);
        let values: Vec<u64> = group
            .iter()
            .map(|member| {
                self.node(member)
                    .state
                    .account(address)
                    .map_or(0, |account| account.nonce)
            })
            .collect();
        agreed(&values, group.len()).ok_or_else(|| ShardError::Diverged {
            what: format!("nonce of {address}"),
        })
    }

    /// The state slice member `member` executes `access_list` against: the items it holds
    /// itself, and for the rest the slice shipped by the first member of the holding group.
    fn slice_for(&self, member: &NodeId, access_list: &SpaceAccessList) -> StateSlice {
        let mut slice = StateSlice::default();
        for access in access_list.accounts() {
            let holders = &self
                .groups
                .get(&access.address)
                .expect("groups of listed addresses are filled first")
                .members;
            let source = if holders.contains(member) {
                member
            } else {
                &holders[0]
            };
            let shipped = self
                .node(source)
                .state
                .slice(&SpaceAccessList::new([access.clone()]));
            slice.accounts.extend(shipped.accounts);
        }
        slice
    }

    /// Executes a finalized batch whose bodies (in header order) were pulled and checked by the
    /// caller, and commits the roots of the touched groups on the upper chain.
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
        let env = ExecutionEnv {
            chain_id: self.chain_id,
            block_number: batch.number,
            timestamp: batch.number,
        };
        let mut outcomes = Vec::with_capacity(batch.move_count() as usize);
        let mut touched = std::mem::take(&mut self.uncommitted);
        for signed in bodies.iter().flat_map(|body| &body.moves) {
            let outcome = self.execute_move(&env, signed.clone(), &mut touched)?;
            outcomes.push(outcome);
        }
        if batch.number.is_multiple_of(self.root_commit_interval) {
            let group_roots = self.commit_roots(batch.number, &touched)?;
            debug!(target: "shard_node", number = batch.number, groups = group_roots.len(), "committed group roots");
            self.last_group_roots = group_roots;
        } else {
            self.uncommitted = touched;
        }
        self.last_batch = batch.number;
        debug!(target: "shard_node", number = batch.number, moves = outcomes.len(), "executed batch");
        Ok(ExecutedBatch {
            number: batch.number,
            outcomes,
        })
    }

    fn execute_move(
        &mut self,
        env: &ExecutionEnv,
        signed: primitives::SignedTransaction,
        touched: &mut BTreeMap<B256, Arc<[NodeId]>>,
    ) -> Result<MoveOutcome, ShardError> {
        let hash = signed.hash();
        let verified = match signed.verify(self.chain_id) {
            Ok(verified) => verified,
            Err(error) => {
                warn!(target: "shard_node", %hash, %error, "invalid move in a finalized batch");
                return Ok(MoveOutcome {
                    hash,
                    status: Err(FailureReason::InvalidMove),
                    gas_used: 0,
                    logs: Vec::new(),
                    diff: StateDiff::default(),
                });
            }
        };
        for access in verified.tx().access_list.accounts() {
            self.group_of(&access.address);
        }
        let executing = self.group(&verified.tx().to);
        let mut results = Vec::with_capacity(executing.members.len());
        for member in executing.members.iter() {
            let slice = self.slice_for(member, &verified.tx().access_list);
            results.push(execute(env, &verified, &slice)?);
        }
        let outcome =
            agreed(&results, executing.members.len()).ok_or_else(|| ShardError::Diverged {
                what: format!("outcome of {hash}"),
            })?;
        touched.insert(executing.id, executing.members.clone());
        for (address, change) in &outcome.diff.accounts {
            let holders = self.group(address);
            let single = StateDiff {
                accounts: BTreeMap::from([(*address, change.clone())]),
            };
            for member in holders.members.iter() {
                self.node_mut(member).state.apply(&single);
            }
            touched.insert(holders.id, holders.members);
        }
        Ok(outcome)
    }

    fn commit_roots(
        &mut self,
        batch: u64,
        touched: &BTreeMap<B256, Arc<[NodeId]>>,
    ) -> Result<Vec<GroupRootCommitment>, ShardError> {
        let mut commitments = Vec::with_capacity(touched.len());
        // Taken out so the root's address filter can fill it while the nodes are borrowed.
        let mut groups = std::mem::take(&mut self.groups);
        let snapshot = &self.snapshot;
        let nodes = &self.nodes;
        let mut roots_of = |members: &[NodeId], group: &B256| -> Vec<B256> {
            members
                .iter()
                .map(|member| {
                    nodes[member].state.root_where(|address| {
                        let holder = groups
                            .entry(*address)
                            .or_insert_with(|| Group::of(snapshot, address));
                        holder.id == *group
                    })
                })
                .collect()
        };
        let all_roots: Vec<Vec<B256>> = touched
            .iter()
            .map(|(group, members)| roots_of(members, group))
            .collect();
        self.groups = groups;
        for ((group, members), roots) in touched.iter().zip(all_roots) {
            let root = agreed(&roots, members.len()).ok_or_else(|| ShardError::Diverged {
                what: format!("root of group {group}"),
            })?;
            let commitment = GroupRootCommitment {
                epoch: self.snapshot.epoch,
                group: *group,
                batch,
                root,
            };
            let message = commitment.signing_bytes();
            let votes: Vec<(usize, BlsSignature)> = members
                .iter()
                .enumerate()
                .filter(|(index, _)| roots[*index] == root)
                .map(|(index, member)| (index, self.node(member).bls().sign(&message)))
                .collect();
            let certificate = Certificate::aggregate(&votes)?;
            self.chain
                .commit_group_root(commitment.clone(), members, &certificate)?;
            commitments.push(commitment);
        }
        Ok(commitments)
    }
}

/// The value that at least a quorum of `members` reported, if any.
fn agreed<T: PartialEq + Clone>(values: &[T], members: usize) -> Option<T> {
    let needed = quorum(members);
    values
        .iter()
        .find(|candidate| values.iter().filter(|value| value == candidate).count() >= needed)
        .cloned()
}

#[cfg(test)]
mod tests {
    use execution::AccountState;
    use primitives::{
        AccountAccess, AccountKey, Batch, BlockHeader, Bytes, DeclaredWrite, SlotAccess,
        Transaction, bls::BlsSecretKey, codec::Encode,
    };
    use upper_chain::EmbeddedChain;

    use super::*;

    const CHAIN_ID: u64 = 9;
    const COUNTER: Address = Address::repeat_byte(0xc0);

    /// `SSTORE(CALLER, CALLDATALOAD(0))`.
    fn store_code() -> Bytes {
        Bytes::from_static(&[0x60, 0x00, 0x35, 0x33, 0x55, 0x00])
    }

    fn network(nodes: usize) -> (ShardNetwork, Arc<EmbeddedChain>) {
        let chain = Arc::new(EmbeddedChain::new(Vec::new()));
        let nodes: Vec<ShardNode> = (0..nodes as u64).map(ShardNode::from_seed).collect();
        for node in &nodes {
            let (registration, signature) = node.registration("test".into(), Address::ZERO, vec![]);
            chain
                .register_node(registration, &signature)
                .expect("registers");
        }
        chain.advance_epoch();
        let mut network = ShardNetwork::new(chain.clone(), CHAIN_ID, nodes).expect("forms");
        network.set_root_commit_interval(1);
        network.insert_genesis(
            COUNTER,
            AccountState {
                code: store_code(),
                ..AccountState::default()
            },
        );
        (network, chain)
    }

    fn store(
        key: &AccountKey,
        nonce: u64,
        value: u64,
        declared: u64,
    ) -> primitives::SignedTransaction {
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
                primitives::AccountAccess::read(key.address()),
                AccountAccess {
                    storage: vec![SlotAccess {
                        slot: B256::left_padding_from(key.address().as_slice()),
                        write: Some(DeclaredWrite::Exact(U256::from(declared))),
                    }],
                    ..AccountAccess::read(COUNTER)
                },
            ]),
        }
        .sign(key)
    }

    fn finalized(number: u64, parent: B256, bodies: &[BlockBody]) -> FinalizedBatch {
        let sequencer = BlsSecretKey::from_seed(&[1; 32]);
        let headers: Vec<BlockHeader> = bodies
            .iter()
            .enumerate()
            .map(|(height, body)| {
                BlockHeader::seal(
                    &AccountKey::from_seed(1),
                    height as u64,
                    B256::ZERO,
                    0,
                    body,
                    body.to_bytes().len() as u32,
                )
            })
            .collect();
        let batch = Batch {
            number,
            parent,
            headers,
        };
        let certificate =
            Certificate::aggregate(&[(0, sequencer.sign(b"test"))]).expect("one vote");
        FinalizedBatch {
            batch,
            sequence: number,
            view: 0,
            certificate,
        }
    }

    #[test]
    fn cross_group_moves_execute_once_agreed_and_groups_commit_their_roots() {
        let (mut network, chain) = network(16);
        let players: Vec<AccountKey> = (0..12)
            .map(|seed| AccountKey::from_seed(500 + seed))
            .collect();
        // Many players' groups differ from the contract's: their slices are shipped.
        let counter_group = network.group_of(&COUNTER);
        assert!(
            players
                .iter()
                .any(|key| network.group_of(&key.address()) != counter_group)
        );

        let body = BlockBody {
            moves: players
                .iter()
                .enumerate()
                .map(|(index, key)| store(key, 0, index as u64 + 1, index as u64 + 1))
                .chain([store(&players[0], 1, 50, 51)]) // a wrong declaration
                .collect(),
        };
        let batch = finalized(1, B256::ZERO, std::slice::from_ref(&body));
        assert_eq!(
            network.execute_batch(&batch, &[]),
            Err(ShardError::BodyMismatch { index: 0 })
        );
        let executed = network.execute_batch(&batch, &[body]).expect("executes");
        assert_eq!(executed.outcomes.len(), players.len() + 1);
        assert!(
            executed.outcomes[..players.len()]
                .iter()
                .all(MoveOutcome::is_success)
        );
        let slot = |key: &AccountKey| B256::left_padding_from(key.address().as_slice());
        let wrong = FailureReason::WrongPostValue(primitives::finality::StateItem::Storage(
            COUNTER,
            slot(&players[0]),
        ));
        assert_eq!(executed.outcomes[players.len()].status, Err(wrong));

        for (index, key) in players.iter().enumerate() {
            assert_eq!(
                network.storage(&COUNTER, &slot(key)),
                Ok(U256::from(index as u64 + 1))
            );
            let expected_nonce = if index == 0 { 2 } else { 1 };
            assert_eq!(network.nonce(&key.address()), Ok(expected_nonce));
        }
        // Every touched group committed a root over exactly its own addresses.
        assert!(!network.last_group_roots().is_empty());
        for commitment in network.last_group_roots() {
            assert_eq!(
                chain
                    .group_root(&commitment.group)
                    .expect("the embedded chain reads")
                    .as_ref(),
                Some(commitment)
            );
        }
        // Batches run in order.
        assert_eq!(
            network.execute_batch(&finalized(3, B256::ZERO, &[]), &[]),
            Err(ShardError::NotNext {
                expected: 2,
                got: 3
            })
        );
    }
}
