//! The persisted replica log: the file log recovers from a torn tail, refuses corruption with a
//! typed error, compacts; and a replica restarted from its log keeps its promises (it never
//! prepares a second value at a slot, never votes in a view it left, and as primary never
//! assigns a sequence twice), where one restarted without its log would break them.

use std::{
    io::Write,
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
};

use consensus::{
    FileLog, LogError, LogMedium, MemoryMedium, Message, PrePrepare, Record, RejectReason, Replica,
    ReplicaConfig, ReplicaInput, ReplicaLog, ReplicaState, Validator, ValidatorSet,
    constants::CHECKPOINT_INTERVAL,
    harness::{node_id, operator_key, replica_keys, secret_key},
    store::{FRAME_HEADER_BYTES, LOG_MAGIC},
};
use primitives::{B256, Decode, machine::Machine, machine::Origin, time::Instant};

use crate::value;

/// A fresh path in the temporary directory, removed when dropped.
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let unique = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "tickrate-replica-log-{}-{unique}-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let mut compact = self.0.clone().into_os_string();
        compact.push(".compact");
        let _ = std::fs::remove_file(compact);
    }
}

fn validators(n: usize) -> ValidatorSet {
    ValidatorSet::new(
        (0..n)
            .map(|index| Validator {
                id: node_id(index),
                key: secret_key(index).public_key(),
            })
            .collect(),
    )
}

/// Records a replica of a 4-set could write: a view, a proposal, decided entries through
/// `decided`, each with a (fake) certificate that the log does not check.
fn records(decided: u64) -> Vec<Record<B256>> {
    let mut records = vec![
        Record::View {
            view: 0,
            active: true,
        },
        Record::Proposal(PrePrepare::new(&operator_key(0), 0, 1, value(1))),
    ];
    for sequence in 1..=decided {
        records.push(Record::Decided(consensus::DecidedEntry {
            sequence,
            view: 0,
            value: Some(value(sequence)),
            certificate: primitives::bls::Certificate::aggregate(&[(0, secret_key(0).sign(b"x"))])
                .expect("one signature aggregates"),
        }));
    }
    records
}

#[test]
fn a_torn_tail_is_cut_off_and_the_log_goes_on() {
    let path = TempPath::new("torn");
    let written = records(5);
    let expected = {
        let (mut log, recovery) = FileLog::<B256>::open_path(&path.0).expect("creates");
        assert_eq!(recovery.frames, 0);
        log.append(&written[..4]).expect("appends");
        log.append(&written[4..]).expect("appends");
        log.state().clone()
    };
    assert_eq!(expected.last_committed(), 5);
    let whole = std::fs::metadata(&path.0).expect("exists").len();
    // A crash in the middle of the next append: half a frame reached the disk.
    let mut torn = Vec::new();
    let next = Record::<B256>::View {
        view: 3,
        active: false,
    };
    let payload = {
        let mut payload = vec![consensus::store::FRAME_RECORD];
        primitives::Encode::encode(&next, &mut payload);
        payload
    };
    torn.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    torn.extend_from_slice(&[0xEE; 8]);
    torn.extend_from_slice(&payload[..payload.len() / 2]);
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path.0)
        .expect("opens")
        .write_all(&torn)
        .expect("writes");

    let (mut log, recovery) = FileLog::<B256>::open_path(&path.0).expect("recovers");
    assert_eq!(recovery.truncated, torn.len() as u64);
    assert_eq!(recovery.frames, written.len() as u64);
    assert_eq!(
        log.state(),
        &expected,
        "every whole frame, and nothing torn"
    );
    assert_eq!(std::fs::metadata(&path.0).expect("exists").len(), whole);
    // The log goes on from the cut.
    log.append(&[next]).expect("appends after the cut");
    drop(log);
    let (log, recovery) = FileLog::<B256>::open_path(&path.0).expect("recovers");
    assert_eq!(recovery.truncated, 0);
    assert_eq!(log.state().view(), 3);
    assert!(!log.state().active());
    assert_eq!(log.state().last_committed(), 5);
}

#[test]
fn every_cut_of_the_last_frame_recovers_the_frames_before_it() {
    let written = records(3);
    let mut medium = MemoryMedium::new();
    let (mut log, _) = ReplicaLog::<B256, _>::open(medium.clone()).expect("opens");
    log.append(&written[..written.len() - 1]).expect("appends");
    let before = log.state().clone();
    let prefix = log.into_medium().bytes().to_vec();
    let (mut log, _) = ReplicaLog::<B256, _>::open(MemoryMedium::new()).expect("opens");
    log.append(&written).expect("appends");
    let full = log.into_medium().bytes().to_vec();
    for cut in prefix.len()..full.len() {
        medium.replace(&full[..cut]).expect("memory");
        let (log, recovery) = ReplicaLog::<B256, _>::open(medium.clone()).expect("recovers");
        assert_eq!(log.state(), &before, "cut at {cut}");
        assert_eq!(recovery.truncated, (cut - prefix.len()) as u64);
    }
}

