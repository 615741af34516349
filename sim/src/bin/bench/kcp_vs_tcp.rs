//! `kcp-vs-tcp`: netstack's KCP sessions (UDP, the game-tuned default `KcpConfig`) against
//! kernel TCP (tokio, nodelay) on the same packet-level emulated link (netstack's
//! `emulated::EmulatedLink`: two network namespaces, TUN devices, a seeded forwarder), at
//! 20 ms RTT and 0, 1, 5 and 10 % loss in each direction. Needs root.
//!
//! Per loss level, one fresh link, then two phases:
//! - **messages**: [`FLOWS`] KCP sessions and [`FLOWS`] TCP connections side by side, each
//!   sending a [`MESSAGE_BYTES`]-byte message at 60 Hz ([`MESSAGES_PER_FLOW`] per flow) that
//!   the far side echoes; latency is the round trip, send to echo, on one process clock.
//!   Bytes on the wire are the IP packets of each protocol the link carried in the phase, both
//!   directions, retransmissions and acknowledgements included (dropped ones too: they were
//!   sent). Ratios are KCP / TCP.
//! - **untuned**: the same KCP flows alone with the configuration KCP had before this
//!   benchmark tuned it ([`untuned`]), against the TCP figures of the first phase.
//! - **bulk**: [`BULK_BYTES`] over one KCP session, then over one TCP connection, each alone
//!   on the link: goodput (send start to the receiver's confirmation) and wire bytes per
//!   payload byte. The link has no bandwidth cap, so this measures loss recovery, not
//!   congestion control.

use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use netstack::{
    driver::{KcpClient, KcpConnection, KcpServer},
    emulated::{ClassStats, EmulatedLink, LinkModelConfig, Protocol},
    kcp::KcpConfig,
};
use sim::report::{BenchReport, Op};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::oneshot,
    time::MissedTickBehavior,
};

use crate::Args;

/// The seed of every link decision unless `--seed` says otherwise.
pub const SEED_DEFAULT: u64 = 0x7c9d;
/// Loss in each direction, in percent, one link per level.
const LOSS_PERCENTS: [u32; 4] = [0, 1, 5, 10];
/// Round-trip time of the link: half of it each way.
const RTT: Duration = Duration::from_millis(20);
/// Concurrent flows per protocol in the message phase.
const FLOWS: u32 = 10;
/// Messages each flow sends: FLOWS × MESSAGES_PER_FLOW ≥ 3,000 per protocol per level.
const MESSAGES_PER_FLOW: u32 = 320;
/// Bytes of one message.
const MESSAGE_BYTES: usize = 64;
/// One message per frame at 60 Hz, per flow.
const MESSAGE_INTERVAL: Duration = Duration::from_micros(16_667);
/// How long a flow waits for its last echoes once it has sent everything.
const DRAIN: Duration = Duration::from_secs(10);
/// Bytes of the bulk stream, per protocol.
const BULK_BYTES: usize = 1 << 20;
/// Bytes handed to the transport at once in the bulk stream.
const BULK_CHUNK_BYTES: usize = 16 * 1024;
/// KCP as it was before this benchmark tuned it (5 ms flush interval, retransmissions sent
/// once), measured alone after the side-by-side phase so the tuning's effect shows in one run.
fn untuned() -> KcpConfig {
    KcpConfig {
        interval_ms: 5,
        duplicate_retransmissions: false,
        ..KcpConfig::default()
    }
}

/// Longest a bulk transfer may take before it is reported incomplete.
const BULK_TIMEOUT: Duration = Duration::from_secs(60);

const PORT_KCP_ECHO: u16 = 7_100;
const PORT_TCP_ECHO: u16 = 7_101;
const PORT_KCP_BULK: u16 = 7_102;
const PORT_TCP_BULK: u16 = 7_103;
const PORT_KCP_ECHO_UNTUNED: u16 = 7_104;

const _: () = assert!(FLOWS * MESSAGES_PER_FLOW >= 3_000);

