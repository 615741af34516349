//! A sequencer's key file: its operator key (the sequencer's ID is that key's Ethereum address;
//! it signs block headers) and the seed of its BLS key (PBFT votes and batch certificates).
//!
//! The format is the one `shard-node keygen` writes (JSON: `version`, `operator_key`,
//! `bls_seed`, 32 bytes each in hex), so one tool reads both; the code is a small equivalent of
//! `shard_node::identity` because the sequencer does not depend on the shard node.

use std::{io::Write, path::Path};

use primitives::{
    AccountKey, NodeId,
    bls::{BlsPublicKey, BlsSecretKey},
};
use serde::{Deserialize, Serialize};

/// The only key file format so far.
const KEY_FILE_VERSION: u32 = 1;

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not a key file this build reads.
    #[error("key file {path} is malformed: {why}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    operator_key: String,
    bls_seed: String,
}

/// A sequencer's secret keys.
#[derive(Clone)]
pub struct SequencerKeys {
    operator: AccountKey,
    bls_seed: [u8; 32],
}

impl std::fmt::Debug for SequencerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("SequencerKeys")
            .field("id", &self.operator.address())
            .finish_non_exhaustive()
    }
}

impl SequencerKeys {
    /// Keys from 64 bytes of secret randomness (the caller draws them from the OS).
    pub fn from_entropy(operator: [u8; 32], bls_seed: [u8; 32]) -> Result<Self, KeyFileError> {
        let operator =
            AccountKey::from_bytes(operator).map_err(|error| KeyFileError::Malformed {
                path: String::new(),
                why: format!("operator key: {error}"),
            })?;
        Ok(SequencerKeys { operator, bls_seed })
    }

    /// The operator key.
    pub fn operator(&self) -> &AccountKey {
        &self.operator
    }

    /// The sequencer's ID.
    pub fn id(&self) -> NodeId {
        NodeId(self.operator.address())
    }

    /// The BLS key.
    pub fn bls(&self) -> BlsSecretKey {
        BlsSecretKey::from_seed(&self.bls_seed)
    }

    /// The BLS public key.
    pub fn bls_public(&self) -> BlsPublicKey {
        self.bls().public_key()
    }

    /// Writes the keys to a new file at `path`, readable by its owner only; an existing file is
    /// never overwritten.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = KeyFile {
            version: KEY_FILE_VERSION,
            operator_key: alloy_primitives::hex::encode_prefixed(self.operator.secret_bytes()),
            bls_seed: alloy_primitives::hex::encode_prefixed(self.bls_seed),
        };
        let text =
            serde_json::to_string_pretty(&file).map_err(|error| KeyFileError::Malformed {
                path: path.display().to_string(),
                why: error.to_string(),
            })?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut out = options.open(path).map_err(io)?;
        out.write_all(text.as_bytes()).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
        out.sync_all().map_err(io)
    }

    /// Reads the keys at `path`.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
            path: name.clone(),
            source,
        })?;
        let malformed = |why: String| KeyFileError::Malformed {
            path: name.clone(),
            why,
        };
        let file: KeyFile =
            serde_json::from_str(&text).map_err(|error| malformed(error.to_string()))?;
        if file.version != KEY_FILE_VERSION {
            return Err(malformed(format!("unknown version {}", file.version)));
        }
        let unhex = |field: &str, text: &str| {
            alloy_primitives::hex::decode_to_array::<_, 32>(text)
                .map_err(|error| malformed(format!("{field}: {error}")))
        };
        let operator = unhex("operator_key", &file.operator_key)?;
        let bls_seed = unhex("bls_seed", &file.bls_seed)?;
        SequencerKeys::from_entropy(operator, bls_seed).map_err(|error| match error {
            KeyFileError::Malformed { why, .. } => malformed(why),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_saved_key_file_loads_the_same_keys_is_owner_only_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sequencer.key");
        let keys = SequencerKeys::from_entropy([7; 32], [9; 32]).unwrap();
        keys.save(&path).unwrap();
        let loaded = SequencerKeys::load(&path).unwrap();
        assert_eq!(loaded.id(), keys.id());
        assert_eq!(loaded.bls_public(), keys.bls_public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = SequencerKeys::from_entropy([8; 32], [9; 32]).unwrap();
        assert!(matches!(other.save(&path), Err(KeyFileError::Io { .. })));
        assert_eq!(SequencerKeys::load(&path).unwrap().id(), keys.id());
        for text in [
            "not json",
            "{}",
            r#"{"version": 2, "operator_key": "0x07", "bls_seed": "0x09"}"#,
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(matches!(
                SequencerKeys::load(&path),
                Err(KeyFileError::Malformed { .. })
            ));
        }
        // Zero is not a secp256k1 secret key.
        let zero = format!(
            r#"{{"version": 1, "operator_key": "0x{}", "bls_seed": "0x{}"}}"#,
            "00".repeat(32),
            "09".repeat(32)
        );
        std::fs::write(&path, zero).unwrap();
        assert!(matches!(
            SequencerKeys::load(&path),
            Err(KeyFileError::Malformed { .. })
        ));
    }
}
