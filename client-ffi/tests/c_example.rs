//! The C example, `examples/c/move_piece.c`, compiled with the system C compiler against
//! `include/tickrate.h` and this crate's static library, moves a piece on a devnet started in
//! this process and prints the pending board every frame; the test reads what it printed.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime},
};

use client_ffi::{
    TickrateStatus,
    api::{tickrate_game_address, tickrate_game_slot_of},
    types::{TickrateAddress, TickrateWord},
};
use primitives::AccountKey;
use sim::devnet::{Devnet, DevnetConfig};

/// Bounds how long a broken network can hang the test; never a performance assertion.
const LIVENESS_BOUND: Duration = Duration::from_secs(180);
const FRAMES: u64 = 60;
const SEED: u64 = 77_001;

/// The static library cargo built for this test run. Integration tests live in the profile's
/// `deps` directory, next to the library's artifacts (`cargo test` does not copy them up one
/// level as `cargo build` does; a hashed name is kept in case cargo adds one): the newest of
/// those and the copied-up one is this build's.
fn static_library() -> PathBuf {
    let executable = std::env::current_exe().expect("the test knows its executable");
    let deps = executable
        .parent()
        .expect("the executable is in a directory");
    let mut candidates: Vec<PathBuf> = std::fs::read_dir(deps)
        .expect("the deps directory is readable")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| {
                    name == "libclient_ffi.a"
                        || (name.starts_with("libclient_ffi-") && name.ends_with(".a"))
                })
        })
        .collect();
    if let Some(profile) = deps.parent() {
        candidates.push(profile.join("libclient_ffi.a"));
    }
    candidates
        .into_iter()
        .filter_map(|path| {
            let modified = std::fs::metadata(&path)
                .and_then(|meta| meta.modified())
                .ok()?;
            Some((modified, path))
        })
        .max_by_key(|(modified, _): &(SystemTime, PathBuf)| *modified)
        .map(|(_, path)| path)
        .unwrap_or_else(|| {
            panic!(
                "no libclient_ffi.a near {}: build the workspace's tests first \
                 (`cargo test --workspace` does)",
                deps.display()
            )
        })
}

/// Compiles the example into `out` with warnings as errors.
fn compile_example(out: &Path) {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let library = static_library();
    let output = Command::new(&compiler)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join("examples/c/move_piece.c"))
        .arg(&library)
        // What Rust's standard library needs from the C library when linked statically
        // (`rustc --print native-static-libs`), and the C++ runtime: in a workspace build the
        // SDK is compiled with its `assets` feature (the `tickrate` command asks for it), which
        // brings the upper chain's adapter and RocksDB's C++ code into the archive.
        .args([
            "-lstdc++",
            "-lgcc_s",
            "-lutil",
            "-lrt",
            "-lpthread",
            "-lm",
            "-ldl",
            "-lc",
        ])
        .arg("-o")
        .arg(out)
        .output()
        .unwrap_or_else(|error| panic!("the C compiler `{compiler}` runs: {error}"));
    assert!(
        output.status.success(),
        "the example compiles against {}:\n{}",
        library.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The board printed on a line `LABEL | ROW ROW ... | pending cell N [| SOURCE]`, as 64 cells.
fn board_of(line: &str) -> Vec<char> {
    let board = line.split(" | ").nth(1).expect("a board between bars");
    board.chars().filter(|cell| *cell != ' ').collect()
}

#[test]
fn the_c_api_names_the_devnet_games_address_and_slots() {
    let key = AccountKey::from_seed(SEED);
    let mut address = TickrateAddress::default();
    let mut slot = TickrateWord::default();
    let player = TickrateAddress {
        bytes: key.address().into_array(),
    };
    #[allow(unsafe_code)]
    // SAFETY: pointers to live locals.
    unsafe {
        assert_eq!(tickrate_game_address(&mut address), TickrateStatus::Ok);
        assert_eq!(
            tickrate_game_slot_of(&player, &mut slot),
            TickrateStatus::Ok
        );
    }
    assert_eq!(address.bytes, sim::game::GAME_ADDRESS.into_array());
    assert_eq!(slot.bytes, sim::game::slot_of(&key.address()).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_c_example_moves_a_piece_and_prints_the_pending_board_every_frame() {
    let build = tempfile::tempdir().expect("a temporary directory");
    let example = build.path().join("move_piece");
    compile_example(&example);

    let devnet = Devnet::start(DevnetConfig {
        shard_nodes: 8,
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts");
    let sequencers: Vec<String> = (0..devnet.sequencers.len())
        .map(|index| devnet.sequencer_addr(index).to_string())
        .collect();
    let run = tokio::process::Command::new(&example)
        .arg(sequencers.join(","))
        .arg(FRAMES.to_string())
        .arg(devnet.chain_id.to_string())
        .arg(SEED.to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIVENESS_BOUND, run)
        .await
        .expect("the example ends")
        .expect("the example runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the example succeeds: {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );

    let frames: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("frame"))
        .collect();
    assert_eq!(
        frames.len() as u64,
        FRAMES,
        "a board every frame:\n{stdout}"
    );
    // The example applies one tick diff a frame; the sequencer sends one for each tick in
    // which the piece's cell or the nonce changed, within the run's frames: a frame's board
    // shows the piece on a cell some move of this run sent it to.
    let targets: Vec<usize> = (0..FRAMES)
        .map(|frame| ((frame * 7 + 3) % 64) as usize)
        .collect();
    let shown = frames
        .iter()
        .filter(|line| {
            let board = board_of(line);
            board.len() == 64 && targets.iter().any(|cell| board[*cell] == 'P')
        })
        .count();
    assert!(shown > 0, "pushed moves reach the printed board:\n{stdout}");
    // Each applied diff names its tick, and the ticks rise frame after frame.
    let ticks: Vec<u64> = frames
        .iter()
        .filter_map(|line| {
            let source = line.split(" | ").nth(3)?;
            let tick = source.strip_prefix("diff of tick ")?.split(',').next()?;
            tick.parse().ok()
        })
        .collect();
    assert!(!ticks.is_empty(), "tick diffs were applied:\n{stdout}");
    assert!(
        ticks.windows(2).all(|pair| pair[0] < pair[1]),
        "one diff per tick, in tick order: {ticks:?}"
    );
    assert!(
        stdout.contains(&format!(
            "tick diffs applied {} in {FRAMES} frames",
            ticks.len()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("ack seqs rise in send order: yes"),
        "every ack is keyed by a tick and a sequence number rising in send order:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!("acked {FRAMES} of {FRAMES} moves")),
        "every move reached Pending:\n{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "last move (nonce {}) reached EXECUTED",
            FRAMES - 1
        )),
        "the last move executed:\n{stdout}"
    );
    let last_target = targets[targets.len() - 1];
    let final_line = stdout
        .lines()
        .find(|line| line.starts_with("final"))
        .expect("a final board");
    let final_board = board_of(final_line);
    assert_eq!(final_board.len(), 64, "{final_line}");
    assert_eq!(
        final_board.iter().position(|cell| *cell == 'P'),
        Some(last_target),
        "the final pending board holds the piece where the last move sent it: {final_line}"
    );
    assert!(final_line.ends_with(&format!("pending cell {last_target}")));
    assert!(
        stdout.contains(&format!("pending nonce {FRAMES}")),
        "{stdout}"
    );
}
