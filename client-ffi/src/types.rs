//! The plain C structs of the API and their conversions to `primitives`' types.
//!
//! Enums a caller passes in travel as `uint32_t` (a C caller can put any integer in an enum
//! variable, and an out-of-range Rust enum is undefined behaviour), checked here; enums the
//! library hands out are typed.

// A C ABI is raw pointers and exported symbols: unsafe is this module's job, each use with
// its SAFETY reason.
#![allow(unsafe_code)]

use alloy_primitives::I256;
use primitives::{
    AccountAccess, Address, B256, DeclaredWrite, FinalityLevel, SlotAccess, U256,
    constants::{SAL_ACCOUNTS_MAX, SAL_SLOTS_PER_ACCOUNT_MAX},
    finality::StateItem,
};

use crate::error::FfiError;

/// A 20-byte account address.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickrateAddress {
    /// The address bytes.
    pub bytes: [u8; 20],
}

/// A 256-bit word, big-endian: a storage slot's key or value, an amount, a secret key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickrateWord {
    /// The word's bytes, most significant first.
    pub bytes: [u8; 32],
}

/// A move's 32-byte hash: how the API names a move after it is sent.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickrateHash {
    /// The hash bytes.
    pub bytes: [u8; 32],
}

/// A move just sent: its hash and the nonce the client gave it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickrateMove {
    /// The move's hash.
    pub hash: TickrateHash,
    /// Its nonce (the client assigns an account's nonces in order).
    pub nonce: u64,
}

/// How far a move has gone (DESIGN's finality levels), in order.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickrateLevel {
    /// Nothing known yet.
    Unknown = 0,
    /// Acked by a sequencer, in its mempool; its declared writes are in pending state.
    Pending = 1,
    /// In a block whose body is in weak DA.
    Sequenced = 2,
    /// In a PBFT-committed batch.
    Finalized = 3,
    /// Its groups agreed on the post-state root.
    Executed = 4,
    /// That root is committed on the upper chain.
    Settled = 5,
    /// The move failed; only its nonce was consumed.
    Failed = 6,
}

impl From<&FinalityLevel> for TickrateLevel {
    fn from(level: &FinalityLevel) -> Self {
        match level {
            FinalityLevel::Pending => TickrateLevel::Pending,
            FinalityLevel::Sequenced => TickrateLevel::Sequenced,
            FinalityLevel::Finalized => TickrateLevel::Finalized,
            FinalityLevel::Executed => TickrateLevel::Executed,
            FinalityLevel::Settled => TickrateLevel::Settled,
            FinalityLevel::Failed(_) => TickrateLevel::Failed,
        }
    }
}

/// The level a caller waits for, from its `uint32_t` (a [`TickrateLevel`] from `Pending` to
/// `Settled`: waiting for `Failed` or `Unknown` means nothing).
pub(crate) fn target_level(level: u32) -> Result<FinalityLevel, FfiError> {
    match level {
        1 => Ok(FinalityLevel::Pending),
        2 => Ok(FinalityLevel::Sequenced),
        3 => Ok(FinalityLevel::Finalized),
        4 => Ok(FinalityLevel::Executed),
        5 => Ok(FinalityLevel::Settled),
        other => Err(FfiError::InvalidArgument {
            name: "level",
            reason: format!("{other} is not a level to wait for (PENDING to SETTLED)"),
        }),
    }
}

/// What kind of item of an account a [`TickrateStateItem`] names.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickrateItemKind {
    /// The account's balance.
    Balance = 0,
    /// The account's nonce.
    Nonce = 1,
    /// One storage slot of the account (a contract).
    Storage = 2,
}

/// An item of pending state to watch.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickrateStateItem {
    /// A [`TickrateItemKind`] value.
    pub kind: u32,
    /// The account.
    pub address: TickrateAddress,
    /// The slot, for `TICKRATE_ITEM_KIND_STORAGE` (ignored otherwise).
    pub slot: TickrateWord,
}

