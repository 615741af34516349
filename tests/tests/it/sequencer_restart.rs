//! A sequencer killed mid-run and restarted resumes its PBFT replica from its replica log: it
//! comes back at the sequence it had committed, casts no vote that conflicts with one it cast
//! before (no equivocation is recorded), and the network keeps committing one history.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use client_sdk::Client;
use sim::{
    devnet::{Devnet, DevnetConfig, MeshKind},
    game::move_piece,
    load::player_key,
};
use upper_chain::UpperChain;

/// Bounds how long a broken network can hang a test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

/// The sequencer that is killed and restarted.
const RESTARTED: usize = 1;

/// Waits until `condition` holds, polling; panics with `what` after [`LIVENESS_BOUND`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(LIVENESS_BOUND, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

/// Players that keep moving through every sequencer but the restarted one, until stopped.
fn keep_moving(devnet: &Devnet, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    let chain_id = devnet.chain_id;
    (0..6)
        .map(|index| {
            let address = devnet.sequencer_addr([0, 2, 3][index % 3]);
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = Client::connect(address).await.expect("connects");
                let key = player_key(41, index);
                let mut nonce = 0;
                while !stop.load(Ordering::Relaxed) {
                    let submission = client
                        .submit(move_piece(&key, chain_id, nonce, nonce % 7))
                        .await
                        .expect("sent");
                    submission.ack().await.expect("acked as pending");
                    nonce += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                nonce
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sequencer_resumes_its_replica_from_disk_without_forking_or_double_voting() {
    let mut devnet = Devnet::start(DevnetConfig {
        wal: true,
        mesh: MeshKind::InProcess,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let stop = Arc::new(AtomicBool::new(false));
    let players = keep_moving(&devnet, stop.clone());

    let stats = devnet.sequencers[RESTARTED].stats.clone();
    wait_until(
        "the sequencer to be restarted has committed 20 sequences",
        || stats.replica_last_committed.load(Ordering::Relaxed) >= 20,
    )
    .await;
    devnet.crash_sequencer(RESTARTED).await.expect("crashes");
    let committed_before_crash = stats.replica_last_committed.load(Ordering::Relaxed);
    let view_before_crash = stats.replica_view.load(Ordering::Relaxed);

    // The others go on without it (3 of 4 are a quorum).
    let others = devnet.sequencers[0].stats.clone();
    let others_at_crash = others.replica_last_committed.load(Ordering::Relaxed);
    wait_until("the others commit while it is down", || {
        others.replica_last_committed.load(Ordering::Relaxed) >= others_at_crash + 10
    })
    .await;

    devnet.restart_sequencer(RESTARTED).await.expect("restarts");
    let stats = devnet.sequencers[RESTARTED].stats.clone();
    // It came back from its log, where it stopped, not from sequence 0 and view 0.
    let restored = stats.restored_sequence.load(Ordering::Relaxed);
    assert!(
        restored >= committed_before_crash,
        "restored at sequence {restored}, committed {committed_before_crash} before the crash"
    );
    assert!(stats.restored_view.load(Ordering::Relaxed) >= view_before_crash);

    // It takes part again: it commits sequences decided after its restart.
    let others_at_restart = others.replica_last_committed.load(Ordering::Relaxed);
    wait_until(
        "the restarted sequencer commits past the others' sequence at its restart",
        || stats.replica_last_committed.load(Ordering::Relaxed) > others_at_restart + 10,
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    for player in players {
        assert!(player.await.expect("the player finishes") > 0);
    }
    // Every sequencer ends on the same last batch: one history (each batch names its parent),
    // and wherever two are at the same number, they hold the same batch.
    let mut agreed = None;
    wait_until("every sequencer has committed the same last batch", || {
        let last: Vec<_> = devnet
            .sequencers
            .iter()
            .map(|sequencer| *sequencer.stats.last_batch.lock())
            .collect();
        for (number, hash) in &last {
            for (other_number, other_hash) in &last {
                assert!(
                    number != other_number || hash == other_hash,
                    "a fork at batch {number}"
                );
            }
        }
        let same = last.iter().all(|batch| *batch == last[0]);
        agreed = same.then_some(last[0]);
        same
    })
    .await;
    let (number, hash) = agreed.expect("agreed");
    wait_until("the upper chain records the last batch", || {
        devnet.chain.last_batch().expect("embedded") >= number
    })
    .await;
    assert_eq!(
        devnet.chain.batch_hash(number).expect("embedded"),
        Some(hash)
    );
    // No replica saw the restarted one sign two different values for one slot.
    assert_eq!(devnet.chain.equivocations().expect("embedded"), Vec::new());
}
