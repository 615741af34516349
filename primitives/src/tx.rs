//! The move (transaction) and its Space Access List.
//!
//! A move names, before it runs, every account and storage slot it may touch (its Space Access
//! List), and for each item it writes either the value it expects afterwards or, for hot items
//! that many players update, a signed delta ([`DeclaredWrite`]). Execution outside the list,
//! or a write that differs from its declaration, fails the move; only its nonce is consumed. The
//! sender's nonce increment is implied and never declared.
//!
//! Encoding (version 1): `0x01 || chain_id || nonce || to || value || data || gas_limit ||
//! gas_price || sponsor? || access_list`, then the 65-byte signature. The signer signs
//! `keccak256("tickrate:move" || encoding)` (a session key signs [`session_signing_hash`]); the
//! move's hash is `keccak256(signed digest || signature encoding)`: the digest commits to the
//! move, the encoding to who signed it and how, and hashing them costs one or two keccak blocks
//! where the whole signed encoding costs four or more, on every move a sequencer takes in.

use alloy_primitives::{Address, B256, Bytes, I256, U256, keccak256};
use ed25519_dalek::Verifier;

use crate::{
    codec::{Decode, DecodeError, Decoder, Encode, put_bytes, put_list, put_u256},
    constants::{SAL_ACCOUNTS_MAX, SAL_SLOTS_PER_ACCOUNT_MAX, TX_DATA_BYTES_MAX},
    ethereum::{EthereumError, EthereumSignature},
    finality::StateItem,
    keys::{AccountKey, Signature, SignatureError},
    session::{
        SESSION_REGISTRY, SessionCall, SessionDeclaration, SessionKey, SessionKeyCache,
        SessionPublicKey, SessionRefusal, check_declaration, session_signing_hash, verifying_key,
    },
};

/// The hash that names a move.
pub type TxHash = B256;

const TX_VERSION: u8 = 1;
const SIGNING_DOMAIN: &[u8] = b"tickrate:move";

/// What a move declares about one item it writes.
///
/// Encoding: a tag byte, then 32 bytes. Tag 0 (`Exact`) is the original encoding, so lists
/// encoded before deltas existed decode unchanged; tag 1 (`Delta`) carries the amount as a
/// two's-complement 256-bit word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeclaredWrite {
    /// The item's value after the move.
    Exact(U256),
    /// The item changes by this signed amount, wrapping modulo 2^256: the value after the move
    /// is the value before plus the amount. Deltas on one item commute, so moves that only add
    /// deltas to a hot slot never conflict with each other.
    Delta(I256),
}

impl DeclaredWrite {
    /// The value after the move, given the value before it.
    pub fn apply(self, before: U256) -> U256 {
        match self {
            DeclaredWrite::Exact(value) => value,
            DeclaredWrite::Delta(amount) => before.wrapping_add(amount.into_raw()),
        }
    }

    /// The delta that takes `before` to `after` (wrapping).
    pub fn delta_between(before: U256, after: U256) -> I256 {
        I256::from_raw(after.wrapping_sub(before))
    }

    /// Whether this is a delta (a commutative update).
    pub fn is_delta(self) -> bool {
        matches!(self, DeclaredWrite::Delta(_))
    }
}

impl Encode for DeclaredWrite {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            DeclaredWrite::Exact(value) => {
                out.push(0);
                put_u256(out, value);
            }
            DeclaredWrite::Delta(amount) => {
                out.push(1);
                put_u256(out, &amount.into_raw());
            }
        }
    }
}

impl Decode for DeclaredWrite {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match decoder.u8()? {
            0 => Ok(DeclaredWrite::Exact(decoder.u256()?)),
            1 => Ok(DeclaredWrite::Delta(I256::from_raw(decoder.u256()?))),
            tag => Err(DecodeError::UnknownTag {
                what: "declared write",
                tag,
            }),
        }
    }
}

fn put_optional<T: Encode>(out: &mut Vec<u8>, value: &Option<T>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            value.encode(out);
        }
    }
}

fn optional<T: Decode>(decoder: &mut Decoder<'_>) -> Result<Option<T>, DecodeError> {
    if decoder.bool()? {
        Ok(Some(T::decode(decoder)?))
    } else {
        Ok(None)
    }
}

