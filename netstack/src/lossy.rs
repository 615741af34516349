//! Test support for any crate: a seeded UDP proxy that loses, duplicates, reorders and delays
//! datagrams, so drivers can be tested over a bad link on loopback.
//!
//! Clients send to [`LossyLink::local_addr`]; the link forwards to the upstream address from
//! one socket per client (so replies find their way back) and returns the replies. Every
//! choice comes from a ChaCha RNG seeded with [`LinkConfig::seed`], in the order datagrams
//! arrive; arrival order itself depends on the kernel, so a run is reproducible in its
//! fault rates, not packet for packet.

use std::{
    cmp::Reverse,
    collections::{BinaryHeap, HashMap},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    ops::RangeInclusive,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::{net::UdpSocket, sync::mpsc, task::JoinSet, time::Instant};
use tracing::{debug, trace};

use crate::constants::{DATAGRAM_BUFFER_BYTES, LOSSY_IN_FLIGHT_MAX, LOSSY_REORDER_HOLD_MS_MAX};

/// How a [`LossyLink`] mistreats datagrams, in both directions alike.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability that a datagram is dropped.
    pub loss: f64,
    /// Probability that a datagram is sent twice.
    pub duplicate: f64,
    /// Probability that a datagram is held back an extra 1 to
    /// [`LOSSY_REORDER_HOLD_MS_MAX`] milliseconds, so later ones overtake it.
    pub reorder: f64,
    /// Delay of every datagram, drawn uniformly from this range of milliseconds.
    pub delay_ms: RangeInclusive<u64>,
    /// Seed of the RNG behind every choice.
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            delay_ms: 0..=0,
            seed: 0,
        }
    }
}

impl LinkConfig {
    fn validate(&self) -> io::Result<()> {
        for (name, probability) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&probability) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{name} probability {probability} is outside 0..=1"),
                ));
            }
        }
        if self.delay_ms.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "delay_ms range is empty",
            ));
        }
        Ok(())
    }
}

/// Counters of a [`LossyLink`], both directions together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams that arrived at the link.
    pub packets_received: u64,
    /// Bytes of those datagrams.
    pub bytes_received: u64,
    /// Datagrams sent on (duplicates included).
    pub packets_forwarded: u64,
    /// Bytes sent on.
    pub bytes_forwarded: u64,
    /// Datagrams dropped (by the loss draw or a full link).
    pub packets_dropped: u64,
    /// Extra copies sent.
    pub packets_duplicated: u64,
    /// Datagrams held back to be reordered.
    pub packets_reordered: u64,
}

#[derive(Debug, Default)]
struct Counters {
    packets_received: AtomicU64,
    bytes_received: AtomicU64,
    packets_forwarded: AtomicU64,
    bytes_forwarded: AtomicU64,
    packets_dropped: AtomicU64,
    packets_duplicated: AtomicU64,
    packets_reordered: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

/// A running lossy proxy; dropping it stops it.
#[derive(Debug)]
pub struct LossyLink {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl LossyLink {
    /// Listens on `listen_addr` and forwards to `upstream_addr` through `config`'s faults.
    pub async fn start(
        listen_addr: SocketAddr,
        upstream_addr: SocketAddr,
        config: LinkConfig,
    ) -> io::Result<LossyLink> {
        config.validate()?;
        let listen = UdpSocket::bind(listen_addr).await?;
        let local_addr = listen.local_addr()?;
        let counters = Arc::new(Counters::default());
        let (replies, returned) = mpsc::channel(1_024);
        let proxy = Proxy {
            listen,
            upstream_addr,
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            clients: HashMap::new(),
            relays: JoinSet::new(),
            replies,
            in_flight: BinaryHeap::new(),
            order: 0,
            counters: counters.clone(),
        };
        let task = tokio::spawn(proxy.run(returned));
        Ok(LossyLink {
            local_addr,
            counters,
            task,
        })
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The counters so far.
    pub fn stats(&self) -> LinkStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let counters = &self.counters;
        LinkStats {
            packets_received: read(&counters.packets_received),
            bytes_received: read(&counters.bytes_received),
            packets_forwarded: read(&counters.packets_forwarded),
            bytes_forwarded: read(&counters.bytes_forwarded),
            packets_dropped: read(&counters.packets_dropped),
            packets_duplicated: read(&counters.packets_duplicated),
            packets_reordered: read(&counters.packets_reordered),
        }
    }
}

impl Drop for LossyLink {
    fn drop(&mut self) {
        // The proxy owns its relay tasks in a JoinSet, which aborts them when dropped.
        self.task.abort();
    }
}

/// Where a held datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Direction {
    /// From this client to the upstream.
    Upstream(SocketAddr),
    /// From the upstream back to this client.
    Downstream(SocketAddr),
}

/// A datagram waiting for its release: (release time, arrival order, direction, bytes).
type Held = (Instant, u64, Direction, Vec<u8>);

struct Proxy {
    listen: UdpSocket,
    upstream_addr: SocketAddr,
    config: LinkConfig,
    rng: ChaCha8Rng,
    /// One upstream socket per client.
    clients: HashMap<SocketAddr, Arc<UdpSocket>>,
    relays: JoinSet<()>,
    replies: mpsc::Sender<(SocketAddr, Vec<u8>)>,
    in_flight: BinaryHeap<Reverse<Held>>,
    order: u64,
    counters: Arc<Counters>,
}

impl Proxy {
    async fn run(mut self, mut returned: mpsc::Receiver<(SocketAddr, Vec<u8>)>) {
        let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
        loop {
            let release_at = self.in_flight.peek().map(|Reverse((at, ..))| *at);
            tokio::select! {
                received = self.listen.recv_from(&mut buffer) => match received {
                    Ok((len, client)) => {
                        let datagram = buffer.get(..len).unwrap_or_default().to_vec();
                        if self.upstream_socket(client).await.is_some() {
                            self.hold(Direction::Upstream(client), datagram);
                        }
                    }
                    Err(error) => trace!(target: "netstack::lossy", %error, "receive failed"),
                },
                Some((client, datagram)) = returned.recv() => {
                    self.hold(Direction::Downstream(client), datagram);
                }
                () = sleep_until(release_at), if release_at.is_some() => {}
            }
            self.release().await;
        }
    }