#[test]
fn corruption_before_the_tail_is_a_typed_error() {
    let (mut log, _) = ReplicaLog::<B256, _>::open(MemoryMedium::new()).expect("opens");
    log.append(&records(3)).expect("appends");
    let mut bytes = log.into_medium().bytes().to_vec();
    // Flip a byte in the payload of the first frame.
    let first = LOG_MAGIC.len();
    bytes[first + FRAME_HEADER_BYTES + 2] ^= 0x40;
    let mut medium = MemoryMedium::new();
    medium.replace(&bytes).expect("memory");
    match ReplicaLog::<B256, _>::open(medium) {
        Err(LogError::Checksum { offset }) => assert_eq!(offset, first as u64),
        other => panic!("expected a checksum error, got {other:?}"),
    }
    let mut medium = MemoryMedium::new();
    medium.replace(b"NOTALOG!rest").expect("memory");
    assert!(matches!(
        ReplicaLog::<B256, _>::open(medium),
        Err(LogError::BadMagic)
    ));
}

#[test]
fn a_record_that_cannot_follow_is_refused_before_it_is_written() {
    let (mut log, _) = ReplicaLog::<B256, _>::open(MemoryMedium::new()).expect("opens");
    log.append(&records(2)).expect("appends");
    let len = log.len();
    let gap = records(4).pop().expect("a record");
    assert!(matches!(log.append(&[gap]), Err(LogError::State { .. })));
    assert_eq!(log.len(), len, "nothing written");
}

#[test]
fn compaction_at_a_stable_checkpoint_keeps_the_state_and_shrinks_the_log() {
    let path = TempPath::new("compact");
    let (mut log, _) = FileLog::<B256>::open_path(&path.0).expect("creates");
    log.set_compact_after(0);
    let stable_at = 20 * CHECKPOINT_INTERVAL;
    let written = records(stable_at + 3);
    log.append(&written).expect("appends");
    let before = std::fs::metadata(&path.0).expect("exists").len();
    let stable = Record::Stable {
        sequence: stable_at,
        history: B256::repeat_byte(7),
        proof: Vec::new(),
    };
    log.append(&[stable]).expect("appends");
    assert_eq!(log.compactions(), 1);
    let state = log.state().clone();
    assert_eq!(state.low_watermark(), stable_at);
    assert_eq!(state.proposal(1), None, "below the checkpoint: folded away");
    let retained_from = stable_at - consensus::constants::DECIDED_RETAINED + 1;
    assert_eq!(
        state.decided().next().map(|entry| entry.sequence),
        Some(retained_from),
        "decided entries are kept as far below the checkpoint as the replica keeps them"
    );
    drop(log);
    assert!(std::fs::metadata(&path.0).expect("exists").len() > 0);
    let (log, recovery) = FileLog::<B256>::open_path(&path.0).expect("recovers");
    assert_eq!(recovery.frames, 1, "one snapshot");
    assert_eq!(log.state(), &state);
    assert!(
        log.len() < before,
        "{} bytes after, {before} before",
        log.len()
    );
    let bytes = std::fs::read(&path.0).expect("reads");
    let snapshot = &bytes[LOG_MAGIC.len() + FRAME_HEADER_BYTES + 1..];
    assert_eq!(
        ReplicaState::<B256>::from_bytes(snapshot).expect("a snapshot"),
        state
    );
}

/// Drives one replica by hand: feeds inputs, makes its records durable in `log` first, and
/// collects what it sends.
struct Driven {
    replica: Replica<B256>,
    log: ReplicaLog<B256, MemoryMedium>,
    sent: Vec<Message<B256>>,
    now: Instant,
}

impl Driven {
    fn start(index: usize, disk: MemoryMedium, now: Instant) -> Driven {
        let (log, _) = ReplicaLog::open(disk).expect("recovers");
        let replica = Replica::restore(
            validators(4),
            index,
            replica_keys(index),
            ReplicaConfig::default(),
            now,
            log.state().clone(),
        );
        let mut driven = Driven {
            replica,
            log,
            sent: Vec::new(),
            now,
        };
        driven.drain();
        driven
    }

