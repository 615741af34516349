//! The protocol of the served embedded chain: requests, answers and their encoding.
//!
//! No IO here. A frame is a `u32` big-endian length and that many bytes; a request frame holds
//! a version byte, a tag and the call's arguments in the `primitives` codec, an answer frame the
//! same for the call's result. [`handle`] applies one request to a chain; the tokio server
//! (`served::ChainServer`) and the blocking client (`served::RemoteChain`) move the frames.
//!
//! Every decoder is bounded: a frame is at most [`REQUEST_BYTES_MAX`] (a request) or
//! [`ANSWER_BYTES_MAX`] (an answer), and each list and string inside it is checked against its
//! own bound before anything is allocated.

use primitives::{
    Address, B256, Decode, DecodeError, Decoder, Encode, NodeId, Signature, SignatureError,
    bls::{BlsError, Certificate},
    codec::{put_bytes, put_list},
    pbft::{EquivocationEvidence, EvidenceError},
    preconf::{PreconfirmationError, PreconfirmationEvidence, SignedPreconfirmation},
};

use crate::{
    AdminOp, AvailabilityKind, AvailabilityRecord, ChainError, DaCommittee, Departure,
    DepartureProof, Deposit, GroupDecision, GroupRootCommitment, NodeRecord, Registration,
    RegistrySnapshot, SequencerCandidate, SequencerEpoch, SequencerRecord, SponsorPolicyRecord,
    SponsorPolicyUpdate, SyncedRoot, UpperChain, WalletUpdate,
};

/// The protocol version, the first byte of every request and answer.
pub const PROTOCOL_VERSION: u8 = 1;
/// The largest request frame (a registration, a certificate, evidence: all far smaller).
pub const REQUEST_BYTES_MAX: usize = 1 << 20;
/// The largest answer frame (a registry snapshot of a large network).
pub const ANSWER_BYTES_MAX: usize = 64 << 20;
/// The most deposits one request asks for (the client pages through longer ranges).
pub const DEPOSITS_PER_REQUEST_MAX: u32 = 4096;

const STRING_BYTES_MAX: usize = 1 << 20;
const MEMBERS_MAX: usize = primitives::constants::VALIDATORS_MAX;
const LIST_MAX: usize = ANSWER_BYTES_MAX / 32;

/// A call of the [`UpperChain`] interface, or the greeting.
#[allow(clippy::large_enum_variant)] // one request at a time; boxing would only cost clarity
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Which chain is this? Answered with [`Answer::Hello`].
    Hello,
    /// [`UpperChain::register_node`].
    RegisterNode(Registration, Signature),
    /// [`UpperChain::registry_snapshot`].
    RegistrySnapshot(u64),
    /// [`UpperChain::epoch`].
    Epoch,
    /// [`UpperChain::sequencer_set`].
    SequencerSet,
    /// [`UpperChain::sequencer_epoch`].
    SequencerEpoch(u64),
    /// [`UpperChain::commit_batch`].
    CommitBatch {
        /// The batch number.
        number: u64,
        /// Its hash.
        batch_hash: B256,
        /// The message the certificate signs.
        commit_message: Vec<u8>,
        /// The certificate.
        certificate: Certificate,
    },
    /// [`UpperChain::commit_group_root`].
    CommitGroupRoot(GroupRootCommitment, Vec<NodeId>, Certificate),
    /// [`UpperChain::commit_group_root_decided`].
    CommitGroupRootDecided(GroupRootCommitment, GroupDecision, Vec<NodeId>, Certificate),
    /// [`UpperChain::last_batch`].
    LastBatch,
    /// [`UpperChain::group_root`].
    GroupRoot(B256),
    /// [`UpperChain::batch_hash`].
    BatchHash(u64),
    /// [`UpperChain::record_synced_root`].
    RecordSyncedRoot(SyncedRoot, Signature),
    /// [`UpperChain::synced_root`].
    SyncedRoot(NodeId),
    /// [`UpperChain::record_departure`].
    RecordDeparture(Departure, DepartureProof),
    /// [`UpperChain::departure`].
    Departure(NodeId),
    /// [`UpperChain::admin`].
    Admin(AdminOp, Signature),
    /// [`UpperChain::admin_nonce`].
    AdminNonce,
    /// [`UpperChain::sequencer_candidates`].
    SequencerCandidates,
    /// [`UpperChain::stake_cap`].
    StakeCap,
    /// [`UpperChain::deposits_since`], at most [`DEPOSITS_PER_REQUEST_MAX`] at a time.
    DepositsSince {
        /// The first index.
        from: u64,
        /// How many at most.
        limit: u32,
    },
    /// [`UpperChain::report_equivocation`].
    ReportEquivocation(EquivocationEvidence, NodeId),
    /// [`UpperChain::equivocations`].
    Equivocations,
    /// [`UpperChain::update_wallet`].
    UpdateWallet(WalletUpdate, Signature),
    /// [`UpperChain::wallet_nonce`].
    WalletNonce(NodeId),
    /// [`UpperChain::set_sponsor_policy`].
    SetSponsorPolicy(SponsorPolicyUpdate, Signature),
    /// [`UpperChain::sponsor_nonce`].
    SponsorNonce(Address),
    /// [`UpperChain::sponsor_policies`].
    SponsorPolicies,
    /// [`UpperChain::report_broken_preconfirmation`].
    ReportBrokenPreconfirmation(Box<PreconfirmationEvidence>),
    /// [`UpperChain::broken_preconfirmations`].
    BrokenPreconfirmations,
    /// [`UpperChain::record_availability`].
    RecordAvailability(AvailabilityRecord),
    /// [`UpperChain::availability`].
    Availability(AvailabilityKind, u64),
    /// [`UpperChain::da_committee`].
    DaCommittee,
}

