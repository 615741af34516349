//! Estimation over sharded state: the Space Access List a move needs, found with no node
//! holding all of state.
//!
//! `execution::estimate` runs a move with plain revm over a state and lists what revm loaded.
//! Here that state is built on demand from the groups: it starts with the sender and the callee,
//! each read from the group that holds it (a quorum of its members must agree on the values),
//! and after each run every item the run loaded and the state lacked is read from its group and
//! the move runs again. A run that loads nothing new ran on the true values of everything it
//! read, so its list is the list the move needs on executed state. A move whose reads keep
//! moving (each value read sends it somewhere new) is refused after a bounded number of rounds.

use std::collections::BTreeSet;

use execution::{AccountState, Estimate, ExecutionEnv, InMemoryState};
use primitives::{
    Address, B256, Transaction,
    estimate::EstimateRefusal,
    finality::StateItem,
    tx::{AccountAccess, SlotAccess},
};

use super::{ShardError, ShardNetwork, agreed};

/// Rounds of read-and-run before a move's estimation is refused.
pub const ESTIMATE_ROUNDS_MAX: u32 = 8;

impl ShardNetwork {
    /// The list `body`, sent by `sender`, needs on the state of the last executed batch.
    /// Changes to the items in `deltas` are declared as deltas.
    pub fn estimate(
        &mut self,
        sender: Address,
        body: &Transaction,
        deltas: &[StateItem],
    ) -> Result<Estimate, EstimateRefusal> {
        if body.chain_id != self.chain_id {
            return Err(EstimateRefusal::WrongChain {
                expected: self.chain_id,
                got: body.chain_id,
            });
        }
        let env = ExecutionEnv {
            chain_id: self.chain_id,
            block_number: self.last_batch() + 1,
            timestamp: self.last_batch() + 1,
        };
        let mut state = InMemoryState::new();
        let mut read: BTreeSet<(Address, Option<B256>)> = BTreeSet::new();
        let mut wanted: Vec<AccountAccess> =
            vec![AccountAccess::read(sender), AccountAccess::read(body.to)];
        for round in 1..=ESTIMATE_ROUNDS_MAX {
            self.read_into(&mut state, &mut read, &wanted)
                .map_err(|error| {
                    tracing::warn!(target: "shard_node::estimate", %error, "state unavailable for estimation");
                    EstimateRefusal::StateUnavailable
                })?;
            // The client assigns nonces itself and its earlier moves may not have executed yet:
            // the move runs with the sender's executed nonce, so the nonce check passes.
            let executed_nonce = state.account(&sender).map_or(0, |account| account.nonce);
            let body = Transaction {
                nonce: executed_nonce,
                ..body.clone()
            };
            let estimate = execution::estimate(&env, sender, &body, &state, deltas);
            wanted = estimate
                .access_list
                .accounts()
                .iter()
                .filter_map(|account| {
                    let slots: Vec<SlotAccess> = account
                        .storage
                        .iter()
                        .filter(|slot| !read.contains(&(account.address, Some(slot.slot))))
                        .map(|slot| SlotAccess {
                            slot: slot.slot,
                            write: None,
                        })
                        .collect();
                    let account_unread = !read.contains(&(account.address, None));
                    (account_unread || !slots.is_empty()).then(|| AccountAccess {
                        storage: slots,
                        ..AccountAccess::read(account.address)
                    })
                })
                .collect();
            if wanted.is_empty() {
                tracing::debug!(target: "shard_node::estimate", round, %sender, to = %body.to, "estimated");
                return Ok(estimate);
            }
        }
        Err(EstimateRefusal::DidNotSettle {
            rounds: ESTIMATE_ROUNDS_MAX,
        })
    }

    /// Reads the items of `wanted` that are not yet in `state` from the groups holding them.
    fn read_into(
        &mut self,
        state: &mut InMemoryState,
        read: &mut BTreeSet<(Address, Option<B256>)>,
        wanted: &[AccountAccess],
    ) -> Result<(), ShardError> {
        for access in wanted {
            let group = self.groups.group_of(&access.address);
            let mut slices = Vec::with_capacity(group.members.len());
            for id in group.members.iter() {
                let member = self.member_mut(id)?;
                slices.push(
                    member
                        .state
                        .account_slice(access)
                        .map_err(|error| ShardError::state(*id, error))?,
                );
            }
            let slice =
                agreed(&slices, group.members.len()).ok_or_else(|| ShardError::Diverged {
                    what: format!("account {}", access.address),
                })?;
            let mut account =
                state
                    .account(&access.address)
                    .cloned()
                    .unwrap_or_else(|| AccountState {
                        balance: slice.balance,
                        nonce: slice.nonce,
                        code: slice.code.clone(),
                        storage: Default::default(),
                    });
            for (slot, value) in &slice.storage {
                account.storage.insert(*slot, *value);
                read.insert((access.address, Some(*slot)));
            }
            read.insert((access.address, None));
            state.insert_account(access.address, account);
        }
        Ok(())
    }
}
