//! Who watches which item of pending state, and what they were last told.
//!
//! A client subscribes to an item and gets its pending value at once, then every new value: when
//! an acked move declares a write to it, and when an execution report re-bases it (a failed move
//! retracted, a delta landing on a corrected base). Only real changes are pushed: the last value
//! sent per item is remembered, so a re-fold that lands on the same value sends nothing.
//!
//! Sans-IO: the core asks which clients to tell what, and sends it.

use std::collections::{HashMap, HashSet, hash_map::Entry};

use primitives::{U256, finality::StateItem};

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
}
