//! `ingest`: how many moves one sequencer's ingress accepts a second, against the raw signature
//! rate of this machine, measured side by side in one run on every core.
//!
//! 1. Raw rates: secp256k1 recovery of prehashed signatures (libsecp256k1), and ed25519 batch
//!    verification in batches of `VERIFY_CHUNK_MOVES`, both spread over every core by rayon.
//! 2. Accepted rates: the sequencer's own ingress code on encoded client requests, as its client
//!    tasks and core run it — `CLIENT_TASKS` tasks each passing bursts of `INGRESS_BURST_MAX`
//!    requests through `check_requests`
//!    (bounded decoding, chain id, signatures verified together, rayon), then, on one core
//!    thread, `Admission::admit` (sender rate, nonce, session grant and scope against pending
//!    state), the move's writes into pending state and the mempool. Account-key moves, then
//!    session-key moves (each player's grant is admitted first, as an account-key move).
//!
//! No transport: the KCP sessions in front of ingress are measured by `ack-latency`. Targets
//! (DESIGN.md): each accepted rate ≥ 0.85 × its raw rate; session-key moves ≥ 100,000 moves/s.

use std::{
    sync::mpsc,
    time::{Duration, Instant},
};

use primitives::{
    AccountAccess, AccountKey, Address, Bytes, Encode, SessionCall, SessionKey, SessionScope,
    SignedTransaction, SpaceAccessList, Transaction, U256, VerifiedTransaction,
    api::ClientRequest,
    session::{SessionKeyCache, session_access, session_signing_hash},
    time::Instant as SimInstant,
};
use rayon::prelude::*;
use sequencer::{
    constants::{INGRESS_BURST_MAX, MOVE_BYTES_MAX, VERIFY_CHUNK_MOVES},
    ingress::{Admission, Checked, RateLimit, check_requests},
    mempool::Mempool,
    pending::PendingState,
};
use sim::report::{BenchReport, Op};

use crate::Args;

const CHAIN_ID: u64 = 0x7e1c;
const GAME: Address = Address::repeat_byte(0x6a);
/// Players; each sends `MOVES / PLAYERS` moves in nonce order.
const PLAYERS: u64 = 1_000;
/// Account-key moves measured (secp256k1 signing is slow to prepare).
const ACCOUNT_MOVES: u64 = 60_000;
/// Session-key moves measured.
const SESSION_MOVES: u64 = 200_000;
/// Client tasks verifying bursts at once, as the sequencer's client sessions do.
const CLIENT_TASKS: usize = 8;

pub async fn run(_args: &Args) -> anyhow::Result<BenchReport> {
    tokio::task::spawn_blocking(measure).await?
}

fn measure() -> anyhow::Result<BenchReport> {
    let mut report = BenchReport::new("ingest");
    let accounts: Vec<AccountKey> = (0..PLAYERS)
        .map(|seed| AccountKey::from_seed(seed + 1))
        .collect();
    let sessions: Vec<SessionKey> = (0..PLAYERS)
        .map(|seed| SessionKey::from_seed(seed + 1))
        .collect();

    let account_moves: Vec<SignedTransaction> = (0..ACCOUNT_MOVES)
        .into_par_iter()
        .map(|index| {
            let player = (index % PLAYERS) as usize;
            let nonce = index / PLAYERS;
            game_move(&accounts[player], nonce).sign(&accounts[player])
        })
        .collect();
    let grants: Vec<SignedTransaction> = accounts
        .iter()
        .zip(&sessions)
        .map(|(account, session)| grant_move(account, session).sign(account))
        .collect();
    let session_moves: Vec<SignedTransaction> = (0..SESSION_MOVES)
        .into_par_iter()
        .map(|index| {
            let player = (index % PLAYERS) as usize;
            // Nonce 0 is the grant.
            let nonce = 1 + index / PLAYERS;
            session_move(&accounts[player], &sessions[player], nonce)
        })
        .collect();

    let secp_raw = raw_secp256k1(&account_moves);
    let ed25519_raw = raw_ed25519(&session_moves);
    report.figure("raw_secp256k1_recover_per_s", secp_raw);
    report.figure("raw_ed25519_batch_verify_per_s", ed25519_raw);

    let account_rate = accepted_rate(&account_moves, &[], "account-key moves")?;
    let session_rate = accepted_rate(&session_moves, &grants, "session-key moves")?;
    report.figure("accepted_account_key_moves_per_s", account_rate);
    report.figure("accepted_session_key_moves_per_s", session_rate);
    report.figure("account_key_ratio_to_raw", account_rate / secp_raw);
    report.figure("session_key_ratio_to_raw", session_rate / ed25519_raw);
    report.figure(
        "session_over_account_key_speedup",
        session_rate / account_rate,
    );
    report.target("account_key_ratio_to_raw", Op::AtLeast, 0.85);
    report.target("session_key_ratio_to_raw", Op::AtLeast, 0.85);
    report.target("accepted_session_key_moves_per_s", Op::AtLeast, 100_000.0);
    Ok(report)
}

