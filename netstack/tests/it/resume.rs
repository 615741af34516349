//! Resumable sessions: a client's link drops mid-stream and the session goes on over a new one.

use netstack::{
    driver::{KcpClient, KcpServer, ResumableConnection, ResumeAcceptor},
    kcp::KcpConfig,
    lossy::{LinkConfig, LossyLink},
};
use tokio::sync::mpsc;

use crate::{guarded, loopback, numbered};

const TOTAL: u32 = 300;

fn lossy(seed: u64) -> LinkConfig {
    LinkConfig {
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.05,
        delay_ms: 0..=2,
        seed,
    }
}

fn reply(index: u32) -> Vec<u8> {
    [b"ack ".as_slice(), &numbered(index)].concat()
}

#[tokio::test]
async fn a_session_resumes_on_a_new_link_without_losing_or_reordering_a_message() {
    let (server, incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    let (_acceptor, mut sessions) = ResumeAcceptor::start(incoming);
    // The server answers every message and reports each to the test, in the order delivered.
    let (seen, mut delivered) = mpsc::unbounded_channel();
    let echo = tokio::spawn(async move {
        let mut session = sessions.recv().await.expect("a session");
        loop {
            let message = session.recv().await.expect("a server resumes by itself");
            session
                .send(&[b"ack ".as_slice(), &message].concat())
                .await
                .expect("reply");
            let _ = seen.send((message, session.stats()));
        }
    });

    let first_link = LossyLink::start(loopback(), server.local_addr(), lossy(5))
        .await
        .expect("link");
    let connection = KcpClient::connect(first_link.local_addr(), KcpConfig::default())
        .await
        .expect("connect");
    let mut client = ResumableConnection::open(connection).await.expect("open");
    // Lockstep first, then a burst the link drops in the middle of.
    for index in 0..100 {
        client.send(&numbered(index)).await.expect("send");
        assert_eq!(
            guarded("reply", client.recv()).await.expect("up"),
            reply(index)
        );
    }
    for index in 100..150 {
        client.send(&numbered(index)).await.expect("send");
    }
    for index in 100..120 {
        assert_eq!(
            guarded("reply", client.recv()).await.expect("up"),
            reply(index)
        );
    }
    // The link goes away with whatever it held, and the client, not knowing yet, sends 50 more
    // into the dead connection.
    drop(first_link);
    for index in 150..200 {
        client.send(&numbered(index)).await.expect("send");
    }
    assert!(client.unacked() >= 50, "at least the last 50 are lost");

    // A new path (another proxy, another client socket): the session resumes over it.
    let second_link = LossyLink::start(loopback(), server.local_addr(), lossy(6))
        .await
        .expect("link");
    let connection = KcpClient::connect(second_link.local_addr(), KcpConfig::default())
        .await
        .expect("connect again");
    client.resume(connection).await.expect("resume");
    for index in 200..TOTAL {
        client.send(&numbered(index)).await.expect("send");
    }
    for index in 120..TOTAL {
        assert_eq!(
            guarded("reply", client.recv()).await.expect("up"),
            reply(index)
        );
    }
    let stats = client.stats();
    assert_eq!(stats.resumes, 2);
    assert!(stats.resent >= 50, "{stats:?}");
    assert_eq!(stats.delivered, u64::from(TOTAL));

    // The server saw every message once, in order, across both links.
    let mut server_stats = None;
    for index in 0..TOTAL {
        let (message, stats) = guarded("server saw", delivered.recv())
            .await
            .expect("the echo runs");
        assert_eq!(message, numbered(index));
        server_stats = Some(stats);
    }
    assert!(delivered.try_recv().is_err(), "nothing delivered twice");
    let server_stats = server_stats.expect("stats");
    assert_eq!(server_stats.resumes, 2);
    assert_eq!(server_stats.delivered, u64::from(TOTAL));
    echo.abort();
}

#[tokio::test]
async fn another_node_naming_a_session_gets_its_own_and_cannot_take_it_over() {
    use netstack::{
        resume::ResumeFrame,
        secure::{NodeIdentity, PeerPolicy},
    };
    use primitives::keys::AccountKey;

    let identity = |seed| NodeIdentity::new(AccountKey::from_seed(seed));
    let (server_id, alice, mallory) = (identity(41), identity(42), identity(43));
    let (server, incoming) = KcpServer::bind_secure(
        loopback(),
        KcpConfig::default(),
        server_id.clone(),
        PeerPolicy::AnyNode,
    )
    .await
    .expect("bind");
    let (_acceptor, mut sessions) = ResumeAcceptor::start(incoming);
    let connect = |who: NodeIdentity| {
        KcpClient::connect_secure(
            server.local_addr(),
            KcpConfig::default(),
            who,
            server_id.node_id(),
        )
    };
    let mut client = ResumableConnection::open(connect(alice.clone()).await.expect("dial"))
        .await
        .expect("open");
    let mut alices = guarded("accept", sessions.recv()).await.expect("a session");
    assert_eq!(alices.peer_id(), Some(alice.node_id()));
    assert_eq!(alices.id(), client.id());

    // Mallory names Alice's session on her own connection: she gets a session of her own.
    let intruder = connect(mallory.clone()).await.expect("dial");
    let hijack = ResumeFrame::Resume {
        session: client.id(),
        next: 0,
    };
    intruder.send(hijack.encode()).await.expect("send");
    let mallorys = guarded("accept", sessions.recv()).await.expect("a session");
    assert_eq!(mallorys.peer_id(), Some(mallory.node_id()));
    assert_eq!(mallorys.id(), client.id());
    let data = ResumeFrame::Data {
        seq: 0,
        payload: b"from mallory",
    };
    intruder.send(data.encode()).await.expect("send");

    // Alice's session goes on, untouched.
    client.send(b"from alice").await.expect("send");
    assert_eq!(
        guarded("alice's message", alices.recv()).await.expect("up"),
        b"from alice".to_vec()
    );
    assert_eq!(alices.stats().resumes, 1);
    drop(mallorys);
}
