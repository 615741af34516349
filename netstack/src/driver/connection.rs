//! The application's handles on one session: [`KcpConnection`] and [`KcpSender`].

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use primitives::id::NodeId;
use tokio::sync::{Notify, Semaphore, TryAcquireError, mpsc};

use super::endpoint::{Command, SessionKey};
use crate::{error::NetError, frame::check_message_len};

/// State a connection's handles share with the socket task.
#[derive(Debug)]
pub(crate) struct ConnectionShared {
    /// One permit per message the connection may hold in the driver before it enters KCP's
    /// send queue. The driver adds a permit back as each message enters; it closes the
    /// semaphore when the session ends, which fails every waiting send.
    pub credits: Semaphore,
    /// Set by the driver when the receive queue was full, so the reader wakes it on progress.
    pub reader_blocked: AtomicBool,
    pub message_bytes_max: usize,
    /// The node the secure handshake proved; `None` on a plain session.
    pub peer: Option<NodeId>,
}

/// The cheaply cloneable sending half of a [`KcpConnection`], for pushing messages from other
/// tasks. The session stays open while any handle (connection or sender) lives.
#[derive(Clone, Debug)]
pub struct KcpSender {
    key: SessionKey,
    commands: mpsc::Sender<Command>,
    shared: Arc<ConnectionShared>,
}

impl KcpSender {
    pub(crate) fn new(
        key: SessionKey,
        commands: mpsc::Sender<Command>,
        shared: Arc<ConnectionShared>,
    ) -> KcpSender {
        KcpSender {
            key,
            commands,
            shared,
        }
    }

    /// Sends one whole message, waiting while the connection's queue is full.
    pub async fn send(&self, message: impl Into<Bytes>) -> Result<(), NetError> {
        let message = message.into();
        check_message_len(message.len(), self.shared.message_bytes_max)?;
        let permit = self
            .shared
            .credits
            .acquire()
            .await
            .map_err(|_| NetError::Closed)?;
        let command = Command::Send {
            key: self.key,
            message,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| NetError::Closed)?;
        // The driver returns the permit once the message is in KCP's send queue.
        permit.forget();
        Ok(())
    }

    /// Sends one whole message if the connection's queue has room, without waiting.
    pub fn try_send(&self, message: impl Into<Bytes>) -> Result<(), NetError> {
        let message = message.into();
        check_message_len(message.len(), self.shared.message_bytes_max)?;
        let permit = self
            .shared
            .credits
            .try_acquire()
            .map_err(|error| match error {
                TryAcquireError::NoPermits => NetError::QueueFull,
                TryAcquireError::Closed => NetError::Closed,
            })?;
        let command = Command::Send {
            key: self.key,
            message,
        };
        self.commands
            .try_send(command)
            .map_err(|error| match error {
                mpsc::error::TrySendError::Full(_) => NetError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => NetError::Closed,
            })?;
        permit.forget();
        Ok(())
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.credits.is_closed()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.key.0
    }

    /// The KCP conversation ID.
    pub fn conv(&self) -> u32 {
        self.key.1
    }

    /// The peer's node ID, proven by the secure handshake; `None` on a plain session, whose
    /// peer is anonymous.
    pub fn peer_id(&self) -> Option<NodeId> {
        self.shared.peer
    }

    /// The largest message this connection carries.
    pub fn message_bytes_max(&self) -> usize {
        self.shared.message_bytes_max
    }

    /// Closes the session now (KCP has no close handshake; the peer finds out by its idle
    /// timeout).
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close { key: self.key }).await;
    }
}

/// One KCP session as the application sees it: whole messages in and out.
///
/// [`recv`](Self::recv) returns `None` once the session has ended (dead link, idle timeout,
/// a local close or the socket task stopping) and every message received before has been read.
#[derive(Debug)]
pub struct KcpConnection {
    sender: KcpSender,
    incoming: mpsc::Receiver<Vec<u8>>,
    reader_progress: Arc<Notify>,
}

impl KcpConnection {
    pub(crate) fn new(
        sender: KcpSender,
        incoming: mpsc::Receiver<Vec<u8>>,
        reader_progress: Arc<Notify>,
    ) -> KcpConnection {
        KcpConnection {
            sender,
            incoming,
            reader_progress,
        }
    }

    /// Sends one whole message, waiting while the connection's queue is full.
    pub async fn send(&self, message: impl Into<Bytes>) -> Result<(), NetError> {
        self.sender.send(message).await
    }

    /// Sends one whole message if the connection's queue has room, without waiting.
    pub fn try_send(&self, message: impl Into<Bytes>) -> Result<(), NetError> {
        self.sender.try_send(message)
    }

    /// The next whole message from the peer, or `None` once the session has ended.
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        let message = self.incoming.recv().await;
        if self
            .sender
            .shared
            .reader_blocked
            .swap(false, Ordering::AcqRel)
        {
            self.reader_progress.notify_one();
        }
        message
    }

    /// A sending half for other tasks.
    pub fn sender(&self) -> KcpSender {
        self.sender.clone()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.sender.peer_addr()
    }

    /// The KCP conversation ID.
    pub fn conv(&self) -> u32 {
        self.sender.conv()
    }

    /// The peer's node ID; see [`KcpSender::peer_id`].
    pub fn peer_id(&self) -> Option<NodeId> {
        self.sender.peer_id()
    }

    /// Closes the session now; see [`KcpSender::close`].
    pub async fn close(self) {
        self.sender.close().await;
    }
}
