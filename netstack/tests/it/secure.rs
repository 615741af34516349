//! The driver running the secure layer: authenticated, encrypted KCP between nodes.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use netstack::{
    ConnectError,
    driver::{KcpClient, KcpConnection, KcpServer},
    frame::MAX_MESSAGE_BYTES,
    kcp::KcpConfig,
    lossy::{LinkConfig, LossyLink},
    secure::{HANDSHAKE_TAG, NodeIdentity, PeerPolicy, TRANSPORT_TAG},
};
use primitives::keys::AccountKey;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::{net::UdpSocket, sync::mpsc, sync::mpsc::error::TryRecvError, task::JoinHandle};

use crate::{guarded, loopback, numbered, request_and_reply};

fn identity(seed: u64) -> NodeIdentity {
    NodeIdentity::new(AccountKey::from_seed(seed))
}

async fn secure_server(
    identity: NodeIdentity,
    policy: PeerPolicy,
) -> (KcpServer, mpsc::Receiver<KcpConnection>) {
    KcpServer::bind_secure(loopback(), KcpConfig::default(), identity, policy)
        .await
        .expect("bind")
}

/// Echoes every message on `connection` until it ends.
fn echo(mut connection: KcpConnection) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = connection.recv().await {
            if connection.send(message).await.is_err() {
                return;
            }
        }
    })
}

/// Sends `count` numbered messages from `first` and checks each comes back.
async fn round_trips(client: &mut KcpConnection, first: u32, count: u32) {
    for index in first..first + count {
        client.send(numbered(index)).await.expect("send");
        assert_eq!(guarded("echo", client.recv()).await, Some(numbered(index)));
    }
}

#[tokio::test]
async fn secure_peers_exchange_many_messages_and_see_each_others_node_id() {
    let (server_identity, client_identity) = (identity(1), identity(2));
    let (server, mut incoming) = secure_server(server_identity.clone(), PeerPolicy::AnyNode).await;
    let mut client = KcpClient::connect_secure(
        server.local_addr(),
        KcpConfig::default(),
        client_identity.clone(),
        server_identity.node_id(),
    )
    .await
    .expect("connect");
    assert_eq!(client.peer_id(), Some(server_identity.node_id()));
    assert_eq!(client.sender().peer_id(), Some(server_identity.node_id()));
    client.send(b"hello".to_vec()).await.expect("send");
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(accepted.peer_id(), Some(client_identity.node_id()));
    assert_eq!(accepted.sender().peer_id(), Some(client_identity.node_id()));
    assert_eq!(accepted.conv(), client.conv());
    assert_eq!(
        guarded("recv", accepted.recv()).await,
        Some(b"hello".to_vec())
    );

    request_and_reply(&mut client, &mut accepted, 300).await;
    // Pushes from the server, and the largest message both ways: every fragment is a full
    // segment, so the sealed datagrams are as large as the MTU allows.
    let sender = accepted.sender();
    let pusher = tokio::spawn(async move {
        for index in 0..100 {
            sender.send(numbered(index)).await.expect("push");
        }
    });
    for index in 0..100 {
        assert_eq!(guarded("push", client.recv()).await, Some(numbered(index)));
    }
    pusher.await.expect("pusher");
    let large: Vec<u8> = (0..MAX_MESSAGE_BYTES).map(|i| (i % 251) as u8).collect();
    client.send(large.clone()).await.expect("send large");
    assert_eq!(guarded("large", accepted.recv()).await, Some(large.clone()));
    accepted.send(large.clone()).await.expect("reply large");
    assert_eq!(guarded("large reply", client.recv()).await, Some(large));

    assert_eq!(server.session_count(), 1);
    let stats = server.secure_stats().expect("a secure server");
    assert_eq!(stats.handshakes_completed, 1, "{stats:?}");
    assert!(stats.transport.opened > 400, "{stats:?}");
    assert!(stats.transport.sealed > 400, "{stats:?}");
    assert_eq!(
        stats.transport.dropped_forged
            + stats.transport.dropped_malformed
            + stats.transport.dropped_replayed
            + stats.transport.dropped_stale,
        0,
        "{stats:?}"
    );
}