/// One storage slot a move may read, and what it declares if it writes it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SlotAccess {
    /// The slot key.
    pub slot: B256,
    /// `Some` if the move writes this slot.
    pub write: Option<DeclaredWrite>,
}

impl Encode for SlotAccess {
    fn encode(&self, out: &mut Vec<u8>) {
        self.slot.encode(out);
        put_optional(out, &self.write);
    }
}

impl Decode for SlotAccess {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SlotAccess {
            slot: decoder.b256()?,
            write: optional(decoder)?,
        })
    }
}

/// One account a move may touch.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountAccess {
    /// The account.
    pub address: Address,
    /// `Some` if the move changes the balance: its value afterwards.
    pub balance: Option<DeclaredWrite>,
    /// `Some` if the move changes the nonce of an account other than the sender.
    pub nonce: Option<u64>,
    /// Storage slots, sorted by slot, no duplicates.
    pub storage: Vec<SlotAccess>,
}

impl AccountAccess {
    /// An account the move reads but does not write.
    pub fn read(address: Address) -> Self {
        AccountAccess {
            address,
            balance: None,
            nonce: None,
            storage: Vec::new(),
        }
    }

    /// The declaration for `slot`, if the slot is in the list.
    pub fn slot(&self, slot: &B256) -> Option<&SlotAccess> {
        self.storage
            .binary_search_by(|access| access.slot.cmp(slot))
            .ok()
            .map(|index| &self.storage[index])
    }
}

impl Encode for AccountAccess {
    fn encode(&self, out: &mut Vec<u8>) {
        self.address.encode(out);
        put_optional(out, &self.balance);
        put_optional(out, &self.nonce);
        put_list(out, &self.storage);
    }
}

impl Decode for AccountAccess {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let access = AccountAccess {
            address: decoder.address()?,
            balance: optional(decoder)?,
            nonce: optional(decoder)?,
            storage: decoder.list("SAL slots", SAL_SLOTS_PER_ACCOUNT_MAX)?,
        };
        if !access
            .storage
            .windows(2)
            .all(|pair| pair[0].slot < pair[1].slot)
        {
            return Err(DecodeError::Invalid {
                what: "SAL slots",
                why: "not sorted and unique",
            });
        }
        Ok(access)
    }
}

/// Every account and slot a move may touch, sorted by address with no duplicates, so that the
/// encoding is canonical and lookups are binary searches.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct SpaceAccessList {
    accounts: Vec<AccountAccess>,
}

impl SpaceAccessList {
    /// Builds a list from entries in any order; entries for one address are merged (a later
    /// declaration of the same item replaces an earlier one).
    pub fn new(entries: impl IntoIterator<Item = AccountAccess>) -> Self {
        let mut accounts: Vec<AccountAccess> = Vec::new();
        for mut entry in entries {
            entry.storage.sort_by_key(|access| access.slot);
            entry.storage.reverse();
            entry
                .storage
                .dedup_by(|later, earlier| later.slot == earlier.slot);
            entry.storage.reverse();
            match accounts.binary_search_by(|existing| existing.address.cmp(&entry.address)) {
                Ok(index) => {
                    let existing = &mut accounts[index];
                    existing.balance = entry.balance.or(existing.balance);
                    existing.nonce = entry.nonce.or(existing.nonce);
                    for slot in entry.storage {
                        match existing
                            .storage
                            .binary_search_by(|s| s.slot.cmp(&slot.slot))
                        {
                            Ok(position) => existing.storage[position] = slot,
                            Err(position) => existing.storage.insert(position, slot),
                        }
                    }
                }
                Err(index) => accounts.insert(index, entry),
            }
        }
        SpaceAccessList { accounts }
    }

    /// The entries, sorted by address.
    pub fn accounts(&self) -> &[AccountAccess] {
        &self.accounts
    }

    /// The entry for `address`.
    pub fn account(&self, address: &Address) -> Option<&AccountAccess> {
        self.accounts
            .binary_search_by(|access| access.address.cmp(address))
            .ok()
            .map(|index| &self.accounts[index])
    }

    /// Whether `address` is in the list.
    pub fn contains(&self, address: &Address) -> bool {
        self.account(address).is_some()
    }
}

