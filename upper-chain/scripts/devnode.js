// Starts the Hardhat EVM dev node on 127.0.0.1:<port> (default 8545), chain id 31337, Prague.
// Usage: node devnode.js [port] [--exit-with-stdin]
// With --exit-with-stdin it exits when its stdin closes, so a test that spawns it with a piped
// stdin never leaves it behind, however the test ends.
"use strict";
process.chdir(__dirname);
const args = process.argv.slice(2);
const port = Number(args.find((a) => /^\d+$/.test(a)) || 8545);
if (args.includes("--exit-with-stdin")) {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("close", () => process.exit(0));
  process.stdin.resume();
}
const hre = require("hardhat");
hre.run("node", { hostname: "127.0.0.1", port }).catch((error) => {
  console.error(error);
  process.exit(1);
});
