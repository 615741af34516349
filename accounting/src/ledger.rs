//! Soft accounting between peers, in the manner of a SWAP ledger without cheques.
//!
//! Every node keeps, per peer, the service it gave that peer and the service it received from
//! it, in three kinds ([`Service`]). Each kind has a price in ledger units, so one balance per
//! peer says who has taken more: positive when the peer owes us service, negative when we owe
//! it. Configured bounds say how far either side may go. A balance crossing a bound is reported
//! once, as a [`LedgerEvent`], and again only after it has come back well inside (a tenth of the
//! bound of hysteresis), so a balance hovering at the bound does not flood the logs.
//!
//! Nothing is refused and no money moves here: the ledger only makes the imbalance visible,
//! in logs and in metrics, before anyone settles anything.

use std::collections::HashMap;

use primitives::NodeId;

/// A kind of service one node gives another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// Bytes a relay forwarded for a peer behind NAT (both directions).
    RelayedBytes,
    /// State sync slices served to a joining or lagging peer.
    SyncSlices,
    /// Strong-DA chunks served to a peer.
    DaChunks,
}

impl Service {
    /// Every kind, in ledger order.
    pub const ALL: [Service; 3] = [
        Service::RelayedBytes,
        Service::SyncSlices,
        Service::DaChunks,
    ];

    fn index(self) -> usize {
        match self {
            Service::RelayedBytes => 0,
            Service::SyncSlices => 1,
            Service::DaChunks => 2,
        }
    }

    /// The name used in logs and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            Service::RelayedBytes => "relayed_bytes",
            Service::SyncSlices => "sync_slices",
            Service::DaChunks => "da_chunks",
        }
    }
}

/// Prices and bounds of a ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Ledger units per unit of each service, indexed as [`Service::ALL`].
    pub prices: [u64; 3],
    /// How far a peer may take more than it gives (balance above it is out of bounds).
    pub peer_debt_max: u64,
    /// How far we may take more than we give (balance below its negation is out of bounds).
    pub own_debt_max: u64,
}

impl Default for LedgerConfig {
    /// A byte costs one unit; a sync slice or a DA chunk costs what moving 4 KiB does. Either
    /// side may be 64 MiB of relaying ahead before it is flagged.
    fn default() -> Self {
        LedgerConfig {
            prices: [1, 4096, 4096],
            peer_debt_max: 64 << 20,
            own_debt_max: 64 << 20,
        }
    }
}

impl LedgerConfig {
    /// The price of one unit of `service`.
    pub fn price(&self, service: Service) -> u64 {
        self.prices[service.index()]
    }
}

/// Which side of its bounds a peer's balance is on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Standing {
    /// Within both bounds.
    #[default]
    Within,
    /// The peer took more than [`LedgerConfig::peer_debt_max`] beyond what it gave.
    PeerOverdrawn,
    /// We took more than [`LedgerConfig::own_debt_max`] beyond what we gave.
    SelfOverdrawn,
}

/// What the ledger knows of one peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerAccount {
    /// Service given to the peer, indexed as [`Service::ALL`].
    pub given: [u64; 3],
    /// Service received from the peer, indexed as [`Service::ALL`].
    pub received: [u64; 3],
    /// Where the balance stood at the last crossing.
    pub standing: Standing,
}

impl PeerAccount {
    /// Units given minus units received, at `config`'s prices: positive when the peer owes us.
    pub fn balance(&self, config: &LedgerConfig) -> i128 {
        Service::ALL
            .iter()
            .map(|&service| {
                let price = i128::from(config.price(service));
                let index = service.index();
                price * (i128::from(self.given[index]) - i128::from(self.received[index]))
            })
            .sum()
    }

    /// Service given of one kind.
    pub fn given(&self, service: Service) -> u64 {
        self.given[service.index()]
    }

    /// Service received of one kind.
    pub fn received(&self, service: Service) -> u64 {
        self.received[service.index()]
    }
}

/// A balance crossed a bound, out or back in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LedgerEvent {
    /// The balance left its bounds.
    OutOfBounds {
        /// The peer.
        peer: NodeId,
        /// Which bound.
        standing: Standing,
        /// The balance after the service that crossed it.
        balance: i128,
        /// The peer's account at that moment (the figures to log).
        account: PeerAccount,
    },
    /// The balance came back well inside its bounds.
    BackWithin {
        /// The peer.
        peer: NodeId,
        /// The balance now.
        balance: i128,
    },
}

/// Per-peer soft accounting of one node. A sans-IO value: callers record service as it happens
/// and log or export what it returns.
#[derive(Debug, Default)]
pub struct PeerLedger {
    config: LedgerConfig,
    accounts: HashMap<NodeId, PeerAccount>,
}

