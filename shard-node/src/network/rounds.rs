//! The group BFT rounds of the network's groups, driven in-process: every member of a group has
//! a [`GroupBft`] core per group it is in; the network feeds each the root its own store gives,
//! delivers the cores' messages to one another in order (a stopped member sends and receives
//! nothing), fires their timers at the `now` its caller passes, and commits every certified root
//! upstream with the round's commit certificate.

use std::collections::{BTreeMap, VecDeque};

use consensus::{Validator, ValidatorSet};
use primitives::{
    B256, NodeId,
    machine::{Machine, Origin, Transmit},
    time::Instant,
};
use tracing::{debug, warn};
use upper_chain::GroupRootCommitment;

use super::{ShardError, ShardNetwork};
use crate::{
    bft::{GroupBft, GroupConfig, GroupEvent, GroupInput, GroupStats},
    groups::Group,
};

/// Group messages one delivery moves at most before it gives up for this `now`: far above what
/// the rounds of all touched groups need (a round is about 8 × 24 messages, a view change a few
/// hundred), so reaching it means cores answering each other forever, which is a bug.
pub const DELIVERIES_PER_CALL_MAX: usize = 1 << 20;

/// The cores of one group's members.
pub(super) struct GroupCores {
    pub(super) group: Group,
    pub(super) cores: BTreeMap<NodeId, GroupBft>,
}

impl ShardNetwork {
    /// Stops a member's part in group rounds: from now on it sends and receives no group
    /// message and its timers do not fire, as a crashed node's would not. Its store keeps
    /// following the batches (a stopped node catching up by state sync is not built yet), and
    /// it keeps computing its own roots, which it will vouch for when it is resumed.
    pub fn stop_member(&mut self, id: &NodeId) -> Result<(), ShardError> {
        if !self.members.contains_key(id) {
            return Err(ShardError::NotRegistered(*id));
        }
        self.stopped.insert(*id);
        debug!(target: "shard_node", node = %id, "stopped in group rounds");
        Ok(())
    }

    /// Resumes a member stopped with [`ShardNetwork::stop_member`]: the timers of its cores
    /// that came due while it was stopped fire at once (a node coming back looks at its clock
    /// first, which is how it learns it fell behind), and what that sets going is delivered.
    pub fn resume_member(&mut self, id: &NodeId) -> Result<(), ShardError> {
        if !self.stopped.remove(id) {
            return Err(ShardError::NotRegistered(*id));
        }
        debug!(target: "shard_node", node = %id, "resumed in group rounds");
        let now = self.now;
        for round in self.rounds.values_mut() {
            if let Some(core) = round.cores.get_mut(id)
                && core.poll_timeout().is_some_and(|deadline| deadline <= now)
            {
                core.handle_timeout(now);
            }
        }
        self.deliver()
    }

    /// The network's clock, as the caller last set it.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Moves the network's clock to `now` (never back), fires the group cores' timers that are
    /// due and delivers what follows: view changes of groups whose round did not finish, state
    /// transfer of members that fell behind. Certified roots are committed upstream.
    pub fn advance(&mut self, now: Instant) -> Result<(), ShardError> {
        self.now = self.now.max(now);
        let now = self.now;
        for (id, core) in self
            .rounds
            .values_mut()
            .flat_map(|round| round.cores.iter_mut())
        {
            if self.stopped.contains(id) {
                continue;
            }
            if core.poll_timeout().is_some_and(|deadline| deadline <= now) {
                core.handle_timeout(now);
            }
        }
        self.deliver()
    }