    /// Crashes: only the log's bytes survive.
    fn crash(self) -> MemoryMedium {
        self.log.into_medium()
    }

    fn drain(&mut self) {
        let mut records = Vec::new();
        while let Some(record) = self.replica.poll_persist() {
            records.push(record);
        }
        self.log.append(&records).expect("durable");
        let mut last = None;
        while let Some(transmit) = self.replica.poll_transmit(self.now) {
            // A broadcast is one transmit per peer: keep one.
            if last.as_ref() != Some(&transmit.bytes) {
                self.sent
                    .push(Message::from_wire(&transmit.bytes).expect("own messages decode"));
                last = Some(transmit.bytes);
            }
        }
        while self.replica.poll_event().is_some() {}
    }

    fn from(&mut self, peer: usize, message: Message<B256>) -> Result<(), RejectReason> {
        let result = self.replica.step(
            self.now,
            Origin::Peer(node_id(peer)),
            ReplicaInput::Decoded(message),
        );
        self.drain();
        result
    }

    fn local(&mut self, input: ReplicaInput<B256>) -> Result<(), RejectReason> {
        let result = self.replica.step(self.now, Origin::Local, input);
        self.drain();
        result
    }

    fn prepares_sent(&self) -> Vec<B256> {
        self.sent
            .iter()
            .filter_map(|message| match message {
                Message::Prepare(vote) => Some(vote.digest),
                _ => None,
            })
            .collect()
    }
}

/// Replica 1 prepares the primary's `value(1)` at sequence 1 of view 0, then crashes. The
/// primary then equivocates: it sends `value(2)` for the same slot.
fn prepared_then_crashed() -> (MemoryMedium, Message<B256>) {
    let mut backup = Driven::start(1, MemoryMedium::new(), Instant::ZERO);
    let first = PrePrepare::new(&operator_key(0), 0, 1, value(1));
    backup
        .from(0, Message::PrePrepare(first))
        .expect("accepted");
    backup
        .local(ReplicaInput::Verified {
            sequence: 1,
            digest: value(1),
            valid: true,
        })
        .expect("valid");
    assert_eq!(backup.prepares_sent(), vec![value(1)]);
    let second = Message::PrePrepare(PrePrepare::new(&operator_key(0), 0, 1, value(2)));
    (backup.crash(), second)
}

#[test]
fn a_backup_restarted_from_its_log_does_not_prepare_a_second_value() {
    let (disk, second) = prepared_then_crashed();
    let mut restarted = Driven::start(1, disk, Instant::from_micros(1_000));
    assert_eq!(restarted.replica.view(), 0);
    assert_eq!(
        restarted.from(0, second.clone()),
        Err(RejectReason::Conflicting {
            what: "pre-prepare",
            sequence: 1
        })
    );
    assert!(restarted.prepares_sent().is_empty(), "no second prepare");

    // Without its log, the same replica would have prepared the second value: the check above
    // is what the log buys.
    let mut forgetful = Driven::start(1, MemoryMedium::new(), Instant::from_micros(1_000));
    forgetful.from(0, second).expect("a fresh replica accepts");
    forgetful
        .local(ReplicaInput::Verified {
            sequence: 1,
            digest: value(2),
            valid: true,
        })
        .expect("valid");
    assert_eq!(forgetful.prepares_sent(), vec![value(2)]);
}

#[test]
fn a_backup_restarted_from_its_log_still_commits_what_it_prepared() {
    let (disk, _) = prepared_then_crashed();
    let mut restarted = Driven::start(1, disk, Instant::from_micros(1_000));
    // Its own prepare is back (re-signed: the same bytes), so one more prepare prepares it.
    let prepare = consensus::Vote::prepare(&operator_key(2), 0, 1, value(1), 2);
    restarted.from(2, Message::Prepare(prepare)).expect("held");
    let commits: Vec<B256> = restarted
        .sent
        .iter()
        .filter_map(|message| match message {
            Message::Commit(vote) => Some(vote.digest),
            _ => None,
        })
        .collect();
    assert_eq!(commits, vec![value(1)]);
    let disk = restarted.crash();
    let (log, _) = ReplicaLog::<B256, _>::open(disk).expect("recovers");
    let proof = log
        .state()
        .prepared(1)
        .expect("the prepared proof is durable");
    assert_eq!(proof.pre_prepare.value, Some(value(1)));
}

