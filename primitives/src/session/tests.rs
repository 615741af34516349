use alloy_primitives::Bytes;
use proptest::prelude::*;

use super::*;
use crate::{
    keys::AccountKey,
    tx::{Authority, MoveSignature, RefusedMove, SignedTransaction, SpaceAccessList, TxError},
};

const CHAIN_ID: u64 = 7;
const GAME: Address = Address::repeat_byte(0x42);

fn scope() -> SessionScope {
    SessionScope {
        targets: vec![GAME],
        expires_after_batch: 100,
        moves: 3,
        value: 1_000,
    }
}

fn grant_move(account: &AccountKey, key: &SessionKey, nonce: u64) -> Transaction {
    let call = SessionCall::Grant {
        key: key.public_key(),
        scope: scope(),
    };
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to: SESSION_REGISTRY,
        value: U256::ZERO,
        data: Bytes::from(call.to_bytes()),
        gas_limit: 0,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([call.access(account.address())]),
    }
}

fn session_move(account: Address, key: &SessionKey, nonce: u64, value: u64) -> SignedTransaction {
    let cost = u128::from(value);
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to: GAME,
        value: U256::from(value),
        data: Bytes::from(vec![1, 2, 3]),
        gas_limit: 100_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            session_access(account, &key.public_key(), &GAME, cost),
            AccountAccess::read(GAME),
        ]),
    }
    .sign_with_session(key, account)
}

#[test]
fn a_grant_word_survives_its_storage_word_and_the_charge_spends_exactly_one_move() {
    let word = GrantWord {
        expires_after_batch: 9,
        moves_left: 2,
        value_left: u128::MAX - 5,
    };
    assert_eq!(GrantWord::from_word(word.to_word()), word);
    let after = DeclaredWrite::Delta(charge(7)).apply(word.to_word());
    assert_eq!(
        GrantWord::from_word(after),
        GrantWord {
            expires_after_batch: 9,
            moves_left: 1,
            value_left: u128::MAX - 12,
        }
    );
}

#[test]
fn a_session_move_acts_for_its_account() {
    let account = AccountKey::from_seed(1);
    let key = SessionKey::from_seed(1);
    let verified = session_move(account.address(), &key, 4, 10)
        .verify(CHAIN_ID)
        .expect("valid session move");
    assert_eq!(verified.sender, account.address());
    assert_eq!(verified.authority, Authority::Session(key.public_key()));
    assert_eq!(verified.hash, verified.signed.hash());
}

#[test]
fn a_session_signature_is_bound_to_the_move_and_the_account() {
    let account = AccountKey::from_seed(1);
    let key = SessionKey::from_seed(1);
    let mut tampered = session_move(account.address(), &key, 4, 10);
    tampered.tx.nonce = 5;
    assert_eq!(tampered.verify(CHAIN_ID), Err(TxError::BadSessionSignature));

    // The same signature presented for another account that granted the same key.
    let other = AccountKey::from_seed(2).address();
    let mut stolen = session_move(account.address(), &key, 4, 10);
    if let MoveSignature::Session { account, .. } = &mut stolen.signature {
        *account = other;
    }
    assert_eq!(stolen.verify(CHAIN_ID), Err(TxError::BadSessionSignature));
}

#[test]
fn a_session_move_must_declare_its_exact_charge_and_a_read_of_its_scope() {
    let account = AccountKey::from_seed(1).address();
    let key = SessionKey::from_seed(1);
    let honest = session_move(account, &key, 0, 10).tx;

    let mut undercharged = honest.clone();
    undercharged.access_list = SpaceAccessList::new([
        session_access(account, &key.public_key(), &GAME, 9),
        AccountAccess::read(GAME),
    ]);
    assert_eq!(
        undercharged
            .sign_with_session(&key, account)
            .verify(CHAIN_ID),
        Err(TxError::Session(SessionRefusal::BadDeclaration))
    );

    let mut scope_written = honest.clone();
    let mut entry = session_access(account, &key.public_key(), &GAME, 10);
    entry.storage[1].write = Some(DeclaredWrite::Exact(U256::from(1)));
    scope_written.access_list = SpaceAccessList::new([entry, AccountAccess::read(GAME)]);
    assert_eq!(
        scope_written
            .sign_with_session(&key, account)
            .verify(CHAIN_ID),
        Err(TxError::Session(SessionRefusal::BadDeclaration))
    );

    let mut registry_call = honest;
    registry_call.to = SESSION_REGISTRY;
    assert_eq!(
        registry_call
            .sign_with_session(&key, account)
            .verify(CHAIN_ID),
        Err(TxError::Session(SessionRefusal::NotAccountKey))
    );
}

#[test]
fn a_grant_declares_exactly_its_writes_and_needs_no_registry_state() {
    let account = AccountKey::from_seed(1);
    let key = SessionKey::from_seed(1);
    let verified = grant_move(&account, &key, 0)
        .sign(&account)
        .verify(CHAIN_ID)
        .expect("a well-formed grant");
    assert_eq!(verified.authority, Authority::Account);
    assert!(!verified.tx().access_list.contains(&SESSION_REGISTRY));

    let mut tampered = grant_move(&account, &key, 0);
    let mut entry = tampered.access_list.accounts()[0].clone();
    entry.storage[0].write = Some(DeclaredWrite::Exact(U256::MAX));
    tampered.access_list = SpaceAccessList::new([entry]);
    assert_eq!(
        tampered.sign(&account).verify(CHAIN_ID),
        Err(TxError::Session(SessionRefusal::BadDeclaration))
    );

    let mut with_value = grant_move(&account, &key, 0);
    with_value.value = U256::from(1);
    assert_eq!(
        with_value.sign(&account).verify(CHAIN_ID),
        Err(TxError::Session(SessionRefusal::NotAccountKey))
    );

    for targets in [vec![], vec![GAME, GAME], vec![SESSION_REGISTRY]] {
        let call = SessionCall::Grant {
            key: key.public_key(),
            scope: SessionScope { targets, ..scope() },
        };
        let mut bad = grant_move(&account, &key, 0);
        bad.data = Bytes::from(call.to_bytes());
        bad.access_list = SpaceAccessList::new([call.access(account.address())]);
        assert_eq!(
            bad.sign(&account).verify(CHAIN_ID),
            Err(TxError::Session(SessionRefusal::BadGrant))
        );
    }
}

