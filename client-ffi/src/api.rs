//! The exported functions and the two handles, [`TickrateClient`] and [`TickrateAccount`].
//!
//! Every function runs its body in [`guard`]: it checks its pointers (null is
//! [`TickrateStatus::NullArgument`], never a crash), returns a status, and writes its results
//! through out-pointers only on success. Calls that ask the sequencer something block the
//! calling thread for at most [`READ_TIMEOUT`]; sending a move never waits for its ack (poll it
//! with `tickrate_move_ack`, or block on it with `tickrate_move_wait_for`).

// A C ABI is raw pointers and exported symbols: unsafe is this module's job, each use with
// its SAFETY reason.
#![allow(unsafe_code)]

use std::{
    collections::{HashMap, VecDeque},
    ffi::{CStr, c_char},
    net::{SocketAddr, ToSocketAddrs},
    panic::{AssertUnwindSafe, catch_unwind},
    sync::Arc,
    time::Duration,
};

use client_sdk::{
    ClientError, FailoverClient, FailoverConfig, Signer, StateChange, TickDiff, keys::AccountKey,
};
use parking_lot::Mutex;
use primitives::{
    AccountAccess, Address, B256, Bytes, SpaceAccessList, Transaction, TxHash, U256,
    api::Entity,
    constants::{TICK_DIFF_ENTITIES_MAX, TX_DATA_BYTES_MAX},
};
use tokio::{runtime::Runtime, sync::mpsc};

use crate::{
    error::{FfiError, TickrateStatus, guard},
    game::{self, TICKRATE_BOARD_CELLS},
    types::{
        CALL_ACCOUNTS_MAX, TickrateAckKey, TickrateAddress, TickrateCall, TickrateHash,
        TickrateItemValue, TickrateLevel, TickrateMove, TickrateStateChange, TickrateStateItem,
        TickrateWord, target_level,
    },
};

/// How long a read (pending nonce, pending storage, status) may block the caller.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The tick written by `tickrate_move_ack` for a move found in a batch after a failover, whose
/// own ack (and its promised tick) never reached this client.
pub const TICKRATE_TICK_UNKNOWN: u64 = u64::MAX;

/// Items one `tickrate_follow` may name (the sequencer's bound on what a session follows).
pub const TICKRATE_FOLLOWED_ITEMS_MAX: usize = 256;
const _: () = assert!(TICKRATE_FOLLOWED_ITEMS_MAX == TICK_DIFF_ENTITIES_MAX);

/// Acks remembered for `tickrate_move_ack`; the oldest is forgotten past this, so a game that
/// never polls does not grow without bound.
const ACKS_REMEMBERED_MAX: usize = 65_536;

/// What became of a move's ack.
enum AckOutcome {
    Waiting,
    Acked(Option<u64>),
    Failed {
        status: TickrateStatus,
        message: String,
    },
}

/// The acks of the moves this client sent, newest last.
#[derive(Default)]
struct AckBook {
    outcomes: HashMap<TxHash, AckOutcome>,
    order: VecDeque<TxHash>,
}

impl AckBook {
    fn expect(&mut self, hash: TxHash) {
        if self.outcomes.insert(hash, AckOutcome::Waiting).is_none() {
            self.order.push_back(hash);
        }
        while self.order.len() > ACKS_REMEMBERED_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.outcomes.remove(&oldest);
            }
        }
    }

    fn settle(&mut self, hash: TxHash, outcome: AckOutcome) {
        if let Some(entry) = self.outcomes.get_mut(&hash) {
            *entry = outcome;
        }
    }
}

/// The tick diffs of the followed items, and one taken but not yet delivered (the caller's
/// buffer was too small for it).
struct TickDiffQueue {
    receiver: mpsc::UnboundedReceiver<TickDiff>,
    held: Option<TickDiff>,
}

/// A connection to a list of sequencers (failing over from one to the next), with the runtime
/// that drives it. Opaque to C; made by `tickrate_client_connect`, freed by
/// `tickrate_client_free`.
pub struct TickrateClient {
    client: FailoverClient,
    chain_id: u64,
    acks: Arc<Mutex<AckBook>>,
    changes: Mutex<mpsc::UnboundedReceiver<StateChange>>,
    tick_diffs: Mutex<TickDiffQueue>,
    /// Declared last so that it is dropped last: the client's tasks run on it.
    runtime: Runtime,
}

