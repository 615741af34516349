//! Signed preconfirmations: a sequencer's promise, carried by every pending ack, that an acked
//! move will be in one of its blocks, and the evidence that it broke one.
//!
//! **What is promised.** A [`Preconfirmation`] names the move's hash, the sequencer, the move's
//! local ack sequence number (`seq`), the tick by which it will be packed, and the window of
//! the sequencer's own block heights `height_first ..= height_last` the move will be in. The
//! tick is the sequencer's clock, what a game keys its acks by; the heights are what the upper
//! chain can check, because finalized batches name block headers by sequencer and height and
//! never by tick. An honest sequencer packs one block per tick while its mempool holds moves, in
//! ack order, so the block at `height_last` is packed by `tick` and the two say the same thing.
//!
//! **Position.** A promise is kept when the move, or a move of the same sender and nonce that
//! replaced it at the sender's request, is in a finalized block of that sequencer whose height
//! lies in the window. It is broken when every height of the window is finalized (each header in
//! a batch the upper chain has committed) and none of those blocks holds either: the move was
//! dropped, or packed later than promised. A window not yet finalized proves nothing.
//!
//! **Signing.** A sequencer acks moves in groups (the moves of one client burst) and signs a
//! group with one secp256k1 signature of its operator key over the blake3 Merkle root of the
//! group's preconfirmations ([`group_signing_hash`]); each ack carries its preconfirmation, the
//! Merkle proof of it and that signature, so every move stays individually provable while the
//! sequencer signs once per burst rather than once per move. The signer recovered from a
//! [`SignedPreconfirmation`] must be the sequencer it names, so the upper chain checks it against
//! the ID it registered, and a client against the sequencer it connected to.
//!
//! **Evidence.** [`PreconfirmationEvidence`] is the signed preconfirmation, the move itself,
//! the finalized batches holding the sequencer's headers at every height of the window, and
//! those blocks' bodies. [`PreconfirmationEvidence::verify`] checks it against nothing but the
//! batch hashes the upper chain committed (each checked against the sequencer set's commit
//! certificate when it was committed).

use alloy_primitives::{Address, B256, keccak256};

use crate::{
    batch::Batch,
    block::{BlockBody, BlockHeader},
    codec::{Decode, DecodeError, Decoder, Encode, put_list},
    id::NodeId,
    keys::{AccountKey, Signature, SignatureError},
    merkle::{MerkleProof, MerkleTree, leaf_hash},
    tx::{SignedTransaction, TxHash},
};

/// Domain of a preconfirmation's Merkle leaf.
pub const PRECONFIRMATION_DOMAIN: &[u8] = b"tickrate:preconfirmation";
/// Domain of the hash a sequencer signs over a group of preconfirmations.
pub const PRECONFIRMATION_GROUP_DOMAIN: &[u8] = b"tickrate:preconfirmation-group";
/// Most block heights one promise may span: bounds the evidence (one body a height). A
/// sequencer's mempool holds at most this many blocks' worth of moves.
pub const PRECONFIRMATION_HEIGHTS_MAX: u64 = 32;
/// Most preconfirmations one signature covers (the depth of the group's Merkle proofs).
pub const PRECONFIRMATION_GROUP_MAX: usize = 1 << 16;

const PRECONFIRMATION_VERSION: u8 = 1;
const EVIDENCE_VERSION: u8 = 1;

/// A sequencer's promise about one acked move (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Preconfirmation {
    /// The move.
    pub hash: TxHash,
    /// The sequencer that acked it.
    pub sequencer: NodeId,
    /// The move's place in that sequencer's ack order.
    pub seq: u64,
    /// The sequencer's tick by which the move will be in a block.
    pub tick: u64,
    /// The lowest of the sequencer's block heights the move may be in (its next height at ack).
    pub height_first: u64,
    /// The highest of the sequencer's block heights the move may be in.
    pub height_last: u64,
}

impl Preconfirmation {
    /// The hash of this preconfirmation as a leaf of its group's Merkle tree.
    pub fn leaf_hash(&self) -> B256 {
        let mut out = Vec::with_capacity(PRECONFIRMATION_DOMAIN.len() + 101);
        out.extend_from_slice(PRECONFIRMATION_DOMAIN);
        self.encode(&mut out);
        leaf_hash(&out)
    }

