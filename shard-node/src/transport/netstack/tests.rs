use std::time::Instant as WallClock;

use primitives::AccountKey;

use super::*;

fn identity(seed: u64) -> NodeIdentity {
    NodeIdentity::new(AccountKey::from_seed(seed))
}

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Takes deliveries until `count` arrived or `budget` passed.
fn receive(
    transport: &mut NetstackTransport,
    count: usize,
    budget: Duration,
) -> Vec<GroupDelivery> {
    let deadline = WallClock::now() + budget;
    let mut got = Vec::new();
    while got.len() < count && WallClock::now() < deadline {
        match transport.try_recv() {
            Some(delivery) => got.push(delivery),
            None => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    got
}

/// Three members that are each other's peers and one node that is no one's: messages of any
/// size arrive whole, attributed to the proven sender; the outsider's handshakes are refused
/// and counted; a stopped member neither sends nor receives, and is heard again once resumed.
#[test]
fn members_exchange_messages_and_outsiders_are_refused_and_counted() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let identities: Vec<NodeIdentity> = (1..=3).map(identity).collect();
    let ids: Vec<NodeId> = identities.iter().map(NodeIdentity::node_id).collect();
    let mut endpoints = Vec::new();
    for identity in &identities {
        let peers: BTreeSet<NodeId> = ids
            .iter()
            .filter(|id| **id != identity.node_id())
            .copied()
            .collect();
        let endpoint = runtime
            .block_on(GroupEndpoint::bind(
                identity.clone(),
                loopback(),
                link_config(),
                peers,
            ))
            .expect("binds");
        endpoints.push(endpoint);
    }
    let directory: BTreeMap<NodeId, SocketAddr> = endpoints
        .iter()
        .map(|endpoint| (endpoint.node_id(), endpoint.local_addr()))
        .collect();
    let mut transport =
        NetstackTransport::new(runtime.handle().clone(), endpoints, directory.clone());

    // Every ordered pair, a small and a multi-fragment message.
    let big: Vec<u8> = (0..400_000u32).map(|index| (index % 251) as u8).collect();
    for from in &ids {
        for to in ids.iter().filter(|to| *to != from) {
            transport.send(*from, *to, from.0.to_vec());
            transport.send(*from, *to, big.clone());
        }
    }
    let got = receive(&mut transport, 12, Duration::from_secs(20));
    assert_eq!(got.len(), 12, "every message arrived");
    for delivery in &got {
        assert_ne!(delivery.from, delivery.to);
        assert!(delivery.bytes == delivery.from.0.to_vec() || delivery.bytes == big);
    }
    assert_eq!(transport.stats().messages_received, 12);
    assert_eq!(transport.stats().peers_refused, 0);

    // A node outside every member's peers dials member 0 with the member's peer set's
    // transport: its handshake is refused and counted, and nothing arrives.
    let outsider = identity(99);
    let outsider_endpoint = runtime
        .block_on(GroupEndpoint::bind(
            outsider.clone(),
            loopback(),
            link_config(),
            ids.iter().copied().collect(),
        ))
        .expect("binds");
    let mut outsider_transport = NetstackTransport::new(
        runtime.handle().clone(),
        vec![outsider_endpoint],
        directory.clone(),
    );
    outsider_transport.send(outsider.node_id(), ids[0], b"let me in".to_vec());
    let deadline = WallClock::now() + Duration::from_secs(10);
    while transport.stats().peers_refused == 0 && WallClock::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        transport.stats().peers_refused >= 1,
        "the outsider's key was refused"
    );
    assert!(transport.endpoint(&ids[0]).expect("runs").peers_refused() >= 1);
    assert!(receive(&mut transport, 1, Duration::from_millis(300)).is_empty());
    // A member's transport does not send to a node outside its peers either.
    let dropped = transport.stats().messages_dropped;
    transport.send(ids[0], outsider.node_id(), b"hello".to_vec());
    assert_eq!(transport.stats().messages_dropped, dropped + 1);

    // Member 2 stops: it sends nothing, and what is sent to it is lost.
    transport.stop(&ids[2]);
    transport.send(ids[2], ids[0], b"from a stopped member".to_vec());
    transport.send(ids[0], ids[2], b"to a stopped member".to_vec());
    assert!(receive(&mut transport, 1, Duration::from_millis(500)).is_empty());
    // It comes back: messages flow both ways again (the old sessions to it time out first).
    transport.resume(&ids[2]);
    let deadline = WallClock::now() + Duration::from_secs(20);
    let mut heard = BTreeSet::new();
    while heard.len() < 2 && WallClock::now() < deadline {
        transport.send(ids[0], ids[2], b"ping".to_vec());
        transport.send(ids[2], ids[1], b"pong".to_vec());
        for delivery in receive(&mut transport, 8, Duration::from_millis(100)) {
            heard.insert((delivery.from, delivery.to));
        }
    }
    assert_eq!(
        heard,
        BTreeSet::from([(ids[0], ids[2]), (ids[2], ids[1])]),
        "the resumed member is heard and hears"
    );
}
