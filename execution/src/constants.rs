//! Fixed parameters of execution. Every group must use the same ones, or they disagree on roots.

use alloy_primitives::Address;
use revm::primitives::hardfork::SpecId;

/// The EVM rules moves run under. Pinned rather than revm's default, which moves with revm
/// releases and would silently change gas costs and precompiles under a dependency bump.
pub const EVM_SPEC: SpecId = SpecId::OSAKA;

/// The block beneficiary (coinbase) revm credits fees to. Sequencers never execute, so no one
/// earns fees through execution; the zero address marks that.
pub const BLOCK_BENEFICIARY: Address = Address::ZERO;
