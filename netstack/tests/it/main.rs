//! netstack's integration tests, built as one binary.

mod driver;
mod lossy;
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
