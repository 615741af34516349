//! [`ResumableConnection`] and [`ResumeAcceptor`]: a [`ResumableSession`] on KCP connections,
//! moved to a new connection after a link drop.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use primitives::{id::NodeId, time::Instant};
use rand::{TryRngCore, rngs::OsRng};
use tokio::sync::mpsc;
use tracing::{debug, info, trace};

use super::connection::KcpConnection;
use crate::{
    constants::{
        REDIAL_ATTEMPTS_MAX, REDIAL_BACKOFF_FIRST, REDIAL_BACKOFF_MAX, RESUME_HANDSHAKE_TIMEOUT,
        RESUME_SESSIONS_MAX,
    },
    error::{ConnectError, ResumeError},
    resume::{ResumableSession, ResumeFrame, ResumeStats},
};

/// A dial to the same peer (plain or secure, direct or through a relay), for a session that
/// redials by itself ([`ResumableConnection::open_redialing`]).
pub type Dial = Box<
    dyn FnMut() -> Pin<Box<dyn Future<Output = Result<KcpConnection, ConnectError>> + Send>> + Send,
>;

/// When a redialing session dials again after its link went down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedialPolicy {
    /// The wait before the first redial; it doubles after each failed one.
    pub backoff_first: Duration,
    /// The longest wait between two redials.
    pub backoff_max: Duration,
    /// Redials (a dial and a resume handshake each) before [`ResumeError::RedialExhausted`].
    pub attempts_max: u32,
}

impl Default for RedialPolicy {
    fn default() -> Self {
        RedialPolicy {
            backoff_first: REDIAL_BACKOFF_FIRST,
            backoff_max: REDIAL_BACKOFF_MAX,
            attempts_max: REDIAL_ATTEMPTS_MAX,
        }
    }
}

struct Redialer {
    dial: Dial,
    policy: RedialPolicy,
    /// Resumed connections it made.
    redials: u64,
}

impl std::fmt::Debug for Redialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redialer")
            .field("policy", &self.policy)
            .field("redials", &self.redials)
            .finish_non_exhaustive()
    }
}

/// A message stream over KCP that survives link drops: every message is delivered exactly
/// once and in order, across any number of connections (see [`crate::resume`]).
///
/// A client opens one with [`open`](Self::open) and, when [`recv`](Self::recv) or
/// [`send`](Self::send) reports [`ResumeError::LinkDown`] (or whenever it chooses, say after a
/// network change), dials again and hands the new connection to [`resume`](Self::resume); or
/// it opens one with [`open_redialing`](Self::open_redialing), which does that by itself, with
/// backoff, and reports a drop only when its [`RedialPolicy`] gives up. A server gets one per
/// session from a [`ResumeAcceptor`], which moves a session to the new connection by itself
/// when its client resumes.
#[derive(Debug)]
pub struct ResumableConnection {
    session: ResumableSession,
    connection: Option<KcpConnection>,
    peer: Option<NodeId>,
    /// A server's: new connections of this session from the acceptor.
    takeovers: Option<mpsc::Receiver<(KcpConnection, Vec<u8>)>>,
    /// A redialing client's way back to its peer.
    redialer: Option<Redialer>,
    epoch: tokio::time::Instant,
}

impl ResumableConnection {
    /// Opens a new session (random ID) on `connection`, announces it and waits for the peer
    /// to answer (at most [`RESUME_HANDSHAKE_TIMEOUT`]).
    pub async fn open(connection: KcpConnection) -> Result<ResumableConnection, ResumeError> {
        let mut this = Self::fresh(connection.peer_id(), None)?;
        this.attach(connection).await?;
        Ok(this)
    }

    /// A new client session (random ID) with no connection yet.
    fn fresh(
        peer: Option<NodeId>,
        redialer: Option<Redialer>,
    ) -> Result<ResumableConnection, ResumeError> {
        // Drivers may use real randomness; the cores never do.
        let id = OsRng
            .try_next_u64()
            .map_err(|_| ResumeError::NoRandomness)?;
        Ok(ResumableConnection {
            session: ResumableSession::new(id),
            connection: None,
            peer,
            takeovers: None,
            redialer,
            epoch: tokio::time::Instant::now(),
        })
    }

