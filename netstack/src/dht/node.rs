//! [`DhtNode`]: one node of the node-ID DHT on a real network, sans-IO. Datagrams and
//! instants in; datagrams, events and the next deadline out. It owns a [`RoutingTable`], the
//! addresses of its entries, the requests in flight and the running [`Lookup`]s.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::SocketAddr,
    time::Duration,
};

use alloy_primitives::Address;
use primitives::{id::NodeId, time::Instant};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tracing::{debug, trace};

use super::{
    InsertOutcome, Lookup, RoutingTable,
    wire::{Contact, DhtBody, DhtMessage},
};
use crate::{
    constants::{DHT_BUCKET_SIZE, DHT_BUCKETS, DHT_RESPONSE_NODES_MAX},
    secure::NodeIdentity,
};

/// Requests one node keeps in flight at most; a request beyond it fails at once.
pub const DHT_PENDING_MAX: usize = 512;
/// Lookups one node runs at once at most (a join's own lookups included).
pub const DHT_LOOKUPS_MAX: usize = 64;
/// Joins one node runs at once at most.
pub const DHT_JOINS_MAX: usize = 4;
/// Node addresses one node remembers: its table's entries and their waiting replacements
/// (160 buckets of 8 plus 8 waiting, far fewer in practice).
pub const DHT_ADDRESSES_MAX: usize = 4_096;
const _: () = assert!(DHT_ADDRESSES_MAX >= 2 * DHT_BUCKETS * DHT_BUCKET_SIZE);
/// Contact addresses one lookup remembers from the answers it got.
pub const DHT_LOOKUP_ADDRESSES_MAX: usize = 2_048;
/// Datagrams waiting for the driver at most; beyond it the newest are dropped and counted (a
/// request dropped so is retried, an answer is asked again).
pub const DHT_OUTBOX_MAX: usize = 1_024;
/// Time since a full bucket's least recently seen entry last answered within which a newcomer
/// does not get it pinged.
pub const DHT_PROBE_QUIET: Duration = Duration::from_secs(30);
/// Default time to wait for an answer before sending a request again.
pub const DHT_RPC_TIMEOUT_DEFAULT: Duration = Duration::from_millis(1_000);
/// Default number of times a request is sent before its peer counts as failed.
pub const DHT_RPC_ATTEMPTS_DEFAULT: u8 = 3;

/// How a [`DhtNode`] times its requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DhtConfig {
    /// Time to wait for an answer before sending the request again.
    pub rpc_timeout: Duration,
    /// Sends of one request (the first included) before its peer counts as failed; at least 1.
    pub rpc_attempts: u8,
    /// Seed of every random choice (request IDs, refresh targets), so a run replays.
    pub seed: u64,
}

impl Default for DhtConfig {
    fn default() -> Self {
        DhtConfig {
            rpc_timeout: DHT_RPC_TIMEOUT_DEFAULT,
            rpc_attempts: DHT_RPC_ATTEMPTS_DEFAULT,
            seed: 0,
        }
    }
}

/// Names one lookup of a [`DhtNode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LookupId(pub u64);

/// Names one join of a [`DhtNode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JoinId(pub u64);

/// The result of a finished lookup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhtLookupResult {
    /// The point looked up.
    pub target: Address,
    /// The k nodes nearest to the target that answered (each proved its ID), nearest first.
    pub closest: Vec<Contact>,
    /// Sequential queries until the nearest answering node was reached.
    pub hops_nearest: u8,
    /// Sequential queries until all of `closest` were reached.
    pub hops_all: u8,
    /// Queries sent (retries not counted).
    pub queries: u32,
    /// Queries whose peer never answered, after every retry.
    pub failures: u32,
}

/// What the owner of a [`DhtNode`] must act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DhtEvent {
    /// A lookup started by [`DhtNode::start_lookup`] ended.
    LookupFinished {
        /// Which.
        id: LookupId,
        /// What it found.
        result: DhtLookupResult,
    },
    /// A join ended: the bootstrap answered, the self-lookup and the bucket refreshes ran.
    Joined {
        /// Which.
        id: JoinId,
        /// The bootstrap node, as it proved itself.
        bootstrap: Contact,
        /// Nodes in the routing table afterwards.
        table_len: usize,
    },
    /// The bootstrap never answered a ping; nothing was learned.
    JoinFailed {
        /// Which.
        id: JoinId,
        /// The address tried.
        bootstrap: SocketAddr,
    },
}

