//! The canonical encodings of the embedded chain's records in RocksDB.

use primitives::{
    Address, B256, Decode, DecodeError, Decoder, Encode, NodeId,
    bls::{BlsPublicKey, BlsSignature, Certificate},
    codec::{put_bytes, put_list, put_u256},
};

use crate::{
    AvailabilityKind, AvailabilityRecord, DaCommittee, Departure, DepartureKind, Deposit,
    GroupRootCommitment, NodeRecord, Registration, SequencerCandidate, SequencerEpoch,
    SequencerRecord, SyncedRoot, WalletChange, WalletUpdate,
};

/// Bound on endpoints, features and evidence read back from the store.
const FIELD_MAX: usize = 1 << 20;
/// Bound on wallet features of one registration.
const FEATURES_MAX: usize = 1024;
/// Bound on the sequencer set.
const SEQUENCERS_MAX: usize = 1 << 16;

/// Decodes one complete value.
pub(crate) fn decode_all<T: Decode>(bytes: &[u8]) -> Result<T, DecodeError> {
    let mut decoder = Decoder::new(bytes);
    let value = T::decode(&mut decoder)?;
    decoder.finish()?;
    Ok(value)
}

fn string(decoder: &mut Decoder<'_>, what: &'static str) -> Result<String, DecodeError> {
    let bytes = decoder.bytes(what, FIELD_MAX)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid {
        what,
        why: "not UTF-8",
    })
}

impl Encode for Registration {
    fn encode(&self, out: &mut Vec<u8>) {
        put_bytes(out, self.endpoint.as_bytes());
        self.reward_wallet.encode(out);
        out.extend_from_slice(&(self.wallet_features.len() as u32).to_be_bytes());
        for feature in &self.wallet_features {
            put_bytes(out, feature.as_bytes());
        }
        self.bls_key.encode(out);
        self.bls_possession.encode(out);
    }
}

impl Encode for WalletUpdate {
    fn encode(&self, out: &mut Vec<u8>) {
        self.node.encode(out);
        self.reward_wallet.encode(out);
        out.extend_from_slice(&(self.wallet_features.len() as u32).to_be_bytes());
        for feature in &self.wallet_features {
            put_bytes(out, feature.as_bytes());
        }
        self.nonce.encode(out);
    }
}

impl Decode for WalletUpdate {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let node = NodeId::decode(decoder)?;
        let reward_wallet = decoder.address()?;
        let count = decoder.length("wallet features", FEATURES_MAX)?;
        let mut wallet_features = Vec::new();
        for _ in 0..count {
            wallet_features.push(string(decoder, "wallet feature")?);
        }
        Ok(WalletUpdate {
            node,
            reward_wallet,
            wallet_features,
            nonce: decoder.u64()?,
        })
    }
}

impl Encode for WalletChange {
    fn encode(&self, out: &mut Vec<u8>) {
        self.from_epoch.encode(out);
        self.reward_wallet.encode(out);
        out.extend_from_slice(&(self.wallet_features.len() as u32).to_be_bytes());
        for feature in &self.wallet_features {
            put_bytes(out, feature.as_bytes());
        }
    }
}

impl Decode for WalletChange {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let from_epoch = decoder.u64()?;
        let reward_wallet = decoder.address()?;
        let count = decoder.length("wallet features", FEATURES_MAX)?;
        let mut wallet_features = Vec::new();
        for _ in 0..count {
            wallet_features.push(string(decoder, "wallet feature")?);
        }
        Ok(WalletChange {
            from_epoch,
            reward_wallet,
            wallet_features,
        })
    }
}

impl Decode for Registration {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let endpoint = string(decoder, "endpoint")?;
        let reward_wallet = decoder.address()?;
        let count = decoder.length("wallet features", FEATURES_MAX)?;
        let mut wallet_features = Vec::new();
        for _ in 0..count {
            wallet_features.push(string(decoder, "wallet feature")?);
        }
        Ok(Registration {
            endpoint,
            reward_wallet,
            wallet_features,
            bls_key: BlsPublicKey::decode(decoder)?,
            bls_possession: BlsSignature::decode(decoder)?,
        })
    }
}

impl Encode for NodeRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        self.id.encode(out);
        self.registration.encode(out);
        self.active_from_epoch.encode(out);
        self.left_at_epoch.unwrap_or(0).encode(out);
    }
}

