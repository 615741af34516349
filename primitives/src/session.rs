//! Session keys: an ed25519 key that a player's account key authorizes, for a scope, to sign
//! moves on the account's behalf, so that a game never stops for a wallet prompt and moves
//! verify in batches far faster than secp256k1 recovery.
//!
//! **Granting and revoking** are moves like any other, signed by the account key and sent to
//! [`SESSION_REGISTRY`], a reserved address with no state of its own: the call ([`SessionCall`])
//! is the move's data, and what it writes lives in the *account's own storage*, so a session
//! touches no account but the player's (no hot registry account, no extra group):
//! - the grant slot ([`grant_slot`]) holds a [`GrantWord`]: the last batch the key may act in,
//!   the moves and the value (wei, fees included at `gas_limit × gas_price`) it may still spend;
//! - one scope slot per allowed target contract ([`scope_slot`]) holds 1.
//!
//! The move declares exactly those writes in its Space Access List ([`SessionCall::access`]), so
//! the grant takes effect in a sequencer's pending state the moment the move is acked, and
//! execution checks that the declaration came true like any other.
//!
//! **A session move** is signed by the session key over the move and the account it acts for
//! ([`session_signing_hash`]). Its list names the account's grant slot with the charge delta
//! ([`charge`]: one move and the move's cost, as a delta, so that it commutes with nothing
//! but is exact) and the scope slot of its target as a read ([`session_access`]). Sequencers
//! check it against pending state, execution against the executed state, with the same rule
//! ([`check_session`]). A key is granted at most once per account: revoking leaves a tombstone,
//! and a fresh session takes a fresh key.
//!
//! Expiry is a batch number, not a wall-clock time: it is what every executing group agrees on.

use alloy_primitives::{Address, B256, I256, U256, address, keccak256};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode, put_list},
    tx::{AccountAccess, DeclaredWrite, SlotAccess, Transaction},
};

/// The reserved address session grants and revocations are sent to. No account lives here: a
/// call to it is carried out natively and writes only the sender's own storage.
pub const SESSION_REGISTRY: Address = address!("0x0000000000000000000000000000000000007e55");

/// The most target contracts one grant may name.
pub const SESSION_TARGETS_MAX: usize = 16;

const GRANT_DOMAIN: &[u8] = b"tickrate:session:grant";
const SCOPE_DOMAIN: &[u8] = b"tickrate:session:scope";
const MOVE_DOMAIN: &[u8] = b"tickrate:session-move";
const CALL_VERSION: u8 = 1;

/// A session key's public half (ed25519, 32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionPublicKey(pub [u8; 32]);

impl Encode for SessionPublicKey {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for SessionPublicKey {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SessionPublicKey(decoder.array()?))
    }
}

/// A session key: the ed25519 key a game client holds for the length of a session.
#[derive(Clone)]
pub struct SessionKey(SigningKey);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({:?})", self.public_key())
    }
}

impl SessionKey {
    /// A key from its 32 secret bytes (any 32 bytes are a valid ed25519 secret).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SessionKey(SigningKey::from_bytes(&bytes))
    }

    /// A deterministic key derived from a seed (devnet players, tests, simulations).
    pub fn from_seed(seed: u64) -> Self {
        let mut material = Vec::with_capacity(24);
        material.extend_from_slice(b"session:");
        material.extend_from_slice(&seed.to_be_bytes());
        SessionKey::from_bytes(*blake3::hash(&material).as_bytes())
    }

    /// The public key a grant names.
    pub fn public_key(&self) -> SessionPublicKey {
        SessionPublicKey(self.0.verifying_key().to_bytes())
    }

    /// Signs a 32-byte hash.
    pub fn sign_hash(&self, hash: &B256) -> [u8; 64] {
        self.0.sign(hash.as_slice()).to_bytes()
    }
}

/// The 32 bytes a session key signs for a move acting for `account`. Binding the account means
/// a key granted by two accounts cannot have one account's move replayed for the other.
pub fn session_signing_hash(tx: &Transaction, account: &Address) -> B256 {
    let mut buffer = Vec::with_capacity(256);
    buffer.extend_from_slice(MOVE_DOMAIN);
    account.encode(&mut buffer);
    tx.encode(&mut buffer);
    keccak256(&buffer)
}