impl Encode for SpaceAccessList {
    fn encode(&self, out: &mut Vec<u8>) {
        put_list(out, &self.accounts);
    }
}

impl Decode for SpaceAccessList {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let accounts: Vec<AccountAccess> = decoder.list("SAL accounts", SAL_ACCOUNTS_MAX)?;
        if !accounts
            .windows(2)
            .all(|pair| pair[0].address < pair[1].address)
        {
            return Err(DecodeError::Invalid {
                what: "SAL accounts",
                why: "not sorted and unique",
            });
        }
        Ok(SpaceAccessList { accounts })
    }
}

/// An unsigned move.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Transaction {
    /// The Tickrate network this move is for (replay protection across networks).
    pub chain_id: u64,
    /// The sender's nonce; each sender's moves run in nonce order.
    pub nonce: u64,
    /// The account called.
    pub to: Address,
    /// Wei sent along.
    pub value: U256,
    /// Call data.
    pub data: Bytes,
    /// Gas the move may use.
    pub gas_limit: u64,
    /// Price per gas; zero for sponsored and zero-gas moves.
    pub gas_price: u128,
    /// The account that pays, if not the sender.
    pub sponsor: Option<Address>,
    /// What the move may touch and what it writes.
    pub access_list: SpaceAccessList,
}

impl Transaction {
    /// The writes this move declares, as `sender` sends it: first the implied increment of the
    /// sender's nonce (an exact write), then each declared balance, nonce and storage write in
    /// list order. Pending state (the sequencer's and a client's prediction) applies exactly
    /// these, in this order.
    pub fn declared_writes(&self, sender: Address) -> Vec<(StateItem, DeclaredWrite)> {
        let mut writes = vec![(
            StateItem::Nonce(sender),
            DeclaredWrite::Exact(U256::from(self.nonce.saturating_add(1))),
        )];
        for account in self.access_list.accounts() {
            if let Some(write) = account.balance {
                writes.push((StateItem::Balance(account.address), write));
            }
            if let Some(nonce) = account.nonce
                && account.address != sender
            {
                writes.push((
                    StateItem::Nonce(account.address),
                    DeclaredWrite::Exact(U256::from(nonce)),
                ));
            }
            for slot in &account.storage {
                if let Some(write) = slot.write {
                    writes.push((StateItem::Storage(account.address, slot.slot), write));
                }
            }
        }
        writes
    }

    /// The 32 bytes the sender signs.
    pub fn signing_hash(&self) -> B256 {
        let mut buffer = Vec::with_capacity(256);
        buffer.extend_from_slice(SIGNING_DOMAIN);
        self.encode(&mut buffer);
        keccak256(&buffer)
    }

    /// Signs the move with the sender's account key.
    pub fn sign(self, key: &AccountKey) -> SignedTransaction {
        let signature = key.sign_prehash(&self.signing_hash());
        SignedTransaction {
            tx: self,
            signature: MoveSignature::Account(signature),
        }
    }

    /// Signs the move with a session key acting for `account` (see [`crate::session`]).
    pub fn sign_with_session(self, key: &SessionKey, account: Address) -> SignedTransaction {
        let signature = key.sign_hash(&session_signing_hash(&self, &account));
        SignedTransaction {
            tx: self,
            signature: MoveSignature::Session {
                account,
                key: key.public_key(),
                signature,
            },
        }
    }
}

impl Encode for Transaction {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(TX_VERSION);
        out.extend_from_slice(&self.chain_id.to_be_bytes());
        out.extend_from_slice(&self.nonce.to_be_bytes());
        self.to.encode(out);
        put_u256(out, &self.value);
        put_bytes(out, &self.data);
        out.extend_from_slice(&self.gas_limit.to_be_bytes());
        out.extend_from_slice(&self.gas_price.to_be_bytes());
        put_optional(out, &self.sponsor);
        self.access_list.encode(out);
    }
}

impl Decode for Transaction {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("move", &[TX_VERSION])?;
        Ok(Transaction {
            chain_id: decoder.u64()?,
            nonce: decoder.u64()?,
            to: decoder.address()?,
            value: decoder.u256()?,
            data: Bytes::copy_from_slice(decoder.bytes("move data", TX_DATA_BYTES_MAX)?),
            gas_limit: decoder.u64()?,
            gas_price: decoder.u128()?,
            sponsor: optional(decoder)?,
            access_list: SpaceAccessList::decode(decoder)?,
        })
    }
}

