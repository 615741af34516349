//! The tokio driver of the shard network: takes finalized batches, pulls their bodies from weak
//! DA, executes them off the async threads at the driver's clock (which also times the group
//! BFT rounds' view changes), takes the group messages that arrive over a network transport,
//! publishes the results, and moves the network to the upper chain's next registry epoch at
//! the first commit batch it can ([`ShardNetwork::enter_epoch`]).

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use da_weak::WeakDa;
use parking_lot::Mutex;
use primitives::{FinalizedBatch, bls::BlsPublicKey, time::Instant};
use tokio::sync::{Notify, broadcast, mpsc};
use tracing::{debug, error, info, warn};

use execution::ExecutedBatch;

use upper_chain::UpperChain;

use crate::network::{ShardError, ShardNetwork};

/// Finalized batches queued for execution at most.
pub const FINALIZED_QUEUE_MAX: usize = 4_096;
/// Executed batches buffered for slow subscribers.
pub const EXECUTED_QUEUE_MAX: usize = 4_096;
/// Batches held that arrived ahead of a missing one.
pub const AHEAD_BATCHES_MAX: usize = 1_024;

/// Whose commit certificates the driver accepts.
#[derive(Clone)]
pub enum SequencerKeys {
    /// One sequencer set, in certificate order, for every batch.
    Fixed(Vec<BlsPublicKey>),
    /// The set of the sequencer epoch that spans each batch's PBFT sequence, as the upper chain
    /// fixed it.
    PerEpoch(Arc<dyn UpperChain>),
}

impl SequencerKeys {
    /// The keys that must certify `batch`, or why there are none.
    fn for_batch(
        &self,
        batch: &FinalizedBatch,
        known: &mut BTreeMap<u64, Vec<BlsPublicKey>>,
    ) -> Result<Vec<BlsPublicKey>, String> {
        let chain = match self {
            SequencerKeys::Fixed(keys) => return Ok(keys.clone()),
            SequencerKeys::PerEpoch(chain) => chain,
        };
        let epoch = upper_chain::sequencer_epoch_at(chain.as_ref(), batch.sequence)
            .map_err(|error| error.to_string())?
            .ok_or_else(|| format!("no sequencer epoch fixed for sequence {}", batch.sequence))?;
        let keys = known.entry(epoch.epoch).or_insert_with(|| {
            epoch
                .sequencers
                .iter()
                .map(|record| record.bls_key)
                .collect()
        });
        Ok(keys.clone())
    }
}

/// Handles on a running shard network.
#[derive(Clone, Debug)]
pub struct ShardHandle {
    /// Where sequencers deliver finalized batches (duplicates are fine).
    pub finalized: mpsc::Sender<FinalizedBatch>,
    /// Executed batches, in order.
    pub executed: broadcast::Sender<Arc<ExecutedBatch>>,
    /// The network, to read state back.
    pub network: Arc<Mutex<ShardNetwork>>,
}

/// Starts the driver. `sequencer_keys` says whose commit certificates are accepted (a quorum
/// of the set must sign each batch).
pub fn spawn(network: ShardNetwork, weak_da: WeakDa, sequencer_keys: SequencerKeys) -> ShardHandle {
    let (finalized, mut inbound) = mpsc::channel::<FinalizedBatch>(FINALIZED_QUEUE_MAX);
    let (executed, _) = broadcast::channel(EXECUTED_QUEUE_MAX);
    let network = Arc::new(Mutex::new(network));
    let handle = ShardHandle {
        finalized,
        executed: executed.clone(),
        network: network.clone(),
    };
    // The group rounds' clock: microseconds since the driver started.
    let epoch = std::time::Instant::now();
    // Over a network transport, group messages arrive between timers and batches.
    let arrivals = network.lock().transport_arrivals();
    let strong_da = network.lock().strong_da();
    tokio::spawn(async move {
        let mut ahead: BTreeMap<u64, FinalizedBatch> = BTreeMap::new();
        let mut epoch_keys: BTreeMap<u64, Vec<BlsPublicKey>> = BTreeMap::new();
        loop {
            // Group rounds move on their own timers too (a view change when a primary is down
            // or lying), not only when a batch arrives.
            let deadline = network.lock().poll_timeout();
            let batch = tokio::select! {
                batch = inbound.recv() => match batch {
                    Some(batch) => batch,
                    None => return,
                },
                () = sleep_until(epoch, deadline) => {
                    if let Err(message) = advance(&network, epoch).await {
                        error!(target: "shard_node", %message, "group rounds stopped");
                        return;
                    }
                    // A round certified late may be what an epoch switch waited for.
                    enter_epoch(&network).await;
                    continue;
                }
                () = arrived(arrivals.as_deref()) => {
                    if let Err(message) = advance(&network, epoch).await {
                        error!(target: "shard_node", %message, "group rounds stopped");
                        return;
                    }
                    continue;
                }
            };
            let next = network.lock().last_batch() + 1;
            let number = batch.batch.number;
            if number < next || ahead.contains_key(&number) {
                continue; // Every sequencer delivers each batch; the first copy is enough.
            }
            let keys = match sequencer_keys.for_batch(&batch, &mut epoch_keys) {
                Ok(keys) => keys,
                Err(error) => {
                    warn!(target: "shard_node", number, %error, "finalized batch refused: no sequencer set to check it");
                    continue;
                }
            };
            if let Err(error) = consensus::verify_commit_certificate(&batch, &keys) {
                warn!(target: "shard_node", number, %error, "finalized batch with a bad certificate refused");
                continue;
            }
            if let Some(publisher) = &strong_da {
                // Dispersal runs beside execution, never ahead of it.
                publisher.publish(
                    upper_chain::AvailabilityKind::Batch,
                    number,
                    da_strong::batch_payload(&batch),
                );
            }
            if ahead.len() >= AHEAD_BATCHES_MAX {
                warn!(target: "shard_node", number, "too many batches ahead of a missing one; dropped");
                continue;
            }
            ahead.insert(number, batch);
            while let Some(entry) = ahead.first_entry() {
                if *entry.key() != network.lock().last_batch() + 1 {
                    break;
                }
                let batch = entry.remove();
                match execute(&network, &weak_da, batch, epoch).await {
                    Ok(result) => {
                        let _ = executed.send(Arc::new(result));
                        enter_epoch(&network).await;
                    }
                    Err(message) => {
                        error!(target: "shard_node", %message, "batch execution stopped");
                        return;
                    }
                }
            }
        }
    });
    handle
}

