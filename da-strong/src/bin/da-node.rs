//! `da-node`: one strong-DA node serving its chunks over QUIC.
//!
//! `da-node --listen 127.0.0.1:7400 --data-dir /var/lib/da0 --position 0 --bls-seed <64 hex>`
//! (or `--bls-key-file FILE` holding the 32-byte seed). The node keeps its chunks in RocksDB
//! under `<data-dir>/chunks` and its self-signed QUIC certificate in `<data-dir>`; it prints
//! its BLS public key and the certificate path, which clients need to reach and check it.
//! `--metrics-listen 127.0.0.1:9400` serves its metrics to Prometheus at `/metrics`.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context, bail};
use clap::Parser;
use da_strong::{DaNode, DaServer, server::load_or_create_identity};
use metrics_exporter_prometheus::PrometheusBuilder;
use primitives::bls::BlsSecretKey;

/// Runs one strong-DA node.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on (UDP, QUIC).
    #[arg(long, default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Directory of the chunk store and the QUIC identity.
    #[arg(long)]
    data_dir: PathBuf,
    /// This node's position in the committee: it holds chunk `position` of every batch.
    #[arg(long)]
    position: u16,
    /// BLS key seed, 32 bytes as 64 hex digits.
    #[arg(long, conflicts_with = "bls_key_file")]
    bls_seed: Option<String>,
    /// File holding the 32-byte BLS key seed.
    #[arg(long)]
    bls_key_file: Option<PathBuf>,
    /// Serve Prometheus metrics over HTTP on this address (`/metrics`).
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

fn parse_seed(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim().trim_start_matches("0x");
    if hex.len() != 64 {
        bail!("the BLS seed must be 64 hex digits, got {}", hex.len());
    }
    let mut seed = [0u8; 32];
    for (index, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * index..2 * index + 2], 16)
            .context("the BLS seed is not hex")?;
    }
    Ok(seed)
}

/// mimalloc, as every node binary: see the workspace's Cargo.toml.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Logs go to stderr: stdout carries the identity lines operators and scripts read.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let seed = match (&args.bls_seed, &args.bls_key_file) {
        (Some(hex), None) => parse_seed(hex)?,
        (None, Some(path)) => {
            let bytes =
                std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            match <[u8; 32]>::try_from(bytes.as_slice()) {
                Ok(seed) => seed,
                Err(_) => parse_seed(std::str::from_utf8(&bytes).context("key file")?)?,
            }
        }
        _ => bail!("give one of --bls-seed or --bls-key-file"),
    };
    if let Some(address) = args.metrics_listen {
        PrometheusBuilder::new()
            .with_http_listener(address)
            .install()
            .with_context(|| format!("serving metrics on {address}"))?;
        da_strong::metrics::describe_node();
    }
    let key = BlsSecretKey::from_seed(&seed);
    let public_key = key.public_key();
    let identity = load_or_create_identity(&args.data_dir)?;
    let node = DaNode::open(&args.data_dir.join("chunks"), args.position, key)?;
    let server = DaServer::start(args.listen, &identity, Arc::new(node))?;
    println!(
        "da-node position {} listening on {}\nbls public key 0x{}\nquic certificate {}",
        args.position,
        server.local_addr(),
        public_key
            .to_bytes()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect::<String>(),
        args.data_dir.join("quic-certificate.der").display()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for ctrl-c")?;
    server.shutdown().await;
    Ok(())
}
