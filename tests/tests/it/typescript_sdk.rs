//! The TypeScript SDK (`client-ts/`) against a devnet's JSON-RPC gateway over WebSocket: the
//! package is installed from its lock file (`client-ts/scripts/install.sh`), compiled with
//! `tsc`, and its `node --test` suite, which also runs the `move-piece` example, must pass.
//!
//! Without Node.js and npm the test is skipped with a message, except under `CI=true`, where
//! that is a failure: CI must run what it claims to run.

use std::{path::PathBuf, process::Command, time::Duration};

use primitives::{AccountKey, U256};
use sim::devnet::{Devnet, DevnetConfig};

/// Bounds how long a broken network can hang the test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(300);

fn package() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../client-ts")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// Installs the package's dependencies and compiles it; `Err` says why that cannot be done here.
fn install_and_build() -> Result<(), String> {
    let install = Command::new("sh")
        .arg(package().join("scripts/install.sh"))
        .status()
        .map_err(|error| format!("cannot run client-ts/scripts/install.sh: {error}"))?;
    if !install.success() {
        return Err(format!(
            "client-ts/scripts/install.sh failed ({install}); are node and npm installed?"
        ));
    }
    let build = Command::new("npm")
        .args(["run", "--silent", "build"])
        .current_dir(package())
        .output()
        .map_err(|error| format!("cannot run npm: {error}"))?;
    // A compile error is the package's fault, not this machine's: never skipped.
    assert!(
        build.status.success(),
        "the TypeScript SDK compiles:\n{}{}",
        String::from_utf8_lossy(&build.stdout),
        String::from_utf8_lossy(&build.stderr)
    );
    Ok(())
}

/// A secret key as the `0x`-prefixed hex the SDK takes.
fn hex_key(key: &AccountKey) -> String {
    let hex: String = key
        .secret_bytes()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("0x{hex}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_sdk_passes_its_node_tests_against_a_devnet() {
    let ready = tokio::task::spawn_blocking(install_and_build)
        .await
        .expect("the install does not panic");
    if let Err(reason) = ready {
        assert!(
            !in_ci(),
            "the TypeScript SDK test must run under CI=true: {reason}"
        );
        eprintln!("skipped: {reason}");
        return;
    }

    let player = AccountKey::from_seed(95_001);
    let example_player = AccountKey::from_seed(95_002);
    let funds = U256::from(10u64).pow(U256::from(21u64));
    let devnet = Devnet::start(DevnetConfig {
        shard_nodes: 8,
        rpc_listen: Some(([127, 0, 0, 1], 0).into()),
        funded: vec![(player.address(), funds), (example_player.address(), funds)],
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let url = devnet
        .rpc
        .as_ref()
        .expect("the devnet serves JSON-RPC")
        .ws_url();

    let run = tokio::process::Command::new("node")
        .args(["--test", "dist/test/"])
        .current_dir(package())
        .env("TICKRATE_RPC_WS_URL", &url)
        .env("TICKRATE_CHAIN_ID", devnet.chain_id.to_string())
        .env("TICKRATE_TEST_PRIVATE_KEY", hex_key(&player))
        .env("TICKRATE_EXAMPLE_PRIVATE_KEY", hex_key(&example_player))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIVENESS_BOUND, run)
        .await
        .expect("node --test ends")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "node --test passes against {url} ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("# fail 0"), "{stdout}");
    assert!(
        !stdout.contains("# pass 0"),
        "the suite ran some tests: {stdout}"
    );
}