/// The answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The chain's id.
    Hello {
        /// The chain id the server was started with.
        chain_id: u64,
    },
    /// A write succeeded.
    Done,
    /// A registered node's ID.
    Node(NodeId),
    /// A registry snapshot.
    Snapshot(RegistrySnapshot),
    /// An epoch, a batch number or a nonce.
    Number(u64),
    /// The sequencer set.
    Sequencers(Vec<SequencerRecord>),
    /// A sequencer epoch, if fixed.
    SequencerEpoch(Option<SequencerEpoch>),
    /// The sponsorship policies in force.
    SponsorPolicies(Vec<SponsorPolicyRecord>),
    /// A group's root.
    GroupRoot(Option<GroupRootCommitment>),
    /// A batch's hash.
    BatchHash(Option<B256>),
    /// A node's synced root.
    SyncedRoot(Option<SyncedRoot>),
    /// A node's departure.
    Departure(Option<Departure>),
    /// The whitelist.
    Candidates(Vec<SequencerCandidate>),
    /// The stake cap.
    StakeCap(u128),
    /// Deposits.
    Deposits(Vec<Deposit>),
    /// Recorded equivocations.
    Equivocations(Vec<(NodeId, EquivocationEvidence)>),
    /// Promises whose breach expelled their sequencer.
    BrokenPreconfirmations(Vec<SignedPreconfirmation>),
    /// A payload's strong-DA commitment, if recorded.
    Availability(Option<AvailabilityRecord>),
    /// The strong-DA committee, if the chain has one.
    DaCommittee(Option<DaCommittee>),
    /// The chain refused the call, or the request was malformed.
    Refused(ChainError),
}

/// Applies one request to `chain`, served as chain `chain_id`.
pub fn handle(chain: &dyn UpperChain, chain_id: u64, request: Request) -> Answer {
    fn done(result: Result<(), ChainError>) -> Answer {
        result.map_or_else(Answer::Refused, |()| Answer::Done)
    }
    fn answer<T>(result: Result<T, ChainError>, wrap: impl FnOnce(T) -> Answer) -> Answer {
        result.map_or_else(Answer::Refused, wrap)
    }
    match request {
        Request::Hello => Answer::Hello { chain_id },
        Request::RegisterNode(registration, signature) => {
            answer(chain.register_node(registration, &signature), Answer::Node)
        }
        Request::RegistrySnapshot(epoch) => {
            answer(chain.registry_snapshot(epoch), Answer::Snapshot)
        }
        Request::Epoch => answer(chain.epoch(), Answer::Number),
        Request::SequencerSet => answer(chain.sequencer_set(), Answer::Sequencers),
        Request::SequencerEpoch(epoch) => {
            answer(chain.sequencer_epoch(epoch), Answer::SequencerEpoch)
        }
        Request::CommitBatch {
            number,
            batch_hash,
            commit_message,
            certificate,
        } => done(chain.commit_batch(number, batch_hash, &commit_message, &certificate)),
        Request::CommitGroupRoot(commitment, members, certificate) => {
            done(chain.commit_group_root(commitment, &members, &certificate))
        }
        Request::CommitGroupRootDecided(commitment, decision, members, certificate) => {
            done(chain.commit_group_root_decided(commitment, decision, &members, &certificate))
        }
        Request::LastBatch => answer(chain.last_batch(), Answer::Number),
        Request::GroupRoot(group) => answer(chain.group_root(&group), Answer::GroupRoot),
        Request::BatchHash(number) => answer(chain.batch_hash(number), Answer::BatchHash),
        Request::RecordSyncedRoot(synced, signature) => {
            done(chain.record_synced_root(synced, &signature))
        }
        Request::SyncedRoot(node) => answer(chain.synced_root(&node), Answer::SyncedRoot),
        Request::RecordDeparture(departure, proof) => {
            done(chain.record_departure(departure, &proof))
        }
        Request::Departure(node) => answer(chain.departure(&node), Answer::Departure),
        Request::Admin(op, signature) => done(chain.admin(op, &signature)),
        Request::AdminNonce => answer(chain.admin_nonce(), Answer::Number),
        Request::SequencerCandidates => answer(chain.sequencer_candidates(), Answer::Candidates),
        Request::StakeCap => answer(chain.stake_cap(), Answer::StakeCap),
        Request::DepositsSince { from, limit } => answer(
            chain.deposits_since(from, limit.min(DEPOSITS_PER_REQUEST_MAX) as usize),
            Answer::Deposits,
        ),
        Request::ReportEquivocation(evidence, offender) => {
            done(chain.report_equivocation(&evidence, offender))
        }
        Request::Equivocations => answer(chain.equivocations(), Answer::Equivocations),
        Request::UpdateWallet(update, signature) => done(chain.update_wallet(update, &signature)),
        Request::WalletNonce(node) => answer(chain.wallet_nonce(&node), Answer::Number),
        Request::SetSponsorPolicy(update, signature) => {
            done(chain.set_sponsor_policy(update, &signature))
        }
        Request::SponsorNonce(sponsor) => answer(chain.sponsor_nonce(&sponsor), Answer::Number),
        Request::SponsorPolicies => answer(chain.sponsor_policies(), Answer::SponsorPolicies),
        Request::ReportBrokenPreconfirmation(evidence) => {
            done(chain.report_broken_preconfirmation(&evidence))
        }
        // The sequencer is named inside each promise.
        Request::BrokenPreconfirmations => answer(chain.broken_preconfirmations(), |broken| {
            Answer::BrokenPreconfirmations(broken.into_iter().map(|(_, promise)| promise).collect())
        }),
        Request::RecordAvailability(record) => done(chain.record_availability(record)),
        Request::Availability(kind, number) => {
            answer(chain.availability(kind, number), Answer::Availability)
        }
        Request::DaCommittee => answer(chain.da_committee(), Answer::DaCommittee),
    }
}

