//! The batcher: which block headers the next batch names, and whether a proposed batch is
//! acceptable.
//!
//! Every sequencer keeps the same view of which heights of each sequencer are already in a
//! committed batch, so whichever one is primary proposes the headers that follow, and every
//! replica checks a proposal against the same rule: each sequencer's blocks appear in height
//! order with no gap and no repeat, each header signed by a sequencer of the set. Sans-IO.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use primitives::{B256, Batch, BlockHeader, BlockId, Decode, DecodeError, Decoder, Encode, NodeId};

use crate::constants::BATCH_HEADERS_MAX;

/// Bound on the sequencers a decoded [`BatcherSnapshot`] names (members of every epoch so far).
const SNAPSHOT_SEQUENCERS_MAX: usize = 1 << 16;
const SNAPSHOT_VERSION: u8 = 1;

/// Where a batcher stands after a committed batch: what a sequencer keeps on disk beside its
/// replica log, so that after a restart it checks proposals against the batches decided before.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatcherSnapshot {
    /// Number of the last committed batch.
    pub last_number: u64,
    /// Its hash.
    pub last_hash: B256,
    /// For every sequencer with a block in a committed batch, the next height not yet batched,
    /// by ID.
    pub next_heights: Vec<(NodeId, u64)>,
}

impl Encode for BatcherSnapshot {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(SNAPSHOT_VERSION);
        self.last_number.encode(out);
        self.last_hash.encode(out);
        primitives::codec::put_length(out, self.next_heights.len());
        for (sequencer, height) in &self.next_heights {
            sequencer.encode(out);
            height.encode(out);
        }
    }
}

impl Decode for BatcherSnapshot {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.version("batcher snapshot", &[SNAPSHOT_VERSION])?;
        let last_number = decoder.u64()?;
        let last_hash = decoder.b256()?;
        let count = decoder.length("batcher heights", SNAPSHOT_SEQUENCERS_MAX)?;
        let mut next_heights = Vec::with_capacity(count);
        for _ in 0..count {
            next_heights.push((NodeId::decode(decoder)?, decoder.u64()?));
        }
        Ok(BatcherSnapshot {
            last_number,
            last_hash,
            next_heights,
        })
    }
}

/// Why a proposed batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// A header from a sequencer outside the set.
    #[error("header from unknown sequencer {0}")]
    UnknownSequencer(NodeId),
    /// A header whose signature does not verify.
    #[error("bad header signature from {0}")]
    BadHeaderSignature(NodeId),
    /// A sequencer's heights are not the next ones.
    #[error("sequencer {sequencer} height {got}, expected {expected}")]
    HeightGap {
        /// The sequencer.
        sequencer: NodeId,
        /// The next height not yet in a batch.
        expected: u64,
        /// The height proposed.
        got: u64,
    },
    /// The batch number or parent is not the next one.
    #[error("batch {got} does not follow batch {last}")]
    NotNext {
        /// Last committed batch number.
        last: u64,
        /// Proposed number.
        got: u64,
    },
    /// Too many headers.
    #[error("batch names {0} headers")]
    TooLarge(usize),
}

/// Tracks headers heard and heights already batched.
#[derive(Debug)]
pub struct Batcher {
    sequencers: BTreeSet<NodeId>,
    next_height: HashMap<NodeId, u64>,
    heard: BTreeMap<(NodeId, u64), BlockHeader>,
    last_number: u64,
    last_hash: B256,
}

impl Batcher {
    /// A batcher for a sequencer set, before any batch.
    pub fn new(sequencers: impl IntoIterator<Item = NodeId>) -> Self {
        Batcher {
            sequencers: sequencers.into_iter().collect(),
            next_height: HashMap::new(),
            heard: BTreeMap::new(),
            last_number: 0,
            last_hash: B256::ZERO,
        }
    }

    /// A batcher for a sequencer set that continues from `snapshot`.
    pub fn restore(
        sequencers: impl IntoIterator<Item = NodeId>,
        snapshot: BatcherSnapshot,
    ) -> Self {
        Batcher {
            sequencers: sequencers.into_iter().collect(),
            next_height: snapshot.next_heights.into_iter().collect(),
            heard: BTreeMap::new(),
            last_number: snapshot.last_number,
            last_hash: snapshot.last_hash,
        }
    }

    /// Where this batcher stands (headers heard but not batched are not part of it).
    pub fn snapshot(&self) -> BatcherSnapshot {
        let mut next_heights: Vec<(NodeId, u64)> = self
            .next_height
            .iter()
            .map(|(sequencer, height)| (*sequencer, *height))
            .collect();
        next_heights.sort();
        BatcherSnapshot {
            last_number: self.last_number,
            last_hash: self.last_hash,
            next_heights,
        }
    }

    /// The sequencer set changed at an epoch boundary: headers of sequencers that left are no
    /// longer batched; the heights of those that stay (or come back) are kept.
    pub fn set_sequencers(&mut self, sequencers: impl IntoIterator<Item = NodeId>) {
        self.sequencers = sequencers.into_iter().collect();
        let members = &self.sequencers;
        self.heard
            .retain(|(sequencer, _), _| members.contains(sequencer));
    }

