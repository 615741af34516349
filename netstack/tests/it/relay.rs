//! Relays on loopback: probe and registration, secure KCP through a relay, soft accounting.

use netstack::{
    driver::{KcpClient, KcpServer},
    kcp::KcpConfig,
    quic,
    relay::{KCP_CHANNEL, QUIC_CHANNEL, RelayClient, RelayConfig, RelayServer},
    secure::{NodeIdentity, PeerPolicy},
};
use primitives::keys::AccountKey;
use tokio::net::UdpSocket;

use crate::{guarded, loopback, request_and_reply};

fn identity(seed: u64) -> NodeIdentity {
    NodeIdentity::new(AccountKey::from_seed(seed))
}

#[tokio::test]
async fn secure_kcp_crosses_a_relay_that_counts_it_and_reads_none_of_it() {
    let config = RelayConfig {
        peer_bytes_soft_max: 4_096,
        ..RelayConfig::default()
    };
    let relay = RelayServer::bind(loopback(), config).await.expect("relay");
    let (a, b) = (identity(11), identity(12));

    // B: a secure server that only A may open, reachable only through the relay.
    let (server, mut incoming) = KcpServer::bind_secure(
        loopback(),
        KcpConfig::default(),
        b.clone(),
        PeerPolicy::Only(vec![a.node_id()]),
    )
    .await
    .expect("bind");
    let b_relay = guarded("B registers", RelayClient::register(relay.local_addr(), &b))
        .await
        .expect("B registered");
    b_relay
        .expose(KCP_CHANNEL, server.local_addr())
        .await
        .expect("exposed");
    // On loopback nothing rewrites addresses and the dial-back arrives.
    let reachability = b_relay.reachability();
    assert_eq!(reachability.observed, reachability.local);
    assert!(reachability.dial_back && reachability.is_direct());
    assert_eq!(
        relay.registered_addr(&b.node_id()),
        Some(reachability.observed)
    );

    // A: registers too and dials B's node through its stand-in address.
    let a_relay = guarded("A registers", RelayClient::register(relay.local_addr(), &a))
        .await
        .expect("A registered");
    let stand_in = a_relay
        .tunnel_to(b.node_id(), KCP_CHANNEL)
        .await
        .expect("tunnel");
    assert_ne!(stand_in, server.local_addr());
    let mut client = guarded(
        "dial through the relay",
        KcpClient::connect_secure(stand_in, KcpConfig::default(), a.clone(), b.node_id()),
    )
    .await
    .expect("the end-to-end handshake crosses the relay");
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    // The Noise session is A<->B: each proved its node key to the other, not to the relay.
    assert_eq!(client.peer_id(), Some(b.node_id()));
    assert_eq!(accepted.peer_id(), Some(a.node_id()));
    request_and_reply(&mut client, &mut accepted, 100).await;

    let usage_a = relay.usage(&a.node_id()).expect("A registered");
    let usage_b = relay.usage(&b.node_id()).expect("B registered");
    assert!(usage_a.datagrams_from >= 100 && usage_b.datagrams_from >= 100);
    assert_eq!(usage_a.bytes_from, usage_b.bytes_to);
    assert_eq!(usage_b.bytes_from, usage_a.bytes_to);
    // 100 requests of ~10 bytes and their replies, sealed, pass the 4 KiB soft bound: the relay
    // warned and flagged both, and forwarded everything anyway.
    assert!(usage_a.over_bound && usage_b.over_bound);
    let stats = relay.stats();
    assert_eq!(stats.peers_over_bound, 2);
    assert_eq!(
        stats.forwarded_bytes,
        usage_a.bytes_from + usage_b.bytes_from
    );
    assert_eq!(
        stats.forwarded,
        a_relay.stats().forwarded + b_relay.stats().forwarded
    );
    assert!(b_relay.stats().delivered > 0 && a_relay.stats().delivered > 0);
    // The relay saw sealed datagrams only: none of the plaintext went to the secure layer
    // undetected, and B's server opened every one of them.
    let secure = server.secure_stats().expect("secure");
    assert_eq!(secure.transport.dropped_forged, 0);
    assert!(secure.transport.opened >= 100);
}