/// Parses a session public key for verification. Weak (small-order) keys are refused, so that
/// batch verification (cofactored) and one-by-one verification agree on every key we accept.
pub(crate) fn verifying_key(key: &SessionPublicKey) -> Option<VerifyingKey> {
    VerifyingKey::from_bytes(&key.0)
        .ok()
        .filter(|key| !key.is_weak())
}

/// Session keys parsed once and reused: a key signs many moves, and parsing one costs a point
/// decompression, a sizeable share of one verification. Shared by every verifying thread (a
/// read lock per lookup); bounded: when full it starts over, and the keys in use come back with
/// their next moves.
#[derive(Debug, Default)]
pub struct SessionKeyCache {
    keys: std::sync::RwLock<std::collections::HashMap<SessionPublicKey, Option<VerifyingKey>>>,
    capacity: usize,
}

impl SessionKeyCache {
    /// A cache of at most `capacity` keys.
    pub fn new(capacity: usize) -> Self {
        SessionKeyCache {
            keys: std::sync::RwLock::new(std::collections::HashMap::new()),
            capacity,
        }
    }

    /// The parsed key, from the cache or parsed now and remembered; `None` if it is not a
    /// valid session key.
    pub(crate) fn verifying_key(&self, key: &SessionPublicKey) -> Option<VerifyingKey> {
        // A poisoned lock only means another thread panicked mid-insert: the map is still a
        // map of parsed keys, so go on with it.
        if let Some(parsed) = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(key)
        {
            return *parsed;
        }
        let parsed = verifying_key(key);
        let mut keys = self
            .keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if keys.len() >= self.capacity {
            keys.clear();
        }
        keys.insert(*key, parsed);
        parsed
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The slot of the account's storage that holds the grant of `key`.
pub fn grant_slot(key: &SessionPublicKey) -> B256 {
    let mut buffer = Vec::with_capacity(GRANT_DOMAIN.len() + 32);
    buffer.extend_from_slice(GRANT_DOMAIN);
    buffer.extend_from_slice(&key.0);
    keccak256(&buffer)
}

/// The slot of the account's storage that says whether `key` may call `target` (1 if it may).
pub fn scope_slot(key: &SessionPublicKey, target: &Address) -> B256 {
    let mut buffer = Vec::with_capacity(SCOPE_DOMAIN.len() + 52);
    buffer.extend_from_slice(SCOPE_DOMAIN);
    buffer.extend_from_slice(&key.0);
    buffer.extend_from_slice(target.as_slice());
    keccak256(&buffer)
}

/// What a grant slot holds: `expires_after_batch` in bits 192..256, `moves_left` in bits
/// 128..192, `value_left` in bits 0..128. Zero means never granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GrantWord {
    /// The last batch number in which the key may act.
    pub expires_after_batch: u64,
    /// Moves the key may still sign.
    pub moves_left: u64,
    /// Wei the key may still spend, value and fees (at `gas_limit × gas_price`) together.
    pub value_left: u128,
}

/// What a revoked grant slot holds: a word no live grant can have, because a grant's word with
/// an expiry of batch 1 and nothing left can do nothing either.
pub const REVOKED_GRANT: U256 = U256::from_limbs([0, 0, 0, 1]);

impl GrantWord {
    /// The storage word.
    pub fn to_word(self) -> U256 {
        U256::from_limbs([
            self.value_left as u64,
            (self.value_left >> 64) as u64,
            self.moves_left,
            self.expires_after_batch,
        ])
    }

    /// Reads a storage word.
    pub fn from_word(word: U256) -> Self {
        let limbs = word.into_limbs();
        GrantWord {
            expires_after_batch: limbs[3],
            moves_left: limbs[2],
            value_left: u128::from(limbs[0]) | (u128::from(limbs[1]) << 64),
        }
    }
}

/// The scope a grant gives a session key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SessionScope {
    /// The contracts the key may call, sorted, unique, at most [`SESSION_TARGETS_MAX`].
    pub targets: Vec<Address>,
    /// The last batch number in which the key may act.
    pub expires_after_batch: u64,
    /// How many moves the key may sign (at least one).
    pub moves: u64,
    /// How much the key may spend, value and fees together, in wei.
    pub value: u128,
}