impl TickrateClient {
    /// Runs `future` on the client's runtime, blocking the caller for at most `timeout`.
    fn block_on<T>(
        &self,
        timeout: Duration,
        future: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, FfiError> {
        self.runtime
            .block_on(async { tokio::time::timeout(timeout, future).await })
            .map_err(|_| FfiError::Timeout {
                ms: timeout.as_millis() as u64,
            })?
            .map_err(FfiError::from)
    }

    fn send(&self, signer: &Signer, tx: Transaction) -> Result<TickrateMove, FfiError> {
        let handle = self.block_on(READ_TIMEOUT, self.client.send(signer, tx))?;
        let (hash, nonce) = (handle.hash, handle.nonce);
        self.acks.lock().expect(hash);
        let acks = self.acks.clone();
        self.runtime.spawn(async move {
            let outcome = match handle.ack().await {
                Ok(tick) => AckOutcome::Acked(tick),
                Err(error) => {
                    let error = FfiError::from(error);
                    AckOutcome::Failed {
                        status: error.status(),
                        message: error.to_string(),
                    }
                }
            };
            acks.lock().settle(hash, outcome);
        });
        Ok(TickrateMove {
            hash: TickrateHash { bytes: hash.0 },
            nonce,
        })
    }
}

/// An account's signing key (secp256k1). Opaque to C; made by `tickrate_account_from_seed` or
/// `tickrate_account_from_secret`, freed by `tickrate_account_free`.
pub struct TickrateAccount {
    signer: Signer,
}

/// A shared reference from a pointer the caller gives, or [`FfiError::NullArgument`].
///
/// # Safety
/// `pointer` must be null or point to a live, initialised `T` for the returned lifetime.
unsafe fn reference<'a, T>(pointer: *const T, name: &'static str) -> Result<&'a T, FfiError> {
    // SAFETY: as the caller promises.
    unsafe { pointer.as_ref() }.ok_or(FfiError::NullArgument(name))
}

/// A slice from a pointer and a length the caller gives; null is allowed for an empty slice.
///
/// # Safety
/// `data` must be valid for reads of `len` elements when `len` is not 0.
pub(crate) unsafe fn slice<'a, T>(
    data: *const T,
    len: usize,
    name: &'static str,
) -> Result<&'a [T], FfiError> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(FfiError::NullArgument(name));
    }
    // SAFETY: non-null, and valid for `len` elements as the caller promises.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// Writes a result through an out-pointer the caller gives, or [`FfiError::NullArgument`].
///
/// # Safety
/// `out` must be null or valid for a write of one `T`.
unsafe fn write<T>(out: *mut T, value: T, name: &'static str) -> Result<(), FfiError> {
    if out.is_null() {
        return Err(FfiError::NullArgument(name));
    }
    // SAFETY: non-null and writable as the caller promises; `T` is a plain C value.
    unsafe { out.write(value) };
    Ok(())
}

fn parse_sequencers(list: &str) -> Result<Vec<SocketAddr>, FfiError> {
    let invalid = |reason: String| FfiError::InvalidArgument {
        name: "sequencers",
        reason,
    };
    let mut addresses = Vec::new();
    for entry in list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let resolved = entry
            .to_socket_addrs()
            .map_err(|error| invalid(format!("`{entry}`: {error}")))?
            .next()
            .ok_or_else(|| invalid(format!("`{entry}` resolves to no address")))?;
        addresses.push(resolved);
    }
    if addresses.is_empty() {
        return Err(invalid("no sequencer address in the list".to_string()));
    }
    Ok(addresses)
}

