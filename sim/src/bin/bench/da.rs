//! `da`: weak and strong DA side by side in one run.
//!
//! - Weak DA: put and get (verified against the header's root) latency, p50 and p99, of ~64 KiB
//!   block bodies, on a local directory and on a real S3 server (`s3s-fs` on loopback, installed
//!   by `scripts/setup.sh`; the S3 figures are missing, and their targets unmet, without it).
//! - Strong DA: Reed–Solomon encode (with chunk hashing and the Merkle tree) and verified
//!   rebuild (two data chunks lost, so a real decode, plus the re-encoding check) throughput in
//!   MiB/s for 1 MiB payloads, n = 6, k = 4.
//! - Certify: end to end, a 1 MiB payload coded, sent to 6 DA nodes over loopback QUIC, each
//!   verifying, storing in RocksDB and attesting, the attestations checked and aggregated, and
//!   the certificate verified; p50 and p99.
//!
//! Targets: weak-DA reads must sit well inside a 10 ms tick, since a replica verifies every body
//! a batch names before preparing; certify must fit in the 50 ms submit → `Finalized` budget
//! with room for PBFT; coding must not be what limits a 1 MiB batch per tick (100 MiB/s).

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use da_strong::{
    DaClient, DaNode, DaNodeAddress, DaServer, ErasureParams, Rebuilder, encode_payload,
    server::load_or_create_identity,
};
use da_weak::{WeakDa, testing};
use primitives::{BlockHeader, bls::BlsSecretKey};
use sim::report::{BenchReport, Op};

use crate::Args;

/// Bodies put and got per weak-DA store.
const WEAK_SAMPLES: u64 = 300;
/// Moves per body and call-data bytes per move: about 64 KiB encoded.
const WEAK_MOVES: u64 = 4;
const WEAK_DATA_BYTES: usize = 16_100;
/// Strong-DA payload size.
const STRONG_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Encode and rebuild rounds.
const CODING_ROUNDS: usize = 30;
/// Certified dispersals measured.
const CERTIFY_ROUNDS: usize = 60;
const NODES: u16 = 6;
const DATA_CHUNKS: u16 = 4;

pub async fn run(_args: &Args) -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("da");

    let directory = tempfile::tempdir()?;
    let local = WeakDa::local(&directory.path().join("weak"))?;
    let body_bytes = weak(&local, "weak_local", &mut report).await?;
    report.figure("weak_body_bytes", body_bytes as f64);
    match testing::s3s_fs_binary() {
        Some(binary) => {
            let server = testing::S3Server::start(&binary).context("starting s3s-fs")?;
            let s3 = WeakDa::from_url(&server.url())?;
            weak(&s3, "weak_s3", &mut report).await?;
        }
        None => eprintln!("s3s-fs not found (scripts/setup.sh installs it): no S3 figures"),
    }

    coding(&mut report)?;
    certify(directory.path(), &mut report).await?;

    report.target("weak_local_get_p99_ms", Op::AtMost, 2.0);
    report.target("weak_local_put_p99_ms", Op::AtMost, 5.0);
    report.target("weak_s3_get_p99_ms", Op::AtMost, 5.0);
    report.target("weak_s3_put_p99_ms", Op::AtMost, 10.0);
    report.target("strong_encode_mib_per_s", Op::AtLeast, 100.0);
    report.target("strong_rebuild_mib_per_s", Op::AtLeast, 100.0);
    report.target("certify_1mib_n6_p99_ms", Op::AtMost, 25.0);
    Ok(report)
}

/// Puts then gets `WEAK_SAMPLES` bodies; records p50/p99 of each under `name`.
/// Returns the encoded size of one body.
async fn weak(da: &WeakDa, name: &str, report: &mut BenchReport) -> anyhow::Result<usize> {
    let blocks: Vec<(BlockHeader, Vec<u8>)> = (0..WEAK_SAMPLES)
        .map(|height| {
            let (header, _, encoded) = testing::block(5, height, WEAK_MOVES, WEAK_DATA_BYTES);
            (header, encoded)
        })
        .collect();
    let body_bytes = blocks[0].1.len();
    let mut puts = Vec::with_capacity(blocks.len());
    for (header, encoded) in &blocks {
        let started = Instant::now();
        da.put_body(header, encoded.clone()).await?;
        puts.push(started.elapsed());
    }
    let mut gets = Vec::with_capacity(blocks.len());
    for (header, _) in &blocks {
        let started = Instant::now();
        da.get_body(header).await?;
        gets.push(started.elapsed());
    }
    record_latency(report, &format!("{name}_put"), &mut puts);
    record_latency(report, &format!("{name}_get"), &mut gets);
    Ok(body_bytes)
}