impl TickrateStateItem {
    pub(crate) fn to_item(self) -> Result<StateItem, FfiError> {
        let address = Address::from(self.address.bytes);
        match self.kind {
            0 => Ok(StateItem::Balance(address)),
            1 => Ok(StateItem::Nonce(address)),
            2 => Ok(StateItem::Storage(address, B256::from(self.slot.bytes))),
            other => Err(FfiError::InvalidArgument {
                name: "item.kind",
                reason: format!("{other} is not a TickrateItemKind"),
            }),
        }
    }
}

/// A watched item's new pending value, or the sequencer's refusal to watch it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TickrateStateChange {
    /// The item's kind.
    pub kind: TickrateItemKind,
    /// The account.
    pub address: TickrateAddress,
    /// The slot, for a storage item (zero otherwise).
    pub slot: TickrateWord,
    /// The item's pending value.
    pub value: TickrateWord,
    /// Whether the sequencer refused to watch the item (`value` is then zero): the session
    /// already watches as many items as it may.
    pub refused: bool,
    /// When refused: how many items one session may watch.
    pub watch_limit: u32,
}

impl TickrateStateChange {
    /// A change of an item the C API can name, or `None` for one it cannot (code, which no
    /// caller of this API subscribes to).
    pub(crate) fn from_change(change: &client_sdk::StateChange) -> Option<Self> {
        let (kind, address, slot) = match change.item {
            StateItem::Balance(address) => (TickrateItemKind::Balance, address, B256::ZERO),
            StateItem::Nonce(address) => (TickrateItemKind::Nonce, address, B256::ZERO),
            StateItem::Storage(address, slot) => (TickrateItemKind::Storage, address, slot),
            StateItem::Code(_) => return None,
        };
        let (value, refused, watch_limit) = match &change.value {
            Ok(value) => (*value, false, 0),
            Err(refusal) => (U256::ZERO, true, refusal.limit),
        };
        Some(TickrateStateChange {
            kind,
            address: TickrateAddress {
                bytes: address.into_array(),
            },
            slot: TickrateWord { bytes: slot.0 },
            value: TickrateWord {
                bytes: value.to_be_bytes(),
            },
            refused,
            watch_limit,
        })
    }
}

/// An item of pending state and its value at the end of a tick (one change of a tick diff).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickrateItemValue {
    /// A [`TickrateItemKind`] value.
    pub kind: u32,
    /// The account.
    pub address: TickrateAddress,
    /// The slot, for a storage item (zero otherwise).
    pub slot: TickrateWord,
    /// The item's pending value.
    pub value: TickrateWord,
}

impl TickrateItemValue {
    /// An item the C API can name and its value, or `None` for code, which no caller follows
    /// as an item (an account followed whole reports only its balance, nonce and slots here).
    pub(crate) fn from_item_value(item: &StateItem, value: U256) -> Option<Self> {
        let (kind, address, slot) = match *item {
            StateItem::Balance(address) => (TickrateItemKind::Balance, address, B256::ZERO),
            StateItem::Nonce(address) => (TickrateItemKind::Nonce, address, B256::ZERO),
            StateItem::Storage(address, slot) => (TickrateItemKind::Storage, address, slot),
            StateItem::Code(_) => return None,
        };
        Some(TickrateItemValue {
            kind: kind as u32,
            address: TickrateAddress {
                bytes: address.into_array(),
            },
            slot: TickrateWord { bytes: slot.0 },
            value: TickrateWord {
                bytes: value.to_be_bytes(),
            },
        })
    }
}

/// Where an ack puts a move: the tick by which the sequencer promised it in a block and its
/// place in that sequencer's ack order, from the sequencer's signed preconfirmation.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickrateAckKey {
    /// The sequencer's tick by which the move will be in a block.
    pub tick: u64,
    /// The move's place in the sequencer's ack order.
    pub seq: u64,
}