impl PeerLedger {
    /// An empty ledger.
    pub fn new(config: LedgerConfig) -> Self {
        PeerLedger {
            config,
            accounts: HashMap::new(),
        }
    }

    /// The ledger's prices and bounds.
    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// Records `amount` of `service` given to `peer`.
    pub fn gave(&mut self, peer: NodeId, service: Service, amount: u64) -> Option<LedgerEvent> {
        let account = self.accounts.entry(peer).or_default();
        let slot = &mut account.given[service.index()];
        *slot = slot.saturating_add(amount);
        self.settle_standing(peer)
    }

    /// Records `amount` of `service` received from `peer`.
    pub fn received(&mut self, peer: NodeId, service: Service, amount: u64) -> Option<LedgerEvent> {
        let account = self.accounts.entry(peer).or_default();
        let slot = &mut account.received[service.index()];
        *slot = slot.saturating_add(amount);
        self.settle_standing(peer)
    }

    /// Records that the service given to `peer` has reached `total` in all, for callers that
    /// read cumulative counters (a relay's per-peer bytes). A total below the one recorded
    /// changes nothing: counters only grow.
    pub fn gave_total(
        &mut self,
        peer: NodeId,
        service: Service,
        total: u64,
    ) -> Option<LedgerEvent> {
        let given = self
            .accounts
            .get(&peer)
            .map_or(0, |account| account.given(service));
        self.gave(peer, service, total.saturating_sub(given))
    }

    /// Records that the service received from `peer` has reached `total` in all (see
    /// [`Self::gave_total`]).
    pub fn received_total(
        &mut self,
        peer: NodeId,
        service: Service,
        total: u64,
    ) -> Option<LedgerEvent> {
        let received = self
            .accounts
            .get(&peer)
            .map_or(0, |account| account.received(service));
        self.received(peer, service, total.saturating_sub(received))
    }

    /// The peer's balance: positive when it owes us service.
    pub fn balance(&self, peer: &NodeId) -> i128 {
        self.accounts
            .get(peer)
            .map_or(0, |account| account.balance(&self.config))
    }

    /// The peer's account, if it ever gave or took service.
    pub fn account(&self, peer: &NodeId) -> Option<&PeerAccount> {
        self.accounts.get(peer)
    }

    /// Every peer with an account, in no particular order.
    pub fn peers(&self) -> impl Iterator<Item = (&NodeId, &PeerAccount)> {
        self.accounts.iter()
    }

    /// How many peers are out of bounds now.
    pub fn out_of_bounds(&self) -> usize {
        self.accounts
            .values()
            .filter(|account| account.standing != Standing::Within)
            .count()
    }

    /// Publishes the balance of every peer and the count out of bounds as gauges:
    /// `tickrate_peer_balance{peer}` and `tickrate_peers_out_of_bounds`.
    pub fn export_metrics(&self) {
        for (peer, account) in &self.accounts {
            // A gauge is an f64; balances far beyond 2^53 units lose precision only in the
            // metric, never in the ledger.
            metrics::gauge!(crate::metrics::PEER_BALANCE, "peer" => peer.0.to_string())
                .set(account.balance(&self.config) as f64);
        }
        metrics::gauge!(crate::metrics::PEERS_OUT_OF_BOUNDS).set(self.out_of_bounds() as f64);
    }