/// A call to [`SESSION_REGISTRY`]: the data of a grant or revocation move.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SessionCall {
    /// Authorizes `key` for `scope`.
    Grant {
        /// The session key.
        key: SessionPublicKey,
        /// What it may do.
        scope: SessionScope,
    },
    /// Ends `key`'s authorization for good.
    Revoke {
        /// The session key.
        key: SessionPublicKey,
    },
}

impl SessionCall {
    /// The session key the call is about.
    pub fn key(&self) -> &SessionPublicKey {
        match self {
            SessionCall::Grant { key, .. } | SessionCall::Revoke { key } => key,
        }
    }

    /// The writes the call makes to the sender's storage, sorted by slot.
    pub fn writes(&self) -> Vec<(B256, U256)> {
        let mut writes = match self {
            SessionCall::Grant { key, scope } => {
                let grant = GrantWord {
                    expires_after_batch: scope.expires_after_batch,
                    moves_left: scope.moves,
                    value_left: scope.value,
                };
                let mut writes = vec![(grant_slot(key), grant.to_word())];
                writes.extend(
                    scope
                        .targets
                        .iter()
                        .map(|target| (scope_slot(key, target), U256::from(1))),
                );
                writes
            }
            SessionCall::Revoke { key } => vec![(grant_slot(key), REVOKED_GRANT)],
        };
        writes.sort_by_key(|(slot, _)| *slot);
        writes
    }

    /// The sender's entry in the call's Space Access List: the writes, declared exactly.
    pub fn access(&self, sender: Address) -> AccountAccess {
        AccountAccess {
            storage: self
                .writes()
                .into_iter()
                .map(|(slot, value)| SlotAccess {
                    slot,
                    write: Some(DeclaredWrite::Exact(value)),
                })
                .collect(),
            ..AccountAccess::read(sender)
        }
    }

    /// Checks the call's own shape: a grant names one to [`SESSION_TARGETS_MAX`] sorted,
    /// unique targets, none of them the registry, and at least one move.
    pub fn check(&self) -> Result<(), SessionRefusal> {
        if let SessionCall::Grant { scope, .. } = self {
            let sorted = scope.targets.windows(2).all(|pair| pair[0] < pair[1]);
            if scope.targets.is_empty()
                || scope.targets.len() > SESSION_TARGETS_MAX
                || !sorted
                || scope.targets.contains(&SESSION_REGISTRY)
                || scope.moves == 0
            {
                return Err(SessionRefusal::BadGrant);
            }
        }
        Ok(())
    }

    /// What the call does to a grant slot holding `current`; `Err` if it may not.
    pub fn check_against(&self, current: U256) -> Result<(), SessionRefusal> {
        match self {
            SessionCall::Grant { .. } if !current.is_zero() => Err(SessionRefusal::AlreadyGranted),
            SessionCall::Revoke { .. } if current.is_zero() => Err(SessionRefusal::Unknown),
            SessionCall::Revoke { .. } if current == REVOKED_GRANT => Err(SessionRefusal::Revoked),
            _ => Ok(()),
        }
    }
}

impl Encode for SessionCall {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(CALL_VERSION);
        match self {
            SessionCall::Grant { key, scope } => {
                out.push(0);
                key.encode(out);
                put_list(out, &scope.targets);
                scope.expires_after_batch.encode(out);
                scope.moves.encode(out);
                out.extend_from_slice(&scope.value.to_be_bytes());
            }
            SessionCall::Revoke { key } => {
                out.push(1);
                key.encode(out);
            }
        }
    }
}

impl Decode for SessionCall {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("session call", &[CALL_VERSION])?;
        match decoder.u8()? {
            0 => Ok(SessionCall::Grant {
                key: SessionPublicKey::decode(decoder)?,
                scope: SessionScope {
                    targets: decoder.list("session targets", SESSION_TARGETS_MAX)?,
                    expires_after_batch: decoder.u64()?,
                    moves: decoder.u64()?,
                    value: decoder.u128()?,
                },
            }),
            1 => Ok(SessionCall::Revoke {
                key: SessionPublicKey::decode(decoder)?,
            }),
            tag => Err(DecodeError::UnknownTag {
                what: "session call",
                tag,
            }),
        }
    }
}

