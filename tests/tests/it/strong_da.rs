//! Strong DA in a devnet run: every finalized batch, every batch's execution record and the
//! genesis are dispersed to the devnet's DA nodes with their commitments on the upper chain, and
//! `shard-node verify`'s replay reads them back from there alone (the local record log deleted),
//! with a DA node down too; a record that claims another outcome is pinned to its move, and
//! what the DA nodes cannot give back is a typed error.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use da_strong::{DaError, client::CertificateDer};
use primitives::{B256, Encode, U256};
use shard_node::{
    record::{Divergence, ExecutionRecord},
    strong_da::{StrongDaError, StrongDaReader},
    verify::{RecordSource, SourceError, StrongDaRecords, VerifyError, VerifyReport, verify},
};
use sim::{
    devnet::{Devnet, DevnetConfig},
    game::GAME_ADDRESS,
};
use upper_chain::{AvailabilityKind, UpperChain, group_id};

/// Bounds how long a broken network can hang a test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

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

fn da_nodes(devnet: &Devnet) -> Vec<(SocketAddr, CertificateDer<'static>)> {
    devnet
        .strong_da_nodes()
        .into_iter()
        .map(|node| (node.address, node.certificate))
        .collect()
}

/// A reader of the devnet's strong DA, knowing only the nodes' addresses and certificates and
/// the upper chain.
fn reader(devnet: &Devnet) -> StrongDaReader {
    StrongDaReader::connect(devnet.chain.clone(), da_nodes(devnet)).expect("reader connects")
}

/// Runs the replay off the runtime's threads (the strong-DA source blocks on the runtime).
async fn verify_from(
    source: impl RecordSource + Send + 'static,
    chain: Arc<dyn UpperChain>,
    chain_id: u64,
    through: u64,
) -> Result<VerifyReport, VerifyError> {
    tokio::task::spawn_blocking(move || {
        let mut source = source;
        verify(&mut source, chain.as_ref(), chain_id, Some(through))
    })
    .await
    .expect("verification task")
}

/// The devnet's records, but batch `number`'s replaced by another one read from strong DA:
/// what a verifier sees if a faulty group dispersed and committed a record of its own.
struct Substituted {
    inner: StrongDaRecords,
    number: u64,
    record: ExecutionRecord,
}

impl RecordSource for Substituted {
    fn genesis(&mut self) -> Result<Option<execution::StateDiff>, SourceError> {
        self.inner.genesis()
    }

    fn record(&mut self, number: u64) -> Result<Option<ExecutionRecord>, SourceError> {
        if number == self.number {
            return Ok(Some(self.record.clone()));
        }
        self.inner.record(number)
    }

