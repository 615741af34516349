use std::time::Duration;

use primitives::{
    AccountAccess, AccountKey, Bytes, Encode, SessionKey, SessionScope, SpaceAccessList,
    Transaction, U256,
    api::ReplacementRefusal,
    session::{REVOKED_GRANT, session_access},
};

use super::*;

const CHAIN_ID: u64 = 9;
const GAME: Address = Address::repeat_byte(0x42);
const OTHER_GAME: Address = Address::repeat_byte(0x43);
const SPONSOR: Address = Address::repeat_byte(0x55);

fn at(millis: u64) -> Instant {
    Instant::ZERO + Duration::from_millis(millis)
}

fn generous() -> RateLimit {
    RateLimit {
        per_second: 1_000_000,
        burst: 1_000_000,
    }
}

fn account_move(key: &AccountKey, nonce: u64, to: Address) -> Transaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to,
        value: U256::ZERO,
        data: Bytes::from(vec![7]),
        gas_limit: 50_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(key.address()),
            AccountAccess::read(to),
        ]),
    }
}

fn grant(key: &AccountKey, session: &SessionKey, nonce: u64, moves: u64) -> VerifiedTransaction {
    let call = SessionCall::Grant {
        key: session.public_key(),
        scope: SessionScope {
            targets: vec![GAME],
            expires_after_batch: 10,
            moves,
            value: 0,
        },
    };
    revoke_or_grant(key, nonce, call)
}

fn revoke_or_grant(key: &AccountKey, nonce: u64, call: SessionCall) -> VerifiedTransaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to: SESSION_REGISTRY,
        value: U256::ZERO,
        data: Bytes::from(call.to_bytes()),
        gas_limit: 0,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([call.access(key.address())]),
    }
    .sign(key)
    .verify(CHAIN_ID)
    .expect("a well-formed grant")
}

fn session_move(
    account: &AccountKey,
    session: &SessionKey,
    nonce: u64,
    to: Address,
) -> VerifiedTransaction {
    let mut tx = account_move(account, nonce, to);
    tx.access_list = SpaceAccessList::new([
        session_access(account.address(), &session.public_key(), &to, 0),
        AccountAccess::read(to),
    ]);
    tx.sign_with_session(session, account.address())
        .verify(CHAIN_ID)
        .expect("a well-formed session move")
}

/// Admits like the core does: on success the move's writes go into pending state.
fn admit(
    admission: &mut Admission,
    pending: &mut PendingState,
    verified: &VerifiedTransaction,
    batch: u64,
    now: Instant,
) -> Result<(), Refusal> {
    admission.admit(verified, pending, batch, true, now)?;
    pending.admit(verified);
    Ok(())
}

#[test]
fn a_token_bucket_allows_its_burst_then_its_rate() {
    let limit = RateLimit {
        per_second: 10,
        burst: 3,
    };
    let mut bucket = TokenBucket::new(limit, at(0));
    assert!((0..3).all(|_| bucket.try_take(at(0))));
    assert!(!bucket.try_take(at(0)));
    assert!(
        !bucket.try_take(at(99)),
        "a tenth of a second refills one token"
    );
    assert!(bucket.try_take(at(100)));
    assert!(!bucket.try_take(at(100)));
    assert!(bucket.is_full(at(10_000)));
    assert!((0..3).all(|_| bucket.try_take(at(10_000))));
    assert!(!bucket.try_take(at(10_000)), "never more than the burst");
}

#[test]
fn a_session_key_acts_once_granted_and_only_within_its_scope_and_budget() {
    let account = AccountKey::from_seed(1);
    let session = SessionKey::from_seed(1);
    let mut admission = Admission::new(generous(), Vec::new());
    let mut pending = PendingState::new();

    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &session_move(&account, &session, 0, GAME),
            1,
            at(0)
        ),
        Err(Refusal::Session(SessionRefusal::Unknown)),
        "no grant yet"
    );
    // The grant takes effect in pending state the moment it is acked.
    admit(
        &mut admission,
        &mut pending,
        &grant(&account, &session, 0, 2),
        1,
        at(0),
    )
    .expect("grant admitted");
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &grant(&account, &session, 1, 2),
            1,
            at(0)
        ),
        Err(Refusal::Session(SessionRefusal::AlreadyGranted))
    );
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &session_move(&account, &session, 1, OTHER_GAME),
            1,
            at(0)
        ),
        Err(Refusal::Session(SessionRefusal::OutOfScope))
    );
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &session_move(&account, &session, 1, GAME),
            11,
            at(0)
        ),
        Err(Refusal::Session(SessionRefusal::Expired {
            expires_after_batch: 10
        }))
    );
    for nonce in 1..3 {
        admit(
            &mut admission,
            &mut pending,
            &session_move(&account, &session, nonce, GAME),
            1,
            at(0),
        )
        .expect("within budget");
    }
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &session_move(&account, &session, 3, GAME),
            1,
            at(0)
        ),
        Err(Refusal::Session(SessionRefusal::MovesSpent))
    );
    assert_eq!(pending.len(), 3, "refusals change nothing");
}

