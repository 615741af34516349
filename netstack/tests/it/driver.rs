//! The tokio driver over loopback.

use std::time::Duration;

use netstack::{
    NetError,
    constants::CONNECTION_SEND_QUEUE_MAX,
    driver::{KcpClient, KcpServer},
    frame::MAX_MESSAGE_BYTES,
    kcp::KcpConfig,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::{net::UdpSocket, sync::mpsc::error::TryRecvError};

use crate::{echo_server, guarded, loopback, numbered, request_and_reply};

#[tokio::test]
async fn round_trips_messages_and_pushes_from_another_task() {
    let (server, mut incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    let mut client = KcpClient::connect(server.local_addr(), KcpConfig::default())
        .await
        .expect("connect");
    client.send(b"hello".to_vec()).await.expect("send");
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(accepted.conv(), client.conv());
    assert_eq!(
        guarded("recv", accepted.recv()).await,
        Some(b"hello".to_vec())
    );

    // Request and reply, many times over.
    request_and_reply(&mut client, &mut accepted, 200).await;

    // The server pushes status updates from another task through a cloned sender.
    let sender = accepted.sender();
    assert_eq!(sender.peer_addr(), accepted.peer_addr());
    let pusher = tokio::spawn(async move {
        for index in 0..50 {
            sender.send(numbered(index)).await.expect("push");
        }
    });
    for index in 0..50 {
        assert_eq!(guarded("push", client.recv()).await, Some(numbered(index)));
    }
    pusher.await.expect("pusher");
    // A large message crosses whole.
    let large: Vec<u8> = (0..MAX_MESSAGE_BYTES).map(|i| i as u8).collect();
    client.send(large.clone()).await.expect("send large");
    assert_eq!(guarded("large", accepted.recv()).await, Some(large));
    assert_eq!(server.session_count(), 1);
}

#[tokio::test]
async fn twenty_clients_each_get_their_own_replies() {
    fn tagged_reply(message: &[u8]) -> Vec<u8> {
        [b"re: ".as_slice(), message].concat()
    }
    let (server, _echo) = echo_server(KcpConfig::default(), tagged_reply).await;
    let mut clients = Vec::new();
    for client_index in 0..20u32 {
        let address = server.local_addr();
        clients.push(tokio::spawn(async move {
            let mut connection = KcpClient::connect(address, KcpConfig::default())
                .await
                .expect("connect");
            for index in 0..50u32 {
                let request = format!("client {client_index} message {index}").into_bytes();
                connection.send(request.clone()).await.expect("send");
                let reply = guarded("reply", connection.recv()).await.expect("a reply");
                assert_eq!(reply, tagged_reply(&request));
            }
            connection
        }));
    }
    let mut connections = Vec::new();
    for client in clients {
        connections.push(client.await.expect("client"));
    }
    assert_eq!(server.session_count(), 20);
    let mut convs: Vec<u32> = connections.iter().map(|c| c.conv()).collect();
    convs.sort_unstable();
    convs.dedup();
    assert_eq!(convs.len(), 20, "every client has its own conversation");
}

#[tokio::test]
async fn refuses_oversized_and_empty_messages() {
    let (server, _echo) = echo_server(KcpConfig::default(), <[u8]>::to_vec).await;
    let mut client = KcpClient::connect(server.local_addr(), KcpConfig::default())
        .await
        .expect("connect");
    let too_large = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        client.send(too_large.clone()).await,
        Err(NetError::TooLarge {
            len: MAX_MESSAGE_BYTES + 1,
            max: MAX_MESSAGE_BYTES
        })
    );
    assert_eq!(
        client.sender().try_send(too_large),
        Err(NetError::TooLarge {
            len: MAX_MESSAGE_BYTES + 1,
            max: MAX_MESSAGE_BYTES
        })
    );
    assert_eq!(client.send(Vec::new()).await, Err(NetError::Empty));
    // The connection still works.
    client.send(b"still here".to_vec()).await.expect("send");
    assert_eq!(
        guarded("echo", client.recv()).await,
        Some(b"still here".to_vec())
    );
}

#[tokio::test]
async fn try_send_fails_when_the_connection_queue_is_full() {
    let (server, _incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    let client = KcpClient::connect(server.local_addr(), KcpConfig::default())
        .await
        .expect("connect");
    // On this single-threaded runtime the socket task cannot run until we yield, so exactly
    // the connection's credits are taken.
    for _ in 0..CONNECTION_SEND_QUEUE_MAX {
        client.try_send(b"x".to_vec()).expect("within the bound");
    }
    assert_eq!(client.try_send(b"x".to_vec()), Err(NetError::QueueFull));
}

#[tokio::test]
async fn messages_sent_back_to_back_share_datagrams() {
    const MESSAGES: u32 = 64;
    // A bare UDP socket stands in for the server, to count what the client puts on the wire.
    let wire = UdpSocket::bind(loopback()).await.expect("bind");
    let client = KcpClient::connect(wire.local_addr().expect("address"), KcpConfig::default())
        .await
        .expect("connect");
    // On this single-threaded runtime the socket task cannot run until we yield: all the
    // messages are queued before it takes any.
    for index in 0..MESSAGES {
        client
            .try_send(format!("[{index}]").into_bytes())
            .expect("within the bound");
    }
    let mut buffer = vec![0u8; 65_536];
    let mut datagrams = 0;
    let mut bytes = Vec::new();
    while let Ok(Ok(len)) =
        tokio::time::timeout(Duration::from_millis(200), wire.recv(&mut buffer)).await
    {
        datagrams += 1;
        bytes.extend_from_slice(&buffer[..len]);
    }
    // Every message went out (KCP retransmits them unacknowledged, so some may be seen twice)…
    let sent = String::from_utf8_lossy(&bytes).into_owned();
    for index in 0..MESSAGES {
        let text = format!("[{index}]");
        assert!(sent.contains(&text), "{text} was sent");
    }
    // …packed several to a datagram, not one datagram (and one syscall) each.
    assert!(
        datagrams < MESSAGES / 4,
        "{datagrams} datagrams for {MESSAGES} messages"
    );
}

#[tokio::test]
async fn a_slow_reader_holds_the_sender_back_and_loses_nothing() {
    const MESSAGES: u32 = 3_000;
    let (server, mut incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    let client = KcpClient::connect(server.local_addr(), KcpConfig::default())
        .await
        .expect("connect");
    let writer = tokio::spawn(async move {
        for index in 0..MESSAGES {
            client.send(numbered(index)).await.expect("send");
        }
        client
    });
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    // Not reading: the application queue, KCP's receive window, the sender's KCP queue and its
    // credits hold far fewer than 3,000 messages, so the writer must be waiting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!writer.is_finished(), "back-pressure holds the writer");
    for index in 0..MESSAGES {
        assert_eq!(
            guarded("recv", accepted.recv()).await,
            Some(numbered(index))
        );
    }
    let _client = guarded("writer", writer).await.expect("writer");
}

#[tokio::test]
async fn the_server_ignores_garbage_datagrams() {
    let (server, mut incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    let attacker = UdpSocket::bind(loopback()).await.expect("bind");
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for _ in 0..200 {
        let len = rng.random_range(0..1_500);
        let garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        attacker
            .send_to(&garbage, server.local_addr())
            .await
            .expect("send garbage");
    }
    // A well-formed ack opens nothing either: only the start of a conversation does.
    let mut ack = vec![0u8; 24];
    ack[..4].copy_from_slice(&77u32.to_le_bytes());
    ack[4] = 82;
    attacker
        .send_to(&ack, server.local_addr())
        .await
        .expect("send ack");

    let mut client = KcpClient::connect(server.local_addr(), KcpConfig::default())
        .await
        .expect("connect");
    client.send(b"real".to_vec()).await.expect("send");
    // The socket task handles datagrams in order, so the garbage was seen before this.
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(accepted.conv(), client.conv());
    assert_eq!(incoming.try_recv().err(), Some(TryRecvError::Empty));
    assert_eq!(server.session_count(), 1);
    assert_eq!(
        guarded("recv", accepted.recv()).await,
        Some(b"real".to_vec())
    );
    accepted.send(b"reply".to_vec()).await.expect("reply");
    assert_eq!(
        guarded("reply", client.recv()).await,
        Some(b"reply".to_vec())
    );
}

fn quick_timeouts() -> KcpConfig {
    KcpConfig {
        idle_timeout: Duration::from_millis(400),
        keepalive_interval: Duration::from_millis(100),
        ..KcpConfig::default()
    }
}

#[tokio::test]
async fn a_vanished_client_is_closed_and_freed() {
    let (server, mut incoming) = KcpServer::bind(loopback(), quick_timeouts())
        .await
        .expect("bind");
    let client = KcpClient::connect(server.local_addr(), quick_timeouts())
        .await
        .expect("connect");
    client.send(b"hi".to_vec()).await.expect("send");
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    assert_eq!(guarded("recv", accepted.recv()).await, Some(b"hi".to_vec()));
    // Dropping every handle ends the client's session and its socket task.
    drop(client);
    assert_eq!(guarded("close", accepted.recv()).await, None);
    assert!(accepted.sender().is_closed());
    assert_eq!(
        accepted.send(b"anyone?".to_vec()).await,
        Err(NetError::Closed)
    );
    drop(accepted);
    assert_eq!(server.session_count(), 0);
}

#[tokio::test]
async fn keepalives_hold_a_quiet_connection_open() {
    let (server, _echo) = echo_server(quick_timeouts(), <[u8]>::to_vec).await;
    let mut client = KcpClient::connect(server.local_addr(), quick_timeouts())
        .await
        .expect("connect");
    client.send(b"one".to_vec()).await.expect("send");
    assert_eq!(guarded("echo", client.recv()).await, Some(b"one".to_vec()));
    // Quiet for several idle timeouts; keepalives must keep both ends open.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    client
        .send(b"two".to_vec())
        .await
        .expect("send after a quiet spell");
    assert_eq!(guarded("echo", client.recv()).await, Some(b"two".to_vec()));
    assert_eq!(server.session_count(), 1);
}

#[tokio::test]
async fn a_vanished_server_closes_the_client() {
    let (server, _echo) = echo_server(quick_timeouts(), <[u8]>::to_vec).await;
    let mut client = KcpClient::connect(server.local_addr(), quick_timeouts())
        .await
        .expect("connect");
    client.send(b"ping".to_vec()).await.expect("send");
    assert_eq!(guarded("echo", client.recv()).await, Some(b"ping".to_vec()));
    // Dropping the server stops its socket task; the client hears nothing more.
    drop(server);
    assert_eq!(guarded("close", client.recv()).await, None);
    assert_eq!(client.send(b"late".to_vec()).await, Err(NetError::Closed));
}
