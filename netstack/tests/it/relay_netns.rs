//! The multi-host relay test (feature `emulated-link`; needs root, as CI has): A and B in
//! network namespaces that cannot route to each other, each connected only to R's network,
//! exchange messages through the relay on R that A's IP-proximity table picks. Without root it
//! says so and passes, unless `CI=true`, where it fails.

use std::{
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::Command,
    time::Duration,
};

use alloy_primitives::Address;
use netstack::{
    dht::ProximityTable,
    driver::{KcpConnection, KcpServer},
    emulated::RelayNetwork,
    kcp::KcpConfig,
    relay::{KCP_CHANNEL, RelayClient, RelayConfig, RelayServer, Route, dial},
    secure::{NodeIdentity, PeerPolicy},
};
use primitives::{id::NodeId, keys::AccountKey, time::Instant};
use tokio::net::UdpSocket;

use crate::{guarded, request_and_reply};

const RELAY_PORT: u16 = 7_700;
const SERVER_PORT: u16 = 7_800;
const MESSAGES: u32 = 200;
/// How long each path (direct, then each relay) may take before `dial` moves on.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);

fn identity(seed: u64) -> NodeIdentity {
    NodeIdentity::new(AccountKey::from_seed(seed))
}

fn decoy(n: u8) -> NodeId {
    NodeId(Address::repeat_byte(n))
}