    /// The heights the promise spans, checked: a window of at least one and at most
    /// [`PRECONFIRMATION_HEIGHTS_MAX`] heights.
    pub fn window(&self) -> Result<std::ops::RangeInclusive<u64>, PreconfirmationError> {
        let span = self
            .height_last
            .checked_sub(self.height_first)
            .filter(|span| *span < PRECONFIRMATION_HEIGHTS_MAX);
        match span {
            Some(_) => Ok(self.height_first..=self.height_last),
            None => Err(PreconfirmationError::BadWindow {
                first: self.height_first,
                last: self.height_last,
            }),
        }
    }
}

impl Encode for Preconfirmation {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(PRECONFIRMATION_VERSION);
        self.hash.encode(out);
        self.sequencer.encode(out);
        self.seq.encode(out);
        self.tick.encode(out);
        self.height_first.encode(out);
        self.height_last.encode(out);
    }
}

impl Decode for Preconfirmation {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("preconfirmation", &[PRECONFIRMATION_VERSION])?;
        Ok(Preconfirmation {
            hash: decoder.b256()?,
            sequencer: NodeId::decode(decoder)?,
            seq: decoder.u64()?,
            tick: decoder.u64()?,
            height_first: decoder.u64()?,
            height_last: decoder.u64()?,
        })
    }
}

/// The hash a sequencer's operator key signs for a group of preconfirmations whose Merkle root
/// is `root`: keccak-256 of [`PRECONFIRMATION_GROUP_DOMAIN`] `|| root`, so a contract checks it
/// with `ecrecover`.
pub fn group_signing_hash(root: &B256) -> B256 {
    let mut out = Vec::with_capacity(PRECONFIRMATION_GROUP_DOMAIN.len() + 32);
    out.extend_from_slice(PRECONFIRMATION_GROUP_DOMAIN);
    out.extend_from_slice(root.as_slice());
    keccak256(&out)
}

/// Why a preconfirmation, or evidence of a broken one, is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PreconfirmationError {
    /// The window is empty, reversed or longer than [`PRECONFIRMATION_HEIGHTS_MAX`].
    #[error("bad height window {first}..={last}")]
    BadWindow {
        /// The first height.
        first: u64,
        /// The last height.
        last: u64,
    },
    /// The Merkle proof does not fit its group (index out of range, wrong sibling count).
    #[error("malformed group proof")]
    BadProof,
    /// The signature does not recover.
    #[error("signature: {0}")]
    Signature(#[from] SignatureError),
    /// The signature recovers to someone other than the sequencer the preconfirmation names.
    #[error("signed by {signer}, not by sequencer {sequencer}")]
    WrongSigner {
        /// The sequencer named.
        sequencer: NodeId,
        /// Who signed.
        signer: Address,
    },
    /// The preconfirmation names another sequencer than the one expected (the one the client
    /// connected to, the one the evidence accuses).
    #[error("preconfirmation of {got}, expected {expected}")]
    UnexpectedSequencer {
        /// The sequencer expected.
        expected: NodeId,
        /// The one named.
        got: NodeId,
    },
    /// The preconfirmation is for another move than the one it came with.
    #[error("preconfirmation for {got}, not for move {expected}")]
    WrongMove {
        /// The move's hash.
        expected: TxHash,
        /// The hash the preconfirmation names.
        got: TxHash,
    },
    /// The move's own signature does not verify, so no sender can be named for it.
    #[error("the move's signature does not verify")]
    UnverifiableMove,
    /// A batch of the evidence is not one the upper chain committed.
    #[error("batch {number} is not committed with this hash")]
    BatchNotCommitted {
        /// The batch number.
        number: u64,
    },
    /// No batch of the evidence holds the sequencer's header at this height: the window is not
    /// (shown to be) finalized, so nothing is broken yet.
    #[error("height {height} of the window is not in a committed batch of the evidence")]
    HeightNotFinalized {
        /// The height.
        height: u64,
    },
    /// The evidence does not carry exactly one body per height of the window.
    #[error("{got} bodies for a window of {expected} heights")]
    BodyCount {
        /// Heights in the window.
        expected: u64,
        /// Bodies carried.
        got: u64,
    },
    /// A body does not match its finalized header.
    #[error("the body at height {height} does not match its header")]
    BodyMismatch {
        /// The height.
        height: u64,
    },
    /// The promise was kept: the move is in the block at this height.
    #[error("the move is in the block at height {height}: the promise was kept")]
    Kept {
        /// The height.
        height: u64,
    },
    /// The promise was kept: a move of the same sender and nonce, which replaced the promised
    /// one at the sender's request, is in the block at this height.
    #[error("a replacement of the move is in the block at height {height}: the promise was kept")]
    Replaced {
        /// The height.
        height: u64,
    },
}

