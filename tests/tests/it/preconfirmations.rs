//! Signed preconfirmations held to account on the upper chain: two sequencers under the same
//! load of players, each ack checked and kept by the SDK. The byzantine one signs the ack of a
//! move it then never packs; once the promised heights are finalized, the ack, the committed
//! batches and the blocks' bodies from weak DA expel it on the embedded chain. The honest one's
//! acks, held against it the same way, are refused: each move is where it promised.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use client_sdk::Client;
use da_weak::WeakDa;
use primitives::{
    AccountKey, Batch, BlockBody, NodeId, SignedTransaction,
    bls::BlsSecretKey,
    preconf::{
        Preconfirmation, PreconfirmationError, PreconfirmationEvidence, SignedPreconfirmation,
    },
};
use sequencer::{
    mesh::{InProcessMesh, PeerLinks},
    node::{IngressConfig, SequencerConfig, SequencerHandle, SequencerWiring},
};
use sim::{game::move_piece, load::player_key};
use tokio::sync::{broadcast, mpsc};
use upper_chain::{ChainError, EmbeddedChain, SequencerRecord, UpperChain};

/// Bounds how long a broken network can hang a test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);
const CHAIN_ID: u64 = 0x7e57;
/// Devnet index of the sequencer that breaks its promise.
const BYZANTINE: usize = 0;
const HONEST: usize = 1;
/// Acks of the honest sequencer held against it.
const HONEST_ACKS_CHECKED: usize = 12;

/// Each sequencer's acked moves (by devnet index), with the preconfirmation each ack carried.
type AckedBySequencer = HashMap<usize, Vec<(SignedTransaction, SignedPreconfirmation)>>;

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

/// Two sequencers on one embedded chain, their bodies in one weak DA, and the batches the
/// honest one finalized, as a watcher of the network would collect them.
struct Network {
    chain: Arc<EmbeddedChain>,
    sequencers: Vec<SequencerHandle>,
    keys: Vec<AccountKey>,
    weak_da: WeakDa,
    finalized: Arc<Mutex<Vec<Batch>>>,
    _alive: Vec<broadcast::Sender<Arc<execution::ExecutedBatch>>>,
    _dir: tempfile::TempDir,
}

async fn start() -> Network {
    let dir = tempfile::tempdir().expect("temporary directory");
    let keys: Vec<AccountKey> = (1..=2)
        .map(|seed| AccountKey::from_seed(7_700 + seed))
        .collect();
    let secrets: Vec<BlsSecretKey> = (1..=2u8)
        .map(|seed| BlsSecretKey::from_seed(&[seed + 70; 32]))
        .collect();
    let ids: Vec<NodeId> = keys.iter().map(|key| NodeId(key.address())).collect();
    let records: Vec<SequencerRecord> = ids
        .iter()
        .zip(&secrets)
        .map(|(id, secret)| SequencerRecord {
            id: *id,
            bls_key: secret.public_key(),
        })
        .collect();
    let set: Vec<_> = records.iter().map(|r| (r.id, r.bls_key)).collect();
    let chain = Arc::new(EmbeddedChain::new(records));
    let weak_da = WeakDa::local(&dir.path().join("weak-da")).expect("weak DA directory");
    let finalized = Arc::new(Mutex::new(Vec::new()));
    let mut sequencers = Vec::new();
    let mut alive = Vec::new();
    for (index, (mesh, inbound)) in InProcessMesh::connect(&ids).into_iter().enumerate() {
        let (batches_out, mut batches) = mpsc::channel::<primitives::FinalizedBatch>(1_024);
        let collected = (index == HONEST).then(|| finalized.clone());
        tokio::spawn(async move {
            while let Some(batch) = batches.recv().await {
                if let Some(collected) = &collected {
                    collected.lock().expect("not poisoned").push(batch.batch);
                }
            }
        });
        let (executed_sender, executed) = broadcast::channel(16);
        alive.push(executed_sender);
        let handle = sequencer::node::spawn(
            SequencerConfig {
                chain_id: CHAIN_ID,
                tick: Duration::from_millis(10),
                client_listen: "127.0.0.1:0".parse().expect("address"),
                ingress: IngressConfig::default(),
            },
            SequencerWiring {
                key: keys[index].clone(),
                bls: secrets[index].clone(),
                sequencers: set.clone(),
                mesh: Arc::new(mesh) as Arc<dyn PeerLinks>,
                inbound,
                weak_da: weak_da.clone(),
                chain: chain.clone(),
                finalized: batches_out,
                executed,
                wal: None,
                consensus_dir: None,
                bodies: None,
            },
        )
        .await
        .expect("sequencer starts");
        sequencers.push(handle);
    }
    Network {
        chain,
        sequencers,
        keys,
        weak_da,
        finalized,
        _alive: alive,
        _dir: dir,
    }
}

impl Network {
    /// The highest height of `sequencer` in a finalized batch so far.
    fn finalized_height(&self, sequencer: NodeId) -> Option<u64> {
        self.finalized
            .lock()
            .expect("not poisoned")
            .iter()
            .flat_map(|batch| &batch.headers)
            .filter(|header| header.sequencer == sequencer)
            .map(|header| header.height)
            .max()
    }

