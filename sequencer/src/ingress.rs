//! Ingress: everything a sequencer checks before it acks a move.
//!
//! Two halves. The stateless half ([`check_requests`]) runs in each client's task, off the core:
//! a size bound before decoding, bounded decoding, chain id, and the signatures of a whole
//! burst of requests verified together (session keys in one ed25519 batch), spread over every
//! core by rayon. The stateful half ([`Admission`]) runs in the core against pending state, in
//! the order the checks are listed on [`Admission::admit`]; a refusal at any step changes
//! nothing, and the sponsor is charged only once every other check has passed.
//!
//! Rate limits are token buckets ([`TokenBucket`]): one per client connection (checked in the
//! client's task, before signature checks spend CPU on a flood) and one per sender (checked in
//! the core, since a sender may spread its moves over many connections). Both are sans-IO:
//! time comes in as an argument.

use std::collections::HashMap;

use primitives::{
    Address, Authority, SESSION_REGISTRY, SessionCall, SignedTransaction, TxHash,
    VerifiedTransaction,
    api::{ClientRequest, Refusal, SponsorRefusal},
    codec::Decode,
    finality::StateItem,
    keccak256,
    session::{self, SessionKeyCache, SessionRefusal},
    time::Instant,
    tx::{RefusedMove, TxError},
};
use rayon::prelude::*;

use crate::{
    constants::{SENDERS_TRACKED_MAX, VERIFY_CHUNK_MOVES},
    mempool::{Mempool, ReplacementPolicy},
    pending::PendingState,
};

/// A rate: `per_second` on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Sustained requests a second.
    pub per_second: u64,
    /// Requests allowed back to back after a quiet spell.
    pub burst: u64,
}

/// A token bucket: `try_take` succeeds while tokens remain; tokens refill at the limit's rate
/// up to its burst. Counts in millionths of a token, so that refills are exact at any rate.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    limit: RateLimit,
    micro_tokens: u64,
    last: Instant,
}

const MICRO: u64 = 1_000_000;

impl TokenBucket {
    /// A full bucket.
    pub fn new(limit: RateLimit, now: Instant) -> Self {
        TokenBucket {
            limit,
            micro_tokens: limit.burst.saturating_mul(MICRO),
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_micros() as u64;
        // per_second tokens a second is per_second micro-tokens a microsecond.
        let added = elapsed.saturating_mul(self.limit.per_second);
        self.micro_tokens = self
            .micro_tokens
            .saturating_add(added)
            .min(self.limit.burst.saturating_mul(MICRO));
        self.last = self.last.max(now);
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.micro_tokens >= MICRO {
            self.micro_tokens -= MICRO;
            true
        } else {
            false
        }
    }

    /// Changes the limit from `now` on: tokens earned so far are kept, up to the new burst.
    pub fn set_limit(&mut self, limit: RateLimit, now: Instant) {
        self.refill(now);
        self.limit = limit;
        self.micro_tokens = self.micro_tokens.min(limit.burst.saturating_mul(MICRO));
    }

    /// Whether the bucket is full at `now` (its owner has been quiet long enough to forget).
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.micro_tokens >= self.limit.burst.saturating_mul(MICRO)
    }
}

/// A sponsorship policy: `sponsor` pays for moves to `targets`, up to a budget per player and
/// in total, at a bounded rate per player. A move opts in by naming the sponsor in its signed
/// `sponsor` field, as an ERC-4337 user operation names its paymaster; the gas price must be
/// zero. Budgets count gas limits, the most each move may cost the sponsor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SponsorPolicy {
    /// The paying account.
    pub sponsor: Address,
    /// The contracts whose moves it pays for.
    pub targets: Vec<Address>,
    /// Gas each player may spend on the sponsor's account.
    pub player_gas_budget: u64,
    /// Gas the sponsor pays in total.
    pub total_gas_budget: u64,
    /// Sponsored moves per player.
    pub player_rate: RateLimit,
}

