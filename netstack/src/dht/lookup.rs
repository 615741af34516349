//! The iterative lookup: a sans-IO state machine over a shortlist of candidates.

use alloy_primitives::Address;
use primitives::{
    id::{Distance, NodeId, xor_distance},
    time::Instant,
};

use crate::constants::{
    DHT_ALPHA, DHT_BUCKET_SIZE, DHT_LOOKUP_CANDIDATES_MAX, DHT_LOOKUP_QUERIES_MAX,
    DHT_QUERY_TIMEOUT, DHT_RESPONSE_NODES_MAX,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    NotContacted,
    InFlight { deadline: Instant },
    Responded,
    Failed,
}

#[derive(Clone, Copy, Debug)]
struct Candidate {
    distance: Distance,
    id: NodeId,
    /// Responses on the chain that named this node: 0 for a node from the local table.
    depth: u8,
    state: State,
}

/// How a finished lookup ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LookupOutcome {
    /// The k nodes nearest to the target that answered, nearest first.
    pub closest: Vec<NodeId>,
    /// Sequential queries from the lookup's start to the one that reached the nearest
    /// answering node: 1 when it was in the local table. Zero if nothing answered.
    pub hops_nearest: u8,
    /// The same for the farthest of `closest`: sequential queries until all k were reached.
    pub hops_all: u8,
    /// Queries sent.
    pub queries: u32,
    /// Queries that failed (timed out or refused).
    pub failures: u32,
}

/// One iterative Kademlia lookup of the nodes nearest to a target.
///
/// The shortlist is kept sorted by distance. [`Lookup::poll_query`] walks it from the nearest:
/// it hands out the first node not yet asked while fewer than alpha = [`DHT_ALPHA`] queries are
/// in flight, and the lookup is finished once the k = [`DHT_BUCKET_SIZE`] nearest live
/// candidates have all answered (none nearer is still in flight), or nothing is left to ask.
///
/// Inputs: [`Lookup::handle_response`], [`Lookup::handle_failure`],
/// [`Lookup::handle_timeout`]. Drains, after every input: [`Lookup::poll_query`] until `None`,
/// then [`Lookup::poll_timeout`]. [`Lookup::outcome`] once [`Lookup::is_finished`].
#[derive(Clone, Debug)]
pub struct Lookup {
    local: NodeId,
    target: Address,
    candidates: Vec<Candidate>,
    in_flight: usize,
    queries: u32,
    failures: u32,
    finished: bool,
}

impl Lookup {
    /// A lookup of `target` by node `local`, starting from `seeds` (the local table's nearest).
    pub fn new(local: NodeId, target: Address, seeds: &[NodeId]) -> Self {
        let mut lookup = Lookup {
            local,
            target,
            candidates: Vec::new(),
            in_flight: 0,
            queries: 0,
            failures: 0,
            finished: false,
        };
        for seed in seeds {
            lookup.add_candidate(*seed, 0);
        }
        lookup
    }

    /// The point looked up.
    pub fn target(&self) -> Address {
        self.target
    }

    /// Whether the lookup is over.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The next node to query at `now`, if the lookup may send one more query.
    pub fn poll_query(&mut self, now: Instant) -> Option<NodeId> {
        if self.finished {
            return None;
        }
        if self.queries >= DHT_LOOKUP_QUERIES_MAX {
            if self.in_flight == 0 {
                self.finished = true;
            }
            return None;
        }
        let mut responded = 0;
        // A nearer query still in flight may answer: the k nearest are known only once every
        // live candidate nearer than the k-th answer has answered or failed.
        let mut nearer_in_flight = false;
        for candidate in self.candidates.iter_mut() {
            match candidate.state {
                State::Failed => {}
                State::InFlight { .. } => nearer_in_flight = true,
                State::Responded => {
                    responded += 1;
                    if responded == DHT_BUCKET_SIZE {
                        self.finished = !nearer_in_flight;
                        return None;
                    }
                }
                State::NotContacted => {
                    if self.in_flight >= DHT_ALPHA {
                        return None;
                    }
                    candidate.state = State::InFlight {
                        deadline: now + DHT_QUERY_TIMEOUT,
                    };
                    self.in_flight += 1;
                    self.queries += 1;
                    return Some(candidate.id);
                }
            }
        }
        if self.in_flight == 0 {
            self.finished = true;
        }
        None
    }

