//! Who watches which item of pending state, and what they were last told.
//!
//! A client subscribes to an item and gets its pending value at once, then every new value: when
//! an acked move declares a write to it, and when an execution report re-bases it (a failed move
//! retracted, a delta landing on a corrected base). Only real changes are pushed: the last value
//! sent per item is remembered, so a re-fold that lands on the same value sends nothing.
//!
//! A change for any cause other than a new move (a move failed in execution, an executed
//! result re-basing pending values, a move replaced) goes out as one retraction per session,
//! naming the move and the cause, with the corrected values of the items that session watches
//! ([`Subscriptions::retractions`]).
//!
//! [`TickDiffs`] serves the other way to watch: a session names entities (whole accounts or
//! single items) and gets, at the end of each tick, one diff of those whose value changed.
//!
//! Sans-IO: the core asks which clients to tell what, and sends it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, hash_map::Entry};

use primitives::{
    Address, FailureReason, TxHash, U256,
    api::{Entity, ItemValue, RetractionReason},
    constants::TICK_DIFF_ITEMS_MAX,
    finality::StateItem,
};

use crate::pending::PendingState;

/// A client session, as the core numbers them.
pub type ClientId = u64;

#[derive(Debug)]
struct Watched {
    last_sent: U256,
    clients: HashSet<ClientId>,
}

/// Subscriptions of every client session, bounded per session.
#[derive(Debug)]
pub struct Subscriptions {
    watched: HashMap<StateItem, Watched>,
    by_client: HashMap<ClientId, HashSet<StateItem>>,
    per_client_max: usize,
}

/// A session asked to watch more items than it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a session may watch at most {limit} items")]
pub struct TooManySubscriptions {
    /// Items one session may watch.
    pub limit: usize,
}

impl Subscriptions {
    /// No subscriptions; each session may watch up to `per_client_max` items.
    pub fn new(per_client_max: usize) -> Self {
        Subscriptions {
            watched: HashMap::new(),
            by_client: HashMap::new(),
            per_client_max,
        }
    }

    /// Whether nobody watches anything (the core then skips computing what changed).
    pub fn is_empty(&self) -> bool {
        self.watched.is_empty()
    }

    /// `client` watches `item`, whose pending value is `value` (sent with the subscription).
    pub fn subscribe(
        &mut self,
        client: ClientId,
        item: StateItem,
        value: U256,
    ) -> Result<(), TooManySubscriptions> {
        let items = self.by_client.entry(client).or_default();
        if !items.contains(&item) && items.len() >= self.per_client_max {
            return Err(TooManySubscriptions {
                limit: self.per_client_max,
            });
        }
        items.insert(item);
        let watched = self.watched.entry(item).or_insert_with(|| Watched {
            last_sent: value,
            clients: HashSet::new(),
        });
        // A new subscriber is told `value`; the others were told `last_sent`, and learn of the
        // difference at the next change.
        watched.clients.insert(client);
        Ok(())
    }

    /// `client` stops watching `item`.
    pub fn unsubscribe(&mut self, client: ClientId, item: &StateItem) {
        if let Some(items) = self.by_client.get_mut(&client) {
            items.remove(item);
            if items.is_empty() {
                self.by_client.remove(&client);
            }
        }
        if let Entry::Occupied(mut watched) = self.watched.entry(*item) {
            watched.get_mut().clients.remove(&client);
            if watched.get().clients.is_empty() {
                watched.remove();
            }
        }
    }

    /// The session ended: every subscription of `client` goes.
    pub fn client_closed(&mut self, client: ClientId) {
        for item in self.by_client.remove(&client).unwrap_or_default() {
            if let Entry::Occupied(mut watched) = self.watched.entry(item) {
                watched.get_mut().clients.remove(&client);
                if watched.get().clients.is_empty() {
                    watched.remove();
                }
            }
        }
    }

    /// Which clients to tell which new values, among `touched` items whose pending value is now
    /// `value_of(item)`; items nobody watches and unchanged values are skipped.
    pub fn changes(
        &mut self,
        touched: impl IntoIterator<Item = StateItem>,
        value_of: impl Fn(&StateItem) -> U256,
    ) -> Vec<(ClientId, StateItem, U256)> {
        let mut out = Vec::new();
        for item in touched {
            let Some(watched) = self.watched.get_mut(&item) else {
                continue;
            };
            let value = value_of(&item);
            if value == watched.last_sent {
                continue;
            }
            watched.last_sent = value;
            out.extend(watched.clients.iter().map(|client| (*client, item, value)));
        }
        out
    }
}