/// A preconfirmation with the sequencer's signature over its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedPreconfirmation {
    /// The promise.
    pub preconfirmation: Preconfirmation,
    /// Where its leaf sits in the group the sequencer signed.
    pub proof: MerkleProof,
    /// The sequencer's operator-key signature over [`group_signing_hash`] of the group's root.
    pub signature: Signature,
}

impl SignedPreconfirmation {
    /// Signs `group` with one signature: one signed preconfirmation per member, in order.
    ///
    /// # Panics
    /// If the group is empty or larger than [`PRECONFIRMATION_GROUP_MAX`] (a caller's bug).
    pub fn sign_group(key: &AccountKey, group: &[Preconfirmation]) -> Vec<SignedPreconfirmation> {
        assert!(
            !group.is_empty() && group.len() <= PRECONFIRMATION_GROUP_MAX,
            "a signed group holds 1..={PRECONFIRMATION_GROUP_MAX} preconfirmations"
        );
        let tree =
            MerkleTree::from_leaf_hashes(group.iter().map(Preconfirmation::leaf_hash).collect());
        let signature = key.sign_prehash(&group_signing_hash(&tree.root()));
        group
            .iter()
            .enumerate()
            .map(|(index, preconfirmation)| SignedPreconfirmation {
                preconfirmation: *preconfirmation,
                proof: tree.proof(index).expect("index within the group"),
                signature,
            })
            .collect()
    }

    /// The root of the group this preconfirmation's proof leads to.
    fn group_root(&self) -> Result<B256, PreconfirmationError> {
        self.proof
            .root_of_hash(self.preconfirmation.leaf_hash())
            .ok_or(PreconfirmationError::BadProof)
    }

    /// Checks that the sequencer the preconfirmation names signed it, and, if `expected` is
    /// given, that this is that sequencer. One recovery; no state.
    pub fn verify(&self, expected: Option<&NodeId>) -> Result<(), PreconfirmationError> {
        let sequencer = self.preconfirmation.sequencer;
        if let Some(expected) = expected
            && *expected != sequencer
        {
            return Err(PreconfirmationError::UnexpectedSequencer {
                expected: *expected,
                got: sequencer,
            });
        }
        self.preconfirmation.window()?;
        let root = self.group_root()?;
        let signer = self.signature.recover_address(&group_signing_hash(&root))?;
        if signer != sequencer.0 {
            return Err(PreconfirmationError::WrongSigner { sequencer, signer });
        }
        Ok(())
    }
}

impl Encode for SignedPreconfirmation {
    fn encode(&self, out: &mut Vec<u8>) {
        self.preconfirmation.encode(out);
        self.proof.encode(out);
        self.signature.encode(out);
    }
}

impl Decode for SignedPreconfirmation {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SignedPreconfirmation {
            preconfirmation: Preconfirmation::decode(decoder)?,
            proof: MerkleProof::decode(decoder)?,
            signature: Signature::decode(decoder)?,
        })
    }
}

/// Proof that a sequencer broke a preconfirmation (see the module doc): what anyone submits to
/// the upper chain to expel it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreconfirmationEvidence {
    /// The broken promise, signed.
    pub preconfirmation: SignedPreconfirmation,
    /// The move it names (for its sender and nonce: a replacement the sender asked for keeps
    /// the promise).
    pub signed_move: SignedTransaction,
    /// Committed batches that hold the sequencer's header at every height of the window.
    pub batches: Vec<Batch>,
    /// The bodies of the sequencer's blocks at the window's heights, in height order.
    pub bodies: Vec<BlockBody>,
}

impl PreconfirmationEvidence {
    /// The sequencer accused.
    pub fn offender(&self) -> NodeId {
        self.preconfirmation.preconfirmation.sequencer
    }

