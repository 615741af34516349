//! The emulated link in real network namespaces (feature `emulated-link`; needs root, as CI
//! has). Without root it says so and passes, unless `CI=true`, where it fails.

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use netstack::emulated::{Direction, EmulatedLink, Fate, LinkModelConfig, Protocol};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream, UdpSocket},
};

use crate::guarded;

const DATAGRAMS: u32 = 500;
const TCP_BYTES: usize = 100_000;

fn config() -> LinkModelConfig {
    LinkModelConfig {
        loss: 0.1,
        duplicate: 0.05,
        reorder: 0.1,
        delay: Duration::from_millis(2),
        jitter: Duration::from_millis(1),
        seed: 11,
        ..LinkModelConfig::default()
    }
}

/// The link, or `None` where this machine cannot make one (not root) and this is not CI.
fn start_or_skip() -> Option<EmulatedLink> {
    match EmulatedLink::start(config()) {
        Ok(link) => Some(link),
        Err(error) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("skipped: no emulated link here ({error}); CI runs this as root");
            None
        }
        Err(error) => panic!("CI must be able to start the emulated link: {error}"),
    }
}

fn namespaces_listed() -> String {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datagrams_cross_and_every_drop_is_the_seeds_decision() {
    let Some(link) = start_or_skip() else {
        return;
    };
    let names = link.namespaces().map(str::to_string);
    assert!(
        names
            .iter()
            .all(|name| namespaces_listed().contains(name.as_str()))
    );
    let server = SocketAddr::new(link.address_b(), 9_000);
    let received = Arc::new(Mutex::new(Vec::new()));
    let (bound, listening) = tokio::sync::oneshot::channel();
    link.side_b().spawn({
        let received = received.clone();
        async move {
            let socket = UdpSocket::bind(server).await.expect("bind in namespace B");
            let _ = bound.send(());
            let mut buffer = [0u8; 64];
            while let Ok(len) = socket.recv(&mut buffer).await {
                let index = u32::from_le_bytes(buffer[..4].try_into().expect("4 bytes"));
                assert_eq!(len, 32);
                received.lock().expect("not poisoned").push(index);
            }
        }
    });
    guarded("bind", listening).await.expect("B listens");
    let sender = link.side_a().spawn(async move {
        let socket = UdpSocket::bind("0.0.0.0:0")
            .await
            .expect("bind in namespace A");
        for index in 0..DATAGRAMS {
            let mut datagram = [0u8; 32];
            datagram[..4].copy_from_slice(&index.to_le_bytes());
            socket.send_to(&datagram, server).await.expect("send");
            if index % 10 == 9 {
                // Pace the sender so no queue on the way can overflow.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    guarded("send", sender).await.expect("A sent");
    // Wait until the link holds nothing and B has read everything it delivered.
    let settled = async {
        loop {
            let stats = link.stats();
            let udp = stats.class(Direction::AToB, Protocol::Udp);
            let count = received.lock().expect("not poisoned").len() as u64;
            if udp.packets_offered == u64::from(DATAGRAMS)
                && stats.packets_in_flight == 0
                && count == udp.packets_delivered
            {
                return udp;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let udp = guarded("the link to settle", settled).await;

    let mut replay = Fate::stream(config().seed, Direction::AToB, Protocol::Udp);
    let fates: Vec<Fate> = (0..DATAGRAMS)
        .map(|_| Fate::draw(&mut replay, &config()))
        .collect();
    let dropped: BTreeSet<u32> = (0..DATAGRAMS)
        .filter(|index| fates[*index as usize].dropped)
        .collect();
    let copies: usize = fates.iter().map(|fate| fate.delays.len()).sum();
    assert_eq!(udp.packets_dropped, dropped.len() as u64);
    assert!(
        (20..=80).contains(&dropped.len()),
        "about 10 % of 500: {}",
        dropped.len()
    );
    assert_eq!(udp.packets_delivered, copies as u64);
    assert!(udp.packets_duplicated > 0 && udp.packets_reordered > 0);
    // Every datagram the seed let through crossed (duplicates twice), and no other.
    let got = received.lock().expect("not poisoned").clone();
    assert_eq!(got.len(), copies);
    let distinct: BTreeSet<u32> = got.iter().copied().collect();
    let expected: BTreeSet<u32> = (0..DATAGRAMS).filter(|i| !dropped.contains(i)).collect();
    assert_eq!(distinct, expected);
    assert_eq!(
        link.stats()
            .class(Direction::BToA, Protocol::Udp)
            .packets_offered,
        0
    );

    drop(link);
    let listed = namespaces_listed();
    assert!(
        names.iter().all(|name| !listed.contains(name.as_str())),
        "dropping the link deletes its namespaces: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kernel_tcp_recovers_from_the_links_losses() {
    let Some(link) = start_or_skip() else {
        return;
    };
    let server = SocketAddr::new(link.address_b(), 9_001);
    let (bound, listening) = tokio::sync::oneshot::channel();
    let receiver = link.side_b().spawn(async move {
        let listener = TcpListener::bind(server)
            .await
            .expect("bind in namespace B");
        let _ = bound.send(());
        let (mut stream, _) = listener.accept().await.expect("accept");
        let mut bytes = Vec::new();
        stream.read_to_end(&mut bytes).await.expect("read");
        bytes
    });
    guarded("listen", listening).await.expect("B listens");
    let sent: Vec<u8> = (0..TCP_BYTES).map(|index| (index % 251) as u8).collect();
    let sender = link.side_a().spawn({
        let sent = sent.clone();
        async move {
            let mut stream = TcpStream::connect(server).await.expect("connect from A");
            stream.write_all(&sent).await.expect("write");
            stream.shutdown().await.expect("shutdown");
        }
    });
    guarded("send", sender).await.expect("A sent");
    let bytes = guarded("receive", receiver).await.expect("B received");
    assert!(bytes == sent, "TCP delivers every byte in order");
    let stats = link.stats();
    let forward = stats.class(Direction::AToB, Protocol::Tcp);
    let backward = stats.class(Direction::BToA, Protocol::Tcp);
    assert!(forward.bytes_offered > TCP_BYTES as u64, "{forward:?}");
    assert!(forward.packets_dropped > 0, "{forward:?}");
    assert!(backward.packets_offered > 0, "acks come back: {backward:?}");
    assert_eq!(stats.protocol(Protocol::Udp).packets_offered, 0);
}
