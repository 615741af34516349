//! The node-ID DHT on real UDP sockets on loopback: joins, lookups against the ground truth,
//! forged IDs and malformed datagrams.

use std::{net::SocketAddr, time::Duration};

use alloy_primitives::Address;
use netstack::{
    dht::{Contact, DhtBody, DhtConfig, DhtMessage, wire::DHT_DATAGRAM_BYTES_MAX},
    driver::{Dht, DhtSnapshot},
    secure::NodeIdentity,
};
use primitives::{
    id::{NodeId, k_nearest},
    keys::AccountKey,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::{net::UdpSocket, task::JoinSet};

use super::{guarded, loopback};

const K: usize = 8;
/// Nodes of the loopback network.
const NODES: u64 = 40;

fn identity(seed: u64) -> NodeIdentity {
    NodeIdentity::new(AccountKey::from_seed(seed))
}

/// Timeouts that only bound liveness: on loopback every request is answered long before.
fn config(seed: u64) -> DhtConfig {
    DhtConfig {
        rpc_timeout: Duration::from_secs(2),
        rpc_attempts: 3,
        seed,
    }
}

/// Starts `count` nodes (seeds `first..`) and joins each through the first, one after another.
async fn network(first: u64, count: u64, config: fn(u64) -> DhtConfig) -> Vec<Dht> {
    let mut nodes = Vec::new();
    for seed in first..first + count {
        let node = Dht::bind(loopback(), identity(seed), config(seed))
            .await
            .expect("bind");
        if let Some(bootstrap) = nodes.first() {
            let bootstrap: &Dht = bootstrap;
            let report = guarded("join", node.join(bootstrap.local_addr()))
                .await
                .expect("join");
            assert_eq!(report.bootstrap, bootstrap.contact());
            assert!(report.table_len >= 1);
        }
        nodes.push(node);
    }
    nodes
}

/// Waits until no node has a request in flight (verification pings of the last joins), so
/// every table holds what the joins taught it.
async fn settle(nodes: &[Dht]) -> Vec<DhtSnapshot> {
    guarded("settle", async {
        loop {
            let mut snapshots = Vec::new();
            for node in nodes {
                snapshots.push(node.snapshot().await.expect("snapshot"));
            }
            if snapshots.iter().all(|s| s.requests_in_flight == 0) {
                return snapshots;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// Waits until `node` has handled at least `count` datagrams in all.
async fn received(node: &Dht, count: u64) -> DhtSnapshot {
    guarded("datagrams handled", async {
        loop {
            let snapshot = node.snapshot().await.expect("snapshot");
            if snapshot.stats.datagrams_received >= count {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_nodes_on_loopback_find_the_true_k_closest() {
    let nodes = network(1_000, NODES, config).await;
    let snapshots = settle(&nodes).await;
    let ids: Vec<NodeId> = nodes.iter().map(Dht::node_id).collect();
    // Every node's table holds only proven nodes at their real addresses.
    for snapshot in &snapshots {
        assert!(!snapshot.contacts.is_empty());
        for contact in &snapshot.contacts {
            let node = nodes
                .iter()
                .find(|node| node.node_id() == contact.id)
                .expect("a table holds only nodes of the network");
            assert_eq!(contact.addr, node.local_addr());
        }
        assert_eq!(snapshot.stats.malformed, 0);
        assert_eq!(snapshot.stats.forged, 0);
        assert_eq!(snapshot.stats.wrong_node, 0);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut lookups = JoinSet::new();
    for (index, node) in nodes.iter().enumerate() {
        // Random points, and one node's own ID (a lookup never returns the asker).
        let mut targets: Vec<Address> = (0..3)
            .map(|_| Address::from(rng.random::<[u8; 20]>()))
            .collect();
        targets.push(ids[(index * 7 + 3) % ids.len()].0);
        for target in targets {
            let node = node.clone();
            lookups.spawn(async move { (node.node_id(), target, node.lookup(target).await) });
        }
    }
    let mut checked = 0;
    while let Some(joined) = guarded("lookups", lookups.join_next()).await {
        let (asker, target, result) = joined.expect("lookup task");
        let result = result.expect("lookup");
        let others: Vec<NodeId> = ids.iter().copied().filter(|id| *id != asker).collect();
        let truth = k_nearest(&target, &others, K);
        let found: Vec<NodeId> = result.closest.iter().map(|contact| contact.id).collect();
        assert_eq!(found, truth, "lookup of {target} by {asker}: {result:?}");
        assert_eq!(result.failures, 0);
        for contact in &result.closest {
            let node = nodes
                .iter()
                .find(|n| n.node_id() == contact.id)
                .expect("known");
            assert_eq!(contact.addr, node.local_addr());
        }
        checked += 1;
    }
    assert_eq!(checked, NODES * 4);
}

/// Mallory's raw socket: answers pings and find-nodes signed by her own key, but lists
/// `fake` (an ID she holds no key for) at her own address in every answer.
async fn lying_node(mallory: NodeIdentity, socket: UdpSocket, fake: NodeId) {
    let mut buffer = vec![0u8; DHT_DATAGRAM_BYTES_MAX + 1];
    let me: SocketAddr = socket.local_addr().expect("bound");
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
            return;
        };
        let Ok(request) = DhtMessage::decode(&buffer[..len]) else {
            continue;
        };
        let body = match request.body {
            DhtBody::Ping => DhtBody::Pong { observed: from },
            DhtBody::FindNode { .. } => DhtBody::Nodes {
                contacts: vec![Contact { id: fake, addr: me }],
            },
            _ => continue,
        };
        let answer = DhtMessage {
            request_id: request.request_id,
            sender: mallory.node_id(),
            recipient: Some(request.sender),
            body,
        };
        let _ = socket.send_to(&answer.encode(&mallory), from).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_forged_id_cannot_insert_itself() {
    // Short timeouts: Mallory's lies must time out for the test to end; honest answers on
    // loopback come long before either.
    fn quick(seed: u64) -> DhtConfig {
        DhtConfig {
            rpc_timeout: Duration::from_millis(500),
            rpc_attempts: 3,
            seed,
        }
    }
    let nodes = network(2_000, 8, quick).await;
    let bootstrap = nodes[0].clone();
    let victim = identity(2_003);
    let mallory = identity(666);
    let mut fake_raw = mallory.node_id().0.0;
    fake_raw[19] ^= 1;
    let fake = NodeId(Address::from(fake_raw));
    let socket = UdpSocket::bind(loopback()).await.expect("bind");
    let mallory_addr = socket.local_addr().expect("bound");
    let baseline = settle(&nodes).await[0].stats.datagrams_received;

    // 1. A request naming the fake ID as sender, signed by Mallory's key: a forgery.
    let forged = DhtMessage {
        request_id: 1,
        sender: mallory.node_id(),
        recipient: Some(bootstrap.node_id()),
        body: DhtBody::FindNode { target: fake.0 },
    };
    let mut bytes = forged.encode(&mallory);
    bytes[11..31].copy_from_slice(fake.0.as_slice());
    socket
        .send_to(&bytes, bootstrap.local_addr())
        .await
        .expect("send");
    // 2. A genuine request of a node of the network, replayed from Mallory's address: the
    //    bootstrap pings her address back for that node, and she cannot answer as it.
    let replayed = DhtMessage {
        request_id: 2,
        sender: victim.node_id(),
        recipient: Some(bootstrap.node_id()),
        body: DhtBody::FindNode {
            target: victim.node_id().0,
        },
    };
    socket
        .send_to(&replayed.encode(&victim), bootstrap.local_addr())
        .await
        .expect("send");
    // 3. Mallory asks the bootstrap something from her listener, under her own key, so the
    //    bootstrap pings her back there and takes her in as herself. She then lists the fake
    //    ID at her address in every answer: a lookup of it asks her address for the fake ID,
    //    and she cannot sign as it.
    let mallory_asks = DhtMessage {
        request_id: 3,
        sender: mallory.node_id(),
        recipient: Some(bootstrap.node_id()),
        body: DhtBody::FindNode {
            target: mallory.node_id().0,
        },
    };
    socket
        .send_to(&mallory_asks.encode(&mallory), bootstrap.local_addr())
        .await
        .expect("send");
    let liar = tokio::spawn(lying_node(mallory.clone(), socket, fake));
    received(&bootstrap, baseline + 3).await;
    let snapshot = settle(&nodes).await;
    let forged_count: u64 = snapshot.iter().map(|s| s.stats.forged).sum();
    assert_eq!(forged_count, 1, "the forged request was counted");

    assert!(
        snapshot[0].contacts.contains(&Contact {
            id: mallory.node_id(),
            addr: mallory_addr
        }),
        "Mallory proved her own ID at her address"
    );
    let result = guarded("lookup", bootstrap.lookup(fake.0))
        .await
        .expect("lookup");
    assert_eq!(
        result.closest.first().map(|c| c.id),
        Some(mallory.node_id())
    );
    assert!(result.closest.iter().all(|contact| contact.id != fake));
    assert_eq!(
        result.failures, 1,
        "the fake ID was asked at her address and never answered"
    );
    let snapshots = settle(&nodes).await;
    for (node, snapshot) in nodes.iter().zip(&snapshots) {
        for contact in &snapshot.contacts {
            assert_ne!(contact.id, fake, "{} took the fake ID", node.node_id());
            if contact.id == victim.node_id() {
                assert_eq!(
                    contact.addr,
                    nodes[3].local_addr(),
                    "victim's address moved"
                );
            }
            if contact.addr == mallory_addr {
                assert_eq!(contact.id, mallory.node_id());
            }
        }
    }
    // Her answers for the victim (to the ping back) and for the fake ID were dropped as the
    // wrong node's, and each of those requests failed after its retries.
    assert!(
        snapshots[0].stats.wrong_node >= 4,
        "{:?}",
        snapshots[0].stats
    );
    assert!(
        snapshots[0].stats.rpc_failures >= 2,
        "{:?}",
        snapshots[0].stats
    );
    liar.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_datagrams_are_counted_and_ignored() {
    let nodes = network(3_000, 3, config).await;
    let target = &nodes[0];
    let before = settle(&nodes).await[0].stats;
    let sender = UdpSocket::bind(loopback()).await.expect("bind");
    let stranger = identity(99);
    let ping = DhtMessage {
        request_id: 5,
        sender: stranger.node_id(),
        recipient: Some(target.node_id()),
        body: DhtBody::Ping,
    }
    .encode(&stranger);
    let mut wrong_version = ping.clone();
    wrong_version[1] = 9;
    let malformed: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"hello".to_vec(),
        ping[..ping.len() - 1].to_vec(),
        ping[..20].to_vec(),
        wrong_version,
        vec![0xD7; DHT_DATAGRAM_BYTES_MAX + 100],
    ];
    for datagram in &malformed {
        sender
            .send_to(datagram, target.local_addr())
            .await
            .expect("send");
    }
    // An answer, well signed, to a request nobody sent.
    let unsolicited = DhtMessage {
        request_id: 77,
        sender: stranger.node_id(),
        recipient: Some(target.node_id()),
        body: DhtBody::Pong {
            observed: target.local_addr(),
        },
    }
    .encode(&stranger);
    sender
        .send_to(&unsolicited, target.local_addr())
        .await
        .expect("send");
    let expected = before.datagrams_received + malformed.len() as u64 + 1;
    let stats = received(target, expected).await.stats;
    assert_eq!(stats.malformed - before.malformed, malformed.len() as u64);
    assert_eq!(stats.unsolicited - before.unsolicited, 1);
    assert_eq!(stats.forged, 0);
    // The node still works.
    let result = guarded("lookup", target.lookup(nodes[2].node_id().0))
        .await
        .expect("lookup");
    assert_eq!(
        result.closest.first().map(|c| c.id),
        Some(nodes[2].node_id())
    );
    assert!(result.closest.iter().all(|c| c.id != stranger.node_id()));
}