#[test]
fn a_revoked_session_key_is_refused_at_once() {
    let account = AccountKey::from_seed(2);
    let session = SessionKey::from_seed(2);
    let mut admission = Admission::new(generous(), Vec::new());
    let mut pending = PendingState::new();
    admit(
        &mut admission,
        &mut pending,
        &grant(&account, &session, 0, 100),
        1,
        at(0),
    )
    .expect("grant");
    let revoke = revoke_or_grant(
        &account,
        1,
        SessionCall::Revoke {
            key: session.public_key(),
        },
    );
    admit(&mut admission, &mut pending, &revoke, 1, at(0)).expect("revocation");
    assert_eq!(
        pending.storage(
            &account.address(),
            &session::grant_slot(&session.public_key())
        ),
        REVOKED_GRANT
    );
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &session_move(&account, &session, 2, GAME),
            1,
            at(0)
        ),
        Err(Refusal::Session(SessionRefusal::Revoked))
    );
}

#[test]
fn a_sender_beyond_its_rate_is_refused_and_changes_nothing() {
    let key = AccountKey::from_seed(3);
    let limit = RateLimit {
        per_second: 100,
        burst: 5,
    };
    let mut admission = Admission::new(limit, Vec::new());
    let mut pending = PendingState::new();
    for nonce in 0..5 {
        let verified = account_move(&key, nonce, GAME)
            .sign(&key)
            .verify(CHAIN_ID)
            .expect("valid");
        admit(&mut admission, &mut pending, &verified, 1, at(0)).expect("within burst");
    }
    let sixth = account_move(&key, 5, GAME)
        .sign(&key)
        .verify(CHAIN_ID)
        .expect("valid");
    assert_eq!(
        admit(&mut admission, &mut pending, &sixth, 1, at(0)),
        Err(Refusal::RateLimited)
    );
    assert_eq!(pending.next_nonce(&key.address()), 5);
    admit(&mut admission, &mut pending, &sixth, 1, at(10)).expect("refilled after 10 ms");
}

#[test]
fn sponsorship_budgets_targets_and_rates_are_enforced() {
    let policy = SponsorPolicy {
        sponsor: SPONSOR,
        targets: vec![GAME],
        player_gas_budget: 150_000,
        total_gas_budget: 200_000,
        player_rate: RateLimit {
            per_second: 1_000,
            burst: 1_000,
        },
    };
    let mut admission = Admission::new(generous(), vec![policy]);
    let mut pending = PendingState::new();
    let sponsored = |key: &AccountKey, nonce: u64, to: Address, sponsor: Address| {
        let mut tx = account_move(key, nonce, to);
        tx.sponsor = Some(sponsor);
        tx.sign(key).verify(CHAIN_ID).expect("valid")
    };
    let alice = AccountKey::from_seed(10);
    let bob = AccountKey::from_seed(11);

    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &sponsored(&alice, 0, GAME, Address::ZERO),
            1,
            at(0)
        ),
        Err(Refusal::Sponsorship(SponsorRefusal::UnknownSponsor))
    );
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &sponsored(&alice, 0, OTHER_GAME, SPONSOR),
            1,
            at(0)
        ),
        Err(Refusal::Sponsorship(SponsorRefusal::TargetNotCovered))
    );
    let mut priced = account_move(&alice, 0, GAME);
    priced.sponsor = Some(SPONSOR);
    priced.gas_price = 1;
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &priced.sign(&alice).verify(CHAIN_ID).expect("valid"),
            1,
            at(0)
        ),
        Err(Refusal::Sponsorship(SponsorRefusal::NonZeroGasPrice))
    );
    // 50,000 gas a move: Alice's budget covers three.
    for nonce in 0..3 {
        admit(
            &mut admission,
            &mut pending,
            &sponsored(&alice, nonce, GAME, SPONSOR),
            1,
            at(0),
        )
        .expect("within Alice's budget");
    }
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &sponsored(&alice, 3, GAME, SPONSOR),
            1,
            at(0)
        ),
        Err(Refusal::Sponsorship(SponsorRefusal::PlayerBudgetSpent))
    );
    admit(
        &mut admission,
        &mut pending,
        &sponsored(&bob, 0, GAME, SPONSOR),
        1,
        at(0),
    )
    .expect("Bob's first");
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &sponsored(&bob, 1, GAME, SPONSOR),
            1,
            at(0)
        ),
        Err(Refusal::Sponsorship(SponsorRefusal::SponsorBudgetSpent)),
        "the sponsor's total budget is spent before Bob's"
    );
    assert_eq!(admission.sponsor_spent(&SPONSOR), Some(200_000));
    // A move that pays for itself needs no sponsor.
    let paying = account_move(&alice, 3, OTHER_GAME)
        .sign(&alice)
        .verify(CHAIN_ID)
        .expect("valid");
    admit(&mut admission, &mut pending, &paying, 1, at(0)).expect("unsponsored");
}

