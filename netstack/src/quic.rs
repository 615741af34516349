//! QUIC for node-to-node request/response traffic (DA chunk transfers), on `quinn`.
//!
//! KCP serves the latency-critical client path; node-to-node transfers move large messages
//! (erasure-coded chunks of hundreds of KiB) where QUIC's congestion control, stream
//! multiplexing and TLS 1.3 are what we want, so this module uses `quinn` itself rather than a
//! core of our own (STYLE.md §1).
//!
//! # Shape
//! - [`QuicIdentity`]: a self-signed certificate (rcgen) and its key. A node keeps one in its data
//!   directory so clients can pin it across restarts.
//! - [`server_endpoint`] / [`client_endpoint`]: endpoints with TLS 1.3 on ring, our ALPN, and a
//!   transport with an idle timeout and keep-alive. A client trusts exactly the certificates it is
//!   given ([`client_endpoint`]'s `trusted`), as quinn's examples do with self-signed servers.
//! - Framing: one request and one response per bidirectional stream, each a `u32` big-endian
//!   length and that many bytes. [`read_frame`] refuses a length above the caller's bound before
//!   allocating, so a peer cannot make us reserve memory it never sends.
//! - [`request`]: open a stream, send one frame, read one frame, bounded by a timeout.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use quinn::{
    ClientConfig, Connection, Endpoint, RecvStream, SendStream, ServerConfig, TransportConfig,
    crypto::rustls::{QuicClientConfig, QuicServerConfig},
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The name every Tickrate QUIC server presents in its certificate; clients connect with it.
pub const SERVER_NAME: &str = "tickrate-node";
/// ALPN of Tickrate's request/response protocol over QUIC.
pub const ALPN: &[u8] = b"tickrate/1";
/// A connection with no traffic for this long is closed.
pub const IDLE_TIMEOUT_MS: u32 = 10_000;
/// Keep-alive period, well under the idle timeout, so idle pooled connections stay open.
pub const KEEP_ALIVE_MS: u64 = 3_000;
/// Bytes of a frame's length prefix.
const LENGTH_PREFIX_BYTES: usize = 4;

/// Why a QUIC operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The TLS configuration was refused (a bad key or certificate).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// A certificate could not be generated.
    #[error("certificate generation: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The socket could not be bound.
    #[error("binding {address}: {source}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A connection could not be started (bad address or configuration).
    #[error("connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing to a stream failed.
    #[error("write: {0}")]
    Write(#[from] quinn::WriteError),
    /// The stream was already finished or reset.
    #[error("stream closed: {0}")]
    ClosedStream(#[from] quinn::ClosedStream),
    /// Reading from a stream failed.
    #[error("read: {0}")]
    Read(#[from] quinn::ReadError),
    /// The stream ended before the frame did.
    #[error("stream ended inside a frame: {read} of {expected} bytes")]
    Truncated {
        /// Bytes read.
        read: usize,
        /// Bytes the frame needed.
        expected: usize,
    },
    /// A frame longer than the bound.
    #[error("frame of {len} bytes exceeds {max}")]
    Oversized {
        /// Declared length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// No answer within the timeout.
    #[error("no response within {timeout_ms} ms")]
    Timeout {
        /// The timeout.
        timeout_ms: u64,
    },
}

/// A self-signed certificate for [`SERVER_NAME`] and its private key (PKCS #8 DER).
#[derive(Debug)]
pub struct QuicIdentity {
    /// The certificate, DER.
    pub certificate: CertificateDer<'static>,
    /// The private key, PKCS #8 DER.
    pub private_key: PrivatePkcs8KeyDer<'static>,
}

impl Clone for QuicIdentity {
    fn clone(&self) -> Self {
        QuicIdentity {
            certificate: self.certificate.clone(),
            private_key: self.private_key.clone_key(),
        }
    }
}

impl QuicIdentity {
    /// A fresh self-signed identity.
    pub fn generate() -> Result<Self, QuicError> {
        let certified = rcgen::generate_simple_self_signed(vec![SERVER_NAME.to_string()])?;
        Ok(QuicIdentity {
            certificate: certified.cert.der().clone(),
            private_key: PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()),
        })
    }

    /// An identity from stored DER bytes (checked when an endpoint is built from it).
    pub fn from_der(certificate: Vec<u8>, private_key: Vec<u8>) -> Self {
        QuicIdentity {
            certificate: CertificateDer::from(certificate),
            private_key: PrivatePkcs8KeyDer::from(private_key),
        }
    }
}

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn transport_config() -> Arc<TransportConfig> {
    let mut transport = TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::IdleTimeout::from(quinn::VarInt::from_u32(
        IDLE_TIMEOUT_MS,
    ))));
    transport.keep_alive_interval(Some(Duration::from_millis(KEEP_ALIVE_MS)));
    Arc::new(transport)
}

/// A server endpoint bound to `address` presenting `identity`.
pub fn server_endpoint(
    address: SocketAddr,
    identity: &QuicIdentity,
) -> Result<Endpoint, QuicError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(
            vec![identity.certificate.clone()],
            PrivateKeyDer::Pkcs8(identity.private_key.clone_key()),
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicServerConfig::try_from(tls)
        .map_err(|_| QuicError::Tls(rustls::Error::General("no QUIC cipher suite".into())))?;
    let mut config = ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(transport_config());
    Endpoint::server(config, address).map_err(|source| QuicError::Bind { address, source })
}

