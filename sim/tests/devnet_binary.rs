//! The devnet binary serves its upper chain to other processes: a short run with
//! `--chain-listen`, reached over TCP as `shard-node` reaches it.

#![allow(missing_docs, clippy::unwrap_used)]

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
};

use upper_chain::{ChainConfig, connect};

#[test]
fn the_devnet_serves_its_upper_chain() {
    let mut devnet = Command::new(env!("CARGO_BIN_EXE_devnet"))
        .args([
            "--duration",
            "2",
            "--players",
            "4",
            "--rate",
            "40",
            "--chain-listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = devnet.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let url = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("upper chain served at ")
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        })
        .expect("the devnet prints where it serves its chain");
    let chain = connect(&ChainConfig::new(url, 4242)).unwrap();
    // The devnet's four sequencers are the chain's sequencer set.
    assert_eq!(chain.sequencer_set().unwrap().len(), 4);
    // Its sixteen shard nodes are registered.
    let epoch = chain.epoch().unwrap();
    assert_eq!(chain.registry_snapshot(epoch).unwrap().nodes.len(), 16);
    // Drain the rest so the devnet never blocks on a full pipe, then let it finish its run.
    for _ in lines {}
    assert!(devnet.wait().unwrap().success());
}