fn coding(report: &mut BenchReport) -> anyhow::Result<()> {
    let params = ErasureParams::new(DATA_CHUNKS, NODES)?;
    let payload: Vec<u8> = (0..STRONG_PAYLOAD_BYTES)
        .map(|index| (index.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut encode_time = Duration::ZERO;
    let mut rebuild_time = Duration::ZERO;
    for _ in 0..CODING_ROUNDS {
        let started = Instant::now();
        let encoded = encode_payload(&payload, params)?;
        encode_time += started.elapsed();

        let started = Instant::now();
        let mut rebuilder = Rebuilder::new(encoded.commitment);
        // Data chunks 0 and 1 lost: two parity chunks stand in.
        for chunk in encoded.chunks.into_iter().skip(2) {
            rebuilder.handle_chunk(chunk)?;
        }
        let rebuilt = rebuilder.finish()?;
        rebuild_time += started.elapsed();
        anyhow::ensure!(rebuilt == payload, "rebuild differs");
    }
    let mib = (STRONG_PAYLOAD_BYTES * CODING_ROUNDS) as f64 / (1024.0 * 1024.0);
    report.figure("strong_encode_mib_per_s", mib / encode_time.as_secs_f64());
    report.figure("strong_rebuild_mib_per_s", mib / rebuild_time.as_secs_f64());
    Ok(())
}

async fn certify(root: &std::path::Path, report: &mut BenchReport) -> anyhow::Result<()> {
    let params = ErasureParams::new(DATA_CHUNKS, NODES)?;
    let mut servers = Vec::new();
    let mut addresses = Vec::new();
    for position in 0..NODES {
        let directory = root.join(format!("da-node{position}"));
        let key = BlsSecretKey::from_seed(&[position as u8 + 1; 32]);
        let identity = load_or_create_identity(&directory)?;
        let node = DaNode::open(&directory.join("chunks"), position, key.clone())?;
        let server = DaServer::start(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &identity,
            Arc::new(node),
        )?;
        addresses.push(DaNodeAddress {
            address: server.local_addr(),
            public_key: key.public_key(),
            certificate: identity.certificate.clone(),
        });
        servers.push(server);
    }
    let client = DaClient::new(params, addresses)?;
    let keys = client.committee_keys();
    let mut latencies = Vec::with_capacity(CERTIFY_ROUNDS);
    for round in 0..=CERTIFY_ROUNDS {
        // Each round a distinct payload, so every node stores a new chunk.
        let payload: Vec<u8> = (0..STRONG_PAYLOAD_BYTES)
            .map(|index| (index ^ round.wrapping_mul(31)) as u8)
            .collect();
        let started = Instant::now();
        let dispersal = client.disperse(&payload).await?;
        dispersal.certificate.verify(&keys, &params)?;
        let elapsed = started.elapsed();
        // Round 0 warms up connections.
        if round > 0 {
            latencies.push(elapsed);
        }
    }
    record_latency(report, "certify_1mib_n6", &mut latencies);
    for server in servers {
        server.shutdown().await;
    }
    Ok(())
}

/// Records `<name>_p50_ms` and `<name>_p99_ms` (nearest rank).
fn record_latency(report: &mut BenchReport, name: &str, samples: &mut [Duration]) {
    samples.sort_unstable();
    for (suffix, percent) in [("p50", 50.0), ("p99", 99.0)] {
        let rank = ((percent / 100.0) * samples.len() as f64).ceil() as usize;
        let value = samples[rank.clamp(1, samples.len()) - 1];
        report.figure(&format!("{name}_{suffix}_ms"), value.as_secs_f64() * 1e3);
    }
}