/// Appends a frame holding `message` to `out`.
pub fn put_frame(out: &mut Vec<u8>, message: &impl Encode) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    message.encode(out);
    let len = u32::try_from(out.len() - start - 4).expect("frames are bounded far below 4 GiB");
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// The length a frame header announces, checked against `max`.
pub fn frame_length(header: [u8; 4], max: usize) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(header) as usize;
    if len > max {
        return Err(DecodeError::Oversized {
            what: "frame",
            len,
            max,
        });
    }
    Ok(len)
}

fn put_string(out: &mut Vec<u8>, text: &str) {
    put_bytes(out, text.as_bytes());
}

fn string(decoder: &mut Decoder<'_>, what: &'static str) -> Result<String, DecodeError> {
    let bytes = decoder.bytes(what, STRING_BYTES_MAX)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid {
        what,
        why: "not UTF-8",
    })
}

fn put_option<T: Encode>(out: &mut Vec<u8>, value: &Option<T>) {
    match value {
        None => out.push(0),
        Some(value) => {
            out.push(1);
            value.encode(out);
        }
    }
}

fn option<T: Decode>(decoder: &mut Decoder<'_>) -> Result<Option<T>, DecodeError> {
    Ok(if decoder.bool()? {
        Some(T::decode(decoder)?)
    } else {
        None
    })
}

fn put_usize(out: &mut Vec<u8>, value: usize) {
    (value as u64).encode(out);
}

fn usize_of(decoder: &mut Decoder<'_>) -> Result<usize, DecodeError> {
    usize::try_from(decoder.u64()?).map_err(|_| DecodeError::Invalid {
        what: "count",
        why: "beyond usize",
    })
}

impl Encode for DepartureProof {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            DepartureProof::NodeSignature(signature) => {
                out.push(0);
                signature.encode(out);
            }
            DepartureProof::GroupCertificate {
                members,
                certificate,
            } => {
                out.push(1);
                put_list(out, members);
                certificate.encode(out);
            }
        }
    }
}

impl Decode for DepartureProof {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match decoder.u8()? {
            0 => Ok(DepartureProof::NodeSignature(Signature::decode(decoder)?)),
            1 => Ok(DepartureProof::GroupCertificate {
                members: decoder.list("members", MEMBERS_MAX)?,
                certificate: Certificate::decode(decoder)?,
            }),
            tag => Err(DecodeError::UnknownTag {
                what: "departure proof",
                tag,
            }),
        }
    }
}

// These bytes are also what the admin key signs (`AdminOp::signing_hash`) and what the
// `Registry` contract hashes: they change only together with the contract.
impl Encode for AdminOp {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            AdminOp::Whitelist {
                record,
                possession,
                stake,
            } => {
                out.push(0);
                record.encode(out);
                possession.encode(out);
                out.extend_from_slice(&stake.to_be_bytes());
            }
            AdminOp::Remove(id) => {
                out.push(1);
                id.encode(out);
            }
            AdminOp::SetStakeCap(cap) => {
                out.push(2);
                out.extend_from_slice(&cap.to_be_bytes());
            }
            AdminOp::Rotate { size } => {
                out.push(3);
                out.extend_from_slice(&size.to_be_bytes());
            }
            AdminOp::AdvanceEpoch => out.push(4),
        }
    }
}

impl Decode for AdminOp {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        match decoder.u8()? {
            0 => Ok(AdminOp::Whitelist {
                record: SequencerRecord::decode(decoder)?,
                possession: primitives::bls::BlsSignature::decode(decoder)?,
                stake: decoder.u128()?,
            }),
            1 => Ok(AdminOp::Remove(NodeId::decode(decoder)?)),
            2 => Ok(AdminOp::SetStakeCap(decoder.u128()?)),
            3 => Ok(AdminOp::Rotate {
                size: decoder.u32()?,
            }),
            4 => Ok(AdminOp::AdvanceEpoch),
            tag => Err(DecodeError::UnknownTag {
                what: "admin operation",
                tag,
            }),
        }
    }
}

impl Encode for RegistrySnapshot {
    fn encode(&self, out: &mut Vec<u8>) {
        self.epoch.encode(out);
        put_list(out, &self.nodes);
    }
}

impl Decode for RegistrySnapshot {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(RegistrySnapshot {
            epoch: decoder.u64()?,
            nodes: decoder.list::<NodeRecord>("nodes", LIST_MAX)?,
        })
    }
}

/// An offender and its evidence.
struct Offence(NodeId, EquivocationEvidence);

impl Encode for Offence {
    fn encode(&self, out: &mut Vec<u8>) {
        self.0.encode(out);
        self.1.encode(out);
    }
}

impl Decode for Offence {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Offence(
            NodeId::decode(decoder)?,
            EquivocationEvidence::decode(decoder)?,
        ))
    }
}

