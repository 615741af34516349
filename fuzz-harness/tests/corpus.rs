//! Replays every committed fuzz input through its harness on stable: the seed corpus
//! (`fuzz/corpus/<target>/`) and the inputs that once crashed a target
//! (`fuzz/regressions/<target>/`), so the workspace tests run every fuzz finding again.

use std::{
    fs,
    path::{Path, PathBuf},
};

use fuzz_harness::{FUZZ_TARGETS, seeds, stable_harness};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Every file of `fuzz/<kind>/<target>/`, with its target.
fn inputs(kind: &str) -> Vec<(String, PathBuf)> {
    let Ok(targets) = fs::read_dir(fuzz_dir().join(kind)) else {
        return Vec::new();
    };
    let mut inputs = Vec::new();
    for target in targets.flatten() {
        let name = target.file_name().to_string_lossy().into_owned();
        for file in fs::read_dir(target.path()).into_iter().flatten().flatten() {
            if file.path().is_file() {
                inputs.push((name.clone(), file.path()));
            }
        }
    }
    inputs.sort();
    inputs
}

fn replay(kind: &str) -> usize {
    let inputs = inputs(kind);
    for (target, path) in &inputs {
        let harness = stable_harness(target)
            .unwrap_or_else(|| panic!("{} is in no known target's directory", path.display()));
        let data = fs::read(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        harness(&data);
    }
    inputs.len()
}

#[test]
fn every_corpus_input_passes_its_harness() {
    let replayed = replay("corpus");
    assert!(replayed > 0, "no corpus under {}", fuzz_dir().display());
}

#[test]
fn every_regression_input_passes_its_harness() {
    replay("regressions");
}

#[test]
fn every_fuzz_target_has_a_corpus_with_its_seeds() {
    let corpus = inputs("corpus");
    for (target, _) in FUZZ_TARGETS {
        assert!(
            corpus.iter().any(|(name, _)| name == target),
            "fuzz/corpus/{target}/ is empty"
        );
    }
}

/// The seeds are what they claim to be: valid inputs that each harness accepts.
#[test]
fn seeds_pass_their_harness() {
    for (target, seeds) in seeds::all() {
        let harness = stable_harness(target).unwrap_or_else(|| panic!("no harness for {target}"));
        assert!(!seeds.is_empty(), "{target} has no seeds");
        for seed in seeds {
            harness(&seed);
        }
    }
}