/// Why a session key may not do what a move asks, at ingress or at execution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SessionRefusal {
    /// The account never granted this key.
    #[error("session key not granted")]
    Unknown,
    /// The account revoked this key.
    #[error("session key revoked")]
    Revoked,
    /// The key's last batch has passed.
    #[error("session key expired after batch {expires_after_batch}")]
    Expired {
        /// The last batch in which the key could act.
        expires_after_batch: u64,
    },
    /// The key may not call the move's target.
    #[error("target outside the session's scope")]
    OutOfScope,
    /// The key has signed all the moves it was granted.
    #[error("session move budget spent")]
    MovesSpent,
    /// The move would spend more than the key has left.
    #[error("session value budget exceeded")]
    ValueSpent,
    /// The move's access list does not declare the session's charge and scope as the rules say.
    #[error("session move does not declare its charge and scope")]
    BadDeclaration,
    /// A grant that names no target, too many, unsorted ones, the registry, or no moves; or a
    /// call to the registry that is not a well-formed grant or revocation.
    #[error("malformed session grant")]
    BadGrant,
    /// Only the account key may grant or revoke, and only with no value attached.
    #[error("only the account key may call the session registry")]
    NotAccountKey,
    /// A key is granted at most once per account.
    #[error("session key already granted")]
    AlreadyGranted,
}

impl Encode for SessionRefusal {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            SessionRefusal::Unknown => out.push(0),
            SessionRefusal::Revoked => out.push(1),
            SessionRefusal::Expired {
                expires_after_batch,
            } => {
                out.push(2);
                expires_after_batch.encode(out);
            }
            SessionRefusal::OutOfScope => out.push(3),
            SessionRefusal::MovesSpent => out.push(4),
            SessionRefusal::ValueSpent => out.push(5),
            SessionRefusal::BadDeclaration => out.push(6),
            SessionRefusal::BadGrant => out.push(7),
            SessionRefusal::NotAccountKey => out.push(8),
            SessionRefusal::AlreadyGranted => out.push(9),
        }
    }
}

impl Decode for SessionRefusal {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => SessionRefusal::Unknown,
            1 => SessionRefusal::Revoked,
            2 => SessionRefusal::Expired {
                expires_after_batch: decoder.u64()?,
            },
            3 => SessionRefusal::OutOfScope,
            4 => SessionRefusal::MovesSpent,
            5 => SessionRefusal::ValueSpent,
            6 => SessionRefusal::BadDeclaration,
            7 => SessionRefusal::BadGrant,
            8 => SessionRefusal::NotAccountKey,
            9 => SessionRefusal::AlreadyGranted,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "session refusal",
                    tag,
                });
            }
        })
    }
}

/// What a session move may spend: its value plus its fee ceiling; `None` past 2^128 wei.
pub fn move_cost(tx: &Transaction) -> Option<u128> {
    let value: u128 = tx.value.try_into().ok()?;
    let fees = u128::from(tx.gas_limit).checked_mul(tx.gas_price)?;
    value.checked_add(fees)
}

/// The delta a session move declares on its grant slot: one move and its cost.
pub fn charge(cost: u128) -> I256 {
    let spent = (U256::from(1) << 128) + U256::from(cost);
    I256::from_raw(U256::ZERO.wrapping_sub(spent))
}

/// The sender's entry a session move needs besides what the move itself touches: the grant
/// slot with its charge, and the target's scope slot as a read. Merge it into the move's list.
pub fn session_access(
    account: Address,
    key: &SessionPublicKey,
    target: &Address,
    cost: u128,
) -> AccountAccess {
    AccountAccess {
        storage: vec![
            SlotAccess {
                slot: grant_slot(key),
                write: Some(DeclaredWrite::Delta(charge(cost))),
            },
            SlotAccess {
                slot: scope_slot(key, target),
                write: None,
            },
        ],
        ..AccountAccess::read(account)
    }
}

/// The move that grants `key` the `scope` over `account` (sign it with the account key).
pub fn grant_transaction(
    chain_id: u64,
    nonce: u64,
    account: Address,
    key: SessionPublicKey,
    scope: SessionScope,
) -> Transaction {
    registry_transaction(chain_id, nonce, account, SessionCall::Grant { key, scope })
}