/// Connects to the first sequencer of `sequencers` that answers, a comma-separated list of
/// `host:port` (KCP over UDP; the devnet prints its sequencers' addresses), for moves on the
/// network `chain_id`. The client fails over to the next sequencer of the list if its own dies.
/// Blocks until a sequencer answers or all were tried.
///
/// # Safety
/// `sequencers` must be a NUL-terminated string; `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_client_connect(
    sequencers: *const c_char,
    chain_id: u64,
    out: *mut *mut TickrateClient,
) -> TickrateStatus {
    guard(|| {
        if sequencers.is_null() {
            return Err(FfiError::NullArgument("sequencers"));
        }
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        // SAFETY: non-null and NUL-terminated as the caller promises.
        let text = unsafe { CStr::from_ptr(sequencers) }
            .to_str()
            .map_err(|error| FfiError::InvalidArgument {
                name: "sequencers",
                reason: error.to_string(),
            })?;
        let addresses = parse_sequencers(text)?;
        // One worker: the client's tasks are a session reader and a supervisor; the game's own
        // threads keep the cores.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("tickrate-client")
            .enable_all()
            .build()
            .map_err(FfiError::Runtime)?;
        let client = runtime.block_on(FailoverClient::connect(FailoverConfig::new(addresses)))?;
        let changes = Mutex::new(client.changes());
        let tick_diffs = Mutex::new(TickDiffQueue {
            receiver: client.tick_diffs(),
            held: None,
        });
        let handle = Box::new(TickrateClient {
            client,
            chain_id,
            acks: Arc::default(),
            changes,
            tick_diffs,
            runtime,
        });
        // SAFETY: checked non-null above; writable as the caller promises.
        unsafe { write(out, Box::into_raw(handle), "out") }
    })
}

/// Closes the client's session and frees it. Null is allowed (nothing happens).
///
/// # Safety
/// `client` must be null or a handle from `tickrate_client_connect` not yet freed, used by no
/// other thread during or after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_client_free(client: *mut TickrateClient) {
    if client.is_null() {
        return;
    }
    // SAFETY: a live handle from `Box::into_raw`, given back once, as the caller promises.
    let handle = unsafe { Box::from_raw(client) };
    let _ = catch_unwind(AssertUnwindSafe(|| drop(handle)));
}

fn new_account(key: AccountKey, out: *mut *mut TickrateAccount) -> Result<(), FfiError> {
    let handle = Box::new(TickrateAccount {
        signer: Signer::Account(key),
    });
    // SAFETY: the exported callers pass their caller's out-pointer, valid or null.
    unsafe { write(out, Box::into_raw(handle), "out") }
}

/// Makes the development key of `seed` (the devnet's players use seeds; never for real funds).
///
/// # Safety
/// `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_account_from_seed(
    seed: u64,
    out: *mut *mut TickrateAccount,
) -> TickrateStatus {
    guard(|| {
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        new_account(AccountKey::from_seed(seed), out)
    })
}

/// Makes an account key from its 32-byte secret (big-endian scalar).
///
/// # Safety
/// `secret` must point to a `TickrateWord`; `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_account_from_secret(
    secret: *const TickrateWord,
    out: *mut *mut TickrateAccount,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let secret = unsafe { reference(secret, "secret") }?;
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        let key =
            AccountKey::from_bytes(secret.bytes).map_err(|error| FfiError::InvalidArgument {
                name: "secret",
                reason: error.to_string(),
            })?;
        new_account(key, out)
    })
}

/// Writes the account's address.
///
/// # Safety
/// `account` must be a live handle; `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_account_address(
    account: *const TickrateAccount,
    out: *mut TickrateAddress,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let account = unsafe { reference(account, "account") }?;
        let bytes = account.signer.account().into_array();
        // SAFETY: as the caller promises.
        unsafe { write(out, TickrateAddress { bytes }, "out") }
    })
}

/// Frees an account key. Null is allowed (nothing happens).
///
/// # Safety
/// `account` must be null or a handle not yet freed, used by no other thread during or after
/// this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_account_free(account: *mut TickrateAccount) {
    if account.is_null() {
        return;
    }
    // SAFETY: a live handle from `Box::into_raw`, given back once, as the caller promises.
    let handle = unsafe { Box::from_raw(account) };
    let _ = catch_unwind(AssertUnwindSafe(|| drop(handle)));
}