/// Why a [`DhtNode`] refused a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DhtBusy {
    /// [`DHT_LOOKUPS_MAX`] lookups are running.
    #[error("{max} lookups running already")]
    Lookups {
        /// The bound.
        max: usize,
    },
    /// [`DHT_JOINS_MAX`] joins are running.
    #[error("{max} joins running already")]
    Joins {
        /// The bound.
        max: usize,
    },
}

/// A datagram for the driver to send.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct DhtTransmit {
    /// The destination.
    pub to: SocketAddr,
    /// The signed datagram.
    pub bytes: Vec<u8>,
}

/// Counters of a [`DhtNode`]. Every dropped datagram is counted under exactly one reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DhtStats {
    /// Datagrams handed to [`DhtNode::handle_datagram`].
    pub datagrams_received: u64,
    /// Dropped: not a well-formed DHT message.
    pub malformed: u64,
    /// Dropped: well formed, but the signature proves another node than the sender named.
    pub forged: u64,
    /// Dropped: addressed to another node, or sent by this node's own ID.
    pub misdirected: u64,
    /// Dropped: an answer to no request in flight (never asked, or answered already).
    pub unsolicited: u64,
    /// Dropped: an answer to a request in flight, but from another node or address than the
    /// one asked, or of the wrong kind.
    pub wrong_node: u64,
    /// Requests answered.
    pub requests_answered: u64,
    /// Requests sent (first sends).
    pub requests_sent: u64,
    /// Requests sent again after a timeout.
    pub retries: u64,
    /// Requests that got no answer after every attempt.
    pub rpc_failures: u64,
    /// Requests that failed at once because [`DHT_PENDING_MAX`] were in flight.
    pub pending_full: u64,
    /// Requesters pinged back to prove they answer at their address before they enter the
    /// table.
    pub verifications: u64,
    /// Datagrams dropped because the outbox held [`DHT_OUTBOX_MAX`].
    pub outbox_full: u64,
}

/// Why a request was sent, so its answer or failure goes to the right place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// A find-node of a lookup.
    Lookup(LookupId),
    /// A ping proving that a requester answers at the address it asked from.
    Verify,
    /// A ping of the least recently seen entry of a full bucket a newcomer waits for.
    Probe,
    /// The first ping of a join, to an address whose node is not known yet.
    Bootstrap(JoinId),
}

struct Pending {
    to: SocketAddr,
    /// The node that must sign the answer; `None` only for a bootstrap ping.
    expected: Option<NodeId>,
    purpose: Purpose,
    bytes: Vec<u8>,
    deadline: Instant,
    attempts_left: u8,
}

struct ActiveLookup {
    lookup: Lookup,
    /// Where the contacts the answers named say they are (hearsay, checked by the signature
    /// of the answer to the query sent there).
    addresses: HashMap<NodeId, SocketAddr>,
    /// The join this lookup is part of.
    join: Option<JoinId>,
}

struct JoinState {
    bootstrap_addr: SocketAddr,
    bootstrap: Option<Contact>,
    /// Whether the self-lookup ended and `refreshes` was filled.
    refreshes_planned: bool,
    /// Bucket refreshes still to run, one at a time, after the self-lookup.
    refreshes: Vec<Address>,
}

