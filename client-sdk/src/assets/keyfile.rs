//! The asset wallet's key file: the seed of the asset spending key (Baby Jubjub signing key,
//! nullifier key and viewing key all derive from it, `assets::keys`) and the upper-chain account
//! key that signs the wallet's transactions to the bridge and the rollup (deposits, proven
//! transfers, claims) and pays their gas. JSON: `version`, `asset_seed`, `account_key`, 32 bytes
//! each in hex; written once, readable by its owner only, never overwritten, as
//! `primitives::keyfile` writes an operator's keys.

use std::path::Path;

use alloy_primitives::hex;
use assets::keys::SpendingKey;
use primitives::AccountKey;
use serde::{Deserialize, Serialize};

/// The only asset key file format so far.
const ASSET_KEY_FILE_VERSION: u32 = 1;

/// Why an asset key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum AssetKeyFileError {
    /// The file could not be read or written (an existing file is never overwritten).
    #[error("asset key file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The IO error.
        source: std::io::Error,
    },
    /// The file is not an asset key file this build reads.
    #[error("asset key file {path} is malformed: {why}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// Others than the owner may read the file.
    #[error("asset key file {path} is readable by others (mode {mode:o}); chmod 600 it")]
    TooOpen {
        /// The file.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    /// 32 bytes, hex.
    asset_seed: String,
    /// 32 bytes, hex.
    account_key: String,
}

/// A wallet's secrets: the asset seed and the upper-chain account key.
#[derive(Clone)]
pub struct AssetKeys {
    asset_seed: [u8; 32],
    account: AccountKey,
}

impl std::fmt::Debug for AssetKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.debug_struct("AssetKeys")
            .field("account", &self.account.address())
            .finish_non_exhaustive()
    }
}

impl AssetKeys {
    /// Fresh keys from the operating system's randomness; with `account`, that upper-chain
    /// account instead of a new one (an account already holding ether and tokens).
    pub fn generate(account: Option<AccountKey>) -> Self {
        use rand::RngCore;
        let mut rng = rand::rng();
        let mut asset_seed = [0u8; 32];
        rng.fill_bytes(&mut asset_seed);
        let account = account.unwrap_or_else(|| {
            loop {
                let mut secret = [0u8; 32];
                rng.fill_bytes(&mut secret);
                // All but a negligible share of 32-byte strings are valid secp256k1 secrets.
                if let Ok(key) = AccountKey::from_bytes(secret) {
                    break key;
                }
            }
        });
        Self {
            asset_seed,
            account,
        }
    }

    /// Keys from known secrets (tests, imports).
    pub fn from_parts(asset_seed: [u8; 32], account: AccountKey) -> Self {
        Self {
            asset_seed,
            account,
        }
    }

    /// The asset spending key.
    pub fn spending_key(&self) -> SpendingKey {
        SpendingKey::from_seed(self.asset_seed)
    }

    /// The upper-chain account key.
    pub fn account(&self) -> &AccountKey {
        &self.account
    }

    /// Writes the keys to a new file at `path`, readable by its owner only. An existing file is
    /// never overwritten: losing an asset key loses the outputs it owns.
    pub fn save(&self, path: &Path) -> Result<(), AssetKeyFileError> {
        let io = |source| AssetKeyFileError::Io {
            path: path.display().to_string(),
            source,
        };
        let file = KeyFile {
            version: ASSET_KEY_FILE_VERSION,
            asset_seed: hex::encode(self.asset_seed),
            account_key: hex::encode(self.account.secret_bytes()),
        };
        let text =
            serde_json::to_string_pretty(&file).map_err(|error| AssetKeyFileError::Malformed {
                path: path.display().to_string(),
                why: error.to_string(),
            })?;
        primitives::keyfile::write_new_owner_only(path, &text).map_err(io)
    }

    /// Reads the keys at `path`; refuses a file that others than its owner may read.
    pub fn load(path: &Path) -> Result<Self, AssetKeyFileError> {
        let name = path.display().to_string();
        let io = |source| AssetKeyFileError::Io {
            path: name.clone(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(io)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(AssetKeyFileError::TooOpen { path: name, mode });
            }
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        let malformed = |why: String| AssetKeyFileError::Malformed {
            path: name.clone(),
            why,
        };
        let file: KeyFile =
            serde_json::from_str(&text).map_err(|error| malformed(error.to_string()))?;
        if file.version != ASSET_KEY_FILE_VERSION {
            return Err(malformed(format!("unknown version {}", file.version)));
        }
        let asset_seed =
            unhex32(&file.asset_seed).map_err(|why| malformed(format!("asset_seed: {why}")))?;
        let account = unhex32(&file.account_key)
            .and_then(|bytes| AccountKey::from_bytes(bytes).map_err(|error| error.to_string()))
            .map_err(|why| malformed(format!("account_key: {why}")))?;
        Ok(Self {
            asset_seed,
            account,
        })
    }
}

/// 32 bytes from hex (an optional `0x` prefix allowed).
pub fn unhex32(text: &str) -> Result<[u8; 32], String> {
    let bytes = hex::decode(text.trim()).map_err(|error| error.to_string())?;
    bytes
        .try_into()
        .map_err(|bytes: Vec<u8>| format!("{} bytes, expected 32", bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_owner_only_and_are_never_overwritten() {
        let directory = tempfile::tempdir().expect("temp dir");
        let path = directory.path().join("wallet.key");
        let keys = AssetKeys::generate(None);
        keys.save(&path).expect("saved");
        let loaded = AssetKeys::load(&path).expect("loaded");
        assert_eq!(
            loaded.spending_key().address(),
            keys.spending_key().address()
        );
        assert_eq!(loaded.account().address(), keys.account().address());
        // Two generated wallets differ.
        assert_ne!(
            AssetKeys::generate(None).spending_key().address(),
            keys.spending_key().address()
        );
        assert!(matches!(
            AssetKeys::generate(None).save(&path),
            Err(AssetKeyFileError::Io { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            assert!(matches!(
                AssetKeys::load(&path),
                Err(AssetKeyFileError::TooOpen { mode: 0o644, .. })
            ));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        // Still the same keys: the refused save changed nothing.
        assert_eq!(
            AssetKeys::load(&path).expect("loaded").account().address(),
            keys.account().address()
        );
        let broken = directory.path().join("broken.key");
        std::fs::write(&broken, "{\"version\": 1}").expect("written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o600))
                .expect("chmod");
        }
        assert!(matches!(
            AssetKeys::load(&broken),
            Err(AssetKeyFileError::Malformed { .. })
        ));
    }
}
