//! The upper chain: the EVM chain Tickrate settles to, as the rest of the network sees it.
//!
//! It holds the node registry (node ID = the signer of the registration), the sequencer set
//! (admin whitelist, stake cap, rotation), the commitments of finalized batches and of group state
//! roots, each checked against a BLS certificate of the right validator set, the synced roots
//! nodes report, evictions and exits with their evidence, sequencers' equivocations and broken
//! preconfirmations (either expels them), and the bridge deposits.
//!
//! [`UpperChain`] is the interface, with three implementations:
//!
//! - [`EmbeddedChain`], the in-process chain the devnet starts, in memory or persisted in
//!   RocksDB, making the same checks the `Registry` contract (`contracts/Registry.sol`) makes;
//! - [`RemoteChain`], an embedded chain owned by another process that serves it with
//!   [`ChainServer`] (length-prefixed frames over TCP, [`wire`]);
//! - `EvmChain` (feature `evm`, on by default), the alloy adapter to the `Registry` contract on
//!   any Ethereum JSON-RPC endpoint.
//!
//! `rollup` (feature `evm`) is the alloy adapter to the asset rollup's contracts: the
//! `AssetBridge` that locks ERC-20 / ERC-721 tokens and releases proven withdrawals, and the
//! `AssetRollup` whose root moves only with a Groth16 proof.
//!
//! [`connect`] picks one from a chain URL (`tickrate://host:port` or `http(s)://…`) and checks
//! its chain id, for binaries that read the chain from their configuration.

use std::sync::Arc;

use primitives::{
    Address, B256, NodeId, Signature, SignatureError, U256,
    bls::{BlsError, BlsPublicKey, BlsSignature, Certificate},
    codec::{Encode, put_bytes},
    constants::GROUP_SIZE,
    k_nearest, keccak256,
    pbft::{EquivocationEvidence, EvidenceError},
    preconf::{PreconfirmationError, PreconfirmationEvidence, SignedPreconfirmation},
};

mod connect;
#[cfg(feature = "evm")]
pub mod devnode;
mod embedded;
#[cfg(feature = "evm")]
mod evm;
#[cfg(feature = "evm")]
pub mod rollup;
mod served;
pub mod sponsorship;
mod store;
pub mod wire;

pub use connect::{ChainConfig, ChainUrl, connect};
pub use embedded::{EmbeddedChain, Genesis};
#[cfg(feature = "evm")]
pub use evm::{EvmChain, EvmConfig};
pub use served::{ChainServer, DEVNET_CHAIN_ID, RemoteChain, ServerConfig};
pub use sponsorship::{SponsorPolicyRecord, SponsorPolicyUpdate, SponsorTerms};