/// Why a signed move was refused before entering a mempool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The signature is malformed or does not recover.
    #[error("bad signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The move is for another network.
    #[error("wrong chain id {got}, expected {expected}")]
    WrongChain {
        /// This network's chain id.
        expected: u64,
        /// The move's chain id.
        got: u64,
    },
    /// The Space Access List does not name an account the move necessarily touches.
    #[error("space access list does not name {0}")]
    MissingFromAccessList(Address),
    /// The session key's signature does not verify.
    #[error("bad session signature")]
    BadSessionSignature,
    /// A session move or a call to the session registry breaks a rule that needs no state.
    #[error("session: {0}")]
    Session(#[from] SessionRefusal),
    /// A move signed as an Ethereum transaction does not match what its signature covers.
    #[error("ethereum: {0}")]
    Ethereum(#[from] EthereumError),
}

/// A move refused by [`SignedTransaction::verify_batch`], named by its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedMove {
    /// The move's hash.
    pub hash: TxHash,
    /// Why it was refused.
    pub error: TxError,
}

/// Who signed a move.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MoveSignature {
    /// The sender's account key (secp256k1): the sender is recovered from it.
    Account(Signature),
    /// A session key acting for `account`, over [`session_signing_hash`].
    Session {
        /// The account the move acts for: its sender.
        account: Address,
        /// The session key.
        key: SessionPublicKey,
        /// Its ed25519 signature.
        signature: [u8; 64],
    },
    /// The sender's account key signed the move as an Ethereum transaction (see
    /// [`crate::ethereum`]): the sender is recovered from the Ethereum signing hash.
    Ethereum(EthereumSignature),
}

impl Encode for MoveSignature {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            MoveSignature::Account(signature) => {
                out.push(0);
                signature.encode(out);
            }
            MoveSignature::Session {
                account,
                key,
                signature,
            } => {
                out.push(1);
                account.encode(out);
                key.encode(out);
                out.extend_from_slice(signature);
            }
            MoveSignature::Ethereum(signature) => {
                out.push(2);
                signature.encode(out);
            }
        }
    }
}

impl Decode for MoveSignature {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match decoder.u8()? {
            0 => Ok(MoveSignature::Account(Signature::decode(decoder)?)),
            1 => Ok(MoveSignature::Session {
                account: decoder.address()?,
                key: SessionPublicKey::decode(decoder)?,
                signature: decoder.array()?,
            }),
            2 => Ok(MoveSignature::Ethereum(EthereumSignature::decode(decoder)?)),
            tag => Err(DecodeError::UnknownTag {
                what: "move signature",
                tag,
            }),
        }
    }
}

/// On whose authority a verified move acts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Authority {
    /// The account key signed it.
    Account,
    /// This session key signed it; its scope is checked against state.
    Session(SessionPublicKey),
}

/// A move with its sender's signature.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SignedTransaction {
    /// The move.
    pub tx: Transaction,
    /// The account key's signature over [`Transaction::signing_hash`], or a session key's.
    pub signature: MoveSignature,
}

impl SignedTransaction {
    /// The move's hash (see the module's documentation).
    pub fn hash(&self) -> TxHash {
        move_hash(&self.signed_digest(), &self.signature)
    }

    /// The digest the move's signature covers: [`Transaction::signing_hash`] for the account
    /// key, [`session_signing_hash`] for a session key.
    pub fn signed_digest(&self) -> B256 {
        match &self.signature {
            MoveSignature::Account(_) => self.tx.signing_hash(),
            MoveSignature::Session { account, .. } => session_signing_hash(&self.tx, account),
            MoveSignature::Ethereum(signature) => signature.signing_hash(&self.tx),
        }
    }

    /// Whether the move creates a contract at its `to` (only a move signed as an Ethereum
    /// transaction can).
    pub fn is_create(&self) -> bool {
        matches!(&self.signature, MoveSignature::Ethereum(signature) if signature.create)
    }