/// Writes why preconfirmation evidence was refused: a tag, then the variant's fields.
fn put_preconfirmation_error(out: &mut Vec<u8>, error: &PreconfirmationError) {
    use PreconfirmationError as E;
    match error {
        E::BadWindow { first, last } => {
            out.push(0);
            first.encode(out);
            last.encode(out);
        }
        E::BadProof => out.push(1),
        E::Signature(error) => {
            out.push(2);
            let (tag, recovery_id) = match error {
                SignatureError::InvalidRecoveryId(v) => (0, *v),
                SignatureError::Malformed => (1, 0),
                SignatureError::Unrecoverable => (2, 0),
                SignatureError::InvalidSecretKey => (3, 0),
            };
            out.extend_from_slice(&[tag, recovery_id]);
        }
        E::WrongSigner { sequencer, signer } => {
            out.push(3);
            sequencer.encode(out);
            signer.encode(out);
        }
        E::UnexpectedSequencer { expected, got } => {
            out.push(4);
            expected.encode(out);
            got.encode(out);
        }
        E::WrongMove { expected, got } => {
            out.push(5);
            expected.encode(out);
            got.encode(out);
        }
        E::UnverifiableMove => out.push(6),
        E::BatchNotCommitted { number } => {
            out.push(7);
            number.encode(out);
        }
        E::HeightNotFinalized { height } => {
            out.push(8);
            height.encode(out);
        }
        E::BodyCount { expected, got } => {
            out.push(9);
            expected.encode(out);
            got.encode(out);
        }
        E::BodyMismatch { height } => {
            out.push(10);
            height.encode(out);
        }
        E::Kept { height } => {
            out.push(11);
            height.encode(out);
        }
        E::Replaced { height } => {
            out.push(12);
            height.encode(out);
        }
    }
}

/// Reads what [`put_preconfirmation_error`] wrote.
fn preconfirmation_error(decoder: &mut Decoder<'_>) -> Result<PreconfirmationError, DecodeError> {
    use PreconfirmationError as E;
    Ok(match decoder.u8()? {
        0 => E::BadWindow {
            first: decoder.u64()?,
            last: decoder.u64()?,
        },
        1 => E::BadProof,
        2 => E::Signature(match (decoder.u8()?, decoder.u8()?) {
            (0, v) => SignatureError::InvalidRecoveryId(v),
            (1, _) => SignatureError::Malformed,
            (2, _) => SignatureError::Unrecoverable,
            (3, _) => SignatureError::InvalidSecretKey,
            (tag, _) => {
                return Err(DecodeError::UnknownTag {
                    what: "signature error",
                    tag,
                });
            }
        }),
        3 => E::WrongSigner {
            sequencer: NodeId::decode(decoder)?,
            signer: decoder.address()?,
        },
        4 => E::UnexpectedSequencer {
            expected: NodeId::decode(decoder)?,
            got: NodeId::decode(decoder)?,
        },
        5 => E::WrongMove {
            expected: decoder.b256()?,
            got: decoder.b256()?,
        },
        6 => E::UnverifiableMove,
        7 => E::BatchNotCommitted {
            number: decoder.u64()?,
        },
        8 => E::HeightNotFinalized {
            height: decoder.u64()?,
        },
        9 => E::BodyCount {
            expected: decoder.u64()?,
            got: decoder.u64()?,
        },
        10 => E::BodyMismatch {
            height: decoder.u64()?,
        },
        11 => E::Kept {
            height: decoder.u64()?,
        },
        12 => E::Replaced {
            height: decoder.u64()?,
        },
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "preconfirmation error",
                tag,
            });
        }
    })
}

/// The static names `BlsError::Malformed` carries; others arrive as "point".
fn malformed_what(what: &str) -> &'static str {
    match what {
        "key" => "key",
        "signature" => "signature",
        "secret" => "secret",
        _ => "point",
    }
}

