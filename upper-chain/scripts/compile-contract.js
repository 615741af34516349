// Compiles contracts/Registry.sol with solc-js (the `solc` npm package pinned in package.json)
// and writes contracts/Registry.abi.json and contracts/Registry.bin (creation bytecode, hex).
// Usage: node compile-contract.js [--check]   (--check: fail if the committed output differs)
"use strict";
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const contracts = path.join(__dirname, "..", "contracts");
const source = fs.readFileSync(path.join(contracts, "Registry.sol"), "utf8");
const input = {
  language: "Solidity",
  sources: { "Registry.sol": { content: source } },
  settings: {
    evmVersion: "prague",
    viaIR: true,
    optimizer: { enabled: true, runs: 200 },
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: { "Registry.sol": { Registry: ["abi", "evm.bytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length > 0) process.exit(1);
const registry = output.contracts["Registry.sol"].Registry;
const abi = JSON.stringify(registry.abi, null, 2) + "\n";
const bin = registry.evm.bytecode.object + "\n";
const abiPath = path.join(contracts, "Registry.abi.json");
const binPath = path.join(contracts, "Registry.bin");
if (process.argv.includes("--check")) {
  const same = (p, text) => fs.existsSync(p) && fs.readFileSync(p, "utf8") === text;
  if (!same(abiPath, abi) || !same(binPath, bin)) {
    console.error("contracts/Registry.abi.json or Registry.bin is stale: run scripts/compile-contract.sh");
    process.exit(1);
  }
  console.log("Registry ABI and bytecode are up to date (solc " + solc.version() + ")");
} else {
  fs.writeFileSync(abiPath, abi);
  fs.writeFileSync(binPath, bin);
  console.log("wrote Registry.abi.json and Registry.bin with solc " + solc.version());
}
