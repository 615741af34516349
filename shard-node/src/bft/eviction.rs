//! Eviction of a member its group no longer hears from.
//!
//! Every member counts, per other member, the rounds it has started (own roots taken) since a
//! message from that member last arrived: any group message that comes from it over the
//! transport (which proves the sender) and names this epoch and group. A member that answers
//! nothing for [`EVICTION_SILENT_ROUNDS`] rounds in a row is voted out: the member signs, with
//! its BLS key, the [`Departure`] that evicts it from the next registry epoch, and sends the
//! vote to the group, again every round until it holds a quorum of votes itself (a vote lost on
//! the way is sent again; a vote it already checked is not checked twice). The evidence in that departure is the same bytes for every voter
//! ([`EvictionEvidence`]: the group, its epoch and the rule), so the votes aggregate; a quorum
//! of them (6 of 8) is a [`Certificate`] the upper chain checks against the group's keys
//! ([`upper_chain::DepartureProof::GroupCertificate`]).
//!
//! Why a quorum cannot evict a live member: it takes 6 signers, so at least 4 correct members
//! must each have heard nothing from it for the whole count, which a member that sends its
//! prepares and commits every round never allows. Stopping 2 members of a group gets them
//! evicted; with 3 stopped only 5 members remain to vote, so nobody is (the group is stalled
//! anyway, which is for the operators to see). A member that hears from a member again drops
//! the votes it held against it.

use std::collections::BTreeMap;

use primitives::{
    B256, Decode, DecodeError, Decoder, Encode, NodeId,
    bls::{BlsPublicKey, BlsSecretKey, BlsSignature, Certificate},
};
use upper_chain::{Departure, DepartureKind};

/// Rounds in a row a member may stay silent before the others vote it out.
pub const EVICTION_SILENT_ROUNDS: u32 = 6;

const EVIDENCE_VERSION: u8 = 1;
const VOTE_VERSION: u8 = 1;
/// The rule of [`EvictionEvidence::rule`]: silent for a number of rounds.
const RULE_SILENT_ROUNDS: u8 = 1;

/// Why a group evicted a member: the bytes every voter puts in the [`Departure`] it signs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvictionEvidence {
    /// The group that evicts.
    pub group: B256,
    /// The registry epoch the group was formed in.
    pub epoch: u64,
    /// Rounds in a row each voter heard nothing from the member.
    pub silent_rounds: u32,
}

impl EvictionEvidence {
    /// The departure this evidence supports: `node` leaves from the epoch after the group's.
    pub fn departure(&self, node: NodeId) -> Departure {
        Departure {
            node,
            kind: DepartureKind::Eviction,
            epoch: self.epoch + 1,
            evidence: self.to_bytes(),
        }
    }

    /// What an operator reads in `status` and the logs.
    pub fn describe(&self) -> String {
        format!(
            "its group {} of epoch {} heard nothing from it in {} rounds in a row",
            self.group, self.epoch, self.silent_rounds
        )
    }
}

impl Encode for EvictionEvidence {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(EVIDENCE_VERSION);
        out.push(RULE_SILENT_ROUNDS);
        self.group.encode(out);
        self.epoch.encode(out);
        out.extend_from_slice(&self.silent_rounds.to_be_bytes());
    }
}

impl Decode for EvictionEvidence {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("eviction evidence", &[EVIDENCE_VERSION])?;
        let rule = decoder.u8()?;
        if rule != RULE_SILENT_ROUNDS {
            return Err(DecodeError::UnknownTag {
                what: "eviction rule",
                tag: rule,
            });
        }
        Ok(EvictionEvidence {
            group: decoder.b256()?,
            epoch: decoder.u64()?,
            silent_rounds: decoder.u32()?,
        })
    }
}

/// Why a node left the registry, in words for its operator: its own exit, or what the group
/// that evicted it saw.
pub fn describe_departure(departure: &Departure) -> String {
    match departure.kind {
        DepartureKind::Exit => "the operator's exit".to_owned(),
        DepartureKind::Eviction => match EvictionEvidence::from_bytes(&departure.evidence) {
            Ok(evidence) => format!("evicted: {}", evidence.describe()),
            Err(error) => format!("evicted, with evidence this build cannot read ({error})"),
        },
    }
}

