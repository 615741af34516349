//! The group BFT rounds of the network's groups: every member of a group has a [`GroupBft`]
//! core per group it is in; the network feeds each the root its own store gives, sends the
//! cores' messages over its [`GroupTransport`] and feeds each member's core what arrives for
//! it (a stopped member sends and receives nothing), fires their timers at the `now` its caller
//! passes, and commits every certified root upstream with the round's commit certificate.
//!
//! With the in-memory transport a call delivers until no core has anything left to send; over
//! a network transport it sends, takes what has arrived so far, and returns: the rest is taken
//! by later calls ([`ShardNetwork::advance`], driven by [`ShardNetwork::poll_timeout`] and the
//! transport's [`ShardNetwork::transport_arrivals`]).

use std::{collections::BTreeMap, sync::Arc};

use consensus::{ReplicaConfig, Validator, ValidatorSet};
use primitives::Decode;
use primitives::{
    B256, NodeId,
    machine::{Machine, Origin},
    time::Instant,
};
use tokio::sync::Notify;
use tracing::{debug, warn};
use upper_chain::{ChainError, DepartureProof, GroupRootCommitment};

use super::{ShardError, ShardNetwork};
use crate::{
    bft::{
        Eviction, EvictionEvidence, GroupBft, GroupConfig, GroupEvent, GroupInput, GroupMessage,
        GroupStats,
    },
    groups::Group,
    transport::{GroupTransport, TransportStats},
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
        self.transport.stop(id);
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
        self.transport.resume(id);
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

    /// Carries the group rounds' messages over `transport` from now on (the network starts with
    /// an [`crate::transport::InMemoryTransport`]). Set it before the first round: what the old
    /// transport still held is dropped.
    pub fn set_transport(&mut self, transport: Box<dyn GroupTransport>) {
        self.transport = transport;
    }

    /// What the group transport has carried and dropped.
    pub fn transport_stats(&self) -> TransportStats {
        self.transport.stats()
    }

    /// Notified when a group message arrives over a network transport, so that a driver calls
    /// [`ShardNetwork::advance`] then; `None` for the in-memory transport.
    pub fn transport_arrivals(&self) -> Option<Arc<Notify>> {
        self.transport.arrivals()
    }

    /// Group messages delivered that no core of their receiver could take (an undecodable
    /// envelope, or a group the receiver has no core for). Refusals by a core are counted in
    /// its [`GroupStats::messages_refused`].
    pub fn unroutable_messages(&self) -> u64 {
        self.unroutable
    }

    /// The view timeouts of the group rounds' replicas, for groups whose cores are built from
    /// now on (set it before the first batch). Over a real network the timeout must exceed what
    /// a round takes, or groups change views for nothing.
    pub fn set_replica_config(&mut self, config: ReplicaConfig) {
        self.replica_config = config;
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
            // A byzantine member, in tests and simulations: it vouches for a root its store did
            // not compute.
            #[cfg(any(test, feature = "byzantine"))]
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
            let core = GroupBft::new(
                config,
                set.share_memory(),
                index,
                member.node.replica_keys(),
            );
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

    /// Sends what the cores have to send, then feeds every member's cores what the transport
    /// delivers (and sends what that produces) until the transport has nothing more now, and
    /// acts on the cores' events. Messages from or to a stopped member are dropped.
    pub(super) fn deliver(&mut self) -> Result<(), ShardError> {
        let now = self.now;
        let mut events: Vec<(B256, GroupEvent)> = Vec::new();
        for (group, round) in &mut self.rounds {
            for (id, core) in &mut round.cores {
                drain(
                    now,
                    *group,
                    *id,
                    core,
                    &self.stopped,
                    self.transport.as_mut(),
                    &mut events,
                );
            }
        }
        let mut delivered = 0usize;
        loop {
            for (group, event) in events.drain(..) {
                self.handle_group_event(group, event)?;
            }
            if delivered >= DELIVERIES_PER_CALL_MAX {
                warn!(target: "shard_node", delivered, "group messages still flowing; the rest waits for the next call");
                return Ok(());
            }
            let Some(delivery) = self.transport.try_recv() else {
                return Ok(());
            };
            delivered += 1;
            if self.stopped.contains(&delivery.to) {
                continue;
            }
            // The envelope says which of the receiver's cores the message is for; the core
            // checks everything else.
            let core = GroupMessage::from_wire(&delivery.bytes)
                .ok()
                .and_then(|envelope| self.rounds.get_mut(&envelope.group))
                .and_then(|round| {
                    round
                        .cores
                        .get_mut(&delivery.to)
                        .map(|core| (round.group.id, core))
                });
            let Some((group, core)) = core else {
                self.unroutable += 1;
                debug!(target: "shard_node", from = %delivery.from, to = %delivery.to, "group message for no core of its receiver; dropped");
                continue;
            };
            // A refused message is counted in the core's stats and logged there.
            let _ = core.step(
                now,
                Origin::Peer(delivery.from),
                GroupInput::Message(delivery.bytes),
            );
            drain(
                now,
                group,
                delivery.to,
                core,
                &self.stopped,
                self.transport.as_mut(),
                &mut events,
            );
        }
    }

    /// Credits the signers of a certificate of `group`'s last certified round that were not
    /// credited with it yet.
    fn credit_round(&mut self, group: B256, signers: &primitives::bls::SignerBitmap) {
        let (Some((batch, credited)), Some(round)) =
            (self.round_credits.get_mut(&group), self.rounds.get(&group))
        else {
            return;
        };
        let new: Vec<usize> = signers
            .signers()
            .filter(|index| credited.insert(*index))
            .collect();
        self.service
            .round(*batch, group, &round.group.members, new.into_iter());
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
                    if known.batch > commitment.batch {
                        return Ok(()); // A late copy of an older round.
                    }
                    if known.batch == commitment.batch {
                        // Another member's copy of a round already committed: its signers
                        // took part too, and are credited once.
                        self.credit_round(group, &certificate.signers);
                        return Ok(());
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
                self.round_credits.insert(
                    group,
                    (self.last_batch + 1, std::collections::BTreeSet::new()),
                );
                self.credit_round(group, &certificate.signers);
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
            GroupEvent::Evict(eviction) => self.record_eviction(group, eviction)?,
        }
        Ok(())
    }

    /// Records a quorum's eviction upstream, once: other members' copies of it, and an
    /// eviction the chain already holds, change nothing.
    fn record_eviction(&mut self, group: B256, eviction: Eviction) -> Result<(), ShardError> {
        let node = eviction.departure.node;
        if self.chain.departure(&node)?.is_some() {
            return Ok(());
        }
        let members = self
            .rounds
            .get(&group)
            .map(|round| round.group.members.to_vec())
            .ok_or(ShardError::Diverged {
                what: format!("eviction by unknown group {group}"),
            })?;
        let proof = DepartureProof::GroupCertificate {
            members: members.clone(),
            certificate: eviction.certificate,
        };
        match self
            .chain
            .record_departure(eviction.departure.clone(), &proof)
        {
            Ok(()) => {
                let why = EvictionEvidence::from_bytes(&eviction.departure.evidence)
                    .map(|evidence| evidence.describe())
                    .unwrap_or_default();
                warn!(target: "shard_node", node = %node, %group, from_epoch = eviction.departure.epoch,
                    "member evicted on the upper chain: {why}");
                for member in members.iter().filter(|member| **member != node) {
                    *self.evictions_seen.entry(*member).or_default() += 1;
                }
                self.evictions.push(eviction.departure);
            }
            // The chain moved past the group's epoch, or the node left meanwhile: nothing to do.
            Err(error @ (ChainError::BadEpoch { .. } | ChainError::AlreadyDeparted(_))) => {
                debug!(target: "shard_node", node = %node, %group, %error, "eviction not recorded");
            }
            Err(error) => return Err(error.into()),
        }
        Ok(())
    }

    /// Evictions this network's groups recorded on the upper chain, in order.
    pub fn evictions(&self) -> &[upper_chain::Departure] {
        &self.evictions
    }

    /// The cores of `group`, for tests.
    #[cfg(test)]
    pub(super) fn cores(&self, group: &B256) -> Option<&BTreeMap<NodeId, GroupBft>> {
        self.rounds.get(group).map(|round| &round.cores)
    }
}

/// Sends a core's transmits over the transport (dropped if its member is stopped) and moves its
/// events out.
fn drain(
    now: Instant,
    group: B256,
    id: NodeId,
    core: &mut GroupBft,
    stopped: &std::collections::BTreeSet<NodeId>,
    transport: &mut dyn GroupTransport,
    events: &mut Vec<(B256, GroupEvent)>,
) {
    let down = stopped.contains(&id);
    while let Some(transmit) = core.poll_transmit(now) {
        if !down {
            transport.send(id, transmit.to, transmit.bytes);
        }
    }
    while let Some(event) = core.poll_event() {
        events.push((group, event));
    }
}
