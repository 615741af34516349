#!/usr/bin/env bash
# Installs what a fresh Debian machine with the Rust toolchain lacks to build Tickrate.
# Idempotent: installs nothing when everything is present.
set -euo pipefail

# libclang-dev: bindgen for librocksdb-sys; iproute2: the emulated link's namespaces; perl:
# keccak-asm generates its assembly with cryptogams perlasm; prometheus: the operator-metrics
# test scrapes a devnet node with a real server (it fails under CI=true without it).
packages=(libclang-dev clang pkg-config iproute2 perl prometheus)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "cargo not found: install the Rust toolchain (rustup) first" >&2; exit 1; }

# A real S3 server for weak DA's tests and the `da` benchmark: s3s-fs (file-system-backed, from
# crates.io). Pinned: later releases need a newer Rust than the toolchain here. The tests look
# for it at this path (or at $TICKRATE_S3S_FS) and fail under CI=true without it.
tools_root="${TICKRATE_TOOLS_ROOT:-/var/cache/tickrate-tools}"
if [ ! -x "$tools_root/bin/s3s-fs" ]; then
  # Its own target directory, so that the install never holds the workspace build lock.
  CARGO_TARGET_DIR="$tools_root/target" cargo install s3s-fs@0.14.0 --locked --features binary --root "$tools_root"
fi

# The EVM dev node the upper-chain tests run the Registry contract on: Hardhat's node (and
# solc-js), pinned in upper-chain/scripts/package-lock.json and installed there with npm ci.
# Node.js and npm from Debian if missing; the tests fail under CI=true without them.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm
fi
"$(dirname "$0")/../upper-chain/scripts/install-devnode.sh"

# cbindgen, which generates the C header of client-ffi (include/tickrate.h); the header test
# runs it and fails under CI=true without it. A tool, not a dependency: as a crate in the
# workspace it would change the features of shared build dependencies and rebuild RocksDB.
if [ ! -x "$tools_root/bin/cbindgen" ]; then
  CARGO_TARGET_DIR="$tools_root/target" cargo install cbindgen@0.29.4 --locked --root "$tools_root"
fi

# The TypeScript SDK's packages (viem, ws, TypeScript), pinned in client-ts/package-lock.json;
# its test (tests/it/typescript_sdk.rs) compiles it and runs `node --test` against a devnet.
"$(dirname "$0")/../client-ts/scripts/install.sh"

# cargo-fuzz for the fuzz targets in fuzz/ (CI runs each briefly): only with a nightly
# toolchain, which they need. Installs in about 3 minutes on 2 cores.
if cargo +nightly --version >/dev/null 2>&1 && ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  CARGO_TARGET_DIR="$tools_root/target" cargo install cargo-fuzz@0.13.2 --locked
fi