pub async fn run(args: &Args) -> anyhow::Result<BenchReport> {
    let seed = args.seed.unwrap_or(SEED_DEFAULT);
    anyhow::ensure!(seed < 1 << 53, "--seed must be below 2^53 to print exactly");
    println!("kcp-vs-tcp: seed {seed} (replay with --seed {seed})");
    let mut report = BenchReport::new("kcp-vs-tcp");
    report.figure("seed", seed as f64);
    report.figure("rtt_ms", RTT.as_secs_f64() * 1_000.0);
    report.figure("flows_per_protocol", FLOWS.into());
    report.figure("message_bytes", MESSAGE_BYTES as f64);
    tokio::select! {
        measured = measure_all(seed, &mut report) => measured?,
        // Dropping the measurement drops its link, which deletes the namespaces.
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
    report.target("loss5_mean_ratio", Op::AtMost, 0.7);
    report.target("loss5_p99_ratio", Op::AtMost, 0.33);
    report.target("loss5_bytes_ratio", Op::AtMost, 1.2);
    Ok(report)
}

async fn measure_all(seed: u64, report: &mut BenchReport) -> anyhow::Result<()> {
    for loss_percent in LOSS_PERCENTS {
        let link = EmulatedLink::start(LinkModelConfig {
            loss: f64::from(loss_percent) / 100.0,
            delay: RTT / 2,
            seed,
            ..LinkModelConfig::default()
        })
        .context("starting the emulated link (needs root, /dev/net/tun and iproute2)")?;
        let name = |figure: &str| format!("loss{loss_percent}_{figure}");
        let messages = messages_phase(&link).await?;
        let (untuned, untuned_wire) = untuned_phase(&link).await?;
        let bulk = bulk_phase(&link).await?;
        anyhow::ensure!(link.is_running(), "the link's forwarder stopped");
        for (protocol, flows, wire) in [
            ("kcp", &messages.kcp, &messages.kcp_wire),
            ("tcp", &messages.tcp, &messages.tcp_wire),
        ] {
            report.figure(&name(&format!("{protocol}_rtt_mean_ms")), flows.mean_ms());
            report.figure(
                &name(&format!("{protocol}_rtt_p99_ms")),
                flows.quantile_ms(0.99),
            );
            report.figure(&name(&format!("{protocol}_rtt_max_ms")), flows.max_ms());
            report.figure(
                &name(&format!("{protocol}_messages")),
                flows.rtts_us.len() as f64,
            );
            report.figure(&name(&format!("{protocol}_lost")), flows.lost as f64);
            report.figure(
                &name(&format!("{protocol}_wire_bytes")),
                wire.bytes_offered as f64,
            );
            report.figure(
                &name(&format!("{protocol}_link_drop_percent")),
                drop_percent(wire),
            );
        }
        let ratio = |kcp: f64, tcp: f64| if tcp > 0.0 { kcp / tcp } else { f64::NAN };
        report.figure(&name("untuned_kcp_rtt_mean_ms"), untuned.mean_ms());
        report.figure(&name("untuned_kcp_rtt_p99_ms"), untuned.quantile_ms(0.99));
        report.figure(&name("untuned_kcp_rtt_max_ms"), untuned.max_ms());
        report.figure(&name("untuned_kcp_lost"), untuned.lost as f64);
        report.figure(
            &name("untuned_mean_ratio"),
            ratio(untuned.mean_ms(), messages.tcp.mean_ms()),
        );
        report.figure(
            &name("untuned_p99_ratio"),
            ratio(untuned.quantile_ms(0.99), messages.tcp.quantile_ms(0.99)),
        );
        report.figure(
            &name("untuned_bytes_ratio"),
            ratio(
                untuned_wire.bytes_offered as f64,
                messages.tcp_wire.bytes_offered as f64,
            ),
        );
        report.figure(
            &name("mean_ratio"),
            ratio(messages.kcp.mean_ms(), messages.tcp.mean_ms()),
        );
        report.figure(
            &name("p99_ratio"),
            ratio(
                messages.kcp.quantile_ms(0.99),
                messages.tcp.quantile_ms(0.99),
            ),
        );
        report.figure(
            &name("max_ratio"),
            ratio(messages.kcp.max_ms(), messages.tcp.max_ms()),
        );
        report.figure(
            &name("bytes_ratio"),
            ratio(
                messages.kcp_wire.bytes_offered as f64,
                messages.tcp_wire.bytes_offered as f64,
            ),
        );
        for (protocol, transfer) in [("kcp", &bulk.kcp), ("tcp", &bulk.tcp)] {
            report.figure(
                &name(&format!("bulk_{protocol}_mib_per_s")),
                transfer.mib_per_s(),
            );
            report.figure(
                &name(&format!("bulk_{protocol}_wire_per_payload")),
                transfer.wire.bytes_offered as f64 / BULK_BYTES as f64,
            );
            report.figure(
                &name(&format!("bulk_{protocol}_complete")),
                f64::from(u8::from(transfer.complete)),
            );
        }
        eprintln!(
            "  loss {loss_percent:>2} %: rtt mean kcp {:.1} / tcp {:.1} ms, p99 {:.1} / {:.1} ms, \
             bytes {} / {}, bulk {:.2} / {:.2} MiB/s",
            messages.kcp.mean_ms(),
            messages.tcp.mean_ms(),
            messages.kcp.quantile_ms(0.99),
            messages.tcp.quantile_ms(0.99),
            messages.kcp_wire.bytes_offered,
            messages.tcp_wire.bytes_offered,
            bulk.kcp.mib_per_s(),
            bulk.tcp.mib_per_s(),
        );
    }
    Ok(())
}

fn drop_percent(stats: &ClassStats) -> f64 {
    100.0 * stats.packets_dropped as f64 / stats.packets_offered.max(1) as f64
}

/// Round trips of every flow of one protocol.
#[derive(Debug, Default)]
struct Flows {
    rtts_us: Vec<u64>,
    /// Messages whose echo never came back within the drain time.
    lost: u64,
}

impl Flows {
    fn mean_ms(&self) -> f64 {
        let sum: u64 = self.rtts_us.iter().sum();
        sum as f64 / self.rtts_us.len().max(1) as f64 / 1_000.0
    }

    /// The nearest-rank quantile.
    fn quantile_ms(&self, quantile: f64) -> f64 {
        let mut sorted = self.rtts_us.clone();
        sorted.sort_unstable();
        let rank = (quantile * sorted.len() as f64).ceil() as usize;
        sorted
            .get(rank.clamp(1, sorted.len().max(1)) - 1)
            .map_or(f64::NAN, |us| *us as f64 / 1_000.0)
    }

    fn max_ms(&self) -> f64 {
        self.rtts_us
            .iter()
            .max()
            .map_or(f64::NAN, |us| *us as f64 / 1_000.0)
    }

    fn absorb(&mut self, flow: FlowResult) {
        self.rtts_us.extend(flow.rtts_us);
        self.lost += flow.lost;
    }
}

#[derive(Debug)]
struct FlowResult {
    rtts_us: Vec<u64>,
    lost: u64,
}

/// The untuned KCP alone: its flows and its bytes on the wire.
async fn untuned_phase(link: &EmulatedLink) -> anyhow::Result<(Flows, ClassStats)> {
    let server = SocketAddr::new(link.address_b(), PORT_KCP_ECHO_UNTUNED);
    serve(link, server, |addr, ready| {
        kcp_echo_server(addr, ready, untuned())
    })
    .await?;
    let before = link.stats();
    let epoch = Instant::now();
    let flows: Vec<_> = (0..FLOWS)
        .map(|flow| {
            let offset = MESSAGE_INTERVAL * flow / FLOWS;
            link.side_a()
                .spawn(kcp_flow(server, untuned(), flow, offset, epoch))
        })
        .collect();
    let mut untuned = Flows::default();
    for flow in flows {
        untuned.absorb(flow.await.context("a KCP flow panicked")??);
    }
    let after = link.stats();
    Ok((
        untuned,
        after
            .protocol(Protocol::Udp)
            .since(&before.protocol(Protocol::Udp)),
    ))
}

struct MessagesPhase {
    kcp: Flows,
    tcp: Flows,
    kcp_wire: ClassStats,
    tcp_wire: ClassStats,
}

async fn messages_phase(link: &EmulatedLink) -> anyhow::Result<MessagesPhase> {
    let kcp_server = SocketAddr::new(link.address_b(), PORT_KCP_ECHO);
    let tcp_server = SocketAddr::new(link.address_b(), PORT_TCP_ECHO);
    serve(link, kcp_server, |addr, ready| {
        kcp_echo_server(addr, ready, KcpConfig::default())
    })
    .await?;
    serve(link, tcp_server, tcp_echo_server).await?;
    let before = link.stats();
    let epoch = Instant::now();
    let mut kcp_flows = Vec::new();
    let mut tcp_flows = Vec::new();
    for flow in 0..FLOWS {
        // Spread the flows over one frame, so their sends do not all fall on one instant.
        let offset = MESSAGE_INTERVAL * flow / FLOWS;
        kcp_flows.push(link.side_a().spawn(kcp_flow(
            kcp_server,
            KcpConfig::default(),
            flow,
            offset,
            epoch,
        )));
        tcp_flows.push(
            link.side_a()
                .spawn(tcp_flow(tcp_server, flow, offset, epoch)),
        );
    }
    let mut kcp = Flows::default();
    let mut tcp = Flows::default();
    for flow in kcp_flows {
        kcp.absorb(flow.await.context("a KCP flow panicked")??);
    }
    for flow in tcp_flows {
        tcp.absorb(flow.await.context("a TCP flow panicked")??);
    }
    let after = link.stats();
    Ok(MessagesPhase {
        kcp,
        tcp,
        kcp_wire: after
            .protocol(Protocol::Udp)
            .since(&before.protocol(Protocol::Udp)),
        tcp_wire: after
            .protocol(Protocol::Tcp)
            .since(&before.protocol(Protocol::Tcp)),
    })
}

/// Where a server says it listens (or why it cannot).
type Ready = oneshot::Sender<std::io::Result<()>>;

/// Starts `server` on side B and waits until it listens.
async fn serve<F, Fut>(link: &EmulatedLink, addr: SocketAddr, server: F) -> anyhow::Result<()>
where
    F: FnOnce(SocketAddr, Ready) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (ready, listening) = oneshot::channel();
    link.side_b().spawn(server(addr, ready));
    listening
        .await
        .context("a server stopped before listening")?
        .with_context(|| format!("listening on {addr}"))?;
    Ok(())
}