/// The move that revokes `key` for good (sign it with the account key).
pub fn revoke_transaction(
    chain_id: u64,
    nonce: u64,
    account: Address,
    key: SessionPublicKey,
) -> Transaction {
    registry_transaction(chain_id, nonce, account, SessionCall::Revoke { key })
}

fn registry_transaction(
    chain_id: u64,
    nonce: u64,
    account: Address,
    call: SessionCall,
) -> Transaction {
    Transaction {
        chain_id,
        nonce,
        to: SESSION_REGISTRY,
        value: U256::ZERO,
        data: call.to_bytes().into(),
        gas_limit: 0,
        gas_price: 0,
        sponsor: None,
        access_list: crate::tx::SpaceAccessList::new([call.access(account)]),
    }
}

/// `tx` with what a session move must declare merged into its list (see [`session_access`]);
/// `None` if its value and fees exceed 2^128 wei.
pub fn with_session_access(
    mut tx: Transaction,
    account: Address,
    key: &SessionPublicKey,
) -> Option<Transaction> {
    let cost = move_cost(&tx)?;
    let entries = tx.access_list.accounts().to_vec();
    tx.access_list = crate::tx::SpaceAccessList::new(
        entries
            .into_iter()
            .chain([session_access(account, key, &tx.to, cost)]),
    );
    Some(tx)
}

/// What a session move declares, once checked: its charge and the two slots the session rule
/// reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionDeclaration {
    /// What the move costs its grant ([`move_cost`]).
    pub cost: u128,
    /// The account's grant slot of the key ([`grant_slot`]).
    pub grant_slot: B256,
    /// The account's scope slot of the key and the move's target ([`scope_slot`]).
    pub scope_slot: B256,
}

/// Checks a session move's declaration: its list names the account's grant slot with exactly
/// the charge of the move, and the scope slot of its target, read only.
pub fn check_declaration(
    tx: &Transaction,
    account: &Address,
    key: &SessionPublicKey,
) -> Result<SessionDeclaration, SessionRefusal> {
    if tx.to == SESSION_REGISTRY {
        return Err(SessionRefusal::NotAccountKey);
    }
    let cost = move_cost(tx).ok_or(SessionRefusal::ValueSpent)?;
    let entry = tx
        .access_list
        .account(account)
        .ok_or(SessionRefusal::BadDeclaration)?;
    let grant_slot = grant_slot(key);
    let scope_slot = scope_slot(key, &tx.to);
    let grant = entry
        .slot(&grant_slot)
        .ok_or(SessionRefusal::BadDeclaration)?;
    let scope = entry
        .slot(&scope_slot)
        .ok_or(SessionRefusal::BadDeclaration)?;
    if grant.write != Some(DeclaredWrite::Delta(charge(cost))) || scope.write.is_some() {
        return Err(SessionRefusal::BadDeclaration);
    }
    Ok(SessionDeclaration {
        cost,
        grant_slot,
        scope_slot,
    })
}

/// The one rule sequencers (against pending state) and execution (against executed state)
/// apply to a session move: `grant` and `scope` are the values of its grant and scope slots,
/// `batch` the batch the move runs in (or the earliest it can, at ingress).
pub fn check_session(
    grant: U256,
    scope: U256,
    cost: u128,
    batch: u64,
) -> Result<(), SessionRefusal> {
    if grant.is_zero() {
        return Err(SessionRefusal::Unknown);
    }
    if grant == REVOKED_GRANT {
        return Err(SessionRefusal::Revoked);
    }
    let word = GrantWord::from_word(grant);
    if batch > word.expires_after_batch {
        return Err(SessionRefusal::Expired {
            expires_after_batch: word.expires_after_batch,
        });
    }
    if scope != U256::from(1) {
        return Err(SessionRefusal::OutOfScope);
    }
    if word.moves_left == 0 {
        return Err(SessionRefusal::MovesSpent);
    }
    if word.value_left < cost {
        return Err(SessionRefusal::ValueSpent);
    }
    Ok(())
}

#[cfg(test)]
mod tests;
