//! The QUIC front of a DA node: one request and one response per bidirectional stream.
//!
//! [`DaServer`] accepts connections on a `netstack::quic` endpoint, reads one bounded frame per
//! stream, decodes it as a [`DaRequest`], runs the [`DaService`] on a blocking thread (RocksDB
//! and BLS signing block) and writes the encoded [`DaResponse`]. A frame that does not decode
//! gets a `Refused` answer and changes nothing. Streams per connection are bounded by QUIC's
//! stream limit; every task is owned by a `JoinSet`, so [`DaServer::shutdown`] ends them all.

use std::{net::SocketAddr, sync::Arc};

use netstack::quic::{self, QuicIdentity};
use primitives::codec::{Decode, Encode};
use quinn::{Endpoint, Incoming, RecvStream, SendStream};
use tokio::{sync::oneshot, task::JoinSet};
use tracing::{debug, info, warn};

use crate::{
    constants::MESSAGE_BYTES_MAX,
    error::DaError,
    node::DaService,
    wire::{DaRequest, DaResponse},
};

/// File names of a node's QUIC identity in its data directory.
const CERTIFICATE_FILE: &str = "quic-certificate.der";
const PRIVATE_KEY_FILE: &str = "quic-key.der";

/// The QUIC identity kept in `directory`, created on first use, so clients that pinned the
/// node's certificate still reach it after a restart.
pub fn load_or_create_identity(directory: &std::path::Path) -> Result<QuicIdentity, DaError> {
    let io = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |source| DaError::Io { path, source }
    };
    std::fs::create_dir_all(directory).map_err(io(directory))?;
    let certificate_path = directory.join(CERTIFICATE_FILE);
    let key_path = directory.join(PRIVATE_KEY_FILE);
    if certificate_path.exists() && key_path.exists() {
        let certificate = std::fs::read(&certificate_path).map_err(io(&certificate_path))?;
        let key = std::fs::read(&key_path).map_err(io(&key_path))?;
        return Ok(QuicIdentity::from_der(certificate, key));
    }
    let identity = QuicIdentity::generate()?;
    std::fs::write(&key_path, identity.private_key.secret_pkcs8_der()).map_err(io(&key_path))?;
    std::fs::write(&certificate_path, identity.certificate.as_ref())
        .map_err(io(&certificate_path))?;
    Ok(identity)
}

/// A running QUIC server in front of a [`DaService`].
#[derive(Debug)]
pub struct DaServer<S> {
    address: SocketAddr,
    service: Arc<S>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl<S: DaService> DaServer<S> {
    /// Binds `address` with `identity` and serves `service` until [`DaServer::shutdown`].
    pub fn start(
        address: SocketAddr,
        identity: &QuicIdentity,
        service: Arc<S>,
    ) -> Result<Self, DaError> {
        let endpoint = quic::server_endpoint(address, identity)?;
        let address = endpoint
            .local_addr()
            .map_err(|source| quic::QuicError::Bind { address, source })?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(accept_loop(endpoint, service.clone(), stopped));
        info!(target: "da_strong::server", %address, "DA node listening");
        Ok(DaServer {
            address,
            service,
            stop: Some(stop),
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }

    /// Closes every connection, ends every task and hands the service back.
    pub async fn shutdown(mut self) -> Arc<S> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.service.clone()
    }
}

async fn accept_loop<S: DaService>(
    endpoint: Endpoint,
    service: Arc<S>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            incoming = endpoint.accept() => match incoming {
                Some(incoming) => {
                    connections.spawn(serve_connection(incoming, service.clone()));
                }
                None => break,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    endpoint.close(0u32.into(), b"shutdown");
    connections.shutdown().await;
    endpoint.wait_idle().await;
}

async fn serve_connection<S: DaService>(incoming: Incoming, service: Arc<S>) {
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            debug!(target: "da_strong::server", %error, "handshake failed");
            return;
        }
    };
    let peer = connection.remote_address();
    let mut streams = JoinSet::new();
    loop {
        tokio::select! {
            stream = connection.accept_bi() => match stream {
                Ok((send, recv)) => {
                    streams.spawn(serve_stream(send, recv, service.clone()));
                }
                Err(error) => {
                    debug!(target: "da_strong::server", %peer, %error, "connection ended");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
        }
    }
    streams.shutdown().await;
}

async fn serve_stream<S: DaService>(mut send: SendStream, mut recv: RecvStream, service: Arc<S>) {
    let outcome = async move {
        let frame = quic::read_frame(&mut recv, MESSAGE_BYTES_MAX).await?;
        let response = match DaRequest::from_bytes(&frame) {
            Ok(request) => tokio::task::spawn_blocking(move || service.handle_request(request))
                .await
                .unwrap_or_else(|error| DaResponse::Refused {
                    reason: format!("node task failed: {error}"),
                }),
            Err(error) => DaResponse::Refused {
                reason: format!("request does not decode: {error}"),
            },
        };
        quic::write_frame(&mut send, &response.to_bytes(), MESSAGE_BYTES_MAX).await?;
        send.finish()?;
        Ok::<(), quic::QuicError>(())
    };
    if let Err(error) = outcome.await {
        warn!(target: "da_strong::server", %error, "stream failed");
    }
}
