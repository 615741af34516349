#!/bin/sh
# Starts the EVM dev node (Hardhat, chain id 31337, Prague) in the foreground on 127.0.0.1:${1:-8545}.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/install-devnode.sh"
exec node "$here/devnode.js" "${1:-8545}"