    /// Opens a new session on a connection from `dial`, like [`open`](Self::open), and keeps
    /// `dial` to move the session to a new connection by itself whenever the link goes down:
    /// [`send`](Self::send) and [`recv`](Self::recv) then wait through the redials instead of
    /// reporting [`ResumeError::LinkDown`]. The first connection is dialed under `policy` too.
    pub async fn open_redialing(
        dial: Dial,
        policy: RedialPolicy,
    ) -> Result<ResumableConnection, ResumeError> {
        let mut this = Self::fresh(
            None,
            Some(Redialer {
                dial,
                policy,
                redials: 0,
            }),
        )?;
        this.redial().await?;
        if let Some(redialer) = this.redialer.as_mut() {
            redialer.redials = 0;
        }
        Ok(this)
    }

    /// Connections a redialing session dialed and resumed on by itself after a drop.
    pub fn redials(&self) -> u64 {
        self.redialer
            .as_ref()
            .map_or(0, |redialer| redialer.redials)
    }

    /// The session's ID.
    pub fn id(&self) -> u64 {
        self.session.id()
    }

    /// The node the secure handshake proved on the first connection, if any.
    pub fn peer_id(&self) -> Option<NodeId> {
        self.peer
    }

    /// The session's counters.
    pub fn stats(&self) -> ResumeStats {
        self.session.stats()
    }

    /// Messages sent and not yet acknowledged by the peer.
    pub fn unacked(&self) -> usize {
        self.session.unacked()
    }

    /// Moves the session to `connection` (a new dial to the same peer), dropping the current
    /// one, and waits for the peer to resume (at most [`RESUME_HANDSHAKE_TIMEOUT`]; on
    /// [`ResumeError::LinkDown`] try again with another connection). Messages the peer has not
    /// acknowledged are sent again once it has.
    pub async fn resume(&mut self, connection: KcpConnection) -> Result<(), ResumeError> {
        if let (Some(expected), Some(found)) = (self.peer, connection.peer_id())
            && expected != found
        {
            return Err(ResumeError::Unexpected {
                frame: "a connection to another node",
            });
        }
        self.attach(connection).await
    }