#[test]
fn a_player_beyond_the_sponsored_rate_is_refused() {
    let policy = SponsorPolicy {
        sponsor: SPONSOR,
        targets: vec![GAME],
        player_gas_budget: u64::MAX,
        total_gas_budget: u64::MAX,
        player_rate: RateLimit {
            per_second: 1,
            burst: 2,
        },
    };
    let mut admission = Admission::new(generous(), vec![policy]);
    let mut pending = PendingState::new();
    let key = AccountKey::from_seed(12);
    let sponsored = |nonce: u64| {
        let mut tx = account_move(&key, nonce, GAME);
        tx.sponsor = Some(SPONSOR);
        tx.sign(&key).verify(CHAIN_ID).expect("valid")
    };
    admit(&mut admission, &mut pending, &sponsored(0), 1, at(0)).expect("first");
    admit(&mut admission, &mut pending, &sponsored(1), 1, at(0)).expect("second");
    assert_eq!(
        admit(&mut admission, &mut pending, &sponsored(2), 1, at(0)),
        Err(Refusal::Sponsorship(SponsorRefusal::PlayerRateExceeded))
    );
    admit(&mut admission, &mut pending, &sponsored(2), 1, at(1_000)).expect("a second later");
}

#[test]
fn stateless_checks_refuse_with_a_type_and_keep_the_order() {
    let key = AccountKey::from_seed(4);
    let session = SessionKey::from_seed(4);
    let good = ClientRequest::Submit(account_move(&key, 0, GAME).sign(&key)).to_bytes();
    let wrong_chain = {
        let mut tx = account_move(&key, 1, GAME);
        tx.chain_id = CHAIN_ID + 1;
        ClientRequest::Submit(tx.sign(&key)).to_bytes()
    };
    let bad_session = {
        let mut signed = session_move(&key, &session, 2, GAME).signed;
        if let primitives::MoveSignature::Session { signature, .. } = &mut signed.signature {
            signature[10] ^= 0xff;
        }
        ClientRequest::Submit(signed).to_bytes()
    };
    let oversized = vec![0u8; 600];
    let query = ClientRequest::PendingNonce(key.address()).to_bytes();
    let mut requests = vec![
        good,
        wrong_chain,
        bad_session,
        vec![0xff, 1, 2],
        oversized,
        query,
    ];
    // Enough session moves to be split into parallel chunks.
    requests.extend((0..300).map(|nonce| {
        ClientRequest::Submit(session_move(&key, &session, nonce, GAME).signed).to_bytes()
    }));
    let checked = check_requests(requests, CHAIN_ID, 500, &SessionKeyCache::new(8));
    assert!(matches!(&checked[0], Checked::Move(verified) if verified.tx().nonce == 0));
    assert!(matches!(
        checked[1],
        Checked::Refused {
            refusal: Refusal::WrongChain { .. },
            ..
        }
    ));
    assert!(matches!(
        checked[2],
        Checked::Refused {
            refusal: Refusal::BadSignature,
            ..
        }
    ));
    assert!(matches!(
        checked[3],
        Checked::Refused {
            refusal: Refusal::Malformed,
            ..
        }
    ));
    assert!(matches!(
        checked[4],
        Checked::Refused {
            refusal: Refusal::TooLarge {
                size: 600,
                max: 500
            },
            ..
        }
    ));
    assert!(matches!(
        &checked[5],
        Checked::Query(query) if matches!(**query, ClientRequest::PendingNonce(_))
    ));
    for (nonce, checked) in checked[6..].iter().enumerate() {
        assert!(
            matches!(checked, Checked::Move(verified) if verified.tx().nonce == nonce as u64),
            "session move {nonce} out of order or refused"
        );
    }
}