    /// Recovers or checks the sender and checks what can be checked without state: chain id,
    /// that the access list names the sender and the called account, and the rules of session
    /// moves and session registry calls that need no state.
    pub fn verify(self, chain_id: u64) -> Result<VerifiedTransaction, TxError> {
        self.check_chain(chain_id)?;
        match self.signature.clone() {
            MoveSignature::Account(signature) => {
                let digest = self.tx.signing_hash();
                let sender = signature.recover_address(&digest)?;
                self.into_verified(sender, Authority::Account, &digest)
            }
            MoveSignature::Session {
                account,
                key,
                signature,
            } => {
                let verifying = verifying_key(&key).ok_or(TxError::BadSessionSignature)?;
                let hash = session_signing_hash(&self.tx, &account);
                verifying
                    .verify(
                        hash.as_slice(),
                        &ed25519_dalek::Signature::from_bytes(&signature),
                    )
                    .map_err(|_| TxError::BadSessionSignature)?;
                self.into_verified(account, Authority::Session(key), &hash)
            }
            MoveSignature::Ethereum(signature) => {
                let digest = signature.signing_hash(&self.tx);
                let sender = signature
                    .signature
                    .recover_address(&digest)
                    .map_err(EthereumError::from)?;
                signature.check(&self.tx, &sender)?;
                self.into_verified(sender, Authority::Account, &digest)
            }
        }
    }

    /// Verifies many moves; session signatures are checked together in one ed25519 batch
    /// (several times faster than one by one), and one by one only if the batch fails, to find
    /// the bad ones. Session keys are taken parsed from `keys` when it holds them (parsing a
    /// key costs a point decompression, a sizeable share of one verification). Results are in
    /// input order; a refused move comes with its hash, for the refusal.
    pub fn verify_batch(
        moves: Vec<SignedTransaction>,
        chain_id: u64,
        keys: &SessionKeyCache,
    ) -> Vec<Result<VerifiedTransaction, RefusedMove>> {
        let refuse = |signed: &SignedTransaction, error: TxError| RefusedMove {
            hash: signed.hash(),
            error,
        };
        let mut results: Vec<Option<Result<VerifiedTransaction, RefusedMove>>> =
            (0..moves.len()).map(|_| None).collect();
        let mut batch = SessionBatch::default();
        for (index, signed) in moves.into_iter().enumerate() {
            if let Err(error) = signed.check_chain(chain_id) {
                results[index] = Some(Err(refuse(&signed, error)));
                continue;
            }
            // A copy for account and session signatures; only an Ethereum access list allocates.
            match signed.signature.clone() {
                MoveSignature::Ethereum(_) => {
                    // Rare (moves from Ethereum clients through a gateway): checked one by one.
                    let hash = signed.hash();
                    results[index] = Some(
                        signed
                            .verify(chain_id)
                            .map_err(|error| RefusedMove { hash, error }),
                    );
                }
                MoveSignature::Account(signature) => {
                    let digest = signed.tx.signing_hash();
                    let checked = signature
                        .recover_address(&digest)
                        .map_err(TxError::from)
                        .and_then(|sender| {
                            signed
                                .checked(sender, Authority::Account)
                                .map(|session| (sender, session))
                        });
                    results[index] = Some(match checked {
                        Ok((sender, session)) => {
                            Ok(signed.seal(sender, Authority::Account, session, &digest))
                        }
                        Err(error) => Err(refuse(&signed, error)),
                    });
                }
                MoveSignature::Session {
                    account,
                    key,
                    signature,
                } => match keys.verifying_key(&key) {
                    None => {
                        results[index] = Some(Err(refuse(&signed, TxError::BadSessionSignature)));
                    }
                    Some(verifying) => batch.push(
                        index,
                        session_signing_hash(&signed.tx, &account),
                        ed25519_dalek::Signature::from_bytes(&signature),
                        verifying,
                        signed,
                    ),
                },
            }
        }
        let batch_valid = ed25519_dalek::verify_batch(
            &batch.hashes.iter().map(B256::as_slice).collect::<Vec<_>>(),
            &batch.signatures,
            &batch.keys,
        )
        .is_ok();
        for (position, (index, signed)) in batch.moves.into_iter().enumerate() {
            let valid = batch_valid
                || batch.keys[position]
                    .verify(
                        batch.hashes[position].as_slice(),
                        &batch.signatures[position],
                    )
                    .is_ok();
            let MoveSignature::Session { account, key, .. } = signed.signature else {
                unreachable!("only session moves are batched")
            };
            let authority = Authority::Session(key);
            let checked = if valid {
                signed.checked(account, authority)
            } else {
                Err(TxError::BadSessionSignature)
            };
            results[index] = Some(match checked {
                Ok(session) => {
                    Ok(signed.seal(account, authority, session, &batch.hashes[position]))
                }
                Err(error) => Err(refuse(&signed, error)),
            });
        }
        results
            .into_iter()
            .map(|result| result.expect("every move has a result"))
            .collect()
    }