#[tokio::test]
async fn bad_frames_and_strangers_are_refused_and_counted() {
    let relay = RelayServer::bind(loopback(), RelayConfig::default())
        .await
        .expect("relay");
    let a = identity(21);
    let a_relay = guarded("A registers", RelayClient::register(relay.local_addr(), &a))
        .await
        .expect("A registered");
    // A forward to a node nobody registered: A hears no-route.
    let nobody = identity(22).node_id();
    let stand_in = a_relay
        .tunnel_to(nobody, KCP_CHANNEL)
        .await
        .expect("tunnel");
    let local = UdpSocket::bind(loopback()).await.expect("bind");
    local.send_to(b"hello?", stand_in).await.expect("send");
    let heard = async {
        while a_relay.stats().no_route == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    guarded("no-route", heard).await;

    // Garbage, a truncated frame and a forward from an unregistered socket.
    let stranger = UdpSocket::bind(loopback()).await.expect("bind");
    let mut forward = vec![0xB6];
    forward.extend_from_slice(a.node_id().0.as_slice());
    forward.push(KCP_CHANNEL);
    forward.extend_from_slice(b"payload");
    for datagram in [&b"\x00garbage"[..], &[0xB4, 1, 2], &forward] {
        stranger
            .send_to(datagram, relay.local_addr())
            .await
            .expect("send");
    }
    let counted = async {
        loop {
            let stats = relay.stats();
            if stats.refused_malformed == 2 && stats.refused_unroutable == 2 {
                return stats;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    let stats = guarded("refusals counted", counted).await;
    assert_eq!(stats.forwarded, 0);
    assert_eq!(relay.usage(&a.node_id()).expect("registered").bytes(), 0);
}

#[tokio::test]
async fn quic_crosses_the_same_relay_on_its_own_channel() {
    let relay = RelayServer::bind(loopback(), RelayConfig::default())
        .await
        .expect("relay");
    let (a, b) = (identity(31), identity(32));
    // B serves QUIC requests, reachable only through the relay.
    let tls = quic::QuicIdentity::generate().expect("certificate");
    let server = quic::server_endpoint(loopback(), &tls).expect("QUIC server");
    let server_addr = server.local_addr().expect("bound");
    let answering = tokio::spawn(async move {
        let connection = server
            .accept()
            .await
            .expect("incoming")
            .await
            .expect("handshake");
        let (mut send, mut recv) = connection.accept_bi().await.expect("a stream");
        let request = quic::read_frame(&mut recv, 1 << 20).await.expect("request");
        let answer = [b"chunk for ".as_slice(), &request].concat();
        quic::write_frame(&mut send, &answer, 1 << 20)
            .await
            .expect("answer");
        send.finish().expect("finish");
        connection.closed().await;
    });
    let b_relay = guarded("B registers", RelayClient::register(relay.local_addr(), &b))
        .await
        .expect("B registered");
    b_relay
        .expose(QUIC_CHANNEL, server_addr)
        .await
        .expect("exposed");
    let a_relay = guarded("A registers", RelayClient::register(relay.local_addr(), &a))
        .await
        .expect("A registered");
    let stand_in = a_relay
        .tunnel_to(b.node_id(), QUIC_CHANNEL)
        .await
        .expect("tunnel");
    let client = quic::client_endpoint(loopback(), std::slice::from_ref(&tls.certificate))
        .expect("QUIC client");
    let connection = guarded("QUIC through the relay", quic::connect(&client, stand_in))
        .await
        .expect("connected");
    let request = vec![7u8; 50_000];
    let answer = quic::request(
        &connection,
        &request,
        1 << 20,
        std::time::Duration::from_secs(30),
    )
    .await
    .expect("answered");
    assert_eq!(answer, [b"chunk for ".as_slice(), &request].concat());
    connection.close(0u32.into(), b"done");
    guarded("server done", answering)
        .await
        .expect("server task");
    // The bytes went through the relay, on B's QUIC channel.
    let usage = relay.usage(&a.node_id()).expect("registered");
    assert!(usage.bytes_from > 50_000, "{usage:?}");
    assert_eq!(b_relay.stats().unrouted, 0);
}

#[tokio::test]
async fn a_registration_is_renewed_before_its_lease_runs_out() {
    let config = RelayConfig {
        lease: std::time::Duration::from_secs(1),
        ..RelayConfig::default()
    };
    let relay = RelayServer::bind(loopback(), config).await.expect("relay");
    let a = identity(51);
    let a_relay = guarded("A registers", RelayClient::register(relay.local_addr(), &a))
        .await
        .expect("A registered");
    assert_eq!(a_relay.lease(), std::time::Duration::from_secs(1));
    // Three renewals span more than one lease: without them the relay would have dropped A.
    let renewed = async {
        while a_relay.stats().renewals < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    guarded("renewals", renewed).await;
    assert_eq!(
        relay.registered_addr(&a.node_id()),
        Some(a_relay.reachability().observed)
    );
    assert!(relay.stats().registrations >= 4);
}