/// The group rounds' clock: microseconds since `epoch`, the driver's start.
fn clock(epoch: std::time::Instant) -> Instant {
    Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
}

/// Sleeps until the group rounds' `deadline` on the clock started at `epoch`; forever if none.
async fn sleep_until(epoch: std::time::Instant, deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => {
            let at = epoch + Duration::from_micros(deadline.as_micros());
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
        }
        None => std::future::pending().await,
    }
}

/// Waits until a group message arrives over the network; forever with no network transport.
async fn arrived(arrivals: Option<&Notify>) {
    match arrivals {
        Some(arrivals) => arrivals.notified().await,
        None => std::future::pending().await,
    }
}

/// Fires the group rounds' timers that are due, off the async threads (a certified root is
/// committed upstream, which may wait on a remote chain).
async fn advance(
    network: &Arc<Mutex<ShardNetwork>>,
    epoch: std::time::Instant,
) -> Result<(), String> {
    let network = network.clone();
    tokio::task::spawn_blocking(move || network.lock().advance(clock(epoch)))
        .await
        .map_err(|join| format!("group round task failed: {join}"))?
        .map_err(|error| error.to_string())
}

/// Moves the network to the upper chain's registry epoch once it has moved on and the network
/// can switch (between commit batches, rounds certified); until then it is tried again after
/// every batch and every round timer. The chain's epoch is read at commit batches only.
async fn enter_epoch(network: &Arc<Mutex<ShardNetwork>>) {
    let network = network.clone();
    let switched = tokio::task::spawn_blocking(move || {
        let mut network = network.lock();
        if !network
            .last_batch()
            .is_multiple_of(network.root_commit_interval())
        {
            return Ok(None);
        }
        network.enter_epoch()
    })
    .await;
    match switched {
        Ok(Ok(Some(change))) => {
            info!(target: "shard_node", epoch = change.epoch, joined = change.joined.len(),
                departed = change.departed.len(), "shard network entered a new registry epoch");
        }
        Ok(Ok(None)) => {}
        Ok(Err(error @ ShardError::EpochSwitch { .. })) => {
            debug!(target: "shard_node", %error, "epoch switch deferred");
        }
        Ok(Err(error)) => warn!(target: "shard_node", %error, "epoch switch failed; retried later"),
        Err(join) => warn!(target: "shard_node", %join, "epoch switch task failed"),
    }
}

async fn execute(
    network: &Arc<Mutex<ShardNetwork>>,
    weak_da: &WeakDa,
    batch: FinalizedBatch,
    epoch: std::time::Instant,
) -> Result<ExecutedBatch, String> {
    let mut bodies = Vec::with_capacity(batch.batch.headers.len());
    for header in &batch.batch.headers {
        // Weak DA checks the body against the header's root; a miss is retried, since the
        // header was broadcast only after the body was stored.
        let mut attempts = 0u32;
        let body = loop {
            match weak_da.get_body(header).await {
                Ok(body) => break body,
                Err(error) if attempts < 50 => {
                    attempts += 1;
                    warn!(target: "shard_node", %error, attempts, "body pull failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(error) => {
                    return Err(format!("body of {:?} unavailable: {error}", header.id()));
                }
            }
        };
        bodies.push(body);
    }
    let network = network.clone();
    tokio::task::spawn_blocking(move || {
        network
            .lock()
            .execute_batch_at(clock(epoch), &batch, &bodies)
    })
    .await
    .map_err(|join| format!("execution task failed: {join}"))?
    .map_err(|error| error.to_string())
}
