//! A player that polls pending state: it moves its piece twice a second and reads its cell and
//! its nonce from the sequencer's pending state ten times a second, printing each change and how
//! far its last move has gone. No subscription: what a web client behind a plain request loop
//! would do.
//!
//! ```text
//! cargo run --release -p sim --bin devnet
//! cargo run -p client-sdk --example poll_pending -- 127.0.0.1:PORT[,127.0.0.1:PORT...] [SECONDS] [CHAIN_ID]
//! ```

use std::{net::SocketAddr, time::Duration};

use client_sdk::{
    FailoverClient, FailoverConfig, Signer,
    demo::{GAME_ADDRESS, game_move, slot_of},
    keys::AccountKey,
};
use primitives::U256;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let sequencers = args
        .next()
        .ok_or("usage: poll_pending SEQUENCER[,SEQUENCER...] [SECONDS] [CHAIN_ID]")?
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
    let player = Signer::Account(AccountKey::from_seed(91_000));
    let account = player.account();
    let mut last_move = None;
    let mut seen = (U256::MAX, u64::MAX);
    let mut poll = tokio::time::interval(Duration::from_millis(100));
    let mut step = 0u64;
    let end = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while tokio::time::Instant::now() < end {
        poll.tick().await;
        if step.is_multiple_of(5) {
            let cell = (step / 5 * 11 + 1) % 64;
            let handle = client
                .send(&player, game_move(account, chain_id, cell))
                .await?;
            println!("sent move to cell {cell} with nonce {}", handle.nonce);
            last_move = Some(handle.hash);
        }
        step += 1;
        let cell = client
            .pending_storage(GAME_ADDRESS, slot_of(&account))
            .await?;
        let nonce = client.pending_nonce(account).await?;
        if (cell, nonce) != seen {
            seen = (cell, nonce);
            let level = last_move.and_then(|hash| client.level(&hash));
            println!("pending: cell {cell}, next nonce {nonce}; last move {level:?}");
        }
    }
    Ok(())
}
