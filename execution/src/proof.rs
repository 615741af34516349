//! What the authenticated state commits to, and proofs that a state slice is exactly what a
//! committed root holds.
//!
//! The state commitment is two levels of [`trie`](crate::trie): an account trie keyed by the raw
//! bits of the address (so every address prefix has a root), whose leaves commit to an
//! [`AccountRecord`]: balance, nonce, code hash and the root of the account's own storage trie,
//! keyed by a hash of the slot (so that slots 0, 1, 2 do not make a 256-deep path). Zero slots and
//! empty accounts are not in the tries, as in [`InMemoryState`](crate::InMemoryState).
//!
//! A group that ships the items of a move's list to the executing group ships a
//! [`SliceProof`] with them; the receiver checks it against the sender's certified root with
//! [`SliceProof::verify`], and a fraud proof re-runs a move from proven slices.

use std::{collections::BTreeMap, sync::LazyLock};

use alloy_primitives::{Address, B256, Bytes, U256, keccak256};
use primitives::{
    Decode, DecodeError, Decoder, Encode,
    codec::{put_list, put_u256},
    constants::{SAL_ACCOUNTS_MAX, SAL_SLOTS_PER_ACCOUNT_MAX},
    finality::StateItem,
};
use revm::primitives::KECCAK_EMPTY;

use crate::{
    slice::{AccountSlice, StateSlice},
    state::AccountState,
    trie::{self, EMPTY, ProofError, TrieProof},
};

static ACCOUNT_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key("tickrate state account v1"));
static SLOT_KEY_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key("tickrate state slot key v1"));
static SLOT_VALUE_HASHER: LazyLock<blake3::Hasher> =
    LazyLock::new(|| blake3::Hasher::new_derive_key("tickrate state slot value v1"));

/// The key of a slot in its account's storage trie.
pub fn slot_key(slot: &B256) -> [u8; 32] {
    let mut hasher = SLOT_KEY_HASHER.clone();
    hasher.update(slot.as_slice());
    *hasher.finalize().as_bytes()
}

/// The value hash of a (non-zero) slot value in the storage trie.
pub fn slot_value_hash(value: &U256) -> B256 {
    let mut hasher = SLOT_VALUE_HASHER.clone();
    hasher.update(&value.to_be_bytes::<32>());
    B256::from(*hasher.finalize().as_bytes())
}

/// One account as the account trie commits to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountRecord {
    /// Balance in wei.
    pub balance: U256,
    /// Nonce.
    pub nonce: u64,
    /// keccak-256 of the runtime code ([`KECCAK_EMPTY`] for none), as the EVM names code.
    pub code_hash: B256,
    /// Root of the account's storage trie ([`EMPTY`] for no storage).
    pub storage_root: B256,
}

impl Default for AccountRecord {
    fn default() -> Self {
        AccountRecord {
            balance: U256::ZERO,
            nonce: 0,
            code_hash: KECCAK_EMPTY,
            storage_root: EMPTY,
        }
    }
}

impl AccountRecord {
    /// Whether the account holds nothing, so that it is not in the trie.
    pub fn is_empty(&self) -> bool {
        *self == AccountRecord::default()
    }

    /// The value hash of the account's leaf.
    pub fn value_hash(&self) -> B256 {
        let mut hasher = ACCOUNT_HASHER.clone();
        hasher.update(&self.balance.to_be_bytes::<32>());
        hasher.update(&self.nonce.to_be_bytes());
        hasher.update(self.code_hash.as_slice());
        hasher.update(self.storage_root.as_slice());
        B256::from(*hasher.finalize().as_bytes())
    }
}

const ACCOUNT_RECORD_VERSION: u8 = 1;

impl Encode for AccountRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(ACCOUNT_RECORD_VERSION);
        put_u256(out, &self.balance);
        self.nonce.encode(out);
        self.code_hash.encode(out);
        self.storage_root.encode(out);
    }
}

impl Decode for AccountRecord {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("account record", &[ACCOUNT_RECORD_VERSION])?;
        Ok(AccountRecord {
            balance: decoder.u256()?,
            nonce: decoder.u64()?,
            code_hash: decoder.b256()?,
            storage_root: decoder.b256()?,
        })
    }
}

fn code_hash(code: &Bytes) -> B256 {
    if code.is_empty() {
        KECCAK_EMPTY
    } else {
        keccak256(code)
    }
}

/// The account trie's leaves for `accounts` (address → value hash of its record), computed from
/// scratch: the reference the stored trie is checked against.
pub fn account_leaves<'a>(
    accounts: impl IntoIterator<Item = (&'a Address, &'a AccountState)>,
) -> BTreeMap<[u8; 20], B256> {
    accounts
        .into_iter()
        .map(|(address, account)| {
            let slots: BTreeMap<[u8; 32], B256> = account
                .storage
                .iter()
                .filter(|(_, value)| !value.is_zero())
                .map(|(slot, value)| (slot_key(slot), slot_value_hash(value)))
                .collect();
            let record = AccountRecord {
                balance: account.balance,
                nonce: account.nonce,
                code_hash: code_hash(&account.code),
                storage_root: trie::root_of(&slots),
            };
            (address.0.0, record)
        })
        .filter(|(_, record)| !record.is_empty())
        .map(|(address, record)| (address, record.value_hash()))
        .collect()
}

