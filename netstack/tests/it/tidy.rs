//! The sans-IO core may not reach for a clock, randomness or tokio (STYLE.md, as TigerBeetle's
//! `tidy.zig`).

use std::{fs, path::Path};

const BANNED: [&str; 6] = [
    "Instant::now",
    "SystemTime::now",
    "thread_rng",
    "rand::random",
    "OsRng",
    "tokio::",
];

#[test]
fn the_core_modules_do_no_io() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![
        source.join("frame.rs"),
        source.join("error.rs"),
        source.join("constants.rs"),
        source.join("emulated/model.rs"),
        source.join("relay/core.rs"),
        source.join("relay/wire.rs"),
        source.join("relay/mod.rs"),
        source.join("resume.rs"),
    ];
    for core in ["kcp", "dht", "secure"] {
        for entry in fs::read_dir(source.join(core)).expect("the core's folder exists") {
            files.push(entry.expect("a directory entry").path());
        }
    }
    assert!(files.len() > 12);
    for file in files {
        let text = fs::read_to_string(&file).expect("readable source");
        for banned in BANNED {
            assert!(
                !text.contains(banned),
                "{} uses {banned}, which the sans-IO core may not",
                file.display()
            );
        }
    }
}