/// Why the chain refused a call. A refused call changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The registration's signature does not recover.
    #[error("bad registration signature: {0}")]
    BadSignature(#[from] SignatureError),
    /// The node ID is registered already.
    #[error("node {0} is already registered")]
    AlreadyRegistered(NodeId),
    /// Another node registered this BLS key already (its signatures would count twice).
    #[error("the BLS key is registered by another node already")]
    BlsKeyTaken,
    /// The BLS key's proof of possession does not verify.
    #[error("BLS proof of possession does not verify")]
    BadPossession,
    /// A certificate does not verify against the validator set.
    #[error("certificate refused: {0}")]
    BadCertificate(#[from] BlsError),
    /// A batch commitment out of order.
    #[error("batch {got} committed out of order, expected {expected}")]
    BatchOutOfOrder {
        /// The next batch number.
        expected: u64,
        /// The number committed.
        got: u64,
    },
    /// A group named by members that are not registered and active in the commitment's epoch,
    /// or whose group ID is not the one committed.
    #[error("unknown group member {0}")]
    UnknownMember(NodeId),
    /// The same node appears twice among a group's members.
    #[error("node {0} appears twice among the members")]
    DuplicateMember(NodeId),
    /// A call that only a registered node may make, for a node that is not registered.
    #[error("node {0} is not registered")]
    NotRegistered(NodeId),
    /// A call signed by someone other than the node it names.
    #[error("signed by {signer}, not by node {node}")]
    WrongSigner {
        /// The node the call is about.
        node: NodeId,
        /// Who signed it.
        signer: Address,
    },
    /// An administrative call not signed by the admin (or with a stale nonce).
    #[error("signed by {0}, who is not the admin")]
    NotAdmin(Address),
    /// A sequencer's stake above the stake cap.
    #[error("stake {stake} above the cap {cap}")]
    StakeCapExceeded {
        /// The stake.
        stake: u128,
        /// The cap.
        cap: u128,
    },
    /// A sequencer operation on a candidate not on the whitelist.
    #[error("sequencer {0} is not whitelisted")]
    UnknownSequencer(NodeId),
    /// A sequencer already on the whitelist.
    #[error("sequencer {0} is whitelisted already")]
    AlreadyWhitelisted(NodeId),
    /// A rotation to an empty set, or to more sequencers than are whitelisted.
    #[error("cannot rotate to {size} sequencers out of {candidates} candidates")]
    BadRotation {
        /// The size asked for.
        size: u32,
        /// Candidates on the whitelist.
        candidates: u32,
    },
    /// An epoch that is not allowed here (a departure must take effect in a future epoch, a
    /// group root must name an epoch that has begun).
    #[error("epoch {got} not allowed, current epoch is {current}")]
    BadEpoch {
        /// The epoch named.
        got: u64,
        /// The current epoch.
        current: u64,
    },
    /// A report older than the one recorded.
    #[error("stale report: batch {got} after batch {recorded}")]
    Stale {
        /// The batch recorded.
        recorded: u64,
        /// The batch reported.
        got: u64,
    },
    /// The node has left (exit or eviction) already.
    #[error("node {0} has departed already")]
    AlreadyDeparted(NodeId),
    /// A departure whose proof is of the wrong kind (an exit needs the node's signature, an
    /// eviction a group certificate), or an eviction certified by a group the node is not in.
    #[error("departure proof does not fit the departure")]
    BadDepartureProof,
    /// A batch commitment whose signed message is not a PBFT commit's.
    #[error("the commit message is not a PBFT commit")]
    BadCommitMessage,
    /// A batch commitment for a sequence of a sequencer epoch the chain has not fixed yet.
    #[error("sequencer epoch {0} is not fixed yet")]
    UnknownSequencerEpoch(u64),
    /// Equivocation evidence that does not prove the offence under the offender's key.
    #[error("equivocation evidence refused: {0}")]
    InvalidEvidence(#[from] EvidenceError),
    /// An equivocation of this sequencer is recorded already (it was expelled then).
    #[error("an equivocation of sequencer {0} is recorded already")]
    EquivocationRecorded(NodeId),
    /// A sequencer expelled (for equivocation or a broken preconfirmation) may not be
    /// whitelisted again, nor expelled twice.
    #[error("sequencer {0} was expelled")]
    Expelled(NodeId),
    /// Evidence of a broken preconfirmation that does not prove it broken (bad signature, the
    /// move where it was promised, a batch not committed, a window not yet finalized).
    #[error("preconfirmation evidence refused: {0}")]
    InvalidPreconfirmationEvidence(#[from] PreconfirmationError),
    /// The local store failed (RocksDB).
    #[error("storage: {0}")]
    Storage(String),
    /// The remote chain answered something unexpected, or a request to it failed.
    #[error("rpc: {0}")]
    Rpc(String),
    /// The chain URL does not parse or names a scheme other than `tickrate`, `http` or
    /// `https`.
    #[error("bad chain URL {0:?}")]
    BadUrl(String),
    /// The chain configuration lacks what its URL needs.
    #[error("chain configuration: {0}")]
    Config(String),
    /// A request or an answer of the served chain's protocol that does not decode.
    #[error("malformed message: {0}")]
    Malformed(String),
    /// Nothing answers JSON-RPC at the chain URL.
    #[error("no chain answers at {url}: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// No contract is deployed at the configured registry address.
    #[error("no contract at {0}")]
    NoContract(Address),
    /// The endpoint serves a chain other than the configured one.
    #[error("wrong chain id: expected {expected}, the endpoint serves {got}")]
    WrongChainId {
        /// The configured chain id.
        expected: u64,
        /// The endpoint's chain id.
        got: u64,
    },
    /// The contract refused the call for a reason this crate does not map.
    #[error("contract refused the call: {0}")]
    Reverted(String),
    /// A wallet update signed with another nonce than the node's next one (an old update
    /// replayed, or two sent at once).
    #[error("wallet update nonce {got}, the node's next is {expected}")]
    WalletNonce {
        /// The node's next wallet nonce.
        expected: u64,
        /// The nonce signed.
        got: u64,
    },
    /// A sponsorship policy update signed by another key than the sponsor's.
    #[error("signed by {signer}, not by sponsor {sponsor}")]
    NotSponsor {
        /// The sponsor the update is for.
        sponsor: Address,
        /// Who signed it.
        signer: Address,
    },
    /// A sponsorship policy update signed with another nonce than the sponsor's next one.
    #[error("sponsor policy nonce {got}, the sponsor's next is {expected}")]
    SponsorNonce {
        /// The sponsor's next policy nonce.
        expected: u64,
        /// The nonce signed.
        got: u64,
    },
    /// This chain does not keep what the call asks for (the `Registry` contract has no
    /// sponsorship policies yet).
    #[error("not supported by this chain: {0}")]
    Unsupported(String),
    /// Another strong-DA commitment is recorded for this payload already: the first certified
    /// one stands.
    #[error("{kind:?} {number} has strong-DA commitment {recorded} already")]
    AvailabilityConflict {
        /// What the payload is.
        kind: AvailabilityKind,
        /// Its batch number.
        number: u64,
        /// The commitment recorded.
        recorded: B256,
    },
}

/// What a strong-DA commitment recorded on the chain is the payload of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AvailabilityKind {
    /// A finalized batch (its canonical encoding), by batch number.
    Batch,
    /// The execution record of a batch: its moves with the pre-state slices they ran on and
    /// their outcomes, what a fraud proof re-executes. By batch number.
    ExecutionRecord,
    /// The genesis state execution starts from (number 0).
    Genesis,
}

/// The strong-DA committee whose availability certificates the chain accepts: fixed at genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaCommittee {
    /// The DA nodes' BLS keys; node `i` holds chunk `i` of every payload.
    pub keys: Vec<BlsPublicKey>,
    /// Chunks that rebuild a payload (k of the erasure code; n is the number of keys).
    pub data_chunks: u16,
    /// Attestations a certificate needs.
    pub quorum: u32,
}

/// A payload's strong-DA commitment and the certificate that a quorum of the DA committee holds
/// verified chunks of it (over [`primitives::da::availability_message`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailabilityRecord {
    /// What the payload is.
    pub kind: AvailabilityKind,
    /// Its batch number (0 for the genesis).
    pub number: u64,
    /// The DA commitment.
    pub commitment: B256,
    /// The availability certificate.
    pub certificate: Certificate,
}