    fn check_chain(&self, chain_id: u64) -> Result<(), TxError> {
        if self.tx.chain_id != chain_id {
            return Err(TxError::WrongChain {
                expected: chain_id,
                got: self.tx.chain_id,
            });
        }
        Ok(())
    }

    /// The checks after the signature: the list names the sender and the target (the session
    /// registry has no state to name), a session move declares its charge and scope, and a
    /// registry call is a well-formed grant or revocation declaring exactly its writes.
    fn into_verified(
        self,
        sender: Address,
        authority: Authority,
        digest: &B256,
    ) -> Result<VerifiedTransaction, TxError> {
        let session = self.checked(sender, authority)?;
        Ok(self.seal(sender, authority, session, digest))
    }

    fn checked(
        &self,
        sender: Address,
        authority: Authority,
    ) -> Result<Option<SessionDeclaration>, TxError> {
        let tx = &self.tx;
        if !tx.access_list.contains(&sender) {
            return Err(TxError::MissingFromAccessList(sender));
        }
        if tx.to == SESSION_REGISTRY {
            if authority != Authority::Account || !tx.value.is_zero() {
                return Err(SessionRefusal::NotAccountKey.into());
            }
            let call = SessionCall::from_bytes(&tx.data).map_err(|_| SessionRefusal::BadGrant)?;
            call.check()?;
            if tx.gas_price != 0 || tx.access_list.accounts() != [call.access(sender)] {
                return Err(SessionRefusal::BadDeclaration.into());
            }
        } else if !tx.access_list.contains(&tx.to) {
            return Err(TxError::MissingFromAccessList(tx.to));
        }
        match authority {
            Authority::Session(key) => Ok(Some(check_declaration(tx, &sender, &key)?)),
            Authority::Account => Ok(None),
        }
    }

    fn seal(
        self,
        sender: Address,
        authority: Authority,
        session: Option<SessionDeclaration>,
        digest: &B256,
    ) -> VerifiedTransaction {
        VerifiedTransaction {
            hash: move_hash(digest, &self.signature),
            sender,
            authority,
            session,
            signed: self,
        }
    }
}

/// A move's hash from the digest its signature covers and the signature.
fn move_hash(digest: &B256, signature: &MoveSignature) -> TxHash {
    // Digest, tag, account, key and signature: at most 150 bytes.
    let mut buffer = Vec::with_capacity(160);
    buffer.extend_from_slice(digest.as_slice());
    signature.encode(&mut buffer);
    keccak256(&buffer)
}

/// Session moves gathered for one batch verification.
#[derive(Default)]
struct SessionBatch {
    moves: Vec<(usize, SignedTransaction)>,
    hashes: Vec<B256>,
    signatures: Vec<ed25519_dalek::Signature>,
    keys: Vec<ed25519_dalek::VerifyingKey>,
}

impl SessionBatch {
    fn push(
        &mut self,
        index: usize,
        hash: B256,
        signature: ed25519_dalek::Signature,
        key: ed25519_dalek::VerifyingKey,
        signed: SignedTransaction,
    ) {
        self.moves.push((index, signed));
        self.hashes.push(hash);
        self.signatures.push(signature);
        self.keys.push(key);
    }
}

impl Encode for SignedTransaction {
    fn encode(&self, out: &mut Vec<u8>) {
        self.tx.encode(out);
        self.signature.encode(out);
    }
}

impl Decode for SignedTransaction {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SignedTransaction {
            tx: Transaction::decode(decoder)?,
            signature: MoveSignature::decode(decoder)?,
        })
    }
}