    /// Checks that the evidence proves the promise broken. `committed(number)` is the hash of
    /// committed batch `number` as the upper chain holds it (`None` if it holds none): the
    /// only state the check reads.
    pub fn verify(
        &self,
        committed: impl Fn(u64) -> Option<B256>,
    ) -> Result<(), PreconfirmationError> {
        let promise = &self.preconfirmation.preconfirmation;
        self.preconfirmation.verify(None)?;
        let window = promise.window()?;
        let move_hash = self.signed_move.hash();
        if move_hash != promise.hash {
            return Err(PreconfirmationError::WrongMove {
                expected: move_hash,
                got: promise.hash,
            });
        }
        let sender = self
            .signed_move
            .clone()
            .verify(self.signed_move.tx.chain_id)
            .map_err(|_| PreconfirmationError::UnverifiableMove)?
            .sender;
        for batch in &self.batches {
            if committed(batch.number) != Some(batch.hash()) {
                return Err(PreconfirmationError::BatchNotCommitted {
                    number: batch.number,
                });
            }
        }
        let heights = window.end() - window.start() + 1;
        if self.bodies.len() as u64 != heights {
            return Err(PreconfirmationError::BodyCount {
                expected: heights,
                got: self.bodies.len() as u64,
            });
        }
        for (height, body) in window.zip(&self.bodies) {
            let header = self
                .finalized_header(height)
                .ok_or(PreconfirmationError::HeightNotFinalized { height })?;
            if body.moves.len() != header.move_count as usize || body.root() != header.root {
                return Err(PreconfirmationError::BodyMismatch { height });
            }
            self.check_absent(body, height, &sender)?;
        }
        Ok(())
    }

    /// The sequencer's header at `height` in the evidence's batches. Committed batches name
    /// each height of a sequencer at most once (replicas refuse a repeat), so the first found
    /// is the only one.
    fn finalized_header(&self, height: u64) -> Option<&BlockHeader> {
        let sequencer = self.offender();
        self.batches
            .iter()
            .flat_map(|batch| &batch.headers)
            .find(|header| header.sequencer == sequencer && header.height == height)
    }

    /// Refuses the evidence if `body` holds the promised move or a replacement of it.
    fn check_absent(
        &self,
        body: &BlockBody,
        height: u64,
        sender: &Address,
    ) -> Result<(), PreconfirmationError> {
        let promised = &self.signed_move;
        for packed in &body.moves {
            if packed.hash() == self.preconfirmation.preconfirmation.hash {
                return Err(PreconfirmationError::Kept { height });
            }
            // Only a move of the same nonce can be a replacement: its sender is recovered then,
            // and only then.
            if packed.tx.nonce == promised.tx.nonce
                && packed.tx.chain_id == promised.tx.chain_id
                && packed
                    .clone()
                    .verify(packed.tx.chain_id)
                    .is_ok_and(|verified| verified.sender == *sender)
            {
                return Err(PreconfirmationError::Replaced { height });
            }
        }
        Ok(())
    }
}

impl Encode for PreconfirmationEvidence {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(EVIDENCE_VERSION);
        self.preconfirmation.encode(out);
        self.signed_move.encode(out);
        put_list(out, &self.batches);
        put_list(out, &self.bodies);
    }
}