    /// Records a header heard from a peer (or packed locally). Returns false, changing nothing,
    /// for an unknown sequencer, a bad signature or an already batched height.
    pub fn hear(&mut self, header: BlockHeader) -> Result<(), BatchError> {
        if !self.sequencers.contains(&header.sequencer) {
            return Err(BatchError::UnknownSequencer(header.sequencer));
        }
        if !header.verify_signature() {
            return Err(BatchError::BadHeaderSignature(header.sequencer));
        }
        if header.height >= self.next_height(&header.sequencer) {
            self.heard.insert((header.sequencer, header.height), header);
        }
        Ok(())
    }

    fn next_height(&self, sequencer: &NodeId) -> u64 {
        self.next_height.get(sequencer).copied().unwrap_or(0)
    }

    /// Whether a header waits to be batched whose body is `held` (read and checked against its
    /// root). A header whose body no one can read is no backlog: waiting for it would only
    /// turn views over, as every primary would have to leave it out.
    pub fn has_waiting(&self, held: impl Fn(&BlockHeader) -> bool) -> bool {
        self.sequencers.iter().any(|sequencer| {
            self.heard
                .get(&(*sequencer, self.next_height(sequencer)))
                .is_some_and(&held)
        })
    }

    /// Per sequencer, the first waiting header whose body is not `held`: the one that keeps
    /// that sequencer's later blocks out of proposals until its body is read.
    pub fn first_not_held(&self, held: impl Fn(&BlockHeader) -> bool) -> Vec<&BlockHeader> {
        self.sequencers
            .iter()
            .filter_map(|sequencer| {
                let mut height = self.next_height(sequencer);
                while let Some(header) = self.heard.get(&(*sequencer, height)) {
                    if !held(header) {
                        return Some(header);
                    }
                    height += 1;
                }
                None
            })
            .collect()
    }

    /// Whether the block `id` with body root `root` was heard and is not batched yet.
    pub fn is_waiting(&self, id: &BlockId, root: &B256) -> bool {
        id.height >= self.next_height(&id.sequencer)
            && self
                .heard
                .get(&(id.sequencer, id.height))
                .is_some_and(|header| header.root == *root)
    }

    /// The next batch to propose, if any header whose body is `held` waits: per sequencer, the
    /// contiguous run of heights from the next unbatched one up to the first whose body is not
    /// held, sequencers in ID order. Replicas prepare a batch only once they hold every body
    /// it names, so a block whose body its sequencer withholds must stay out of proposals, or
    /// one byzantine sequencer would stall every batch.
    pub fn propose(&self, held: impl Fn(&BlockHeader) -> bool) -> Option<Batch> {
        let mut headers = Vec::new();
        for sequencer in &self.sequencers {
            let mut height = self.next_height(sequencer);
            while let Some(header) = self
                .heard
                .get(&(*sequencer, height))
                .filter(|header| held(header))
            {
                if headers.len() == BATCH_HEADERS_MAX {
                    break;
                }
                headers.push(header.clone());
                height += 1;
            }
        }
        if headers.is_empty() {
            return None;
        }
        Some(Batch {
            number: self.last_number + 1,
            parent: self.last_hash,
            headers,
        })
    }

    /// Checks a proposed batch against the rule every replica applies.
    pub fn check(&self, batch: &Batch) -> Result<(), BatchError> {
        if batch.number != self.last_number + 1 || batch.parent != self.last_hash {
            return Err(BatchError::NotNext {
                last: self.last_number,
                got: batch.number,
            });
        }
        if batch.headers.len() > BATCH_HEADERS_MAX {
            return Err(BatchError::TooLarge(batch.headers.len()));
        }
        let mut expected: HashMap<NodeId, u64> = HashMap::new();
        for header in &batch.headers {
            if !self.sequencers.contains(&header.sequencer) {
                return Err(BatchError::UnknownSequencer(header.sequencer));
            }
            let next = expected
                .entry(header.sequencer)
                .or_insert_with(|| self.next_height(&header.sequencer));
            if header.height != *next {
                return Err(BatchError::HeightGap {
                    sequencer: header.sequencer,
                    expected: *next,
                    got: header.height,
                });
            }
            // A header heard already was verified then; only unseen ones cost a pairing here.
            let heard = self.heard.get(&(header.sequencer, header.height)) == Some(header);
            if !heard && !header.verify_signature() {
                return Err(BatchError::BadHeaderSignature(header.sequencer));
            }
            *next += 1;
        }
        Ok(())
    }