    async fn upstream_socket(&mut self, client: SocketAddr) -> Option<Arc<UdpSocket>> {
        if let Some(socket) = self.clients.get(&client) {
            return Some(socket.clone());
        }
        let ip = match self.upstream_addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(ip) if ip.is_loopback() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let socket = match UdpSocket::bind(SocketAddr::new(ip, 0)).await {
            Ok(socket) => Arc::new(socket),
            Err(error) => {
                debug!(target: "netstack::lossy", %error, "cannot open an upstream socket");
                return None;
            }
        };
        self.clients.insert(client, socket.clone());
        let replies = self.replies.clone();
        let relay = socket.clone();
        self.relays.spawn(async move {
            let mut buffer = vec![0u8; DATAGRAM_BUFFER_BYTES];
            while let Ok((len, _)) = relay.recv_from(&mut buffer).await {
                let datagram = buffer.get(..len).unwrap_or_default().to_vec();
                if replies.send((client, datagram)).await.is_err() {
                    return;
                }
            }
        });
        Some(socket)
    }

    /// Draws the datagram's fate and queues its copies, if any.
    fn hold(&mut self, direction: Direction, datagram: Vec<u8>) {
        let counters = &self.counters;
        bump(&counters.packets_received, 1);
        bump(&counters.bytes_received, datagram.len() as u64);
        if self.rng.random_bool(self.config.loss) {
            bump(&counters.packets_dropped, 1);
            return;
        }
        let copies = if self.rng.random_bool(self.config.duplicate) {
            bump(&counters.packets_duplicated, 1);
            2
        } else {
            1
        };
        let now = Instant::now();
        for _ in 0..copies {
            if self.in_flight.len() >= LOSSY_IN_FLIGHT_MAX {
                bump(&counters.packets_dropped, 1);
                continue;
            }
            let mut delay_ms = self.rng.random_range(self.config.delay_ms.clone());
            if self.rng.random_bool(self.config.reorder) {
                bump(&counters.packets_reordered, 1);
                delay_ms += self.rng.random_range(1..=LOSSY_REORDER_HOLD_MS_MAX);
            }
            self.order += 1;
            let release = now + Duration::from_millis(delay_ms);
            self.in_flight
                .push(Reverse((release, self.order, direction, datagram.clone())));
        }
    }

    async fn release(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((at, ..))) = self.in_flight.peek() {
            if *at > now {
                return;
            }
            let Some(Reverse((_, _, direction, datagram))) = self.in_flight.pop() else {
                return;
            };
            let sent = match direction {
                Direction::Upstream(client) => match self.clients.get(&client) {
                    Some(socket) => socket.send_to(&datagram, self.upstream_addr).await,
                    None => continue,
                },
                Direction::Downstream(client) => self.listen.send_to(&datagram, client).await,
            };
            match sent {
                Ok(_) => {
                    bump(&self.counters.packets_forwarded, 1);
                    bump(&self.counters.bytes_forwarded, datagram.len() as u64);
                }
                Err(error) => trace!(target: "netstack::lossy", %error, "forward failed"),
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