    fn settle_standing(&mut self, peer: NodeId) -> Option<LedgerEvent> {
        let config = &self.config;
        let account = self.accounts.get_mut(&peer)?;
        let balance = account.balance(config);
        let peer_bound = i128::from(config.peer_debt_max);
        let own_bound = i128::from(config.own_debt_max);
        let now = if balance > peer_bound {
            Standing::PeerOverdrawn
        } else if balance < -own_bound {
            Standing::SelfOverdrawn
        } else {
            Standing::Within
        };
        match (account.standing, now) {
            (before, Standing::Within) if before != Standing::Within => {
                // Back in only once well inside, so a balance at the bound is reported once.
                let inside = match before {
                    Standing::PeerOverdrawn => balance <= peer_bound - peer_bound / 10,
                    _ => balance >= -(own_bound - own_bound / 10),
                };
                if !inside {
                    return None;
                }
                account.standing = Standing::Within;
                tracing::info!(peer = %peer.0, balance, "peer back within its service bounds");
                Some(LedgerEvent::BackWithin { peer, balance })
            }
            (before, out) if out != Standing::Within && before != out => {
                account.standing = out;
                tracing::warn!(
                    peer = %peer.0,
                    balance,
                    ?out,
                    relayed_given = account.given(Service::RelayedBytes),
                    relayed_received = account.received(Service::RelayedBytes),
                    slices_given = account.given(Service::SyncSlices),
                    slices_received = account.received(Service::SyncSlices),
                    chunks_given = account.given(Service::DaChunks),
                    chunks_received = account.received(Service::DaChunks),
                    "peer out of its service bounds"
                );
                Some(LedgerEvent::OutOfBounds {
                    peer,
                    standing: out,
                    balance,
                    account: account.clone(),
                })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use primitives::Address;

    use super::*;

    fn peer(byte: u8) -> NodeId {
        NodeId(Address::repeat_byte(byte))
    }

    fn small() -> LedgerConfig {
        LedgerConfig {
            prices: [1, 100, 50],
            peer_debt_max: 1_000,
            own_debt_max: 500,
        }
    }

    #[test]
    fn balance_weighs_each_service_by_its_price() {
        let mut ledger = PeerLedger::new(small());
        ledger.gave(peer(1), Service::RelayedBytes, 300);
        ledger.gave(peer(1), Service::SyncSlices, 2);
        ledger.received(peer(1), Service::DaChunks, 3);
        assert_eq!(ledger.balance(&peer(1)), 300 + 200 - 150);
        assert_eq!(ledger.balance(&peer(2)), 0);
    }

    #[test]
    fn a_crossing_is_reported_once_until_the_balance_comes_well_back() {
        let mut ledger = PeerLedger::new(small());
        let mut events = Vec::new();
        // Creep past the bound and hover around it.
        for _ in 0..30 {
            events.extend(ledger.gave(peer(1), Service::RelayedBytes, 40));
            events.extend(ledger.received(peer(1), Service::RelayedBytes, 5));
        }
        let out: Vec<_> = events
            .iter()
            .filter(|event| matches!(event, LedgerEvent::OutOfBounds { .. }))
            .collect();
        assert_eq!(out.len(), 1, "{events:?}");
        assert!(matches!(
            out[0],
            LedgerEvent::OutOfBounds { standing: Standing::PeerOverdrawn, balance, .. } if *balance > 1_000
        ));
        assert_eq!(ledger.out_of_bounds(), 1);

        // Just under the bound is not yet back.
        let balance = ledger.balance(&peer(1));
        assert_eq!(
            ledger.received(peer(1), Service::RelayedBytes, (balance - 990) as u64),
            None
        );
        assert_eq!(ledger.out_of_bounds(), 1);
        // Well inside is.
        assert!(matches!(
            ledger.received(peer(1), Service::RelayedBytes, 100),
            Some(LedgerEvent::BackWithin { balance: 890, .. })
        ));
        assert_eq!(ledger.out_of_bounds(), 0);
    }

    #[test]
    fn our_own_overdraft_is_the_other_bound() {
        let mut ledger = PeerLedger::new(small());
        assert_eq!(ledger.received(peer(3), Service::SyncSlices, 5), None);
        assert!(matches!(
            ledger.received(peer(3), Service::SyncSlices, 1),
            Some(LedgerEvent::OutOfBounds {
                standing: Standing::SelfOverdrawn,
                balance: -600,
                ..
            })
        ));
        // Swinging straight to the other side is a new crossing.
        assert!(matches!(
            ledger.gave(peer(3), Service::RelayedBytes, 2_000),
            Some(LedgerEvent::OutOfBounds {
                standing: Standing::PeerOverdrawn,
                balance: 1_400,
                ..
            })
        ));
    }

    #[test]
    fn cumulative_totals_record_only_their_growth() {
        let mut ledger = PeerLedger::new(small());
        ledger.gave_total(peer(5), Service::RelayedBytes, 400);
        ledger.gave_total(peer(5), Service::RelayedBytes, 700);
        // A stale read of the counter changes nothing.
        ledger.gave_total(peer(5), Service::RelayedBytes, 650);
        ledger.received_total(peer(5), Service::DaChunks, 2);
        ledger.received_total(peer(5), Service::DaChunks, 2);
        let account = ledger.account(&peer(5)).expect("account");
        assert_eq!(account.given(Service::RelayedBytes), 700);
        assert_eq!(account.received(Service::DaChunks), 2);
        assert_eq!(ledger.balance(&peer(5)), 700 - 100);
    }

    #[test]
    fn counters_saturate_instead_of_wrapping() {
        let mut ledger = PeerLedger::new(LedgerConfig::default());
        ledger.gave(peer(4), Service::RelayedBytes, u64::MAX);
        ledger.gave(peer(4), Service::RelayedBytes, u64::MAX);
        let account = ledger.account(&peer(4)).expect("account");
        assert_eq!(account.given(Service::RelayedBytes), u64::MAX);
        assert_eq!(ledger.balance(&peer(4)), i128::from(u64::MAX));
    }
}