/// A game move: writes the player's cell, as the devnet's game does.
fn game_move(account: &AccountKey, nonce: u64) -> Transaction {
    Transaction {
        chain_id: CHAIN_ID,
        nonce,
        to: GAME,
        value: U256::ZERO,
        data: Bytes::from(vec![0x01, 0x02, 0x03, 0x04]),
        gas_limit: 60_000,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([
            AccountAccess::read(account.address()),
            AccountAccess {
                storage: vec![primitives::SlotAccess {
                    slot: account.address().into_word(),
                    write: Some(primitives::DeclaredWrite::Exact(U256::from(nonce))),
                }],
                ..AccountAccess::read(GAME)
            },
        ]),
    }
}

fn grant_move(account: &AccountKey, session: &SessionKey) -> Transaction {
    let call = SessionCall::Grant {
        key: session.public_key(),
        scope: SessionScope {
            targets: vec![GAME],
            expires_after_batch: u64::MAX,
            moves: u64::MAX,
            value: 0,
        },
    };
    Transaction {
        chain_id: CHAIN_ID,
        nonce: 0,
        to: primitives::SESSION_REGISTRY,
        value: U256::ZERO,
        data: Bytes::from(call.to_bytes()),
        gas_limit: 0,
        gas_price: 0,
        sponsor: None,
        access_list: SpaceAccessList::new([call.access(account.address())]),
    }
}

fn session_move(account: &AccountKey, session: &SessionKey, nonce: u64) -> SignedTransaction {
    let mut tx = game_move(account, nonce);
    tx.access_list =
        SpaceAccessList::new(
            tx.access_list
                .accounts()
                .iter()
                .cloned()
                .chain([session_access(
                    account.address(),
                    &session.public_key(),
                    &GAME,
                    0,
                )]),
        );
    tx.sign_with_session(session, account.address())
}