    /// Announces the session on `connection` and waits, at most
    /// [`RESUME_HANDSHAKE_TIMEOUT`], for the peer's resume, so sends flow as soon as this
    /// returns. On failure the link is dropped; the session keeps its state for another try.
    async fn attach(&mut self, connection: KcpConnection) -> Result<(), ResumeError> {
        self.session.link_lost();
        self.session.link_up();
        self.connection = Some(connection);
        self.flush().await;
        let handshake = async {
            while !self.session.is_up() {
                self.read_one().await?;
            }
            Ok(())
        };
        match tokio::time::timeout(RESUME_HANDSHAKE_TIMEOUT, handshake).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error),
            Err(_) => {
                debug!(target: "netstack::driver", session = self.session.id(), "peer did not resume in time");
                self.drop_link();
                Err(ResumeError::LinkDown)
            }
        }
    }

    fn now(&self) -> Instant {
        let micros = self.epoch.elapsed().as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// Sends one message: at once if the link is up, else after the next resume. Waits for
    /// acknowledgements while [`crate::constants::RESUME_UNACKED_MAX`] are outstanding
    /// (messages that arrive meanwhile wait for [`recv`](Self::recv)).
    pub async fn send(&mut self, message: &[u8]) -> Result<(), ResumeError> {
        loop {
            match self.session.send(message) {
                Ok(()) => break,
                Err(ResumeError::QueueFull { .. }) => self.read_or_redial().await?,
                Err(error) => return Err(error),
            }
        }
        self.flush().await;
        if self.connection.is_none() && self.redialer.is_some() {
            self.redial().await?;
        }
        Ok(())
    }

    /// The next message, in order. [`ResumeError::LinkDown`] when the connection ended: call
    /// [`resume`](Self::resume) with a new one (a server's resumes by itself and never
    /// reports it).
    pub async fn recv(&mut self) -> Result<Vec<u8>, ResumeError> {
        loop {
            if let Some(message) = self.session.poll_message() {
                return Ok(message);
            }
            self.read_or_redial().await?;
        }
    }

    /// [`read_one`](Self::read_one), with a redialing session's drops turned into redials.
    async fn read_or_redial(&mut self) -> Result<(), ResumeError> {
        match self.read_one().await {
            Err(ResumeError::LinkDown) if self.redialer.is_some() => self.redial().await,
            done => done,
        }
    }

    /// Dials and resumes until a connection is up, waiting the policy's backoff between tries.
    /// The session keeps everything unacknowledged meanwhile.
    async fn redial(&mut self) -> Result<(), ResumeError> {
        let Some(policy) = self.redialer.as_ref().map(|redialer| redialer.policy) else {
            return Err(ResumeError::LinkDown);
        };
        let mut backoff = policy.backoff_first;
        for attempt in 1..=policy.attempts_max {
            if attempt > 1 {
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2).min(policy.backoff_max);
            }
            let dialing = match self.redialer.as_mut() {
                Some(redialer) => (redialer.dial)(),
                None => return Err(ResumeError::LinkDown),
            };
            let connection = match dialing.await {
                Ok(connection) => connection,
                Err(error) => {
                    debug!(target: "netstack::driver", session = self.session.id(), attempt, %error, "redial failed");
                    continue;
                }
            };
            let resumed = if self.peer.is_none() {
                self.peer = connection.peer_id();
                self.attach(connection).await
            } else {
                self.resume(connection).await
            };
            match resumed {
                Ok(()) => {
                    if let Some(redialer) = self.redialer.as_mut() {
                        redialer.redials += 1;
                    }
                    info!(target: "netstack::driver", session = self.session.id(), attempt, "session resumed on a new connection");
                    return Ok(());
                }
                Err(error) => {
                    debug!(target: "netstack::driver", session = self.session.id(), attempt, %error, "resume after redial failed");
                }
            }
        }
        Err(ResumeError::RedialExhausted {
            attempts: policy.attempts_max,
        })
    }

    /// Waits for one input (a frame, a takeover, a due acknowledgement) and handles it.
    async fn read_one(&mut self) -> Result<(), ResumeError> {
        let deadline = self
            .session
            .poll_timeout()
            .map(|at| self.epoch + std::time::Duration::from_micros(at.as_micros()));
        if self.connection.is_none() && self.takeovers.is_none() {
            return Err(ResumeError::LinkDown);
        }
        let (connection, takeovers) = (&mut self.connection, &mut self.takeovers);
        let takeover = async {
            match takeovers.as_mut() {
                Some(takeovers) => takeovers.recv().await,
                None => std::future::pending().await,
            }
        };
        let received = async {
            match connection.as_mut() {
                Some(connection) => connection.recv().await,
                None => std::future::pending().await,
            }
        };
        enum Input {
            Frame(Option<Vec<u8>>),
            Takeover(Option<(KcpConnection, Vec<u8>)>),
            Timer,
        }
        let input = tokio::select! {
            frame = received => Input::Frame(frame),
            next = takeover => Input::Takeover(next),
            () = sleep_until(deadline), if deadline.is_some() => Input::Timer,
        };
        match input {
            Input::Frame(Some(frame)) => {
                let now = self.now();
                if let Err(error) = self.session.handle_frame(now, &frame) {
                    // A broken peer: the connection is no longer trusted.
                    debug!(target: "netstack::driver", %error, session = self.session.id(), "resume frame refused; link dropped");
                    self.drop_link();
                    return Err(error);
                }
                self.flush().await;
                Ok(())
            }
            Input::Frame(None) => {
                debug!(target: "netstack::driver", session = self.session.id(), "link down");
                self.drop_link();
                if self.takeovers.is_some() {
                    // A server waits for its client to resume.
                    return Ok(());
                }
                Err(ResumeError::LinkDown)
            }
            Input::Takeover(Some((connection, first))) => {
                debug!(target: "netstack::driver", session = self.session.id(), "client resumed on a new connection");
                self.session.link_lost();
                self.session.link_up();
                self.connection = Some(connection);
                let now = self.now();
                if let Err(error) = self.session.handle_frame(now, &first) {
                    self.drop_link();
                    return Err(error);
                }
                self.flush().await;
                Ok(())
            }
            Input::Takeover(None) => {
                self.takeovers = None;
                Ok(())
            }
            Input::Timer => {
                let now = self.now();
                self.session.handle_timeout(now);
                self.flush().await;
                Ok(())
            }
        }
    }

    fn drop_link(&mut self) {
        self.session.link_lost();
        self.connection = None;
    }

    /// Hands every queued frame to the connection; a failure drops the link (the session
    /// keeps what it must resend).
    async fn flush(&mut self) {
        while let Some(frame) = self.session.poll_frame() {
            let Some(connection) = self.connection.as_mut() else {
                self.session.link_lost();
                return;
            };
            if let Err(error) = connection.send(frame).await {
                trace!(target: "netstack::driver", %error, "send failed; link dropped");
                self.drop_link();
                return;
            }
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

type Routes = Arc<Mutex<HashMap<(Option<NodeId>, u64), mpsc::Sender<(KcpConnection, Vec<u8>)>>>>;

/// A server's side of resumable sessions: takes the connections a
/// [`crate::driver::KcpServer`] accepts, reads the `Resume` frame each must start with, and
/// either yields a new [`ResumableConnection`] or moves an existing one to the new connection.
/// A session is found only by the same peer node (on a secure server) and session ID, so
/// nobody else can take it over.
#[derive(Debug)]
pub struct ResumeAcceptor {
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for ResumeAcceptor {
    fn drop(&mut self) {
        self._task.abort();
    }
}

impl ResumeAcceptor {
    /// Starts accepting from `incoming`; new sessions come out of the returned receiver.
    pub fn start(
        mut incoming: mpsc::Receiver<KcpConnection>,
    ) -> (ResumeAcceptor, mpsc::Receiver<ResumableConnection>) {
        let (sessions, accepted) = mpsc::channel(16);
        let routes: Routes = Arc::new(Mutex::new(HashMap::new()));
        let task = tokio::spawn(async move {
            while let Some(connection) = incoming.recv().await {
                tokio::spawn(route(connection, routes.clone(), sessions.clone()));
            }
        });
        (ResumeAcceptor { _task: task }, accepted)
    }
}

/// Reads a new connection's first frame and gives the connection to its session.
async fn route(
    mut connection: KcpConnection,
    routes: Routes,
    sessions: mpsc::Sender<ResumableConnection>,
) {
    let first = match tokio::time::timeout(RESUME_HANDSHAKE_TIMEOUT, connection.recv()).await {
        Ok(Some(first)) => first,
        Ok(None) | Err(_) => {
            debug!(target: "netstack::driver", "no resume frame; connection dropped");
            return;
        }
    };
    let id = match ResumeFrame::decode(&first) {
        Ok(ResumeFrame::Resume { session, .. }) => session,
        Ok(_) => {
            debug!(target: "netstack::driver", "first frame is no resume; connection dropped");
            return;
        }
        Err(error) => {
            debug!(target: "netstack::driver", %error, "malformed first frame; connection dropped");
            return;
        }
    };
    let key = (connection.peer_id(), id);
    let existing = routes
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&key)
        .cloned();
    let connection = match existing {
        Some(route) => match route.send((connection, first.clone())).await {
            Ok(()) => return,
            // The application dropped that session: start it afresh.
            Err(mpsc::error::SendError((connection, _))) => connection,
        },
        None => connection,
    };
    let (takeover, takeovers) = mpsc::channel(4);
    {
        let mut routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
        routes.retain(|_, route| !route.is_closed());
        if routes.len() >= RESUME_SESSIONS_MAX {
            debug!(target: "netstack::driver", "resumable session table full; connection dropped");
            return;
        }
        routes.insert(key, takeover);
    }
    let mut session = ResumableSession::new(id);
    session.link_up();
    let epoch = tokio::time::Instant::now();
    if let Err(error) = session.handle_frame(Instant::ZERO, &first) {
        debug!(target: "netstack::driver", %error, "resume refused");
        return;
    }
    let mut resumable = ResumableConnection {
        session,
        peer: connection.peer_id(),
        connection: Some(connection),
        takeovers: Some(takeovers),
        redialer: None,
        epoch,
    };
    resumable.flush().await;
    let _ = sessions.send(resumable).await;
}
