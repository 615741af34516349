//! Moves signed as Ethereum transactions, so that wallets and scripts need no Tickrate code.
//!
//! An Ethereum client signs a legacy (EIP-155), EIP-2930 or EIP-1559 transaction; it knows
//! nothing of Space Access Lists. A gateway decodes the signed envelope ([`decode_envelope`]),
//! estimates the list, and submits a move whose fields are the transaction's and whose
//! signature is [`MoveSignature::Ethereum`](crate::tx::MoveSignature::Ethereum): the
//! Ethereum signature plus the few signed fields a move does not hold (type, creation, the two
//! EIP-1559 fee caps). Anyone can rebuild the Ethereum signing hash from the move and that
//! signature, so the move verifies like any other, and its Ethereum hash (keccak-256 of the
//! signed envelope, [`ethereum_hash`]) is what Ethereum clients know it by.
//!
//! The Space Access List is not covered by the Ethereum signature: the gateway chooses it. A
//! wrong list can only make the move fail (consuming its nonce), never make it do something its
//! sender did not sign. A contract creation is a move whose `to` is the created address,
//! `keccak256(rlp(sender, nonce))[12..]`, as Ethereum computes it.
//!
//! Tickrate has no base fee: the price a move pays per gas is the legacy or EIP-2930 gas price,
//! or for EIP-1559 `min(max_fee_per_gas, max_priority_fee_per_gas)` (the effective price at a
//! base fee of zero).
//!
//! An EIP-2930 access list (type 1, or type 2 with a list) is signed, so the move carries it
//! as signed, order and repeats kept, in its [`EthereumSignature`]: the signing hash is rebuilt
//! from it. It is no substitute for the Space Access List, which also declares writes; the
//! rule is that **every address and slot of the Ethereum list is in the Space Access List, a
//! read at least** ([`EthereumSignature::check`], so sequencers and execution refuse a move that
//! breaks it). Execution then gives the list to revm as Ethereum does: its items are warm from
//! the start and its intrinsic gas (2,400 per address, 1,900 per slot) is charged, so gas used
//! and receipts match Ethereum's.

use alloy_consensus::{SignableTransaction, Signed, TxEip1559, TxEip2930, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Address, B256, TxKind, U256, keccak256};

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode, put_length},
    constants::{SAL_ACCOUNTS_MAX, SAL_SLOTS_PER_ACCOUNT_MAX, TX_DATA_BYTES_MAX},
    keys::{Signature, SignatureError},
    tx::{SpaceAccessList, Transaction, TxError},
};

/// An EIP-2930 access list as its transaction signed it ([`EthereumAccessList`]), and one of its
/// entries ([`EthereumAccessListItem`]).
pub use alloy_eips::eip2930::{
    AccessList as EthereumAccessList, AccessListItem as EthereumAccessListItem,
};

/// The Ethereum transaction type a move was signed as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EthereumKind {
    /// Type 0, with an EIP-155 chain id.
    Legacy,
    /// Type 1 (EIP-2930).
    Eip2930,
    /// Type 2 (EIP-1559).
    Eip1559,
}

/// The Ethereum signature of a move and the signed fields a move does not hold.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct EthereumSignature {
    /// The transaction type.
    pub kind: EthereumKind,
    /// Whether the transaction creates a contract (its `to` was empty).
    pub create: bool,
    /// EIP-1559 `max_fee_per_gas`; zero for the other types.
    pub max_fee_per_gas: u128,
    /// EIP-1559 `max_priority_fee_per_gas`; zero for the other types.
    pub max_priority_fee_per_gas: u128,
    /// `r || s || y_parity` (0 or 1).
    pub signature: Signature,
    /// The EIP-2930 access list it signed (empty for legacy transactions): at most
    /// [`SAL_ACCOUNTS_MAX`] entries of at most [`SAL_SLOTS_PER_ACCOUNT_MAX`] slots each, since
    /// every item must fit in the Space Access List.
    pub access_list: EthereumAccessList,
}