impl Decode for NodeRecord {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(NodeRecord {
            id: NodeId::decode(decoder)?,
            registration: Registration::decode(decoder)?,
            active_from_epoch: decoder.u64()?,
            left_at_epoch: Some(decoder.u64()?).filter(|epoch| *epoch != 0),
        })
    }
}

impl Encode for SequencerRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        self.id.encode(out);
        self.bls_key.encode(out);
    }
}

impl Decode for SequencerRecord {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SequencerRecord {
            id: NodeId::decode(decoder)?,
            bls_key: BlsPublicKey::decode(decoder)?,
        })
    }
}

/// The active sequencer set, in certificate order.
pub(crate) struct SequencerSet(pub Vec<SequencerRecord>);

impl Encode for SequencerSet {
    fn encode(&self, out: &mut Vec<u8>) {
        put_list(out, &self.0);
    }
}

impl Decode for SequencerSet {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SequencerSet(decoder.list("sequencers", SEQUENCERS_MAX)?))
    }
}

impl Encode for SequencerEpoch {
    fn encode(&self, out: &mut Vec<u8>) {
        self.epoch.encode(out);
        self.first.encode(out);
        self.length.unwrap_or(0).encode(out);
        put_list(out, &self.sequencers);
    }
}

impl Decode for SequencerEpoch {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let epoch = decoder.u64()?;
        let first = decoder.u64()?;
        let length = decoder.u64()?;
        Ok(SequencerEpoch {
            epoch,
            first,
            length: (length > 0).then_some(length),
            sequencers: decoder.list("sequencers", SEQUENCERS_MAX)?,
        })
    }
}

impl Encode for SequencerCandidate {
    fn encode(&self, out: &mut Vec<u8>) {
        self.record.encode(out);
        out.extend_from_slice(&self.stake.to_be_bytes());
    }
}

impl Decode for SequencerCandidate {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SequencerCandidate {
            record: SequencerRecord::decode(decoder)?,
            stake: decoder.u128()?,
        })
    }
}

impl Encode for GroupRootCommitment {
    fn encode(&self, out: &mut Vec<u8>) {
        self.epoch.encode(out);
        self.group.encode(out);
        self.batch.encode(out);
        self.root.encode(out);
    }
}

impl Decode for GroupRootCommitment {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(GroupRootCommitment {
            epoch: decoder.u64()?,
            group: decoder.b256()?,
            batch: decoder.u64()?,
            root: decoder.b256()?,
        })
    }
}

impl Encode for SyncedRoot {
    fn encode(&self, out: &mut Vec<u8>) {
        self.node.encode(out);
        self.epoch.encode(out);
        self.group.encode(out);
        self.batch.encode(out);
        self.root.encode(out);
    }
}

impl Decode for SyncedRoot {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SyncedRoot {
            node: NodeId::decode(decoder)?,
            epoch: decoder.u64()?,
            group: decoder.b256()?,
            batch: decoder.u64()?,
            root: decoder.b256()?,
        })
    }
}

impl Encode for Departure {
    fn encode(&self, out: &mut Vec<u8>) {
        self.node.encode(out);
        out.push(match self.kind {
            DepartureKind::Exit => 0,
            DepartureKind::Eviction => 1,
        });
        self.epoch.encode(out);
        put_bytes(out, &self.evidence);
    }
}

impl Decode for Departure {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let node = NodeId::decode(decoder)?;
        let kind = match decoder.u8()? {
            0 => DepartureKind::Exit,
            1 => DepartureKind::Eviction,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "departure kind",
                    tag,
                });
            }
        };
        Ok(Departure {
            node,
            kind,
            epoch: decoder.u64()?,
            evidence: decoder.bytes("evidence", FIELD_MAX)?.to_vec(),
        })
    }
}

impl Encode for Deposit {
    fn encode(&self, out: &mut Vec<u8>) {
        self.index.encode(out);
        self.from.encode(out);
        self.recipient.encode(out);
        put_u256(out, &self.amount);
    }
}

impl Decode for Deposit {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Deposit {
            index: decoder.u64()?,
            from: decoder.address()?,
            recipient: decoder.address()?,
            amount: decoder.u256()?,
        })
    }
}

/// Key prefixes of the records.
pub(crate) mod key {
    use super::*;