impl Encode for ChainError {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            ChainError::BadSignature(error) => {
                out.push(0);
                out.push(match error {
                    SignatureError::InvalidRecoveryId(_) => 0,
                    SignatureError::Malformed => 1,
                    SignatureError::Unrecoverable => 2,
                    SignatureError::InvalidSecretKey => 3,
                });
                if let SignatureError::InvalidRecoveryId(v) = error {
                    out.push(*v);
                }
            }
            ChainError::AlreadyRegistered(id) => {
                out.push(1);
                id.encode(out);
            }
            ChainError::BlsKeyTaken => out.push(2),
            ChainError::BadPossession => out.push(3),
            ChainError::BadCertificate(error) => {
                out.push(4);
                match error {
                    BlsError::Malformed { what } => {
                        out.push(0);
                        put_string(out, what);
                    }
                    BlsError::BadSignature => out.push(1),
                    BlsError::TooFewSigners { signers, quorum } => {
                        out.push(2);
                        put_usize(out, *signers);
                        put_usize(out, *quorum);
                    }
                    BlsError::UnknownSigner { index, validators } => {
                        out.push(3);
                        put_usize(out, *index);
                        put_usize(out, *validators);
                    }
                    BlsError::Empty => out.push(4),
                }
            }
            ChainError::BatchOutOfOrder { expected, got } => {
                out.push(5);
                expected.encode(out);
                got.encode(out);
            }
            ChainError::UnknownMember(id) => {
                out.push(6);
                id.encode(out);
            }
            ChainError::DuplicateMember(id) => {
                out.push(7);
                id.encode(out);
            }
            ChainError::NotRegistered(id) => {
                out.push(8);
                id.encode(out);
            }
            ChainError::WrongSigner { node, signer } => {
                out.push(9);
                node.encode(out);
                signer.encode(out);
            }
            ChainError::NotAdmin(signer) => {
                out.push(10);
                signer.encode(out);
            }
            ChainError::StakeCapExceeded { stake, cap } => {
                out.push(11);
                out.extend_from_slice(&stake.to_be_bytes());
                out.extend_from_slice(&cap.to_be_bytes());
            }
            ChainError::UnknownSequencer(id) => {
                out.push(12);
                id.encode(out);
            }
            ChainError::AlreadyWhitelisted(id) => {
                out.push(13);
                id.encode(out);
            }
            ChainError::BadRotation { size, candidates } => {
                out.push(14);
                out.extend_from_slice(&size.to_be_bytes());
                out.extend_from_slice(&candidates.to_be_bytes());
            }
            ChainError::BadEpoch { got, current } => {
                out.push(15);
                got.encode(out);
                current.encode(out);
            }
            ChainError::Stale { recorded, got } => {
                out.push(16);
                recorded.encode(out);
                got.encode(out);
            }
            ChainError::AlreadyDeparted(id) => {
                out.push(17);
                id.encode(out);
            }
            ChainError::BadDepartureProof => out.push(18),
            ChainError::InvalidEvidence(error) => {
                out.push(19);
                out.push(match error {
                    EvidenceError::NotCanonical => 0,
                    EvidenceError::BadSignature => 1,
                });
            }
            ChainError::EquivocationRecorded(id) => {
                out.push(20);
                id.encode(out);
            }
            ChainError::Expelled(id) => {
                out.push(21);
                id.encode(out);
            }
            ChainError::Storage(text) => {
                out.push(22);
                put_string(out, text);
            }
            ChainError::Rpc(text) => {
                out.push(23);
                put_string(out, text);
            }
            ChainError::BadUrl(text) => {
                out.push(24);
                put_string(out, text);
            }
            ChainError::Unreachable { url, reason } => {
                out.push(25);
                put_string(out, url);
                put_string(out, reason);
            }
            ChainError::NoContract(address) => {
                out.push(26);
                address.encode(out);
            }
            ChainError::WrongChainId { expected, got } => {
                out.push(27);
                expected.encode(out);
                got.encode(out);
            }
            ChainError::Reverted(text) => {
                out.push(28);
                put_string(out, text);
            }
            ChainError::Malformed(text) => {
                out.push(29);
                put_string(out, text);
            }
            ChainError::Config(text) => {
                out.push(30);
                put_string(out, text);
            }
            ChainError::WalletNonce { expected, got } => {
                out.push(31);
                expected.encode(out);
                got.encode(out);
            }
            ChainError::BadCommitMessage => out.push(32),
            ChainError::UnknownSequencerEpoch(epoch) => {
                out.push(33);
                epoch.encode(out);
            }
            ChainError::NotSponsor { sponsor, signer } => {
                out.push(34);
                sponsor.encode(out);
                signer.encode(out);
            }
            ChainError::SponsorNonce { expected, got } => {
                out.push(35);
                expected.encode(out);
                got.encode(out);
            }
            ChainError::Unsupported(text) => {
                out.push(36);
                put_string(out, text);
            }
            ChainError::InvalidPreconfirmationEvidence(error) => {
                out.push(37);
                put_preconfirmation_error(out, error);
            }
            ChainError::AvailabilityConflict {
                kind,
                number,
                recorded,
            } => {
                out.push(38);
                kind.encode(out);
                number.encode(out);
                recorded.encode(out);
            }
        }
    }
}

