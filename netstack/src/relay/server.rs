//! [`RelayServer`]: a [`RelayCore`] on two UDP sockets, driven by one tokio task.

use std::{
    io,
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use primitives::{id::NodeId, time::Instant};
use rand::{TryRngCore, rngs::OsRng};
use tokio::{net::UdpSocket, sync::oneshot};
use tracing::{Instrument, debug, info_span, trace, warn};

use super::core::{PeerUsage, RelayConfig, RelayCore, RelaySocket, RelayStats};
use crate::{constants::DATAGRAM_BUFFER_BYTES, driver::is_transient};

/// A relay on a UDP socket (and a second one on the same IP for dial-backs). Dropping it stops
/// the task.
#[derive(Debug)]
pub struct RelayServer {
    local_addr: SocketAddr,
    dial_back_addr: SocketAddr,
    core: Arc<Mutex<RelayCore>>,
    _shutdown: oneshot::Sender<()>,
}

impl RelayServer {
    /// Binds `addr` (and an ephemeral port on its IP for dial-backs) and starts the relay.
    pub async fn bind(addr: SocketAddr, config: RelayConfig) -> io::Result<RelayServer> {
        let main = UdpSocket::bind(addr).await?;
        let local_addr = main.local_addr()?;
        let dial_back = UdpSocket::bind(SocketAddr::new(local_addr.ip(), 0)).await?;
        let dial_back_addr = dial_back.local_addr()?;
        let mut secret = [0u8; 32];
        // Drivers may use real randomness; the core never does.
        OsRng
            .try_fill_bytes(&mut secret)
            .map_err(io::Error::other)?;
        let core = Arc::new(Mutex::new(RelayCore::new(config, secret)));
        let (shutdown, stopped) = oneshot::channel();
        let span = info_span!(target: "netstack::relay", "relay", local = %local_addr);
        tokio::spawn(run(main, dial_back, core.clone(), stopped).instrument(span));
        Ok(RelayServer {
            local_addr,
            dial_back_addr,
            core,
            _shutdown: shutdown,
        })
    }

    /// The address nodes send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address dial-backs leave from.
    pub fn dial_back_addr(&self) -> SocketAddr {
        self.dial_back_addr
    }

    /// The relay's counters.
    pub fn stats(&self) -> RelayStats {
        self.lock().stats()
    }

    /// What the relay forwarded for `node` while it has been registered.
    pub fn usage(&self, node: &NodeId) -> Option<PeerUsage> {
        self.lock().usage(node)
    }

    /// Every registered node and what was forwarded for it.
    pub fn usages(&self) -> Vec<(NodeId, PeerUsage)> {
        self.lock().usages()
    }

    /// The address `node` is registered at.
    pub fn registered_addr(&self, node: &NodeId) -> Option<SocketAddr> {
        self.lock().registered_addr(node)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RelayCore> {
        self.core.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn run(
    main: UdpSocket,
    dial_back: UdpSocket,
    core: Arc<Mutex<RelayCore>>,
    mut stopped: oneshot::Receiver<()>,
) {
    let epoch = tokio::time::Instant::now();
    let now =
        || Instant::from_micros(u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX));
    let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
    let mut spare = vec![0u8; 64];
    debug!(target: "netstack::relay", "relay started");
    loop {
        let deadline = core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .poll_timeout()
            .map(|at| epoch + Duration::from_micros(at.as_micros()));
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            received = main.recv_from(&mut buffer) => match received {
                Ok((len, from)) => {
                    let datagram = buffer.get(..len).unwrap_or_default();
                    let result = core
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .handle_datagram(now(), from, datagram);
                    if let Err(refusal) = result {
                        trace!(target: "netstack::relay", %from, %refusal, "refused");
                    }
                }
                Err(error) if is_transient(&error) => {}
                Err(error) => {
                    warn!(target: "netstack::relay", %error, "relay socket failed; stopping");
                    break;
                }
            },
            // Nothing is expected here; read so the queue never fills.
            _ = dial_back.recv_from(&mut spare) => {}
            () = sleep_until(deadline), if deadline.is_some() => {
                core.lock().unwrap_or_else(PoisonError::into_inner).handle_timeout(now());
            }
        }
        loop {
            let transmit = core
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .poll_transmit();
            let Some(transmit) = transmit else {
                break;
            };
            let socket = match transmit.via {
                RelaySocket::Main => &main,
                RelaySocket::DialBack => &dial_back,
            };
            if let Err(error) = socket.send_to(&transmit.bytes, transmit.to).await {
                // The sender's transport retransmits what is lost here.
                debug!(target: "netstack::relay", to = %transmit.to, %error, "send failed");
            }
        }
    }
    debug!(target: "netstack::relay", "relay stopped");
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