impl Subscriptions {
    /// Which clients to tell which corrected values after `touched` items changed for a cause
    /// other than a new move: one list per client, of the touched items it watches, in item
    /// order. With `always`, every watched touched item is reported (a retracted move's items,
    /// even where a later move's write hides the change); otherwise only real changes.
    pub fn retractions(
        &mut self,
        touched: impl IntoIterator<Item = StateItem>,
        value_of: impl Fn(&StateItem) -> U256,
        always: bool,
    ) -> BTreeMap<ClientId, Vec<ItemValue>> {
        let touched: BTreeSet<StateItem> = touched.into_iter().collect();
        let mut out: BTreeMap<ClientId, Vec<ItemValue>> = BTreeMap::new();
        for item in touched {
            let Some(watched) = self.watched.get_mut(&item) else {
                continue;
            };
            let value = value_of(&item);
            if !always && value == watched.last_sent {
                continue;
            }
            watched.last_sent = value;
            for client in &watched.clients {
                out.entry(*client)
                    .or_default()
                    .push(ItemValue { item, value });
            }
        }
        out
    }
}

/// An execution outcome reaches pending state: its actual writes go into the base (see
/// [`PendingState::apply_executed`]), and the watchers of the items it touched are told why and
/// what their values are now. A move acked here that failed is retracted (every watched item
/// it wrote is reported); anything else re-bases (only values that moved are reported).
pub fn retract_executed(
    pending: &mut PendingState,
    subscriptions: &mut Subscriptions,
    hash: &TxHash,
    status: &Result<(), FailureReason>,
    actual_writes: impl IntoIterator<Item = (StateItem, U256)>,
) -> (RetractionReason, BTreeMap<ClientId, Vec<ItemValue>>) {
    let acked_here = pending.contains(hash);
    let touched = pending.apply_executed(hash, status.is_ok(), actual_writes);
    let (reason, always) = match status {
        Err(failure) if acked_here => (RetractionReason::Failed(failure.clone()), true),
        _ => (RetractionReason::Rebased, false),
    };
    if subscriptions.is_empty() {
        return (reason, BTreeMap::new());
    }
    let told = subscriptions.retractions(touched, |item| pending.get(item), always);
    (reason, told)
}

/// The account an item belongs to.
fn account_of(item: &StateItem) -> Address {
    match item {
        StateItem::Balance(address)
        | StateItem::Nonce(address)
        | StateItem::Code(address)
        | StateItem::Storage(address, _) => *address,
    }
}

/// One session's tick-diff subscription.
#[derive(Debug, Default)]
struct Follower {
    entities: Vec<Entity>,
    /// Items changed and not yet delivered, each with the value the session last had for it
    /// (or had before the change): carried to the next tick when a diff is full.
    dirty: BTreeMap<StateItem, U256>,
}

/// Sessions that follow entities tick by tick ([`primitives::api::ClientRequest::SubscribeEntities`]).
#[derive(Debug, Default)]
pub struct TickDiffs {
    followers: BTreeMap<ClientId, Follower>,
    by_account: HashMap<Address, BTreeSet<ClientId>>,
    by_item: HashMap<StateItem, BTreeSet<ClientId>>,
    /// Most changed items one session may have waiting (beyond a full diff); past it the
    /// newest changes of that session are dropped and counted.
    backlog_max: usize,
    /// Changes dropped because a session's backlog was full.
    pub dropped: u64,
}

impl TickDiffs {
    /// No followers; each may have at most `backlog_max` changed items waiting.
    pub fn new(backlog_max: usize) -> Self {
        TickDiffs {
            backlog_max,
            ..TickDiffs::default()
        }
    }

    /// Whether nobody follows anything (pending state then need not record changes).
    pub fn is_empty(&self) -> bool {
        self.followers.is_empty()
    }

