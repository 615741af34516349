#!/usr/bin/env bash
# Installs what a fresh Debian machine with the Rust toolchain lacks to build Tickrate.
# Idempotent: installs nothing when everything is present.
set -euo pipefail

packages=(libclang-dev clang pkg-config)   # libclang-dev: bindgen for librocksdb-sys
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