/// Admits a move into pending state and the mempool, as the core does.
fn admit_into(
    admission: &mut Admission,
    mempool: &mut Mempool,
    pending: &mut PendingState,
    verified: VerifiedTransaction,
) -> Result<(), Refusal> {
    admission.admit(&verified, pending, 1, mempool.has_room(), at(0))?;
    pending.admit(&verified);
    mempool.push(verified);
    Ok(())
}

fn priced(
    key: &AccountKey,
    nonce: u64,
    gas_price: u128,
    sponsor: Option<Address>,
) -> VerifiedTransaction {
    let mut tx = account_move(key, nonce, GAME);
    tx.gas_price = gas_price;
    tx.sponsor = sponsor;
    tx.sign(key).verify(CHAIN_ID).expect("valid")
}

#[test]
fn a_replacement_needs_the_bump_and_a_refused_one_changes_nothing() {
    let policy = SponsorPolicy {
        sponsor: SPONSOR,
        targets: vec![GAME],
        player_gas_budget: 100_000,
        total_gas_budget: 100_000,
        player_rate: generous(),
    };
    let mut admission = Admission::new(generous(), vec![policy]);
    let (mut mempool, mut pending) = (Mempool::with_capacity(2), PendingState::new());
    let alice = AccountKey::from_seed(10);
    let sponsored = priced(&alice, 0, 0, Some(SPONSOR));
    let later = priced(&alice, 1, 3, None);
    admit_into(
        &mut admission,
        &mut mempool,
        &mut pending,
        sponsored.clone(),
    )
    .expect("sponsored");
    admit_into(&mut admission, &mut mempool, &mut pending, later.clone()).expect("paying");
    assert_eq!(admission.sponsor_spent(&SPONSOR), Some(50_000));
    let bump = ReplacementPolicy::default();

    // The sponsored move is replaced only by a paying one: a zero price is underpriced.
    let free = priced(&alice, 0, 0, None);
    assert_eq!(
        admission
            .replace(free, &mut mempool, &mut pending, bump, 1, at(0))
            .map(|_| ()),
        Err(Refusal::Replacement(ReplacementRefusal::Underpriced {
            min_gas_price: 1,
            got: 0
        }))
    );
    // Refused by the policy: nothing moved.
    assert!(pending.contains(&sponsored.hash));
    assert_eq!(
        mempool.get(&alice.address(), 0).map(|m| m.hash),
        Some(sponsored.hash)
    );
    assert_eq!(admission.sponsor_spent(&SPONSOR), Some(50_000));
    assert_eq!(
        admission
            .replace(
                priced(&alice, 0, 9, None),
                &mut mempool,
                &mut pending,
                ReplacementPolicy::Never,
                1,
                at(0)
            )
            .map(|_| ()),
        Err(Refusal::Replacement(ReplacementRefusal::NotAllowed))
    );
    // A full mempool still takes a replacement: it does not grow. The sponsor gets its charge
    // back, since the replaced move will never run.
    assert!(!mempool.has_room());
    let paying = priced(&alice, 0, 1, None);
    let replacement = admission
        .replace(paying.clone(), &mut mempool, &mut pending, bump, 1, at(0))
        .expect("one more than zero");
    assert_eq!(replacement.replaced.hash, sponsored.hash);
    assert_eq!(admission.sponsor_spent(&SPONSOR), Some(0));
    assert!(!pending.contains(&sponsored.hash) && pending.contains(&paying.hash));
    assert_eq!(pending.next_nonce(&alice.address()), 2);
    assert_eq!(mempool.len(), 2);
    // The later move is replaced in its turn: 3 + 10 % rounds up to 4.
    assert!(
        admission
            .replace(
                priced(&alice, 1, 3, None),
                &mut mempool,
                &mut pending,
                bump,
                1,
                at(0)
            )
            .is_err()
    );
    admission
        .replace(
            priced(&alice, 1, 4, None),
            &mut mempool,
            &mut pending,
            bump,
            1,
            at(0),
        )
        .expect("bumped");
    let order: Vec<u128> = mempool.take(2).iter().map(|m| m.tx().gas_price).collect();
    assert_eq!(order, [1, 4]);
    // Packed: nothing left to replace.
    assert_eq!(
        admission
            .replace(
                priced(&alice, 0, 100, None),
                &mut mempool,
                &mut pending,
                bump,
                1,
                at(0)
            )
            .map(|_| ()),
        Err(Refusal::BadNonce {
            expected: 2,
            got: 0
        })
    );
}