    /// When [`ShardNetwork::advance`] must next be called: the earliest timer of a running
    /// member's group core (a view change or a state transfer due), if any. A driver that only
    /// advanced the clock when a batch arrives would leave a group whose primary is down or
    /// lying uncertified until the next batch, and forever after the last one.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.rounds
            .values()
            .flat_map(|round| round.cores.iter())
            .filter(|(id, _)| !self.stopped.contains(*id))
            .filter_map(|(_, core)| core.poll_timeout())
            .min()
    }

    /// The counters of every member's core of `group`, by member.
    pub fn group_stats(&self, group: &B256) -> BTreeMap<NodeId, GroupStats> {
        self.rounds.get(group).map_or_else(BTreeMap::new, |round| {
            round
                .cores
                .iter()
                .map(|(id, core)| (*id, core.stats()))
                .collect()
        })
    }

    /// The root of `group` certified last, with its batch, if any.
    pub fn certified_root(&self, group: &B256) -> Option<&GroupRootCommitment> {
        self.certified.get(group)
    }

    /// Starts the round of `group` for `batch`: every member gives its core the root its own
    /// store computes.
    pub(super) fn start_round(&mut self, batch: u64, group: &Group) -> Result<(), ShardError> {
        self.ensure_cores(group)?;
        let now = self.now;
        for id in group.members.iter() {
            let member = self
                .members
                .get_mut(id)
                .ok_or(ShardError::NotRegistered(*id))?;
            let root = member
                .state
                .group_root(group, &mut self.groups)
                .map_err(|error| ShardError::state(*id, error))?;
            // A byzantine member, in tests: it vouches for a root its store did not compute.
            #[cfg(test)]
            let root = if self.lying.contains(id) {
                primitives::keccak256(root)
            } else {
                root
            };
            let core = self.core_mut(&group.id, id)?;
            if let Err(error) = core.step(now, Origin::Local, GroupInput::Root { batch, root }) {
                warn!(target: "shard_node", node = %id, group = %group.id, batch, %error, "own root not taken");
            }
        }
        Ok(())
    }

    fn core_mut(&mut self, group: &B256, id: &NodeId) -> Result<&mut GroupBft, ShardError> {
        self.rounds
            .get_mut(group)
            .and_then(|round| round.cores.get_mut(id))
            .ok_or(ShardError::NotRegistered(*id))
    }

    /// Builds the cores of `group`'s members, once: the validator set is the members in ID
    /// order (the order the upper chain indexes certificates by) with their registered keys.
    fn ensure_cores(&mut self, group: &Group) -> Result<(), ShardError> {
        if self.rounds.contains_key(&group.id) {
            return Ok(());
        }
        let mut validators = Vec::with_capacity(group.members.len());
        for id in group.members.iter() {
            let record = self
                .snapshot
                .node(id)
                .ok_or(ShardError::NotRegistered(*id))?;
            validators.push(Validator {
                id: *id,
                key: record.registration.bls_key,
            });
        }
        let set = ValidatorSet::for_epoch(validators, self.snapshot.epoch, 0, None);
        let config = GroupConfig {
            epoch: self.snapshot.epoch,
            group: group.id,
            commit_interval: self.root_commit_interval,
            replica: self.replica_config,
        };
        let mut cores = BTreeMap::new();
        for (index, id) in group.members.iter().enumerate() {
            let member = self.members.get(id).ok_or(ShardError::NotRegistered(*id))?;
            // One memory of verified signatures per group: each message is checked once in
            // this process, not once per member.
            let core = GroupBft::new(config, set.share_memory(), index, member.node.bls().clone());
            cores.insert(*id, core);
        }
        self.rounds.insert(
            group.id,
            GroupCores {
                group: group.clone(),
                cores,
            },
        );
        Ok(())
    }

    /// Delivers group messages until no core has anything left to send, and acts on the cores'
    /// events. Messages from or to a stopped member are dropped.
    pub(super) fn deliver(&mut self) -> Result<(), ShardError> {
        let now = self.now;
        let mut queue: VecDeque<(B256, NodeId, Transmit)> = VecDeque::new();
        let mut events: Vec<(B256, GroupEvent)> = Vec::new();
        for (group, round) in &mut self.rounds {
            for (id, core) in &mut round.cores {
                drain(
                    now,
                    *group,
                    *id,
                    core,
                    &self.stopped,
                    &mut queue,
                    &mut events,
                );
            }
        }
        let mut delivered = 0usize;
        loop {
            for (group, event) in events.drain(..) {
                self.handle_group_event(group, event)?;
            }
            let Some((group, from, transmit)) = queue.pop_front() else {
                return Ok(());
            };
            if delivered >= DELIVERIES_PER_CALL_MAX {
                warn!(target: "shard_node", delivered, left = queue.len(), "group messages still flowing; the rest waits for the next call");
                return Ok(());
            }
            delivered += 1;
            if self.stopped.contains(&transmit.to) {
                continue;
            }
            let Some(core) = self
                .rounds
                .get_mut(&group)
                .and_then(|round| round.cores.get_mut(&transmit.to))
            else {
                continue;
            };
            // A refused message is counted in the core's stats and logged there.
            let _ = core.step(now, Origin::Peer(from), GroupInput::Message(transmit.bytes));
            drain(
                now,
                group,
                transmit.to,
                core,
                &self.stopped,
                &mut queue,
                &mut events,
            );
        }
    }

    fn handle_group_event(&mut self, group: B256, event: GroupEvent) -> Result<(), ShardError> {
        match event {
            GroupEvent::Certified {
                commitment,
                decision,
                certificate,
            } => {
                if let Some(known) = self.certified.get(&group) {
                    if known.batch == commitment.batch && known.root != commitment.root {
                        return Err(ShardError::Diverged {
                            what: format!(
                                "certified root of group {group} at batch {}",
                                commitment.batch
                            ),
                        });
                    }
                    if known.batch >= commitment.batch {
                        return Ok(()); // Another member's copy of a round already committed.
                    }
                }
                let members = self
                    .rounds
                    .get(&group)
                    .map(|round| round.group.members.clone())
                    .ok_or(ShardError::Diverged {
                        what: format!("certificate of unknown group {group}"),
                    })?;
                self.chain.commit_group_root_decided(
                    commitment.clone(),
                    decision,
                    &members,
                    &certificate,
                )?;
                debug!(target: "shard_node", %group, batch = commitment.batch, view = decision.view,
                    sequence = decision.sequence, "group root certified and committed");
                self.certified.insert(group, commitment.clone());
                self.certified_now.push(commitment);
            }
            GroupEvent::Refused {
                batch,
                proposed,
                own,
            } => {
                warn!(target: "shard_node", %group, batch, %proposed, %own, "a member refused a proposed root");
            }
            GroupEvent::ViewEntered { view, primary } => {
                debug!(target: "shard_node", %group, view, %primary, "group view change");
            }
            GroupEvent::Evidence(evidence) => {
                warn!(target: "shard_node", %group, offender = evidence.offender, "group member equivocated");
            }
        }
        Ok(())
    }

    /// The cores of `group`, for tests.
    #[cfg(test)]
    pub(super) fn cores(&self, group: &B256) -> Option<&BTreeMap<NodeId, GroupBft>> {
        self.rounds.get(group).map(|round| &round.cores)
    }
}

/// Moves a core's transmits into the queue (dropped if it is stopped) and its events out.
fn drain(
    now: Instant,
    group: B256,
    id: NodeId,
    core: &mut GroupBft,
    stopped: &std::collections::BTreeSet<NodeId>,
    queue: &mut VecDeque<(B256, NodeId, Transmit)>,
    events: &mut Vec<(B256, GroupEvent)>,
) {
    let down = stopped.contains(&id);
    while let Some(transmit) = core.poll_transmit(now) {
        if !down {
            queue.push_back((group, id, transmit));
        }
    }
    while let Some(event) = core.poll_event() {
        events.push((group, event));
    }
}