fn per_second(count: usize, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// Recoveries a second over every core, of prehashes computed beforehand.
fn raw_secp256k1(moves: &[SignedTransaction]) -> f64 {
    let work: Vec<_> = moves
        .iter()
        .map(|signed| match signed.signature {
            primitives::MoveSignature::Account(signature) => (signature, signed.tx.signing_hash()),
            _ => unreachable!("account-key moves only"),
        })
        .collect();
    let started = Instant::now();
    let recovered = work
        .par_iter()
        .filter(|(signature, prehash)| signature.recover_address(prehash).is_ok())
        .count();
    let elapsed = started.elapsed();
    assert_eq!(recovered, work.len(), "every signature recovers");
    per_second(work.len(), elapsed)
}

/// ed25519 signatures a second over every core, verified in batches, of hashes computed
/// beforehand.
fn raw_ed25519(moves: &[SignedTransaction]) -> f64 {
    let work: Vec<_> = moves
        .iter()
        .map(|signed| match signed.signature {
            primitives::MoveSignature::Session {
                account,
                key,
                signature,
            } => (
                session_signing_hash(&signed.tx, &account),
                ed25519_dalek::Signature::from_bytes(&signature),
                ed25519_dalek::VerifyingKey::from_bytes(&key.0).expect("a valid key"),
            ),
            _ => unreachable!("session-key moves only"),
        })
        .collect();
    let started = Instant::now();
    let valid = work
        .par_chunks(VERIFY_CHUNK_MOVES)
        .filter(|chunk| {
            let hashes: Vec<&[u8]> = chunk.iter().map(|(hash, _, _)| hash.as_slice()).collect();
            let signatures: Vec<_> = chunk.iter().map(|(_, signature, _)| *signature).collect();
            let keys: Vec<_> = chunk.iter().map(|(_, _, key)| *key).collect();
            ed25519_dalek::verify_batch(&hashes, &signatures, &keys).is_ok()
        })
        .count();
    let elapsed = started.elapsed();
    assert_eq!(valid, work.len().div_ceil(VERIFY_CHUNK_MOVES));
    per_second(work.len(), elapsed)
}

/// What the core does with a verified move, as `sequencer::node` does it.
struct Core {
    admission: Admission,
    pending: PendingState,
    mempool: Mempool,
    clock: Instant,
}

impl Core {
    fn admit(&mut self, verified: VerifiedTransaction) -> Result<(), primitives::api::Refusal> {
        let now = SimInstant::from_micros(self.clock.elapsed().as_micros() as u64);
        self.admission
            .admit(&verified, &self.pending, 1, self.mempool.has_room(), now)?;
        self.pending.admit(&verified);
        self.mempool.push(verified);
        Ok(())
    }
}

/// Moves a second the ingress path accepts: `setup` (grants) is admitted first and not timed.
fn accepted_rate(
    moves: &[SignedTransaction],
    setup: &[SignedTransaction],
    what: &str,
) -> anyhow::Result<f64> {
    let encode = |signed: &SignedTransaction| ClientRequest::Submit(signed.clone()).to_bytes();
    let setup_requests: Vec<Vec<u8>> = setup.iter().map(encode).collect();
    let requests: Vec<Vec<u8>> = moves.par_iter().map(encode).collect();
    let unlimited = RateLimit {
        per_second: 1 << 40,
        burst: 1 << 40,
    };
    let mut core = Core {
        admission: Admission::new(unlimited, Vec::new()),
        pending: PendingState::new(),
        mempool: Mempool::with_capacity(moves.len() + setup.len()),
        clock: Instant::now(),
    };
    let keys = SessionKeyCache::new(PLAYERS as usize);
    for checked in check_requests(setup_requests, CHAIN_ID, MOVE_BYTES_MAX, &keys) {
        let Checked::Move(verified) = checked else {
            anyhow::bail!("{what}: setup move refused: {checked:?}");
        };
        core.admit(*verified)
            .map_err(|refusal| anyhow::anyhow!("{what}: setup move refused: {refusal}"))?;
    }

    // Client tasks: each verifies its own bursts, as each client session's task does, so
    // several bursts are in rayon's pool at once; the core: one thread admitting in order. A
    // player's moves all come through one client task, in nonce order, as over one session.
    let mut per_client: Vec<Vec<Vec<u8>>> = vec![Vec::new(); CLIENT_TASKS];
    for (index, request) in requests.into_iter().enumerate() {
        per_client[(index % PLAYERS as usize) % CLIENT_TASKS].push(request);
    }
    let (checked_bursts, core_queue) = mpsc::sync_channel::<Vec<Checked>>(2 * CLIENT_TASKS);
    let started = Instant::now();
    let accepted = std::thread::scope(|scope| -> anyhow::Result<usize> {
        let core_thread = scope.spawn(move || -> anyhow::Result<usize> {
            let mut accepted = 0;
            for burst in core_queue {
                for checked in burst {
                    let Checked::Move(verified) = checked else {
                        anyhow::bail!("{what}: refused before the core: {checked:?}");
                    };
                    core.admit(*verified)
                        .map_err(|refusal| anyhow::anyhow!("{what}: refused: {refusal}"))?;
                    accepted += 1;
                }
            }
            Ok(accepted)
        });
        for requests in per_client {
            let checked_bursts = checked_bursts.clone();
            let keys = &keys;
            scope.spawn(move || {
                let mut requests = requests.into_iter().peekable();
                while requests.peek().is_some() {
                    let burst: Vec<Vec<u8>> = requests.by_ref().take(INGRESS_BURST_MAX).collect();
                    if checked_bursts
                        .send(check_requests(burst, CHAIN_ID, MOVE_BYTES_MAX, keys))
                        .is_err()
                    {
                        break;
                    }
                }
            });
        }
        drop(checked_bursts);
        core_thread
            .join()
            .map_err(|_| anyhow::anyhow!("the core thread panicked"))?
    })?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        accepted == moves.len(),
        "{what}: {accepted} of {} accepted",
        moves.len()
    );
    Ok(per_second(accepted, elapsed))
}
