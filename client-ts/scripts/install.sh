#!/bin/sh
# Installs the TypeScript SDK's npm packages (viem, ws, TypeScript), pinned in package-lock.json,
# idempotently: fast when already installed. Node.js >= 20 and npm must be on PATH.
set -eu
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
stamp=node_modules/.tickrate-installed
if [ -f "$stamp" ] && [ "$stamp" -nt package-lock.json ] && [ -x node_modules/.bin/tsc ]; then
    exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
touch "$stamp"
