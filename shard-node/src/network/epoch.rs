//! Registry epochs: nodes join, nodes leave, and the groups change, only at an epoch boundary.
//!
//! A node registered on the upper chain for a later epoch is added to the network
//! ([`ShardNetwork::add_node`]) with an empty store at the network's height; it follows the
//! batches (storing nothing of them) until the epoch that names it begins. When the chain's
//! epoch moves on, [`ShardNetwork::enter_epoch`] switches the network to the new registry
//! snapshot, between batches and once every group has certified the roots of its last round:
//! - every account whose group gains members is handed to them: each account a member holds is
//!   listed by the members of its group, and one listed by more than `f` of them (so by at
//!   least one correct member) is shipped whole, every stored slot, by a member of its old
//!   group with the proof that the old group's agreed root commits to it; a shipment whose
//!   proof fails is refused and the next member asked, and a receiver checks after the import
//!   that the account's storage root is the proven one, so no slot was left out;
//! - a node drops the accounts it no longer holds, and nodes the new snapshot no longer names
//!   (exits, evictions) leave the network;
//! - the groups, their BFT cores and every cached group trie are built again from the new
//!   snapshot; a node that joins reports, for each group it now serves in, the root it holds,
//!   signed, on the upper chain ([`upper_chain::UpperChain::record_synced_root`]).
//!
//! The handover is part of the batch the network is at: the receivers' stores stay at that
//! height, with the accounts they took over in their root.

use std::collections::{BTreeMap, BTreeSet};

use execution::AccountSlice;
use primitives::{Address, B256, NodeId};
use tracing::{debug, info, warn};

use super::{GROUP_SIZE, Member, ShardError, ShardNetwork, node_dir};
use crate::{
    groups::{Group, GroupMap},
    node::ShardNode,
    state::NodeState,
};

/// What a switch to a new registry epoch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EpochChange {
    /// The epoch entered.
    pub epoch: u64,
    /// Nodes that serve from this epoch on and did not in the last.
    pub joined: Vec<NodeId>,
    /// Nodes that served in the last epoch and no longer do (exits and evictions).
    pub departed: Vec<NodeId>,
    /// Accounts each node took over from the members of their old groups.
    pub synced: BTreeMap<NodeId, usize>,
}

/// One account a node takes over, as its old group shipped and proved it.
struct Handover {
    account: AccountSlice,
    storage_root: B256,
}

impl ShardNetwork {
    /// Adds a node registered on the upper chain for this epoch or the next, with its store in
    /// [`node_dir`]: empty, at the network's height. It serves from the epoch whose snapshot
    /// names it, once [`ShardNetwork::enter_epoch`] has handed it its accounts.
    pub fn add_node(&mut self, node: ShardNode) -> Result<(), ShardError> {
        let id = node.id();
        if self.members.contains_key(&id) {
            return Err(ShardError::AlreadyMember(id));
        }
        let epoch = self.chain.epoch()?;
        let registered = self.chain.registry_snapshot(epoch)?.node(&id).is_some()
            || self.chain.registry_snapshot(epoch + 1)?.node(&id).is_some();
        if !registered {
            return Err(ShardError::NotRegistered(id));
        }
        let mut state = NodeState::open(node_dir(&self.state_dir, &id))
            .map_err(|error| ShardError::state(id, error))?;
        let expected = self.started.then_some(self.last_batch);
        if state.height().is_none()
            && let Some(height) = expected
        {
            state
                .import(height, &BTreeMap::new(), &[])
                .map_err(|error| ShardError::state(id, error))?;
        }
        if state.height() != expected {
            return Err(ShardError::HeightsDiffer {
                node: id,
                height: state.height(),
                expected,
            });
        }
        info!(target: "shard_node", node = %id, height = ?expected, "node added; it serves from the epoch that names it");
        self.members.insert(id, Member { node, state });
        Ok(())
    }

