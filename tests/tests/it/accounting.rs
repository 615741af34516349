//! Soft accounting of a relay, from both sides: the relay's node and the node it forwards for
//! keep their own ledgers from their own counters, and the ledgers agree.

use std::time::Duration;

use accounting::{LedgerConfig, LedgerEvent, PeerLedger, Service, ledger::Standing};
use netstack::{
    relay::{RelayClient, RelayConfig, RelayServer},
    secure::NodeIdentity,
};
use primitives::keys::AccountKey;
use tokio::{net::UdpSocket, time::timeout};

/// A channel of B's exposed UDP service.
const CHANNEL: u8 = 9;
const DATAGRAMS: usize = 300;
const PAYLOAD: usize = 100;

fn identity(seed: u64) -> NodeIdentity {
    NodeIdentity::new(AccountKey::from_seed(seed))
}

fn loopback() -> std::net::SocketAddr {
    "127.0.0.1:0".parse().expect("an address")
}

#[tokio::test]
async fn a_relay_and_the_node_it_serves_count_the_same_bytes_and_flag_the_crossing_once() {
    let relay = RelayServer::bind(loopback(), RelayConfig::default())
        .await
        .expect("relay");
    let relay_node = identity(40).node_id();
    let (a, b) = (identity(41), identity(42));

    // B exposes an echo service through the relay; A reaches it through a tunnel.
    let echo = UdpSocket::bind(loopback()).await.expect("bind");
    let b_relay = timeout(
        Duration::from_secs(30),
        RelayClient::register(relay.local_addr(), &b),
    )
    .await
    .expect("in time")
    .expect("B registered");
    b_relay
        .expose(CHANNEL, echo.local_addr().expect("addr"))
        .await
        .expect("exposed");
    let a_relay = timeout(
        Duration::from_secs(30),
        RelayClient::register(relay.local_addr(), &a),
    )
    .await
    .expect("in time")
    .expect("A registered");
    let stand_in = a_relay
        .tunnel_to(b.node_id(), CHANNEL)
        .await
        .expect("tunnel");
    tokio::spawn(async move {
        let mut buffer = [0u8; 2048];
        while let Ok((len, from)) = echo.recv_from(&mut buffer).await {
            let _ = echo.send_to(&buffer[..len], from).await;
        }
    });

    // The relay's node flags a peer past 10 KB of relaying; it reads the relay's cumulative
    // per-node counters as a node would, every few datagrams.
    let mut relay_ledger = PeerLedger::new(LedgerConfig {
        prices: [1, 4096, 4096],
        peer_debt_max: 10_000,
        own_debt_max: 10_000,
    });
    let mut a_ledger = PeerLedger::new(LedgerConfig::default());
    let mut relay_events = Vec::new();
    let player = UdpSocket::bind(loopback()).await.expect("bind");
    let mut echoed = 0;
    let mut buffer = [0u8; 2048];
    for round in 0..DATAGRAMS {
        player
            .send_to(&[round as u8; PAYLOAD], stand_in)
            .await
            .expect("send");
        if let Ok(Ok((len, _))) =
            timeout(Duration::from_millis(500), player.recv_from(&mut buffer)).await
        {
            assert_eq!(len, PAYLOAD);
            echoed += 1;
        }
        if round % 7 == 0 {
            for (node, usage) in relay.usages() {
                relay_events.extend(relay_ledger.gave_total(
                    node,
                    Service::RelayedBytes,
                    usage.bytes(),
                ));
            }
        }
    }
    // Let what is in flight land, then read the counters once more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for (node, usage) in relay.usages() {
        relay_events.extend(relay_ledger.gave_total(node, Service::RelayedBytes, usage.bytes()));
    }
    let a_stats = a_relay.stats();
    a_ledger.received_total(
        relay_node,
        Service::RelayedBytes,
        a_stats.forwarded_bytes + a_stats.received_bytes,
    );

    // Both sides count the same bytes for A, less whatever was lost between them (on loopback
    // a lost datagram is rare, and each costs at most one payload).
    let relay_count = relay_ledger
        .account(&a.node_id())
        .expect("A was relayed for")
        .given(Service::RelayedBytes);
    let a_count = a_ledger
        .account(&relay_node)
        .expect("A was relayed")
        .received(Service::RelayedBytes);
    let lost = (DATAGRAMS - echoed) as u64;
    assert!(
        echoed > DATAGRAMS * 9 / 10,
        "only {echoed} of {DATAGRAMS} echoed"
    );
    assert!(
        relay_count.abs_diff(a_count) <= 2 * lost * PAYLOAD as u64,
        "relay counted {relay_count}, A counted {a_count}, {lost} lost"
    );
    assert!(relay_count >= (2 * echoed * PAYLOAD) as u64);
    assert_eq!(a_ledger.balance(&relay_node), -i128::from(a_count));

    // A and B each went past 10 KB once: one crossing each, however often the counters were
    // read after it.
    let crossings: Vec<_> = relay_events
        .iter()
        .filter_map(|event| match event {
            LedgerEvent::OutOfBounds { peer, standing, .. } => Some((*peer, *standing)),
            LedgerEvent::BackWithin { .. } => None,
        })
        .collect();
    assert_eq!(crossings.len(), 2, "{relay_events:?}");
    for node in [a.node_id(), b.node_id()] {
        assert!(crossings.contains(&(node, Standing::PeerOverdrawn)));
    }
    assert_eq!(relay_ledger.out_of_bounds(), 2);
}