/// Why a signed Ethereum transaction cannot be a move.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EthereumError {
    /// The bytes are not a signed EIP-2718 envelope.
    #[error("undecodable transaction envelope")]
    Undecodable,
    /// A type Tickrate does not take (EIP-4844 blobs, EIP-7702 delegations).
    #[error("unsupported transaction type {0}")]
    UnsupportedType(u8),
    /// A legacy transaction without EIP-155 replay protection.
    #[error("legacy transaction without a chain id")]
    NoChainId,
    /// A legacy transaction cannot carry an access list (only a move built by hand can).
    #[error("a legacy transaction carries no access list")]
    AccessListOnLegacy,
    /// The EIP-2930 access list is longer than a Space Access List can hold.
    #[error("access list too large: {what} {len} exceed the limit of {max}")]
    AccessListTooLarge {
        /// What is counted: entries, or slots of one entry.
        what: &'static str,
        /// How many.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Its call data is longer than a move carries.
    #[error("{len} bytes of call data exceed the limit of {max}")]
    DataTooLong {
        /// The data's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The signature does not recover.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The move's fields are not those the Ethereum signature covers.
    #[error("the move does not match its Ethereum signature: {0}")]
    Mismatch(&'static str),
}

/// A decoded Ethereum transaction as a move without its Space Access List.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EthereumMove {
    /// The move; its access list is empty until the gateway sets it.
    pub tx: Transaction,
    /// Its signature.
    pub signature: EthereumSignature,
    /// The recovered sender.
    pub sender: Address,
    /// keccak-256 of the signed envelope: the hash Ethereum clients know it by.
    pub hash: B256,
}

/// The price a move signed as `signature` pays per gas (see the module's documentation).
fn price_per_gas(signature: &EthereumSignature, gas_price: u128) -> u128 {
    match signature.kind {
        EthereumKind::Legacy | EthereumKind::Eip2930 => gas_price,
        EthereumKind::Eip1559 => signature
            .max_fee_per_gas
            .min(signature.max_priority_fee_per_gas),
    }
}

/// The Ethereum transaction `tx` and `signature` stand for, unsigned.
enum Unsigned {
    Legacy(TxLegacy),
    Eip2930(TxEip2930),
    Eip1559(TxEip1559),
}

fn unsigned(tx: &Transaction, signature: &EthereumSignature) -> Unsigned {
    let to = if signature.create {
        TxKind::Create
    } else {
        TxKind::Call(tx.to)
    };
    match signature.kind {
        EthereumKind::Legacy => Unsigned::Legacy(TxLegacy {
            chain_id: Some(tx.chain_id),
            nonce: tx.nonce,
            gas_price: tx.gas_price,
            gas_limit: tx.gas_limit,
            to,
            value: tx.value,
            input: tx.data.clone(),
        }),
        EthereumKind::Eip2930 => Unsigned::Eip2930(TxEip2930 {
            chain_id: tx.chain_id,
            nonce: tx.nonce,
            gas_price: tx.gas_price,
            gas_limit: tx.gas_limit,
            to,
            value: tx.value,
            access_list: signature.access_list.clone(),
            input: tx.data.clone(),
        }),
        EthereumKind::Eip1559 => Unsigned::Eip1559(TxEip1559 {
            chain_id: tx.chain_id,
            nonce: tx.nonce,
            gas_limit: tx.gas_limit,
            max_fee_per_gas: signature.max_fee_per_gas,
            max_priority_fee_per_gas: signature.max_priority_fee_per_gas,
            to,
            value: tx.value,
            access_list: signature.access_list.clone(),
            input: tx.data.clone(),
        }),
    }
}

impl EthereumSignature {
    /// The Ethereum signing hash of `tx` signed this way: what the signature covers.
    pub fn signing_hash(&self, tx: &Transaction) -> B256 {
        match unsigned(tx, self) {
            Unsigned::Legacy(body) => body.signature_hash(),
            Unsigned::Eip2930(body) => body.signature_hash(),
            Unsigned::Eip1559(body) => body.signature_hash(),
        }
    }

    /// Checks what the signature covers beyond the hash: the move pays the price its type says,
    /// a creation's `to` is the address the sender's nonce creates, and every item of the
    /// Ethereum access list is in the Space Access List (see the module's documentation).
    pub fn check(&self, tx: &Transaction, sender: &Address) -> Result<(), TxError> {
        self.check_fields(tx, sender)?;
        self.check_listed(&tx.access_list)
    }

    /// Whether `list` names every address and slot of the Ethereum access list; the first
    /// missing address otherwise.
    pub fn check_listed(&self, list: &SpaceAccessList) -> Result<(), TxError> {
        for item in &self.access_list.0 {
            let account = list
                .account(&item.address)
                .ok_or(TxError::MissingFromAccessList(item.address))?;
            if item
                .storage_keys
                .iter()
                .any(|slot| account.slot(slot).is_none())
            {
                return Err(TxError::MissingFromAccessList(item.address));
            }
        }
        Ok(())
    }

    fn check_fields(&self, tx: &Transaction, sender: &Address) -> Result<(), EthereumError> {
        if self.kind == EthereumKind::Legacy && !self.access_list.0.is_empty() {
            return Err(EthereumError::AccessListOnLegacy);
        }
        check_access_list_bounds(&self.access_list)?;
        if self.kind == EthereumKind::Eip1559 && tx.gas_price != price_per_gas(self, 0) {
            return Err(EthereumError::Mismatch(
                "gas price is not the effective EIP-1559 price",
            ));
        }
        if self.kind != EthereumKind::Eip1559
            && (self.max_fee_per_gas != 0 || self.max_priority_fee_per_gas != 0)
        {
            return Err(EthereumError::Mismatch(
                "fee caps on a non-EIP-1559 transaction",
            ));
        }
        if self.create && tx.to != sender.create(tx.nonce) {
            return Err(EthereumError::Mismatch(
                "creation target is not the created address",
            ));
        }
        if tx.sponsor.is_some() {
            return Err(EthereumError::Mismatch(
                "an Ethereum transaction names no sponsor",
            ));
        }
        Ok(())
    }

    fn alloy_signature(&self) -> alloy_primitives::Signature {
        let bytes = &self.signature.0;
        alloy_primitives::Signature::new(
            U256::from_be_slice(&bytes[..32]),
            U256::from_be_slice(&bytes[32..64]),
            // `r || s || v` with v in {0, 1} as decoded, or {27, 28} as `AccountKey` signs.
            matches!(bytes[64], 1 | 28),
        )
    }
}

/// Refuses an access list larger than a Space Access List could hold.
fn check_access_list_bounds(list: &EthereumAccessList) -> Result<(), EthereumError> {
    if list.0.len() > SAL_ACCOUNTS_MAX {
        return Err(EthereumError::AccessListTooLarge {
            what: "entries",
            len: list.0.len(),
            max: SAL_ACCOUNTS_MAX,
        });
    }
    if let Some(item) = list
        .0
        .iter()
        .find(|item| item.storage_keys.len() > SAL_SLOTS_PER_ACCOUNT_MAX)
    {
        return Err(EthereumError::AccessListTooLarge {
            what: "slots of one entry",
            len: item.storage_keys.len(),
            max: SAL_SLOTS_PER_ACCOUNT_MAX,
        });
    }
    Ok(())
}

/// The signed EIP-2718 envelope of a move signed as an Ethereum transaction.
pub fn ethereum_envelope(tx: &Transaction, signature: &EthereumSignature) -> Vec<u8> {
    let alloy_signature = signature.alloy_signature();
    fn encoded<T: SignableTransaction<alloy_primitives::Signature>>(
        body: T,
        signature: alloy_primitives::Signature,
    ) -> Vec<u8>
    where
        TxEnvelope: From<Signed<T>>,
    {
        TxEnvelope::from(body.into_signed(signature)).encoded_2718()
    }
    match unsigned(tx, signature) {
        Unsigned::Legacy(body) => encoded(body, alloy_signature),
        Unsigned::Eip2930(body) => encoded(body, alloy_signature),
        Unsigned::Eip1559(body) => encoded(body, alloy_signature),
    }
}

/// The Ethereum hash of a move signed as an Ethereum transaction: keccak-256 of its envelope.
pub fn ethereum_hash(tx: &Transaction, signature: &EthereumSignature) -> B256 {
    keccak256(ethereum_envelope(tx, signature))
}

/// Decodes a signed envelope into a move with an empty Space Access List, and recovers its
/// sender. The caller bounds `raw`'s length, and sets a Space Access List that names every item
/// of the signed EIP-2930 list (`signature.access_list`).
pub fn decode_envelope(raw: &[u8]) -> Result<EthereumMove, EthereumError> {
    let envelope =
        TxEnvelope::decode_2718(&mut &raw[..]).map_err(|_| EthereumError::Undecodable)?;
    let (kind, chain_id, nonce, gas_price, fees, gas_limit, to, value, input, listed, signature) =
        match &envelope {
            TxEnvelope::Legacy(signed) => {
                let body = signed.tx();
                let chain_id = body.chain_id.ok_or(EthereumError::NoChainId)?;
                (
                    EthereumKind::Legacy,
                    chain_id,
                    body.nonce,
                    body.gas_price,
                    (0, 0),
                    body.gas_limit,
                    body.to,
                    body.value,
                    body.input.clone(),
                    EthereumAccessList::default(),
                    *signed.signature(),
                )
            }
            TxEnvelope::Eip2930(signed) => {
                let body = signed.tx();
                (
                    EthereumKind::Eip2930,
                    body.chain_id,
                    body.nonce,
                    body.gas_price,
                    (0, 0),
                    body.gas_limit,
                    body.to,
                    body.value,
                    body.input.clone(),
                    body.access_list.clone(),
                    *signed.signature(),
                )
            }
            TxEnvelope::Eip1559(signed) => {
                let body = signed.tx();
                (
                    EthereumKind::Eip1559,
                    body.chain_id,
                    body.nonce,
                    0,
                    (body.max_fee_per_gas, body.max_priority_fee_per_gas),
                    body.gas_limit,
                    body.to,
                    body.value,
                    body.input.clone(),
                    body.access_list.clone(),
                    *signed.signature(),
                )
            }
            other => return Err(EthereumError::UnsupportedType(other.tx_type() as u8)),
        };
    check_access_list_bounds(&listed)?;
    if input.len() > TX_DATA_BYTES_MAX {
        return Err(EthereumError::DataTooLong {
            len: input.len(),
            max: TX_DATA_BYTES_MAX,
        });
    }
    let mut raw_signature = [0u8; 65];
    raw_signature[..32].copy_from_slice(&signature.r().to_be_bytes::<32>());
    raw_signature[32..64].copy_from_slice(&signature.s().to_be_bytes::<32>());
    raw_signature[64] = u8::from(signature.v());
    let signature = EthereumSignature {
        kind,
        create: to.is_create(),
        max_fee_per_gas: fees.0,
        max_priority_fee_per_gas: fees.1,
        signature: Signature(raw_signature),
        access_list: listed,
    };
    let mut tx = Transaction {
        chain_id,
        nonce,
        // Set below for a creation, once the sender is known.
        to: to.to().copied().unwrap_or_default(),
        value,
        data: input,
        gas_limit,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::default(),
    };
    tx.gas_price = price_per_gas(&signature, gas_price);
    let sender = signature
        .signature
        .recover_address(&signature.signing_hash(&tx))?;
    if signature.create {
        tx.to = sender.create(nonce);
    }
    Ok(EthereumMove {
        tx,
        signature,
        sender,
        hash: keccak256(raw),
    })
}

impl Encode for EthereumSignature {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self.kind {
            EthereumKind::Legacy => 0,
            EthereumKind::Eip2930 => 1,
            EthereumKind::Eip1559 => 2,
        });
        // Flags: bit 0 creation, bit 1 an access list follows the signature. Without a list
        // the byte is the boolean it was before lists were carried, so those moves encode as
        // they did.
        let listed = !self.access_list.0.is_empty();
        out.push(u8::from(self.create) | (u8::from(listed) << 1));
        out.extend_from_slice(&self.max_fee_per_gas.to_be_bytes());
        out.extend_from_slice(&self.max_priority_fee_per_gas.to_be_bytes());
        self.signature.encode(out);
        if listed {
            put_length(out, self.access_list.0.len());
            for item in &self.access_list.0 {
                item.address.encode(out);
                put_length(out, item.storage_keys.len());
                for slot in &item.storage_keys {
                    slot.encode(out);
                }
            }
        }
    }
}

