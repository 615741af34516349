//! The driver over a seeded lossy link.

use netstack::{
    driver::{KcpClient, KcpServer},
    kcp::KcpConfig,
    lossy::{LinkConfig, LossyLink},
};

use crate::{guarded, loopback};

#[tokio::test]
async fn five_hundred_messages_cross_a_lossy_link_in_order_exactly_once() {
    const MESSAGES: u32 = 500;
    const ROUND_TRIPS: u32 = 300;
    let (server, mut incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    let link = LossyLink::start(
        loopback(),
        server.local_addr(),
        LinkConfig {
            loss: 0.10,
            duplicate: 0.02,
            reorder: 0.10,
            delay_ms: 0..=2,
            seed: 42,
        },
    )
    .await
    .expect("link");
    let mut client = KcpClient::connect(link.local_addr(), KcpConfig::default())
        .await
        .expect("connect");
    let writer = {
        let sender = client.sender();
        tokio::spawn(async move {
            for index in 0..MESSAGES {
                let message = format!("move {index}").into_bytes();
                sender.send(message).await.expect("send");
            }
        })
    };
    let mut accepted = guarded("accept", incoming.recv())
        .await
        .expect("a connection");
    for index in 0..MESSAGES {
        let message = guarded("recv", accepted.recv()).await.expect("a message");
        assert_eq!(message, format!("move {index}").into_bytes());
        accepted.send(message).await.expect("echo");
    }
    for index in 0..MESSAGES {
        let echo = guarded("echo", client.recv()).await.expect("an echo");
        assert_eq!(echo, format!("move {index}").into_bytes());
    }
    guarded("writer", writer).await.expect("writer");
    // Back-to-back sends share datagrams, so the burst above is few packets; one message per
    // round trip puts hundreds more through the link's faults.
    for index in 0..ROUND_TRIPS {
        let message = format!("turn {index}").into_bytes();
        client.send(message.clone()).await.expect("send");
        let received = guarded("recv", accepted.recv()).await.expect("a message");
        assert_eq!(received, message);
        accepted.send(received).await.expect("echo");
        let echo = guarded("echo", client.recv()).await.expect("an echo");
        assert_eq!(echo, message);
    }
    assert_eq!(
        server.session_count(),
        1,
        "duplicates open no second session"
    );
    let stats = link.stats();
    assert!(stats.packets_dropped > 0, "{stats:?}");
    assert!(stats.packets_reordered > 0, "{stats:?}");
    assert!(stats.packets_duplicated > 0, "{stats:?}");
    assert!(
        stats.packets_forwarded > 0 && stats.bytes_forwarded > 0,
        "{stats:?}"
    );
}

#[tokio::test]
async fn refuses_probabilities_outside_zero_to_one() {
    let result = LossyLink::start(
        loopback(),
        loopback(),
        LinkConfig {
            loss: 1.5,
            ..LinkConfig::default()
        },
    )
    .await;
    assert_eq!(
        result.err().map(|error| error.kind()),
        Some(std::io::ErrorKind::InvalidInput)
    );
}