impl From<&upper_chain::SponsorPolicyRecord> for SponsorPolicy {
    fn from(record: &upper_chain::SponsorPolicyRecord) -> Self {
        SponsorPolicy {
            sponsor: record.sponsor,
            targets: record.terms.targets.clone(),
            player_gas_budget: record.terms.player_gas_budget,
            total_gas_budget: record.terms.total_gas_budget,
            player_rate: RateLimit {
                per_second: record.terms.player_moves_per_second,
                burst: record.terms.player_moves_burst,
            },
        }
    }
}

/// Spending under one policy.
#[derive(Debug)]
struct SponsorAccount {
    policy: SponsorPolicy,
    spent: u64,
    per_player: HashMap<Address, (u64, TokenBucket)>,
}

/// A move replaced in the mempool by [`Admission::replace`].
#[derive(Debug)]
pub struct Replacement {
    /// The move that left the mempool and pending state.
    pub replaced: VerifiedTransaction,
    /// Items of pending state whose value may have changed.
    pub touched: Vec<StateItem>,
}

/// What the core checks with state, in order: the per-sender rate, the nonce against pending
/// state, the session key's grant and scope (or a grant/revocation against the slot it
/// writes), mempool room (by the caller), and last the sponsorship, which charges the sponsor.
///
/// # Sponsorship policies
/// Policies come from the sequencer's configuration and from the upper chain, where each
/// sponsor publishes its own, signed ([`upper_chain::sponsorship`]); the driver reads the chain
/// at start and on an interval and hands the set in force to
/// [`Admission::set_chain_policies`]. For a sponsor named by both, the chain's policy wins: it
/// is the sponsor's own, current word on what it pays for, and a stale configuration must not
/// spend a sponsor's money on terms it has withdrawn or narrowed. What a sponsor was charged is
/// kept across a change of its policy (a lower budget can leave it spent at once); a sponsor
/// whose policy is withdrawn everywhere is no longer known (`UnknownSponsor`).
#[derive(Debug)]
pub struct Admission {
    sender_rate: RateLimit,
    senders: HashMap<Address, TokenBucket>,
    sponsors: HashMap<Address, SponsorAccount>,
    /// The policies of the configuration.
    configured: Vec<SponsorPolicy>,
    /// The policies last read from the upper chain.
    from_chain: Vec<SponsorPolicy>,
}

impl Admission {
    /// Admission with a per-sender rate and sponsorship policies.
    pub fn new(sender_rate: RateLimit, policies: Vec<SponsorPolicy>) -> Self {
        let mut admission = Admission {
            sender_rate,
            senders: HashMap::new(),
            sponsors: HashMap::new(),
            configured: policies,
            from_chain: Vec::new(),
        };
        admission.install(Instant::ZERO);
        admission
    }

    /// Replaces the policies read from the upper chain with `policies` (the whole set in
    /// force there) from `now` on; see the type's doc for how they combine with the
    /// configuration's.
    pub fn set_chain_policies(&mut self, policies: Vec<SponsorPolicy>, now: Instant) {
        self.from_chain = policies;
        self.install(now);
    }

    /// The policy in force for `sponsor`, if any.
    pub fn sponsor_policy(&self, sponsor: &Address) -> Option<&SponsorPolicy> {
        self.sponsors.get(sponsor).map(|account| &account.policy)
    }

    /// Puts the configured policies, overridden by the chain's, in force.
    fn install(&mut self, now: Instant) {
        let mut in_force: HashMap<Address, SponsorPolicy> = self
            .configured
            .iter()
            .map(|policy| (policy.sponsor, policy.clone()))
            .collect();
        for policy in &self.from_chain {
            in_force.insert(policy.sponsor, policy.clone());
        }
        self.sponsors
            .retain(|sponsor, _| in_force.contains_key(sponsor));
        for (sponsor, policy) in in_force {
            match self.sponsors.get_mut(&sponsor) {
                Some(account) => {
                    if account.policy.player_rate != policy.player_rate {
                        for (_, bucket) in account.per_player.values_mut() {
                            bucket.set_limit(policy.player_rate, now);
                        }
                    }
                    account.policy = policy;
                }
                None => {
                    self.sponsors.insert(
                        sponsor,
                        SponsorAccount {
                            policy,
                            spent: 0,
                            per_player: HashMap::new(),
                        },
                    );
                }
            }
        }
    }