/// Writes the address of the devnet's demo game contract.
///
/// # Safety
/// `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_game_address(out: *mut TickrateAddress) -> TickrateStatus {
    guard(|| {
        let bytes = game::GAME_ADDRESS.into_array();
        // SAFETY: as the caller promises.
        unsafe { write(out, TickrateAddress { bytes }, "out") }
    })
}

/// Writes the demo game's storage slot that holds `player`'s cell.
///
/// # Safety
/// `player` must point to an address; `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_game_slot_of(
    player: *const TickrateAddress,
    out: *mut TickrateWord,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let player = unsafe { reference(player, "player") }?;
        let slot = game::slot_of(&Address::from(player.bytes));
        // SAFETY: as the caller promises.
        unsafe { write(out, TickrateWord { bytes: slot.0 }, "out") }
    })
}

/// Signs and sends a demo game move of `account`'s piece to `cell` (below
/// `TICKRATE_BOARD_CELLS`) with the account's next nonce, without waiting for the ack.
///
/// # Safety
/// `client` and `account` must be live handles; `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_send_game_move(
    client: *const TickrateClient,
    account: *const TickrateAccount,
    cell: u64,
    out: *mut TickrateMove,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, account) =
            unsafe { (reference(client, "client")?, reference(account, "account")?) };
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        if cell >= TICKRATE_BOARD_CELLS {
            return Err(FfiError::InvalidArgument {
                name: "cell",
                reason: format!("{cell} is off the {TICKRATE_BOARD_CELLS}-cell board"),
            });
        }
        let tx = game::game_move(account.signer.account(), client.chain_id, cell);
        let sent = client.send(&account.signer, tx)?;
        // SAFETY: as the caller promises.
        unsafe { write(out, sent, "out") }
    })
}

/// The transaction of a call, its Space Access List naming the sender and `to` besides what
/// the caller lists (the caller's declarations of those two win).
///
/// # Safety
/// The call's pointers must be valid for their lengths.
unsafe fn call_transaction(
    call: &TickrateCall,
    sender: Address,
    chain_id: u64,
) -> Result<Transaction, FfiError> {
    if call.calldata_len > TX_DATA_BYTES_MAX {
        return Err(FfiError::InvalidArgument {
            name: "calldata_len",
            reason: format!(
                "{} bytes exceed the {TX_DATA_BYTES_MAX} a move may carry",
                call.calldata_len
            ),
        });
    }
    if call.accesses_len > CALL_ACCOUNTS_MAX {
        return Err(FfiError::InvalidArgument {
            name: "accesses_len",
            reason: format!(
                "{} accounts exceed the {CALL_ACCOUNTS_MAX} a list may name",
                call.accesses_len
            ),
        });
    }
    let to = Address::from(call.to.bytes);
    // SAFETY: as the caller promises.
    let (data, accesses) = unsafe {
        (
            slice(call.calldata, call.calldata_len, "calldata")?,
            slice(call.accesses, call.accesses_len, "accesses")?,
        )
    };
    let mut entries = vec![AccountAccess::read(sender), AccountAccess::read(to)];
    for access in accesses {
        // SAFETY: as the caller promises.
        entries.push(unsafe { access.read_access() }?);
    }
    Ok(Transaction {
        chain_id,
        nonce: 0,
        to,
        value: U256::from_be_bytes(call.value.bytes),
        data: Bytes::copy_from_slice(data),
        gas_limit: call.gas_limit,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new(entries),
    })
}

/// Signs and sends a contract call of `account` with the account's next nonce, without waiting
/// for the ack.
///
/// # Safety
/// `client` and `account` must be live handles; `call` must point to a call whose pointers are
/// valid for their lengths; `out` must be valid for a write.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_send_call(
    client: *const TickrateClient,
    account: *const TickrateAccount,
    call: *const TickrateCall,
    out: *mut TickrateMove,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, account, call) = unsafe {
            (
                reference(client, "client")?,
                reference(account, "account")?,
                reference(call, "call")?,
            )
        };
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        // SAFETY: as the caller promises.
        let tx = unsafe { call_transaction(call, account.signer.account(), client.chain_id) }?;
        let sent = client.send(&account.signer, tx)?;
        // SAFETY: as the caller promises.
        unsafe { write(out, sent, "out") }
    })
}

