//! Strong DA: durable, highly available storage of finalized batches.
//!
//! A finalized batch will be erasure-coded (Reed–Solomon) into n chunks across DA nodes, any k
//! of which rebuild it; chunk commitments form a blake3 Merkle tree whose root is the batch's DA
//! commitment, and 2f+1 signed attestations aggregate into an availability certificate. This
//! crate holds nothing yet: the devnet keeps block bodies in weak DA only, and the [da] issue
//! builds this crate. Nothing else in the workspace depends on it until then.