    /// Records a committed batch: its heights are batched from now on. Returns false if the
    /// batch does not follow the last one this batcher knows (a sequencer that joined at an
    /// epoch boundary has seen none of the earlier ones): it is decided all the same, so the
    /// batcher moves to it, and the sequencers it does not name keep the heights known here.
    pub fn commit(&mut self, batch: &Batch) -> bool {
        let follows = batch.number == self.last_number + 1 && batch.parent == self.last_hash;
        for header in &batch.headers {
            self.next_height.insert(header.sequencer, header.height + 1);
            self.heard.remove(&(header.sequencer, header.height));
        }
        self.heard.retain(|(sequencer, height), _| {
            self.next_height
                .get(sequencer)
                .is_none_or(|next| height >= next)
        });
        self.last_number = batch.number;
        self.last_hash = batch.hash();
        follows
    }

    /// Number of the last committed batch.
    pub fn last_number(&self) -> u64 {
        self.last_number
    }

    /// Hash of the last committed batch (zero before any).
    pub fn last_hash(&self) -> B256 {
        self.last_hash
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountKey, BlockBody};

    use super::*;

    fn header(key: &AccountKey, height: u64) -> BlockHeader {
        BlockHeader::seal(key, height, B256::ZERO, 0, &BlockBody::default(), 5)
    }

    #[test]
    fn proposes_contiguous_heights_and_replicas_accept_them() {
        let keys: Vec<AccountKey> = (1..=2).map(AccountKey::from_seed).collect();
        let ids: Vec<NodeId> = keys.iter().map(|key| NodeId(key.address())).collect();
        let mut primary = Batcher::new(ids.iter().copied());
        let mut replica = Batcher::new(ids.iter().copied());
        primary.hear(header(&keys[0], 0)).expect("ok");
        primary.hear(header(&keys[0], 2)).expect("ok"); // height 1 not heard yet
        primary.hear(header(&keys[1], 0)).expect("ok");
        let batch = primary.propose(|_| true).expect("headers waiting");
        assert_eq!(batch.headers.len(), 2);
        assert_eq!(replica.check(&batch), Ok(()));
        primary.commit(&batch);
        replica.commit(&batch);
        assert_eq!(
            replica.check(&batch),
            Err(BatchError::NotNext { last: 1, got: 1 })
        );

        // A gap is refused.
        let gap = Batch {
            number: 2,
            parent: batch.hash(),
            headers: vec![header(&keys[0], 2)],
        };
        assert_eq!(
            replica.check(&gap),
            Err(BatchError::HeightGap {
                sequencer: ids[0],
                expected: 1,
                got: 2
            })
        );
        // A header claiming another sequencer than its signer is refused when heard.
        let mut impostor = header(&keys[1], 1);
        impostor.sequencer = ids[0];
        assert_eq!(
            primary.hear(impostor),
            Err(BatchError::BadHeaderSignature(ids[0]))
        );
        // A sequencer outside the set is refused.
        let outsider = AccountKey::from_seed(3);
        assert_eq!(
            primary.hear(header(&outsider, 0)),
            Err(BatchError::UnknownSequencer(NodeId(outsider.address())))
        );
    }

    #[test]
    fn a_block_waits_until_batched_and_only_with_the_root_heard() {
        let key = AccountKey::from_seed(1);
        let mut batcher = Batcher::new([NodeId(key.address())]);
        let heard = header(&key, 0);
        let (id, root) = (heard.id(), heard.root);
        assert!(!batcher.is_waiting(&id, &root), "not heard yet");
        batcher.hear(heard).expect("ok");
        assert!(batcher.is_waiting(&id, &root));
        assert!(
            !batcher.is_waiting(&id, &B256::repeat_byte(7)),
            "another block signed at the same height is not the one heard"
        );
        let batch = batcher.propose(|_| true).expect("a header waits");
        batcher.commit(&batch);
        assert!(!batcher.is_waiting(&id, &root), "batched");
    }

    #[test]
    fn a_block_whose_body_is_not_held_stays_out_of_proposals_and_backlog_with_its_successors() {
        let keys: Vec<AccountKey> = (1..=2).map(AccountKey::from_seed).collect();
        let ids: Vec<NodeId> = keys.iter().map(|key| NodeId(key.address())).collect();
        let mut batcher = Batcher::new(ids.iter().copied());
        let withheld = header(&keys[0], 0);
        let withheld_id = withheld.id();
        batcher.hear(withheld.clone()).expect("ok");
        batcher.hear(header(&keys[0], 1)).expect("ok");
        let held = |header: &BlockHeader| header.id() != withheld_id;

        assert!(
            !batcher.has_waiting(held),
            "an unreadable block is no backlog"
        );
        assert_eq!(batcher.propose(held), None);
        assert_eq!(batcher.first_not_held(held), vec![&withheld]);

        batcher.hear(header(&keys[1], 0)).expect("ok");
        assert!(batcher.has_waiting(held));
        let batch = batcher.propose(held).expect("the other sequencer's block");
        assert_eq!(batch.headers, vec![header(&keys[1], 0)]);
        batcher.commit(&batch);

        // Once its body is read, the block and the one after it go in.
        let batch = batcher.propose(|_| true).expect("both now");
        assert_eq!(batch.headers.len(), 2);
        assert!(batcher.first_not_held(|_| true).is_empty());
    }
}