    fn batch(&mut self, number: u64) -> Result<Option<primitives::FinalizedBatch>, SourceError> {
        self.inner.batch(number)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_run_verifies_from_strong_da_alone_even_with_a_da_node_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut devnet = Devnet::start(DevnetConfig {
        data_dir: Some(dir.path().join("devnet")),
        // Every batch certifies its groups' roots, so the game group's last root is the last
        // batch that moved it.
        root_commit_interval_batches: 1,
        da_nodes: 4,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let executed = crate::operators::play(&devnet, 29).await;
    let chain: Arc<dyn UpperChain> = devnet.chain.clone();

    // The game group's root after the last move is on the chain; the replay goes up to there
    // (or further, if the network has executed more batches since).
    let game_group = group_id(&devnet.shards.network.lock().group_of(&GAME_ADDRESS));
    wait_until("the game group's root is committed", || {
        chain.group_root(&game_group).expect("chain").is_some()
    })
    .await;
    let root_batch = chain
        .group_root(&game_group)
        .expect("chain")
        .expect("committed")
        .batch;
    let last = devnet.shards.network.lock().last_batch().max(root_batch);
    wait_until(
        "every batch and record up to the last is in strong DA",
        || {
            let recorded =
                |kind, number| chain.availability(kind, number).expect("chain").is_some();
            recorded(AvailabilityKind::Genesis, 0)
                && (1..=last).all(|number| {
                    recorded(AvailabilityKind::ExecutionRecord, number)
                        && recorded(AvailabilityKind::Batch, number)
                })
        },
    )
    .await;

    // From strong DA alone: the local records are gone.
    std::fs::remove_dir_all(dir.path().join("devnet").join("records")).expect("records deleted");
    let handle = tokio::runtime::Handle::current();
    let honest = verify_from(
        StrongDaRecords::new(reader(&devnet), handle.clone()),
        chain.clone(),
        devnet.chain_id,
        last,
    )
    .await
    .expect("an honest run verifies");
    assert_eq!(honest.batches, last);
    assert_eq!(honest.moves as u64, executed);
    // Every record holds exactly its finalized batch's moves, that batch the one committed.
    assert_eq!(honest.batches_matched, last);
    assert!(
        honest
            .roots_checked
            .iter()
            .any(|root| root.group == game_group),
        "the game group's root is checked: {honest:?}"
    );

    // The finalized batches are there too, each under its number.
    let strong_da = reader(&devnet);
    let batch = strong_da
        .batch(last)
        .await
        .expect("batch rebuilt")
        .expect("batch recorded");
    assert_eq!(batch.batch.number, last);

    // With one DA node down, any k of the others still rebuild every record.
    devnet.stop_da_node(0).await.expect("node 0 stops");
    let degraded = verify_from(
        StrongDaRecords::new(reader(&devnet), handle.clone()),
        chain.clone(),
        devnet.chain_id,
        last,
    )
    .await
    .expect("verifies with a DA node down");
    assert_eq!(
        (degraded.batches, degraded.moves),
        (honest.batches, honest.moves)
    );
    assert!(
        degraded
            .roots_checked
            .iter()
            .any(|root| root.group == game_group)
    );

    // A record of its own for the batch that last moved the game, with one move's outcome
    // claiming another value, dispersed and read back from strong DA: the replay pins it to
    // exactly that move.
    let strong_da = reader(&devnet);
    let mut tampered = strong_da
        .record(root_batch)
        .await
        .expect("record rebuilt")
        .expect("record recorded");
    let index = tampered
        .moves
        .iter()
        .position(|recorded| {
            recorded.outcome.status.is_ok()
                && recorded.outcome.diff.accounts.contains_key(&GAME_ADDRESS)
        })
        .expect("the batch moves the game");
    tampered.moves[index]
        .outcome
        .diff
        .accounts
        .get_mut(&GAME_ADDRESS)
        .expect("the game's diff")
        .storage
        .insert(B256::repeat_byte(0x77), U256::from(999_999));
    let hash = tampered.moves[index].signed.hash();
    let dispersal = strong_da
        .client()
        .disperse(&tampered.to_bytes())
        .await
        .expect("dispersed with a node down");
    let read_back = strong_da
        .record_at(root_batch, dispersal.commitment)
        .await
        .expect("tampered record rebuilt");
    assert_eq!(read_back, tampered);
    // A record that leaves out a finalized move does not even get to re-execution.
    let mut short = tampered.clone();
    short.moves.remove(index);
    let outcome = verify_from(
        Substituted {
            inner: StrongDaRecords::new(reader(&devnet), handle.clone()),
            number: root_batch,
            record: short,
        },
        chain.clone(),
        devnet.chain_id,
        last,
    )
    .await;
    assert!(
        matches!(
            outcome,
            Err(VerifyError::MovesNotFinalized { batch, .. }) if batch == root_batch
        ),
        "{outcome:?}"
    );
    let outcome = verify_from(
        Substituted {
            inner: StrongDaRecords::new(strong_da, handle.clone()),
            number: root_batch,
            record: read_back,
        },
        chain.clone(),
        devnet.chain_id,
        last,
    )
    .await;
    match outcome {
        Err(VerifyError::Diverges(Divergence::Outcome {
            batch,
            index: at,
            hash: pinned,
            ..
        })) => assert_eq!((batch, at, pinned), (root_batch, index, hash)),
        other => panic!("expected the tampered move to be pinned, got {other:?}"),
    }

    // What strong DA cannot give back is a typed error: a payload of another kind does not
    // decode as a record, a record under another batch's number is misplaced, and with fewer
    // than k nodes up nothing rebuilds.
    let strong_da = reader(&devnet);
    let batch_commitment = strong_da
        .commitment(AvailabilityKind::Batch, 1)
        .expect("chain")
        .expect("batch 1 recorded");
    assert!(matches!(
        strong_da.record_at(1, batch_commitment).await,
        Err(StrongDaError::Decode {
            kind: AvailabilityKind::ExecutionRecord,
            number: 1,
            ..
        })
    ));
    let record_commitment = strong_da
        .commitment(AvailabilityKind::ExecutionRecord, 1)
        .expect("chain")
        .expect("record 1 recorded");
    assert!(matches!(
        strong_da.record_at(2, record_commitment).await,
        Err(StrongDaError::Misplaced {
            number: 2,
            found: 1,
            ..
        })
    ));
    assert!(matches!(strong_da.record(last + 1_000_000).await, Ok(None)));
    devnet.stop_da_node(1).await.expect("node 1 stops");
    devnet.stop_da_node(2).await.expect("node 2 stops");
    let strong_da = reader(&devnet);
    assert!(matches!(
        strong_da.record(1).await,
        Err(StrongDaError::Retrieve {
            source: DaError::Unavailable { .. },
            ..
        })
    ));
    let unavailable = verify_from(
        StrongDaRecords::new(strong_da, handle),
        chain,
        devnet.chain_id,
        last,
    )
    .await;
    assert!(
        matches!(
            unavailable,
            Err(VerifyError::Source(SourceError::StrongDa(ref error)))
                if matches!(**error, StrongDaError::Retrieve { .. })
        ),
        "{unavailable:?}"
    );
}