/// A client endpoint on an ephemeral loopback-or-any port that trusts exactly `trusted`
/// (the servers' self-signed certificates).
pub fn client_endpoint(
    bind: SocketAddr,
    trusted: &[CertificateDer<'static>],
) -> Result<Endpoint, QuicError> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in trusted {
        roots.add(certificate.clone())?;
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|_| QuicError::Tls(rustls::Error::General("no QUIC cipher suite".into())))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    let mut endpoint = Endpoint::client(bind).map_err(|source| QuicError::Bind {
        address: bind,
        source,
    })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// Connects to a Tickrate server at `address`.
pub async fn connect(endpoint: &Endpoint, address: SocketAddr) -> Result<Connection, QuicError> {
    Ok(endpoint.connect(address, SERVER_NAME)?.await?)
}

/// Writes one length-prefixed frame. The caller finishes the stream.
pub async fn write_frame(
    send: &mut SendStream,
    message: &[u8],
    max: usize,
) -> Result<(), QuicError> {
    if message.len() > max {
        return Err(QuicError::Oversized {
            len: message.len(),
            max,
        });
    }
    let len = u32::try_from(message.len()).map_err(|_| QuicError::Oversized {
        len: message.len(),
        max: u32::MAX as usize,
    })?;
    send.write_all(&len.to_be_bytes()).await?;
    send.write_all(message).await?;
    Ok(())
}

/// Reads one length-prefixed frame of at most `max` bytes.
pub async fn read_frame(recv: &mut RecvStream, max: usize) -> Result<Vec<u8>, QuicError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    read_exactly(recv, &mut prefix).await?;
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max {
        return Err(QuicError::Oversized { len, max });
    }
    let mut message = vec![0u8; len];
    read_exactly(recv, &mut message).await?;
    Ok(message)
}

async fn read_exactly(recv: &mut RecvStream, buffer: &mut [u8]) -> Result<(), QuicError> {
    match recv.read_exact(buffer).await {
        Ok(()) => Ok(()),
        Err(quinn::ReadExactError::FinishedEarly(read)) => Err(QuicError::Truncated {
            read,
            expected: buffer.len(),
        }),
        Err(quinn::ReadExactError::ReadError(error)) => Err(QuicError::Read(error)),
    }
}

/// Sends `message` on a new stream of `connection` and returns the one-frame response
/// (at most `response_max` bytes), or [`QuicError::Timeout`] after `timeout`.
pub async fn request(
    connection: &Connection,
    message: &[u8],
    response_max: usize,
    timeout: Duration,
) -> Result<Vec<u8>, QuicError> {
    let exchange = async {
        let (mut send, mut recv) = connection.open_bi().await?;
        write_frame(&mut send, message, usize::MAX).await?;
        send.finish()?;
        read_frame(&mut recv, response_max).await
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| QuicError::Timeout {
            timeout_ms: timeout.as_millis() as u64,
        })?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    #[tokio::test]
    async fn request_response_round_trips_and_oversized_frames_are_refused() {
        let identity = QuicIdentity::generate().expect("identity");
        let server = server_endpoint(loopback(), &identity).expect("server");
        let address = server.local_addr().expect("bound");
        let serve = tokio::spawn(async move {
            let incoming = server.accept().await.expect("a connection");
            let connection = incoming.await.expect("handshake");
            // First stream: echo reversed. Second: a frame over the bound is refused.
            let (mut send, mut recv) = connection.accept_bi().await.expect("stream");
            let mut message = read_frame(&mut recv, 1024).await.expect("frame");
            message.reverse();
            write_frame(&mut send, &message, 1024).await.expect("write");
            send.finish().expect("finish");
            let (_send, mut recv) = connection.accept_bi().await.expect("stream");
            let refused = read_frame(&mut recv, 1024).await;
            assert!(matches!(
                refused,
                Err(QuicError::Oversized {
                    len: 2000,
                    max: 1024
                })
            ));
            connection.closed().await;
        });

        let client = client_endpoint(loopback(), std::slice::from_ref(&identity.certificate))
            .expect("client");
        let connection = connect(&client, address).await.expect("connect");
        let response = request(&connection, b"abc", 1024, Duration::from_secs(5))
            .await
            .expect("response");
        assert_eq!(response, b"cba");
        let big = vec![7u8; 2000];
        let outcome = request(&connection, &big, 1024, Duration::from_millis(300)).await;
        assert!(outcome.is_err(), "server never answers an oversized frame");
        connection.close(0u32.into(), b"done");
        serve.await.expect("server task");
    }

    #[tokio::test]
    async fn a_client_refuses_a_server_it_does_not_trust() {
        let identity = QuicIdentity::generate().expect("identity");
        let other = QuicIdentity::generate().expect("identity");
        let server = server_endpoint(loopback(), &identity).expect("server");
        let address = server.local_addr().expect("bound");
        tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                let _ = incoming.await;
            }
        });
        let client = client_endpoint(loopback(), &[other.certificate]).expect("client");
        assert!(matches!(
            connect(&client, address).await,
            Err(QuicError::Connection(_))
        ));
    }
}
