//! `realtime`: latency as the player feels it, measured at the client through `client-sdk`,
//! network included, in one run of three phases:
//!
//! - **loopback**: submit → pending ack over KCP sessions on loopback at 20,000 moves/s
//!   offered, the set-up of `ack-latency` (one sequencer with its write-ahead log, 8 client
//!   sessions of 100 session-key players each; see [`ack_latency::measure_on`]). Target: p99
//!   ≤ 3 ms.
//! - **link**: the same against a sequencer on the far side of netstack's packet-level emulated
//!   link (network namespaces, TUN devices, a seeded forwarder, as `kcp-vs-tcp`; needs root) at
//!   20 ms RTT and 5 % loss in each direction, [`LINK_RATE`] moves/s offered by 8 sessions.
//!   Target: p99 ≤ 1.5 × RTT.
//! - **devnet**: [`PLAYERS`] players, one SDK session each, move their pieces on the demo game
//!   of a devnet that executes (4 sequencers over KCP, 8 shard nodes), a move every
//!   [`FRAME`], each submitted stacked on the SDK's local prediction ([`Client::submit_stacked`])
//!   and [`FAILURE_SHARE`] of them declaring a cell other than the one they move to, so that
//!   real execution fails them (`WrongPostValue`) and the sequencer retracts them.
//!   - *Retraction delivery*: from the moment an execution result reaches the sequencer to the
//!     player's session receiving its `Retracted`. The bench holds a receiver of the same
//!     broadcast channel the sequencers read execution results from, woken by the same send,
//!     and stamps each result as it arrives there. Target: p99 ≤ 2 ms.
//!   - *Prediction accuracy*: each move's item as the SDK predicts it right after the move is
//!     submitted (what the game shows that frame), confirmed if the move executed and left
//!     that value there; the share confirmed, beside the run's failure rate (a failed move's prediction
//!     is never confirmed: it is what the retraction corrects). Every prediction of a move
//!     that did not fail must be confirmed.
//!
//! `--seconds` sets the load's length of the first two phases; `--seed` the link's decisions
//! and which moves fail.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use client_sdk::{Client, Retraction};
use hdrhistogram::Histogram;
use netstack::emulated::{EmulatedLink, LinkModelConfig};
use parking_lot::Mutex;
use primitives::{AccountKey, FinalityLevel, TxHash, U256, finality::StateItem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sim::{
    devnet::{Devnet, DevnetConfig},
    game::{BOARD_CELLS, GAME_ADDRESS, move_with_declaration, slot_of},
    report::{BenchReport, Op},
};
use tokio::sync::broadcast;

use crate::{
    Args,
    ack_latency::{self, Placement},
    kcp_vs_tcp,
};

/// The offered rate on loopback.
const LOOPBACK_RATE: u64 = 20_000;
/// Round-trip time of the emulated link: half of it each way.
const LINK_RTT: Duration = Duration::from_millis(20);
/// Loss of the emulated link in each direction.
const LINK_LOSS: f64 = 0.05;
/// The offered rate over the emulated link: 8 sessions of 100 players, each player moving
/// 2.5 times a second (a turn-paced game; a 60 Hz shooter's player is one session alone).
const LINK_RATE: u64 = 2_000;
/// Where the sequencer listens on the link's far side.
const LINK_PORT: u16 = 7_110;
/// Client sessions sharing an offered rate.
const CLIENTS: usize = 8;
/// Players of the devnet phase, one SDK session each.
const PLAYERS: u64 = 16;
/// Moves each player makes in the devnet phase.
const MOVES_PER_PLAYER: u64 = 125;
/// Between two moves of a player (50 Hz).
const FRAME: Duration = Duration::from_millis(20);
/// Share of moves that declare a cell other than the one they move to, and so fail.
const FAILURE_SHARE: f64 = 0.1;
/// Seeds of the devnet players' keys.
const PLAYER_SEED_BASE: u64 = 61_000;
/// A bound on a broken devnet, not a target: how long the last move may take to execute.
const FINAL_WAIT: Duration = Duration::from_secs(120);
/// The seed unless `--seed` says otherwise.
const SEED_DEFAULT: u64 = kcp_vs_tcp::SEED_DEFAULT;

pub async fn run(args: &Args) -> anyhow::Result<BenchReport> {
    let seed = args.seed.unwrap_or(SEED_DEFAULT);
    anyhow::ensure!(seed < 1 << 53, "--seed must be below 2^53 to print exactly");
    let seconds = args.seconds.clamp(1, 30);
    println!("realtime: seed {seed} (replay with --seed {seed}), {seconds} s of load per phase");
    let mut report = BenchReport::new("realtime");
    report.figure("seed", seed as f64);
    report.figure("seconds_per_phase", seconds as f64);

    let (loopback, unacked) =
        ack_latency::measure_on(&Placement::loopback(), LOOPBACK_RATE, seconds, CLIENTS).await?;
    record_latencies(&mut report, "loopback_r20k", &loopback, unacked);
    eprintln!(
        "  loopback at {LOOPBACK_RATE} moves/s: ack p50 {:.3} ms, p99 {:.3} ms",
        quantile_ms(&loopback, 0.50),
        quantile_ms(&loopback, 0.99)
    );

    report.figure("link_rtt_ms", LINK_RTT.as_secs_f64() * 1_000.0);
    report.figure("link_loss_percent", LINK_LOSS * 100.0);
    report.figure("link_rate_per_s", LINK_RATE as f64);
    let (link, unacked) = tokio::select! {
        measured = over_emulated_link(seed, seconds) => measured?,
        // Dropping the measurement drops its link, which deletes the namespaces.
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    };
    record_latencies(&mut report, "link", &link, unacked);
    eprintln!(
        "  emulated link ({} ms RTT, {} % loss) at {LINK_RATE} moves/s: ack p50 {:.3} ms, p99 {:.3} ms",
        LINK_RTT.as_millis(),
        LINK_LOSS * 100.0,
        quantile_ms(&link, 0.50),
        quantile_ms(&link, 0.99)
    );

    let devnet = on_devnet(seed).await?;
    devnet.record(&mut report);

    report.target("loopback_r20k_p99_ms", Op::AtMost, 3.0);
    report.target(
        "link_p99_ms",
        Op::AtMost,
        1.5 * LINK_RTT.as_secs_f64() * 1_000.0,
    );
    report.target("retraction_p99_ms", Op::AtMost, 2.0);
    report.target(
        "failed_moves_retracted_exactly_once_share",
        Op::AtLeast,
        1.0,
    );
    report.target("predictions_unconfirmed_without_failure", Op::AtMost, 0.0);
    Ok(report)
}

fn quantile_ms(latencies: &Histogram<u64>, quantile: f64) -> f64 {
    latencies.value_at_quantile(quantile) as f64 / 1_000.0
}

fn record_latencies(
    report: &mut BenchReport,
    name: &str,
    latencies: &Histogram<u64>,
    unacked: usize,
) {
    report.figure(&format!("{name}_acked"), latencies.len() as f64);
    report.figure(&format!("{name}_unacked_after_20s"), unacked as f64);
    report.figure(&format!("{name}_p50_ms"), quantile_ms(latencies, 0.50));
    report.figure(&format!("{name}_p99_ms"), quantile_ms(latencies, 0.99));
    report.figure(&format!("{name}_max_ms"), latencies.max() as f64 / 1_000.0);
}

/// Submit → ack with the sequencer on side B of an emulated link and the clients on side A.
async fn over_emulated_link(seed: u64, seconds: u64) -> anyhow::Result<(Histogram<u64>, usize)> {
    let link = EmulatedLink::start(LinkModelConfig {
        loss: LINK_LOSS,
        delay: LINK_RTT / 2,
        seed,
        ..LinkModelConfig::default()
    })
    .context("starting the emulated link (needs root, /dev/net/tun and iproute2)")?;
    let placement = Placement {
        sequencer: link.side_b().handle().clone(),
        clients: link.side_a().handle().clone(),
        listen: SocketAddr::new(link.address_b(), LINK_PORT),
    };
    let measured = ack_latency::measure_on(&placement, LINK_RATE, seconds, CLIENTS).await?;
    anyhow::ensure!(link.is_running(), "the link's forwarder stopped");
    Ok(measured)
}

/// What execution did with one move, as the bench's receiver of the sequencers' execution
/// channel learned it.
struct Executed {
    /// When the result reached that channel's receivers.
    at: Instant,
    failed: bool,
    /// The values the move wrote (none if it failed).
    writes: Vec<(StateItem, U256)>,
}

/// One player's run: each move's hash, in nonce order, with the value predicted for the
/// player's cell right after it was submitted, and the retractions the player's session
/// received.
struct PlayerRun {
    predicted: Vec<(TxHash, U256)>,
    item: StateItem,
    retractions: Vec<Retraction>,
}

/// The devnet phase's figures.
struct DevnetPhase {
    moves: usize,
    failed: usize,
    /// Moves whose execution result the bench never saw (its receiver lagged).
    unseen: usize,
    retractions: usize,
    /// Failed moves whose player received exactly one retraction of them.
    failed_retracted_once: usize,
    /// Microseconds from the execution result's arrival to the retraction's.
    delivery: Histogram<u64>,
    confirmed: usize,
    unconfirmed_without_failure: usize,
}

impl DevnetPhase {
    fn record(&self, report: &mut BenchReport) {
        report.figure("devnet_moves", self.moves as f64);
        report.figure("devnet_moves_failed", self.failed as f64);
        report.figure("devnet_results_unseen", self.unseen as f64);
        report.figure(
            "failure_rate",
            self.failed as f64 / self.moves.max(1) as f64,
        );
        report.figure("retractions", self.retractions as f64);
        report.figure(
            "failed_moves_retracted_exactly_once_share",
            self.failed_retracted_once as f64 / self.failed.max(1) as f64,
        );
        report.figure("retraction_p50_ms", quantile_ms(&self.delivery, 0.50));
        report.figure("retraction_p99_ms", quantile_ms(&self.delivery, 0.99));
        report.figure("retraction_max_ms", self.delivery.max() as f64 / 1_000.0);
        report.figure(
            "prediction_accuracy",
            self.confirmed as f64 / self.moves.max(1) as f64,
        );
        report.figure(
            "predictions_unconfirmed_without_failure",
            self.unconfirmed_without_failure as f64,
        );
        eprintln!(
            "  devnet: {} moves, {} failed; retraction p99 {:.3} ms; prediction accuracy {:.3}",
            self.moves,
            self.failed,
            quantile_ms(&self.delivery, 0.99),
            self.confirmed as f64 / self.moves.max(1) as f64
        );
    }
}

async fn on_devnet(seed: u64) -> anyhow::Result<DevnetPhase> {
    let devnet = Devnet::start(DevnetConfig {
        shard_nodes: 8,
        ..DevnetConfig::default()
    })
    .await
    .context("starting the devnet")?;
    let results: Arc<Mutex<HashMap<TxHash, Executed>>> = Arc::default();
    let lagged = Arc::new(Mutex::new(0u64));
    let mut executed = devnet.shards.executed.subscribe();
    let recorder = {
        let results = results.clone();
        let lagged = lagged.clone();
        tokio::spawn(async move {
            loop {
                match executed.recv().await {
                    Ok(batch) => {
                        let at = Instant::now();
                        let mut results = results.lock();
                        for outcome in &batch.outcomes {
                            results.insert(
                                outcome.hash,
                                Executed {
                                    at,
                                    failed: outcome.status.is_err(),
                                    writes: sequencer::pending::executed_writes(&outcome.diff)
                                        .collect(),
                                },
                            );
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => *lagged.lock() += missed,
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    };
    let address = devnet.sequencer_addr(0);
    let mut players = Vec::new();
    for player in 0..PLAYERS {
        players.push(tokio::spawn(play(address, devnet.chain_id, player, seed)));
    }
    let mut runs = Vec::new();
    for player in players {
        runs.push(player.await??);
    }
    recorder.abort();
    let results = results.lock();

    let mut phase = DevnetPhase {
        moves: 0,
        failed: 0,
        unseen: 0,
        retractions: 0,
        failed_retracted_once: 0,
        delivery: Histogram::<u64>::new_with_bounds(1, 10_000_000, 3)?,
        confirmed: 0,
        unconfirmed_without_failure: 0,
    };
    for run in &runs {
        let mut retractions_of: HashMap<TxHash, usize> = HashMap::new();
        for retraction in &run.retractions {
            *retractions_of.entry(retraction.hash).or_default() += 1;
        }
        let mut executed_value = U256::ZERO;
        for (hash, predicted) in &run.predicted {
            phase.moves += 1;
            let Some(executed) = results.get(hash) else {
                phase.unseen += 1;
                continue;
            };
            if executed.failed {
                phase.failed += 1;
                if retractions_of.get(hash) == Some(&1) {
                    phase.failed_retracted_once += 1;
                }
            }
            // A player's moves execute in nonce order; a move that stores the value the item
            // held already leaves it out of its diff.
            if let Some((_, value)) = executed.writes.iter().find(|(item, _)| *item == run.item) {
                executed_value = *value;
            }
            let confirmed = !executed.failed && executed_value == *predicted;
            if confirmed {
                phase.confirmed += 1;
            } else if !executed.failed {
                phase.unconfirmed_without_failure += 1;
            }
        }
        for retraction in &run.retractions {
            phase.retractions += 1;
            let Some(executed) = results.get(&retraction.hash) else {
                continue;
            };
            let micros = retraction
                .at
                .saturating_duration_since(executed.at)
                .as_micros() as u64;
            phase.delivery.saturating_record(micros.max(1));
        }
    }
    Ok(phase)
}

/// One player: a session of its own watching its piece's cell, a move every [`FRAME`]
/// submitted stacked on the SDK's prediction, then every ack and the last move's execution.
async fn play(
    sequencer: SocketAddr,
    chain_id: u64,
    player: u64,
    seed: u64,
) -> anyhow::Result<PlayerRun> {
    let key = AccountKey::from_seed(PLAYER_SEED_BASE + player);
    let item = StateItem::Storage(GAME_ADDRESS, slot_of(&key.address()));
    let client = Client::connect(sequencer).await?;
    let mut retractions = client.retractions();
    client.subscribe(item).await?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ (player << 32));
    let mut ticker = tokio::time::interval(FRAME);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut predicted = Vec::with_capacity(MOVES_PER_PLAYER as usize);
    let mut submissions = Vec::with_capacity(MOVES_PER_PLAYER as usize);
    for nonce in 0..MOVES_PER_PLAYER {
        ticker.tick().await;
        let cell = rng.random_range(0..BOARD_CELLS);
        let declared = if rng.random_bool(FAILURE_SHARE) {
            (cell + 1) % BOARD_CELLS
        } else {
            cell
        };
        let signed = move_with_declaration(&key, chain_id, nonce, cell, declared);
        let submission = client.submit_stacked(key.address(), signed).await?;
        predicted.push((submission.hash, client.predicted(&item)));
        submissions.push(submission);
    }
    for submission in submissions {
        submission.ack().await.context("a move refused")?;
    }
    let (last, _) = *predicted.last().context("a player makes moves")?;
    tokio::time::timeout(FINAL_WAIT, client.wait_for(last, FinalityLevel::Executed))
        .await
        .context("the last move did not execute in time")??;
    // The sequencer pushes a result's retraction before the level of the move it reports, in
    // one session's order: every retraction of this player's moves has arrived.
    let mut received = Vec::new();
    while let Ok(retraction) = retractions.try_recv() {
        received.push(retraction);
    }
    Ok(PlayerRun {
        predicted,
        item,
        retractions: received,
    })
}
