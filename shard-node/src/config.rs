//! The operator's configuration file (TOML) and the wallet feature list.
//!
//! ```toml
//! key_file = "node.key"
//! endpoint = "203.0.113.7:7500"          # where other nodes reach this one
//! reward_wallet = "0x5e5e…"
//! wallet_features = "assets"             # comma-separated; WALLET_FEATURES overrides it
//!
//! [chain]
//! url = "tickrate://127.0.0.1:7300"      # or http(s)://… for the Registry contract on an EVM chain
//! chain_id = 31337
//! registry = "0x…"                       # EVM chains only
//! ```
//!
//! A relative `key_file` is read from the configuration file's folder.

use std::path::{Path, PathBuf};

use primitives::Address;
use serde::Deserialize;

/// Payout features this build knows (see the [operators] issue): `assets` means the wallet takes
/// payouts inside Tickrate's asset rollup. Others are carried through unchanged for software
/// that knows them.
pub const KNOWN_WALLET_FEATURES: &[&str] = &["assets"];

/// Longest feature name accepted.
const FEATURE_LEN_MAX: usize = 32;
/// Most features one registration may carry.
const FEATURES_MAX: usize = 16;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("configuration {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("configuration {path}: {why}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The wallet feature list is malformed.
    #[error("wallet features {list:?}: {why}")]
    WalletFeatures {
        /// The list as given.
        list: String,
        /// What is wrong.
        why: String,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    url: String,
    chain_id: u64,
    #[serde(default)]
    registry: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    key_file: PathBuf,
    endpoint: String,
    reward_wallet: String,
    #[serde(default)]
    wallet_features: String,
    chain: RawChain,
}

/// How the node reaches the upper chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSection {
    /// The chain URL.
    pub url: String,
    /// The chain id it must have.
    pub chain_id: u64,
    /// The `Registry` contract (EVM chains only).
    pub registry: Option<Address>,
}

/// A shard node's configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's key file.
    pub key_file: PathBuf,
    /// Where other nodes reach this one (`host:port`).
    pub endpoint: String,
    /// Where rewards are paid.
    pub reward_wallet: Address,
    /// The wallet's payout features, comma-separated as written.
    pub wallet_features: String,
    /// The upper chain.
    pub chain: ChainSection,
}

impl NodeConfig {
    /// Reads the configuration at `path`; a relative key file is taken from the file's folder.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: name.clone(),
            source,
        })?;
        let malformed = |why: String| ConfigError::Malformed {
            path: name.clone(),
            why,
        };
        let raw: RawConfig =
            toml::from_str(&text).map_err(|error| malformed(error.message().to_string()))?;
        let address = |field: &str, text: &str| {
            text.parse::<Address>()
                .map_err(|error| malformed(format!("{field}: {error}")))
        };
        let mut key_file = raw.key_file;
        if key_file.is_relative()
            && let Some(folder) = path.parent()
        {
            key_file = folder.join(key_file);
        }
        Ok(NodeConfig {
            key_file,
            endpoint: raw.endpoint,
            reward_wallet: address("reward_wallet", &raw.reward_wallet)?,
            wallet_features: raw.wallet_features,
            chain: ChainSection {
                url: raw.chain.url,
                chain_id: raw.chain.chain_id,
                registry: raw
                    .chain
                    .registry
                    .map(|registry| address("chain.registry", &registry))
                    .transpose()?,
            },
        })
    }
}

/// Parses a comma-separated wallet feature list: names of lowercase letters, digits, `-` and `_`,
/// no empty entry, no repeat. Unknown names are kept (see [`KNOWN_WALLET_FEATURES`]).
pub fn parse_wallet_features(list: &str) -> Result<Vec<String>, ConfigError> {
    let error = |why: String| ConfigError::WalletFeatures {
        list: list.to_string(),
        why,
    };
    if list.trim().is_empty() {
        return Ok(Vec::new());
    }
    let mut features: Vec<String> = Vec::new();
    for raw in list.split(',') {
        let feature = raw.trim();
        if feature.is_empty() {
            return Err(error("an empty entry".into()));
        }
        if feature.len() > FEATURE_LEN_MAX {
            return Err(error(format!(
                "{feature:?} is longer than {FEATURE_LEN_MAX} characters"
            )));
        }
        if !feature.bytes().all(|byte| {
            byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-' || byte == b'_'
        }) {
            return Err(error(format!(
                "{feature:?} has characters other than a-z, 0-9, '-' and '_'"
            )));
        }
        if features.iter().any(|seen| seen == feature) {
            return Err(error(format!("{feature:?} is listed twice")));
        }
        features.push(feature.to_string());
    }
    if features.len() > FEATURES_MAX {
        return Err(error(format!("more than {FEATURES_MAX} features")));
    }
    Ok(features)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn wallet_features_are_validated_and_unknown_ones_kept() {
        assert_eq!(parse_wallet_features("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_wallet_features("assets").unwrap(), ["assets"]);
        assert_eq!(
            parse_wallet_features(" assets , lightning-v2 ").unwrap(),
            ["assets", "lightning-v2"]
        );
        for bad in [
            "assets,",
            ",assets",
            "assets,,x",
            "Assets",
            "a b",
            "assets,assets",
            "é",
        ] {
            assert!(
                matches!(
                    parse_wallet_features(bad),
                    Err(ConfigError::WalletFeatures { .. })
                ),
                "{bad}"
            );
        }
        assert!(parse_wallet_features(&"x".repeat(FEATURE_LEN_MAX + 1)).is_err());
        let many: Vec<String> = (0..=FEATURES_MAX)
            .map(|index| format!("f{index}"))
            .collect();
        assert!(parse_wallet_features(&many.join(",")).is_err());
    }

    #[test]
    fn a_configuration_loads_with_its_key_file_beside_it_and_typos_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        let text = r#"
key_file = "node.key"
endpoint = "127.0.0.1:7500"
reward_wallet = "0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e"
wallet_features = "assets"

[chain]
url = "tickrate://127.0.0.1:7300"
chain_id = 4242
"#;
        std::fs::write(&path, text).unwrap();
        let config = NodeConfig::load(&path).unwrap();
        assert_eq!(config.key_file, dir.path().join("node.key"));
        assert_eq!(config.chain.chain_id, 4242);
        assert_eq!(config.chain.registry, None);
        assert_eq!(config.reward_wallet, Address::repeat_byte(0x5e));

        std::fs::write(&path, text.replace("chain_id", "chainid")).unwrap();
        assert!(matches!(
            NodeConfig::load(&path),
            Err(ConfigError::Malformed { .. })
        ));
        std::fs::write(&path, text.replace("0x5e5e", "0xzz5e")).unwrap();
        assert!(matches!(
            NodeConfig::load(&path),
            Err(ConfigError::Malformed { .. })
        ));
    }
}
