//! Many DHT nodes in one deterministic process, for tests and the `dht` benchmark.
//!
//! Each node is a [`RoutingTable`]; a query is answered at once from the queried node's table
//! (which also records the querier, as a Kademlia node does for every request it serves). A
//! node that left without notice never answers: its queries fail. The queries a lookup has in
//! flight together are answered in a seeded random order, so one seed replays one run.

use std::collections::HashMap;

use alloy_primitives::Address;
use primitives::{
    id::{NodeId, k_nearest},
    time::Instant,
};
use rand::{Rng, SeedableRng, seq::SliceRandom};
use rand_chacha::ChaCha8Rng;

use super::{Lookup, LookupOutcome, RoutingTable};
use crate::constants::{
    DHT_ALPHA, DHT_BUCKET_SIZE, DHT_BUCKETS, DHT_QUERY_TIMEOUT, DHT_RESPONSE_NODES_MAX,
};

/// Simulated time one answered query takes, from sending to the answer (a round trip).
const ROUND_TRIP: std::time::Duration = std::time::Duration::from_millis(20);

struct SimulatedNode {
    table: RoutingTable,
    alive: bool,
}

/// A seeded in-process network of DHT nodes.
pub struct SimulatedNetwork {
    nodes: Vec<SimulatedNode>,
    index: HashMap<NodeId, usize>,
    rng: ChaCha8Rng,
    now: Instant,
}

impl SimulatedNetwork {
    /// An empty network whose every random choice comes from `seed`.
    pub fn new(seed: u64) -> Self {
        SimulatedNetwork {
            nodes: Vec::new(),
            index: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Instant::ZERO,
        }
    }

    /// A random node ID from the network's seed.
    pub fn random_id(&mut self) -> NodeId {
        NodeId(Address::from(self.rng.random::<[u8; 20]>()))
    }

    /// A random point of the ID space from the network's seed.
    pub fn random_target(&mut self) -> Address {
        Address::from(self.rng.random::<[u8; 20]>())
    }

    /// Node `id` joins through `bootstrap` (none for the first node): it puts `bootstrap` in its
    /// table, looks up its own ID, then refreshes each bucket farther than its nearest
    /// neighbour with a lookup of a random ID in it.
    pub fn join(&mut self, id: NodeId, bootstrap: Option<NodeId>) {
        assert!(!self.index.contains_key(&id), "node IDs are unique");
        self.index.insert(id, self.nodes.len());
        self.nodes.push(SimulatedNode {
            table: RoutingTable::new(id),
            alive: true,
        });
        let Some(bootstrap) = bootstrap else {
            return;
        };
        let now = self.now;
        let _ = self.node_mut(&id).table.handle_seen(now, bootstrap);
        self.lookup(id, id.0);
        let Some(nearest) = self.node(&id).table.nearest_bucket() else {
            return;
        };
        for bucket in nearest + 1..DHT_BUCKETS {
            let random = self.rng.random::<[u8; 20]>();
            let target = self.node(&id).table.refresh_target(bucket, random);
            self.lookup(id, target);
        }
    }

    /// Every live node refreshes its table by looking up its own ID, as Kademlia does
    /// periodically: contacts that fail leave their buckets and waiting nodes take their slots.
    pub fn refresh_all(&mut self) {
        for id in self.alive_ids() {
            self.lookup(id, id.0);
        }
    }

    /// Node `id` leaves without telling anyone.
    pub fn kill(&mut self, id: &NodeId) {
        self.node_mut(id).alive = false;
    }

    /// Every node ID, in joining order.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|node| node.table.local()).collect()
    }

    /// The IDs of nodes still alive, in joining order.
    pub fn alive_ids(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|node| node.alive)
            .map(|node| node.table.local())
            .collect()
    }

    /// The routing table of `id`.
    pub fn table(&self, id: &NodeId) -> &RoutingTable {
        &self.node(id).table
    }

    /// The k live nodes other than `asking` truly nearest to `target`, by looking at every
    /// node: what a lookup by `asking` should return (a lookup never returns its own node).
    pub fn true_closest(&self, target: &Address, asking: &NodeId) -> Vec<NodeId> {
        let mut others = self.alive_ids();
        others.retain(|id| id != asking);
        k_nearest(target, &others, DHT_BUCKET_SIZE)
    }

    /// Runs one lookup of `target` from node `from` to its end.
    pub fn lookup(&mut self, from: NodeId, target: Address) -> LookupOutcome {
        let seeds = self.node(&from).table.closest(&target, DHT_BUCKET_SIZE);
        let mut lookup = Lookup::new(from, target, &seeds);
        let mut batch = Vec::with_capacity(DHT_ALPHA);
        while !lookup.is_finished() {
            batch.clear();
            while let Some(peer) = lookup.poll_query(self.now) {
                batch.push(peer);
            }
            batch.shuffle(&mut self.rng);
            let mut any_failed = false;
            for peer in &batch {
                any_failed |= !self.answer(&mut lookup, from, *peer);
            }
            // A round ends when its last answer or its first timeout is in.
            self.now += if any_failed {
                DHT_QUERY_TIMEOUT
            } else {
                ROUND_TRIP
            };
            lookup.handle_timeout(self.now);
        }
        lookup.outcome().expect("the lookup finished")
    }

    /// Delivers a query from `from` to `peer` and its answer, if any. Returns whether it came.
    fn answer(&mut self, lookup: &mut Lookup, from: NodeId, peer: NodeId) -> bool {
        let now = self.now;
        let alive = self.index.get(&peer).is_some_and(|i| self.nodes[*i].alive);
        if !alive {
            lookup.handle_failure(&peer);
            self.node_mut(&from).table.handle_failure(&peer);
            return false;
        }
        let responder = self.node_mut(&peer);
        let nodes = responder
            .table
            .closest(&lookup.target(), DHT_RESPONSE_NODES_MAX);
        let _ = responder.table.handle_seen(now, from);
        lookup.handle_response(&peer, &nodes);
        let _ = self.node_mut(&from).table.handle_seen(now, peer);
        true
    }

    fn node(&self, id: &NodeId) -> &SimulatedNode {
        &self.nodes[*self.index.get(id).expect("a node of this network")]
    }

    fn node_mut(&mut self, id: &NodeId) -> &mut SimulatedNode {
        let index = *self.index.get(id).expect("a node of this network");
        &mut self.nodes[index]
    }
}
