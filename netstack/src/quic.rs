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
//! - Node binding: [`QuicIdentity::for_node`] makes a certificate that carries the node key's
//!   signature over the certificate's public key (an extension, as libp2p's TLS handshake
//!   does), and [`connect_to_node`] accepts a server only if that signature is by the node ID
//!   it dials and the TLS handshake is signed by that certificate's key. A client that knows a
//!   node's ID from the registry or the DHT needs no certificate of it in advance.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use alloy_primitives::{B256, keccak256};
use primitives::{AccountKey, NodeId, Signature};
use quinn::{
    ClientConfig, RecvStream, SendStream, ServerConfig, TransportConfig,
    crypto::rustls::{QuicClientConfig, QuicServerConfig},
};
pub use quinn::{Connection, Endpoint};
use rustls::{
    DigitallySignedStruct, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime},
};

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
/// The certificate extension carrying the node key's binding (a private-use arc under the
/// IANA enterprise arc; the value is a DER OCTET STRING of the 65-byte signature).
const BINDING_EXTENSION_OID: [u64; 10] = [1, 3, 6, 1, 4, 1, 99_999, 7, 1, 1];
/// Domain of the binding signature.
const BINDING_DOMAIN: &[u8] = b"tickrate/netstack/quic-certificate/v1";
/// Bytes of a recoverable secp256k1 signature.
const SIGNATURE_BYTES: usize = 65;

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

    /// A fresh self-signed identity bound to `node`'s key: its certificate carries the node
    /// key's signature over the certificate's public key ([`connect_to_node`] checks it).
    pub fn for_node(node: &AccountKey) -> Result<Self, QuicError> {
        let key_pair = rcgen::KeyPair::generate()?;
        let spki = rcgen::PublicKeyData::subject_public_key_info(&key_pair);
        let signature = node.sign_prehash(&binding_prehash(&spki));
        let mut value = vec![0x04, SIGNATURE_BYTES as u8];
        value.extend_from_slice(&signature.0);
        let mut extension = rcgen::CustomExtension::from_oid_content(&BINDING_EXTENSION_OID, value);
        extension.set_criticality(false);
        let mut params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()])?;
        params.custom_extensions.push(extension);
        let certificate = params.self_signed(&key_pair)?;
        Ok(QuicIdentity {
            certificate: certificate.der().clone(),
            private_key: PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
        })
    }

    /// The node whose key bound this identity's certificate, if one did.
    pub fn bound_node(&self) -> Result<NodeId, BindingError> {
        bound_node(&self.certificate)
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
    let tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let config = client_config(tls)?;
    let mut endpoint = Endpoint::client(bind).map_err(|source| QuicError::Bind {
        address: bind,
        source,
    })?;
    endpoint.set_default_client_config(config);
    Ok(endpoint)
}

/// A QUIC client configuration over `tls`, with our ALPN and transport.
fn client_config(mut tls: rustls::ClientConfig) -> Result<ClientConfig, QuicError> {
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto = QuicClientConfig::try_from(tls)
        .map_err(|_| QuicError::Tls(rustls::Error::General("no QUIC cipher suite".into())))?;
    let mut config = ClientConfig::new(Arc::new(crypto));
    config.transport_config(transport_config());
    Ok(config)
}

/// Connects to a Tickrate server at `address`.
pub async fn connect(endpoint: &Endpoint, address: SocketAddr) -> Result<Connection, QuicError> {
    Ok(endpoint.connect(address, SERVER_NAME)?.await?)
}

/// Why a certificate does not prove a node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The certificate does not parse.
    #[error("the certificate does not parse")]
    Malformed,
    /// It carries no node binding.
    #[error("the certificate carries no node binding")]
    Unbound,
    /// The binding is not a signature that recovers.
    #[error("the node binding is not a valid signature")]
    BadSignature,
    /// The binding is by another node than the one dialled.
    #[error("the certificate is bound to {found}, not {expected}")]
    OtherNode {
        /// The node dialled.
        expected: NodeId,
        /// The node the binding recovers to.
        found: NodeId,
    },
}

fn binding_prehash(spki: &[u8]) -> B256 {
    keccak256([BINDING_DOMAIN, spki].concat())
}

/// The value of `certificate`'s binding extension, if it has one.
fn binding_of<'a>(
    certificate: &'a x509_parser::certificate::X509Certificate<'_>,
) -> Option<&'a [u8]> {
    certificate
        .extensions()
        .iter()
        .find(|extension| {
            extension
                .oid
                .iter()
                .is_some_and(|arcs| arcs.eq(BINDING_EXTENSION_OID.iter().copied()))
        })
        .map(|extension| extension.value)
}

/// The node whose key signed `certificate`'s public key in its binding extension.
pub fn bound_node(certificate: &CertificateDer<'_>) -> Result<NodeId, BindingError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|_| BindingError::Malformed)?;
    let value = binding_of(&parsed).ok_or(BindingError::Unbound)?;
    let signature: [u8; SIGNATURE_BYTES] = match value {
        [0x04, len, rest @ ..] if usize::from(*len) == SIGNATURE_BYTES => {
            rest.try_into().map_err(|_| BindingError::BadSignature)?
        }
        _ => return Err(BindingError::BadSignature),
    };
    let spki = parsed.public_key().raw;
    Signature(signature)
        .recover_address(&binding_prehash(spki))
        .map(NodeId)
        .map_err(|_| BindingError::BadSignature)
}