#[test]
fn a_replacement_is_checked_against_pending_state_without_the_move_it_replaces() {
    let mut admission = Admission::new(generous(), Vec::new());
    let (mut mempool, mut pending) = (Mempool::with_capacity(8), PendingState::new());
    let alice = AccountKey::from_seed(10);
    let session = SessionKey::from_seed(10);
    // Nonce 0 grants a session key; replaced by a plain move, the grant is gone, so a session
    // move relying on it is refused as for a key never granted.
    let granting = grant(&alice, &session, 0, 5);
    admit_into(&mut admission, &mut mempool, &mut pending, granting.clone()).expect("grant");
    admit_into(
        &mut admission,
        &mut mempool,
        &mut pending,
        session_move(&alice, &session, 1, GAME),
    )
    .expect("the grant is pending");
    let mut instead = account_move(&alice, 0, GAME);
    instead.gas_price = 1;
    let instead = instead.sign(&alice).verify(CHAIN_ID).expect("valid");
    admission
        .replace(
            instead,
            &mut mempool,
            &mut pending,
            ReplacementPolicy::default(),
            1,
            at(0),
        )
        .expect("bumped");
    // Session moves are free: replaced under a policy that asks no bump.
    let mut session_again = session_move(&alice, &session, 1, GAME).signed.tx;
    session_again.data = Bytes::from(vec![8]);
    let session_again = session_again
        .sign_with_session(&session, alice.address())
        .verify(CHAIN_ID)
        .expect("valid");
    let free = ReplacementPolicy::PriceBump { percent: 0 };
    assert_eq!(
        admission
            .replace(session_again, &mut mempool, &mut pending, free, 1, at(0))
            .map(|_| ()),
        Err(Refusal::Session(SessionRefusal::Unknown))
    );
    assert!(!pending.contains(&granting.hash));
}

#[test]
fn a_policy_from_the_chain_wins_over_the_configured_one_and_changes_keep_what_was_spent() {
    let policy = |targets: Vec<Address>, player_gas_budget: u64| SponsorPolicy {
        sponsor: SPONSOR,
        targets,
        player_gas_budget,
        total_gas_budget: 1_000_000,
        player_rate: generous(),
    };
    let mut admission = Admission::new(generous(), vec![policy(vec![OTHER_GAME], 1_000_000)]);
    let mut pending = PendingState::new();
    let alice = AccountKey::from_seed(10);
    let sponsored = |nonce: u64, to: Address| {
        let mut tx = account_move(&alice, nonce, to);
        tx.sponsor = Some(SPONSOR);
        tx.sign(&alice).verify(CHAIN_ID).expect("valid")
    };
    admit(
        &mut admission,
        &mut pending,
        &sponsored(0, OTHER_GAME),
        1,
        at(0),
    )
    .expect("configured");
    // The chain's policy for the same sponsor covers the game only, one move a player.
    admission.set_chain_policies(vec![policy(vec![GAME], 100_000)], at(1));
    assert_eq!(
        admit(
            &mut admission,
            &mut pending,
            &sponsored(1, OTHER_GAME),
            1,
            at(1)
        ),
        Err(Refusal::Sponsorship(SponsorRefusal::TargetNotCovered))
    );
    // What the configured policy charged still counts: 50,000 of 100,000 left.
    admit(&mut admission, &mut pending, &sponsored(1, GAME), 1, at(1)).expect("in budget");
    assert_eq!(
        admit(&mut admission, &mut pending, &sponsored(2, GAME), 1, at(1)),
        Err(Refusal::Sponsorship(SponsorRefusal::PlayerBudgetSpent))
    );
    assert_eq!(admission.sponsor_spent(&SPONSOR), Some(100_000));
    // A larger budget read from the chain takes effect at once.
    admission.set_chain_policies(vec![policy(vec![GAME], 150_000)], at(2));
    admit(&mut admission, &mut pending, &sponsored(2, GAME), 1, at(2)).expect("raised");
    // Withdrawn from the chain: the configured policy stands again.
    admission.set_chain_policies(Vec::new(), at(3));
    assert_eq!(
        admission
            .sponsor_policy(&SPONSOR)
            .map(|policy| policy.targets.clone()),
        Some(vec![OTHER_GAME])
    );
    admit(
        &mut admission,
        &mut pending,
        &sponsored(3, OTHER_GAME),
        1,
        at(3),
    )
    .expect("configured");
    // A sponsor only the chain named is unknown once it withdraws.
    let other_sponsor = Address::repeat_byte(0x56);
    admission.set_chain_policies(
        vec![SponsorPolicy {
            sponsor: other_sponsor,
            ..policy(vec![GAME], 100_000)
        }],
        at(4),
    );
    assert!(admission.sponsor_policy(&other_sponsor).is_some());
    admission.set_chain_policies(Vec::new(), at(5));
    assert!(admission.sponsor_policy(&other_sponsor).is_none());
}
