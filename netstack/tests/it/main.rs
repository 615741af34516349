//! netstack's integration tests, built as one binary.

mod dht;
mod driver;
#[cfg(feature = "emulated-link")]
mod emulated;
mod lossy;
mod relay;
#[cfg(feature = "emulated-link")]
mod relay_netns;
mod resume;
mod secure;
mod tidy;

use std::{net::SocketAddr, time::Duration};

use netstack::{
    driver::{KcpConnection, KcpServer},
    kcp::KcpConfig,
};
use tokio::{sync::mpsc, task::JoinHandle};

/// A guard against hangs, never a measurement: tests assert behaviour, not time.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// An ephemeral port on 127.0.0.1.
pub fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Awaits `future`, failing the test if it hangs.
pub async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG_GUARD, future).await {
        Ok(value) => value,
        Err(_) => panic!("{what} hung"),
    }
}

/// The `index`-th message of a test exchange.
pub fn numbered(index: u32) -> Vec<u8> {
    format!("message {index}").into_bytes()
}

/// `count` requests from `client`, each answered by `accepted` with `ack <request>`, every one
/// checked in order on both sides.
pub async fn request_and_reply(
    client: &mut KcpConnection,
    accepted: &mut KcpConnection,
    count: u32,
) {
    for index in 0..count {
        client.send(numbered(index)).await.expect("send");
        let request = guarded("recv", accepted.recv()).await.expect("a request");
        assert_eq!(request, numbered(index));
        accepted
            .send([b"ack ".as_slice(), &request].concat())
            .await
            .expect("reply");
        let reply = guarded("reply", client.recv()).await.expect("a reply");
        assert_eq!(reply, [b"ack ".as_slice(), &numbered(index)].concat());
    }
}

/// A server that answers every message with `reply(message)` on its connection.
pub async fn echo_server(
    config: KcpConfig,
    reply: fn(&[u8]) -> Vec<u8>,
) -> (KcpServer, JoinHandle<()>) {
    let (server, incoming) = KcpServer::bind(loopback(), config).await.expect("bind");
    let task = tokio::spawn(accept_and_echo(incoming, reply));
    (server, task)
}

async fn accept_and_echo(mut incoming: mpsc::Receiver<KcpConnection>, reply: fn(&[u8]) -> Vec<u8>) {
    while let Some(mut connection) = incoming.recv().await {
        tokio::spawn(async move {
            while let Some(message) = connection.recv().await {
                if connection.send(reply(&message)).await.is_err() {
                    return;
                }
            }
        });
    }
}