fn at(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

fn namespaces_listed() -> String {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_that_cannot_route_to_each_other_talk_through_the_nearest_relay() {
    let network = match RelayNetwork::start() {
        Ok(network) => network,
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: no namespaces here ({error}); CI runs this as root");
            return;
        }
        Err(error) => panic!("CI must be able to build the relay network: {error}"),
    };
    let names = network.namespaces().map(str::to_string);
    let listed = namespaces_listed();
    assert!(names.iter().all(|name| listed.contains(name.as_str())));
    let (a, b, r) = (identity(31), identity(32), identity(33));
    let b_addr = at(network.address_b(), SERVER_PORT);

    // A has no route to B at all.
    let unroutable = network.host_a().spawn(async move {
        let socket = UdpSocket::bind("0.0.0.0:0").await.expect("bind in A");
        socket.send_to(b"hello B", b_addr).await.map(|_| ())
    });
    let error = guarded("A sends to B", unroutable)
        .await
        .expect("task")
        .expect_err("A cannot route to B");
    assert_eq!(error.kind(), ErrorKind::NetworkUnreachable, "{error}");

    // R: a relay on every address it has, on both networks.
    let relay = network.host_r().spawn(RelayServer::bind(
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, RELAY_PORT)),
        RelayConfig::default(),
    ));
    let relay = guarded("relay binds", relay)
        .await
        .expect("task")
        .expect("relay");

    // B: a secure server only A may open; it registers with the reachable peer nearest to
    // itself in its proximity table, and exposes the server there.
    let mut table_b = ProximityTable::new();
    let t0 = Instant::ZERO;
    table_b.handle_seen(
        t0,
        at(network.address_r_from_b(), RELAY_PORT),
        r.node_id(),
        true,
    );
    table_b.handle_seen(
        t0,
        "10.77.2.9:7700".parse().expect("addr"),
        decoy(0xd1),
        false,
    );
    table_b.handle_seen(
        t0,
        "192.0.2.1:7700".parse().expect("addr"),
        decoy(0xd2),
        true,
    );
    let b_relay_addr = table_b
        .closest(b_addr, 8)
        .into_iter()
        .find(|entry| entry.reachable)
        .expect("a reachable peer")
        .addr;
    assert_eq!(b_relay_addr, at(network.address_r_from_b(), RELAY_PORT));
    let b_side = network.host_b().spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            let (server, incoming) = KcpServer::bind_secure(
                b_addr,
                KcpConfig::default(),
                b.clone(),
                PeerPolicy::Only(vec![a.node_id()]),
            )
            .await
            .expect("bind in B");
            let client = RelayClient::register(b_relay_addr, &b)
                .await
                .expect("B registers at R");
            client
                .expose(KCP_CHANNEL, server.local_addr())
                .await
                .expect("exposed");
            (server, incoming, client)
        }
    });
    let (server, mut incoming, b_relay) = guarded("B comes up", b_side).await.expect("task");
    let reachability = b_relay.reachability();
    assert_eq!(reachability.observed.ip(), network.address_b());
    assert!(reachability.is_direct(), "{reachability:?}");

    // A's proximity table: R as A reaches it, a nearer spot that is not reachable (no relay),
    // a reachable peer on A's own network that is farther from B than R, and one far away. The
    // two reachable decoys have nothing listening: picking either would fail the dial there.
    let mut table_a = ProximityTable::new();
    let r_from_a = at(network.address_r_from_a(), RELAY_PORT);
    table_a.handle_seen(t0, r_from_a, r.node_id(), true);
    table_a.handle_seen(
        t0,
        "10.77.3.1:7700".parse().expect("addr"),
        decoy(0xa1),
        false,
    );
    table_a.handle_seen(
        t0,
        "10.77.1.99:7700".parse().expect("addr"),
        decoy(0xa2),
        true,
    );
    table_a.handle_seen(
        t0,
        "192.0.2.1:7700".parse().expect("addr"),
        decoy(0xa3),
        true,
    );
    let a_addr = at(network.address_a(), 0);
    let ranked: Vec<NodeId> = table_a
        .relays_between(a_addr, b_addr, 8)
        .iter()
        .map(|candidate| candidate.entry.node)
        .collect();
    assert_eq!(ranked, vec![r.node_id(), decoy(0xa2), decoy(0xa3)]);

    // A dials B: the direct path fails (no route), so A goes through the best relay.
    let a_side = network.host_a().spawn({
        let (a, b) = (a.clone(), b.clone());
        async move {
            dial(
                b.node_id(),
                b_addr,
                a_addr,
                &table_a,
                KcpConfig::default(),
                &a,
                ATTEMPT_TIMEOUT,
            )
            .await
        }
    });
    let (mut client, route) = guarded("A dials B", a_side)
        .await
        .expect("task")
        .expect("A reaches B");
    let Route::Relayed {
        relay: relay_node,
        client: a_relay,
    } = route
    else {
        panic!("A cannot reach B directly, yet the route was {route:?}");
    };
    assert_eq!(relay_node, r.node_id());
    assert_eq!(a_relay.relay(), r_from_a);
    assert_eq!(a_relay.reachability().observed.ip(), network.address_a());

    let mut accepted: KcpConnection = guarded("B accepts", incoming.recv())
        .await
        .expect("a connection");
    // The secure session is end to end: each side proved its node key to the other.
    assert_eq!(client.peer_id(), Some(b.node_id()));
    assert_eq!(accepted.peer_id(), Some(a.node_id()));
    request_and_reply(&mut client, &mut accepted, MESSAGES).await;

    // R relayed it all and counted it per node: what A sent is what B got, and back.
    let usage_a = relay.usage(&a.node_id()).expect("A registered at R");
    let usage_b = relay.usage(&b.node_id()).expect("B registered at R");
    assert_eq!(
        relay.registered_addr(&a.node_id()).map(|addr| addr.ip()),
        Some(network.address_a())
    );
    assert_eq!(
        relay.registered_addr(&b.node_id()).map(|addr| addr.ip()),
        Some(network.address_b())
    );
    assert!(usage_a.datagrams_from >= u64::from(MESSAGES), "{usage_a:?}");
    assert!(usage_b.datagrams_from >= u64::from(MESSAGES), "{usage_b:?}");
    assert_eq!(usage_a.bytes_from, usage_b.bytes_to);
    assert_eq!(usage_b.bytes_from, usage_a.bytes_to);
    assert!(!usage_a.over_bound && !usage_b.over_bound);
    let stats = relay.stats();
    assert_eq!(stats.registrations, 2);
    assert_eq!(stats.refused_unauthenticated + stats.refused_malformed, 0);
    let secure = server.secure_stats().expect("secure");
    assert_eq!(secure.handshakes_completed, 1);
    assert_eq!(secure.transport.dropped_forged, 0);

    drop((client, accepted, a_relay, b_relay, server, relay));
    drop(network);
    let listed = namespaces_listed();
    assert!(
        names.iter().all(|name| !listed.contains(name.as_str())),
        "dropping the network deletes its namespaces: {listed}"
    );
}