    /// `client` follows `entities` from now on, in place of what it followed; an empty list
    /// ends its subscription.
    pub fn follow(&mut self, client: ClientId, entities: Vec<Entity>) {
        self.client_closed(client);
        if entities.is_empty() {
            return;
        }
        let mut entities = entities;
        entities.sort_unstable();
        entities.dedup();
        for entity in &entities {
            match entity {
                Entity::Account(address) => {
                    self.by_account.entry(*address).or_default().insert(client);
                }
                Entity::Item(item) => {
                    self.by_item.entry(*item).or_default().insert(client);
                }
            }
        }
        self.followers.insert(
            client,
            Follower {
                entities,
                dirty: BTreeMap::new(),
            },
        );
    }

    /// The session ended, or stopped following.
    pub fn client_closed(&mut self, client: ClientId) {
        let Some(follower) = self.followers.remove(&client) else {
            return;
        };
        for entity in follower.entities {
            match entity {
                Entity::Account(address) => {
                    if let Entry::Occupied(mut clients) = self.by_account.entry(address) {
                        clients.get_mut().remove(&client);
                        if clients.get().is_empty() {
                            clients.remove();
                        }
                    }
                }
                Entity::Item(item) => {
                    if let Entry::Occupied(mut clients) = self.by_item.entry(item) {
                        clients.get_mut().remove(&client);
                        if clients.get().is_empty() {
                            clients.remove();
                        }
                    }
                }
            }
        }
    }