/// Echoes every message of every KCP session.
async fn kcp_echo_server(addr: SocketAddr, ready: Ready, config: KcpConfig) {
    let (_server, mut incoming) = match KcpServer::bind(addr, config).await {
        Ok(bound) => bound,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Some(mut connection) = incoming.recv().await {
        tokio::spawn(async move {
            while let Some(message) = connection.recv().await {
                if connection.send(message).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Accepts TCP connections on `addr`, after saying on `ready` whether it could listen, and
/// serves each connection with `serve` in its own task.
async fn tcp_listen<Serve, Served>(addr: SocketAddr, ready: Ready, serve: Serve)
where
    Serve: Fn(TcpStream) -> Served,
    Served: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(serve(stream));
    }
}

/// Echoes every message of every TCP connection.
async fn tcp_echo_server(addr: SocketAddr, ready: Ready) {
    tcp_listen(addr, ready, tcp_echo).await;
}

async fn tcp_echo(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut message = [0u8; MESSAGE_BYTES];
    loop {
        stream.read_exact(&mut message).await?;
        stream.write_all(&message).await?;
    }
}

/// A message: flow (4 bytes), sequence number (4), send time in µs since `epoch` (8), padding.
fn message(flow: u32, sequence: u32, epoch: Instant) -> [u8; MESSAGE_BYTES] {
    let mut message = [0u8; MESSAGE_BYTES];
    message[..4].copy_from_slice(&flow.to_le_bytes());
    message[4..8].copy_from_slice(&sequence.to_le_bytes());
    message[8..16].copy_from_slice(&micros_since(epoch).to_le_bytes());
    message
}

/// The round trip of an echoed message, checked to be `flow`'s `expected` one.
fn round_trip_us(echo: &[u8], flow: u32, expected: u32, epoch: Instant) -> anyhow::Result<u64> {
    let field = |range: std::ops::Range<usize>| echo.get(range).context("echo too short");
    let flow_echoed = u32::from_le_bytes(field(0..4)?.try_into()?);
    let sequence = u32::from_le_bytes(field(4..8)?.try_into()?);
    let sent_us = u64::from_le_bytes(field(8..16)?.try_into()?);
    anyhow::ensure!(
        flow_echoed == flow && sequence == expected,
        "flow {flow} expected echo {expected}, got flow {flow_echoed} echo {sequence}"
    );
    Ok(micros_since(epoch).saturating_sub(sent_us))
}

fn micros_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn frame_ticker(offset: Duration) -> tokio::time::Interval {
    let mut ticker =
        tokio::time::interval_at(tokio::time::Instant::now() + offset, MESSAGE_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    ticker
}

fn flow_deadline() -> tokio::time::Instant {
    tokio::time::Instant::now() + MESSAGE_INTERVAL * (MESSAGES_PER_FLOW + 60) + DRAIN
}

async fn kcp_flow(
    server: SocketAddr,
    config: KcpConfig,
    flow: u32,
    offset: Duration,
    epoch: Instant,
) -> anyhow::Result<FlowResult> {
    let mut connection = KcpClient::connect(server, config).await?;
    let sender = connection.sender();
    let writer = tokio::spawn(async move {
        let mut ticker = frame_ticker(offset);
        for sequence in 0..MESSAGES_PER_FLOW {
            ticker.tick().await;
            sender.send(message(flow, sequence, epoch).to_vec()).await?;
        }
        Ok::<_, netstack::NetError>(sender)
    });
    let deadline = flow_deadline();
    let mut rtts_us = Vec::with_capacity(MESSAGES_PER_FLOW as usize);
    for expected in 0..MESSAGES_PER_FLOW {
        match tokio::time::timeout_at(deadline, connection.recv()).await {
            Ok(Some(echo)) => rtts_us.push(round_trip_us(&echo, flow, expected, epoch)?),
            Ok(None) => bail!("KCP flow {flow}: the session closed"),
            Err(_) => break,
        }
    }
    let _sender = writer.await??;
    Ok(FlowResult {
        lost: u64::from(MESSAGES_PER_FLOW) - rtts_us.len() as u64,
        rtts_us,
    })
}

async fn tcp_flow(
    server: SocketAddr,
    flow: u32,
    offset: Duration,
    epoch: Instant,
) -> anyhow::Result<FlowResult> {
    let stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let (mut reader, mut writer) = stream.into_split();
    let writer = tokio::spawn(async move {
        let mut ticker = frame_ticker(offset);
        for sequence in 0..MESSAGES_PER_FLOW {
            ticker.tick().await;
            writer.write_all(&message(flow, sequence, epoch)).await?;
        }
        Ok::<_, std::io::Error>(writer)
    });
    let deadline = flow_deadline();
    let mut rtts_us = Vec::with_capacity(MESSAGES_PER_FLOW as usize);
    let mut echo = [0u8; MESSAGE_BYTES];
    for expected in 0..MESSAGES_PER_FLOW {
        match tokio::time::timeout_at(deadline, reader.read_exact(&mut echo)).await {
            Ok(Ok(_)) => rtts_us.push(round_trip_us(&echo, flow, expected, epoch)?),
            Ok(Err(error)) => bail!("TCP flow {flow}: {error}"),
            Err(_) => break,
        }
    }
    let _writer = writer.await??;
    Ok(FlowResult {
        lost: u64::from(MESSAGES_PER_FLOW) - rtts_us.len() as u64,
        rtts_us,
    })
}

struct BulkPhase {
    kcp: Transfer,
    tcp: Transfer,
}

/// One bulk transfer.
struct Transfer {
    elapsed: Duration,
    /// Payload bytes the receiver confirmed (all of them when complete).
    bytes: usize,
    complete: bool,
    wire: ClassStats,
}

impl Transfer {
    fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / (1024.0 * 1024.0) / self.elapsed.as_secs_f64().max(1e-9)
    }
}

async fn bulk_phase(link: &EmulatedLink) -> anyhow::Result<BulkPhase> {
    let kcp_server = SocketAddr::new(link.address_b(), PORT_KCP_BULK);
    let tcp_server = SocketAddr::new(link.address_b(), PORT_TCP_BULK);
    serve(link, kcp_server, kcp_bulk_server).await?;
    serve(link, tcp_server, tcp_bulk_server).await?;
    let before = link.stats();
    let (bytes, elapsed) = link.side_a().spawn(kcp_bulk(kcp_server)).await??;
    let middle = link.stats();
    let kcp = Transfer {
        elapsed,
        bytes,
        complete: bytes == BULK_BYTES,
        wire: middle
            .protocol(Protocol::Udp)
            .since(&before.protocol(Protocol::Udp)),
    };
    let (bytes, elapsed) = link.side_a().spawn(tcp_bulk(tcp_server)).await??;
    let after = link.stats();
    let tcp = Transfer {
        elapsed,
        bytes,
        complete: bytes == BULK_BYTES,
        wire: after
            .protocol(Protocol::Tcp)
            .since(&middle.protocol(Protocol::Tcp)),
    };
    Ok(BulkPhase { kcp, tcp })
}

/// Receives bulk streams over KCP and confirms every [`BULK_BYTES`] with one byte.
async fn kcp_bulk_server(addr: SocketAddr, ready: Ready) {
    let (_server, mut incoming) = match KcpServer::bind(addr, KcpConfig::default()).await {
        Ok(bound) => bound,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Some(connection) = incoming.recv().await {
        tokio::spawn(kcp_bulk_receive(connection));
    }
}

async fn kcp_bulk_receive(mut connection: KcpConnection) {
    let mut received = 0usize;
    while let Some(message) = connection.recv().await {
        received += message.len();
        if received >= BULK_BYTES {
            received -= BULK_BYTES;
            if connection.send(vec![1u8]).await.is_err() {
                return;
            }
        }
    }
}

/// Receives bulk streams over TCP and confirms every [`BULK_BYTES`] with one byte.
async fn tcp_bulk_server(addr: SocketAddr, ready: Ready) {
    tcp_listen(addr, ready, tcp_bulk_receive).await;
}

async fn tcp_bulk_receive(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buffer = vec![0u8; BULK_CHUNK_BYTES];
    let mut received = 0usize;
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        received += read;
        if received >= BULK_BYTES {
            received -= BULK_BYTES;
            stream.write_all(&[1u8]).await?;
        }
    }
}

/// Sends [`BULK_BYTES`] over a new KCP session; returns the bytes confirmed and the time taken.
async fn kcp_bulk(server: SocketAddr) -> anyhow::Result<(usize, Duration)> {
    let mut connection = KcpClient::connect(server, KcpConfig::default()).await?;
    let start = Instant::now();
    let sender = connection.sender();
    let writer = tokio::spawn(async move {
        for _ in 0..BULK_BYTES / BULK_CHUNK_BYTES {
            sender.send(vec![0xa5u8; BULK_CHUNK_BYTES]).await?;
        }
        Ok::<_, netstack::NetError>(sender)
    });
    let confirmed = tokio::time::timeout(BULK_TIMEOUT, connection.recv()).await;
    let elapsed = start.elapsed();
    writer.abort();
    Ok(match confirmed {
        Ok(Some(_)) => (BULK_BYTES, elapsed),
        _ => (0, elapsed),
    })
}

/// Sends [`BULK_BYTES`] over a new TCP connection; returns the bytes confirmed and the time.
async fn tcp_bulk(server: SocketAddr) -> anyhow::Result<(usize, Duration)> {
    let stream = TcpStream::connect(server).await?;
    stream.set_nodelay(true)?;
    let start = Instant::now();
    let (mut reader, mut writer) = stream.into_split();
    let writer = tokio::spawn(async move {
        let chunk = vec![0xa5u8; BULK_CHUNK_BYTES];
        for _ in 0..BULK_BYTES / BULK_CHUNK_BYTES {
            writer.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(writer)
    });
    let mut confirmation = [0u8; 1];
    let confirmed = tokio::time::timeout(BULK_TIMEOUT, reader.read_exact(&mut confirmation)).await;
    let elapsed = start.elapsed();
    writer.abort();
    Ok(match confirmed {
        Ok(Ok(_)) => (BULK_BYTES, elapsed),
        _ => (0, elapsed),
    })
}