/// Accepts exactly a certificate bound to one node, and handshakes signed by its key.
#[derive(Debug)]
struct NodeVerifier {
    node: NodeId,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for NodeVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match bound_node(end_entity) {
            Ok(found) if found == self.node => Ok(ServerCertVerified::assertion()),
            Ok(found) => Err(rustls::Error::General(
                BindingError::OtherNode {
                    expected: self.node,
                    found,
                }
                .to_string(),
            )),
            Err(error) => Err(rustls::Error::General(error.to_string())),
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // Endpoints speak TLS 1.3 only.
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects to the node `node` at `address` from `endpoint` (any client endpoint): the server
/// must present a certificate bound to `node`'s key ([`QuicIdentity::for_node`]); anything
/// else fails the handshake.
pub async fn connect_to_node(
    endpoint: &Endpoint,
    address: SocketAddr,
    node: NodeId,
) -> Result<Connection, QuicError> {
    let provider = crypto_provider();
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NodeVerifier { node, provider }))
        .with_no_client_auth();
    let config = client_config(tls)?;
    Ok(endpoint.connect_with(config, address, SERVER_NAME)?.await?)
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

    /// A server presenting `identity` that echoes each request, until dropped.
    fn echo_server(identity: &QuicIdentity) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let server = server_endpoint(loopback(), identity).expect("server");
        let address = server.local_addr().expect("bound");
        let task = tokio::spawn(async move {
            while let Some(incoming) = server.accept().await {
                tokio::spawn(async move {
                    let Ok(connection) = incoming.await else {
                        return;
                    };
                    while let Ok((mut send, mut recv)) = connection.accept_bi().await {
                        if let Ok(message) = read_frame(&mut recv, 1024).await {
                            let _ = write_frame(&mut send, &message, 1024).await;
                            let _ = send.finish();
                        }
                    }
                });
            }
        });
        (address, task)
    }

    #[tokio::test]
    async fn a_client_reaches_exactly_the_node_its_server_certificate_is_bound_to() {
        let node = AccountKey::from_seed(71);
        let other = AccountKey::from_seed(72);
        let identity = QuicIdentity::for_node(&node).expect("identity");
        assert_eq!(identity.bound_node(), Ok(NodeId(node.address())));
        let (address, server) = echo_server(&identity);
        // No certificate in advance: the node ID is enough.
        let client = client_endpoint(loopback(), &[]).expect("client");
        let connection = connect_to_node(&client, address, NodeId(node.address()))
            .await
            .expect("the bound node");
        let response = request(&connection, b"hello", 1024, Duration::from_secs(5))
            .await
            .expect("response");
        assert_eq!(response, b"hello");
        // Dialled as another node, the same server is refused.
        assert!(matches!(
            connect_to_node(&client, address, NodeId(other.address())).await,
            Err(QuicError::Connection(_))
        ));
        server.abort();

        // A certificate without a binding proves no node.
        let unbound = QuicIdentity::generate().expect("identity");
        assert_eq!(unbound.bound_node(), Err(BindingError::Unbound));
        let (address, server) = echo_server(&unbound);
        assert!(matches!(
            connect_to_node(&client, address, NodeId(node.address())).await,
            Err(QuicError::Connection(_))
        ));
        server.abort();
    }

    #[tokio::test]
    async fn a_binding_copied_into_another_certificate_proves_nothing() {
        let node = AccountKey::from_seed(73);
        let genuine = QuicIdentity::for_node(&node).expect("identity");
        let (_, parsed) =
            x509_parser::parse_x509_certificate(genuine.certificate.as_ref()).expect("parses");
        let binding = binding_of(&parsed).expect("a binding").to_vec();
        // Mallory's own key pair, with the node's binding pasted in.
        let key_pair = rcgen::KeyPair::generate().expect("key pair");
        let mut params =
            rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("params");
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &BINDING_EXTENSION_OID,
                binding,
            ));
        let forged = params.self_signed(&key_pair).expect("certificate");
        let forged = QuicIdentity {
            certificate: forged.der().clone(),
            private_key: PrivatePkcs8KeyDer::from(key_pair.serialize_der()),
        };
        assert_ne!(forged.bound_node(), Ok(NodeId(node.address())));
        let (address, server) = echo_server(&forged);
        let client = client_endpoint(loopback(), &[]).expect("client");
        assert!(matches!(
            connect_to_node(&client, address, NodeId(node.address())).await,
            Err(QuicError::Connection(_))
        ));
        server.abort();
        // Garbage is a typed error, not a panic.
        assert_eq!(
            bound_node(&CertificateDer::from(vec![0x30, 0x03, 0x01, 0x01, 0xff])),
            Err(BindingError::Malformed)
        );
    }
}