/// The proof of one listed account and its listed slots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountProof {
    /// The account.
    pub address: Address,
    /// Its path in the account trie.
    pub account: TrieProof<20>,
    /// Its storage root, which the account's leaf commits to ([`EMPTY`] for an absent account).
    pub storage_root: B256,
    /// Each listed slot's path in the storage trie, in slot order.
    pub slots: Vec<(B256, TrieProof<32>)>,
}

/// Proof that a [`StateSlice`] holds exactly the values a state root commits to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SliceProof {
    /// One per listed account, in address order.
    pub accounts: Vec<AccountProof>,
}

/// Why a slice does not match its proof.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SliceProofError {
    /// The proof covers other accounts or slots than the slice holds.
    #[error("the proof does not cover exactly the slice's items (first difference at {0:?})")]
    Coverage(StateItem),
    /// A path does not hold under its root.
    #[error("the proof of {item:?} does not hold: {error}")]
    Path {
        /// The item whose path failed (an account is named by its balance item).
        item: StateItem,
        /// Why.
        error: ProofError,
    },
    /// The slice's value differs from the committed one.
    #[error("the slice's value of {0:?} is not the committed one")]
    Value(StateItem),
}

impl SliceProof {
    /// Checks that `slice` holds exactly the items this proof covers, with the values committed
    /// under `root`.
    pub fn verify(&self, root: &B256, slice: &StateSlice) -> Result<(), SliceProofError> {
        let mut proofs = self.accounts.iter();
        for (address, account) in &slice.accounts {
            let proof = proofs
                .next()
                .filter(|proof| proof.address == *address)
                .ok_or(SliceProofError::Coverage(StateItem::Balance(*address)))?;
            proof.verify(root, account)?;
        }
        if let Some(extra) = proofs.next() {
            return Err(SliceProofError::Coverage(StateItem::Balance(extra.address)));
        }
        Ok(())
    }
}

impl AccountProof {
    fn verify(&self, root: &B256, account: &AccountSlice) -> Result<(), SliceProofError> {
        let address = self.address;
        let item = StateItem::Balance(address);
        let proven = self
            .account
            .verify(root, &address.0.0)
            .map_err(|error| SliceProofError::Path { item, error })?;
        let record = AccountRecord {
            balance: account.balance,
            nonce: account.nonce,
            code_hash: code_hash(&account.code),
            storage_root: self.storage_root,
        };
        let holds = match proven {
            Some(value) => value == record.value_hash(),
            None => record.is_empty(),
        };
        if !holds {
            return Err(SliceProofError::Value(item));
        }
        let mut slots = self.slots.iter();
        for (slot, value) in &account.storage {
            let item = StateItem::Storage(address, *slot);
            let (_, proof) = slots
                .next()
                .filter(|(proven_slot, _)| proven_slot == slot)
                .ok_or(SliceProofError::Coverage(item))?;
            let proven = proof
                .verify(&self.storage_root, &slot_key(slot))
                .map_err(|error| SliceProofError::Path { item, error })?;
            let holds = match proven {
                Some(hash) => !value.is_zero() && hash == slot_value_hash(value),
                None => value.is_zero(),
            };
            if !holds {
                return Err(SliceProofError::Value(item));
            }
        }
        if let Some((extra, _)) = slots.next() {
            return Err(SliceProofError::Coverage(StateItem::Storage(
                address, *extra,
            )));
        }
        Ok(())
    }
}

const SLICE_PROOF_VERSION: u8 = 1;

impl Encode for AccountProof {
    fn encode(&self, out: &mut Vec<u8>) {
        self.address.encode(out);
        self.account.encode(out);
        self.storage_root.encode(out);
        primitives::codec::put_length(out, self.slots.len());
        for (slot, proof) in &self.slots {
            slot.encode(out);
            proof.encode(out);
        }
    }
}

impl Decode for AccountProof {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let address = decoder.address()?;
        let account = TrieProof::decode(decoder)?;
        let storage_root = decoder.b256()?;
        let count = decoder.length("slot proofs", SAL_SLOTS_PER_ACCOUNT_MAX)?;
        let mut slots = Vec::with_capacity(count);
        for _ in 0..count {
            slots.push((decoder.b256()?, TrieProof::decode(decoder)?));
        }
        Ok(AccountProof {
            address,
            account,
            storage_root,
            slots,
        })
    }
}

impl Encode for SliceProof {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(SLICE_PROOF_VERSION);
        put_list(out, &self.accounts);
    }
}

impl Decode for SliceProof {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("slice proof", &[SLICE_PROOF_VERSION])?;
        Ok(SliceProof {
            accounts: decoder.list("account proofs", SAL_ACCOUNTS_MAX)?,
        })
    }
}
