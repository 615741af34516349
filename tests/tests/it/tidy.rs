//! Tidy: the sans-IO cores read no clock, spawn no task, touch no socket and draw no unseeded
//! randomness (DESIGN.md, architecture rules). A failure names the file and the line.

use std::path::{Path, PathBuf};

/// Files and folders that hold sans-IO cores, relative to the workspace root.
const CORES: &[&str] = &[
    "primitives/src",
    "consensus/src",
    "netstack/src/kcp",
    "netstack/src/kcp.rs",
    "sequencer/src/mempool.rs",
    "sequencer/src/pending.rs",
    "sequencer/src/packer.rs",
    "sequencer/src/batcher.rs",
    "execution/src",
];

const BANNED: &[&str] = &[
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "rand::rng()",
    "tokio::",
    "std::thread::spawn",
    "UdpSocket",
    "TcpStream",
];

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_file() {
        if path.extension().is_some_and(|extension| extension == "rs") {
            out.push(path.to_path_buf());
        }
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        rust_files(&entry.path(), out);
    }
}

#[test]
fn sans_io_cores_read_no_clock_and_spawn_nothing() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for core in CORES {
        rust_files(&root.join(core), &mut files);
    }
    assert!(
        files.len() > 10,
        "the tidy check must find the core sources"
    );
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("source is readable");
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            for banned in BANNED {
                if code.contains(banned) {
                    offences.push(format!("{}:{}: {banned}", file.display(), number + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "sans-IO cores must not use these:\n{}",
        offences.join("\n")
    );
}
