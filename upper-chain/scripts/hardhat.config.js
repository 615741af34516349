// Hardhat is used here only as the EVM dev node (`hardhat node`) the upper-chain tests run
// against. Prague enables the EIP-2537 BLS12-381 precompiles the Registry contract verifies
// certificates with. The funded accounts have the private keys 1..=32 (test keys only).
const accounts = [];
for (let i = 1; i <= 32; i++) {
  accounts.push({
    privateKey: "0x" + i.toString(16).padStart(64, "0"),
    balance: "1000000000000000000000000",
  });
}
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      hardfork: "prague",
      accounts,
      mining: { auto: true },
    },
  },
};
