//! The canonical encoding of what execution reads and produces: slices, diffs and outcomes.
//!
//! They leave the executing node in execution records (the moves, the slices they ran on and
//! their outcomes, which anyone can re-execute to check a group's committed root) and in the
//! results pushed to sequencers. Every bound is checked before anything is allocated, as in
//! [`primitives::codec`]: a slice or a diff names at most the items a Space Access List can.

use std::collections::BTreeMap;

use alloy_primitives::{Address, B256, Bytes, Log, LogData, U256};
use primitives::{
    Decode, DecodeError, Decoder, Encode, FailureReason,
    codec::{put_bytes, put_length, put_u256},
    constants::{SAL_ACCOUNTS_MAX, SAL_SLOTS_PER_ACCOUNT_MAX},
};

use crate::{AccountDiff, AccountSlice, MoveOutcome, StateDiff, StateSlice};

/// Bytes of contract code an account may hold (EIP-170's limit, doubled for headroom: revm
/// enforces the real limit at deployment).
pub const CODE_BYTES_MAX: usize = 2 * 24_576;
/// Logs one move may emit in an encoded outcome.
pub const LOGS_PER_MOVE_MAX: usize = 4_096;
/// Bytes of one log's data.
pub const LOG_DATA_BYTES_MAX: usize = 1024 * 1024;

const SLICE_VERSION: u8 = 1;
const DIFF_VERSION: u8 = 1;
const OUTCOME_VERSION: u8 = 1;

fn put_storage(out: &mut Vec<u8>, storage: &BTreeMap<B256, U256>) {
    put_length(out, storage.len());
    for (slot, value) in storage {
        slot.encode(out);
        put_u256(out, value);
    }
}

fn storage(decoder: &mut Decoder<'_>) -> Result<BTreeMap<B256, U256>, DecodeError> {
    let len = decoder.length("slots", SAL_SLOTS_PER_ACCOUNT_MAX)?;
    let mut storage = BTreeMap::new();
    for _ in 0..len {
        let slot = decoder.b256()?;
        let value = decoder.u256()?;
        if storage.insert(slot, value).is_some() {
            return Err(DecodeError::Invalid {
                what: "slots",
                why: "a slot listed twice",
            });
        }
    }
    Ok(storage)
}

/// Accounts keyed by address, each encoded by `put`, in address order.
fn put_accounts<T>(
    out: &mut Vec<u8>,
    accounts: &BTreeMap<Address, T>,
    put: impl Fn(&mut Vec<u8>, &T),
) {
    put_length(out, accounts.len());
    for (address, account) in accounts {
        address.encode(out);
        put(out, account);
    }
}

fn accounts<T>(
    decoder: &mut Decoder<'_>,
    read: impl Fn(&mut Decoder<'_>) -> Result<T, DecodeError>,
) -> Result<BTreeMap<Address, T>, DecodeError> {
    let len = decoder.length("accounts", SAL_ACCOUNTS_MAX)?;
    let mut accounts = BTreeMap::new();
    for _ in 0..len {
        let address = decoder.address()?;
        let account = read(decoder)?;
        if accounts.insert(address, account).is_some() {
            return Err(DecodeError::Invalid {
                what: "accounts",
                why: "an account listed twice",
            });
        }
    }
    Ok(accounts)
}

fn code(decoder: &mut Decoder<'_>) -> Result<Bytes, DecodeError> {
    Ok(Bytes::copy_from_slice(
        decoder.bytes("code", CODE_BYTES_MAX)?,
    ))
}

impl Encode for StateSlice {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(SLICE_VERSION);
        put_accounts(out, &self.accounts, |out, account| {
            put_u256(out, &account.balance);
            account.nonce.encode(out);
            put_bytes(out, &account.code);
            put_storage(out, &account.storage);
        });
    }
}

impl Decode for StateSlice {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("state slice", &[SLICE_VERSION])?;
        let accounts = accounts(decoder, |decoder| {
            Ok(AccountSlice {
                balance: decoder.u256()?,
                nonce: decoder.u64()?,
                code: code(decoder)?,
                storage: storage(decoder)?,
            })
        })?;
        Ok(StateSlice { accounts })
    }
}

/// Flags of the optional fields of an account diff.
const HAS_BALANCE: u8 = 1;
const HAS_NONCE: u8 = 2;
const HAS_CODE: u8 = 4;

impl Encode for StateDiff {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(DIFF_VERSION);
        put_accounts(out, &self.accounts, |out, change| {
            let mut flags = 0;
            if change.balance.is_some() {
                flags |= HAS_BALANCE;
            }
            if change.nonce.is_some() {
                flags |= HAS_NONCE;
            }
            if change.code.is_some() {
                flags |= HAS_CODE;
            }
            out.push(flags);
            if let Some(balance) = &change.balance {
                put_u256(out, balance);
            }
            if let Some(nonce) = change.nonce {
                nonce.encode(out);
            }
            if let Some(code) = &change.code {
                put_bytes(out, code);
            }
            put_storage(out, &change.storage);
        });
    }
}

impl Decode for StateDiff {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("state diff", &[DIFF_VERSION])?;
        let accounts = accounts(decoder, |decoder| {
            let flags = decoder.u8()?;
            if flags & !(HAS_BALANCE | HAS_NONCE | HAS_CODE) != 0 {
                return Err(DecodeError::Invalid {
                    what: "account diff",
                    why: "unknown flags",
                });
            }
            Ok(AccountDiff {
                balance: (flags & HAS_BALANCE != 0)
                    .then(|| decoder.u256())
                    .transpose()?,
                nonce: (flags & HAS_NONCE != 0)
                    .then(|| decoder.u64())
                    .transpose()?,
                code: (flags & HAS_CODE != 0).then(|| code(decoder)).transpose()?,
                storage: storage(decoder)?,
            })
        })?;
        Ok(StateDiff { accounts })
    }
}