impl Decode for PreconfirmationEvidence {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("preconfirmation evidence", &[EVIDENCE_VERSION])?;
        Ok(PreconfirmationEvidence {
            preconfirmation: SignedPreconfirmation::decode(decoder)?,
            signed_move: SignedTransaction::decode(decoder)?,
            batches: decoder.list("evidence batches", PRECONFIRMATION_HEIGHTS_MAX as usize)?,
            bodies: decoder.list("evidence bodies", PRECONFIRMATION_HEIGHTS_MAX as usize)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{Bytes, U256};

    use super::*;
    use crate::tx::{AccountAccess, SpaceAccessList, Transaction};

    const CHAIN: u64 = 7;

    fn a_move(player: &AccountKey, nonce: u64, gas_price: u128) -> SignedTransaction {
        Transaction {
            chain_id: CHAIN,
            nonce,
            to: Address::repeat_byte(9),
            value: U256::ZERO,
            data: Bytes::new(),
            gas_limit: 50_000,
            gas_price,
            sponsor: None,
            // Verifying a move needs its list to name the sender and the called account.
            access_list: SpaceAccessList::new([player.address(), Address::repeat_byte(9)].map(
                |address| AccountAccess {
                    address,
                    balance: None,
                    nonce: None,
                    storage: Vec::new(),
                },
            )),
        }
        .sign(player)
    }

    fn promise(key: &AccountKey, hash: TxHash, first: u64, last: u64) -> Preconfirmation {
        Preconfirmation {
            hash,
            sequencer: NodeId(key.address()),
            seq: 3,
            tick: 10 + last,
            height_first: first,
            height_last: last,
        }
    }

    /// A sequencer's chain of blocks at heights `0..bodies.len()`, batched one block a batch:
    /// the batches and the map of committed hashes the chain would hold.
    fn finalized(
        key: &AccountKey,
        bodies: &[BlockBody],
    ) -> (Vec<Batch>, std::collections::HashMap<u64, B256>) {
        let mut parent = B256::ZERO;
        let mut batch_parent = B256::ZERO;
        let mut batches = Vec::new();
        let mut committed = std::collections::HashMap::new();
        for (height, body) in bodies.iter().enumerate() {
            let bytes = body.to_bytes().len() as u32;
            let header = BlockHeader::seal(key, height as u64, parent, 0, body, bytes);
            parent = header.hash();
            let batch = Batch {
                number: height as u64 + 1,
                parent: batch_parent,
                headers: vec![header],
            };
            batch_parent = batch.hash();
            committed.insert(batch.number, batch.hash());
            batches.push(batch);
        }
        (batches, committed)
    }

    #[test]
    fn every_member_of_a_signed_group_verifies_alone() {
        let key = AccountKey::from_seed(1);
        let group: Vec<Preconfirmation> = (0..5u8)
            .map(|i| promise(&key, B256::repeat_byte(i), 2, 3))
            .collect();
        let signed = SignedPreconfirmation::sign_group(&key, &group);
        assert_eq!(signed.len(), 5);
        let me = NodeId(key.address());
        for (one, promised) in signed.iter().zip(&group) {
            assert_eq!(one.preconfirmation, *promised);
            assert_eq!(one.verify(Some(&me)), Ok(()));
            assert_eq!(
                SignedPreconfirmation::from_bytes(&one.to_bytes()),
                Ok(one.clone())
            );
        }
        assert_eq!(
            signed[0].signature, signed[4].signature,
            "one signature a group"
        );
    }

    #[test]
    fn tampered_or_foreign_preconfirmations_are_refused_typed() {
        let key = AccountKey::from_seed(1);
        let other = AccountKey::from_seed(2);
        let group = [
            promise(&key, B256::repeat_byte(1), 2, 3),
            promise(&key, B256::repeat_byte(2), 2, 3),
        ];
        let signed = SignedPreconfirmation::sign_group(&key, &group);
        // A promise changed after signing leads to another root: another signer recovers.
        let mut later = signed[0].clone();
        later.preconfirmation.height_last = 4;
        assert!(matches!(
            later.verify(None),
            Err(PreconfirmationError::WrongSigner { .. })
        ));
        // Someone else's signature over a promise naming this sequencer.
        let forged = SignedPreconfirmation::sign_group(&other, &group);
        assert_eq!(
            forged[0].verify(None),
            Err(PreconfirmationError::WrongSigner {
                sequencer: NodeId(key.address()),
                signer: other.address(),
            })
        );
        // A client connected to another sequencer.
        assert_eq!(
            signed[0].verify(Some(&NodeId(other.address()))),
            Err(PreconfirmationError::UnexpectedSequencer {
                expected: NodeId(other.address()),
                got: NodeId(key.address()),
            })
        );
        let mut bad_proof = signed[1].clone();
        bad_proof.proof.index = 2;
        assert_eq!(bad_proof.verify(None), Err(PreconfirmationError::BadProof));
        let mut bad_v = signed[0].clone();
        bad_v.signature.0[64] = 9;
        assert_eq!(
            bad_v.verify(None),
            Err(PreconfirmationError::Signature(
                SignatureError::InvalidRecoveryId(9)
            ))
        );
        let reversed = SignedPreconfirmation::sign_group(&key, &[promise(&key, B256::ZERO, 4, 3)]);
        assert_eq!(
            reversed[0].verify(None),
            Err(PreconfirmationError::BadWindow { first: 4, last: 3 })
        );
        let too_long = promise(&key, B256::ZERO, 0, PRECONFIRMATION_HEIGHTS_MAX);
        assert!(too_long.window().is_err());
        let mut bytes = signed[0].to_bytes();
        bytes[0] = 2;
        assert_eq!(
            SignedPreconfirmation::from_bytes(&bytes),
            Err(DecodeError::UnknownVersion {
                what: "preconfirmation",
                version: 2
            })
        );
    }

    #[test]
    fn a_dropped_move_is_proven_and_a_kept_promise_is_not() {
        let sequencer = AccountKey::from_seed(1);
        let player = AccountKey::from_seed(5);
        let dropped = a_move(&player, 0, 0);
        let other = a_move(&AccountKey::from_seed(6), 0, 0);
        // Heights 0..=2; the move was promised at heights 1..=2 and is in neither block.
        let bodies = vec![
            BlockBody {
                moves: vec![other.clone()],
            },
            BlockBody {
                moves: vec![other.clone()],
            },
            BlockBody::default(),
        ];
        let (batches, committed) = finalized(&sequencer, &bodies);
        let signed = SignedPreconfirmation::sign_group(
            &sequencer,
            &[promise(&sequencer, dropped.hash(), 1, 2)],
        )
        .remove(0);
        let evidence = PreconfirmationEvidence {
            preconfirmation: signed.clone(),
            signed_move: dropped.clone(),
            batches: batches[1..].to_vec(),
            bodies: bodies[1..].to_vec(),
        };
        let lookup = |number: u64| committed.get(&number).copied();
        assert_eq!(evidence.verify(lookup), Ok(()));
        assert_eq!(
            PreconfirmationEvidence::from_bytes(&evidence.to_bytes()),
            Ok(evidence.clone())
        );

        // The same evidence against a chain that committed other batches proves nothing.
        assert_eq!(
            evidence.verify(|_| Some(B256::ZERO)),
            Err(PreconfirmationError::BatchNotCommitted { number: 2 })
        );
        // A window not finalized yet: height 2's batch left out.
        let unfinished = PreconfirmationEvidence {
            batches: batches[1..2].to_vec(),
            ..evidence.clone()
        };
        assert_eq!(
            unfinished.verify(lookup),
            Err(PreconfirmationError::HeightNotFinalized { height: 2 })
        );
        // A body that is not the finalized one (the move taken out of it).
        let mut swapped = evidence.clone();
        swapped.bodies[0] = BlockBody::default();
        assert_eq!(
            swapped.verify(lookup),
            Err(PreconfirmationError::BodyMismatch { height: 1 })
        );
        let short = PreconfirmationEvidence {
            bodies: bodies[1..2].to_vec(),
            ..evidence.clone()
        };
        assert_eq!(
            short.verify(lookup),
            Err(PreconfirmationError::BodyCount {
                expected: 2,
                got: 1
            })
        );
        // The preconfirmation with another move.
        let wrong_move = PreconfirmationEvidence {
            signed_move: other.clone(),
            ..evidence.clone()
        };
        assert!(matches!(
            wrong_move.verify(lookup),
            Err(PreconfirmationError::WrongMove { .. })
        ));

        // Kept: the move is at height 2.
        let kept_bodies = vec![
            BlockBody {
                moves: vec![other.clone()],
            },
            BlockBody {
                moves: vec![other.clone()],
            },
            BlockBody {
                moves: vec![other.clone(), dropped.clone()],
            },
        ];
        let (kept_batches, kept_committed) = finalized(&sequencer, &kept_bodies);
        let kept = PreconfirmationEvidence {
            preconfirmation: signed.clone(),
            signed_move: dropped.clone(),
            batches: kept_batches[1..].to_vec(),
            bodies: kept_bodies[1..].to_vec(),
        };
        assert_eq!(
            kept.verify(|number| kept_committed.get(&number).copied()),
            Err(PreconfirmationError::Kept { height: 2 })
        );

        // Replaced by the sender's own move of the same nonce: kept too.
        let replacement = a_move(&player, 0, 9);
        let replaced_bodies = vec![
            BlockBody::default(),
            BlockBody {
                moves: vec![replacement],
            },
            BlockBody::default(),
        ];
        let (replaced_batches, replaced_committed) = finalized(&sequencer, &replaced_bodies);
        let replaced = PreconfirmationEvidence {
            preconfirmation: signed,
            signed_move: dropped,
            batches: replaced_batches[1..].to_vec(),
            bodies: replaced_bodies[1..].to_vec(),
        };
        assert_eq!(
            replaced.verify(|number| replaced_committed.get(&number).copied()),
            Err(PreconfirmationError::Replaced { height: 1 })
        );
    }
}
