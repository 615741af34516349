#!/bin/sh
# Installs what the upper-chain EVM tests need at run time, idempotently: the npm packages pinned
# in package-lock.json (Hardhat, whose `hardhat node` is the EVM dev node the tests start, and
# solc-js, which compiles the Registry contract). Fast when already installed.
# Node.js >= 18 and npm must be on PATH.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"
stamp=node_modules/.tickrate-installed
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ -x node_modules/.bin/hardhat ]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
touch "$stamp"
