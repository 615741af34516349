//! An operator's key file, the one format `shard-node keygen` and `sequencer keygen` write and
//! their `run` read: the operator key (the node ID is that key's Ethereum address, so the
//! registry checks it by the signer) and the seed of the BLS key (group certificates, PBFT
//! votes). JSON: `version`, `operator_key`, `bls_seed`, 32 bytes each in hex; written once,
//! readable by its owner only, never overwritten.

use std::{io::Write, path::Path};

use serde::{Deserialize, Serialize};

use crate::{
    AccountKey, NodeId,
    bls::{BlsPublicKey, BlsSecretKey},
};

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
    /// 32 bytes, hex.
    operator_key: String,
    /// 32 bytes, hex.
    bls_seed: String,
}

/// An operator's secret keys: the operator key (the node ID is its Ethereum address) and the
/// seed of the BLS key.
#[derive(Clone)]
pub struct OperatorKeys {
    operator: AccountKey,
    bls_seed: [u8; 32],
}

impl std::fmt::Debug for OperatorKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("OperatorKeys")
            .field("node_id", &self.operator.address())
            .finish_non_exhaustive()
    }
}

impl OperatorKeys {
    /// Keys from 64 bytes of secret randomness (the caller draws them from the OS).
    pub fn from_entropy(operator: [u8; 32], bls_seed: [u8; 32]) -> Result<Self, KeyFileError> {
        let operator =
            AccountKey::from_bytes(operator).map_err(|error| KeyFileError::Malformed {
                path: String::new(),
                why: format!("operator key: {error}"),
            })?;
        Ok(OperatorKeys { operator, bls_seed })
    }

    /// The operator key.
    pub fn operator(&self) -> &AccountKey {
        &self.operator
    }

    /// The BLS key.
    pub fn bls(&self) -> BlsSecretKey {
        BlsSecretKey::from_seed(&self.bls_seed)
    }

    /// The node ID: the operator key's address.
    pub fn id(&self) -> NodeId {
        NodeId(self.operator.address())
    }

    /// The BLS public key.
    pub fn bls_public(&self) -> BlsPublicKey {
        self.bls().public_key()
    }

    /// Writes the keys to a new file at `path`, readable by its owner only. An existing file is
    /// never overwritten: losing a registered node's key loses the node.
    pub fn save(&self, path: &Path) -> Result<(), KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = KeyFile {
            version: KEY_FILE_VERSION,
            operator_key: hex(&self.operator.secret_bytes()),
            bls_seed: hex(&self.bls_seed),
        };
        let text =
            serde_json::to_string_pretty(&file).map_err(|error| KeyFileError::Malformed {
                path: path.display().to_string(),
                why: error.to_string(),
            })?;
        write_new_owner_only(path, &text).map_err(io)
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
        let operator =
            unhex32(&file.operator_key).map_err(|why| malformed(format!("operator_key: {why}")))?;
        let bls_seed =
            unhex32(&file.bls_seed).map_err(|why| malformed(format!("bls_seed: {why}")))?;
        OperatorKeys::from_entropy(operator, bls_seed).map_err(|error| match error {
            KeyFileError::Malformed { why, .. } => malformed(why),
            other => other,
        })
    }
}

/// Writes `text` and a newline to a new file at `path` that only its owner may read, and syncs
/// it to disk. An existing file is an error, never overwritten: a key file is written once.
pub fn write_new_owner_only(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut out = options.open(path)?;
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.sync_all()
}

fn hex(bytes: &[u8]) -> String {
    alloy_primitives::hex::encode_prefixed(bytes)
}

fn unhex32(text: &str) -> Result<[u8; 32], String> {
    alloy_primitives::hex::decode_to_array(text).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn keys() -> OperatorKeys {
        OperatorKeys::from_entropy([7; 32], [9; 32]).unwrap()
    }

    #[test]
    fn a_saved_key_file_loads_the_same_node_and_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        keys().save(&path).unwrap();
        let loaded = OperatorKeys::load(&path).unwrap();
        assert_eq!(loaded.id(), keys().id());
        assert_eq!(loaded.bls().public_key(), keys().bls().public_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let other = OperatorKeys::from_entropy([8; 32], [9; 32]).unwrap();
        assert!(matches!(other.save(&path), Err(KeyFileError::Io { .. })));
        assert_eq!(OperatorKeys::load(&path).unwrap().id(), keys().id());
    }

    #[test]
    fn malformed_key_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::json!({
            "version": 1,
            "operator_key": hex(&[7; 32]),
            "bls_seed": hex(&[9; 32]),
        });
        let mut cases = vec![
            "not json".to_string(),
            "{}".to_string(),
            serde_json::json!({"version": 2, "operator_key": hex(&[7; 32]), "bls_seed": hex(&[9; 32])}).to_string(),
            serde_json::json!({"version": 1, "operator_key": "0x12", "bls_seed": hex(&[9; 32])}).to_string(),
            serde_json::json!({"version": 1, "operator_key": hex(&[7; 32]), "bls_seed": "zz".repeat(32)}).to_string(),
            // Zero is not a valid secp256k1 secret key.
            serde_json::json!({"version": 1, "operator_key": hex(&[0; 32]), "bls_seed": hex(&[9; 32])}).to_string(),
        ];
        let mut extra = good.clone();
        extra["more"] = serde_json::json!(1);
        cases.push(extra.to_string());
        for (index, text) in cases.iter().enumerate() {
            let path = dir.path().join(format!("bad{index}.key"));
            std::fs::write(&path, text).unwrap();
            assert!(
                matches!(
                    OperatorKeys::load(&path),
                    Err(KeyFileError::Malformed { .. })
                ),
                "case {index}: {text}"
            );
        }
        let path = dir.path().join("good.key");
        std::fs::write(&path, good.to_string()).unwrap();
        assert!(OperatorKeys::load(&path).is_ok());
        assert!(matches!(
            OperatorKeys::load(&dir.path().join("missing.key")),
            Err(KeyFileError::Io { .. })
        ));
    }
}