/// Polls a move's ack without blocking: `TICKRATE_STATUS_OK` with the tick the sequencer
/// promised the move by (or `TICKRATE_TICK_UNKNOWN`), `TICKRATE_STATUS_NOT_READY` while it is
/// on its way, `TICKRATE_STATUS_REFUSED` (with the reason) if it was refused, or
/// `TICKRATE_STATUS_UNKNOWN_MOVE`. `tick` may be null.
///
/// # Safety
/// `client` must be a live handle; `hash` must point to a hash; `tick` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_move_ack(
    client: *const TickrateClient,
    hash: *const TickrateHash,
    tick: *mut u64,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, hash) = unsafe { (reference(client, "client")?, reference(hash, "hash")?) };
        let hash = TxHash::from(hash.bytes);
        let promised = match client.acks.lock().outcomes.get(&hash) {
            None => return Err(FfiError::UnknownMove(hash)),
            Some(AckOutcome::Waiting) => return Err(FfiError::NotReady("no ack yet")),
            Some(AckOutcome::Failed { status, message }) => {
                return Err(FfiError::AckFailed {
                    status: *status,
                    message: message.clone(),
                });
            }
            Some(AckOutcome::Acked(promised)) => promised.unwrap_or(TICKRATE_TICK_UNKNOWN),
        };
        if !tick.is_null() {
            // SAFETY: non-null and writable as the caller promises.
            unsafe { write(tick, promised, "tick") }?;
        }
        Ok(())
    })
}

/// Polls a move's ack key without blocking: `TICKRATE_STATUS_OK` with the tick and sequence
/// number of the sequencer's signed preconfirmation written to `out`, then the statuses of
/// `tickrate_move_ack` (`TICKRATE_STATUS_NOT_READY` also while an ack came without a
/// preconfirmation that verified, which a move found in a batch after a failover never has).
///
/// # Safety
/// `client` must be a live handle; `hash` must point to a hash; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_move_ack_key(
    client: *const TickrateClient,
    hash: *const TickrateHash,
    out: *mut TickrateAckKey,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, hash) = unsafe { (reference(client, "client")?, reference(hash, "hash")?) };
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        let hash = TxHash::from(hash.bytes);
        match client.acks.lock().outcomes.get(&hash) {
            None => return Err(FfiError::UnknownMove(hash)),
            Some(AckOutcome::Waiting) => return Err(FfiError::NotReady("no ack yet")),
            Some(AckOutcome::Failed { status, message }) => {
                return Err(FfiError::AckFailed {
                    status: *status,
                    message: message.clone(),
                });
            }
            Some(AckOutcome::Acked(_)) => {}
        }
        let key = client.client.ack_key(&hash).ok_or(FfiError::NotReady(
            "the ack carried no verified preconfirmation",
        ))?;
        // SAFETY: non-null and writable as the caller promises.
        unsafe {
            write(
                out,
                TickrateAckKey {
                    tick: key.tick,
                    seq: key.seq,
                },
                "out",
            )
        }
    })
}

/// Writes the level this client last learned for a move, without asking the sequencer
/// (`TICKRATE_LEVEL_UNKNOWN` if none yet).
///
/// # Safety
/// `client` must be a live handle; `hash` must point to a hash; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_move_level(
    client: *const TickrateClient,
    hash: *const TickrateHash,
    out: *mut TickrateLevel,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, hash) = unsafe { (reference(client, "client")?, reference(hash, "hash")?) };
        let level = client
            .client
            .level(&TxHash::from(hash.bytes))
            .map_or(TickrateLevel::Unknown, |level| TickrateLevel::from(&level));
        // SAFETY: as the caller promises.
        unsafe { write(out, level, "out") }
    })
}

/// Asks the sequencer how far a move has gone (blocks for at most 5 s).
///
/// # Safety
/// `client` must be a live handle; `hash` must point to a hash; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_move_status(
    client: *const TickrateClient,
    hash: *const TickrateHash,
    out: *mut TickrateLevel,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, hash) = unsafe { (reference(client, "client")?, reference(hash, "hash")?) };
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        let status =
            client.block_on(READ_TIMEOUT, client.client.status(TxHash::from(hash.bytes)))?;
        let level = status
            .as_ref()
            .map_or(TickrateLevel::Unknown, TickrateLevel::from);
        // SAFETY: as the caller promises.
        unsafe { write(out, level, "out") }
    })
}

