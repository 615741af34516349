//! The devnet's operator accounting: each shard node meters its service per accounting epoch
//! (moves its groups executed, rounds it certified, state it holds, time up), keeps a ledger of
//! the state slices it ships to and takes from each peer, writes its signed usage and what it saw
//! of its group peers to its own data directory, and serves the operator metrics on its own
//! `/metrics` endpoint, as separate node processes would.
//!
//! The nodes share one process, so each has its own metrics recorder ([`PrometheusRecorder`])
//! rather than the global one: its endpoint shows only its own ledger and epochs, under the same
//! names a node process exports ([`accounting::metrics`], [`shard_node::metrics`]).
//!
//! The counts come from the shard network's per-epoch tallies
//! ([`shard_node::network::service`]); an epoch is closed once its last batch has run.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
};

use accounting::{
    Figure, LedgerConfig, Rates, Service, SignedUsage,
    meter::UsageFileError,
    node::NodeAccounting,
    usage::{FigureName, Observation},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use primitives::{AccountKey, NodeId};
use shard_node::{
    ShardNetwork,
    metrics::NodeReport,
    network::{node_dir, service::EpochService},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tracing::{info_span, warn};

/// A request head longer than this is refused (a scrape's is a few hundred bytes).
const REQUEST_HEAD_BYTES_MAX: usize = 8 * 1024;

/// One node's accounting and the recorder its endpoint renders.
struct Operator {
    accounting: NodeAccounting,
    recorder: PrometheusRecorder,
}

/// The accounting of every shard node of a devnet.
pub struct Operators {
    nodes: BTreeMap<NodeId, Operator>,
    /// The shard network's state directory (each node's store is a directory under it).
    state_dir: PathBuf,
    /// Where each node's accounting directory is.
    accounting_dir: PathBuf,
    /// When the last epoch closed, and the part of a second of uptime not yet counted.
    last_close: std::time::Instant,
    uptime_carry_micros: u64,
    /// Set by the final close: nothing is counted after it.
    finished: bool,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operators")
            .field("nodes", &self.nodes.len())
            .field("accounting_dir", &self.accounting_dir)
            .finish_non_exhaustive()
    }
}

impl Operators {
    /// Accounting for the nodes whose keys are `keys`, in `accounting_dir/<node id>/`, counting
    /// from epoch 1, pricing epochs at `rates`.
    pub fn open(
        keys: &[AccountKey],
        rates: Rates,
        ledger: LedgerConfig,
        state_dir: &Path,
        accounting_dir: &Path,
    ) -> Result<Operators, UsageFileError> {
        let mut nodes = BTreeMap::new();
        for key in keys {
            let id = NodeId(key.address());
            let accounting = NodeAccounting::open(
                key.clone(),
                1,
                rates,
                ledger.clone(),
                &node_dir(accounting_dir, &id),
            )?;
            let recorder = PrometheusBuilder::new().build_recorder();
            metrics::with_local_recorder(&recorder, || {
                accounting::metrics::describe();
                shard_node::metrics::describe();
            });
            nodes.insert(
                id,
                Operator {
                    accounting,
                    recorder,
                },
            );
        }
        Ok(Operators {
            nodes,
            state_dir: state_dir.to_path_buf(),
            accounting_dir: accounting_dir.to_path_buf(),
            last_close: std::time::Instant::now(),
            uptime_carry_micros: 0,
            finished: false,
        })
    }

    /// Whether the final close was made: nothing is counted any more.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The directory holding each node's accounting directory (`--usage-dir` of the report).
    pub fn accounting_dir(&self) -> &Path {
        &self.accounting_dir
    }

    /// The handle rendering `node`'s metrics.
    pub fn metrics_handle(&self, node: &NodeId) -> Option<PrometheusHandle> {
        self.nodes
            .get(node)
            .map(|operator| operator.recorder.handle())
    }

    /// Each node's own accounting, to read.
    pub fn node(&self, node: &NodeId) -> Option<&NodeAccounting> {
        self.nodes.get(node).map(|operator| &operator.accounting)
    }

    /// Closes every epoch the network has completed; with `last`, the open one too, and nothing
    /// is counted afterwards (the devnet is stopping). Returns the signed usage written.
    pub fn close(
        &mut self,
        network: &parking_lot::Mutex<ShardNetwork>,
        last: bool,
    ) -> Result<Vec<SignedUsage>, UsageFileError> {
        if self.finished {
            return Ok(Vec::new());
        }
        let (mut tallies, before, reports) = {
            let mut network = network.lock();
            let open = network.usage_epoch();
            let before = if last { open + 1 } else { open };
            let reports: BTreeMap<NodeId, NodeReport> = self
                .nodes
                .keys()
                .filter_map(|id| network.node_report(id).map(|report| (*id, report)))
                .collect();
            (network.take_service(before), before, reports)
        };
        self.finished = last;
        let first = self
            .nodes
            .values()
            .map(|operator| operator.accounting.epoch())
            .min()
            .unwrap_or(before);
        let mut signed = Vec::new();
        // Every epoch gets its signed usage, an idle one too (its uptime is still owed).
        for epoch in first..before {
            let service = tallies.remove(&epoch).unwrap_or_default();
            signed.extend(self.close_epoch(epoch, &service, &reports)?);
        }
        Ok(signed)
    }

    fn close_epoch(
        &mut self,
        epoch: u64,
        service: &EpochService,
        reports: &BTreeMap<NodeId, NodeReport>,
    ) -> Result<Vec<SignedUsage>, UsageFileError> {
        let elapsed = self.last_close.elapsed();
        self.last_close = std::time::Instant::now();
        let micros =
            self.uptime_carry_micros + u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX / 2);
        let uptime_seconds = micros / 1_000_000;
        self.uptime_carry_micros = micros % 1_000_000;

        let mut moves: BTreeMap<NodeId, u64> = BTreeMap::new();
        let mut rounds: BTreeMap<NodeId, u64> = BTreeMap::new();
        let mut seen: BTreeMap<NodeId, Vec<Observation>> = BTreeMap::new();
        for (group_id, group) in &service.groups {
            for (index, subject) in group.members.iter().enumerate() {
                *moves.entry(*subject).or_default() += group.moves[index];
                *rounds.entry(*subject).or_default() += group.rounds[index];
                // Every other member of the group saw the subject's share of the group's work.
                for witness in group.members.iter().filter(|id| *id != subject) {
                    let figures = [
                        (FigureName::MovesExecuted, group.moves[index]),
                        (FigureName::GroupRounds, group.rounds[index]),
                    ];
                    for (figure, value) in figures.into_iter().filter(|(_, value)| *value > 0) {
                        seen.entry(*witness).or_default().push(Observation {
                            witness: witness.0,
                            subject: subject.0,
                            epoch,
                            figure,
                            value,
                            group: Some(*group_id),
                        });
                    }
                }
            }
        }

        let mut signed = Vec::with_capacity(self.nodes.len());
        for (id, operator) in &mut self.nodes {
            let span = info_span!("operator", node = %id.0, epoch);
            let _entered = span.enter();
            let accounting = &mut operator.accounting;
            if accounting.epoch() > epoch {
                continue;
            }
            for (&(shipper, receiver), &count) in &service.slices {
                if shipper == *id {
                    accounting
                        .ledger()
                        .gave(receiver, Service::SyncSlices, count);
                } else if receiver == *id {
                    accounting
                        .ledger()
                        .received(shipper, Service::SyncSlices, count);
                }
            }
            let meter = accounting.meter();
            meter.add(
                Figure::MovesExecuted,
                moves.get(id).copied().unwrap_or_default(),
            );
            meter.add(
                Figure::GroupRounds,
                rounds.get(id).copied().unwrap_or_default(),
            );
            meter.set(
                Figure::StateBytes,
                dir_bytes(&node_dir(&self.state_dir, id)),
            );
            meter.add(Figure::UptimeSeconds, uptime_seconds);
            let observations = seen.remove(id).unwrap_or_default();
            signed.push(accounting.close_epoch(epoch + 1, &observations)?);
            let report = reports.get(id).copied().unwrap_or_default();
            let (new_moves, new_rounds) = (
                moves.get(id).copied().unwrap_or_default(),
                rounds.get(id).copied().unwrap_or_default(),
            );
            metrics::with_local_recorder(&operator.recorder, || {
                operator.accounting.export_metrics();
                shard_node::metrics::export(&report, new_moves, new_rounds);
            });
        }
        Ok(signed)
    }
}

/// The bytes of every file under `dir` (0 if it cannot be read: a level figure, not a proof).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_bytes(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |metadata| metadata.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Serves `handle`'s metrics at `GET /metrics` on `listen` (port 0: any free port); returns the
/// address bound. Other paths get a 404.
pub async fn serve_metrics(
    listen: SocketAddr,
    handle: PrometheusHandle,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(listen).await?;
    let bound = listener.local_addr()?;
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(target: "sim::operators", %error, "metrics endpoint stopped accepting");
                    return;
                }
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let mut head = Vec::with_capacity(512);
                let mut buffer = [0u8; 1024];
                while !head.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                    if head.len() > REQUEST_HEAD_BYTES_MAX {
                        return;
                    }
                }
                let path = head
                    .split(|byte| *byte == b' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_vec();
                let response = if head.starts_with(b"GET ") && path.starts_with(b"/metrics") {
                    let body = handle.render();
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    Ok(bound)
}
