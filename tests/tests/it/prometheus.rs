//! A real Prometheus server (Debian's `prometheus`) scrapes a devnet shard node's `/metrics` and
//! answers queries for the operator metrics; every query of the Grafana dashboard
//! (`accounting/grafana/operators.json`) finds data there.
//!
//! Prometheus is looked for at `$TICKRATE_PROMETHEUS`, then on `PATH`. Without it the test is
//! skipped, except under `CI=true`, where it fails: `scripts/setup.sh` installs it.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use sim::devnet::{Devnet, DevnetConfig};

use crate::operators::play;

/// Bounds how long a broken setup can hang the test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(120);

fn prometheus_binary() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("TICKRATE_PROMETHEUS") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|path| path.is_file())
    })
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free now (Prometheus takes its listen address as a flag, so it must be
/// chosen before it starts).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// `GET path` on `addr` over HTTP/1.0; the body, or `None` if nothing answers yet.
fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_string())
}

/// Percent-encodes a query for a URL.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            _ => format!("%{byte:02X}"),
        })
        .collect()
}

/// The result vector of an instant query, or `None` if Prometheus cannot answer yet.
fn query(prometheus: SocketAddr, promql: &str) -> Option<Vec<serde_json::Value>> {
    let body = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", encode(promql)),
    )?;
    let value: serde_json::Value = serde_json::from_str(&body).ok()?;
    if value["status"] != "success" {
        return None;
    }
    value["data"]["result"].as_array().cloned()
}

/// A sample's value.
fn sample(result: &serde_json::Value) -> f64 {
    result["value"][1]
        .as_str()
        .and_then(|text| text.parse().ok())
        .expect("a sample value")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_a_devnet_node_and_finds_the_operator_metrics_by_query() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "prometheus is not installed (scripts/setup.sh installs it); CI must run this test"
        );
        eprintln!("prometheus not found: skipped (apt-get install prometheus)");
        return;
    };
    let devnet = Devnet::start(DevnetConfig {
        usage_epoch_batches: 1,
        root_commit_interval_batches: 1,
        metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    play(&devnet, 23).await;
    // A member of the game's group: it executed every move and took slices from other groups,
    // so its ledger has peers.
    let node = devnet
        .shards
        .network
        .lock()
        .group_of(&sim::game::GAME_ADDRESS)[0];
    let target = devnet
        .metrics
        .iter()
        .find(|(id, _)| *id == node)
        .map(|(_, addr)| *addr)
        .expect("every node serves its metrics");
    // The node's epochs close once their last batch ran; wait for one signed with moves in it.
    let deadline = std::time::Instant::now() + LIVENESS_BOUND;
    while devnet
        .operators
        .lock()
        .node(&node)
        .is_none_or(|accounting| accounting.owed_total() == 0)
    {
        assert!(std::time::Instant::now() < deadline, "no epoch signed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let exposition = tokio::task::spawn_blocking(move || {
        http_get(target, "/metrics").expect("the node answers")
    })
    .await
    .expect("fetched");
    for name in accounting::metrics::ALL
        .into_iter()
        .chain(shard_node::metrics::ALL)
    {
        assert!(
            exposition.contains(name),
            "{name} missing from:\n{exposition}"
        );
    }
    // The node's own progress: batches stored and moves executed.
    let value = |name: &str| {
        exposition
            .lines()
            .find_map(|line| {
                line.strip_prefix(name)?
                    .strip_prefix(' ')?
                    .parse::<f64>()
                    .ok()
            })
            .unwrap_or_else(|| panic!("no sample of {name} in:\n{exposition}"))
    };
    assert!(value(shard_node::metrics::BATCHES_EXECUTED) >= 1.0);
    assert!(value(shard_node::metrics::MOVES_EXECUTED) >= 1.0);
    assert!(value(shard_node::metrics::GROUP_ROUNDS) >= 1.0);
    assert_eq!(value(shard_node::metrics::EVICTED), 0.0);

    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: tickrate\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .expect("config written");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _server = Server(
        Command::new(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={listen}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts"),
    );

    // Query until the scrapes have brought every operator metric in.
    let dashboard = accounting::dashboard::queries(accounting::dashboard::OPERATORS)
        .expect("the dashboard parses");
    let found = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + LIVENESS_BOUND;
        loop {
            let balance = query(listen, "tickrate_peer_balance").unwrap_or_default();
            let out_of_bounds = query(listen, "tickrate_peers_out_of_bounds").unwrap_or_default();
            let owed = query(listen, "tickrate_epoch_owed").unwrap_or_default();
            let total = query(listen, "tickrate_owed_total").unwrap_or_default();
            let epoch = query(listen, "tickrate_usage_epoch").unwrap_or_default();
            if !balance.is_empty()
                && !out_of_bounds.is_empty()
                && owed.iter().any(|result| sample(result) > 0.0)
                && !total.is_empty()
                && !epoch.is_empty()
            {
                // Every dashboard query, with its node variable chosen as all, finds data.
                let empty: Vec<String> = dashboard
                    .iter()
                    .filter(|promql| !promql.starts_with("label_values("))
                    .map(|promql| promql.replace("$instance", ".*"))
                    .filter(|promql| query(listen, promql).is_none_or(|result| result.is_empty()))
                    .collect();
                if empty.is_empty() {
                    return (balance, out_of_bounds, total);
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "prometheus did not find every operator metric in time"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    })
    .await
    .expect("queried");
    let (balance, out_of_bounds, total) = found;

    // The balances are per peer, labelled by peer; the member took more slices than it gave
    // to at least one peer, so some balance is negative (it owes that peer service).
    assert!(
        balance
            .iter()
            .all(|result| result["metric"]["peer"].is_string())
    );
    assert!(
        balance.iter().any(|result| sample(result) < 0.0),
        "{balance:?}"
    );
    assert_eq!(out_of_bounds.len(), 1);
    assert!(sample(&out_of_bounds[0]) >= 0.0);
    assert!(sample(&total[0]) > 0.0);
    assert!(
        balance
            .iter()
            .all(|result| result["metric"]["instance"] == target.to_string().as_str())
    );
}