    pub const EPOCH: &[u8] = b"m/epoch";
    pub const ADMIN: &[u8] = b"m/admin";
    pub const NONCE: &[u8] = b"m/nonce";
    pub const CAP: &[u8] = b"m/cap";
    pub const ACTIVE: &[u8] = b"s/active";
    pub const NODE: &[u8] = b"n/";
    pub const CANDIDATE: &[u8] = b"c/";
    pub const BATCH: &[u8] = b"b/";
    pub const GROUP: &[u8] = b"g/";
    pub const SYNCED: &[u8] = b"y/";
    pub const DEPARTURE: &[u8] = b"d/";
    pub const DEPOSIT: &[u8] = b"p/";
    pub const EQUIVOCATION: &[u8] = b"e/";
    pub const BROKEN_PRECONFIRMATION: &[u8] = b"x/";
    pub const WALLET_NONCE: &[u8] = b"w/";
    /// A wallet change, by node and the epoch it takes effect.
    pub const WALLET_CHANGE: &[u8] = b"wc/";
    pub const SPONSOR_POLICY: &[u8] = b"sp/";
    pub const SPONSOR_NONCE: &[u8] = b"sn/";
    pub const SEQUENCER_EPOCH_LENGTH: &[u8] = b"m/sequencer-epoch-length";
    pub const SEQUENCER_SET_SIZE: &[u8] = b"m/sequencer-set-size";
    pub const SEQUENCER_EPOCH: &[u8] = b"q/";
    pub const DA_COMMITTEE: &[u8] = b"m/da-committee";
    pub const AVAILABILITY: &[u8] = b"a/";

    /// The key of a payload's strong-DA commitment: kind, then batch number.
    pub fn availability(kind: crate::AvailabilityKind, number: u64) -> Vec<u8> {
        let mut rest = kind.to_bytes();
        rest.extend_from_slice(&number.to_be_bytes());
        with(AVAILABILITY, &rest)
    }

    pub fn with(prefix: &[u8], rest: &[u8]) -> Vec<u8> {
        let mut out = prefix.to_vec();
        out.extend_from_slice(rest);
        out
    }

    pub fn node(prefix: &[u8], id: &NodeId) -> Vec<u8> {
        with(prefix, id.0.as_slice())
    }

    pub fn wallet_change(id: &NodeId, from_epoch: u64) -> Vec<u8> {
        let mut out = node(WALLET_CHANGE, id);
        out.extend_from_slice(&from_epoch.to_be_bytes());
        out
    }

    pub fn number(prefix: &[u8], number: u64) -> Vec<u8> {
        with(prefix, &number.to_be_bytes())
    }

    pub fn group(group: &B256) -> Vec<u8> {
        with(GROUP, group.as_slice())
    }

    /// Admin address encoding.
    pub fn address(address: &Address) -> Vec<u8> {
        address.to_vec()
    }
}

impl Encode for AvailabilityKind {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(match self {
            AvailabilityKind::Batch => 0,
            AvailabilityKind::ExecutionRecord => 1,
            AvailabilityKind::Genesis => 2,
        });
    }
}

impl Decode for AvailabilityKind {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(match decoder.u8()? {
            0 => AvailabilityKind::Batch,
            1 => AvailabilityKind::ExecutionRecord,
            2 => AvailabilityKind::Genesis,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "availability kind",
                    tag,
                });
            }
        })
    }
}

impl Encode for AvailabilityRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        self.kind.encode(out);
        self.number.encode(out);
        self.commitment.encode(out);
        self.certificate.encode(out);
    }
}

impl Decode for AvailabilityRecord {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(AvailabilityRecord {
            kind: AvailabilityKind::decode(decoder)?,
            number: decoder.u64()?,
            commitment: decoder.b256()?,
            certificate: Certificate::decode(decoder)?,
        })
    }
}

/// Most DA nodes in a committee the chain accepts.
pub(crate) const DA_COMMITTEE_MAX: usize = primitives::constants::VALIDATORS_MAX;

impl Encode for DaCommittee {
    fn encode(&self, out: &mut Vec<u8>) {
        put_list(out, &self.keys);
        out.extend_from_slice(&self.data_chunks.to_be_bytes());
        out.extend_from_slice(&self.quorum.to_be_bytes());
    }
}

impl Decode for DaCommittee {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(DaCommittee {
            keys: decoder.list("DA committee", DA_COMMITTEE_MAX)?,
            data_chunks: decoder.u16()?,
            quorum: decoder.u32()?,
        })
    }
}