#[test]
fn the_session_rule_refuses_each_way_a_key_can_overstep() {
    let live = GrantWord {
        expires_after_batch: 10,
        moves_left: 1,
        value_left: 50,
    }
    .to_word();
    let allowed = U256::from(1);
    assert_eq!(check_session(live, allowed, 50, 10), Ok(()));
    assert_eq!(
        check_session(U256::ZERO, allowed, 0, 1),
        Err(SessionRefusal::Unknown)
    );
    assert_eq!(
        check_session(REVOKED_GRANT, allowed, 0, 1),
        Err(SessionRefusal::Revoked)
    );
    assert_eq!(
        check_session(live, allowed, 0, 11),
        Err(SessionRefusal::Expired {
            expires_after_batch: 10
        })
    );
    assert_eq!(
        check_session(live, U256::ZERO, 0, 1),
        Err(SessionRefusal::OutOfScope)
    );
    assert_eq!(
        check_session(live, allowed, 51, 1),
        Err(SessionRefusal::ValueSpent)
    );
    let spent = DeclaredWrite::Delta(charge(0)).apply(live);
    assert_eq!(
        check_session(spent, allowed, 0, 1),
        Err(SessionRefusal::MovesSpent)
    );
}

#[test]
fn a_grant_or_revocation_is_checked_against_the_slot_it_writes() {
    let key = SessionKey::from_seed(3).public_key();
    let grant = SessionCall::Grant {
        key,
        scope: scope(),
    };
    let revoke = SessionCall::Revoke { key };
    assert_eq!(grant.check_against(U256::ZERO), Ok(()));
    assert_eq!(
        grant.check_against(REVOKED_GRANT),
        Err(SessionRefusal::AlreadyGranted)
    );
    assert_eq!(
        revoke.check_against(U256::ZERO),
        Err(SessionRefusal::Unknown)
    );
    assert_eq!(
        revoke.check_against(REVOKED_GRANT),
        Err(SessionRefusal::Revoked)
    );
    assert_eq!(revoke.check_against(U256::from(5)), Ok(()));
}

#[test]
fn batch_verification_finds_the_one_bad_signature_and_keeps_order() {
    let account = AccountKey::from_seed(1);
    let key = SessionKey::from_seed(1);
    let mut moves: Vec<SignedTransaction> = (0..20)
        .map(|nonce| session_move(account.address(), &key, nonce, 1))
        .collect();
    moves.insert(3, grant_move(&account, &key, 99).sign(&account));
    if let MoveSignature::Session { signature, .. } = &mut moves[7].signature {
        signature[0] ^= 1;
    }
    moves[9].tx.chain_id = CHAIN_ID + 1;
    let expected: Vec<_> = moves
        .iter()
        .cloned()
        .map(|signed| {
            let hash = signed.hash();
            signed
                .verify(CHAIN_ID)
                .map_err(|error| RefusedMove { hash, error })
        })
        .collect();
    let keys = SessionKeyCache::new(16);
    let results = SignedTransaction::verify_batch(moves, CHAIN_ID, &keys);
    assert_eq!(keys.len(), 1, "one key, parsed once");
    assert_eq!(results, expected);
    assert_eq!(
        results[7].as_ref().map_err(|refused| &refused.error),
        Err(&TxError::BadSessionSignature)
    );
    assert!(matches!(
        results[9],
        Err(RefusedMove {
            error: TxError::WrongChain { .. },
            ..
        })
    ));
    assert_eq!(results.iter().filter(|result| result.is_ok()).count(), 19);
    assert_eq!(
        results[3].as_ref().map(|verified| verified.authority),
        Ok(Authority::Account)
    );
}

#[test]
fn session_types_round_trip_through_the_codec() {
    let key = SessionKey::from_seed(5).public_key();
    for call in [
        SessionCall::Grant {
            key,
            scope: scope(),
        },
        SessionCall::Revoke { key },
    ] {
        assert_eq!(SessionCall::from_bytes(&call.to_bytes()), Ok(call));
    }
    for refusal in [
        SessionRefusal::Unknown,
        SessionRefusal::Expired {
            expires_after_batch: 4,
        },
        SessionRefusal::AlreadyGranted,
    ] {
        assert_eq!(SessionRefusal::from_bytes(&refusal.to_bytes()), Ok(refusal));
    }
    let signed = session_move(
        AccountKey::from_seed(1).address(),
        &SessionKey::from_seed(1),
        0,
        1,
    );
    assert_eq!(
        SignedTransaction::from_bytes(&signed.to_bytes()),
        Ok(signed)
    );
}

proptest! {
    #[test]
    fn random_bytes_never_panic_the_session_decoders(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = SessionCall::from_bytes(&bytes);
        let _ = SessionRefusal::from_bytes(&bytes);
        let _ = MoveSignature::from_bytes(&bytes);
    }
}
