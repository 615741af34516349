//! Account keys: secp256k1, Ethereum-compatible.
//!
//! A signature is 65 bytes (r, s, recovery id) over a 32-byte prehash; the signer's address is
//! recovered from it, never sent. Recovery uses libsecp256k1 (the `secp256k1` crate), about five
//! times faster here than pure-Rust `k256`.

use std::fmt;

use alloy_primitives::{Address, B256, keccak256};
use secp256k1::{
    Message, SECP256K1, SecretKey,
    ecdsa::{RecoverableSignature, RecoveryId},
};

use crate::codec::{Decode, DecodeError, Decoder, Encode};

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The recovery id byte is not 0 or 1 (or 27/28).
    #[error("invalid recovery id {0}")]
    InvalidRecoveryId(u8),
    /// r or s is out of range.
    #[error("malformed signature")]
    Malformed,
    /// No public key recovers from this signature and message.
    #[error("signature does not recover to a key")]
    Unrecoverable,
    /// The secret key bytes are not a valid scalar.
    #[error("invalid secret key")]
    InvalidSecretKey,
}

/// A recoverable secp256k1 signature: `r || s || v`, `v` in {0, 1}.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 65]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Signature(0x{}..)",
            alloy_primitives::hex::encode(&self.0[..8])
        )
    }
}

impl Signature {
    /// Recovers the address that signed `prehash`.
    pub fn recover_address(&self, prehash: &B256) -> Result<Address, SignatureError> {
        let v = match self.0[64] {
            v @ (0 | 1) => v,
            v @ (27 | 28) => v - 27,
            v => return Err(SignatureError::InvalidRecoveryId(v)),
        };
        let recovery_id =
            RecoveryId::try_from(i32::from(v)).map_err(|_| SignatureError::InvalidRecoveryId(v))?;
        let signature = RecoverableSignature::from_compact(&self.0[..64], recovery_id)
            .map_err(|_| SignatureError::Malformed)?;
        let message = Message::from_digest(prehash.0);
        let public_key = SECP256K1
            .recover_ecdsa(message, &signature)
            .map_err(|_| SignatureError::Unrecoverable)?;
        Ok(address_of_uncompressed(
            &public_key.serialize_uncompressed(),
        ))
    }
}

impl Encode for Signature {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.0);
    }
}

impl Decode for Signature {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(Signature(decoder.array::<65>()?))
    }
}

fn address_of_uncompressed(public_key: &[u8; 65]) -> Address {
    Address::from_slice(&keccak256(&public_key[1..])[12..])
}

/// A secp256k1 account key: a player's account, an operator's node key.
#[derive(Clone)]
pub struct AccountKey {
    secret: SecretKey,
    address: Address,
}

impl fmt::Debug for AccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountKey({})", self.address)
    }
}

impl AccountKey {
    /// A key from its 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<Self, SignatureError> {
        let secret =
            SecretKey::from_byte_array(bytes).map_err(|_| SignatureError::InvalidSecretKey)?;
        let public_key = secret.public_key(SECP256K1);
        let address = address_of_uncompressed(&public_key.serialize_uncompressed());
        Ok(AccountKey { secret, address })
    }

    /// A deterministic key derived from a seed (devnet players, tests, simulations).
    pub fn from_seed(seed: u64) -> Self {
        let mut counter = 0u64;
        loop {
            let mut material = [0u8; 16];
            material[..8].copy_from_slice(&seed.to_be_bytes());
            material[8..].copy_from_slice(&counter.to_be_bytes());
            let bytes = *blake3::hash(&material).as_bytes();
            if let Ok(key) = Self::from_bytes(bytes) {
                return key;
            }
            counter += 1; // A hash above the curve order: astronomically rare; try the next.
        }
    }

    /// The secret bytes, for writing a key file.
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.secret_bytes()
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte prehash.
    pub fn sign_prehash(&self, prehash: &B256) -> Signature {
        let message = Message::from_digest(prehash.0);
        let (recovery_id, compact) = SECP256K1
            .sign_ecdsa_recoverable(message, &self.secret)
            .serialize_compact();
        let mut bytes = [0u8; 65];
        bytes[..64].copy_from_slice(&compact);
        bytes[64] = i32::from(recovery_id) as u8;
        Signature(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_recover_gives_the_signer() {
        let key = AccountKey::from_seed(7);
        let prehash = keccak256(b"move");
        let signature = key.sign_prehash(&prehash);
        assert_eq!(signature.recover_address(&prehash), Ok(key.address()));
        let other = keccak256(b"other move");
        assert_ne!(signature.recover_address(&other), Ok(key.address()));
    }

    #[test]
    fn matches_a_known_ethereum_address() {
        // The well-known first Hardhat/Anvil development account.
        let secret = alloy_primitives::hex::decode(
            "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        )
        .expect("valid hex");
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&secret);
        let key = AccountKey::from_bytes(bytes).expect("valid key");
        assert_eq!(
            key.address().to_string().to_lowercase(),
            "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266"
        );
    }

    #[test]
    fn bad_recovery_id_is_typed() {
        let mut signature = AccountKey::from_seed(1).sign_prehash(&B256::ZERO);
        signature.0[64] = 9;
        assert_eq!(
            signature.recover_address(&B256::ZERO),
            Err(SignatureError::InvalidRecoveryId(9))
        );
    }
}