    /// Checks a verified move against pending state; `next_batch` is the first batch it could
    /// run in. `has_room` says whether the mempool takes another move. On `Ok` the caller must
    /// admit the move: the sponsor (if any) has been charged.
    pub fn admit(
        &mut self,
        verified: &VerifiedTransaction,
        pending: &PendingState,
        next_batch: u64,
        has_room: bool,
        now: Instant,
    ) -> Result<(), Refusal> {
        let tx = verified.tx();
        self.take_sender_token(verified.sender, now)?;
        let expected = pending.next_nonce(&verified.sender);
        if tx.nonce != expected {
            return Err(Refusal::BadNonce {
                expected,
                got: tx.nonce,
            });
        }
        session_check(verified, pending, next_batch).map_err(Refusal::Session)?;
        if !has_room {
            return Err(Refusal::MempoolFull);
        }
        if let Some(sponsor) = tx.sponsor {
            self.charge_sponsor(sponsor, verified, now)
                .map_err(Refusal::Sponsorship)?;
        }
        Ok(())
    }

    /// Replaces the unpacked move of `verified`'s sender and nonce in `mempool` and `pending`,
    /// if `policy` allows it (see [`ReplacementPolicy`]). The replacement is checked as a new
    /// move would be, in the same order (sender rate, policy, session rule, sponsorship), but
    /// against pending state without the move it replaces and with that move's sponsor charge
    /// given back. On `Ok` the replacement is in the replaced move's place in both; on `Err`
    /// nothing changed but a sender token spent, as for any refusal.
    #[allow(
        clippy::too_many_arguments,
        reason = "the core's state, lent for one call"
    )]
    pub fn replace(
        &mut self,
        verified: VerifiedTransaction,
        mempool: &mut Mempool,
        pending: &mut PendingState,
        policy: ReplacementPolicy,
        next_batch: u64,
        now: Instant,
    ) -> Result<Replacement, Refusal> {
        let tx = verified.tx();
        let Some(replaced) = mempool.get(&verified.sender, tx.nonce) else {
            return Err(Refusal::BadNonce {
                expected: pending.next_nonce(&verified.sender),
                got: tx.nonce,
            });
        };
        self.take_sender_token(verified.sender, now)?;
        policy
            .check(replaced.tx().gas_price, tx.gas_price)
            .map_err(Refusal::Replacement)?;
        let (retracted, mut touched) = pending
            .retract(&replaced.hash)
            .expect("a move in the mempool is in pending state");
        let checked = session_check(&verified, pending, next_batch)
            .map_err(Refusal::Session)
            .and_then(|()| self.recharge_sponsor(replaced, &verified, now));
        if let Err(refusal) = checked {
            pending.restore(retracted);
            return Err(refusal);
        }
        touched.extend(pending.admit_in_place(&retracted, &verified));
        let replaced = mempool
            .replace(verified)
            .expect("the replaced move is in the mempool");
        Ok(Replacement { replaced, touched })
    }

    /// Gives back the sponsor charge of `replaced` and charges `verified` instead; on a
    /// refusal the old charge stands.
    fn recharge_sponsor(
        &mut self,
        replaced: &VerifiedTransaction,
        verified: &VerifiedTransaction,
        now: Instant,
    ) -> Result<(), Refusal> {
        let refund = replaced
            .tx()
            .sponsor
            .map(|sponsor| (sponsor, replaced.tx().gas_limit));
        if let Some((sponsor, gas)) = refund {
            self.adjust_charge(sponsor, replaced.sender, gas, false);
        }
        let charged = match verified.tx().sponsor {
            Some(sponsor) => self
                .charge_sponsor(sponsor, verified, now)
                .map_err(Refusal::Sponsorship),
            None => Ok(()),
        };
        if charged.is_err()
            && let Some((sponsor, gas)) = refund
        {
            self.adjust_charge(sponsor, replaced.sender, gas, true);
        }
        charged
    }

    /// Adds (or gives back) `gas` to what `sponsor` was charged, in total and for `player`.
    fn adjust_charge(&mut self, sponsor: Address, player: Address, gas: u64, add: bool) {
        let Some(account) = self.sponsors.get_mut(&sponsor) else {
            return;
        };
        let apply = |spent: &mut u64| {
            *spent = if add {
                spent.saturating_add(gas)
            } else {
                spent.saturating_sub(gas)
            };
        };
        apply(&mut account.spent);
        if let Some((player_spent, _)) = account.per_player.get_mut(&player) {
            apply(player_spent);
        }
    }

    fn take_sender_token(&mut self, sender: Address, now: Instant) -> Result<(), Refusal> {
        if self.senders.len() >= SENDERS_TRACKED_MAX && !self.senders.contains_key(&sender) {
            // Forget senders quiet long enough for their bucket to refill: they lose nothing.
            self.senders.retain(|_, bucket| !bucket.is_full(now));
            if self.senders.len() >= SENDERS_TRACKED_MAX {
                return Err(Refusal::RateLimited);
            }
        }
        let limit = self.sender_rate;
        let bucket = self
            .senders
            .entry(sender)
            .or_insert_with(|| TokenBucket::new(limit, now));
        if bucket.try_take(now) {
            Ok(())
        } else {
            Err(Refusal::RateLimited)
        }
    }

    fn charge_sponsor(
        &mut self,
        sponsor: Address,
        verified: &VerifiedTransaction,
        now: Instant,
    ) -> Result<(), SponsorRefusal> {
        let tx = verified.tx();
        let account = self
            .sponsors
            .get_mut(&sponsor)
            .ok_or(SponsorRefusal::UnknownSponsor)?;
        if tx.gas_price != 0 {
            return Err(SponsorRefusal::NonZeroGasPrice);
        }
        if !account.policy.targets.contains(&tx.to) {
            return Err(SponsorRefusal::TargetNotCovered);
        }
        let gas = tx.gas_limit;
        if account.spent.saturating_add(gas) > account.policy.total_gas_budget {
            return Err(SponsorRefusal::SponsorBudgetSpent);
        }
        if account.per_player.len() >= SENDERS_TRACKED_MAX
            && !account.per_player.contains_key(&verified.sender)
        {
            return Err(SponsorRefusal::PlayerRateExceeded);
        }
        let rate = account.policy.player_rate;
        let (player_spent, bucket) = account
            .per_player
            .entry(verified.sender)
            .or_insert_with(|| (0, TokenBucket::new(rate, now)));
        if player_spent.saturating_add(gas) > account.policy.player_gas_budget {
            return Err(SponsorRefusal::PlayerBudgetSpent);
        }
        if !bucket.try_take(now) {
            return Err(SponsorRefusal::PlayerRateExceeded);
        }
        *player_spent += gas;
        account.spent += gas;
        Ok(())
    }

    /// Gas the sponsor has been charged at this sequencer.
    pub fn sponsor_spent(&self, sponsor: &Address) -> Option<u64> {
        self.sponsors.get(sponsor).map(|account| account.spent)
    }
}

