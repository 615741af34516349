//! A game server's loop: four players each move once a frame in turn (60 frames a second),
//! every move sent without waiting for the ack of the last, while a subscription to each
//! player's cell keeps a pending board that is printed once a second.
//!
//! Start a devnet, then point this at its sequencers (the devnet prints their addresses):
//!
//! ```text
//! cargo run --release -p sim --bin devnet
//! cargo run -p client-sdk --example game_loop -- 127.0.0.1:PORT[,127.0.0.1:PORT...] [SECONDS] [CHAIN_ID]
//! ```
//!
//! The game is the devnet's: a 64-cell board whose contract stores each player's cell in the
//! slot keyed by the player's address.

use std::{collections::BTreeMap, net::SocketAddr, time::Duration};

use client_sdk::{
    FailoverClient, FailoverConfig, Signer,
    demo::{BOARD_CELLS, GAME_ADDRESS, game_move, slot_of},
    keys::AccountKey,
};
use primitives::{Address, FinalityLevel, U256, finality::StateItem};

const FRAME: Duration = Duration::from_micros(16_667);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let sequencers = args
        .next()
        .ok_or("usage: game_loop SEQUENCER[,SEQUENCER...] [SECONDS] [CHAIN_ID]")?
        .split(',')
        .map(str::parse)
        .collect::<Result<Vec<SocketAddr>, _>>()?;
    let seconds: u64 = args
        .next()
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(10);
    let chain_id: u64 = args
        .next()
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(4242);

    let client = FailoverClient::connect(FailoverConfig::new(sequencers)).await?;
    let players: Vec<Signer> = (0..4)
        .map(|index| Signer::Account(AccountKey::from_seed(90_000 + index)))
        .collect();
    let mut changes = client.changes();
    let mut events = client.events();
    for player in &players {
        client
            .subscribe(StateItem::Storage(GAME_ADDRESS, slot_of(&player.account())))
            .await?;
    }

    let mut board: BTreeMap<Address, U256> = BTreeMap::new();
    let (mut sent, mut acked, mut executed, mut failed, mut refused) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut frame = tokio::time::interval(FRAME);
    frame.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut print = tokio::time::interval(Duration::from_secs(1));
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while tokio::time::Instant::now() < end {
        tokio::select! {
            _ = frame.tick() => {
                let player = &players[(sent % players.len() as u64) as usize];
                let cell = (sent * 7 + 3) % BOARD_CELLS;
                client.send(player, game_move(player.account(), chain_id, cell)).await?;
                sent += 1;
            }
            Some(change) = changes.recv() => {
                if let (StateItem::Storage(_, slot), Ok(value)) = (change.item, change.value) {
                    board.insert(Address::from_slice(&slot[12..]), value);
                }
            }
            Some(event) = events.recv() => match event.level {
                Ok(FinalityLevel::Pending) => acked += 1,
                Ok(FinalityLevel::Executed) => executed += 1,
                Ok(FinalityLevel::Failed(_)) => failed += 1,
                Err(_) => refused += 1,
                Ok(_) => {}
            },
            _ = print.tick() => {
                let cells: Vec<String> = board
                    .iter()
                    .map(|(player, cell)| format!("{}..@{cell}", &player.to_string()[..6]))
                    .collect();
                println!(
                    "pending board [{}] | sent {sent} acked {acked} executed {executed} failed {failed} refused {refused} | sequencer {}",
                    cells.join(" "),
                    client.sequencer()
                );
            }
        }
    }
    Ok(())
}
