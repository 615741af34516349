//! The `da-node` binary as an operator runs it: two nodes from the command line, a batch
//! dispersed to them, and their metrics scraped from the Prometheus endpoint.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Child, ChildStdout, Command, Stdio},
};

use da_strong::{DaClient, DaNodeAddress, ErasureParams};
use primitives::bls::BlsPublicKey;
use quinn::rustls::pki_types::CertificateDer;

/// A running `da-node` process, killed when dropped.
struct NodeProcess {
    child: Child,
    address: DaNodeAddress,
    metrics: SocketAddr,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP port free now (the exporter binds it a moment later).
fn free_tcp_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address")
}

/// The text after `prefix` on the first line the node prints that holds it.
fn field(lines: &mut impl Iterator<Item = std::io::Result<String>>, prefix: &str) -> String {
    for line in lines {
        let line = line.expect("stdout is text");
        if let Some(at) = line.find(prefix) {
            return line[at + prefix.len()..].trim().to_string();
        }
    }
    panic!("the node never printed {prefix:?}");
}

/// Kills the process if the test fails before a [`NodeProcess`] owns it.
struct KillOnDrop(Option<Child>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start(position: u16, directory: &Path) -> NodeProcess {
    let metrics = free_tcp_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_da-node"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--position",
            &position.to_string(),
        ])
        .arg("--data-dir")
        .arg(directory)
        .args(["--bls-seed", &format!("{:02x}", position + 1).repeat(32)])
        .args(["--metrics-listen", &metrics.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("da-node starts");
    let stdout: ChildStdout = child.stdout.take().expect("piped");
    let mut guard = KillOnDrop(Some(child));
    let mut lines = BufReader::new(stdout).lines();
    let address: SocketAddr = field(&mut lines, "listening on ")
        .parse()
        .expect("an address");
    let key_hex = field(&mut lines, "bls public key 0x");
    let key_bytes: Vec<u8> = (0..key_hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&key_hex[at..at + 2], 16).expect("hex"))
        .collect();
    let public_key =
        BlsPublicKey::from_bytes(&key_bytes.try_into().expect("48 bytes")).expect("a key");
    let certificate_path = field(&mut lines, "quic certificate ");
    let certificate =
        CertificateDer::from(std::fs::read(certificate_path).expect("the certificate file"));
    NodeProcess {
        child: guard.0.take().expect("still owned"),
        address: DaNodeAddress {
            address,
            public_key,
            certificate,
        },
        metrics,
    }
}

/// `GET /metrics`, the body as text; `None` while the exporter is not listening yet.
fn scrape(address: SocketAddr) -> Option<String> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    Some(response)
}

/// The value of the sample `name` in a Prometheus text exposition.
fn sample(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test]
async fn da_nodes_from_the_command_line_store_a_batch_and_export_their_counters() {
    let root = tempfile::tempdir().expect("temp dir");
    let nodes: Vec<NodeProcess> = (0..2u16)
        .map(|position| start(position, &root.path().join(format!("node{position}"))))
        .collect();
    // Counters exist from the start, at zero.
    let before = loop {
        if let Some(text) = scrape(nodes[0].metrics) {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&before, "da_strong_node_stored_count"), Some(0.0));

    let params = ErasureParams::new(1, 2).expect("k = 1, n = 2");
    let client = DaClient::new(
        params,
        nodes.iter().map(|node| node.address.clone()).collect(),
    )
    .expect("client");
    let payload = vec![7u8; 10_000];
    let dispersal = client.disperse(&payload).await.expect("dispersed");
    dispersal
        .certificate
        .verify(&client.committee_keys(), &params)
        .expect("certified");
    assert_eq!(
        client
            .retrieve(dispersal.commitment)
            .await
            .expect("rebuilt"),
        payload
    );

    for node in &nodes {
        let after = scrape(node.metrics).expect("exporter up");
        assert_eq!(sample(&after, "da_strong_node_stored_count"), Some(1.0));
        assert_eq!(sample(&after, "da_strong_node_rejected_count"), Some(0.0));
    }
}
