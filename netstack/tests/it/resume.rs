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

/// A resumable server that answers every message with `ack <message>` and reports each, with
/// its session's counters, to the test in the order delivered.
struct Echo {
    server: KcpServer,
    _acceptor: ResumeAcceptor,
    delivered: mpsc::UnboundedReceiver<(Vec<u8>, netstack::resume::ResumeStats)>,
    task: tokio::task::JoinHandle<()>,
}

async fn echo_server() -> Echo {
    let (server, incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    let (acceptor, mut sessions) = ResumeAcceptor::start(incoming);
    let (seen, delivered) = mpsc::unbounded_channel();
    let task = tokio::spawn(async move {
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
    Echo {
        server,
        _acceptor: acceptor,
        delivered,
        task,
    }
}

#[tokio::test]
async fn a_session_resumes_on_a_new_link_without_losing_or_reordering_a_message() {
    let Echo {
        server,
        _acceptor,
        mut delivered,
        task: echo,
    } = echo_server().await;

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

/// A client KCP configuration that notices a dead link within a second.
fn quick_to_notice() -> KcpConfig {
    KcpConfig {
        idle_timeout: std::time::Duration::from_millis(800),
        keepalive_interval: std::time::Duration::from_millis(100),
        ..KcpConfig::default()
    }
}

#[tokio::test]
async fn a_redialing_session_resumes_by_itself_each_time_its_link_dies() {
    use std::sync::{Arc, Mutex};

    use netstack::driver::RedialPolicy;

    let Echo {
        server,
        _acceptor,
        mut delivered,
        task: echo,
    } = echo_server().await;
    let server_addr = server.local_addr();

    // Every dial goes through a fresh lossy path; the test cuts the live one at will.
    let paths: Arc<Mutex<Vec<LossyLink>>> = Arc::default();
    let dials = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let dial: netstack::driver::Dial = {
        let (paths, dials) = (paths.clone(), dials.clone());
        Box::new(move || {
            let (paths, dials) = (paths.clone(), dials.clone());
            Box::pin(async move {
                let seed = 100 + dials.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let path = LossyLink::start(loopback(), server_addr, lossy(seed)).await?;
                let connection = KcpClient::connect(path.local_addr(), quick_to_notice()).await?;
                paths.lock().expect("paths").push(path);
                Ok(connection)
            })
        })
    };
    let mut client = ResumableConnection::open_redialing(dial, RedialPolicy::default())
        .await
        .expect("open");

    let cut = || paths.lock().expect("paths").clear();
    let mut next = 0;
    for round in 0..3 {
        // A burst that is in flight when the path dies, then more sent into the dead path:
        // the application never sees the drop.
        for index in next..next + 40 {
            client.send(&numbered(index)).await.expect("send");
        }
        if round < 2 {
            cut();
        }
        for index in next + 40..next + 80 {
            client.send(&numbered(index)).await.expect("send");
        }
        for index in next..next + 80 {
            assert_eq!(
                guarded("reply", client.recv())
                    .await
                    .expect("the session redials by itself"),
                reply(index)
            );
        }
        next += 80;
    }
    assert_eq!(client.redials(), 2, "one redial per cut path");
    assert_eq!(dials.load(std::sync::atomic::Ordering::Relaxed), 3);
    assert_eq!(client.stats().delivered, u64::from(next));

    for index in 0..next {
        let (message, _) = guarded("server saw", delivered.recv())
            .await
            .expect("the echo runs");
        assert_eq!(message, numbered(index));
    }
    assert!(delivered.try_recv().is_err(), "nothing delivered twice");
    echo.abort();
}

#[tokio::test]
async fn a_redialing_session_reports_the_drop_once_its_policy_gives_up() {
    use std::{
        sync::{
            Arc, Mutex,
            atomic::{AtomicU32, Ordering},
        },
        time::Duration,
    };

    use netstack::{driver::RedialPolicy, error::ResumeError};

    let (server, incoming) = KcpServer::bind(loopback(), KcpConfig::default())
        .await
        .expect("bind");
    let server_addr = server.local_addr();
    let (_acceptor, mut sessions) = ResumeAcceptor::start(incoming);
    let echo = tokio::spawn(async move {
        let mut session = sessions.recv().await.expect("a session");
        while let Ok(message) = session.recv().await {
            let _ = session.send(&message).await;
        }
    });
    // The first dial finds a path; every later one fails, as if the peer had gone.
    let path: Arc<Mutex<Option<LossyLink>>> = Arc::default();
    let dials = Arc::new(AtomicU32::new(0));
    let dial: netstack::driver::Dial = {
        let (path, dials) = (path.clone(), dials.clone());
        Box::new(move || {
            let (path, dials) = (path.clone(), dials.clone());
            Box::pin(async move {
                if dials.fetch_add(1, Ordering::Relaxed) > 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into());
                }
                let link = LossyLink::start(loopback(), server_addr, lossy(7)).await?;
                let connection = KcpClient::connect(link.local_addr(), quick_to_notice()).await?;
                *path.lock().expect("path") = Some(link);
                Ok(connection)
            })
        })
    };
    let policy = RedialPolicy {
        backoff_first: Duration::from_millis(10),
        backoff_max: Duration::from_millis(40),
        attempts_max: 3,
    };
    let mut client = ResumableConnection::open_redialing(dial, policy)
        .await
        .expect("open");
    client.send(b"hello").await.expect("send");
    assert_eq!(
        guarded("echo", client.recv()).await.expect("up"),
        b"hello".to_vec()
    );
    path.lock().expect("path").take();
    let error = guarded("the drop is reported", client.recv())
        .await
        .expect_err("no path back");
    assert_eq!(error, ResumeError::RedialExhausted { attempts: 3 });
    assert_eq!(
        dials.load(Ordering::Relaxed),
        4,
        "the first dial and three redials"
    );
    assert_eq!(client.redials(), 0);
    echo.abort();
}