/// What an operator registers for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// Where the node listens.
    pub endpoint: String,
    /// Where its rewards go.
    pub reward_wallet: Address,
    /// Payout features of that wallet (comma-separated on the command line; unknown ones kept).
    pub wallet_features: Vec<String>,
    /// The node's BLS key for group certificates.
    pub bls_key: BlsPublicKey,
    /// Proof that the operator holds the BLS secret.
    pub bls_possession: BlsSignature,
}

impl Registration {
    /// The hash the node key signs.
    pub fn signing_hash(&self) -> B256 {
        let mut out = b"tickrate:register".to_vec();
        put_bytes(&mut out, self.endpoint.as_bytes());
        self.reward_wallet.encode(&mut out);
        let features: Vec<Vec<u8>> = self
            .wallet_features
            .iter()
            .map(|f| f.as_bytes().to_vec())
            .collect();
        out.extend_from_slice(&(features.len() as u32).to_be_bytes());
        for feature in &features {
            put_bytes(&mut out, feature);
        }
        self.bls_key.encode(&mut out);
        self.bls_possession.encode(&mut out);
        keccak256(&out)
    }
}

/// A change of a registered node's reward wallet and payout features, signed by the node's key:
/// only the node's operator may make it. The nonce is the node's next wallet nonce
/// ([`UpperChain::wallet_nonce`]), so an old change cannot be replayed over a newer one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletUpdate {
    /// The node.
    pub node: NodeId,
    /// Its new reward wallet.
    pub reward_wallet: Address,
    /// That wallet's payout features (unknown ones kept, as at registration).
    pub wallet_features: Vec<String>,
    /// The node's next wallet nonce.
    pub nonce: u64,
}

impl WalletUpdate {
    /// The hash the node key signs (`Registry.walletUpdateHash`).
    pub fn signing_hash(&self) -> B256 {
        let mut out = b"tickrate:update-wallet".to_vec();
        self.node.0.encode(&mut out);
        self.reward_wallet.encode(&mut out);
        out.extend_from_slice(&(self.wallet_features.len() as u32).to_be_bytes());
        for feature in &self.wallet_features {
            put_bytes(&mut out, feature.as_bytes());
        }
        out.extend_from_slice(&self.nonce.to_be_bytes());
        keccak256(&out)
    }
}

/// A node's reward wallet and payout features from one epoch on: a [`WalletUpdate`] as the
/// chain applies it. An update takes effect in the epoch after the one it is made in, as a
/// registration does, so the snapshot of an epoch that has begun never changes, and a report
/// pays each epoch's work to the wallet registered for that epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct WalletChange {
    /// The first epoch it is in force.
    pub from_epoch: u64,
    /// The reward wallet.
    pub reward_wallet: Address,
    /// That wallet's payout features.
    pub wallet_features: Vec<String>,
}