    /// A tick ended with `changed` items (each with its value before the tick, from
    /// [`crate::pending::PendingState::take_changes`]) now at `value_of(item)`: one diff per
    /// follower with changes, of at most [`TICK_DIFF_ITEMS_MAX`] items in item order (the rest
    /// wait for the next tick). An item that changed back to what the follower last had is
    /// not sent.
    pub fn end_tick(
        &mut self,
        changed: &[(StateItem, U256)],
        value_of: impl Fn(&StateItem) -> U256,
    ) -> Vec<(ClientId, Vec<ItemValue>)> {
        for (item, before) in changed {
            let by_account = self.by_account.get(&account_of(item));
            let by_item = self.by_item.get(item);
            for client in by_account.into_iter().chain(by_item).flatten() {
                let Some(follower) = self.followers.get_mut(client) else {
                    continue;
                };
                let waiting = follower.dirty.len();
                match follower.dirty.entry(*item) {
                    std::collections::btree_map::Entry::Occupied(_) => {}
                    std::collections::btree_map::Entry::Vacant(_)
                        if waiting >= self.backlog_max =>
                    {
                        self.dropped += 1;
                    }
                    std::collections::btree_map::Entry::Vacant(entry) => {
                        entry.insert(*before);
                    }
                }
            }
        }
        let mut out = Vec::new();
        for (client, follower) in &mut self.followers {
            if follower.dirty.is_empty() {
                continue;
            }
            let mut changes = Vec::new();
            let mut looked_at = Vec::new();
            for (item, last) in &follower.dirty {
                if changes.len() == TICK_DIFF_ITEMS_MAX {
                    break;
                }
                let value = value_of(item);
                if value != *last {
                    changes.push(ItemValue { item: *item, value });
                }
                looked_at.push(*item);
            }
            for item in looked_at {
                follower.dirty.remove(&item);
            }
            if !changes.is_empty() {
                out.push((*client, changes));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use primitives::{Address, B256};

    use super::*;

    fn slot(byte: u8) -> StateItem {
        StateItem::Storage(Address::repeat_byte(1), B256::repeat_byte(byte))
    }

    #[test]
    fn only_watchers_hear_only_real_changes() {
        let mut subscriptions = Subscriptions::new(8);
        subscriptions
            .subscribe(1, slot(1), U256::from(5))
            .expect("room");
        subscriptions
            .subscribe(2, slot(1), U256::from(5))
            .expect("room");
        let mut heard = subscriptions.changes([slot(1), slot(2)], |_| U256::from(6));
        heard.sort();
        assert_eq!(
            heard,
            vec![(1, slot(1), U256::from(6)), (2, slot(1), U256::from(6))]
        );
        assert!(
            subscriptions
                .changes([slot(1)], |_| U256::from(6))
                .is_empty(),
            "the same value again is no change"
        );
        subscriptions.unsubscribe(1, &slot(1));
        assert_eq!(
            subscriptions.changes([slot(1)], |_| U256::from(7)),
            vec![(2, slot(1), U256::from(7))]
        );
        subscriptions.client_closed(2);
        assert!(subscriptions.is_empty());
    }

    #[test]
    fn a_session_watches_a_bounded_number_of_items() {
        let mut subscriptions = Subscriptions::new(2);
        subscriptions
            .subscribe(1, slot(1), U256::ZERO)
            .expect("room");
        subscriptions
            .subscribe(1, slot(2), U256::ZERO)
            .expect("room");
        subscriptions
            .subscribe(1, slot(2), U256::ZERO)
            .expect("watching an item twice takes no more room");
        assert_eq!(
            subscriptions.subscribe(1, slot(3), U256::ZERO),
            Err(TooManySubscriptions { limit: 2 })
        );
        subscriptions
            .subscribe(2, slot(3), U256::ZERO)
            .expect("another session has its own room");
    }

    #[test]
    fn a_retraction_reaches_each_watcher_once_with_its_own_items() {
        let mut subscriptions = Subscriptions::new(8);
        for (client, item) in [(1, slot(1)), (1, slot(2)), (2, slot(2)), (3, slot(3))] {
            subscriptions
                .subscribe(client, item, U256::from(5))
                .expect("room");
        }
        let value_of = |item: &StateItem| match item {
            StateItem::Storage(_, slot) if *slot == B256::repeat_byte(1) => U256::from(6),
            _ => U256::from(5),
        };
        let heard = subscriptions.retractions([slot(2), slot(1), slot(2), slot(9)], value_of, true);
        assert_eq!(
            heard,
            BTreeMap::from([
                (
                    1,
                    vec![
                        ItemValue {
                            item: slot(1),
                            value: U256::from(6)
                        },
                        ItemValue {
                            item: slot(2),
                            value: U256::from(5)
                        }
                    ]
                ),
                (
                    2,
                    vec![ItemValue {
                        item: slot(2),
                        value: U256::from(5)
                    }]
                ),
            ]),
            "one list per watcher, every watched touched item, nobody else"
        );
        assert!(
            subscriptions
                .retractions([slot(1), slot(2)], value_of, false)
                .is_empty(),
            "a re-base that changes nothing is not reported"
        );
    }

    #[test]
    fn a_tick_diff_holds_exactly_the_followed_items_that_changed() {
        let address = Address::repeat_byte(1);
        let other = Address::repeat_byte(2);
        let mut diffs = TickDiffs::new(16);
        diffs.follow(
            7,
            vec![
                Entity::Account(address),
                Entity::Item(StateItem::Nonce(other)),
            ],
        );
        let changed = [
            (slot(1), U256::ZERO),
            (StateItem::Nonce(other), U256::ZERO),
            (StateItem::Balance(other), U256::ZERO),
        ];
        let out = diffs.end_tick(&changed, |_| U256::from(3));
        assert_eq!(
            out,
            vec![(
                7,
                vec![
                    ItemValue {
                        item: StateItem::Nonce(other),
                        value: U256::from(3)
                    },
                    ItemValue {
                        item: slot(1),
                        value: U256::from(3)
                    },
                ]
            )]
        );
        assert!(
            diffs.end_tick(&[], |_| U256::from(3)).is_empty(),
            "a quiet tick sends nothing"
        );
        diffs.follow(7, Vec::new());
        assert!(diffs.is_empty());
        assert!(diffs.end_tick(&changed, |_| U256::from(4)).is_empty());
    }

    #[test]
    fn a_busy_tick_carries_its_overflow_to_the_next_diff() {
        let address = Address::repeat_byte(1);
        let mut diffs = TickDiffs::new(TICK_DIFF_ITEMS_MAX * 4);
        diffs.follow(1, vec![Entity::Account(address)]);
        let changed: Vec<(StateItem, U256)> = (0..TICK_DIFF_ITEMS_MAX + 10)
            .map(|n| {
                (
                    StateItem::Storage(address, B256::from(U256::from(n))),
                    U256::ZERO,
                )
            })
            .collect();
        let first = diffs.end_tick(&changed, |_| U256::from(1));
        assert_eq!(first[0].1.len(), TICK_DIFF_ITEMS_MAX);
        let second = diffs.end_tick(&[], |_| U256::from(1));
        assert_eq!(second[0].1.len(), 10, "the rest, next tick");
        assert!(diffs.end_tick(&[], |_| U256::from(1)).is_empty());
        assert_eq!(diffs.dropped, 0);
    }
}
