//! Batch commitments to the upper chain, off the consensus loop.
//!
//! A committed batch is final by its certificate; recording it upstream is a slow, fallible
//! call (a certificate check on the embedded chain, a JSON-RPC round trip on an EVM chain), so
//! the core task hands it to one worker thread and goes on. The worker commits in batch order:
//! it reads the chain's last batch, drops what is already recorded (by this sequencer or
//! another), commits the next one if it holds it, and otherwise waits, for another sequencer to
//! record the missing batch or for the chain to answer again, with a capped back-off. Nothing is
//! skipped because the chain was briefly unreachable.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError},
    },
    time::Duration,
};

use primitives::{B256, bls::Certificate};
use tracing::{debug, warn};
use upper_chain::{ChainError, UpperChain};

use crate::constants::{UPSTREAM_PENDING_MAX, UPSTREAM_QUEUE_MAX};

/// First wait after a failed or premature attempt.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The two calls the worker makes, so that tests can stand in for a chain.
pub trait BatchCommitments: Send + Sync {
    /// The last committed batch number (0 before any).
    fn last_batch(&self) -> Result<u64, ChainError>;
    /// Commits batch `number`.
    fn commit_batch(
        &self,
        number: u64,
        batch_hash: B256,
        commit_message: &[u8],
        certificate: &Certificate,
    ) -> Result<(), ChainError>;
}

impl BatchCommitments for dyn UpperChain {
    fn last_batch(&self) -> Result<u64, ChainError> {
        UpperChain::last_batch(self)
    }

    fn commit_batch(
        &self,
        number: u64,
        batch_hash: B256,
        commit_message: &[u8],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        UpperChain::commit_batch(self, number, batch_hash, commit_message, certificate)
    }
}

/// One batch to record upstream.
#[derive(Clone, Debug)]
pub struct UpstreamCommit {
    /// The batch number.
    pub number: u64,
    /// The batch's hash.
    pub batch_hash: B256,
    /// The message the certificate signs.
    pub commit_message: Vec<u8>,
    /// The commit certificate.
    pub certificate: Certificate,
}

/// Where the core task hands batches to the worker. The worker stops when this is dropped.
#[derive(Debug)]
pub struct Upstream {
    queue: SyncSender<UpstreamCommit>,
}

impl Upstream {
    /// Starts the worker on its own thread.
    pub fn spawn<C: BatchCommitments + ?Sized + 'static>(chain: Arc<C>) -> std::io::Result<Self> {
        let (queue, inbound) = mpsc::sync_channel(UPSTREAM_QUEUE_MAX);
        std::thread::Builder::new()
            .name("upstream-commit".into())
            .spawn(move || run(chain.as_ref(), inbound))?;
        Ok(Upstream { queue })
    }

    /// Hands a batch over without waiting. A full queue drops it with a warning: another
    /// sequencer records it, or this one waits for that.
    pub fn submit(&self, commit: UpstreamCommit) {
        let number = commit.number;
        if let Err(TrySendError::Full(_)) = self.queue.try_send(commit) {
            warn!(target: "sequencer", number, "upstream commitment queue full; batch left to the other sequencers");
        }
    }
}

