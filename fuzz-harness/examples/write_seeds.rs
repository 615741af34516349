//! Writes the seed corpus: `cargo run -p fuzz-harness --example write_seeds [FUZZ_DIR]`
//! (default `fuzz/` of this checkout). Files are named by the blake3 hash of their bytes, as
//! libFuzzer names its own finds, so re-running adds nothing twice.

use std::{fs, path::PathBuf};

fn main() -> std::io::Result<()> {
    let fuzz_dir = std::env::args().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fuzz"),
        PathBuf::from,
    );
    for (target, seeds) in fuzz_harness::seeds::all() {
        let directory = fuzz_dir.join("corpus").join(target);
        fs::create_dir_all(&directory)?;
        for seed in &seeds {
            let name = blake3::hash(seed).to_hex();
            fs::write(directory.join(&name[..16]), seed)?;
        }
        println!("{target}: {} seeds in {}", seeds.len(), directory.display());
    }
    Ok(())
}