impl Decode for ChainError {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        let node = |decoder: &mut Decoder<'_>| NodeId::decode(decoder);
        Ok(match decoder.u8()? {
            0 => ChainError::BadSignature(match decoder.u8()? {
                0 => SignatureError::InvalidRecoveryId(decoder.u8()?),
                1 => SignatureError::Malformed,
                2 => SignatureError::Unrecoverable,
                3 => SignatureError::InvalidSecretKey,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "signature error",
                        tag,
                    });
                }
            }),
            1 => ChainError::AlreadyRegistered(node(decoder)?),
            2 => ChainError::BlsKeyTaken,
            3 => ChainError::BadPossession,
            4 => ChainError::BadCertificate(match decoder.u8()? {
                0 => BlsError::Malformed {
                    what: malformed_what(&string(decoder, "malformed what")?),
                },
                1 => BlsError::BadSignature,
                2 => BlsError::TooFewSigners {
                    signers: usize_of(decoder)?,
                    quorum: usize_of(decoder)?,
                },
                3 => BlsError::UnknownSigner {
                    index: usize_of(decoder)?,
                    validators: usize_of(decoder)?,
                },
                4 => BlsError::Empty,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "BLS error",
                        tag,
                    });
                }
            }),
            5 => ChainError::BatchOutOfOrder {
                expected: decoder.u64()?,
                got: decoder.u64()?,
            },
            6 => ChainError::UnknownMember(node(decoder)?),
            7 => ChainError::DuplicateMember(node(decoder)?),
            8 => ChainError::NotRegistered(node(decoder)?),
            9 => ChainError::WrongSigner {
                node: node(decoder)?,
                signer: decoder.address()?,
            },
            10 => ChainError::NotAdmin(decoder.address()?),
            11 => ChainError::StakeCapExceeded {
                stake: decoder.u128()?,
                cap: decoder.u128()?,
            },
            12 => ChainError::UnknownSequencer(node(decoder)?),
            13 => ChainError::AlreadyWhitelisted(node(decoder)?),
            14 => ChainError::BadRotation {
                size: decoder.u32()?,
                candidates: decoder.u32()?,
            },
            15 => ChainError::BadEpoch {
                got: decoder.u64()?,
                current: decoder.u64()?,
            },
            16 => ChainError::Stale {
                recorded: decoder.u64()?,
                got: decoder.u64()?,
            },
            17 => ChainError::AlreadyDeparted(node(decoder)?),
            18 => ChainError::BadDepartureProof,
            19 => ChainError::InvalidEvidence(match decoder.u8()? {
                0 => EvidenceError::NotCanonical,
                1 => EvidenceError::BadSignature,
                tag => {
                    return Err(DecodeError::UnknownTag {
                        what: "evidence error",
                        tag,
                    });
                }
            }),
            20 => ChainError::EquivocationRecorded(node(decoder)?),
            21 => ChainError::Expelled(node(decoder)?),
            22 => ChainError::Storage(string(decoder, "storage error")?),
            23 => ChainError::Rpc(string(decoder, "rpc error")?),
            24 => ChainError::BadUrl(string(decoder, "url")?),
            25 => ChainError::Unreachable {
                url: string(decoder, "url")?,
                reason: string(decoder, "reason")?,
            },
            26 => ChainError::NoContract(decoder.address()?),
            27 => ChainError::WrongChainId {
                expected: decoder.u64()?,
                got: decoder.u64()?,
            },
            28 => ChainError::Reverted(string(decoder, "revert reason")?),
            29 => ChainError::Malformed(string(decoder, "malformed reason")?),
            30 => ChainError::Config(string(decoder, "config error")?),
            31 => ChainError::WalletNonce {
                expected: decoder.u64()?,
                got: decoder.u64()?,
            },
            32 => ChainError::BadCommitMessage,
            33 => ChainError::UnknownSequencerEpoch(decoder.u64()?),
            34 => ChainError::NotSponsor {
                sponsor: decoder.address()?,
                signer: decoder.address()?,
            },
            35 => ChainError::SponsorNonce {
                expected: decoder.u64()?,
                got: decoder.u64()?,
            },
            36 => ChainError::Unsupported(string(decoder, "unsupported call")?),
            37 => ChainError::InvalidPreconfirmationEvidence(preconfirmation_error(decoder)?),
            38 => ChainError::AvailabilityConflict {
                kind: AvailabilityKind::decode(decoder)?,
                number: decoder.u64()?,
                recorded: decoder.b256()?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "chain error",
                    tag,
                });
            }
        })
    }
}

impl Encode for Request {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(PROTOCOL_VERSION);
        match self {
            Request::Hello => out.push(0),
            Request::RegisterNode(registration, signature) => {
                out.push(1);
                registration.encode(out);
                signature.encode(out);
            }
            Request::RegistrySnapshot(epoch) => {
                out.push(2);
                epoch.encode(out);
            }
            Request::Epoch => out.push(3),
            Request::SequencerSet => out.push(4),
            Request::CommitBatch {
                number,
                batch_hash,
                commit_message,
                certificate,
            } => {
                out.push(5);
                number.encode(out);
                batch_hash.encode(out);
                put_bytes(out, commit_message);
                certificate.encode(out);
            }
            Request::CommitGroupRoot(commitment, members, certificate) => {
                out.push(6);
                commitment.encode(out);
                put_list(out, members);
                certificate.encode(out);
            }
            Request::CommitGroupRootDecided(commitment, decision, members, certificate) => {
                out.push(21);
                commitment.encode(out);
                decision.view.encode(out);
                decision.sequence.encode(out);
                put_list(out, members);
                certificate.encode(out);
            }
            Request::LastBatch => out.push(7),
            Request::GroupRoot(group) => {
                out.push(8);
                group.encode(out);
            }
            Request::BatchHash(number) => {
                out.push(9);
                number.encode(out);
            }
            Request::RecordSyncedRoot(synced, signature) => {
                out.push(10);
                synced.encode(out);
                signature.encode(out);
            }
            Request::SyncedRoot(node) => {
                out.push(11);
                node.encode(out);
            }
            Request::RecordDeparture(departure, proof) => {
                out.push(12);
                departure.encode(out);
                proof.encode(out);
            }
            Request::Departure(node) => {
                out.push(13);
                node.encode(out);
            }
            Request::Admin(op, signature) => {
                out.push(14);
                op.encode(out);
                signature.encode(out);
            }
            Request::AdminNonce => out.push(15),
            Request::SequencerCandidates => out.push(16),
            Request::StakeCap => out.push(17),
            Request::DepositsSince { from, limit } => {
                out.push(18);
                from.encode(out);
                out.extend_from_slice(&limit.to_be_bytes());
            }
            Request::ReportEquivocation(evidence, offender) => {
                out.push(19);
                evidence.encode(out);
                offender.encode(out);
            }
            Request::Equivocations => out.push(20),
            Request::ReportBrokenPreconfirmation(evidence) => {
                out.push(28);
                evidence.encode(out);
            }
            Request::BrokenPreconfirmations => out.push(29),
            Request::UpdateWallet(update, signature) => {
                out.push(22);
                update.encode(out);
                signature.encode(out);
            }
            Request::WalletNonce(node) => {
                out.push(23);
                node.encode(out);
            }
            Request::SequencerEpoch(epoch) => {
                out.push(24);
                epoch.encode(out);
            }
            Request::SetSponsorPolicy(update, signature) => {
                out.push(25);
                update.encode(out);
                signature.encode(out);
            }
            Request::SponsorNonce(sponsor) => {
                out.push(26);
                sponsor.encode(out);
            }
            Request::SponsorPolicies => out.push(27),
            Request::RecordAvailability(record) => {
                out.push(30);
                record.encode(out);
            }
            Request::Availability(kind, number) => {
                out.push(31);
                kind.encode(out);
                number.encode(out);
            }
            Request::DaCommittee => out.push(32),
        }
    }
}