    /// Moves the network to the upper chain's current registry epoch if it is past the
    /// network's (see the module documentation); `None` if it is not. Refused, changing
    /// nothing, before the first batch, between commit batches, while a group round is not
    /// certified, or while a node the new snapshot names is not in the network.
    pub fn enter_epoch(&mut self) -> Result<Option<EpochChange>, ShardError> {
        let epoch = self.chain.epoch()?;
        if epoch <= self.snapshot.epoch {
            return Ok(None);
        }
        let refuse = |why| Err(ShardError::EpochSwitch { epoch, why });
        if !self.started {
            return refuse("no batch is stored yet");
        }
        if !self.uncommitted.is_empty() {
            return refuse("groups were touched since the last commit batch");
        }
        let unsettled = self.rounds.values().any(|round| {
            round
                .cores
                .iter()
                .any(|(id, core)| !self.stopped.contains(id) && core.has_backlog())
        });
        if unsettled {
            return refuse("a group round is not certified yet");
        }
        let snapshot = self.chain.registry_snapshot(epoch)?;
        if snapshot.nodes.len() < GROUP_SIZE {
            return Err(ShardError::TooFewNodes {
                registered: snapshot.nodes.len(),
            });
        }
        let ids = snapshot.ids();
        if let Some(missing) = ids.iter().find(|id| !self.members.contains_key(id)) {
            return Err(ShardError::NotRegistered(*missing));
        }
        let mut next_groups = GroupMap::new(&ids, GROUP_SIZE);
        self.batch_writes.clear();

        let mut handovers = self.handovers(&mut next_groups)?;
        let mut synced = BTreeMap::new();
        let at = self.last_batch;
        for id in &ids {
            let accounts = handovers.remove(id).unwrap_or_default();
            let slices: BTreeMap<Address, AccountSlice> = accounts
                .iter()
                .map(|(address, handover)| (*address, handover.account.clone()))
                .collect();
            let member = self
                .members
                .get_mut(id)
                .ok_or(ShardError::NotRegistered(*id))?;
            // What it stores outside its new groups goes.
            let released: Vec<Address> = member
                .state
                .addresses()
                .map_err(|error| ShardError::state(*id, error))?
                .into_iter()
                .filter(|address| !next_groups.group_of(address).members.contains(id))
                .collect();
            if slices.is_empty() && released.is_empty() {
                continue;
            }
            member
                .state
                .import(at, &slices, &released)
                .map_err(|error| ShardError::state(*id, error))?;
            for (address, handover) in &accounts {
                let stored = member
                    .state
                    .storage_root(address)
                    .map_err(|error| ShardError::state(*id, error))?;
                if stored != handover.storage_root {
                    return Err(ShardError::Diverged {
                        what: format!("storage of {address} handed to {id}"),
                    });
                }
            }
            if !accounts.is_empty() {
                synced.insert(*id, accounts.len());
                *self.accounts_synced.entry(*id).or_default() += accounts.len() as u64;
            }
        }

        let previous: BTreeSet<NodeId> = self.ids.iter().copied().collect();
        let next: BTreeSet<NodeId> = ids.iter().copied().collect();
        let joined: Vec<NodeId> = next.difference(&previous).copied().collect();
        let departed: Vec<NodeId> = self
            .members
            .keys()
            .filter(|id| !next.contains(id) && previous.contains(id))
            .copied()
            .collect();
        for id in &departed {
            self.members.remove(id);
            self.stopped.remove(id);
            self.transport.stop(id);
            info!(target: "shard_node", node = %id, epoch, "node left the network at the epoch boundary");
        }
        self.transport.regroup(&snapshot);
        self.snapshot = snapshot;
        self.ids = ids;
        self.groups = next_groups;
        self.rounds.clear();
        self.agreed_roots.clear();
        for member in self.members.values_mut() {
            member.state.forget_groups();
        }
        self.report_synced(&joined)?;
        info!(target: "shard_node", epoch, batch = self.last_batch, joined = joined.len(),
            departed = departed.len(), handed_over = synced.values().sum::<usize>(), "entered registry epoch");
        Ok(Some(EpochChange {
            epoch,
            joined,
            departed,
            synced,
        }))
    }