/// One member's vote to evict another: its BLS signature over the departure's signing bytes.
/// The voter is the sender the transport proved; the rest is rebuilt by the receiver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvictionVote {
    /// The member voted out, by its index in the group (ID order).
    pub offender: u16,
    /// The voter's signature over [`Departure::signing_bytes`].
    pub signature: BlsSignature,
}

impl Encode for EvictionVote {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(VOTE_VERSION);
        out.extend_from_slice(&self.offender.to_be_bytes());
        self.signature.encode(out);
    }
}

impl Decode for EvictionVote {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("eviction vote", &[VOTE_VERSION])?;
        Ok(EvictionVote {
            offender: decoder.u16()?,
            signature: BlsSignature::decode(decoder)?,
        })
    }
}

/// Why an eviction vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VoteError {
    /// The offender index names no member.
    #[error("eviction vote for member {index} of a group of {members}")]
    NoSuchMember {
        /// The index.
        index: u16,
        /// Members in the group.
        members: usize,
    },
    /// A member voting itself out.
    #[error("a member voted to evict itself")]
    SelfEviction,
    /// The signature is not the voter's over the departure.
    #[error("eviction vote not signed by its voter")]
    BadSignature,
}

/// A quorum's eviction, ready for the upper chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eviction {
    /// The departure the quorum signed.
    pub departure: Departure,
    /// The quorum's aggregate, indexed by the group's members in ID order.
    pub certificate: Certificate,
}

/// One member's view of who in its group is silent, and the votes it holds.
#[derive(Debug)]
pub(crate) struct Liveness {
    own: usize,
    /// The group's members in ID order.
    members: Vec<NodeId>,
    evidence: EvictionEvidence,
    quorum: usize,
    /// Rounds started since each member was last heard from.
    silent: Vec<u32>,
    /// Votes held against each member, by voter.
    votes: Vec<BTreeMap<usize, BlsSignature>>,
    /// Members this member has voted against (until it hears from them again).
    voted: Vec<bool>,
    /// Members whose eviction reached a quorum here (reported once).
    evicted: Vec<bool>,
}

impl Liveness {
    /// Member `own` of a group of `members` (in ID order) with the given quorum.
    pub(crate) fn new(
        own: usize,
        members: Vec<NodeId>,
        quorum: usize,
        group: B256,
        epoch: u64,
    ) -> Liveness {
        let count = members.len();
        Liveness {
            own,
            members,
            evidence: EvictionEvidence {
                group,
                epoch,
                silent_rounds: EVICTION_SILENT_ROUNDS,
            },
            quorum,
            silent: vec![0; count],
            votes: vec![BTreeMap::new(); count],
            voted: vec![false; count],
            evicted: vec![false; count],
        }
    }

    /// Rounds since `member` was last heard from.
    pub(crate) fn silent_rounds(&self, member: usize) -> u32 {
        self.silent.get(member).copied().unwrap_or(0)
    }

    /// A message from `member` arrived: it is alive, and the votes held against it go.
    pub(crate) fn heard(&mut self, member: usize) {
        if let Some(silent) = self.silent.get_mut(member) {
            *silent = 0;
            self.votes[member].clear();
            self.voted[member] = false;
        }
    }

    /// This member started a round. Returns its votes to send to the group: against each member
    /// silent for long enough whose eviction it has not seen through (signed with `bls` once).
    pub(crate) fn round(&mut self, bls: &BlsSecretKey) -> Vec<EvictionVote> {
        let mut cast = Vec::new();
        for member in 0..self.silent.len() {
            if member == self.own {
                continue;
            }
            self.silent[member] = self.silent[member].saturating_add(1);
            if self.silent[member] < EVICTION_SILENT_ROUNDS || self.evicted[member] {
                continue;
            }
            // Sent again every round until the eviction is through here: a vote lost on the way
            // is not lost for good.
            let signature = match self.votes[member].get(&self.own) {
                Some(signature) if self.voted[member] => *signature,
                _ => {
                    self.voted[member] = true;
                    let signature = bls.sign(&self.signing_bytes_against(member));
                    self.votes[member].insert(self.own, signature);
                    signature
                }
            };
            cast.push(EvictionVote {
                offender: u16::try_from(member).expect("groups are small"),
                signature,
            });
        }
        cast
    }