/// Puts into `record` the wallet in force at `epoch`: the last of `changes` (sorted by
/// epoch) from `epoch` or earlier, or the registration's own when there is none.
pub(crate) fn wallet_as_of(record: &mut NodeRecord, changes: &[WalletChange], epoch: u64) {
    if let Some(change) = changes
        .iter()
        .rev()
        .find(|change| change.from_epoch <= epoch)
    {
        record.registration.reward_wallet = change.reward_wallet;
        record
            .registration
            .wallet_features
            .clone_from(&change.wallet_features);
    }
}

/// A registered node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node ID (its operator key's address).
    pub id: NodeId,
    /// What it registered.
    pub registration: Registration,
    /// The first epoch whose groups include it.
    pub active_from_epoch: u64,
    /// The first epoch whose groups no longer include it (after an exit or eviction).
    pub left_at_epoch: Option<u64>,
}

impl NodeRecord {
    /// Whether the node belongs to the registry of `epoch`.
    pub fn active_in(&self, epoch: u64) -> bool {
        self.active_from_epoch <= epoch && self.left_at_epoch.is_none_or(|left| epoch < left)
    }
}

/// The registry as of one epoch: every node active then, sorted by ID. Its records show no
/// departure (`left_at_epoch` is `None`): a departure recorded later never changes it.
///
/// Registrations take effect in the epoch after the current one and departures in a future
/// epoch, so the snapshot of an epoch that has begun never changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegistrySnapshot {
    /// The epoch.
    pub epoch: u64,
    /// Active nodes, sorted by ID.
    pub nodes: Vec<NodeRecord>,
}

impl RegistrySnapshot {
    /// Node IDs, sorted.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// The address state group of `address`: the nearest nodes by XOR distance, nearest first.
    pub fn group_of(&self, address: &Address) -> Vec<NodeId> {
        k_nearest(address, &self.ids(), GROUP_SIZE)
    }

    /// The record of a node.
    pub fn node(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes
            .binary_search_by(|node| node.id.cmp(id))
            .ok()
            .map(|index| &self.nodes[index])
    }
}

/// Identifies a group by its members: keccak256 of the sorted IDs, each left-padded to 32 bytes
/// (Solidity's `keccak256(abi.encodePacked(address[]))`, so the contract computes the same).
pub fn group_id(members: &[NodeId]) -> B256 {
    let mut sorted = members.to_vec();
    sorted.sort();
    let mut out = Vec::with_capacity(sorted.len() * 32);
    for member in &sorted {
        out.extend_from_slice(&[0; 12]);
        out.extend_from_slice(member.0.as_slice());
    }
    keccak256(&out)
}

/// A sequencer in the set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerRecord {
    /// Its operator ID.
    pub id: NodeId,
    /// Its BLS key for batch certificates.
    pub bls_key: BlsPublicKey,
}

/// A sequencer epoch as the upper chain publishes it: the PBFT sequences it spans and the set
/// that decides them, in certificate (validator) order.
///
/// With sequencer epochs ([`Genesis::sequencer_epoch_length`]), epoch `e` spans the sequences
/// `e * length + 1 ..= (e + 1) * length`. Epoch 0's set is the genesis set; the set of epoch
/// `e + 1` is fixed when the chain records the commitment of epoch `e`'s last sequence (which is
/// never a null: a view change fills nulls only below a prepared sequence, and no sequence of
/// the epoch lies above its last), by [`select_sequencers`] over the whitelist, stake cap and
/// set size as they stand then. A change (a whitelisting, a removal, an expulsion for
/// equivocation, a new stake cap or size) therefore takes effect at the next epoch boundary, and
/// never inside an epoch. Without sequencer epochs there is one open-ended epoch 0, whose set is
/// the active set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerEpoch {
    /// The epoch.
    pub epoch: u64,
    /// The first PBFT sequence its set decides.
    pub first: u64,
    /// How many sequences it spans; `None`: no end (the chain has no sequencer epochs).
    pub length: Option<u64>,
    /// The sequencers that decide it, in certificate order.
    pub sequencers: Vec<SequencerRecord>,
}

impl SequencerEpoch {
    /// The last sequence the epoch spans, if it ends.
    pub fn last(&self) -> Option<u64> {
        self.length.map(|length| self.first + length - 1)
    }

    /// Whether the epoch spans PBFT `sequence`.
    pub fn spans(&self, sequence: u64) -> bool {
        sequence >= self.first && self.last().is_none_or(|last| sequence <= last)
    }
}

/// The sequencer epoch that spans PBFT `sequence` (from 1) when epochs are `length` sequences
/// long (`None`: one open-ended epoch).
pub fn sequencer_epoch_of(length: Option<u64>, sequence: u64) -> u64 {
    match length {
        Some(length) if length > 0 => sequence.saturating_sub(1) / length,
        _ => 0,
    }
}