    /// The accounts each node must take over for the groups of `next`, shipped and proven by
    /// their old groups.
    fn handovers(
        &mut self,
        next: &mut GroupMap,
    ) -> Result<BTreeMap<NodeId, BTreeMap<Address, Handover>>, ShardError> {
        // Which members of its group list each account.
        let mut listed: BTreeMap<Address, BTreeSet<NodeId>> = BTreeMap::new();
        let sources: Vec<NodeId> = self
            .ids
            .iter()
            .filter(|id| !self.stopped.contains(*id))
            .copied()
            .collect();
        for id in &sources {
            let addresses = self
                .members
                .get(id)
                .ok_or(ShardError::NotRegistered(*id))?
                .state
                .addresses()
                .map_err(|error| ShardError::state(*id, error))?;
            for address in addresses {
                // A store keeps accounts of groups it left; only its groups' count.
                if self.groups.group_of(&address).members.contains(id) {
                    listed.entry(address).or_default().insert(*id);
                }
            }
        }
        let mut handovers: BTreeMap<NodeId, BTreeMap<Address, Handover>> = BTreeMap::new();
        for (address, listers) in listed {
            let old = self.groups.group_of(&address);
            let faulty = (old.members.len() - 1) / 3;
            if listers.len() <= faulty {
                warn!(target: "shard_node", %address, listers = listers.len(), "account listed by too few members to hand over");
                continue;
            }
            let receivers: Vec<NodeId> = next
                .group_of(&address)
                .members
                .iter()
                .filter(|id| !old.members.contains(id))
                .copied()
                .collect();
            if receivers.is_empty() {
                continue;
            }
            let (shipper, account, storage_root) = self.ship_whole(&address, &old)?;
            for receiver in receivers {
                // Counted with the batch about to run: the last one's accounting may be closed.
                self.service.slice(self.last_batch + 1, shipper, receiver);
                handovers.entry(receiver).or_default().insert(
                    address,
                    Handover {
                        account: account.clone(),
                        storage_root,
                    },
                );
            }
        }
        Ok(handovers)
    }

    /// The whole account at `address` from a member of `holders` whose shipment its proof
    /// confirms against the group's agreed root: the shipping member, the account and its proven
    /// storage root.
    fn ship_whole(
        &mut self,
        address: &Address,
        holders: &Group,
    ) -> Result<(NodeId, AccountSlice, B256), ShardError> {
        let shipped = self.first_proven(address, holders, |state, groups| {
            let access = state.whole_access(address)?;
            state.ship(&access, holders, groups)
        })?;
        let Some((id, slice, proof)) = shipped else {
            return Err(ShardError::Unproven {
                group: holders.id,
                address: *address,
            });
        };
        let storage_root = proof
            .accounts
            .first()
            .map(|account| account.storage_root)
            .unwrap_or_default();
        let account = slice.accounts.get(address).cloned().unwrap_or_default();
        Ok((id, account, storage_root))
    }

    /// Each joined node reports, for every group it now serves in, the root it holds.
    fn report_synced(&mut self, joined: &[NodeId]) -> Result<(), ShardError> {
        if joined.is_empty() {
            return Ok(());
        }
        let epoch = self.snapshot.epoch;
        let batch = self.last_batch;
        for group in self.groups.all_groups() {
            for id in group.members.iter().filter(|id| joined.contains(id)) {
                let member = self
                    .members
                    .get_mut(id)
                    .ok_or(ShardError::NotRegistered(*id))?;
                let root = member
                    .state
                    .group_root(&group, &mut self.groups)
                    .map_err(|error| ShardError::state(*id, error))?;
                let (synced, signature) = member.node.synced_root(epoch, group.id, batch, root);
                self.chain.record_synced_root(synced, &signature)?;
                debug!(target: "shard_node", node = %id, group = %group.id, batch, %root, "synced root recorded");
            }
        }
        Ok(())
    }
}