    /// A vote from member `voter`, checked against `keys` (the group's, in member order).
    pub(crate) fn vote(
        &mut self,
        voter: usize,
        vote: &EvictionVote,
        keys: &[BlsPublicKey],
    ) -> Result<(), VoteError> {
        let offender = usize::from(vote.offender);
        if offender >= self.silent.len() {
            return Err(VoteError::NoSuchMember {
                index: vote.offender,
                members: self.silent.len(),
            });
        }
        if offender == voter {
            return Err(VoteError::SelfEviction);
        }
        // A vote sent again is the one already checked.
        if self.votes[offender].get(&voter) == Some(&vote.signature) {
            return Ok(());
        }
        let key = keys.get(voter).ok_or(VoteError::BadSignature)?;
        key.verify(&self.signing_bytes_against(offender), &vote.signature)
            .map_err(|_| VoteError::BadSignature)?;
        // Votes against this member are not its business to aggregate.
        if offender != self.own {
            self.votes[offender].insert(voter, vote.signature);
        }
        Ok(())
    }

    /// The evictions whose votes reached a quorum since the last call, each once.
    pub(crate) fn take_evictions(&mut self) -> Vec<Eviction> {
        let mut done = Vec::new();
        for (offender, votes) in self.votes.iter().enumerate() {
            if self.evicted[offender] || votes.len() < self.quorum {
                continue;
            }
            let signed: Vec<(usize, BlsSignature)> = votes
                .iter()
                .map(|(voter, signature)| (*voter, *signature))
                .collect();
            let Ok(certificate) = Certificate::aggregate(&signed) else {
                continue;
            };
            self.evicted[offender] = true;
            done.push(Eviction {
                departure: self.evidence.departure(self.members[offender]),
                certificate,
            });
        }
        done
    }

    fn signing_bytes_against(&self, member: usize) -> Vec<u8> {
        self.evidence
            .departure(self.members[member])
            .signing_bytes()
    }
}

#[cfg(test)]
mod tests {
    use primitives::Address;

    use super::*;

    #[test]
    fn a_departure_says_why_in_words_and_evidence_has_one_encoding() {
        let node = NodeId(Address::repeat_byte(7));
        let evidence = EvictionEvidence {
            group: B256::repeat_byte(1),
            epoch: 4,
            silent_rounds: EVICTION_SILENT_ROUNDS,
        };
        let eviction = evidence.departure(node);
        assert_eq!(eviction.epoch, 5);
        assert_eq!(
            EvictionEvidence::from_bytes(&eviction.evidence),
            Ok(evidence)
        );
        assert_eq!(
            describe_departure(&eviction),
            format!(
                "evicted: its group {} of epoch 4 heard nothing from it in 6 rounds in a row",
                B256::repeat_byte(1)
            )
        );
        let unreadable = Departure {
            evidence: vec![EVIDENCE_VERSION, 9],
            ..eviction.clone()
        };
        assert_eq!(
            describe_departure(&unreadable),
            "evicted, with evidence this build cannot read (unknown eviction rule tag 9)"
        );
        let exit = Departure {
            kind: DepartureKind::Exit,
            evidence: Vec::new(),
            ..eviction
        };
        assert_eq!(describe_departure(&exit), "the operator's exit");
        // Truncated evidence and votes are typed errors.
        let bytes = evidence.to_bytes();
        assert!(EvictionEvidence::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let vote = EvictionVote {
            offender: 3,
            signature: primitives::bls::BlsSecretKey::from_seed(&[2; 32]).sign(b"x"),
        };
        let bytes = vote.to_bytes();
        assert_eq!(EvictionVote::from_bytes(&bytes), Ok(vote));
        assert!(EvictionVote::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        let mut unknown = bytes.clone();
        unknown[0] = 2;
        assert!(matches!(
            EvictionVote::from_bytes(&unknown),
            Err(DecodeError::UnknownVersion { .. })
        ));
    }
}
