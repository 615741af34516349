#!/bin/sh
# Compiles contracts/Registry.sol with solc-js from npm into contracts/Registry.{abi.json,bin}.
# Pass --check to only verify the committed ABI/bytecode are up to date.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
"$here/install-devnode.sh"
# The asset rollup's contracts (AssetRollup, AssetBridge and the test tokens): compile-assets.js.
node "$here/compile-assets.js" "$@"
exec node "$here/compile-contract.js" "$@"