/// The sequencer epoch that spans PBFT `sequence`, if `chain` has fixed it: epoch 0 tells the
/// epochs' length, from which the epoch of the sequence follows.
pub fn sequencer_epoch_at(
    chain: &dyn UpperChain,
    sequence: u64,
) -> Result<Option<SequencerEpoch>, ChainError> {
    let Some(zero) = chain.sequencer_epoch(0)? else {
        return Ok(None);
    };
    match sequencer_epoch_of(zero.length, sequence) {
        0 => Ok(Some(zero)),
        epoch => chain.sequencer_epoch(epoch),
    }
}

/// The one rule that makes a sequencer set from the whitelist, used for a rotation and at every
/// epoch boundary, by the chain and by anyone who checks it: the `size` candidates with the most
/// stake counted up to `stake_cap` (ties to the lower ID), or all of them if fewer, ordered by
/// ID. Sequencers expelled for equivocation or removed by the admin are off the whitelist, so
/// they are never chosen.
pub fn select_sequencers<'a>(
    candidates: impl IntoIterator<Item = &'a SequencerCandidate>,
    stake_cap: u128,
    size: usize,
) -> Vec<SequencerRecord> {
    let mut ranked: Vec<&SequencerCandidate> = candidates.into_iter().collect();
    ranked.sort_by(|a, b| {
        b.stake
            .min(stake_cap)
            .cmp(&a.stake.min(stake_cap))
            .then(a.record.id.cmp(&b.record.id))
    });
    let mut chosen: Vec<SequencerRecord> = ranked
        .into_iter()
        .take(size)
        .map(|candidate| candidate.record.clone())
        .collect();
    chosen.sort_by_key(|record| record.id);
    chosen
}

/// A sequencer on the admin whitelist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SequencerCandidate {
    /// The sequencer.
    pub record: SequencerRecord,
    /// Its stake (at most the stake cap when whitelisted).
    pub stake: u128,
}

/// A committed group state root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRootCommitment {
    /// Epoch of the registry the group was formed from.
    pub epoch: u64,
    /// The group.
    pub group: B256,
    /// The batch after which the root holds.
    pub batch: u64,
    /// The root over the group's addresses.
    pub root: B256,
}

impl GroupRootCommitment {
    /// The message group members sign.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = b"tickrate:group-root".to_vec();
        self.epoch.encode(&mut out);
        self.group.encode(&mut out);
        self.batch.encode(&mut out);
        self.root.encode(&mut out);
        out
    }

    /// The digest a group's BFT round agrees on: keccak256 of [`Self::signing_bytes`].
    pub fn digest(&self) -> B256 {
        keccak256(self.signing_bytes())
    }

    /// The bytes a group's PBFT commit certificate signs for this commitment, decided in `view`
    /// at `sequence`: [`primitives::pbft::commit_message`] over [`Self::digest`].
    pub fn commit_message(&self, view: u64, sequence: u64) -> Vec<u8> {
        primitives::pbft::commit_message(view, sequence, &self.digest())
    }
}

/// Where a group's BFT round decided a [`GroupRootCommitment`]: the PBFT view and sequence whose
/// commit certificate certifies it ([`GroupRootCommitment::commit_message`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupDecision {
    /// The view whose commits make up the certificate.
    pub view: u64,
    /// The group's PBFT sequence the commitment was decided at.
    pub sequence: u64,
}

/// A node's report that it holds the state of a group as of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncedRoot {
    /// The reporting node (it signs the report).
    pub node: NodeId,
    /// The registry epoch of the group.
    pub epoch: u64,
    /// The group.
    pub group: B256,
    /// The batch after which `root` holds.
    pub batch: u64,
    /// The state root the node holds.
    pub root: B256,
}

impl SyncedRoot {
    /// The hash the node key signs.
    pub fn signing_hash(&self) -> B256 {
        let mut out = b"tickrate:synced-root".to_vec();
        self.node.0.encode(&mut out);
        self.epoch.encode(&mut out);
        self.group.encode(&mut out);
        self.batch.encode(&mut out);
        self.root.encode(&mut out);
        keccak256(&out)
    }
}

/// Why a node leaves the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepartureKind {
    /// The operator leaves (signed by the node key).
    Exit,
    /// The node's group evicts it (certified by a quorum of the group).
    Eviction,
}

/// A node leaving the registry from `epoch` on, with the evidence for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Departure {
    /// The node.
    pub node: NodeId,
    /// Exit or eviction.
    pub kind: DepartureKind,
    /// The first epoch without the node; must be after the current epoch.
    pub epoch: u64,
    /// The evidence (for an eviction, what the group saw; kept verbatim, hashed into the
    /// signed message).
    pub evidence: Vec<u8>,
}