/// The session rule against pending state: a session move needs a live grant whose scope
/// covers its target and whose budget covers it; a grant or revocation must find its slot as
/// the rule needs it (never granted, or live).
pub fn session_check(
    verified: &VerifiedTransaction,
    pending: &PendingState,
    next_batch: u64,
) -> Result<(), SessionRefusal> {
    let tx = verified.tx();
    let sender = verified.sender;
    if let Authority::Session(key) = verified.authority {
        // Verification checked the declaration; its slots are reused, not hashed again.
        let declaration = match verified.session {
            Some(declaration) => declaration,
            None => session::check_declaration(tx, &sender, &key)?,
        };
        let grant = pending.storage(&sender, &declaration.grant_slot);
        let scope = pending.storage(&sender, &declaration.scope_slot);
        session::check_session(grant, scope, declaration.cost, next_batch)?;
    } else if tx.to == SESSION_REGISTRY {
        // Verification decoded the call already; decoding again is cheap and keeps the
        // verified move the one source of truth.
        let call = SessionCall::from_bytes(&tx.data).map_err(|_| SessionRefusal::BadGrant)?;
        let current = pending.storage(&sender, &session::grant_slot(call.key()));
        call.check_against(current)?;
    }
    Ok(())
}

/// What the stateless half made of one request.
#[derive(Debug)]
pub enum Checked {
    /// A move whose signature verified and whose shape is sound: the core decides the rest.
    Move(Box<VerifiedTransaction>),
    /// A query, answered by the core.
    Query(Box<ClientRequest>),
    /// Refused before the core: the client is told, nothing changed.
    Refused {
        /// The move's hash, or the hash of the undecodable bytes.
        hash: TxHash,
        /// Why.
        refusal: Refusal,
    },
}

