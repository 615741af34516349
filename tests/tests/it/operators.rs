//! Operator accounting over a devnet run: the shard nodes sign their usage per epoch into their
//! data directories, and the compensation report built from those files and the registry shows,
//! for every node, exactly the moves its groups executed.

use std::{collections::BTreeMap, time::Duration};

use accounting::{
    Rates,
    report::{self, Period},
    usage::summarise,
};
use client_sdk::Client;
use primitives::{AccountKey, FinalityLevel, NodeId};
use sim::{
    devnet::{Devnet, DevnetConfig, operator_wallet},
    game::{BOARD_CELLS, GAME_ADDRESS, move_piece},
    load::player_key,
};

/// Bounds how long a broken network can hang a test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);
const PLAYERS: usize = 12;
const MOVES_PER_PLAYER: u64 = 8;

/// Sends every player's moves in two waves (the second once the first executed, so the run
/// spans several batches), and returns how many executed.
pub(crate) async fn play(devnet: &Devnet, seed: u64) -> u64 {
    let mut clients = Vec::new();
    for index in 0..PLAYERS {
        let client = Client::connect(devnet.sequencer_addr(index))
            .await
            .expect("connects");
        clients.push((player_key(seed, index), client));
    }
    let mut executed = 0;
    let half = MOVES_PER_PLAYER / 2;
    for wave in [0..half, half..MOVES_PER_PLAYER] {
        let mut sent = Vec::new();
        for (index, (key, client)) in clients.iter().enumerate() {
            for nonce in wave.clone() {
                let cell = (index as u64 * 7 + nonce) % BOARD_CELLS;
                let hash = client
                    .submit_and_ack(move_piece(key, devnet.chain_id, nonce, cell))
                    .await
                    .expect("acked");
                sent.push((client.clone(), hash));
            }
        }
        for (client, hash) in &sent {
            let level = tokio::time::timeout(
                LIVENESS_BOUND,
                client.wait_for(*hash, FinalityLevel::Executed),
            )
            .await
            .expect("the move reaches a final level")
            .expect("the session stays open");
            assert_eq!(level, FinalityLevel::Executed);
            executed += 1;
        }
    }
    executed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_report_over_a_devnet_run_shows_the_moves_each_nodes_groups_executed() {
    let devnet = Devnet::start(DevnetConfig {
        // One batch an epoch, so the run spans several and the report sums them; every batch
        // certifies its groups' roots, so group rounds are counted too.
        usage_epoch_batches: 1,
        root_commit_interval_batches: 1,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let executed = play(&devnet, 17).await;
    assert_eq!(executed, PLAYERS as u64 * MOVES_PER_PLAYER);
    let signed = devnet.close_accounting().await.expect("usage written");
    let last_epoch = signed
        .iter()
        .map(|usage| usage.report.epoch)
        .max()
        .expect("signed");
    assert!(last_epoch > 1, "the run spans several epochs");

    // What each node's groups executed: every game move runs in the game's group, whose every
    // member executes it.
    let (game_group, ids) = {
        let mut network = devnet.shards.network.lock();
        (network.group_of(&GAME_ADDRESS), network.snapshot().ids())
    };
    let expected: BTreeMap<NodeId, u64> = ids
        .iter()
        .map(|id| {
            let moves = if game_group.contains(id) { executed } else { 0 };
            (*id, moves)
        })
        .collect();

    // The report, from the nodes' files and the upper chain's registry alone.
    let (reports, observations) =
        accounting::node::collect(&devnet.accounting_dir()).expect("files read");
    assert_eq!(reports.len(), ids.len() * last_epoch as usize);
    let period = Period::new(1, last_epoch).expect("period");
    let summary = summarise(period.epochs(), 3_600, &reports, &observations);
    assert!(summary.refused.is_empty(), "{:?}", summary.refused);
    let cut: Vec<_> = summary
        .discrepancies
        .iter()
        .filter(|cut| cut.figure != accounting::Figure::UptimeSeconds)
        .collect();
    assert!(cut.is_empty(), "witnesses disagree with claims: {cut:?}");
    let nodes = report::registry_over(devnet.chain.as_ref(), period).expect("registry");
    let rates = Rates::example();
    let rows = report::build(period, &nodes, &summary, &rates, |_| 0);
    let mut csv = Vec::new();
    report::write_csv(&rows, &mut csv).expect("written");
    let rows = report::read_csv(csv.as_slice()).expect("reads back");

    let reported: BTreeMap<NodeId, u64> = rows
        .iter()
        .map(|row| (row.node.id, row.usage.moves_executed))
        .collect();
    assert_eq!(reported, expected);
    for index in 0..ids.len() {
        // The devnet's node `index` has the key of seed 2,000 + index.
        let id = &NodeId(AccountKey::from_seed(2_000 + index as u64).address());
        let row = rows.iter().find(|row| row.node.id == *id).expect("a row");
        let (wallet, features) = operator_wallet(index);
        assert_eq!(
            (row.node.wallet, &row.node.wallet_features),
            (wallet, &features),
            "node {index}"
        );
        assert_eq!(
            row.owed,
            row.compensation.iter().sum::<u128>(),
            "owed adds up"
        );
        if game_group.contains(id) {
            assert_eq!(row.compensation[0], u128::from(executed) * 1_000);
        }
        assert!(row.usage.state_bytes > 0, "every node holds a store");
    }
    // A round counts for the members whose signature its commit certificate carries: a quorum
    // of the game's group for each round the group certified.
    let signers = rows
        .iter()
        .filter(|row| game_group.contains(&row.node.id) && row.usage.group_rounds > 0)
        .count();
    assert!(signers >= upper_chain::quorum(game_group.len()), "{rows:?}");

    // Each node's own view agrees: its ledger saw slices shipped to or from the game's group.
    let operators = devnet.operators.lock();
    let member = game_group[0];
    let ledger = operators.node(&member).expect("a node").peer_ledger();
    assert!(
        ledger
            .peers()
            .any(|(_, account)| account.received(accounting::Service::SyncSlices) > 0),
        "the executing group takes the slices other groups ship"
    );
}