impl Decode for Request {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("upper-chain request", &[PROTOCOL_VERSION])?;
        Ok(match decoder.u8()? {
            0 => Request::Hello,
            1 => Request::RegisterNode(Registration::decode(decoder)?, Signature::decode(decoder)?),
            2 => Request::RegistrySnapshot(decoder.u64()?),
            3 => Request::Epoch,
            4 => Request::SequencerSet,
            5 => Request::CommitBatch {
                number: decoder.u64()?,
                batch_hash: decoder.b256()?,
                commit_message: decoder.bytes("commit message", REQUEST_BYTES_MAX)?.to_vec(),
                certificate: Certificate::decode(decoder)?,
            },
            6 => Request::CommitGroupRoot(
                GroupRootCommitment::decode(decoder)?,
                decoder.list("members", MEMBERS_MAX)?,
                Certificate::decode(decoder)?,
            ),
            7 => Request::LastBatch,
            8 => Request::GroupRoot(decoder.b256()?),
            9 => Request::BatchHash(decoder.u64()?),
            10 => {
                Request::RecordSyncedRoot(SyncedRoot::decode(decoder)?, Signature::decode(decoder)?)
            }
            11 => Request::SyncedRoot(NodeId::decode(decoder)?),
            12 => Request::RecordDeparture(
                Departure::decode(decoder)?,
                DepartureProof::decode(decoder)?,
            ),
            13 => Request::Departure(NodeId::decode(decoder)?),
            14 => Request::Admin(AdminOp::decode(decoder)?, Signature::decode(decoder)?),
            15 => Request::AdminNonce,
            16 => Request::SequencerCandidates,
            17 => Request::StakeCap,
            18 => Request::DepositsSince {
                from: decoder.u64()?,
                limit: decoder.u32()?,
            },
            19 => Request::ReportEquivocation(
                EquivocationEvidence::decode(decoder)?,
                NodeId::decode(decoder)?,
            ),
            20 => Request::Equivocations,
            21 => Request::CommitGroupRootDecided(
                GroupRootCommitment::decode(decoder)?,
                GroupDecision {
                    view: decoder.u64()?,
                    sequence: decoder.u64()?,
                },
                decoder.list("members", MEMBERS_MAX)?,
                Certificate::decode(decoder)?,
            ),
            22 => {
                Request::UpdateWallet(WalletUpdate::decode(decoder)?, Signature::decode(decoder)?)
            }
            23 => Request::WalletNonce(NodeId::decode(decoder)?),
            24 => Request::SequencerEpoch(decoder.u64()?),
            25 => Request::SetSponsorPolicy(
                SponsorPolicyUpdate::decode(decoder)?,
                Signature::decode(decoder)?,
            ),
            26 => Request::SponsorNonce(decoder.address()?),
            27 => Request::SponsorPolicies,
            28 => Request::ReportBrokenPreconfirmation(Box::new(PreconfirmationEvidence::decode(
                decoder,
            )?)),
            29 => Request::BrokenPreconfirmations,
            30 => Request::RecordAvailability(AvailabilityRecord::decode(decoder)?),
            31 => Request::Availability(AvailabilityKind::decode(decoder)?, decoder.u64()?),
            32 => Request::DaCommittee,
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "upper-chain request",
                    tag,
                });
            }
        })
    }
}

impl Encode for Answer {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(PROTOCOL_VERSION);
        match self {
            Answer::Hello { chain_id } => {
                out.push(0);
                chain_id.encode(out);
            }
            Answer::Done => out.push(1),
            Answer::Node(id) => {
                out.push(2);
                id.encode(out);
            }
            Answer::Snapshot(snapshot) => {
                out.push(3);
                snapshot.encode(out);
            }
            Answer::Number(number) => {
                out.push(4);
                number.encode(out);
            }
            Answer::Sequencers(records) => {
                out.push(5);
                put_list(out, records);
            }
            Answer::GroupRoot(root) => {
                out.push(6);
                put_option(out, root);
            }
            Answer::BatchHash(hash) => {
                out.push(7);
                put_option(out, hash);
            }
            Answer::SyncedRoot(synced) => {
                out.push(8);
                put_option(out, synced);
            }
            Answer::Departure(departure) => {
                out.push(9);
                put_option(out, departure);
            }
            Answer::Candidates(candidates) => {
                out.push(10);
                put_list(out, candidates);
            }
            Answer::StakeCap(cap) => {
                out.push(11);
                out.extend_from_slice(&cap.to_be_bytes());
            }
            Answer::Deposits(deposits) => {
                out.push(12);
                put_list(out, deposits);
            }
            Answer::Equivocations(offences) => {
                out.push(13);
                let offences: Vec<Offence> = offences
                    .iter()
                    .map(|(id, evidence)| Offence(*id, evidence.clone()))
                    .collect();
                put_list(out, &offences);
            }
            Answer::Refused(error) => {
                out.push(14);
                error.encode(out);
            }
            Answer::SequencerEpoch(epoch) => {
                out.push(15);
                put_option(out, epoch);
            }
            Answer::SponsorPolicies(policies) => {
                out.push(16);
                put_list(out, policies);
            }
            Answer::BrokenPreconfirmations(promises) => {
                out.push(17);
                put_list(out, promises);
            }
            Answer::Availability(record) => {
                out.push(18);
                put_option(out, record);
            }
            Answer::DaCommittee(committee) => {
                out.push(19);
                put_option(out, committee);
            }
        }
    }
}