/// Blocks until a move reaches `level` (a `TickrateLevel` from `PENDING` to `SETTLED`) or
/// fails, for at most `timeout_ms`, and writes the level reached. A failed move writes
/// `TICKRATE_LEVEL_FAILED` and returns `TICKRATE_STATUS_MOVE_FAILED` with the reason.
///
/// # Safety
/// `client` must be a live handle; `hash` must point to a hash; `reached` null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_move_wait_for(
    client: *const TickrateClient,
    hash: *const TickrateHash,
    level: u32,
    timeout_ms: u64,
    reached: *mut TickrateLevel,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, hash) = unsafe { (reference(client, "client")?, reference(hash, "hash")?) };
        let target = target_level(level)?;
        let hash = TxHash::from(hash.bytes);
        let level = client.block_on(
            Duration::from_millis(timeout_ms),
            client.client.wait_for(hash, target),
        )?;
        if !reached.is_null() {
            // SAFETY: non-null and writable as the caller promises.
            unsafe { write(reached, TickrateLevel::from(&level), "reached") }?;
        }
        match level {
            primitives::FinalityLevel::Failed(reason) => Err(FfiError::MoveFailed { hash, reason }),
            _ => Ok(()),
        }
    })
}

/// Asks the sequencer for the account's next nonce in its pending state (blocks for at most
/// 5 s).
///
/// # Safety
/// `client` must be a live handle; `address` must point to an address; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_pending_nonce(
    client: *const TickrateClient,
    address: *const TickrateAddress,
    out: *mut u64,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, address) =
            unsafe { (reference(client, "client")?, reference(address, "address")?) };
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        let nonce = client.block_on(
            READ_TIMEOUT,
            client.client.pending_nonce(Address::from(address.bytes)),
        )?;
        // SAFETY: as the caller promises.
        unsafe { write(out, nonce, "out") }
    })
}

/// Asks the sequencer for a storage slot's value in its pending state (blocks for at most 5 s).
///
/// # Safety
/// `client` must be a live handle; `address` and `slot` must point to values; `out` writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_pending_storage(
    client: *const TickrateClient,
    address: *const TickrateAddress,
    slot: *const TickrateWord,
    out: *mut TickrateWord,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, address, slot) = unsafe {
            (
                reference(client, "client")?,
                reference(address, "address")?,
                reference(slot, "slot")?,
            )
        };
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        let value = client.block_on(
            READ_TIMEOUT,
            client
                .client
                .pending_storage(Address::from(address.bytes), B256::from(slot.bytes)),
        )?;
        let bytes = value.to_be_bytes();
        // SAFETY: as the caller promises.
        unsafe { write(out, TickrateWord { bytes }, "out") }
    })
}

/// Watches an item of the sequencer's pending state: its value now, then each new one, queue
/// up for `tickrate_poll_change`. Kept across failovers.
///
/// # Safety
/// `client` must be a live handle; `item` must point to an item.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_subscribe(
    client: *const TickrateClient,
    item: *const TickrateStateItem,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, item) = unsafe { (reference(client, "client")?, reference(item, "item")?) };
        let item = item.to_item()?;
        client.block_on(READ_TIMEOUT, client.client.subscribe(item))
    })
}

/// Stops watching an item.
///
/// # Safety
/// `client` must be a live handle; `item` must point to an item.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_unsubscribe(
    client: *const TickrateClient,
    item: *const TickrateStateItem,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, item) = unsafe { (reference(client, "client")?, reference(item, "item")?) };
        let item = item.to_item()?;
        client.block_on(READ_TIMEOUT, client.client.unsubscribe(item))
    })
}