/// The refusal a client sees for a move that did not verify.
pub fn refusal_of(error: TxError) -> Refusal {
    match error {
        TxError::BadSignature(_)
        | TxError::BadSessionSignature
        | TxError::Ethereum(primitives::ethereum::EthereumError::BadSignature(_)) => {
            Refusal::BadSignature
        }
        // The other Ethereum refusals are a move whose fields do not match its signature.
        TxError::Ethereum(_) => Refusal::Malformed,
        TxError::WrongChain { expected, got } => Refusal::WrongChain { expected, got },
        TxError::MissingFromAccessList(address) => Refusal::MissingFromAccessList(address),
        TxError::Session(refusal) => Refusal::Session(refusal),
    }
}

/// Decodes a burst of requests (each at most `move_bytes_max` bytes) and verifies the moves'
/// signatures together; chunks of the burst are decoded and verified in parallel on rayon's
/// pool. Results keep the requests' order.
pub fn check_requests(
    requests: Vec<Vec<u8>>,
    chain_id: u64,
    move_bytes_max: usize,
    keys: &SessionKeyCache,
) -> Vec<Checked> {
    if requests.len() <= VERIFY_CHUNK_MOVES {
        return check_chunk(requests, chain_id, move_bytes_max, keys);
    }
    let mut chunks: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut rest = requests.into_iter().peekable();
    while rest.peek().is_some() {
        chunks.push(rest.by_ref().take(VERIFY_CHUNK_MOVES).collect());
    }
    chunks
        .into_par_iter()
        .flat_map_iter(|chunk| check_chunk(chunk, chain_id, move_bytes_max, keys))
        .collect()
}

/// One chunk of [`check_requests`]: decoded, then its moves verified in one batch.
fn check_chunk(
    requests: Vec<Vec<u8>>,
    chain_id: u64,
    move_bytes_max: usize,
    keys: &SessionKeyCache,
) -> Vec<Checked> {
    let mut checked: Vec<Option<Checked>> = Vec::with_capacity(requests.len());
    let mut indices = Vec::new();
    let mut moves = Vec::new();
    for bytes in requests {
        let index = checked.len();
        if bytes.len() > move_bytes_max {
            checked.push(Some(Checked::Refused {
                hash: keccak256(&bytes),
                refusal: Refusal::TooLarge {
                    size: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
                    max: u32::try_from(move_bytes_max).unwrap_or(u32::MAX),
                },
            }));
            continue;
        }
        match ClientRequest::from_bytes(&bytes) {
            Ok(ClientRequest::Submit(signed)) => {
                checked.push(None);
                indices.push(index);
                moves.push(signed);
            }
            Ok(query) => checked.push(Some(Checked::Query(Box::new(query)))),
            Err(_) => checked.push(Some(Checked::Refused {
                hash: keccak256(&bytes),
                refusal: Refusal::Malformed,
            })),
        }
    }
    let results = SignedTransaction::verify_batch(moves, chain_id, keys);
    for (index, result) in indices.into_iter().zip(results) {
        checked[index] = Some(match result {
            Ok(verified) => Checked::Move(Box::new(verified)),
            Err(RefusedMove { hash, error }) => Checked::Refused {
                hash,
                refusal: refusal_of(error),
            },
        });
    }
    checked
        .into_iter()
        .map(|checked| checked.expect("every request has a result"))
        .collect()
}

#[cfg(test)]
mod tests;