/// One node of the node-ID DHT, sans-IO.
///
/// Every datagram is a signed [`DhtMessage`]; [`DhtMessage::decode`] proves its sender. A node
/// enters the routing table only after it proved its ID *at its address*: by answering a
/// request sent there, or, when it asked us first, by answering the ping this node sends back
/// to the address the request came from (a signed request copied off the wire and replayed
/// from elsewhere cannot answer that ping). Answers must come from the node and address asked,
/// to a request in flight; anything else is dropped and counted ([`DhtStats`]).
///
/// Requests are sent again every `rpc_timeout` up to `rpc_attempts` times; a peer that never
/// answers counts as failed in the lookup and the routing table. Lookups run the sans-IO
/// [`Lookup`] (alpha parallel queries, k = 8).
///
/// Commands: [`DhtNode::start_join`], [`DhtNode::start_lookup`]. Inputs:
/// [`DhtNode::handle_datagram`], [`DhtNode::handle_timeout`]. Drains, after every input or
/// command, in this order: [`DhtNode::poll_transmit`] until `None`, [`DhtNode::poll_event`]
/// until `None`, then [`DhtNode::poll_timeout`].
pub struct DhtNode {
    identity: NodeIdentity,
    config: DhtConfig,
    table: RoutingTable,
    addresses: HashMap<NodeId, SocketAddr>,
    pending: HashMap<u64, Pending>,
    /// Nodes with a verification or probe ping in flight, so each is pinged once at a time.
    pinging: HashSet<NodeId>,
    lookups: HashMap<LookupId, ActiveLookup>,
    joins: HashMap<JoinId, JoinState>,
    next_id: u64,
    rng: ChaCha8Rng,
    outbox: VecDeque<DhtTransmit>,
    events: VecDeque<DhtEvent>,
    stats: DhtStats,
    buffer: Vec<u8>,
}

impl DhtNode {
    /// A node with an empty table, signing as `identity`.
    pub fn new(identity: NodeIdentity, config: DhtConfig) -> Self {
        assert!(config.rpc_attempts >= 1, "a request is sent at least once");
        DhtNode {
            table: RoutingTable::new(identity.node_id()),
            identity,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            addresses: HashMap::new(),
            pending: HashMap::new(),
            pinging: HashSet::new(),
            lookups: HashMap::new(),
            joins: HashMap::new(),
            next_id: 0,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            stats: DhtStats::default(),
            buffer: Vec::new(),
        }
    }

    /// This node's ID.
    pub fn local(&self) -> NodeId {
        self.table.local()
    }

    /// The counters.
    pub fn stats(&self) -> DhtStats {
        self.stats
    }

    /// Requests waiting for an answer (or for their last timeout).
    pub fn requests_in_flight(&self) -> usize {
        self.pending.len()
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// Every node of the routing table with its proven address.
    pub fn contacts(&self) -> Vec<Contact> {
        (0..DHT_BUCKETS)
            .flat_map(|index| self.table.bucket(index))
            .filter_map(|entry| self.contact(&entry.id))
            .collect()
    }

    /// Joins the network through the node listening at `bootstrap`: pings it to learn its ID,
    /// looks up this node's own ID (so the nodes nearest to it learn it), then refreshes each
    /// bucket farther than the nearest neighbour with a lookup of a random ID in it. Ends with
    /// [`DhtEvent::Joined`] or [`DhtEvent::JoinFailed`].
    pub fn start_join(&mut self, now: Instant, bootstrap: SocketAddr) -> Result<JoinId, DhtBusy> {
        if self.joins.len() >= DHT_JOINS_MAX {
            return Err(DhtBusy::Joins { max: DHT_JOINS_MAX });
        }
        let id = JoinId(self.next_id());
        self.joins.insert(
            id,
            JoinState {
                bootstrap_addr: bootstrap,
                bootstrap: None,
                refreshes_planned: false,
                refreshes: Vec::new(),
            },
        );
        debug!(target: "netstack::dht", %bootstrap, "joining");
        if !self.send_request(now, bootstrap, None, Purpose::Bootstrap(id), DhtBody::Ping) {
            self.joins.remove(&id);
            self.events
                .push_back(DhtEvent::JoinFailed { id, bootstrap });
        }
        Ok(id)
    }

    /// Starts a lookup of the k nodes nearest to `target`; it ends with
    /// [`DhtEvent::LookupFinished`].
    pub fn start_lookup(&mut self, now: Instant, target: Address) -> Result<LookupId, DhtBusy> {
        self.start_lookup_for(now, target, None)
    }

    /// Handles one datagram that arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.datagrams_received += 1;
        let message = match DhtMessage::decode(datagram) {
            Ok(message) => message,
            Err(error) => {
                if error.is_forgery() {
                    self.stats.forged += 1;
                } else {
                    self.stats.malformed += 1;
                }
                debug!(target: "netstack::dht", %from, %error, "dropped a datagram");
                return;
            }
        };
        let local = self.local();
        if message.sender == local || message.recipient.is_some_and(|node| node != local) {
            self.stats.misdirected += 1;
            debug!(target: "netstack::dht", %from, sender = %message.sender, "misdirected");
            return;
        }
        if message.body.is_request() {
            self.handle_request(now, from, message);
        } else {
            self.handle_answer(now, from, message);
        }
    }

