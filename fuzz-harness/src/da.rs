//! Strong-DA chunks and the requests and answers of DA nodes: what a disperser sends a DA node,
//! and what a node answers a client rebuilding a batch.

use std::sync::OnceLock;

use da_strong::{
    AvailabilityCertificate, Chunk, ErasureParams, Rebuilder, encode_payload,
    wire::{DaRequest, DaResponse},
};

use crate::codec::canonical;

/// A real coded payload the fuzzed chunks are offered against.
struct Reference {
    payload: Vec<u8>,
    commitment: primitives::B256,
    chunks: Vec<Chunk>,
}

fn reference() -> &'static Reference {
    static REFERENCE: OnceLock<Reference> = OnceLock::new();
    REFERENCE.get_or_init(|| {
        let payload: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let params = ErasureParams::new(2, 4).expect("2 of 4 are valid parameters");
        let encoded = encode_payload(&payload, params).expect("a small payload codes");
        Reference {
            payload,
            commitment: encoded.commitment,
            chunks: encoded.chunks,
        }
    })
}

/// The bytes as a chunk, a DA request, a DA answer and an availability certificate.
pub fn fuzz(data: &[u8]) {
    if let Some(chunk) = canonical::<Chunk>(data) {
        check_chunk(chunk);
    }
    match canonical::<DaRequest>(data) {
        Some(DaRequest::Store { chunk, .. }) => check_chunk(chunk),
        Some(DaRequest::Get { .. } | DaRequest::Sample { .. }) | None => {}
    }
    if let Some(DaResponse::Chunk(Some(chunk))) = canonical::<DaResponse>(data) {
        check_chunk(chunk);
    }
    canonical::<AvailabilityCertificate>(data);
}

/// Offers `chunk` to a rebuilder of the reference payload, then the real chunks: whatever the
/// chunk, the rebuilt payload is the reference one. A chunk it accepts must be a real one.
fn check_chunk(chunk: Chunk) {
    let reference = reference();
    let mut rebuilder = Rebuilder::new(reference.commitment);
    match rebuilder.handle_chunk(chunk.clone()) {
        Ok(()) => assert!(
            reference.chunks.contains(&chunk),
            "a forged chunk verified against the commitment"
        ),
        Err(_) => {
            assert_eq!(
                rebuilder.verified(),
                0,
                "a refused chunk changed the rebuilder"
            );
            assert_eq!(rebuilder.rejected(), 1);
        }
    }
    for real in &reference.chunks {
        if !rebuilder.is_complete() && !rebuilder.has(real.index) {
            rebuilder
                .handle_chunk(real.clone())
                .expect("a real chunk verifies");
        }
    }
    let rebuilt = rebuilder
        .finish()
        .expect("k real chunks rebuild the payload");
    assert_eq!(rebuilt, reference.payload);
}