impl Departure {
    /// The message the node (exit) or its group (eviction) signs.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = b"tickrate:departure".to_vec();
        self.node.0.encode(&mut out);
        out.push(match self.kind {
            DepartureKind::Exit => 0,
            DepartureKind::Eviction => 1,
        });
        self.epoch.encode(&mut out);
        keccak256(&self.evidence).encode(&mut out);
        out
    }

    /// The hash the node key signs for an exit.
    pub fn signing_hash(&self) -> B256 {
        keccak256(self.signing_bytes())
    }
}

/// What authorizes a departure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DepartureProof {
    /// An exit: the node's own signature over [`Departure::signing_hash`].
    NodeSignature(Signature),
    /// An eviction: a quorum of a group containing the node, over [`Departure::signing_bytes`].
    GroupCertificate {
        /// The group's members, in the order the certificate's bitmap indexes.
        members: Vec<NodeId>,
        /// The certificate.
        certificate: Certificate,
    },
}

/// An administrative operation, signed by the admin key over [`AdminOp::signing_hash`] with the
/// chain's current admin nonce.
// Whitelisting carries a key and a proof of possession; admin operations are rare and
// short-lived, so the size of the enum does not matter and boxing would only cost clarity.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdminOp {
    /// Puts a sequencer on the whitelist; its stake must not exceed the cap, and it must not have
    /// been expelled for equivocation.
    Whitelist {
        /// The sequencer.
        record: SequencerRecord,
        /// Proof of possession of its BLS key.
        possession: BlsSignature,
        /// Its stake.
        stake: u128,
    },
    /// Takes a sequencer off the whitelist (and out of the active set).
    Remove(NodeId),
    /// Sets the stake cap.
    SetStakeCap(u128),
    /// Makes the active set the `size` candidates with the most stake counted up to the cap
    /// (ties by lower ID), ordered by ID ([`select_sequencers`]). With sequencer epochs it sets
    /// the size the next epoch boundary selects, and the running epoch's set stays.
    Rotate {
        /// Sequencers in the new set.
        size: u32,
    },
    /// Moves to the next epoch.
    AdvanceEpoch,
}

impl AdminOp {
    /// The hash the admin key signs, with the chain's admin nonce: the operation's canonical
    /// encoding (the served chain's wire form) after a prefix and the nonce, as the contract
    /// hashes it.
    pub fn signing_hash(&self, nonce: u64) -> B256 {
        let mut out = b"tickrate:admin".to_vec();
        nonce.encode(&mut out);
        self.encode(&mut out);
        keccak256(&out)
    }
}

/// A bridge deposit made on the upper chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deposit {
    /// Position in the chain's deposit sequence: 0, 1, 2, ...
    pub index: u64,
    /// Who deposited.
    pub from: Address,
    /// Who receives it on Tickrate.
    pub recipient: Address,
    /// The amount, in wei.
    pub amount: U256,
}

/// Quorum of a validator set of `n`: all but the `(n - 1) / 3` that may be faulty.
pub fn quorum(n: usize) -> usize {
    n - n.saturating_sub(1) / 3
}