fn put_log(out: &mut Vec<u8>, log: &Log) {
    log.address.encode(out);
    let topics = log.data.topics();
    out.push(topics.len() as u8);
    for topic in topics {
        topic.encode(out);
    }
    put_bytes(out, &log.data.data);
}

fn log(decoder: &mut Decoder<'_>) -> Result<Log, DecodeError> {
    let address = decoder.address()?;
    let count = decoder.u8()?;
    // The EVM's LOG0 to LOG4.
    if count > 4 {
        return Err(DecodeError::Invalid {
            what: "log",
            why: "more than 4 topics",
        });
    }
    let topics = (0..count)
        .map(|_| decoder.b256())
        .collect::<Result<Vec<_>, _>>()?;
    let data = Bytes::copy_from_slice(decoder.bytes("log data", LOG_DATA_BYTES_MAX)?);
    Ok(Log {
        address,
        data: LogData::new_unchecked(topics, data),
    })
}

impl Encode for MoveOutcome {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(OUTCOME_VERSION);
        self.hash.encode(out);
        match &self.status {
            Ok(()) => out.push(0),
            Err(reason) => {
                out.push(1);
                reason.encode(out);
            }
        }
        self.gas_used.encode(out);
        put_length(out, self.logs.len());
        for log in &self.logs {
            put_log(out, log);
        }
        self.diff.encode(out);
    }
}

impl Decode for MoveOutcome {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("move outcome", &[OUTCOME_VERSION])?;
        let hash = decoder.b256()?;
        let status = match decoder.u8()? {
            0 => Ok(()),
            1 => Err(FailureReason::decode(decoder)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "move status",
                    tag,
                });
            }
        };
        let gas_used = decoder.u64()?;
        let count = decoder.length("logs", LOGS_PER_MOVE_MAX)?;
        let mut logs = Vec::with_capacity(count.min(decoder.remaining()));
        for _ in 0..count {
            logs.push(log(decoder)?);
        }
        Ok(MoveOutcome {
            hash,
            status,
            gas_used,
            logs,
            diff: StateDiff::decode(decoder)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use primitives::finality::StateItem;

    use super::*;

    fn slice() -> StateSlice {
        StateSlice {
            accounts: BTreeMap::from([
                (
                    Address::repeat_byte(1),
                    AccountSlice {
                        balance: U256::from(5),
                        nonce: 3,
                        code: Bytes::from_static(&[0x60, 0x00]),
                        storage: BTreeMap::from([(B256::repeat_byte(9), U256::from(7))]),
                    },
                ),
                (Address::repeat_byte(2), AccountSlice::default()),
            ]),
        }
    }

    fn outcome() -> MoveOutcome {
        MoveOutcome {
            hash: B256::repeat_byte(4),
            status: Err(FailureReason::WrongDelta(StateItem::Balance(
                Address::repeat_byte(1),
            ))),
            gas_used: 21_000,
            logs: vec![Log {
                address: Address::repeat_byte(3),
                data: LogData::new_unchecked(
                    vec![B256::repeat_byte(5), B256::repeat_byte(6)],
                    Bytes::from_static(b"data"),
                ),
            }],
            diff: StateDiff {
                accounts: BTreeMap::from([
                    (
                        Address::repeat_byte(1),
                        AccountDiff {
                            nonce: Some(4),
                            ..AccountDiff::default()
                        },
                    ),
                    (
                        Address::repeat_byte(2),
                        AccountDiff {
                            balance: Some(U256::MAX),
                            code: Some(Bytes::from_static(&[1, 2, 3])),
                            storage: BTreeMap::from([(B256::ZERO, U256::ZERO)]),
                            ..AccountDiff::default()
                        },
                    ),
                ]),
            },
        }
    }

    #[test]
    fn slices_diffs_and_outcomes_round_trip() {
        assert_eq!(StateSlice::from_bytes(&slice().to_bytes()), Ok(slice()));
        assert_eq!(
            MoveOutcome::from_bytes(&outcome().to_bytes()),
            Ok(outcome())
        );
        let success = MoveOutcome {
            status: Ok(()),
            ..outcome()
        };
        assert_eq!(MoveOutcome::from_bytes(&success.to_bytes()), Ok(success));
    }

    #[test]
    fn malformed_encodings_are_refused_with_typed_errors() {
        let bytes = outcome().to_bytes();
        for cut in 0..bytes.len() {
            assert!(
                MoveOutcome::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut unknown_version = bytes.clone();
        unknown_version[0] = 9;
        assert_eq!(
            MoveOutcome::from_bytes(&unknown_version),
            Err(DecodeError::UnknownVersion {
                what: "move outcome",
                version: 9
            })
        );
        // An account listed twice.
        let mut twice = vec![SLICE_VERSION];
        put_length(&mut twice, 2);
        for _ in 0..2 {
            Address::ZERO.encode(&mut twice);
            put_u256(&mut twice, &U256::ZERO);
            0u64.encode(&mut twice);
            put_bytes(&mut twice, &[]);
            put_length(&mut twice, 0);
        }
        assert_eq!(
            StateSlice::from_bytes(&twice),
            Err(DecodeError::Invalid {
                what: "accounts",
                why: "an account listed twice"
            })
        );
        // More accounts than a list can name.
        let mut oversized = vec![SLICE_VERSION];
        put_length(&mut oversized, SAL_ACCOUNTS_MAX + 1);
        assert!(matches!(
            StateSlice::from_bytes(&oversized),
            Err(DecodeError::Oversized { .. })
        ));
    }
}
