#!/usr/bin/env bash
# Runs every cargo-fuzz target (or those named) for SECONDS each, one at a time, starting from
# the committed corpus. New inputs go to a scratch directory, so the committed corpus changes
# only by hand (`cargo +nightly fuzz cmin`); a crash fails the script and leaves its input in
# fuzz/artifacts/<target>/, to be committed under fuzz/regressions/<target>/ with the fix.
#
# Usage: fuzz/run.sh SECONDS [TARGET...]    (needs a nightly toolchain and cargo-fuzz)
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:?usage: fuzz/run.sh SECONDS [TARGET...]}"
shift
# Not the workspace's target directory: other flags (sanitizer coverage), and a build of
# ~20 minutes from scratch on 2 cores that later runs only update.
export CARGO_TARGET_DIR="${TICKRATE_FUZZ_TARGET_DIR:-/var/cache/tickrate-fuzz-target}"
mkdir -p "$CARGO_TARGET_DIR"

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir .)
fi
cargo +nightly fuzz build --fuzz-dir .

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
  mkdir -p "$scratch/$target" "artifacts/$target"
  echo "fuzzing $target for ${seconds}s"
  set +e
  cargo +nightly fuzz run --fuzz-dir . "$target" "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$scratch/$target.log" 2>&1
  status=$?
  set -e
  grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec)' "$scratch/$target.log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$scratch/$target.log"
    echo "fuzz target $target failed; its input is in fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