    /// Sends again every request whose deadline passed, and fails those out of attempts.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, pending)| pending.deadline <= now)
            .map(|(request_id, _)| *request_id)
            .collect();
        for request_id in due {
            let pending = self
                .pending
                .get_mut(&request_id)
                .expect("collected from the map");
            if pending.attempts_left > 0 {
                pending.attempts_left -= 1;
                pending.deadline = now + self.config.rpc_timeout;
                let transmit = DhtTransmit {
                    to: pending.to,
                    bytes: pending.bytes.clone(),
                };
                self.stats.retries += 1;
                self.push_transmit(transmit);
            } else {
                let pending = self.pending.remove(&request_id).expect("present");
                self.handle_rpc_failure(now, pending);
            }
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<DhtTransmit> {
        self.outbox.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<DhtEvent> {
        self.events.pop_front()
    }

    /// When [`DhtNode::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.pending.values().map(|pending| pending.deadline).min()
    }

    fn handle_request(&mut self, now: Instant, from: SocketAddr, message: DhtMessage) {
        let is_find_node = matches!(message.body, DhtBody::FindNode { .. });
        let body = match message.body {
            DhtBody::Ping => DhtBody::Pong { observed: from },
            DhtBody::FindNode { target } => DhtBody::Nodes {
                contacts: self
                    .table
                    .closest(&target, DHT_RESPONSE_NODES_MAX)
                    .iter()
                    .filter_map(|id| self.contact(id))
                    .collect(),
            },
            DhtBody::Pong { .. } | DhtBody::Nodes { .. } => unreachable!("not a request"),
        };
        let answer = DhtMessage {
            request_id: message.request_id,
            sender: self.local(),
            recipient: Some(message.sender),
            body,
        };
        answer.encode_signed(&self.identity, &mut self.buffer);
        let bytes = self.buffer.clone();
        self.stats.requests_answered += 1;
        self.push_transmit(DhtTransmit { to: from, bytes });
        // Only a find-node teaches us its sender. A ping is answered and nothing more: pings
        // are what verifications and probes send, and learning from them would let two nodes
        // that each keep the other waiting in a full bucket verify each other forever.
        if is_find_node {
            self.learn_requester(now, message.sender, from);
        }
    }

    /// A node asked us something from `from`: if it proved itself at that address before
    /// (in the table or waiting for a slot), it is seen again; else it is pinged back there
    /// before it may enter the table.
    fn learn_requester(&mut self, now: Instant, id: NodeId, from: SocketAddr) {
        if self.addresses.get(&id) == Some(&from) {
            self.seen(now, id);
            return;
        }
        if self.pinging.contains(&id) {
            return;
        }
        self.stats.verifications += 1;
        if self.send_request(now, from, Some(id), Purpose::Verify, DhtBody::Ping) {
            self.pinging.insert(id);
        }
    }

    fn handle_answer(&mut self, now: Instant, from: SocketAddr, message: DhtMessage) {
        let Some(pending) = self.pending.get(&message.request_id) else {
            self.stats.unsolicited += 1;
            debug!(target: "netstack::dht", %from, sender = %message.sender, "unsolicited answer");
            return;
        };
        let expects_nodes = matches!(pending.purpose, Purpose::Lookup(_));
        let is_nodes = matches!(message.body, DhtBody::Nodes { .. });
        if pending.to != from
            || pending.expected.is_some_and(|node| node != message.sender)
            || expects_nodes != is_nodes
        {
            // The request stays in flight: the node asked may still answer.
            self.stats.wrong_node += 1;
            debug!(target: "netstack::dht", %from, sender = %message.sender,
                expected = ?pending.expected, "answer from the wrong node");
            return;
        }
        let pending = self
            .pending
            .remove(&message.request_id)
            .expect("looked up above");
        let sender = Contact {
            id: message.sender,
            addr: from,
        };
        trace!(target: "netstack::dht", node = %sender.id, kind = message.body.name(), "answer");
        if matches!(pending.purpose, Purpose::Verify | Purpose::Probe) {
            self.pinging.remove(&sender.id);
        }
        self.learn_proven(now, sender);
        match (pending.purpose, message.body) {
            (Purpose::Lookup(id), DhtBody::Nodes { contacts }) => {
                self.handle_nodes(now, id, sender.id, &contacts);
            }
            (Purpose::Bootstrap(join), _) => self.handle_bootstrap(now, join, sender),
            _ => {}
        }
    }

    /// `contact` proved its ID at its address: it may enter the table.
    fn learn_proven(&mut self, now: Instant, contact: Contact) {
        if !self.addresses.contains_key(&contact.id) && self.addresses.len() >= DHT_ADDRESSES_MAX {
            let table = &self.table;
            self.addresses.retain(|id, _| table.contains(id));
            if self.addresses.len() >= DHT_ADDRESSES_MAX {
                return;
            }
        }
        self.addresses.insert(contact.id, contact.addr);
        self.seen(now, contact.id);
    }

    /// `id`, proven at its address, was seen at `now`. If it waits for a slot in a full bucket,
    /// the bucket's least recently seen entry is pinged, unless it was seen within
    /// [`DHT_PROBE_QUIET`]: a stable entry keeps its slot without a ping per newcomer.
    fn seen(&mut self, now: Instant, id: NodeId) {
        let InsertOutcome::Cached { probe } = self.table.handle_seen(now, id) else {
            return;
        };
        let last_seen = self.table.bucket_index(&probe).and_then(|index| {
            self.table
                .bucket(index)
                .iter()
                .find(|entry| entry.id == probe)
                .map(|entry| entry.last_seen)
        });
        let quiet =
            last_seen.is_some_and(|seen| now.saturating_duration_since(seen) < DHT_PROBE_QUIET);
        if quiet || self.pinging.contains(&probe) {
            return;
        }
        if let Some(addr) = self.addresses.get(&probe).copied()
            && self.send_request(now, addr, Some(probe), Purpose::Probe, DhtBody::Ping)
        {
            self.pinging.insert(probe);
        }
    }

    fn handle_nodes(&mut self, now: Instant, id: LookupId, from: NodeId, contacts: &[Contact]) {
        let Some(active) = self.lookups.get_mut(&id) else {
            return;
        };
        for contact in contacts {
            if active.addresses.len() < DHT_LOOKUP_ADDRESSES_MAX {
                active.addresses.entry(contact.id).or_insert(contact.addr);
            }
        }
        let ids: Vec<NodeId> = contacts.iter().map(|contact| contact.id).collect();
        active.lookup.handle_response(&from, &ids);
        self.pump_lookup(now, id);
    }

    fn handle_bootstrap(&mut self, now: Instant, join: JoinId, bootstrap: Contact) {
        let Some(state) = self.joins.get_mut(&join) else {
            return;
        };
        state.bootstrap = Some(bootstrap);
        let local = self.local();
        if self.start_lookup_for(now, local.0, Some(join)).is_err() {
            self.finish_join(join);
        }
    }

    fn handle_rpc_failure(&mut self, now: Instant, pending: Pending) {
        self.stats.rpc_failures += 1;
        debug!(target: "netstack::dht", to = %pending.to, expected = ?pending.expected,
            purpose = ?pending.purpose, "no answer");
        match pending.purpose {
            Purpose::Lookup(id) => {
                let node = pending.expected.expect("a lookup queries a known node");
                self.table.handle_failure(&node);
                if let Some(active) = self.lookups.get_mut(&id) {
                    active.lookup.handle_failure(&node);
                    self.pump_lookup(now, id);
                }
            }
            Purpose::Probe => {
                let node = pending.expected.expect("a probe pings a known node");
                self.pinging.remove(&node);
                self.table.handle_failure(&node);
            }
            Purpose::Verify => {
                // The requester did not answer at its address; the table entry of that ID, if
                // any, is another address's and keeps its standing.
                let node = pending.expected.expect("a verification pings a named node");
                self.pinging.remove(&node);
            }
            Purpose::Bootstrap(join) => {
                if let Some(state) = self.joins.remove(&join) {
                    self.events.push_back(DhtEvent::JoinFailed {
                        id: join,
                        bootstrap: state.bootstrap_addr,
                    });
                }
            }
        }
    }

    fn start_lookup_for(
        &mut self,
        now: Instant,
        target: Address,
        join: Option<JoinId>,
    ) -> Result<LookupId, DhtBusy> {
        if self.lookups.len() >= DHT_LOOKUPS_MAX {
            return Err(DhtBusy::Lookups {
                max: DHT_LOOKUPS_MAX,
            });
        }
        let id = LookupId(self.next_id());
        let seeds = self.table.closest(&target, DHT_BUCKET_SIZE);
        self.lookups.insert(
            id,
            ActiveLookup {
                lookup: Lookup::new(self.local(), target, &seeds),
                addresses: HashMap::new(),
                join,
            },
        );
        self.pump_lookup(now, id);
        Ok(id)
    }

    /// Sends the queries the lookup wants, and ends it once it is finished.
    fn pump_lookup(&mut self, now: Instant, id: LookupId) {
        loop {
            let Some(active) = self.lookups.get_mut(&id) else {
                return;
            };
            let Some(node) = active.lookup.poll_query(now) else {
                break;
            };
            let target = active.lookup.target();
            // A proven address beats what an answer said.
            let addr = self
                .addresses
                .get(&node)
                .or_else(|| active.addresses.get(&node))
                .copied();
            let sent = addr.is_some_and(|addr| {
                self.send_request(
                    now,
                    addr,
                    Some(node),
                    Purpose::Lookup(id),
                    DhtBody::FindNode { target },
                )
            });
            if !sent {
                let active = self.lookups.get_mut(&id).expect("present above");
                active.lookup.handle_failure(&node);
            }
        }
        let active = self.lookups.get(&id).expect("present in the loop");
        let Some(outcome) = active.lookup.outcome() else {
            return;
        };
        let active = self.lookups.remove(&id).expect("present");
        let closest = outcome
            .closest
            .iter()
            .filter_map(|node| {
                self.contact(node).or_else(|| {
                    active.addresses.get(node).map(|addr| Contact {
                        id: *node,
                        addr: *addr,
                    })
                })
            })
            .collect();
        let result = DhtLookupResult {
            target: active.lookup.target(),
            closest,
            hops_nearest: outcome.hops_nearest,
            hops_all: outcome.hops_all,
            queries: outcome.queries,
            failures: outcome.failures,
        };
        debug!(target: "netstack::dht", lookup = id.0, queries = result.queries,
            failures = result.failures, found = result.closest.len(), "lookup finished");
        match active.join {
            Some(join) => self.continue_join(now, join),
            None => self
                .events
                .push_back(DhtEvent::LookupFinished { id, result }),
        }
    }

    /// A lookup of `join` ended: after the self-lookup, plan the bucket refreshes; run the
    /// next one, or finish.
    fn continue_join(&mut self, now: Instant, join: JoinId) {
        let planned = match self.joins.get(&join) {
            Some(state) => state.refreshes_planned,
            None => return,
        };
        if !planned {
            let mut targets = Vec::new();
            if let Some(nearest) = self.table.nearest_bucket() {
                for bucket in nearest + 1..DHT_BUCKETS {
                    let mut random = [0u8; 20];
                    self.rng.fill_bytes(&mut random);
                    targets.push(self.table.refresh_target(bucket, random));
                }
            }
            let state = self.joins.get_mut(&join).expect("present above");
            state.refreshes_planned = true;
            state.refreshes = targets;
        }
        let state = self.joins.get_mut(&join).expect("present above");
        // One refresh at a time: a far neighbour may leave up to 159 buckets to refresh.
        match state.refreshes.pop() {
            Some(target) => {
                if self.start_lookup_for(now, target, Some(join)).is_err() {
                    self.finish_join(join);
                }
            }
            None => self.finish_join(join),
        }
    }

    fn finish_join(&mut self, join: JoinId) {
        let Some(state) = self.joins.remove(&join) else {
            return;
        };
        let bootstrap = state
            .bootstrap
            .expect("a join finishes after its bootstrap answered");
        debug!(target: "netstack::dht", bootstrap = %bootstrap.id, table = self.table.len(),
            "joined");
        self.events.push_back(DhtEvent::Joined {
            id: join,
            bootstrap,
            table_len: self.table.len(),
        });
    }

    /// Sends a new request; false if too many are in flight.
    fn send_request(
        &mut self,
        now: Instant,
        to: SocketAddr,
        expected: Option<NodeId>,
        purpose: Purpose,
        body: DhtBody,
    ) -> bool {
        if self.pending.len() >= DHT_PENDING_MAX {
            self.stats.pending_full += 1;
            return false;
        }
        let mut request_id = self.rng.next_u64();
        while self.pending.contains_key(&request_id) {
            request_id = self.rng.next_u64();
        }
        let message = DhtMessage {
            request_id,
            sender: self.local(),
            recipient: expected,
            body,
        };
        message.encode_signed(&self.identity, &mut self.buffer);
        let bytes = self.buffer.clone();
        self.pending.insert(
            request_id,
            Pending {
                to,
                expected,
                purpose,
                bytes: bytes.clone(),
                deadline: now + self.config.rpc_timeout,
                attempts_left: self.config.rpc_attempts - 1,
            },
        );
        self.stats.requests_sent += 1;
        self.push_transmit(DhtTransmit { to, bytes });
        true
    }

    fn push_transmit(&mut self, transmit: DhtTransmit) {
        if self.outbox.len() >= DHT_OUTBOX_MAX {
            self.stats.outbox_full += 1;
            return;
        }
        self.outbox.push_back(transmit);
    }

    fn contact(&self, id: &NodeId) -> Option<Contact> {
        self.addresses.get(id).map(|addr| Contact {
            id: *id,
            addr: *addr,
        })
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use primitives::keys::AccountKey;

    use super::*;
    use crate::dht::wire::DHT_DATAGRAM_BYTES_MAX;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }

    fn node(seed: u64) -> DhtNode {
        let identity = NodeIdentity::new(AccountKey::from_seed(seed));
        DhtNode::new(
            identity,
            DhtConfig {
                seed,
                ..DhtConfig::default()
            },
        )
    }

    /// Nodes at ports 1.., every datagram delivered at once at `now` until none is left.
    struct Wires {
        nodes: Vec<DhtNode>,
        delivered: usize,
    }

    impl Wires {
        fn deliver_all(&mut self, now: Instant) {
            loop {
                let mut moved = false;
                for index in 0..self.nodes.len() {
                    while let Some(transmit) = self.nodes[index].poll_transmit() {
                        moved = true;
                        self.delivered += 1;
                        let from = addr(index as u16 + 1);
                        let to = usize::from(transmit.to.port()) - 1;
                        if let Some(target) = self.nodes.get_mut(to) {
                            target.handle_datagram(now, from, &transmit.bytes);
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
        }
    }

    #[test]
    fn a_request_is_sent_again_on_the_clock_passed_in_then_fails() {
        let mut alone = node(1);
        let start = Instant::from_micros(5);
        let join = alone.start_join(start, addr(9)).expect("a join slot");
        let first = alone.poll_transmit().expect("the bootstrap ping");
        assert!(first.bytes.len() <= DHT_DATAGRAM_BYTES_MAX);
        assert_eq!(alone.poll_timeout(), Some(start + DHT_RPC_TIMEOUT_DEFAULT));
        // Not before its deadline.
        alone.handle_timeout(start + (DHT_RPC_TIMEOUT_DEFAULT - Duration::from_micros(1)));
        assert_eq!(alone.poll_transmit(), None);
        for _ in 1..DHT_RPC_ATTEMPTS_DEFAULT {
            let now = alone.poll_timeout().expect("in flight");
            alone.handle_timeout(now);
            assert_eq!(
                alone.poll_transmit(),
                Some(first.clone()),
                "the same datagram again"
            );
            assert_eq!(alone.poll_event(), None);
        }
        let now = alone.poll_timeout().expect("the last attempt");
        alone.handle_timeout(now);
        assert_eq!(alone.poll_transmit(), None);
        assert_eq!(
            alone.poll_event(),
            Some(DhtEvent::JoinFailed {
                id: join,
                bootstrap: addr(9)
            })
        );
        assert_eq!(alone.poll_timeout(), None);
        let stats = alone.stats();
        assert_eq!(stats.retries, u64::from(DHT_RPC_ATTEMPTS_DEFAULT) - 1);
        assert_eq!(stats.rpc_failures, 1);
        assert!(alone.table().is_empty());
    }

    #[test]
    fn nodes_join_learn_each_other_and_a_late_answer_is_unsolicited() {
        let mut wires = Wires {
            nodes: (1..=6).map(node).collect(),
            delivered: 0,
        };
        let now = Instant::from_micros(1_000);
        for index in 1..wires.nodes.len() {
            let join = wires.nodes[index].start_join(now, addr(1)).expect("slot");
            wires.deliver_all(now);
            let bootstrap = wires.nodes[0].local();
            assert!(matches!(
                wires.nodes[index].poll_event(),
                Some(DhtEvent::Joined { id, bootstrap: contact, .. })
                    if id == join && contact == Contact { id: bootstrap, addr: addr(1) }
            ));
        }
        // Six nodes, all in each other's tables at their addresses, nothing in flight.
        for (index, node) in wires.nodes.iter().enumerate() {
            assert_eq!(node.requests_in_flight(), 0);
            assert_eq!(node.table().len(), 5, "node {index}");
            for contact in node.contacts() {
                let other = wires.nodes.iter().position(|n| n.local() == contact.id);
                assert_eq!(Some(usize::from(contact.addr.port()) - 1), other);
            }
        }
        // An answer that arrives after its request ended is counted and changes nothing.
        let target = wires.nodes[3].local().0;
        let lookup = wires.nodes[0].start_lookup(now, target).expect("slot");
        let query = wires.nodes[0].poll_transmit().expect("a query");
        let to = usize::from(query.to.port()) - 1;
        wires.nodes[to].handle_datagram(now, addr(1), &query.bytes);
        let answer = wires.nodes[to].poll_transmit().expect("an answer");
        wires.nodes[0].handle_datagram(now, query.to, &answer.bytes);
        wires.deliver_all(now);
        let Some(DhtEvent::LookupFinished { id, result }) = wires.nodes[0].poll_event() else {
            panic!("the lookup finished");
        };
        assert_eq!(id, lookup);
        assert_eq!(
            result.closest.first().map(|c| c.id),
            Some(wires.nodes[3].local())
        );
        assert_eq!(result.closest.len(), 5);
        let before = wires.nodes[0].stats();
        wires.nodes[0].handle_datagram(now, query.to, &answer.bytes);
        assert_eq!(wires.nodes[0].stats().unsolicited, before.unsolicited + 1);
        // The same answer from another address is the wrong node's while its request waits.
        let again = wires.nodes[0].start_lookup(now, target).expect("slot");
        let query = wires.nodes[0].poll_transmit().expect("a query");
        let to = usize::from(query.to.port()) - 1;
        wires.nodes[to].handle_datagram(now, addr(1), &query.bytes);
        let answer = wires.nodes[to].poll_transmit().expect("an answer");
        wires.nodes[0].handle_datagram(now, addr(77), &answer.bytes);
        assert_eq!(wires.nodes[0].stats().wrong_node, before.wrong_node + 1);
        wires.nodes[0].handle_datagram(now, query.to, &answer.bytes);
        wires.deliver_all(now);
        assert!(matches!(
            wires.nodes[0].poll_event(),
            Some(DhtEvent::LookupFinished { id, .. }) if id == again
        ));
    }
}