fn decode_access_list(decoder: &mut Decoder<'_>) -> Result<EthereumAccessList, DecodeError> {
    let entries = decoder.length("Ethereum access list entries", SAL_ACCOUNTS_MAX)?;
    let mut items = Vec::with_capacity(entries.min(decoder.remaining() / 24));
    for _ in 0..entries {
        let address = decoder.address()?;
        let slots = decoder.length("Ethereum access list slots", SAL_SLOTS_PER_ACCOUNT_MAX)?;
        let mut storage_keys = Vec::with_capacity(slots.min(decoder.remaining() / 32));
        for _ in 0..slots {
            storage_keys.push(decoder.b256()?);
        }
        items.push(alloy_eips::eip2930::AccessListItem {
            address,
            storage_keys,
        });
    }
    if items.is_empty() {
        return Err(DecodeError::Invalid {
            what: "Ethereum access list",
            why: "flagged but empty",
        });
    }
    Ok(alloy_eips::eip2930::AccessList(items))
}

impl Decode for EthereumSignature {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let kind = match decoder.u8()? {
            0 => EthereumKind::Legacy,
            1 => EthereumKind::Eip2930,
            2 => EthereumKind::Eip1559,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "Ethereum transaction type",
                    tag,
                });
            }
        };
        let flags = decoder.u8()?;
        if flags > 0b11 {
            return Err(DecodeError::UnknownTag {
                what: "Ethereum signature flags",
                tag: flags,
            });
        }
        Ok(EthereumSignature {
            kind,
            create: flags & 1 == 1,
            max_fee_per_gas: decoder.u128()?,
            max_priority_fee_per_gas: decoder.u128()?,
            signature: Signature::decode(decoder)?,
            access_list: if flags & 0b10 == 0 {
                EthereumAccessList::default()
            } else {
                decode_access_list(decoder)?
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AccountKey, MoveSignature, SignedTransaction, tx::TxError};

    const CHAIN: u64 = 4242;

    /// A move signed as an Ethereum transaction of `kind` by `key`, and its envelope.
    fn signed(key: &AccountKey, kind: EthereumKind, create: bool) -> (Transaction, Vec<u8>) {
        let mut signature = EthereumSignature {
            kind,
            create,
            max_fee_per_gas: if kind == EthereumKind::Eip1559 { 7 } else { 0 },
            max_priority_fee_per_gas: if kind == EthereumKind::Eip1559 { 2 } else { 0 },
            signature: Signature([0; 65]),
            access_list: EthereumAccessList::default(),
        };
        let tx = Transaction {
            chain_id: CHAIN,
            nonce: 3,
            to: if create {
                key.address().create(3)
            } else {
                Address::repeat_byte(0x22)
            },
            value: U256::from(9),
            data: vec![1, 2, 3].into(),
            gas_limit: 50_000,
            gas_price: if kind == EthereumKind::Eip1559 { 2 } else { 5 },
            sponsor: None,
            access_list: SpaceAccessList::default(),
        };
        signature.signature = key.sign_prehash(&signature.signing_hash(&tx));
        (tx.clone(), ethereum_envelope(&tx, &signature))
    }

    #[test]
    fn envelopes_of_every_type_decode_to_the_move_they_came_from() {
        let key = AccountKey::from_seed(5);
        for kind in [
            EthereumKind::Legacy,
            EthereumKind::Eip2930,
            EthereumKind::Eip1559,
        ] {
            for create in [false, true] {
                let (tx, envelope) = signed(&key, kind, create);
                let decoded = decode_envelope(&envelope).expect("decodes");
                assert_eq!(decoded.sender, key.address());
                assert_eq!(decoded.tx, tx);
                assert_eq!(decoded.hash, keccak256(&envelope));
                assert_eq!(decoded.signature.kind, kind);
                assert_eq!(decoded.signature.create, create);
                // Rebuilt from the move, the envelope is byte for byte the one signed.
                assert_eq!(ethereum_envelope(&decoded.tx, &decoded.signature), envelope);
                assert_eq!(ethereum_hash(&decoded.tx, &decoded.signature), decoded.hash);
            }
        }
    }

    #[test]
    fn an_ethereum_move_verifies_with_its_list_and_refuses_changed_fields() {
        let key = AccountKey::from_seed(6);
        let (_, envelope) = signed(&key, EthereumKind::Eip1559, true);
        let decoded = decode_envelope(&envelope).expect("decodes");
        let mut tx = decoded.tx.clone();
        tx.access_list = SpaceAccessList::new([
            crate::AccountAccess::read(decoded.sender),
            crate::AccountAccess::read(tx.to),
        ]);
        let move_ = SignedTransaction {
            tx,
            signature: MoveSignature::Ethereum(decoded.signature),
        };
        assert!(move_.is_create());
        let bytes = crate::Encode::to_bytes(&move_);
        assert_eq!(
            <SignedTransaction as crate::Decode>::from_bytes(&bytes),
            Ok(move_.clone())
        );
        let verified = move_.clone().verify(CHAIN).expect("verifies");
        assert_eq!(verified.sender, key.address());
        assert_eq!(verified.hash, move_.hash());

        // A changed value recovers another sender, which the list does not name.
        let mut changed = move_.clone();
        changed.tx.value = U256::from(10);
        assert!(changed.verify(CHAIN).is_err());
        // A creation must target the address the sender's nonce creates.
        let mut moved = move_.clone();
        moved.tx.to = Address::repeat_byte(9);
        moved.tx.access_list = SpaceAccessList::new([crate::AccountAccess::read(moved.tx.to)]);
        assert!(moved.verify(CHAIN).is_err());
        // An EIP-1559 move pays the effective price, no other.
        let mut priced = move_;
        priced.tx.gas_price = 7;
        assert!(matches!(
            priced.verify(CHAIN),
            Err(TxError::Ethereum(_) | TxError::MissingFromAccessList(_))
        ));
    }

    #[test]
    fn unsupported_envelopes_are_refused_with_a_reason() {
        assert_eq!(decode_envelope(&[]), Err(EthereumError::Undecodable));
        assert_eq!(
            decode_envelope(&[0x02, 0xc0]),
            Err(EthereumError::Undecodable)
        );
    }

    /// An EIP-2930 transaction with an access list, signed by `key`, and its envelope.
    fn with_list(key: &AccountKey, list: EthereumAccessList) -> Vec<u8> {
        let body = TxEip2930 {
            chain_id: CHAIN,
            nonce: 3,
            gas_price: 5,
            gas_limit: 50_000,
            to: TxKind::Call(Address::repeat_byte(0x22)),
            value: U256::from(9),
            access_list: list,
            input: vec![1, 2, 3].into(),
        };
        let signature = key.sign_prehash(&body.signature_hash());
        let signature = EthereumSignature {
            kind: EthereumKind::Eip2930,
            create: false,
            max_fee_per_gas: 0,
            max_priority_fee_per_gas: 0,
            signature,
            access_list: EthereumAccessList::default(),
        }
        .alloy_signature();
        TxEnvelope::from(body.into_signed(signature)).encoded_2718()
    }

    #[test]
    fn a_signed_access_list_is_carried_and_must_be_in_the_space_access_list() {
        let key = AccountKey::from_seed(7);
        let called = Address::repeat_byte(0x22);
        let other = Address::repeat_byte(0x33);
        // Out of order, with a repeated address, as a client may sign it.
        let list = alloy_eips::eip2930::AccessList(vec![
            alloy_eips::eip2930::AccessListItem {
                address: other,
                storage_keys: vec![B256::repeat_byte(2), B256::ZERO],
            },
            alloy_eips::eip2930::AccessListItem {
                address: called,
                storage_keys: vec![],
            },
            alloy_eips::eip2930::AccessListItem {
                address: other,
                storage_keys: vec![B256::repeat_byte(1)],
            },
        ]);
        let envelope = with_list(&key, list.clone());
        let decoded = decode_envelope(&envelope).expect("a list is accepted");
        assert_eq!(decoded.sender, key.address());
        assert_eq!(decoded.signature.access_list, list);
        assert_eq!(ethereum_envelope(&decoded.tx, &decoded.signature), envelope);

        // The codec carries the list (and a list-less signature encodes as before).
        let bytes = decoded.signature.to_bytes();
        assert_eq!(
            EthereumSignature::from_bytes(&bytes),
            Ok(decoded.signature.clone())
        );
        assert_eq!(bytes[1], 0b10, "flags: no creation, a list follows");

        let sal_with = |slots: &[B256]| {
            SpaceAccessList::new([
                crate::AccountAccess::read(decoded.sender),
                crate::AccountAccess::read(called),
                crate::AccountAccess {
                    storage: slots
                        .iter()
                        .map(|slot| crate::SlotAccess {
                            slot: *slot,
                            write: None,
                        })
                        .collect(),
                    ..crate::AccountAccess::read(other)
                },
            ])
        };
        let signed_with = |access_list: SpaceAccessList| SignedTransaction {
            tx: Transaction {
                access_list,
                ..decoded.tx.clone()
            },
            signature: MoveSignature::Ethereum(decoded.signature.clone()),
        };
        let all = [B256::ZERO, B256::repeat_byte(1), B256::repeat_byte(2)];
        let verified = signed_with(sal_with(&all))
            .verify(CHAIN)
            .expect("every listed item is in the SAL");
        assert_eq!(verified.sender, key.address());
        // One listed slot missing from the SAL: refused, naming its account.
        assert_eq!(
            signed_with(sal_with(&all[..2])).verify(CHAIN).err(),
            Some(TxError::MissingFromAccessList(other))
        );

        // A list longer than a SAL can hold is refused at decoding.
        let oversized = alloy_eips::eip2930::AccessList(
            (0..=SAL_ACCOUNTS_MAX)
                .map(|index| alloy_eips::eip2930::AccessListItem {
                    address: Address::with_last_byte(index as u8),
                    storage_keys: vec![],
                })
                .collect(),
        );
        assert!(matches!(
            decode_envelope(&with_list(&key, oversized)),
            Err(EthereumError::AccessListTooLarge {
                what: "entries",
                ..
            })
        ));
    }
}