/// Takes the oldest queued change of a watched item without blocking: `TICKRATE_STATUS_OK`
/// with the change written, `TICKRATE_STATUS_NOT_READY` when none is queued (call it in a loop
/// each frame until then), or `TICKRATE_STATUS_CLOSED`.
///
/// # Safety
/// `client` must be a live handle; `out` must be writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_poll_change(
    client: *const TickrateClient,
    out: *mut TickrateStateChange,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let client = unsafe { reference(client, "client") }?;
        if out.is_null() {
            return Err(FfiError::NullArgument("out"));
        }
        let mut changes = client.changes.lock();
        loop {
            let change = match changes.try_recv() {
                Ok(change) => change,
                Err(mpsc::error::TryRecvError::Empty) => {
                    return Err(FfiError::NotReady("no change queued"));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(ClientError::Closed.into());
                }
            };
            if let Some(change) = TickrateStateChange::from_change(&change) {
                // SAFETY: as the caller promises.
                return unsafe { write(out, change, "out") };
            }
        }
    })
}

/// Follows `items` (`len` of them, at most `TICKRATE_FOLLOWED_ITEMS_MAX`) tick by tick, in
/// place of what this client followed, across failovers: a diff with their current values
/// comes at once, then one diff per sequencer tick in which any of their pending values
/// changed, queued for `tickrate_poll_tick_diff`. `len` 0 stops (then `items` may be null).
///
/// # Safety
/// `client` must be a live handle; `items` must be valid for reads of `len` items.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_follow(
    client: *const TickrateClient,
    items: *const TickrateStateItem,
    len: usize,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let (client, items) =
            unsafe { (reference(client, "client")?, slice(items, len, "items")?) };
        if items.len() > TICKRATE_FOLLOWED_ITEMS_MAX {
            return Err(FfiError::InvalidArgument {
                name: "len",
                reason: format!("{len} items, at most {TICKRATE_FOLLOWED_ITEMS_MAX}"),
            });
        }
        let entities = items
            .iter()
            .map(|item| item.to_item().map(Entity::Item))
            .collect::<Result<Vec<_>, _>>()?;
        client.block_on(READ_TIMEOUT, client.client.follow(entities))
    })
}

/// Takes the oldest queued tick diff without blocking, as a game loop does once a frame:
/// `TICKRATE_STATUS_OK` with the tick written to `tick`, its changed items and their values at
/// the tick's end to `changes` (room for `capacity`) and how many to `count`;
/// `TICKRATE_STATUS_NOT_READY` when none is queued; `TICKRATE_STATUS_INVALID_ARGUMENT` with
/// the count needed in `count` when `capacity` is too small (the diff stays queued: call again
/// with more room; a diff holds at most as many items as were followed); or
/// `TICKRATE_STATUS_CLOSED`.
///
/// # Safety
/// `client` must be a live handle; `tick` and `count` must be writable; `changes` must be
/// valid for writes of `capacity` values (null if `capacity` is 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tickrate_poll_tick_diff(
    client: *const TickrateClient,
    tick: *mut u64,
    changes: *mut TickrateItemValue,
    capacity: usize,
    count: *mut usize,
) -> TickrateStatus {
    guard(|| {
        // SAFETY: as the caller promises.
        let client = unsafe { reference(client, "client") }?;
        if tick.is_null() {
            return Err(FfiError::NullArgument("tick"));
        }
        if count.is_null() {
            return Err(FfiError::NullArgument("count"));
        }
        if capacity > 0 && changes.is_null() {
            return Err(FfiError::NullArgument("changes"));
        }
        let mut queue = client.tick_diffs.lock();
        let diff = match queue.held.take() {
            Some(diff) => diff,
            None => match queue.receiver.try_recv() {
                Ok(diff) => diff,
                Err(mpsc::error::TryRecvError::Empty) => {
                    return Err(FfiError::NotReady("no tick diff queued"));
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(ClientError::Closed.into());
                }
            },
        };
        let values: Vec<TickrateItemValue> = diff
            .changes
            .iter()
            .filter_map(|change| TickrateItemValue::from_item_value(&change.item, change.value))
            .collect();
        if values.len() > capacity {
            let needed = values.len();
            queue.held = Some(diff);
            // SAFETY: non-null and writable as the caller promises.
            unsafe { write(count, needed, "count") }?;
            return Err(FfiError::InvalidArgument {
                name: "capacity",
                reason: format!("the diff has {needed} changes, room for {capacity}"),
            });
        }
        // SAFETY: `changes` is non-null (checked above when `capacity` > 0, and nothing is
        // written when it is 0) and valid for `capacity` ≥ `values.len()` writes.
        unsafe {
            for (index, value) in values.iter().enumerate() {
                changes.add(index).write(*value);
            }
            write(tick, diff.tick, "tick")?;
            write(count, values.len(), "count")
        }
    })
}

