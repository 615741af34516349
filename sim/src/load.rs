//! The load generator: simulated players sending moves through the client SDK, and latency per
//! finality level measured from the moment a move is sent to the moment its player learns it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use client_sdk::{Client, ClientError, ClientEvent};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use primitives::{AccountKey, FinalityLevel, TxHash};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::{
    devnet::Devnet,
    game::{BOARD_CELLS, move_piece},
};

/// What the players do.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Number of players, spread over the sequencers round-robin.
    pub players: usize,
    /// Moves per second summed over all players.
    pub moves_per_second: f64,
    /// Moves each player sends before stopping (`None`: until `duration`).
    pub moves_per_player: Option<u64>,
    /// How long players keep sending (`None`: until `moves_per_player`).
    pub duration: Option<Duration>,
    /// Seed of the players' keys and moves.
    pub seed: u64,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Worst case.
    pub max: f64,
    /// Samples.
    pub count: u64,
}

/// Counters and latency histograms, shared by the players while they run.
pub struct LoadStats {
    /// Moves sent.
    pub submitted: AtomicU64,
    /// Moves acked as pending.
    pub acked: AtomicU64,
    /// Moves refused at ingress.
    pub refused: AtomicU64,
    /// Moves that reached `Executed`.
    pub executed: AtomicU64,
    /// Moves that ended `Failed`.
    pub failed: AtomicU64,
    histograms: Mutex<Histograms>,
    sent_at: Mutex<HashMap<TxHash, Instant>>,
}

struct Histograms {
    pending_ack: Histogram<u64>,
    finalized: Histogram<u64>,
    executed: Histogram<u64>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

fn percentiles(histogram: &Histogram<u64>) -> Percentiles {
    let ms = |micros: u64| micros as f64 / 1_000.0;
    if histogram.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        p50: ms(histogram.value_at_quantile(0.50)),
        p99: ms(histogram.value_at_quantile(0.99)),
        max: ms(histogram.max()),
        count: histogram.len(),
    }
}

impl Default for LoadStats {
    fn default() -> Self {
        LoadStats {
            submitted: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            executed: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            histograms: Mutex::new(Histograms {
                pending_ack: histogram(),
                finalized: histogram(),
                executed: histogram(),
            }),
            sent_at: Mutex::new(HashMap::new()),
        }
    }
}

/// A summary of the stats at one moment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct LoadSnapshot {
    /// Moves sent.
    pub moves_submitted: u64,
    /// Moves acked.
    pub moves_acked: u64,
    /// Moves refused at ingress.
    pub moves_refused: u64,
    /// Moves executed.
    pub moves_executed: u64,
    /// Moves failed.
    pub moves_failed: u64,
    /// Submit → pending ack.
    pub pending_ack_ms: Percentiles,
    /// Submit → `Finalized`.
    pub finalized_ms: Percentiles,
    /// Submit → `Executed`.
    pub executed_ms: Percentiles,
}

impl LoadStats {
    /// The current figures.
    pub fn snapshot(&self) -> LoadSnapshot {
        let histograms = self.histograms.lock();
        LoadSnapshot {
            moves_submitted: self.submitted.load(Ordering::Relaxed),
            moves_acked: self.acked.load(Ordering::Relaxed),
            moves_refused: self.refused.load(Ordering::Relaxed),
            moves_executed: self.executed.load(Ordering::Relaxed),
            moves_failed: self.failed.load(Ordering::Relaxed),
            pending_ack_ms: percentiles(&histograms.pending_ack),
            finalized_ms: percentiles(&histograms.finalized),
            executed_ms: percentiles(&histograms.executed),
        }
    }

    /// Moves sent that have not reached `Executed`, `Failed` or a refusal.
    pub fn in_flight(&self) -> u64 {
        let done = self.executed.load(Ordering::Relaxed)
            + self.failed.load(Ordering::Relaxed)
            + self.refused.load(Ordering::Relaxed);
        self.submitted.load(Ordering::Relaxed).saturating_sub(done)
    }