    /// `from` answered a query with the nodes it knows nearest to the target. An answer from a
    /// node not queried (or queried and already failed) is ignored; so are nodes beyond
    /// [`DHT_RESPONSE_NODES_MAX`]. Returns whether the answer was taken.
    pub fn handle_response(&mut self, from: &NodeId, nodes: &[NodeId]) -> bool {
        let Some(index) = self.in_flight_index(from) else {
            return false;
        };
        let depth = self.candidates[index].depth;
        self.candidates[index].state = State::Responded;
        self.in_flight -= 1;
        for node in nodes.iter().take(DHT_RESPONSE_NODES_MAX) {
            self.add_candidate(*node, depth.saturating_add(1));
        }
        true
    }

    /// A query to `from` failed. Returns whether it was in flight.
    pub fn handle_failure(&mut self, from: &NodeId) -> bool {
        let Some(index) = self.in_flight_index(from) else {
            return false;
        };
        self.candidates[index].state = State::Failed;
        self.in_flight -= 1;
        self.failures += 1;
        true
    }

    /// Fails every query whose deadline is at or before `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        for candidate in self.candidates.iter_mut() {
            if let State::InFlight { deadline } = candidate.state
                && deadline <= now
            {
                candidate.state = State::Failed;
                self.in_flight -= 1;
                self.failures += 1;
            }
        }
    }

    /// The earliest deadline of a query in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.candidates
            .iter()
            .filter_map(|candidate| match candidate.state {
                State::InFlight { deadline } => Some(deadline),
                _ => None,
            })
            .min()
    }

    /// The result, once finished.
    pub fn outcome(&self) -> Option<LookupOutcome> {
        if !self.finished {
            return None;
        }
        let answered: Vec<&Candidate> = self
            .candidates
            .iter()
            .filter(|candidate| candidate.state == State::Responded)
            .take(DHT_BUCKET_SIZE)
            .collect();
        Some(LookupOutcome {
            closest: answered.iter().map(|candidate| candidate.id).collect(),
            hops_nearest: answered.first().map_or(0, |c| c.depth + 1),
            hops_all: answered.iter().map(|c| c.depth + 1).max().unwrap_or(0),
            queries: self.queries,
            failures: self.failures,
        })
    }

    fn in_flight_index(&self, id: &NodeId) -> Option<usize> {
        let distance = xor_distance(&self.target, &id.0);
        let index = self
            .candidates
            .binary_search_by(|candidate| candidate.distance.cmp(&distance))
            .ok()?;
        matches!(self.candidates[index].state, State::InFlight { .. }).then_some(index)
    }

    fn add_candidate(&mut self, id: NodeId, depth: u8) {
        if id == self.local {
            return;
        }
        let distance = xor_distance(&self.target, &id.0);
        let Err(position) = self
            .candidates
            .binary_search_by(|candidate| candidate.distance.cmp(&distance))
        else {
            return; // Known already: the shallower depth stays.
        };
        if position >= DHT_LOOKUP_CANDIDATES_MAX {
            return;
        }
        self.candidates.insert(
            position,
            Candidate {
                distance,
                id,
                depth,
                state: State::NotContacted,
            },
        );
        // Forget the farthest candidates not in flight: they cannot be among the k nearest
        // unless nearly every nearer one fails.
        while self.candidates.len() > DHT_LOOKUP_CANDIDATES_MAX {
            let Some(last) = self
                .candidates
                .iter()
                .rposition(|c| !matches!(c.state, State::InFlight { .. }))
            else {
                break;
            };
            self.candidates.remove(last);
        }
    }
}