/// What a move declares about an item it may write.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickrateWriteKind {
    /// The move reads the item and does not change it.
    Read = 0,
    /// The item holds exactly `value` after the move.
    Exact = 1,
    /// The item changes by `value`, a signed amount in two's complement (deltas on one item
    /// commute, so moves on a hot slot never conflict).
    Delta = 2,
}

fn declared_write(
    kind: u32,
    value: &TickrateWord,
    name: &'static str,
) -> Result<Option<DeclaredWrite>, FfiError> {
    let value = U256::from_be_bytes(value.bytes);
    match kind {
        0 => Ok(None),
        1 => Ok(Some(DeclaredWrite::Exact(value))),
        2 => Ok(Some(DeclaredWrite::Delta(I256::from_raw(value)))),
        other => Err(FfiError::InvalidArgument {
            name,
            reason: format!("{other} is not a TickrateWriteKind"),
        }),
    }
}

/// One storage slot of a move's Space Access List.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TickrateSlotAccess {
    /// The slot's key.
    pub slot: TickrateWord,
    /// A [`TickrateWriteKind`] value.
    pub write: u32,
    /// The declared value or delta (ignored for a read).
    pub value: TickrateWord,
}

/// One account of a move's Space Access List: every account and slot the move may touch must
/// be named, with the value each write leaves (or its delta).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TickrateAccountAccess {
    /// The account.
    pub address: TickrateAddress,
    /// A [`TickrateWriteKind`] value for the account's balance.
    pub balance_write: u32,
    /// The balance afterwards, or its delta (ignored for a read).
    pub balance: TickrateWord,
    /// The account's slots (may be null when `storage_len` is 0).
    pub storage: *const TickrateSlotAccess,
    /// How many slots `storage` holds.
    pub storage_len: usize,
}

impl TickrateAccountAccess {
    /// # Safety
    /// `storage` must be valid for reads of `storage_len` entries (or `storage_len` be 0).
    pub(crate) unsafe fn read_access(&self) -> Result<AccountAccess, FfiError> {
        if self.storage_len > SAL_SLOTS_PER_ACCOUNT_MAX {
            return Err(FfiError::InvalidArgument {
                name: "storage_len",
                reason: format!(
                    "{} slots exceed the {SAL_SLOTS_PER_ACCOUNT_MAX} an account may list",
                    self.storage_len
                ),
            });
        }
        // SAFETY: as the caller promises.
        let slots = unsafe { crate::api::slice(self.storage, self.storage_len, "storage") }?;
        let storage = slots
            .iter()
            .map(|slot| {
                Ok(SlotAccess {
                    slot: B256::from(slot.slot.bytes),
                    write: declared_write(slot.write, &slot.value, "storage[].write")?,
                })
            })
            .collect::<Result<Vec<_>, FfiError>>()?;
        Ok(AccountAccess {
            address: Address::from(self.address.bytes),
            balance: declared_write(self.balance_write, &self.balance, "balance_write")?,
            nonce: None,
            storage,
        })
    }
}

/// A contract call to sign and send: what a game move is in general.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TickrateCall {
    /// The contract (or account) called.
    pub to: TickrateAddress,
    /// Wei sent with the call.
    pub value: TickrateWord,
    /// The call data (may be null when `calldata_len` is 0).
    pub calldata: *const u8,
    /// Bytes of call data.
    pub calldata_len: usize,
    /// Gas the call may use.
    pub gas_limit: u64,
    /// The Space Access List beyond the sender and `to`, which are always named (may be null
    /// when `accesses_len` is 0).
    pub accesses: *const TickrateAccountAccess,
    /// How many accounts `accesses` holds.
    pub accesses_len: usize,
}

/// The most accounts a call may list (the sequencer's bound).
pub(crate) const CALL_ACCOUNTS_MAX: usize = SAL_ACCOUNTS_MAX;