#[test]
fn a_replica_restarted_after_asking_for_a_view_change_never_votes_in_the_old_view() {
    let mut backup = Driven::start(1, MemoryMedium::new(), Instant::ZERO);
    backup.local(ReplicaInput::Backlog(true)).expect("backlog");
    let deadline = backup.replica.poll_timeout().expect("the view timer runs");
    backup.now = deadline;
    backup.replica.handle_timeout(deadline);
    backup.drain();
    assert_eq!(backup.replica.view(), 1);
    let sent = backup
        .sent
        .iter()
        .find(|message| matches!(message, Message::ViewChange(_)))
        .cloned()
        .expect("a view change went out");
    let disk = backup.crash();

    let mut restarted = Driven::start(1, disk, deadline);
    assert_eq!(restarted.replica.view(), 1);
    assert!(!restarted.replica.is_active(), "still changing views");
    assert_eq!(
        restarted.sent.first(),
        Some(&sent),
        "it asks for view 1 again, with the view change it sent"
    );
    let old = Message::PrePrepare(PrePrepare::new(&operator_key(0), 0, 1, value(1)));
    assert_eq!(
        restarted.from(0, old),
        Err(RejectReason::OldView {
            view: 0,
            current: 1
        })
    );
    assert!(restarted.prepares_sent().is_empty());
}

#[test]
fn a_primary_restarted_from_its_log_never_assigns_a_sequence_twice() {
    let mut primary = Driven::start(0, MemoryMedium::new(), Instant::ZERO);
    primary
        .local(ReplicaInput::Propose(value(1)))
        .expect("proposes");
    primary
        .local(ReplicaInput::Propose(value(2)))
        .expect("proposes");
    let disk = primary.crash();
    let mut restarted = Driven::start(0, disk, Instant::from_micros(10));
    assert_eq!(restarted.replica.next_sequence(), 3);
    restarted
        .local(ReplicaInput::Propose(value(3)))
        .expect("proposes");
    let sequences: Vec<u64> = restarted
        .sent
        .iter()
        .filter_map(|message| match message {
            Message::PrePrepare(pre_prepare) => Some(pre_prepare.sequence),
            _ => None,
        })
        .collect();
    assert_eq!(sequences, vec![3]);
}

#[test]
fn a_replica_built_without_a_log_records_nothing() {
    let mut replica = Replica::<B256>::new(validators(4), 0, replica_keys(0));
    assert!(!replica.is_durable());
    replica
        .step(
            Instant::ZERO,
            Origin::Local,
            ReplicaInput::Propose(value(1)),
        )
        .expect("proposes");
    assert!(replica.poll_persist().is_none());
}

#[test]
fn every_kind_of_record_survives_the_log() {
    let pre_prepare = PrePrepare::new(&operator_key(1), 1, 2, value(2));
    let proof = consensus::PreparedProof {
        pre_prepare: pre_prepare.clone(),
        prepares: vec![consensus::PrepareSignature {
            replica: 2,
            signature: consensus::Vote::prepare(&operator_key(2), 1, 2, value(2), 2)
                .signature
                .operator()
                .expect("a prepare is signed by an operator key"),
        }],
    };
    let mut written = records(3);
    written.extend([
        Record::ViewChange(consensus::ViewChange::new(
            &secret_key(1),
            1,
            1,
            Vec::new(),
            Vec::new(),
        )),
        Record::View {
            view: 1,
            active: true,
        },
        Record::Proposal(pre_prepare),
        Record::Prepared(proof.clone()),
        Record::Epoch(ValidatorSet::for_epoch(
            validators(4).validators().to_vec(),
            1,
            3,
            Some(40),
        )),
    ]);
    let (mut log, _) = ReplicaLog::<B256, _>::open(MemoryMedium::new()).expect("opens");
    log.append(&written).expect("appends");
    let state = log.state().clone();
    assert_eq!(state.epoch().map(ValidatorSet::end), Some(Some(40)));
    assert_eq!(state.view(), consensus::epoch_first_view(1));
    assert_eq!(state.prepared(2), None, "an epoch starts with an empty log");
    let (recovered, recovery) = ReplicaLog::<B256, _>::open(log.into_medium()).expect("recovers");
    assert_eq!(recovery.frames, written.len() as u64);
    assert_eq!(recovered.state(), &state);
    // And through a snapshot.
    let mut recovered = recovered;
    recovered.compact().expect("compacts");
    let (snapshot, recovery) =
        ReplicaLog::<B256, _>::open(recovered.into_medium()).expect("recovers");
    assert_eq!(recovery.frames, 1);
    assert_eq!(snapshot.state(), &state);
    // Each record decodes to itself.
    for record in &written {
        let bytes = primitives::Encode::to_bytes(record);
        assert_eq!(
            &Record::<B256>::from_bytes(&bytes).expect("decodes"),
            record
        );
    }
}
