//! The EVM dev node for tests: Hardhat's node from npm (`scripts/install-devnode.sh`), started
//! once per process on a free port, funded keys handed out one per caller.
//!
//! Without Node.js, [`devnode`] returns `None` (callers skip with the message it printed),
//! except under `CI=true`, where it panics: CI must run what it claims to run.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::{
        Mutex, OnceLock,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use primitives::AccountKey;

/// Hardhat's chain id (scripts/hardhat.config.js).
pub const CHAIN_ID: u64 = 31337;

/// Keys `1..=FUNDED_KEYS` (as 32-byte big-endian secrets) hold ether on the dev node.
pub const FUNDED_KEYS: u8 = 32;

/// The dev node this process started; it exits when its stdin closes (with this process).
struct DevNode {
    url: String,
    _child: Mutex<Child>,
    _stdin: Mutex<ChildStdin>,
}

fn scripts() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts")
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Installs and starts the dev node; `Err` says why it cannot run here.
fn start() -> Result<DevNode, String> {
    let install = Command::new("sh")
        .arg(scripts().join("install-devnode.sh"))
        .status()
        .map_err(|e| format!("cannot run install-devnode.sh: {e}"))?;
    if !install.success() {
        return Err(format!(
            "install-devnode.sh failed ({install}); are node and npm installed?"
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let mut child = Command::new("node")
        .arg(scripts().join("devnode.js"))
        .arg(port.to_string())
        .arg("--exit-with-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start node: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    // Hardhat takes a few seconds to start; give up only if it exits or never listens.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the dev node exited: {status}"));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err("the dev node never listened".into());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(DevNode {
        url: format!("http://127.0.0.1:{port}"),
        _child: Mutex::new(child),
        _stdin: Mutex::new(stdin),
    })
}

/// The dev node's URL, started on first use; `None` to skip (never under `CI=true`).
pub fn devnode() -> Option<&'static str> {
    static NODE: OnceLock<Result<DevNode, String>> = OnceLock::new();
    match NODE.get_or_init(start) {
        Ok(node) => Some(&node.url),
        Err(reason) if in_ci() => panic!("the EVM dev node is required under CI=true: {reason}"),
        Err(reason) => {
            eprintln!("skipping: no EVM dev node ({reason})");
            None
        }
    }
}

/// Compiles contract `contract` of the Solidity file `source` (a Groth16 verifier from
/// `assets-setup export-verifier`) with the repository's solc-js (`scripts/compile-assets.js`,
/// the compiler and settings of the committed contracts) and returns its creation bytecode.
/// Needs what [`devnode`] needs: Node.js and the npm packages it installs.
pub fn compile_solidity(source: &std::path::Path, contract: &str) -> Result<Vec<u8>, String> {
    let output = Command::new("node")
        .arg(scripts().join("compile-assets.js"))
        .arg("--file")
        .arg(source)
        .arg("--contract")
        .arg(contract)
        .output()
        .map_err(|e| format!("cannot run node: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "solc-js failed on {}: {}",
            source.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let hex = String::from_utf8_lossy(&output.stdout);
    alloy::hex::decode(hex.trim()).map_err(|e| format!("solc-js printed no bytecode: {e}"))
}

/// A funded dev-node key, a different one for each call in this process: tests run in
/// parallel, and one sender's transactions go one at a time. Panics past [`FUNDED_KEYS`].
pub fn funded_key() -> AccountKey {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let index = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(
        index <= FUNDED_KEYS,
        "more callers than funded dev-node keys"
    );
    let mut secret = [0u8; 32];
    secret[31] = index;
    AccountKey::from_bytes(secret).expect("small secrets are valid scalars")
}