#[tokio::test]
async fn plain_sessions_have_no_peer_id() {
    let (server, mut incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    assert_eq!(server.secure_stats(), None);
    let client = KcpClient::connect(server.local_addr(), KcpConfig::default())
        .await
        .expect("connect");
    assert_eq!(client.peer_id(), None);
    let accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(accepted.peer_id(), None);
}

#[tokio::test]
async fn a_client_expecting_another_node_fails_with_unexpected_peer() {
    let (server_identity, client_identity, wanted) = (identity(1), identity(2), identity(3));
    let (server, mut incoming) = secure_server(server_identity.clone(), PeerPolicy::AnyNode).await;
    let result = KcpClient::connect_secure(
        server.local_addr(),
        KcpConfig::default(),
        client_identity,
        wanted.node_id(),
    )
    .await;
    match result {
        Err(ConnectError::UnexpectedPeer { expected, found }) => {
            assert_eq!(expected, wanted.node_id());
            assert_eq!(found, server_identity.node_id());
        }
        other => panic!("expected UnexpectedPeer, got {other:?}"),
    }
    // The client stopped before its third message, so the server opened nothing.
    assert_eq!(incoming.try_recv().err(), Some(TryRecvError::Empty));
    assert_eq!(server.session_count(), 0);
    let stats = server.secure_stats().expect("a secure server");
    assert_eq!(stats.handshakes_completed, 0, "{stats:?}");
}

#[tokio::test]
async fn a_server_refusing_the_client_by_policy_yields_no_connection() {
    let (server_identity, client_identity, allowed) = (identity(1), identity(2), identity(4));
    let (server, mut incoming) = secure_server(
        server_identity.clone(),
        PeerPolicy::Only(vec![allowed.node_id()]),
    )
    .await;
    let result = KcpClient::connect_secure(
        server.local_addr(),
        KcpConfig::default(),
        client_identity,
        server_identity.node_id(),
    )
    .await;
    // The server says nothing to a refused peer, so the client can only give up.
    assert!(
        matches!(result, Err(ConnectError::HandshakeTimeout { .. })),
        "{result:?}"
    );
    assert_eq!(incoming.try_recv().err(), Some(TryRecvError::Empty));
    assert_eq!(server.session_count(), 0);
    let stats = server.secure_stats().expect("a secure server");
    assert!(stats.handshakes_refused >= 1, "{stats:?}");
    assert_eq!(stats.handshakes_completed, 0, "{stats:?}");

    // The node the policy names gets in.
    let client = KcpClient::connect_secure(
        server.local_addr(),
        KcpConfig::default(),
        allowed.clone(),
        server_identity.node_id(),
    )
    .await
    .expect("an allowed node connects");
    client.send(b"let me in".to_vec()).await.expect("send");
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(accepted.peer_id(), Some(allowed.node_id()));
    assert_eq!(
        guarded("recv", accepted.recv()).await,
        Some(b"let me in".to_vec())
    );
}

#[tokio::test]
async fn a_secure_session_delivers_every_message_in_order_over_a_lossy_link() {
    const MESSAGES: u32 = 500;
    let (server_identity, client_identity) = (identity(1), identity(2));
    let (server, mut incoming) = secure_server(server_identity.clone(), PeerPolicy::AnyNode).await;
    let link = LossyLink::start(
        loopback(),
        server.local_addr(),
        LinkConfig {
            loss: 0.10,
            duplicate: 0.05,
            reorder: 0.10,
            delay_ms: 0..=2,
            seed: 7,
        },
    )
    .await
    .expect("link");
    let mut client = KcpClient::connect_secure(
        link.local_addr(),
        KcpConfig::default(),
        client_identity.clone(),
        server_identity.node_id(),
    )
    .await
    .expect("connect over the lossy link");
    let writer = {
        let sender = client.sender();
        tokio::spawn(async move {
            for index in 0..MESSAGES {
                sender.send(numbered(index)).await.expect("send");
            }
        })
    };
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(accepted.peer_id(), Some(client_identity.node_id()));
    for index in 0..MESSAGES {
        let message = guarded("recv", accepted.recv()).await.expect("a message");
        assert_eq!(message, numbered(index));
        accepted.send(message).await.expect("echo");
    }
    for index in 0..MESSAGES {
        assert_eq!(guarded("echo", client.recv()).await, Some(numbered(index)));
    }
    guarded("writer", writer).await.expect("writer");
    assert_eq!(server.session_count(), 1);
    let link_stats = link.stats();
    assert!(link_stats.packets_dropped > 0, "{link_stats:?}");
    assert!(link_stats.packets_duplicated > 0, "{link_stats:?}");
    assert!(link_stats.packets_reordered > 0, "{link_stats:?}");
    let stats = server.secure_stats().expect("a secure server");
    assert_eq!(stats.handshakes_completed, 1, "{stats:?}");
    // The link's duplicates reach the replay window.
    assert!(stats.transport.dropped_replayed > 0, "{stats:?}");
    assert_eq!(stats.transport.dropped_forged, 0, "{stats:?}");
}

/// A UDP relay that records what clients send and forwards it from one upstream socket, so
/// every client behind it has the same address at the server, and the test can inject
/// datagrams from that address. Replies go to the client that sent last.
struct Relay {
    local_addr: SocketAddr,
    upstream: Arc<UdpSocket>,
    recorded: Arc<Mutex<Vec<Vec<u8>>>>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(server: SocketAddr) -> Relay {
        let listen = UdpSocket::bind(loopback()).await.expect("bind");
        let upstream = Arc::new(UdpSocket::bind(loopback()).await.expect("bind"));
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let local_addr = listen.local_addr().expect("an address");
        let task = {
            let (upstream, recorded) = (upstream.clone(), recorded.clone());
            tokio::spawn(async move {
                let mut client = None;
                let (mut up, mut down) = (vec![0u8; 65_536], vec![0u8; 65_536]);
                loop {
                    tokio::select! {
                        Ok((len, from)) = listen.recv_from(&mut up) => {
                            client = Some(from);
                            let datagram = up[..len].to_vec();
                            let _ = upstream.send_to(&datagram, server).await;
                            recorded
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .push(datagram);
                        }
                        Ok((len, _)) = upstream.recv_from(&mut down) => {
                            if let Some(client) = client {
                                let _ = listen.send_to(&down[..len], client).await;
                            }
                        }
                    }
                }
            })
        };
        Relay {
            local_addr,
            upstream,
            recorded,
            task,
        }
    }

    fn recorded(&self) -> Vec<Vec<u8>> {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Sends `datagram` to the server from the clients' address.
    async fn inject(&self, datagram: &[u8], server: SocketAddr) {
        self.upstream
            .send_to(datagram, server)
            .await
            .expect("inject");
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn garbage_forged_and_replayed_datagrams_are_dropped_and_counted() {
    let (server_identity, client_identity) = (identity(1), identity(2));
    let (server, mut incoming) = secure_server(server_identity.clone(), PeerPolicy::AnyNode).await;
    let relay = Relay::start(server.local_addr()).await;
    let mut client = KcpClient::connect_secure(
        relay.local_addr,
        KcpConfig::default(),
        client_identity.clone(),
        server_identity.node_id(),
    )
    .await
    .expect("connect");
    client.send(b"first".to_vec()).await.expect("send");
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(
        guarded("recv", accepted.recv()).await,
        Some(b"first".to_vec())
    );
    let _echo = echo(accepted);
    round_trips(&mut client, 0, 50).await;
    let before = server.secure_stats().expect("a secure server");

    let target = server.local_addr();
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let mut random_bytes = |len: usize| -> Vec<u8> { (0..len).map(|_| rng.random()).collect() };
    // From a stranger: random datagrams, and random ones dressed as secure datagrams.
    let stranger = UdpSocket::bind(loopback()).await.expect("bind");
    let mut injections: Vec<(bool, Vec<u8>)> = vec![(true, Vec::new())];
    let mut stranger_transport = 0u64;
    for round in 0..300usize {
        let mut garbage = random_bytes(1 + round % 1_400);
        match round % 3 {
            0 => garbage[0] = TRANSPORT_TAG,
            1 => garbage[0] = HANDSHAKE_TAG,
            _ => {}
        }
        stranger_transport += u64::from(garbage[0] == TRANSPORT_TAG);
        injections.push((true, garbage));
    }
    // From the client's own address: every datagram it sent so far (handshake messages
    // included), forgeries with fresh nonces, an altered datagram, and a fake restart.
    let recorded = relay.recorded();
    let replayed_transport = recorded
        .iter()
        .filter(|datagram| datagram.first() == Some(&TRANSPORT_TAG))
        .count() as u64;
    assert!(replayed_transport > 50);
    injections.extend(recorded.iter().map(|datagram| (false, datagram.clone())));
    let mut forged_count = 0u64;
    for nonce in 1_000_000u64..1_000_050 {
        let mut forged = vec![TRANSPORT_TAG];
        forged.extend_from_slice(&nonce.to_be_bytes());
        forged.extend(random_bytes(64));
        injections.push((false, forged));
        forged_count += 1;
    }
    let mut altered = recorded
        .iter()
        .rfind(|datagram| datagram.first() == Some(&TRANSPORT_TAG))
        .expect("a transport datagram")
        .clone();
    // A nonce no one used yet, so only the tag can refuse it.
    altered[1..9].copy_from_slice(&(u64::MAX / 2).to_be_bytes());
    injections.push((false, altered));
    forged_count += 1;
    let mut fake_restart = vec![HANDSHAKE_TAG, 0];
    fake_restart.extend(random_bytes(32));
    injections.push((false, fake_restart));
    let mut fake_finish = vec![HANDSHAKE_TAG, 2];
    fake_finish.extend(random_bytes(120));
    injections.push((false, fake_finish));

    // In small batches, each followed by a round trip on the real session: the socket task
    // handles datagrams in arrival order, so the batch was handled before the echo, and the
    // server's receive buffer never overflows (which would lose injections uncounted).
    let mut index = 50;
    for batch in injections.chunks(24) {
        for (from_stranger, datagram) in batch {
            if *from_stranger {
                stranger.send_to(datagram, target).await.expect("send");
            } else {
                relay.inject(datagram, target).await;
            }
        }
        round_trips(&mut client, index, 1).await;
        index += 1;
    }
    // The session still works.
    round_trips(&mut client, index, 50).await;
    let after = server.secure_stats().expect("a secure server");
    assert_eq!(after.handshakes_completed, 1, "{after:?}");
    assert!(
        after.datagrams_malformed > before.datagrams_malformed,
        "{after:?}"
    );
    assert!(
        after.datagrams_unattached >= before.datagrams_unattached + stranger_transport,
        "{after:?}"
    );
    let replays = |stats: &netstack::driver::SecureEndpointStats| {
        stats.transport.dropped_replayed + stats.transport.dropped_stale
    };
    assert!(
        replays(&after) >= replays(&before) + replayed_transport,
        "{after:?}"
    );
    assert!(
        after.transport.dropped_forged >= before.transport.dropped_forged + forged_count,
        "{after:?}"
    );
    assert!(
        after.handshakes_failed > before.handshakes_failed,
        "{after:?}"
    );
    assert_eq!(server.session_count(), 1);
    assert_eq!(incoming.try_recv().err(), Some(TryRecvError::Empty));
}

#[tokio::test]
async fn a_restarted_peer_replaces_its_session_only_once_its_new_handshake_finishes() {
    let (server_identity, client_identity) = (identity(1), identity(2));
    let (server, mut incoming) = secure_server(server_identity.clone(), PeerPolicy::AnyNode).await;
    let relay = Relay::start(server.local_addr()).await;
    let before_restart = KcpClient::connect_secure(
        relay.local_addr,
        KcpConfig::default(),
        client_identity.clone(),
        server_identity.node_id(),
    )
    .await
    .expect("connect");
    before_restart.send(b"one".to_vec()).await.expect("send");
    let mut old = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(guarded("recv", old.recv()).await, Some(b"one".to_vec()));
    // The process dies: its socket falls silent, with no goodbye (KCP has none).
    drop(before_restart);

    // The same node comes back on the same address (the relay's), with new keys.
    let mut after_restart = KcpClient::connect_secure(
        relay.local_addr,
        KcpConfig::default(),
        client_identity.clone(),
        server_identity.node_id(),
    )
    .await
    .expect("reconnect");
    after_restart.send(b"two".to_vec()).await.expect("send");
    let mut new = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(new.peer_id(), Some(client_identity.node_id()));
    assert_eq!(guarded("recv", new.recv()).await, Some(b"two".to_vec()));
    // The old session ended with the old keys.
    assert_eq!(guarded("old ends", old.recv()).await, None);
    let _echo = echo(new);
    round_trips(&mut after_restart, 0, 20).await;
    let stats = server.secure_stats().expect("a secure server");
    assert_eq!(stats.handshakes_completed, 2, "{stats:?}");
}