    /// Waits until every height of the promise's window is finalized, then gathers the
    /// evidence a watcher would submit: the batches holding those heights and their bodies.
    async fn evidence(
        &self,
        preconfirmation: SignedPreconfirmation,
        signed_move: SignedTransaction,
    ) -> PreconfirmationEvidence {
        let promise = preconfirmation.preconfirmation;
        wait_until("the promised heights are finalized", || {
            self.finalized_height(promise.sequencer)
                .is_some_and(|height| height >= promise.height_last)
        })
        .await;
        let mut batches: Vec<Batch> = Vec::new();
        let mut headers = Vec::new();
        for height in promise.height_first..=promise.height_last {
            let finalized = self.finalized.lock().expect("not poisoned");
            let batch = finalized
                .iter()
                .find(|batch| {
                    batch.headers.iter().any(|header| {
                        header.sequencer == promise.sequencer && header.height == height
                    })
                })
                .expect("every height up to the highest finalized one is in a batch");
            let header = batch
                .headers
                .iter()
                .find(|header| header.sequencer == promise.sequencer && header.height == height)
                .expect("found above")
                .clone();
            if !batches.iter().any(|kept| kept.number == batch.number) {
                batches.push(batch.clone());
            }
            headers.push(header);
        }
        let mut bodies: Vec<BlockBody> = Vec::new();
        for header in &headers {
            bodies.push(
                self.weak_da
                    .get_body(header)
                    .await
                    .expect("a finalized block's body is in weak DA"),
            );
        }
        PreconfirmationEvidence {
            preconfirmation,
            signed_move,
            batches,
            bodies,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_that_drops_an_acked_move_is_expelled_and_an_honest_one_is_not() {
    let network = start().await;
    let id_of = |index: usize| network.sequencers[index].id;

    // The same load on both: players send moves one after another, each acked with a promise
    // the SDK checks against the sequencer it connected to.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<AckedBySequencer>> = Arc::default();
    let players: Vec<_> = (0..4)
        .map(|index| {
            let sequencer = index % 2;
            let address = network.sequencers[sequencer].client_addr;
            let expected = id_of(sequencer);
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let client = Client::connect(address).await.expect("connects");
                client.expect_sequencer(expected);
                let key = player_key(81, index);
                let mut nonce = 0;
                while !stop.load(Ordering::Relaxed) {
                    let signed = move_piece(&key, CHAIN_ID, nonce, nonce % 5);
                    let submission = client.submit(signed.clone()).await.expect("sent");
                    let hash = submission.hash;
                    submission.ack().await.expect("acked as pending");
                    let preconfirmation = client
                        .preconfirmation(&hash)
                        .expect("the ack carried a preconfirmation")
                        .expect("signed by the sequencer connected to");
                    assert_eq!(preconfirmation.preconfirmation.sequencer, expected);
                    acked
                        .lock()
                        .expect("not poisoned")
                        .entry(sequencer)
                        .or_default()
                        .push((signed, preconfirmation));
                    nonce += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                nonce
            })
        })
        .collect();

    // The byzantine sequencer acks a move and never packs it: a promise signed with its
    // operator key for heights its players' blocks will fill, the move kept from its mempool.
    let byzantine = id_of(BYZANTINE);
    wait_until("the byzantine sequencer has finalized blocks", || {
        network.finalized_height(byzantine).is_some()
    })
    .await;
    let from = network.finalized_height(byzantine).expect("waited for") + 3;
    let dropped = move_piece(&player_key(82, 0), CHAIN_ID, 0, 1);
    let promise = Preconfirmation {
        hash: dropped.hash(),
        sequencer: byzantine,
        seq: 1_000_000,
        tick: from + 2,
        height_first: from,
        height_last: from + 1,
    };
    let broken = SignedPreconfirmation::sign_group(&network.keys[BYZANTINE], &[promise]).remove(0);
    // What a client connected to it would have accepted.
    assert_eq!(broken.verify(Some(&byzantine)), Ok(()));
    let evidence = network.evidence(broken.clone(), dropped).await;
    network
        .chain
        .report_broken_preconfirmation(&evidence)
        .expect("the ack proves the promise broken");
    assert_eq!(
        network.chain.broken_preconfirmations().expect("embedded"),
        vec![(byzantine, broken)]
    );
    let candidates = network.chain.sequencer_candidates().expect("embedded");
    assert!(candidates.iter().all(|c| c.record.id != byzantine));
    assert!(candidates.iter().any(|c| c.record.id == id_of(HONEST)));
    assert_eq!(
        network.chain.report_broken_preconfirmation(&evidence),
        Err(ChainError::Expelled(byzantine))
    );

    // The honest sequencer's acks, held against it the same way, prove nothing: each move is
    // in its block within the promised heights.
    wait_until("the honest sequencer has acked enough moves", || {
        acked
            .lock()
            .expect("not poisoned")
            .get(&HONEST)
            .is_some_and(|acks| acks.len() >= HONEST_ACKS_CHECKED)
    })
    .await;
    let honest_acks: Vec<_> =
        acked.lock().expect("not poisoned")[&HONEST][..HONEST_ACKS_CHECKED].to_vec();
    for (signed, preconfirmation) in honest_acks {
        let promise = preconfirmation.preconfirmation;
        let evidence = network.evidence(preconfirmation, signed).await;
        match network.chain.report_broken_preconfirmation(&evidence) {
            Err(ChainError::InvalidPreconfirmationEvidence(PreconfirmationError::Kept {
                height,
            })) => assert!((promise.height_first..=promise.height_last).contains(&height)),
            other => panic!("an honest ack was held against its sequencer: {other:?}"),
        }
    }
    assert!(
        network
            .chain
            .sequencer_candidates()
            .expect("embedded")
            .iter()
            .any(|c| c.record.id == id_of(HONEST))
    );
    assert_eq!(
        network
            .chain
            .broken_preconfirmations()
            .expect("embedded")
            .len(),
        1
    );

    stop.store(true, Ordering::Relaxed);
    for player in players {
        assert!(player.await.expect("the player finishes") > 0);
    }
}