/// A move whose signature has been checked: its sender is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedTransaction {
    /// The signed move.
    pub signed: SignedTransaction,
    /// The sender: recovered from the account key's signature, or the account a session key
    /// acts for.
    pub sender: Address,
    /// Whose key signed it.
    pub authority: Authority,
    /// The move's hash.
    pub hash: TxHash,
    /// For a session move, its checked declaration: charge, grant slot and scope slot, so that
    /// whoever applies the session rule next need not hash the slots again.
    pub session: Option<SessionDeclaration>,
}

impl VerifiedTransaction {
    /// The move.
    pub fn tx(&self) -> &Transaction {
        &self.signed.tx
    }
}

/// Generators for property tests in this and other crates.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    use super::*;

    fn address() -> impl Strategy<Value = Address> {
        any::<[u8; 20]>().prop_map(Address::from)
    }

    pub(crate) fn declared_write() -> impl Strategy<Value = DeclaredWrite> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(|b| DeclaredWrite::Exact(U256::from_be_bytes(b))),
            any::<[u8; 32]>()
                .prop_map(|b| DeclaredWrite::Delta(I256::from_raw(U256::from_be_bytes(b)))),
        ]
    }

    fn write() -> impl Strategy<Value = Option<DeclaredWrite>> {
        prop::option::of(declared_write())
    }

    fn account() -> impl Strategy<Value = AccountAccess> {
        (
            address(),
            write(),
            prop::option::of(any::<u64>()),
            prop::collection::vec((any::<[u8; 32]>(), write()), 0..4),
        )
            .prop_map(|(address, balance, nonce, slots)| AccountAccess {
                address,
                balance,
                nonce,
                storage: slots
                    .into_iter()
                    .map(|(slot, write)| SlotAccess {
                        slot: B256::from(slot),
                        write,
                    })
                    .collect(),
            })
    }

    pub(crate) fn transaction() -> impl Strategy<Value = Transaction> {
        (
            any::<u64>(),
            any::<u64>(),
            address(),
            any::<[u8; 32]>(),
            prop::collection::vec(any::<u8>(), 0..100),
            any::<u64>(),
            any::<u128>(),
            prop::option::of(address()),
            prop::collection::vec(account(), 0..5),
        )
            .prop_map(
                |(chain_id, nonce, to, value, data, gas_limit, gas_price, sponsor, sal)| {
                    Transaction {
                        chain_id,
                        nonce,
                        to,
                        value: U256::from_be_bytes(value),
                        data: data.into(),
                        gas_limit,
                        gas_price,
                        sponsor,
                        access_list: SpaceAccessList::new(sal),
                    }
                },
            )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn game_move(key: &AccountKey, nonce: u64) -> SignedTransaction {
        let game = Address::repeat_byte(0x42);
        Transaction {
            chain_id: 7,
            nonce,
            to: game,
            value: U256::ZERO,
            data: Bytes::from(vec![1, 2, 3]),
            gas_limit: 100_000,
            gas_price: 0,
            sponsor: None,
            access_list: SpaceAccessList::new([
                AccountAccess::read(key.address()),
                AccountAccess {
                    storage: vec![SlotAccess {
                        slot: B256::from(U256::from(1)),
                        write: Some(DeclaredWrite::Exact(U256::from(5))),
                    }],
                    ..AccountAccess::read(game)
                },
            ]),
        }
        .sign(key)
    }

    #[test]
    fn verify_recovers_the_sender_and_checks_the_shape() {
        let key = AccountKey::from_seed(3);
        let verified = game_move(&key, 0).verify(7).expect("valid move");
        assert_eq!(verified.sender, key.address());
        assert_eq!(verified.hash, verified.signed.hash());

        assert_eq!(
            game_move(&key, 0).verify(8),
            Err(TxError::WrongChain {
                expected: 8,
                got: 7
            })
        );

        let mut tampered = game_move(&key, 0);
        tampered.tx.nonce = 1;
        // A changed move recovers to some other address, which the list does not name.
        assert!(matches!(
            tampered.verify(7),
            Err(TxError::MissingFromAccessList(_))
        ));
    }

    #[test]
    fn access_list_merges_and_sorts() {
        let a = Address::repeat_byte(2);
        let b = Address::repeat_byte(1);
        let slot = |n: u64, v: u64| SlotAccess {
            slot: B256::from(U256::from(n)),
            write: Some(DeclaredWrite::Exact(U256::from(v))),
        };
        let list = SpaceAccessList::new([
            AccountAccess {
                storage: vec![slot(2, 1), slot(1, 1)],
                ..AccountAccess::read(a)
            },
            AccountAccess::read(b),
            AccountAccess {
                storage: vec![slot(2, 9)],
                ..AccountAccess::read(a)
            },
        ]);
        assert_eq!(list.accounts().len(), 2);
        assert_eq!(list.accounts()[0].address, b);
        let entry = list.account(&a).expect("a is listed");
        assert_eq!(entry.storage.len(), 2);
        assert_eq!(entry.slot(&B256::from(U256::from(2))), Some(&slot(2, 9)));
        assert_eq!(SpaceAccessList::from_bytes(&list.to_bytes()), Ok(list));
    }

    #[test]
    fn unsorted_access_list_is_not_canonical() {
        let mut bytes = Vec::new();
        crate::codec::put_list(
            &mut bytes,
            &[
                AccountAccess::read(Address::repeat_byte(2)),
                AccountAccess::read(Address::repeat_byte(1)),
            ],
        );
        assert!(matches!(
            SpaceAccessList::from_bytes(&bytes),
            Err(DecodeError::Invalid { .. })
        ));
    }

    #[test]
    fn exact_writes_keep_their_original_encoding() {
        // The bytes a version-1 list had before deltas existed: tag 0, then the value.
        let mut expected = vec![0u8];
        expected.extend_from_slice(&U256::from(5).to_be_bytes::<32>());
        let exact = DeclaredWrite::Exact(U256::from(5));
        assert_eq!(exact.to_bytes(), expected);
        assert_eq!(DeclaredWrite::from_bytes(&expected), Ok(exact));
        let mut unknown = expected.clone();
        unknown[0] = 2;
        assert!(matches!(
            DeclaredWrite::from_bytes(&unknown),
            Err(DecodeError::UnknownTag { tag: 2, .. })
        ));
    }

    #[test]
    fn deltas_wrap() {
        let minus_one = DeclaredWrite::Delta(I256::MINUS_ONE);
        assert_eq!(minus_one.apply(U256::ZERO), U256::MAX);
        assert_eq!(minus_one.apply(U256::from(3)), U256::from(2));
        let plus_two = DeclaredWrite::Delta(I256::try_from(2).expect("small"));
        assert_eq!(plus_two.apply(U256::MAX), U256::from(1));
        assert_eq!(
            DeclaredWrite::delta_between(U256::from(1), U256::MAX),
            I256::try_from(-2).expect("small")
        );
    }

    proptest! {
        #[test]
        fn declared_writes_round_trip(write in strategies::declared_write()) {
            let bytes = write.to_bytes();
            prop_assert_eq!(bytes.len(), 33);
            prop_assert_eq!(DeclaredWrite::from_bytes(&bytes), Ok(write));
        }

        #[test]
        fn a_delta_takes_before_to_after(before in any::<[u8; 32]>(), after in any::<[u8; 32]>()) {
            let (before, after) = (U256::from_be_bytes(before), U256::from_be_bytes(after));
            let delta = DeclaredWrite::Delta(DeclaredWrite::delta_between(before, after));
            prop_assert_eq!(delta.apply(before), after);
        }

        #[test]
        fn transaction_round_trips(tx in strategies::transaction(), signature in any::<[u8; 32]>()) {
            let mut raw = [0u8; 65];
            raw[..32].copy_from_slice(&signature);
            let signed = SignedTransaction { tx, signature: MoveSignature::Account(Signature(raw)) };
            let bytes = signed.to_bytes();
            prop_assert_eq!(SignedTransaction::from_bytes(&bytes), Ok(signed.clone()));
            // Every strict prefix is refused with a typed error.
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                prop_assert!(SignedTransaction::from_bytes(&bytes[..cut]).is_err());
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
            let _ = SignedTransaction::from_bytes(&bytes);
            let mut versioned = bytes.clone();
            versioned.insert(0, TX_VERSION);
            let _ = SignedTransaction::from_bytes(&versioned);
        }
    }
}
