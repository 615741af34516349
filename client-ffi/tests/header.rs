//! The committed C header, `include/tickrate.h`, is what cbindgen generates from this crate's
//! source with `cbindgen.toml`: a C, C# or C++ caller compiled against it calls the functions
//! the library exports, with the layouts it uses. Run with `TICKRATE_BLESS=1` to rewrite it.
//!
//! cbindgen is the command-line tool `scripts/setup.sh` installs in the tools directory
//! (`$TICKRATE_TOOLS_ROOT`, default `/var/cache/tickrate-tools`), or `$TICKRATE_CBINDGEN`, or
//! `cbindgen` on the `PATH` (as a dependency of this crate it would change the features of the
//! workspace's shared build dependencies and rebuild the world). Without it the test is skipped
//! with a message, except under `CI=true`, where that is a failure.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value == "true" || value == "1")
}

/// The cbindgen executable, or why there is none.
fn cbindgen() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("TICKRATE_CBINDGEN") {
        return Ok(PathBuf::from(path));
    }
    let tools = std::env::var("TICKRATE_TOOLS_ROOT")
        .unwrap_or_else(|_| "/var/cache/tickrate-tools".to_string());
    let installed = Path::new(&tools).join("bin/cbindgen");
    if installed.is_file() {
        return Ok(installed);
    }
    match Command::new("cbindgen").arg("--version").output() {
        Ok(output) if output.status.success() => Ok(PathBuf::from("cbindgen")),
        _ => Err(format!(
            "no cbindgen at {} nor on the PATH (scripts/setup.sh installs it)",
            installed.display()
        )),
    }
}

#[test]
fn the_committed_header_is_what_cbindgen_generates() {
    let cbindgen = match cbindgen() {
        Ok(path) => path,
        Err(reason) => {
            assert!(
                !in_ci(),
                "the header check must run under CI=true: {reason}"
            );
            eprintln!("skipped: {reason}");
            return;
        }
    };
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new(&cbindgen)
        .arg("--config")
        .arg(crate_dir.join("cbindgen.toml"))
        .arg(crate_dir.join("src/lib.rs"))
        .output()
        .unwrap_or_else(|error| panic!("{} runs: {error}", cbindgen.display()));
    assert!(
        output.status.success(),
        "cbindgen reads the crate:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = output.stdout;
    let header = crate_dir.join("include/tickrate.h");
    if std::env::var("TICKRATE_BLESS").is_ok_and(|bless| bless == "1") {
        std::fs::write(&header, &generated).expect("the header is writable");
        return;
    }
    let committed = std::fs::read(&header).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not what cbindgen generates from the source: run this test with \
         TICKRATE_BLESS=1 to rewrite it, and commit it",
        header.display()
    );
    let text = String::from_utf8_lossy(&generated);
    for function in [
        "tickrate_client_connect",
        "tickrate_send_game_move",
        "tickrate_poll_change",
        "tickrate_last_error",
    ] {
        assert!(text.contains(function), "{function} is declared");
    }
}