/// What Tickrate reads from and writes to the chain it settles on.
///
/// Every call returns `Result`: on a remote chain ([`RemoteChain`], `EvmChain`) any read can
/// fail with the endpoint, and callers handle that rather than panic.
pub trait UpperChain: Send + Sync {
    /// Registers the node whose key signed `registration`; returns its node ID.
    fn register_node(
        &self,
        registration: Registration,
        signature: &Signature,
    ) -> Result<NodeId, ChainError>;
    /// The registry as of `epoch`.
    fn registry_snapshot(&self, epoch: u64) -> Result<RegistrySnapshot, ChainError>;
    /// The current epoch.
    fn epoch(&self) -> Result<u64, ChainError>;
    /// The sequencer set: with sequencer epochs, the set of the latest epoch published.
    fn sequencer_set(&self) -> Result<Vec<SequencerRecord>, ChainError>;
    /// Sequencer epoch `epoch` (its span and its set), once the chain has fixed it (see
    /// [`SequencerEpoch`]); `None` before.
    fn sequencer_epoch(&self, epoch: u64) -> Result<Option<SequencerEpoch>, ChainError>;
    /// Commits a finalized batch; the certificate must carry a quorum of the sequencer set
    /// (with sequencer epochs, of the set of the epoch that spans the sequence the commit
    /// message names; the commitment of an epoch's last sequence fixes the next epoch's set).
    fn commit_batch(
        &self,
        number: u64,
        batch_hash: B256,
        commit_message: &[u8],
        certificate: &Certificate,
    ) -> Result<(), ChainError>;
    /// Commits a group's state root; the certificate must carry a quorum of the group, whose
    /// members must be distinct, active in the commitment's epoch, and have the group's ID.
    fn commit_group_root(
        &self,
        commitment: GroupRootCommitment,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError>;
    /// Commits a group's state root decided by the group's BFT round: as
    /// [`UpperChain::commit_group_root`], but the certificate is the round's PBFT commit
    /// certificate, a quorum of the group over [`GroupRootCommitment::commit_message`] in the
    /// decision's view and sequence.
    fn commit_group_root_decided(
        &self,
        commitment: GroupRootCommitment,
        decision: GroupDecision,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError>;
    /// The last committed batch number (0 before any).
    fn last_batch(&self) -> Result<u64, ChainError>;
    /// The latest committed root of a group.
    fn group_root(&self, group: &B256) -> Result<Option<GroupRootCommitment>, ChainError>;

    /// The hash of committed batch `number`.
    fn batch_hash(&self, number: u64) -> Result<Option<B256>, ChainError>;
    /// Records that a registered node holds a group's state; signed by that node.
    fn record_synced_root(
        &self,
        synced: SyncedRoot,
        signature: &Signature,
    ) -> Result<(), ChainError>;
    /// The latest synced root a node reported.
    fn synced_root(&self, node: &NodeId) -> Result<Option<SyncedRoot>, ChainError>;
    /// Records an exit or an eviction, effective from a future epoch.
    fn record_departure(
        &self,
        departure: Departure,
        proof: &DepartureProof,
    ) -> Result<(), ChainError>;
    /// The departure of a node, if it left.
    fn departure(&self, node: &NodeId) -> Result<Option<Departure>, ChainError>;
    /// Changes a registered node's reward wallet and payout features, signed by the node
    /// ([`WalletUpdate`]). Refused with [`ChainError::WrongSigner`] if another key signed it,
    /// [`ChainError::NotRegistered`], [`ChainError::AlreadyDeparted`], and
    /// [`ChainError::WalletNonce`] if its nonce is not the node's next. The change takes effect
    /// in the next epoch: registry snapshots show it from that epoch on, and the snapshots of
    /// epochs that have begun keep the wallet they had (a report pays each epoch's work to the
    /// wallet of that epoch). Of two updates made in one epoch, the later is the one in force.
    fn update_wallet(&self, update: WalletUpdate, signature: &Signature) -> Result<(), ChainError>;
    /// The nonce the node's next wallet update must carry (0 before any).
    fn wallet_nonce(&self, node: &NodeId) -> Result<u64, ChainError>;
    /// Applies an administrative operation signed by the admin.
    fn admin(&self, op: AdminOp, signature: &Signature) -> Result<(), ChainError>;
    /// The nonce the next admin operation must be signed with.
    fn admin_nonce(&self) -> Result<u64, ChainError>;
    /// The admin whitelist of sequencers, by ID.
    fn sequencer_candidates(&self) -> Result<Vec<SequencerCandidate>, ChainError>;
    /// The stake cap.
    fn stake_cap(&self) -> Result<u128, ChainError>;
    /// Deposits with index `from` onwards, in order, at most `limit`.
    fn deposits_since(&self, from: u64, limit: usize) -> Result<Vec<Deposit>, ChainError>;
    /// Records that the whitelisted sequencer `offender` equivocated, and expels it. Anyone may
    /// report; the evidence is its own authority: it must verify under the offender's BLS key
    /// (its whitelist record's).
    ///
    /// The offender leaves the whitelist at once, for good (it cannot be whitelisted again), so
    /// no later rotation chooses it. It leaves the active set at the next rotation
    /// ([`AdminOp::Rotate`]), not now: batch certificates index the active set by position, and
    /// the running PBFT instance certifies with the set it started with, so shrinking the set
    /// mid-stream would make every commitment fail until the sequencers reconfigure, handing a
    /// single equivocator a way to halt settlement. Until then its one vote cannot break safety
    /// (PBFT tolerates `f` faulty sequencers).
    ///
    /// Refused with [`ChainError::EquivocationRecorded`] once the offender has been expelled
    /// (any second report, of the same offence or another), [`ChainError::UnknownSequencer`] if
    /// it is not whitelisted, and [`ChainError::InvalidEvidence`] if the evidence proves nothing.
    fn report_equivocation(
        &self,
        evidence: &EquivocationEvidence,
        offender: NodeId,
    ) -> Result<(), ChainError>;
    /// Every recorded equivocation, with its offender, by offender ID.
    fn equivocations(&self) -> Result<Vec<(NodeId, EquivocationEvidence)>, ChainError>;
    /// Records that a whitelisted sequencer broke a preconfirmation it signed, and expels it
    /// exactly as [`UpperChain::report_equivocation`] does (off the whitelist at once and for
    /// good, out of the next sequencer epoch's set). Anyone may report; the evidence is its
    /// own authority ([`PreconfirmationEvidence::verify`]): the promise must be signed by the
    /// sequencer it names (its ID is its operator key's address), and the evidence's batches
    /// must be ones this chain committed (each checked against the sequencer set's commit
    /// certificate then), holding that sequencer's block at every height of the promised
    /// window, none of which holds the move or a replacement of it by its sender.
    ///
    /// Refused, changing nothing, with [`ChainError::InvalidPreconfirmationEvidence`] if the
    /// evidence proves nothing, [`ChainError::Expelled`] if the sequencer was expelled already,
    /// [`ChainError::UnknownSequencer`] if it is not whitelisted, and
    /// [`ChainError::Unsupported`] on a chain that cannot check it (the `Registry` contract).
    fn report_broken_preconfirmation(
        &self,
        evidence: &PreconfirmationEvidence,
    ) -> Result<(), ChainError>;
    /// Every sequencer expelled for a broken preconfirmation, with the promise it broke, by ID.
    fn broken_preconfirmations(&self) -> Result<Vec<(NodeId, SignedPreconfirmation)>, ChainError>;
    /// Sets or withdraws a sponsor's sponsorship policy ([`SponsorPolicyUpdate`]), signed by
    /// the sponsor's account key. Refused with [`ChainError::NotSponsor`] if another key signed
    /// it and [`ChainError::SponsorNonce`] if its nonce is not the sponsor's next. In force for
    /// every reader of [`UpperChain::sponsor_policies`] from then on.
    fn set_sponsor_policy(
        &self,
        update: SponsorPolicyUpdate,
        signature: &Signature,
    ) -> Result<(), ChainError>;
    /// The nonce the sponsor's next policy update must carry (0 before any).
    fn sponsor_nonce(&self, sponsor: &Address) -> Result<u64, ChainError>;
    /// Every sponsorship policy in force, by sponsor.
    fn sponsor_policies(&self) -> Result<Vec<SponsorPolicyRecord>, ChainError>;
    /// The strong-DA committee fixed at genesis, if the chain has one.
    fn da_committee(&self) -> Result<Option<DaCommittee>, ChainError>;
    /// Records the strong-DA commitment of a payload (a finalized batch, a batch's execution
    /// record, the genesis state), so that anyone finds it by batch number. Anyone may submit:
    /// the certificate must carry a quorum of the DA committee over the commitment's
    /// availability message. Submitting the recorded commitment again changes nothing; another
    /// commitment for the same payload is refused with [`ChainError::AvailabilityConflict`].
    /// [`ChainError::Unsupported`] on a chain without a DA committee, and on the `Registry`
    /// contract, which has no room left for it (24,548 of the 24,576 bytes EIP-170 allows).
    fn record_availability(&self, record: AvailabilityRecord) -> Result<(), ChainError>;
    /// The strong-DA commitment recorded for a payload.
    fn availability(
        &self,
        kind: AvailabilityKind,
        number: u64,
    ) -> Result<Option<AvailabilityRecord>, ChainError>;
}

/// The bridge's view of deposits: each deposit is returned exactly once, in order.
///
/// The cursor is the index of the next deposit; persist [`DepositStream::cursor`] and resume
/// with [`DepositStream::starting_at`] to keep exactly-once across restarts.
pub struct DepositStream {
    chain: Arc<dyn UpperChain>,
    next: u64,
}

impl DepositStream {
    /// A stream from the first deposit.
    pub fn new(chain: Arc<dyn UpperChain>) -> Self {
        DepositStream::starting_at(chain, 0)
    }

    /// A stream from deposit `next`.
    pub fn starting_at(chain: Arc<dyn UpperChain>, next: u64) -> Self {
        DepositStream { chain, next }
    }

    /// The index of the next deposit the stream returns.
    pub fn cursor(&self) -> u64 {
        self.next
    }

    /// Deposits made since the last poll (up to 1024 at a time); never one twice, none skipped.
    pub fn poll(&mut self) -> Result<Vec<Deposit>, ChainError> {
        let mut out = Vec::new();
        for deposit in self.chain.deposits_since(self.next, 1024)? {
            // Only a gap-free continuation of the cursor is taken.
            if deposit.index != self.next {
                break;
            }
            self.next += 1;
            out.push(deposit);
        }
        Ok(out)
    }
}