fn run<C: BatchCommitments + ?Sized>(chain: &C, inbound: Receiver<UpstreamCommit>) {
    let mut pending: BTreeMap<u64, UpstreamCommit> = BTreeMap::new();
    let mut backoff = BACKOFF_MIN;
    let mut warned_for = None;
    loop {
        // Block while there is nothing to do; otherwise take whatever else has arrived.
        if pending.is_empty() {
            match inbound.recv() {
                Ok(commit) => add(&mut pending, commit),
                Err(_) => return,
            }
        }
        while let Ok(commit) = inbound.try_recv() {
            add(&mut pending, commit);
        }
        let progressed = match attempt(chain, &mut pending) {
            Ok(progressed) => progressed,
            Err((number, error)) => {
                if warned_for != Some(number) {
                    warn!(target: "sequencer", number, %error, "batch commitment not recorded yet; retrying");
                    warned_for = Some(number);
                } else {
                    debug!(target: "sequencer", number, %error, "batch commitment retry failed");
                }
                false
            }
        };
        if progressed {
            backoff = BACKOFF_MIN;
            continue;
        }
        if pending.is_empty() {
            continue;
        }
        // Wait before the next attempt, but take new batches meanwhile.
        match inbound.recv_timeout(backoff) {
            Ok(commit) => add(&mut pending, commit),
            Err(RecvTimeoutError::Timeout) => backoff = (backoff * 2).min(BACKOFF_MAX),
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

fn add(pending: &mut BTreeMap<u64, UpstreamCommit>, commit: UpstreamCommit) {
    pending.insert(commit.number, commit);
    while pending.len() > UPSTREAM_PENDING_MAX {
        if let Some((number, _)) = pending.pop_first() {
            warn!(target: "sequencer", number, "too many batches waiting for the upper chain; the oldest is left to the other sequencers");
        }
    }
}

/// One step: drops what the chain holds, commits the next batch if held. `Ok(true)` when it
/// recorded one; `Ok(false)` when the next batch is not ours to send yet.
fn attempt<C: BatchCommitments + ?Sized>(
    chain: &C,
    pending: &mut BTreeMap<u64, UpstreamCommit>,
) -> Result<bool, (u64, ChainError)> {
    let first = pending.keys().next().copied().unwrap_or_default();
    let last = chain.last_batch().map_err(|error| (first, error))?;
    pending.retain(|number, _| *number > last);
    let Some(next) = pending.get(&(last + 1)) else {
        return Ok(false);
    };
    chain
        .commit_batch(
            next.number,
            next.batch_hash,
            &next.commit_message,
            &next.certificate,
        )
        .map_err(|error| (last + 1, error))?;
    pending.remove(&(last + 1));
    Ok(true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Instant,
    };

    use parking_lot::Mutex;

    use super::*;

    /// A chain that is unreachable for its first `failures` calls, records batches in order,
    /// and lets a test record batches as another sequencer would.
    #[derive(Default)]
    struct FlakyChain {
        failures: AtomicUsize,
        recorded: Mutex<Vec<(u64, &'static str)>>,
    }

    impl FlakyChain {
        fn fail(&self) -> Result<(), ChainError> {
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                return Err(ChainError::Unreachable {
                    url: "test".into(),
                    reason: "down".into(),
                });
            }
            Ok(())
        }

        fn record_by_another(&self, number: u64) {
            let mut recorded = self.recorded.lock();
            assert_eq!(recorded.len() as u64 + 1, number);
            recorded.push((number, "other"));
        }

        fn ours(&self) -> Vec<u64> {
            self.recorded
                .lock()
                .iter()
                .filter(|(_, by)| *by == "us")
                .map(|(number, _)| *number)
                .collect()
        }

        fn last(&self) -> u64 {
            self.recorded.lock().len() as u64
        }
    }

    impl BatchCommitments for FlakyChain {
        fn last_batch(&self) -> Result<u64, ChainError> {
            self.fail()?;
            Ok(self.last())
        }

        fn commit_batch(
            &self,
            number: u64,
            _: B256,
            _: &[u8],
            _: &Certificate,
        ) -> Result<(), ChainError> {
            self.fail()?;
            let mut recorded = self.recorded.lock();
            if recorded.len() as u64 + 1 != number {
                return Err(ChainError::Rpc(format!("batch {number} out of order")));
            }
            recorded.push((number, "us"));
            Ok(())
        }
    }

    fn commit(number: u64) -> UpstreamCommit {
        UpstreamCommit {
            number,
            batch_hash: B256::repeat_byte(number as u8),
            commit_message: Vec::new(),
            certificate: Certificate {
                signers: primitives::bls::SignerBitmap::default(),
                signature: primitives::bls::BlsSecretKey::from_seed(&[1; 32]).sign(b"batch"),
            },
        }
    }

    /// Waits (bounded) until `done` holds.
    fn eventually(done: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done() {
            assert!(Instant::now() < deadline, "the worker never got there");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn batches_are_recorded_in_order_through_an_unreachable_spell() {
        let chain = Arc::new(FlakyChain::default());
        chain.failures.store(7, Ordering::SeqCst);
        let upstream = Upstream::spawn(chain.clone()).unwrap();
        for number in 1..=20 {
            upstream.submit(commit(number));
        }
        eventually(|| chain.last() == 20);
        assert_eq!(chain.ours(), (1..=20).collect::<Vec<_>>());
    }

    #[test]
    fn what_another_sequencer_recorded_is_not_sent_again() {
        let chain = Arc::new(FlakyChain::default());
        for number in 1..=5 {
            chain.record_by_another(number);
        }
        let upstream = Upstream::spawn(chain.clone()).unwrap();
        for number in 1..=8 {
            upstream.submit(commit(number));
        }
        eventually(|| chain.last() == 8);
        assert_eq!(chain.ours(), vec![6, 7, 8]);
    }

    #[test]
    fn a_missing_batch_is_waited_for_then_the_rest_follow() {
        let chain = Arc::new(FlakyChain::default());
        let upstream = Upstream::spawn(chain.clone()).unwrap();
        // This sequencer holds 3 and 4 but not 1 and 2: it must not record out of order.
        upstream.submit(commit(3));
        upstream.submit(commit(4));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(chain.last(), 0);
        chain.record_by_another(1);
        chain.record_by_another(2);
        eventually(|| chain.last() == 4);
        assert_eq!(chain.ours(), vec![3, 4]);
    }
}