/// The name of a `TickrateLevel` value ("PENDING", "EXECUTED"...), a static string never to
/// be freed; "INVALID" for a value that is no level.
#[unsafe(no_mangle)]
pub extern "C" fn tickrate_level_name(level: u32) -> *const c_char {
    let name: &'static CStr = match level {
        0 => c"UNKNOWN",
        1 => c"PENDING",
        2 => c"SEQUENCED",
        3 => c"FINALIZED",
        4 => c"EXECUTED",
        5 => c"SETTLED",
        6 => c"FAILED",
        _ => c"INVALID",
    };
    name.as_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequencer_list_parses_or_says_what_is_wrong() {
        assert_eq!(
            parse_sequencers("127.0.0.1:7600, 127.0.0.1:7601").expect("two addresses"),
            vec![
                SocketAddr::from(([127, 0, 0, 1], 7600)),
                SocketAddr::from(([127, 0, 0, 1], 7601))
            ]
        );
        assert!(matches!(
            parse_sequencers(" , "),
            Err(FfiError::InvalidArgument {
                name: "sequencers",
                ..
            })
        ));
        assert!(matches!(
            parse_sequencers("no-port-here"),
            Err(FfiError::InvalidArgument {
                name: "sequencers",
                ..
            })
        ));
    }

    #[test]
    fn null_pointers_and_bad_enums_are_statuses_not_crashes() {
        // SAFETY: every pointer is null or a live local; null is what is being tested.
        unsafe {
            assert_eq!(
                tickrate_client_connect(std::ptr::null(), 1, std::ptr::null_mut()),
                TickrateStatus::NullArgument
            );
            assert_eq!(
                tickrate_client_connect(c"".as_ptr(), 1, &mut std::ptr::null_mut()),
                TickrateStatus::InvalidArgument
            );
            let mut account = std::ptr::null_mut();
            assert_eq!(
                tickrate_account_from_seed(5, &mut account),
                TickrateStatus::Ok
            );
            let mut address = TickrateAddress::default();
            assert_eq!(
                tickrate_account_address(account, &mut address),
                TickrateStatus::Ok
            );
            assert_eq!(
                address.bytes,
                AccountKey::from_seed(5).address().into_array()
            );
            let mut moved = TickrateMove::default();
            assert_eq!(
                tickrate_send_game_move(std::ptr::null(), account, 3, &mut moved),
                TickrateStatus::NullArgument
            );
            tickrate_account_free(account);
            let zero = TickrateWord::default();
            assert_eq!(
                tickrate_account_from_secret(&zero, &mut account),
                TickrateStatus::InvalidArgument,
                "zero is no secp256k1 secret"
            );
            let item = TickrateStateItem {
                kind: 9,
                ..TickrateStateItem::default()
            };
            assert!(item.to_item().is_err());
            let hash = TickrateHash::default();
            let mut key = TickrateAckKey::default();
            assert_eq!(
                tickrate_move_ack_key(std::ptr::null(), &hash, &mut key),
                TickrateStatus::NullArgument
            );
            assert_eq!(
                tickrate_follow(std::ptr::null(), &item, 1),
                TickrateStatus::NullArgument
            );
            let (mut tick, mut count) = (0u64, 0usize);
            assert_eq!(
                tickrate_poll_tick_diff(
                    std::ptr::null(),
                    &mut tick,
                    std::ptr::null_mut(),
                    0,
                    &mut count
                ),
                TickrateStatus::NullArgument
            );
            assert!(target_level(6).is_err(), "nobody waits for a failure");
            assert_eq!(CStr::from_ptr(tickrate_level_name(4)), c"EXECUTED");
            assert_eq!(CStr::from_ptr(tickrate_level_name(77)), c"INVALID");
        }
    }
}
