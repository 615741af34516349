//! Sequencer sets per epoch from the upper chain: four sequencers start, a fifth whitelisted
//! at genesis joins at the first epoch boundary and then signs commits; the primary of view 0
//! equivocates, the other sequencers record its evidence on the chain, the first epoch fixed
//! after that leaves it out, and batches keep committing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use client_sdk::Client;
use consensus::{Message, PrePrepare};
use primitives::{Batch, Encode, NodeId};
use sequencer::mesh::PeerMessage;
use sim::{
    devnet::{Devnet, DevnetConfig, MeshKind},
    game::move_piece,
    load::player_key,
};
use upper_chain::UpperChain;

/// Bounds how long a broken network can hang a test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

/// PBFT sequences in a sequencer epoch.
const EPOCH_LENGTH: u64 = 60;

/// The devnet index of the sequencer that equivocates: validator 0 of epoch 0, the primary of
/// view 0.
const EQUIVOCATOR: usize = 0;

/// The devnet index of the standby sequencer that joins at the first boundary.
const JOINER: usize = 4;

/// Waits until `condition` holds, polling; panics with `what` after [`LIVENESS_BOUND`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    tokio::time::timeout(LIVENESS_BOUND, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting until {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joiner_serves_from_the_next_epoch_and_an_equivocator_is_left_out_of_the_one_after_its_evidence()
 {
    let devnet = Devnet::start(DevnetConfig {
        sequencers: 4,
        standby_sequencers: 1,
        sequencer_epoch_length: Some(EPOCH_LENGTH),
        mesh: MeshKind::InProcess,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let chain = devnet.chain.clone();
    let id_of = |index: usize| devnet.sequencers[index].id;
    let zero = chain
        .sequencer_epoch(0)
        .expect("embedded")
        .expect("epoch 0");
    assert_eq!(zero.length, Some(EPOCH_LENGTH));
    assert_eq!(zero.sequencers.len(), 4);
    assert!(
        !zero
            .sequencers
            .iter()
            .any(|record| record.id == id_of(JOINER))
    );
    assert_eq!(zero.sequencers[0].id, id_of(EQUIVOCATOR));

    // Players on sequencers 1..=3 keep batches coming.
    let stop = Arc::new(AtomicBool::new(false));
    let players: Vec<_> = (0..6)
        .map(|index| {
            let address = devnet.sequencer_addr(1 + index % 3);
            let chain_id = devnet.chain_id;
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = Client::connect(address).await.expect("connects");
                let key = player_key(43, index);
                let mut nonce = 0;
                while !stop.load(Ordering::Relaxed) {
                    let submission = client
                        .submit(move_piece(&key, chain_id, nonce, nonce % 5))
                        .await
                        .expect("sent");
                    submission.ack().await.expect("acked as pending");
                    nonce += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                nonce
            })
        })
        .collect();

    // The primary of view 0 signs a second pre-prepare for a slot it proposed, and sends it
    // over its own authenticated links: the others hold its first one, so they see the
    // conflict, and report it. (Retried on later slots: a slot may leave the window first.)
    let honest = devnet.sequencers[1].stats.clone();
    let equivocator_links = devnet.peer_links(EQUIVOCATOR);
    let equivocator_key = devnet.sequencer_key(EQUIVOCATOR);
    wait_until("the equivocation is recorded on the upper chain", || {
        if !chain.equivocations().expect("embedded").is_empty() {
            return true;
        }
        let sequence = honest.replica_last_committed.load(Ordering::Relaxed);
        if sequence == 0 || honest.replica_view.load(Ordering::Relaxed) != 0 {
            return false;
        }
        let forged = Batch {
            number: u64::MAX,
            parent: primitives::B256::repeat_byte(0xee),
            headers: Vec::new(),
        };
        let message = Message::PrePrepare(PrePrepare::new(&equivocator_key, 0, sequence, forged));
        let bytes = PeerMessage::Consensus(message.to_bytes()).to_bytes();
        for peer in 1..4 {
            equivocator_links.send(&id_of(peer), bytes.clone());
        }
        false
    })
    .await;
    let recorded = chain.equivocations().expect("embedded");
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].0, id_of(EQUIVOCATOR));
    // The epochs fixed before the evidence was recorded keep it; the next one fixed does not.
    let mut fixed_before = 0;
    while chain
        .sequencer_epoch(fixed_before + 1)
        .expect("embedded")
        .is_some()
    {
        fixed_before += 1;
    }
    for epoch in 0..=fixed_before {
        let set = chain
            .sequencer_epoch(epoch)
            .expect("embedded")
            .expect("fixed");
        assert!(
            set.sequencers
                .iter()
                .any(|record| record.id == id_of(EQUIVOCATOR))
        );
    }

    // The joiner was whitelisted at genesis: epoch 1 has it, and it enters epoch 1 and signs
    // commit certificates there.
    let joiner = devnet.sequencers[JOINER].stats.clone();
    wait_until("the joiner signs commits of epoch 1 or later", || {
        joiner.replica_epoch.load(Ordering::Relaxed) >= 1
            && joiner.commits_signed.load(Ordering::Relaxed) >= 3
    })
    .await;
    let one = chain.sequencer_epoch(1).expect("embedded").expect("fixed");
    assert!(
        one.sequencers
            .iter()
            .any(|record| record.id == id_of(JOINER))
    );

    // The first epoch fixed after the evidence leaves the equivocator out, and the network
    // commits in it.
    let expelled_from = fixed_before + 1;
    wait_until("the epoch after the evidence is fixed", || {
        chain
            .sequencer_epoch(expelled_from)
            .expect("embedded")
            .is_some()
    })
    .await;
    let after = chain
        .sequencer_epoch(expelled_from)
        .expect("embedded")
        .expect("fixed");
    let members: Vec<NodeId> = after.sequencers.iter().map(|record| record.id).collect();
    assert!(!members.contains(&id_of(EQUIVOCATOR)));
    assert!(members.contains(&id_of(JOINER)));
    assert_eq!(members.len(), 4);
    let target = after.first + 10;
    wait_until(
        "the sequencers commit ten sequences into that epoch",
        || {
            (1..=4).all(|index| {
                devnet.sequencers[index]
                    .stats
                    .replica_last_committed
                    .load(Ordering::Relaxed)
                    >= target
            })
        },
    )
    .await;
    assert!(
        devnet.sequencers[EQUIVOCATOR]
            .stats
            .replica_epoch
            .load(Ordering::Relaxed)
            < expelled_from
            || devnet.sequencers[EQUIVOCATOR]
                .stats
                .retired
                .load(Ordering::Relaxed)
    );
    // The upper chain accepted the batches of the new epoch, certified by its set.
    let last = chain.last_batch().expect("embedded");
    assert!(last > 0);
    stop.store(true, Ordering::Relaxed);
    for player in players {
        assert!(player.await.expect("the player finishes") > 0);
    }
}
