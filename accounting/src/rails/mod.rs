//! The payout rails, one per [`PayoutMethod`].
//!
//! [`UpperChainRail`] pays in the upper chain's native asset: a value transfer from a treasury
//! key through [`upper_chain::EvmChain`], with the payout's id as the transaction's input so the
//! transfer names the payout on chain. [`RollupRail`] pays wallets with the `assets` feature by
//! one proven transfer each inside the asset rollup ([`rollup`]). A plan whose rail is not given
//! stops with [`crate::payout::PayoutError::NoRail`] before paying anything.

use std::sync::Arc;

use primitives::U256;
use upper_chain::EvmChain;

use crate::payout::{Payout, PayoutMethod, PayoutRail};

pub mod rollup;

pub use rollup::RollupRail;

/// Pays by value transfers on an EVM upper chain, from the chain adapter's sender key.
pub struct UpperChainRail {
    chain: Arc<EvmChain>,
}

impl UpperChainRail {
    /// A rail paying from `chain`'s sender (the treasury key).
    pub fn new(chain: Arc<EvmChain>) -> Self {
        UpperChainRail { chain }
    }
}

impl PayoutRail for UpperChainRail {
    fn method(&self) -> PayoutMethod {
        PayoutMethod::UpperChain
    }

    fn pay(&mut self, payout: &Payout) -> Result<String, String> {
        let memo = payout.id().to_vec();
        self.chain
            .transfer(payout.wallet, U256::from(payout.amount), memo)
            .map(|hash| hash.to_string())
            .map_err(|error| error.to_string())
    }
}