impl Decode for Answer {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("upper-chain answer", &[PROTOCOL_VERSION])?;
        Ok(match decoder.u8()? {
            0 => Answer::Hello {
                chain_id: decoder.u64()?,
            },
            1 => Answer::Done,
            2 => Answer::Node(NodeId::decode(decoder)?),
            3 => Answer::Snapshot(RegistrySnapshot::decode(decoder)?),
            4 => Answer::Number(decoder.u64()?),
            5 => Answer::Sequencers(decoder.list("sequencers", LIST_MAX)?),
            6 => Answer::GroupRoot(option(decoder)?),
            7 => Answer::BatchHash(option(decoder)?),
            8 => Answer::SyncedRoot(option(decoder)?),
            9 => Answer::Departure(option(decoder)?),
            10 => Answer::Candidates(decoder.list("candidates", LIST_MAX)?),
            11 => Answer::StakeCap(decoder.u128()?),
            12 => Answer::Deposits(decoder.list("deposits", LIST_MAX)?),
            13 => Answer::Equivocations(
                decoder
                    .list::<Offence>("equivocations", LIST_MAX)?
                    .into_iter()
                    .map(|Offence(id, evidence)| (id, evidence))
                    .collect(),
            ),
            14 => Answer::Refused(ChainError::decode(decoder)?),
            15 => Answer::SequencerEpoch(option(decoder)?),
            16 => Answer::SponsorPolicies(decoder.list("sponsor policies", LIST_MAX)?),
            17 => {
                Answer::BrokenPreconfirmations(decoder.list("broken preconfirmations", LIST_MAX)?)
            }
            18 => Answer::Availability(option(decoder)?),
            19 => Answer::DaCommittee(option(decoder)?),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "upper-chain answer",
                    tag,
                });
            }
        })
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn round_trip_error(error: ChainError) {
        let bytes = Answer::Refused(error.clone()).to_bytes();
        assert_eq!(Answer::from_bytes(&bytes), Ok(Answer::Refused(error)));
    }

    #[test]
    fn errors_cross_the_wire_unchanged() {
        let id = NodeId(Address::repeat_byte(3));
        for error in [
            ChainError::BadSignature(SignatureError::InvalidRecoveryId(9)),
            ChainError::BadSignature(SignatureError::Unrecoverable),
            ChainError::AlreadyRegistered(id),
            ChainError::BadCertificate(BlsError::Malformed { what: "signature" }),
            ChainError::BadCertificate(BlsError::TooFewSigners {
                signers: 5,
                quorum: 6,
            }),
            ChainError::BadCertificate(BlsError::UnknownSigner {
                index: 8,
                validators: 8,
            }),
            ChainError::WrongSigner {
                node: id,
                signer: Address::repeat_byte(4),
            },
            ChainError::StakeCapExceeded {
                stake: u128::MAX,
                cap: 1,
            },
            ChainError::BadRotation {
                size: 4,
                candidates: 3,
            },
            ChainError::InvalidEvidence(EvidenceError::NotCanonical),
            ChainError::Unreachable {
                url: "tickrate://x:1".into(),
                reason: "refused".into(),
            },
            ChainError::Malformed("tag 99".into()),
            ChainError::WalletNonce {
                expected: 2,
                got: 1,
            },
            ChainError::BadCommitMessage,
            ChainError::UnknownSequencerEpoch(3),
            ChainError::NotSponsor {
                sponsor: Address::repeat_byte(5),
                signer: Address::repeat_byte(6),
            },
            ChainError::SponsorNonce {
                expected: 1,
                got: 0,
            },
            ChainError::Unsupported("sponsor policies".into()),
            ChainError::AvailabilityConflict {
                kind: AvailabilityKind::ExecutionRecord,
                number: 7,
                recorded: B256::repeat_byte(9),
            },
            ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::Kept { height: 4 }),
            ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::Signature(
                SignatureError::InvalidRecoveryId(7),
            )),
            ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::WrongSigner {
                sequencer: id,
                signer: Address::repeat_byte(8),
            }),
            ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::BodyCount {
                expected: 2,
                got: 1,
            }),
        ] {
            round_trip_error(error);
        }
    }

    #[test]
    fn hostile_frames_are_refused_not_trusted() {
        assert!(matches!(
            frame_length(u32::MAX.to_be_bytes(), REQUEST_BYTES_MAX),
            Err(DecodeError::Oversized { .. })
        ));
        // A list that claims more items than bytes follow.
        let mut bytes = vec![PROTOCOL_VERSION, 6];
        GroupRootCommitment {
            epoch: 1,
            group: B256::ZERO,
            batch: 1,
            root: B256::ZERO,
        }
        .encode(&mut bytes);
        bytes.extend_from_slice(&200u32.to_be_bytes());
        assert!(Request::from_bytes(&bytes).is_err());
        assert!(matches!(
            Request::from_bytes(&[PROTOCOL_VERSION, 200]),
            Err(DecodeError::UnknownTag { tag: 200, .. })
        ));
        assert!(matches!(
            Request::from_bytes(&[9, 0]),
            Err(DecodeError::UnknownVersion { version: 9, .. })
        ));
        assert!(Request::from_bytes(&[]).is_err());
    }
}