    fn record(&self, event: &ClientEvent) {
        let sent = {
            let sent_at = self.sent_at.lock();
            match sent_at.get(&event.hash) {
                Some(sent) => *sent,
                None => return,
            }
        };
        let micros = event.at.saturating_duration_since(sent).as_micros() as u64;
        let micros = micros.max(1);
        let mut histograms = self.histograms.lock();
        match &event.level {
            Ok(FinalityLevel::Pending) => {
                self.acked.fetch_add(1, Ordering::Relaxed);
                let _ = histograms.pending_ack.record(micros);
            }
            Ok(FinalityLevel::Finalized) => {
                let _ = histograms.finalized.record(micros);
            }
            Ok(FinalityLevel::Executed) => {
                self.executed.fetch_add(1, Ordering::Relaxed);
                let _ = histograms.executed.record(micros);
                drop(histograms);
                self.sent_at.lock().remove(&event.hash);
            }
            Ok(FinalityLevel::Failed(_)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                drop(histograms);
                self.sent_at.lock().remove(&event.hash);
            }
            Ok(_) => {}
            Err(_) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                drop(histograms);
                self.sent_at.lock().remove(&event.hash);
            }
        }
    }
}

/// A player: a key, a session with one sequencer, and the nonce of its next move.
pub struct Player {
    /// The player's account key.
    pub key: AccountKey,
    /// The session.
    pub client: Client,
    /// The next nonce.
    pub nonce: u64,
}

/// The key of player `index` under `seed`.
pub fn player_key(seed: u64, index: usize) -> AccountKey {
    AccountKey::from_seed(
        seed.wrapping_mul(1_000_003)
            .wrapping_add(100_000 + index as u64),
    )
}

/// Connects the players and starts their moves; returns the shared stats and a handle that
/// finishes when every player has sent its last move.
pub async fn start(
    devnet: &Devnet,
    config: LoadConfig,
) -> Result<(Arc<LoadStats>, tokio::task::JoinHandle<()>), ClientError> {
    let stats = Arc::new(LoadStats::default());
    let mut players = Vec::with_capacity(config.players);
    for index in 0..config.players {
        let client = Client::connect(devnet.sequencer_addr(index)).await?;
        let mut events = client.events();
        let recorder = stats.clone();
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                recorder.record(&event);
            }
        });
        players.push(Player {
            key: player_key(config.seed, index),
            client,
            nonce: 0,
        });
    }
    let chain_id = devnet.chain_id;
    let per_player = (config.moves_per_second / config.players.max(1) as f64).max(0.001);
    let interval = Duration::from_secs_f64(1.0 / per_player);
    let deadline = config
        .duration
        .map(|duration| tokio::time::Instant::now() + duration);
    let mut tasks = Vec::with_capacity(players.len());
    for (index, mut player) in players.into_iter().enumerate() {
        let stats = stats.clone();
        let limit = config.moves_per_player;
        let mut rng = ChaCha8Rng::seed_from_u64(
            config.seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
        );
        tasks.push(tokio::spawn(async move {
            // Spread the players' first moves over one interval so they do not all send at once.
            let offset = interval.mul_f64(rng.random::<f64>());
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                if limit.is_some_and(|limit| player.nonce >= limit) {
                    return;
                }
                ticker.tick().await;
                if deadline.is_some_and(|deadline| tokio::time::Instant::now() >= deadline) {
                    return;
                }
                let cell = rng.random_range(0..BOARD_CELLS);
                let signed = move_piece(&player.key, chain_id, player.nonce, cell);
                let hash = signed.hash();
                stats.sent_at.lock().insert(hash, Instant::now());
                stats.submitted.fetch_add(1, Ordering::Relaxed);
                if player.client.submit(signed).await.is_err() {
                    return;
                }
                player.nonce += 1;
            }
        }));
    }
    let all = tokio::spawn(async move {
        for task in tasks {
            let _ = task.await;
        }
    });
    Ok((stats, all))
}
