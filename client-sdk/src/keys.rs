//! Keys a game signs moves with: the player's account key (secp256k1), or a session key
//! (ed25519) the account key granted a scope to, so a game never prompts a wallet mid-play.
//!
//! The key types are `primitives`' own, re-exported: the SDK adds only the choice between them
//! and the grant and revocation moves, built as the sequencer checks them.

pub use primitives::{AccountKey, SessionKey, SessionPublicKey, SessionScope};
use primitives::{Address, SignedTransaction, Transaction, session};

/// Why a move could not be signed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// A session move's value and fees exceed what a grant can budget (2^128 wei).
    #[error("value and fees exceed a session budget")]
    BudgetOverflow,
}

/// What signs an account's moves.
#[derive(Clone, Debug)]
pub enum Signer {
    /// The account's own key.
    Account(AccountKey),
    /// A session key acting for `account` within the scope the account granted it.
    Session {
        /// The session key.
        key: SessionKey,
        /// The account it acts for (the move's sender).
        account: Address,
    },
}

impl Signer {
    /// The account whose moves this signs (whose nonces they take).
    pub fn account(&self) -> Address {
        match self {
            Signer::Account(key) => key.address(),
            Signer::Session { account, .. } => *account,
        }
    }

    /// Signs `tx` as it is; a session key first adds to its list what a session move must
    /// declare (the grant it charges), so the caller builds the same list either way.
    pub fn sign(&self, tx: Transaction) -> Result<SignedTransaction, SignError> {
        match self {
            Signer::Account(key) => Ok(tx.sign(key)),
            Signer::Session { key, account } => {
                let tx = session::with_session_access(tx, *account, &key.public_key())
                    .ok_or(SignError::BudgetOverflow)?;
                Ok(tx.sign_with_session(key, *account))
            }
        }
    }
}

/// The move by which `account` grants the session key `key` the `scope` (to sign with the
/// account key; its nonce is set when it is sent).
pub fn grant(
    chain_id: u64,
    account: Address,
    key: SessionPublicKey,
    scope: SessionScope,
) -> Transaction {
    session::grant_transaction(chain_id, 0, account, key, scope)
}

/// The move by which `account` revokes the session key `key` for good (to sign with the
/// account key).
pub fn revoke(chain_id: u64, account: Address, key: SessionPublicKey) -> Transaction {
    session::revoke_transaction(chain_id, 0, account, key)
}

#[cfg(test)]
mod tests {
    use primitives::{AccountAccess, Bytes, U256};

    use super::*;

    fn call(sender: Address, to: Address) -> Transaction {
        Transaction {
            chain_id: 7,
            nonce: 3,
            to,
            value: U256::ZERO,
            data: Bytes::new(),
            gas_limit: 50_000,
            gas_price: 0,
            sponsor: None,
            access_list: primitives::SpaceAccessList::new([
                AccountAccess::read(sender),
                AccountAccess::read(to),
            ]),
        }
    }

    #[test]
    fn both_signers_act_for_the_account_and_verify() {
        let player = AccountKey::from_seed(11);
        let target = Address::repeat_byte(0x42);
        let by_account = Signer::Account(player.clone());
        let by_session = Signer::Session {
            key: SessionKey::from_seed(11),
            account: player.address(),
        };
        assert_eq!(by_account.account(), by_session.account());
        for signer in [by_account, by_session] {
            let signed = signer
                .sign(call(player.address(), target))
                .expect("costs nothing");
            let verified = signed.verify(7).expect("verifies");
            assert_eq!(verified.sender, player.address());
            assert_eq!(verified.tx().nonce, 3);
        }
    }

    #[test]
    fn a_session_move_beyond_any_budget_is_an_error_not_a_panic() {
        let player = AccountKey::from_seed(12);
        let signer = Signer::Session {
            key: SessionKey::from_seed(12),
            account: player.address(),
        };
        let mut tx = call(player.address(), Address::repeat_byte(0x43));
        tx.value = U256::MAX;
        assert_eq!(signer.sign(tx).err(), Some(SignError::BudgetOverflow));
    }
}
