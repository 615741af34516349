//! One entry point from configuration to a chain: the URL picks the implementation.
//!
//! | URL | chain |
//! | --- | --- |
//! | `tickrate://host:port` | an embedded chain served by a [`crate::ChainServer`] ([`crate::RemoteChain`]) |
//! | `http://…`, `https://…` | the `Registry` contract on an EVM JSON-RPC endpoint (`EvmChain`, feature `evm`) |
//!
//! Anything else is [`ChainError::BadUrl`]; a chain that answers with another chain id is
//! [`ChainError::WrongChainId`]; an endpoint that does not answer is
//! [`ChainError::Unreachable`]. Nothing falls back to another chain.

use std::sync::Arc;

use primitives::{AccountKey, Address};

use crate::{ChainError, RemoteChain, UpperChain};

/// Which implementation a chain URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChainUrl {
    /// A served embedded chain at `host:port`.
    Served(String),
    /// An EVM JSON-RPC endpoint (the whole URL).
    Evm(String),
}

impl ChainUrl {
    /// Parses a chain URL.
    pub fn parse(url: &str) -> Result<Self, ChainError> {
        let bad = || ChainError::BadUrl(url.to_string());
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        match scheme.to_ascii_lowercase().as_str() {
            "tickrate" => {
                let address = rest.trim_end_matches('/');
                // host:port, nothing else (no path, no credentials).
                let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
                if host.is_empty() || address.contains(['/', '@', '?', '#']) {
                    return Err(bad());
                }
                port.parse::<u16>().map_err(|_| bad())?;
                Ok(ChainUrl::Served(address.to_string()))
            }
            "http" | "https" if !rest.is_empty() => Ok(ChainUrl::Evm(url.to_string())),
            _ => Err(bad()),
        }
    }
}

/// What a binary reads from its configuration to reach the upper chain.
#[derive(Clone, Debug)]
pub struct ChainConfig {
    /// The chain URL (see the module doc).
    pub url: String,
    /// The chain id the chain must have.
    pub chain_id: u64,
    /// The `Registry` contract's address (EVM chains only).
    pub registry: Option<Address>,
    /// The key that sends transactions (EVM chains only; usually the operator's node key).
    pub sender: Option<AccountKey>,
}

impl ChainConfig {
    /// A configuration for `url` and `chain_id`, without the EVM settings.
    pub fn new(url: impl Into<String>, chain_id: u64) -> Self {
        ChainConfig {
            url: url.into(),
            chain_id,
            registry: None,
            sender: None,
        }
    }
}

/// Connects to the chain `config` names and checks its chain id.
pub fn connect(config: &ChainConfig) -> Result<Arc<dyn UpperChain>, ChainError> {
    match ChainUrl::parse(&config.url)? {
        ChainUrl::Served(address) => Ok(Arc::new(RemoteChain::connect(&address, config.chain_id)?)),
        ChainUrl::Evm(url) => connect_evm(url, config),
    }
}

#[cfg(feature = "evm")]
fn connect_evm(url: String, config: &ChainConfig) -> Result<Arc<dyn UpperChain>, ChainError> {
    let registry = config.registry.ok_or_else(|| {
        ChainError::Config("an EVM chain needs the Registry contract's address".into())
    })?;
    let sender = config.sender.clone().ok_or_else(|| {
        ChainError::Config("an EVM chain needs a key to send transactions with".into())
    })?;
    let evm = crate::EvmConfig::new(url, config.chain_id, registry, sender);
    Ok(Arc::new(crate::EvmChain::connect(evm)?))
}

#[cfg(not(feature = "evm"))]
fn connect_evm(_url: String, _config: &ChainConfig) -> Result<Arc<dyn UpperChain>, ChainError> {
    Err(ChainError::Config(
        "EVM chains need upper-chain's `evm` feature, which this build lacks".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_one_implementation_or_none() {
        assert_eq!(
            ChainUrl::parse("tickrate://127.0.0.1:7300"),
            Ok(ChainUrl::Served("127.0.0.1:7300".into()))
        );
        assert_eq!(
            ChainUrl::parse("tickrate://chain.devnet:7300/"),
            Ok(ChainUrl::Served("chain.devnet:7300".into()))
        );
        assert_eq!(
            ChainUrl::parse("https://rpc.example:8545/key"),
            Ok(ChainUrl::Evm("https://rpc.example:8545/key".into()))
        );
        for bad in [
            "",
            "127.0.0.1:8545",
            "ws://127.0.0.1:8546",
            "embedded:",
            "tickrate://127.0.0.1",
            "tickrate://:7300",
            "tickrate://host:port",
            "tickrate://host:99999",
            "tickrate://user@host:1",
            "http://",
        ] {
            assert_eq!(
                ChainUrl::parse(bad),
                Err(ChainError::BadUrl(bad.into())),
                "{bad}"
            );
        }
    }
}
