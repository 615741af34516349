//! The embedded chain: in memory, or persisted in RocksDB, with the contract's checks.

use std::{collections::BTreeMap, path::Path};

use parking_lot::Mutex;
use primitives::{
    Address, B256, Encode, NodeId, Signature, U256,
    bls::{BlsPublicKey, Certificate},
    pbft::EquivocationEvidence,
    preconf::{PreconfirmationEvidence, SignedPreconfirmation},
};
use rocksdb::{DB, IteratorMode, Options, WriteBatch, WriteOptions};

use crate::{
    AdminOp, AvailabilityKind, AvailabilityRecord, ChainError, DaCommittee, Departure,
    DepartureKind, DepartureProof, Deposit, GroupDecision, GroupRootCommitment, NodeRecord,
    Registration, RegistrySnapshot, SequencerCandidate, SequencerEpoch, SequencerRecord,
    SponsorPolicyRecord, SponsorPolicyUpdate, SyncedRoot, UpperChain, WalletChange, WalletUpdate,
    group_id, quorum, select_sequencers, sequencer_epoch_of,
    store::{SequencerSet, decode_all, key},
    wallet_as_of,
};

/// What a new chain starts with.
#[derive(Clone, Debug, Default)]
pub struct Genesis {
    /// The admin key's address (whitelist, stake cap, rotation, epochs). The zero address means
    /// no admin: every signed admin operation is refused.
    pub admin: Address,
    /// The stake cap.
    pub stake_cap: u128,
    /// The sequencer set, in certificate order; also the initial whitelist (stake 0).
    pub sequencers: Vec<SequencerRecord>,
    /// PBFT sequences in a sequencer epoch ([`crate::SequencerEpoch`]); `None`: one open-ended
    /// epoch whose set is the active set, changed at once by a rotation.
    pub sequencer_epoch_length: Option<u64>,
    /// The strong-DA committee whose availability certificates the chain accepts; `None`: the
    /// chain records no strong-DA commitments.
    pub da_committee: Option<DaCommittee>,
}

#[derive(Debug, Default)]
struct ChainState {
    epoch: u64,
    admin: Address,
    admin_nonce: u64,
    stake_cap: u128,
    nodes: BTreeMap<NodeId, NodeRecord>,
    bls_keys: BTreeMap<[u8; 48], NodeId>,
    sequencers: Vec<SequencerRecord>,
    candidates: BTreeMap<NodeId, SequencerCandidate>,
    /// PBFT sequences in a sequencer epoch, if the chain has sequencer epochs.
    sequencer_epoch_length: Option<u64>,
    /// How many sequencers a rotation, and with sequencer epochs each boundary, selects.
    sequencer_set_size: u32,
    /// The sets of the sequencer epochs fixed so far, by epoch (with sequencer epochs only).
    sequencer_epochs: Vec<Vec<SequencerRecord>>,
    batches: Vec<B256>,
    group_roots: BTreeMap<B256, GroupRootCommitment>,
    synced: BTreeMap<NodeId, SyncedRoot>,
    departures: BTreeMap<NodeId, Departure>,
    /// Expelled sequencers and the evidence that expelled them.
    equivocations: BTreeMap<NodeId, EquivocationEvidence>,
    /// Sequencers expelled for a broken preconfirmation, and the promise they broke.
    broken_preconfirmations: BTreeMap<NodeId, SignedPreconfirmation>,
    deposits: Vec<Deposit>,
    /// Each node's next wallet nonce, for nodes that updated their wallet.
    wallet_nonces: BTreeMap<NodeId, u64>,
    /// Each node's wallet changes, by the epoch they take effect (the registration keeps the
    /// wallet it was registered with).
    wallet_changes: BTreeMap<NodeId, Vec<WalletChange>>,
    /// Sponsorship policies in force, by sponsor.
    sponsor_policies: BTreeMap<Address, SponsorPolicyRecord>,
    /// Each sponsor's next policy nonce, for sponsors that sent an update.
    sponsor_nonces: BTreeMap<Address, u64>,
    /// The strong-DA committee fixed at genesis.
    da_committee: Option<DaCommittee>,
    /// Strong-DA commitments recorded, by payload.
    availability: BTreeMap<(AvailabilityKind, u64), AvailabilityRecord>,
}

impl ChainState {
    /// Whether `sequencer` was expelled, for equivocation or for a broken preconfirmation.
    fn expelled(&self, sequencer: &NodeId) -> bool {
        self.equivocations.contains_key(sequencer)
            || self.broken_preconfirmations.contains_key(sequencer)
    }

    fn from_genesis(genesis: &Genesis) -> Self {
        ChainState {
            admin: genesis.admin,
            stake_cap: genesis.stake_cap,
            sequencers: genesis.sequencers.clone(),
            sequencer_epoch_length: genesis.sequencer_epoch_length.filter(|length| *length > 0),
            sequencer_set_size: u32::try_from(genesis.sequencers.len()).unwrap_or(u32::MAX),
            sequencer_epochs: match genesis.sequencer_epoch_length {
                Some(length) if length > 0 => vec![genesis.sequencers.clone()],
                _ => Vec::new(),
            },
            candidates: genesis
                .sequencers
                .iter()
                .map(|record| {
                    (
                        record.id,
                        SequencerCandidate {
                            record: record.clone(),
                            stake: 0,
                        },
                    )
                })
                .collect(),
            da_committee: genesis.da_committee.clone(),
            ..ChainState::default()
        }
    }

    /// Every record, as the store holds it.
    fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![
            (key::EPOCH.to_vec(), self.epoch.to_bytes()),
            (key::ADMIN.to_vec(), key::address(&self.admin)),
            (key::NONCE.to_vec(), self.admin_nonce.to_bytes()),
            (key::CAP.to_vec(), self.stake_cap.to_be_bytes().to_vec()),
            (
                key::ACTIVE.to_vec(),
                SequencerSet(self.sequencers.clone()).to_bytes(),
            ),
            (
                key::SEQUENCER_EPOCH_LENGTH.to_vec(),
                self.sequencer_epoch_length.unwrap_or(0).to_bytes(),
            ),
            (
                key::SEQUENCER_SET_SIZE.to_vec(),
                self.sequencer_set_size.to_be_bytes().to_vec(),
            ),
        ];
        out.extend(
            self.sequencer_epochs
                .iter()
                .enumerate()
                .map(|(epoch, set)| {
                    (
                        key::number(key::SEQUENCER_EPOCH, epoch as u64),
                        SequencerSet(set.clone()).to_bytes(),
                    )
                }),
        );
        out.extend(
            self.nodes
                .iter()
                .map(|(id, node)| (key::node(key::NODE, id), node.to_bytes())),
        );
        out.extend(
            self.candidates
                .iter()
                .map(|(id, c)| (key::node(key::CANDIDATE, id), c.to_bytes())),
        );
        out.extend(
            self.batches
                .iter()
                .enumerate()
                .map(|(i, hash)| (key::number(key::BATCH, i as u64 + 1), hash.to_vec())),
        );
        out.extend(
            self.group_roots
                .iter()
                .map(|(group, root)| (key::group(group), root.to_bytes())),
        );
        out.extend(
            self.synced
                .iter()
                .map(|(id, s)| (key::node(key::SYNCED, id), s.to_bytes())),
        );
        out.extend(
            self.departures
                .iter()
                .map(|(id, d)| (key::node(key::DEPARTURE, id), d.to_bytes())),
        );
        out.extend(
            self.equivocations
                .iter()
                .map(|(id, e)| (key::node(key::EQUIVOCATION, id), e.to_bytes())),
        );
        out.extend(self.broken_preconfirmations.iter().map(|(id, promise)| {
            (
                key::node(key::BROKEN_PRECONFIRMATION, id),
                promise.to_bytes(),
            )
        }));
        out.extend(
            self.deposits
                .iter()
                .map(|d| (key::number(key::DEPOSIT, d.index), d.to_bytes())),
        );
        out.extend(
            self.wallet_nonces
                .iter()
                .map(|(id, nonce)| (key::node(key::WALLET_NONCE, id), nonce.to_bytes())),
        );
        out.extend(self.wallet_changes.iter().flat_map(|(id, changes)| {
            changes
                .iter()
                .map(|change| (key::wallet_change(id, change.from_epoch), change.to_bytes()))
        }));
        out.extend(self.sponsor_policies.iter().map(|(sponsor, policy)| {
            (
                key::with(key::SPONSOR_POLICY, sponsor.as_slice()),
                policy.to_bytes(),
            )
        }));
        out.extend(self.sponsor_nonces.iter().map(|(sponsor, nonce)| {
            (
                key::with(key::SPONSOR_NONCE, sponsor.as_slice()),
                nonce.to_bytes(),
            )
        }));
        out.extend(
            self.da_committee
                .iter()
                .map(|committee| (key::DA_COMMITTEE.to_vec(), committee.to_bytes())),
        );
        out.extend(self.availability.iter().map(|((kind, number), record)| {
            (key::availability(*kind, *number), record.to_bytes())
        }));
        out
    }

    fn load(db: &DB) -> Result<Option<Self>, ChainError> {
        let corrupt = |what: &str| ChainError::Storage(format!("corrupt record: {what}"));
        if db.get(key::EPOCH).map_err(storage)?.is_none() {
            return Ok(None);
        }
        let mut state = ChainState::default();
        let mut batches = BTreeMap::new();
        let mut deposits = BTreeMap::new();
        let mut sequencer_epochs = BTreeMap::new();
        let mut set_size = None;
        for item in db.iterator(IteratorMode::Start) {
            let (k, v) = item.map_err(storage)?;
            let k: &[u8] = &k;
            let v: &[u8] = &v;
            let number = |rest: &[u8]| -> Result<u64, ChainError> {
                Ok(u64::from_be_bytes(
                    rest.try_into().map_err(|_| corrupt("number key"))?,
                ))
            };
            let decode_err = |e: primitives::DecodeError| ChainError::Storage(e.to_string());
            if k == key::EPOCH {
                state.epoch = decode_all(v).map_err(decode_err)?;
            } else if k == key::ADMIN {
                if v.len() != 20 {
                    return Err(corrupt("admin"));
                }
                state.admin = Address::from_slice(v);
            } else if k == key::NONCE {
                state.admin_nonce = decode_all(v).map_err(decode_err)?;
            } else if k == key::CAP {
                state.stake_cap =
                    u128::from_be_bytes(v.try_into().map_err(|_| corrupt("stake cap"))?);
            } else if k == key::ACTIVE {
                state.sequencers = decode_all::<SequencerSet>(v).map_err(decode_err)?.0;
            } else if k == key::SEQUENCER_EPOCH_LENGTH {
                let length: u64 = decode_all(v).map_err(decode_err)?;
                state.sequencer_epoch_length = (length > 0).then_some(length);
            } else if k == key::SEQUENCER_SET_SIZE {
                set_size = Some(u32::from_be_bytes(
                    v.try_into().map_err(|_| corrupt("sequencer set size"))?,
                ));
            } else if k == key::DA_COMMITTEE {
                state.da_committee = Some(decode_all(v).map_err(decode_err)?);
            } else if k.starts_with(key::AVAILABILITY) {
                let record: AvailabilityRecord = decode_all(v).map_err(decode_err)?;
                state
                    .availability
                    .insert((record.kind, record.number), record);
            } else if let Some(rest) = k.strip_prefix(key::SEQUENCER_EPOCH) {
                let set = decode_all::<SequencerSet>(v).map_err(decode_err)?.0;
                sequencer_epochs.insert(number(rest)?, set);
            } else if k.starts_with(key::NODE) {
                let node: NodeRecord = decode_all(v).map_err(decode_err)?;
                state
                    .bls_keys
                    .insert(node.registration.bls_key.to_bytes(), node.id);
                state.nodes.insert(node.id, node);
            } else if k.starts_with(key::CANDIDATE) {
                let candidate: SequencerCandidate = decode_all(v).map_err(decode_err)?;
                state.candidates.insert(candidate.record.id, candidate);
            } else if let Some(rest) = k.strip_prefix(key::BATCH) {
                if v.len() != 32 {
                    return Err(corrupt("batch"));
                }
                batches.insert(number(rest)?, B256::from_slice(v));
            } else if k.starts_with(key::GROUP) {
                let root: GroupRootCommitment = decode_all(v).map_err(decode_err)?;
                state.group_roots.insert(root.group, root);
            } else if k.starts_with(key::SYNCED) {
                let synced: SyncedRoot = decode_all(v).map_err(decode_err)?;
                state.synced.insert(synced.node, synced);
            } else if k.starts_with(key::DEPARTURE) {
                let departure: Departure = decode_all(v).map_err(decode_err)?;
                state.departures.insert(departure.node, departure);
            } else if let Some(rest) = k.strip_prefix(key::EQUIVOCATION) {
                // The offender is only in the key: the evidence names an index, not an ID.
                if rest.len() != 20 {
                    return Err(corrupt("equivocation key"));
                }
                let evidence: EquivocationEvidence = decode_all(v).map_err(decode_err)?;
                state
                    .equivocations
                    .insert(NodeId(Address::from_slice(rest)), evidence);
            } else if k.starts_with(key::BROKEN_PRECONFIRMATION) {
                let promise: SignedPreconfirmation = decode_all(v).map_err(decode_err)?;
                state
                    .broken_preconfirmations
                    .insert(promise.preconfirmation.sequencer, promise);
            } else if let Some(rest) = k.strip_prefix(key::WALLET_CHANGE) {
                if rest.len() != 28 {
                    return Err(corrupt("wallet change key"));
                }
                let change: WalletChange = decode_all(v).map_err(decode_err)?;
                // Keys sort by node, then epoch: each node's changes load in order.
                state
                    .wallet_changes
                    .entry(NodeId(Address::from_slice(&rest[..20])))
                    .or_default()
                    .push(change);
            } else if let Some(rest) = k.strip_prefix(key::WALLET_NONCE) {
                if rest.len() != 20 {
                    return Err(corrupt("wallet nonce key"));
                }
                let nonce: u64 = decode_all(v).map_err(decode_err)?;
                state
                    .wallet_nonces
                    .insert(NodeId(Address::from_slice(rest)), nonce);
            } else if k.starts_with(key::SPONSOR_POLICY) {
                let policy: SponsorPolicyRecord = decode_all(v).map_err(decode_err)?;
                state.sponsor_policies.insert(policy.sponsor, policy);
            } else if let Some(rest) = k.strip_prefix(key::SPONSOR_NONCE) {
                if rest.len() != 20 {
                    return Err(corrupt("sponsor nonce key"));
                }
                let nonce: u64 = decode_all(v).map_err(decode_err)?;
                state
                    .sponsor_nonces
                    .insert(Address::from_slice(rest), nonce);
            } else if let Some(rest) = k.strip_prefix(key::DEPOSIT) {
                let deposit: Deposit = decode_all(v).map_err(decode_err)?;
                deposits.insert(number(rest)?, deposit);
            } else {
                return Err(corrupt("unknown key"));
            }
        }
        for (expected, (number, hash)) in (1u64..).zip(batches) {
            if number != expected {
                return Err(corrupt("batch sequence"));
            }
            state.batches.push(hash);
        }
        for (expected, (epoch, set)) in (0u64..).zip(sequencer_epochs) {
            if epoch != expected {
                return Err(corrupt("sequencer epochs"));
            }
            state.sequencer_epochs.push(set);
        }
        // A store written before sequencer epochs existed selects as many as it has active.
        state.sequencer_set_size =
            set_size.unwrap_or_else(|| u32::try_from(state.sequencers.len()).unwrap_or(u32::MAX));
        for (expected, (number, deposit)) in (0u64..).zip(deposits) {
            if number != expected || deposit.index != expected {
                return Err(corrupt("deposit sequence"));
            }
            state.deposits.push(deposit);
        }
        Ok(Some(state))
    }

    /// The set the next sequencer epoch boundary fixes, as the whitelist stands now.
    fn next_sequencer_set(&self) -> Vec<SequencerRecord> {
        select_sequencers(
            self.candidates.values(),
            self.stake_cap,
            self.sequencer_set_size as usize,
        )
    }

    fn sequencer_epoch(&self, epoch: u64) -> Option<SequencerEpoch> {
        match self.sequencer_epoch_length {
            None => (epoch == 0).then(|| SequencerEpoch {
                epoch: 0,
                first: 1,
                length: None,
                sequencers: self.sequencers.clone(),
            }),
            Some(length) => {
                let sequencers = self.sequencer_epochs.get(usize::try_from(epoch).ok()?)?;
                Some(SequencerEpoch {
                    epoch,
                    first: epoch * length + 1,
                    length: Some(length),
                    sequencers: sequencers.clone(),
                })
            }
        }
    }

    fn active_keys(&self, members: &[NodeId], epoch: u64) -> Result<Vec<BlsPublicKey>, ChainError> {
        let mut keys = Vec::with_capacity(members.len());
        for (index, member) in members.iter().enumerate() {
            if members[..index].contains(member) {
                return Err(ChainError::DuplicateMember(*member));
            }
            let node = self
                .nodes
                .get(member)
                .filter(|node| node.active_in(epoch))
                .ok_or(ChainError::UnknownMember(*member))?;
            keys.push(node.registration.bls_key);
        }
        Ok(keys)
    }
}

fn storage(error: rocksdb::Error) -> ChainError {
    ChainError::Storage(error.to_string())
}

/// The in-process upper chain of the devnet: in memory ([`EmbeddedChain::new`]) or persisted in
/// RocksDB ([`EmbeddedChain::open`]). Every change is written (synced) to the store before it
/// becomes visible; a refused call writes nothing.
pub struct EmbeddedChain {
    state: Mutex<ChainState>,
    db: Option<DB>,
}

impl std::fmt::Debug for EmbeddedChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedChain")
            .field("persistent", &self.db.is_some())
            .field("epoch", &self.state.lock().epoch)
            .finish()
    }
}

impl Default for EmbeddedChain {
    fn default() -> Self {
        EmbeddedChain::new(Vec::new())
    }
}

/// Writes to the store, then applies to memory.
struct Change {
    batch: WriteBatch,
}

impl Change {
    fn new() -> Self {
        Change {
            batch: WriteBatch::default(),
        }
    }

    fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        self.batch.put(key, value);
    }

    fn delete(&mut self, key: impl AsRef<[u8]>) {
        self.batch.delete(key);
    }
}

impl EmbeddedChain {
    /// An in-memory chain whose sequencer set is `sequencers` (the admin whitelist at genesis),
    /// without an admin.
    pub fn new(sequencers: Vec<SequencerRecord>) -> Self {
        EmbeddedChain::with_genesis(&Genesis {
            sequencers,
            ..Genesis::default()
        })
    }

    /// An in-memory chain from `genesis`.
    pub fn with_genesis(genesis: &Genesis) -> Self {
        EmbeddedChain {
            state: Mutex::new(ChainState::from_genesis(genesis)),
            db: None,
        }
    }

    /// Opens the chain stored at `path`, creating it from `genesis` if there is none (an existing
    /// chain keeps its own genesis; `genesis` is then ignored).
    pub fn open(path: impl AsRef<Path>, genesis: &Genesis) -> Result<Self, ChainError> {
        let mut options = Options::default();
        options.create_if_missing(true);
        let db = DB::open(&options, path).map_err(storage)?;
        let state = match ChainState::load(&db)? {
            Some(state) => state,
            None => {
                let state = ChainState::from_genesis(genesis);
                let mut batch = WriteBatch::default();
                for (k, v) in state.records() {
                    batch.put(k, v);
                }
                db.write_opt(batch, &sync_write()).map_err(storage)?;
                state
            }
        };
        Ok(EmbeddedChain {
            state: Mutex::new(state),
            db: Some(db),
        })
    }

    fn commit(&self, change: Change) -> Result<(), ChainError> {
        if let Some(db) = &self.db {
            db.write_opt(change.batch, &sync_write()).map_err(storage)?;
        }
        Ok(())
    }

    /// Moves to the next epoch: nodes registered so far join the groups. (The in-process owner's
    /// shortcut; over the interface this is [`AdminOp::AdvanceEpoch`].)
    ///
    /// # Panics
    /// If the store cannot be written.
    pub fn advance_epoch(&self) -> u64 {
        self.try_advance_epoch().expect("store the new epoch")
    }

    /// [`EmbeddedChain::advance_epoch`], reporting a store failure.
    pub fn try_advance_epoch(&self) -> Result<u64, ChainError> {
        let mut state = self.state.lock();
        let epoch = state.epoch + 1;
        let mut change = Change::new();
        change.put(key::EPOCH, epoch.to_bytes());
        self.commit(change)?;
        state.epoch = epoch;
        Ok(epoch)
    }

    /// A bridge deposit made on this chain by `from` (what a user's deposit transaction is on a
    /// real chain); returns it with its index.
    pub fn deposit(
        &self,
        from: Address,
        recipient: Address,
        amount: U256,
    ) -> Result<Deposit, ChainError> {
        let mut state = self.state.lock();
        let deposit = Deposit {
            index: state.deposits.len() as u64,
            from,
            recipient,
            amount,
        };
        let mut change = Change::new();
        change.put(key::number(key::DEPOSIT, deposit.index), deposit.to_bytes());
        self.commit(change)?;
        state.deposits.push(deposit.clone());
        Ok(deposit)
    }
}

fn sync_write() -> WriteOptions {
    let mut options = WriteOptions::default();
    options.set_sync(true);
    options
}

fn rotate(
    candidates: &BTreeMap<NodeId, SequencerCandidate>,
    cap: u128,
    size: usize,
) -> Vec<SequencerRecord> {
    select_sequencers(candidates.values(), cap, size)
}

impl EmbeddedChain {
    /// Records `commitment` if `certificate` is a quorum of `members` over `message`.
    fn commit_group_root_over(
        &self,
        commitment: GroupRootCommitment,
        message: &[u8],
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        let mut state = self.state.lock();
        if commitment.epoch > state.epoch {
            return Err(ChainError::BadEpoch {
                got: commitment.epoch,
                current: state.epoch,
            });
        }
        let keys = state.active_keys(members, commitment.epoch)?;
        if group_id(members) != commitment.group {
            return Err(ChainError::UnknownMember(
                members.first().copied().unwrap_or_default(),
            ));
        }
        certificate.verify(message, &keys, quorum(keys.len()))?;
        let newer = state
            .group_roots
            .get(&commitment.group)
            .is_none_or(|existing| existing.batch < commitment.batch);
        if newer {
            let mut change = Change::new();
            change.put(key::group(&commitment.group), commitment.to_bytes());
            self.commit(change)?;
            state.group_roots.insert(commitment.group, commitment);
        }
        Ok(())
    }
}

impl UpperChain for EmbeddedChain {
    fn register_node(
        &self,
        registration: Registration,
        signature: &Signature,
    ) -> Result<NodeId, ChainError> {
        let id = NodeId(signature.recover_address(&registration.signing_hash())?);
        let mut state = self.state.lock();
        if state.nodes.contains_key(&id) {
            return Err(ChainError::AlreadyRegistered(id));
        }
        let key_bytes = registration.bls_key.to_bytes();
        if state.bls_keys.contains_key(&key_bytes) {
            return Err(ChainError::BlsKeyTaken);
        }
        registration
            .bls_key
            .verify_possession(&registration.bls_possession)
            .map_err(|_| ChainError::BadPossession)?;
        let record = NodeRecord {
            id,
            registration,
            active_from_epoch: state.epoch + 1,
            left_at_epoch: None,
        };
        let mut change = Change::new();
        change.put(key::node(key::NODE, &id), record.to_bytes());
        self.commit(change)?;
        state.bls_keys.insert(key_bytes, id);
        state.nodes.insert(id, record);
        Ok(id)
    }

    fn registry_snapshot(&self, epoch: u64) -> Result<RegistrySnapshot, ChainError> {
        let state = self.state.lock();
        let nodes = state
            .nodes
            .values()
            .filter(|node| node.active_in(epoch))
            .map(|node| {
                let mut record = NodeRecord {
                    // A snapshot shows the registry as of its epoch, not later departures.
                    left_at_epoch: None,
                    ..node.clone()
                };
                if let Some(changes) = state.wallet_changes.get(&node.id) {
                    wallet_as_of(&mut record, changes, epoch);
                }
                record
            })
            .collect();
        Ok(RegistrySnapshot { epoch, nodes })
    }

    fn epoch(&self) -> Result<u64, ChainError> {
        Ok(self.state.lock().epoch)
    }

    fn sequencer_set(&self) -> Result<Vec<SequencerRecord>, ChainError> {
        let state = self.state.lock();
        Ok(match state.sequencer_epochs.last() {
            Some(latest) => latest.clone(),
            None => state.sequencers.clone(),
        })
    }

    fn sequencer_epoch(&self, epoch: u64) -> Result<Option<SequencerEpoch>, ChainError> {
        Ok(self.state.lock().sequencer_epoch(epoch))
    }

    fn commit_batch(
        &self,
        number: u64,
        batch_hash: B256,
        commit_message: &[u8],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        let mut state = self.state.lock();
        let expected = state.batches.len() as u64 + 1;
        if number != expected {
            return Err(ChainError::BatchOutOfOrder {
                expected,
                got: number,
            });
        }
        let Some(length) = state.sequencer_epoch_length else {
            let keys: Vec<BlsPublicKey> = state.sequencers.iter().map(|s| s.bls_key).collect();
            certificate.verify(commit_message, &keys, quorum(keys.len()))?;
            let mut change = Change::new();
            change.put(key::number(key::BATCH, number), batch_hash);
            self.commit(change)?;
            state.batches.push(batch_hash);
            return Ok(());
        };
        let (_, sequence, _) = primitives::pbft::parse_commit_message(commit_message)
            .ok_or(ChainError::BadCommitMessage)?;
        let epoch = sequencer_epoch_of(Some(length), sequence);
        let set = state
            .sequencer_epochs
            .get(epoch as usize)
            .ok_or(ChainError::UnknownSequencerEpoch(epoch))?;
        let keys: Vec<BlsPublicKey> = set.iter().map(|s| s.bls_key).collect();
        certificate.verify(commit_message, &keys, quorum(keys.len()))?;
        let mut change = Change::new();
        change.put(key::number(key::BATCH, number), batch_hash);
        // The commitment of an epoch's last sequence fixes the next epoch's set, from the
        // whitelist as it stands now (an empty whitelist fixes nothing: no set can decide).
        let next = (sequence == (epoch + 1) * length
            && state.sequencer_epochs.len() as u64 == epoch + 1)
            .then(|| state.next_sequencer_set())
            .filter(|next| !next.is_empty());
        if let Some(next) = &next {
            change.put(
                key::number(key::SEQUENCER_EPOCH, epoch + 1),
                SequencerSet(next.clone()).to_bytes(),
            );
        }
        self.commit(change)?;
        state.batches.push(batch_hash);
        if let Some(next) = next {
            state.sequencer_epochs.push(next);
        }
        Ok(())
    }

    fn commit_group_root(
        &self,
        commitment: GroupRootCommitment,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        let message = commitment.signing_bytes();
        self.commit_group_root_over(commitment, &message, members, certificate)
    }

    fn commit_group_root_decided(
        &self,
        commitment: GroupRootCommitment,
        decision: GroupDecision,
        members: &[NodeId],
        certificate: &Certificate,
    ) -> Result<(), ChainError> {
        let message = commitment.commit_message(decision.view, decision.sequence);
        self.commit_group_root_over(commitment, &message, members, certificate)
    }

    fn last_batch(&self) -> Result<u64, ChainError> {
        Ok(self.state.lock().batches.len() as u64)
    }

    fn group_root(&self, group: &B256) -> Result<Option<GroupRootCommitment>, ChainError> {
        Ok(self.state.lock().group_roots.get(group).cloned())
    }

    fn batch_hash(&self, number: u64) -> Result<Option<B256>, ChainError> {
        let state = self.state.lock();
        Ok(number
            .checked_sub(1)
            .and_then(|index| state.batches.get(index as usize).copied()))
    }

    fn record_synced_root(
        &self,
        synced: SyncedRoot,
        signature: &Signature,
    ) -> Result<(), ChainError> {
        let signer = signature.recover_address(&synced.signing_hash())?;
        if signer != synced.node.0 {
            return Err(ChainError::WrongSigner {
                node: synced.node,
                signer,
            });
        }
        let mut state = self.state.lock();
        let node = state
            .nodes
            .get(&synced.node)
            .ok_or(ChainError::NotRegistered(synced.node))?;
        if node.left_at_epoch.is_some() {
            return Err(ChainError::AlreadyDeparted(synced.node));
        }
        if let Some(existing) = state.synced.get(&synced.node)
            && existing.batch > synced.batch
        {
            return Err(ChainError::Stale {
                recorded: existing.batch,
                got: synced.batch,
            });
        }
        let mut change = Change::new();
        change.put(key::node(key::SYNCED, &synced.node), synced.to_bytes());
        self.commit(change)?;
        state.synced.insert(synced.node, synced);
        Ok(())
    }

    fn synced_root(&self, node: &NodeId) -> Result<Option<SyncedRoot>, ChainError> {
        Ok(self.state.lock().synced.get(node).cloned())
    }

    fn update_wallet(&self, update: WalletUpdate, signature: &Signature) -> Result<(), ChainError> {
        let signer = signature.recover_address(&update.signing_hash())?;
        if signer != update.node.0 {
            return Err(ChainError::WrongSigner {
                node: update.node,
                signer,
            });
        }
        let mut state = self.state.lock();
        let node = state
            .nodes
            .get(&update.node)
            .ok_or(ChainError::NotRegistered(update.node))?;
        if node.left_at_epoch.is_some() {
            return Err(ChainError::AlreadyDeparted(update.node));
        }
        let expected = state.wallet_nonces.get(&update.node).copied().unwrap_or(0);
        if update.nonce != expected {
            return Err(ChainError::WalletNonce {
                expected,
                got: update.nonce,
            });
        }
        let wallet = WalletChange {
            // Never before the node's first epoch, so its first epoch has one wallet only.
            from_epoch: (state.epoch + 1).max(node.active_from_epoch),
            reward_wallet: update.reward_wallet,
            wallet_features: update.wallet_features,
        };
        let next = expected + 1;
        let mut change = Change::new();
        change.put(
            key::wallet_change(&update.node, wallet.from_epoch),
            wallet.to_bytes(),
        );
        change.put(key::node(key::WALLET_NONCE, &update.node), next.to_bytes());
        self.commit(change)?;
        let changes = state.wallet_changes.entry(update.node).or_default();
        // A second change in one epoch replaces the first: it is the one in force.
        changes.retain(|earlier| earlier.from_epoch != wallet.from_epoch);
        changes.push(wallet);
        state.wallet_nonces.insert(update.node, next);
        Ok(())
    }

    fn wallet_nonce(&self, node: &NodeId) -> Result<u64, ChainError> {
        Ok(self
            .state
            .lock()
            .wallet_nonces
            .get(node)
            .copied()
            .unwrap_or(0))
    }

    fn set_sponsor_policy(
        &self,
        update: SponsorPolicyUpdate,
        signature: &Signature,
    ) -> Result<(), ChainError> {
        let signer = signature.recover_address(&update.signing_hash())?;
        if signer != update.sponsor {
            return Err(ChainError::NotSponsor {
                sponsor: update.sponsor,
                signer,
            });
        }
        let mut state = self.state.lock();
        let expected = state
            .sponsor_nonces
            .get(&update.sponsor)
            .copied()
            .unwrap_or(0);
        if update.nonce != expected {
            return Err(ChainError::SponsorNonce {
                expected,
                got: update.nonce,
            });
        }
        let next = expected + 1;
        let policy_key = key::with(key::SPONSOR_POLICY, update.sponsor.as_slice());
        let record = update.terms.map(|terms| SponsorPolicyRecord {
            sponsor: update.sponsor,
            terms,
            nonce: update.nonce,
        });
        let mut change = Change::new();
        match &record {
            Some(record) => change.put(&policy_key, record.to_bytes()),
            None => change.delete(&policy_key),
        }
        change.put(
            key::with(key::SPONSOR_NONCE, update.sponsor.as_slice()),
            next.to_bytes(),
        );
        self.commit(change)?;
        match record {
            Some(record) => state.sponsor_policies.insert(update.sponsor, record),
            None => state.sponsor_policies.remove(&update.sponsor),
        };
        state.sponsor_nonces.insert(update.sponsor, next);
        Ok(())
    }

    fn sponsor_nonce(&self, sponsor: &Address) -> Result<u64, ChainError> {
        Ok(self
            .state
            .lock()
            .sponsor_nonces
            .get(sponsor)
            .copied()
            .unwrap_or(0))
    }

    fn sponsor_policies(&self) -> Result<Vec<SponsorPolicyRecord>, ChainError> {
        Ok(self
            .state
            .lock()
            .sponsor_policies
            .values()
            .cloned()
            .collect())
    }

    fn da_committee(&self) -> Result<Option<DaCommittee>, ChainError> {
        Ok(self.state.lock().da_committee.clone())
    }

    fn record_availability(&self, record: AvailabilityRecord) -> Result<(), ChainError> {
        let mut state = self.state.lock();
        let committee = state.da_committee.as_ref().ok_or_else(|| {
            ChainError::Unsupported("this chain has no strong-DA committee".into())
        })?;
        record.certificate.verify(
            &primitives::da::availability_message(&record.commitment),
            &committee.keys,
            committee.quorum as usize,
        )?;
        if let Some(recorded) = state.availability.get(&(record.kind, record.number)) {
            if recorded.commitment == record.commitment {
                return Ok(());
            }
            return Err(ChainError::AvailabilityConflict {
                kind: record.kind,
                number: record.number,
                recorded: recorded.commitment,
            });
        }
        let mut change = Change::new();
        change.put(
            key::availability(record.kind, record.number),
            record.to_bytes(),
        );
        self.commit(change)?;
        state
            .availability
            .insert((record.kind, record.number), record);
        Ok(())
    }

    fn availability(
        &self,
        kind: AvailabilityKind,
        number: u64,
    ) -> Result<Option<AvailabilityRecord>, ChainError> {
        Ok(self.state.lock().availability.get(&(kind, number)).cloned())
    }

    fn record_departure(
        &self,
        departure: Departure,
        proof: &DepartureProof,
    ) -> Result<(), ChainError> {
        // The proof must be of the departure's kind (the contract has one function for each).
        if !matches!(
            (departure.kind, proof),
            (DepartureKind::Exit, DepartureProof::NodeSignature(_))
                | (
                    DepartureKind::Eviction,
                    DepartureProof::GroupCertificate { .. }
                )
        ) {
            return Err(ChainError::BadDepartureProof);
        }
        let mut state = self.state.lock();
        if departure.epoch <= state.epoch {
            return Err(ChainError::BadEpoch {
                got: departure.epoch,
                current: state.epoch,
            });
        }
        let node = state
            .nodes
            .get(&departure.node)
            .ok_or(ChainError::NotRegistered(departure.node))?;
        if node.left_at_epoch.is_some() {
            return Err(ChainError::AlreadyDeparted(departure.node));
        }
        match (departure.kind, proof) {
            (DepartureKind::Exit, DepartureProof::NodeSignature(signature)) => {
                let signer = signature.recover_address(&departure.signing_hash())?;
                if signer != departure.node.0 {
                    return Err(ChainError::WrongSigner {
                        node: departure.node,
                        signer,
                    });
                }
            }
            (
                DepartureKind::Eviction,
                DepartureProof::GroupCertificate {
                    members,
                    certificate,
                },
            ) => {
                if !members.contains(&departure.node) {
                    return Err(ChainError::BadDepartureProof);
                }
                let keys = state.active_keys(members, state.epoch)?;
                certificate.verify(&departure.signing_bytes(), &keys, quorum(keys.len()))?;
            }
            _ => return Err(ChainError::BadDepartureProof),
        }
        let mut record = node.clone();
        record.left_at_epoch = Some(departure.epoch);
        let mut change = Change::new();
        change.put(key::node(key::NODE, &record.id), record.to_bytes());
        change.put(
            key::node(key::DEPARTURE, &departure.node),
            departure.to_bytes(),
        );
        self.commit(change)?;
        state.nodes.insert(record.id, record);
        state.departures.insert(departure.node, departure);
        Ok(())
    }

    fn departure(&self, node: &NodeId) -> Result<Option<Departure>, ChainError> {
        Ok(self.state.lock().departures.get(node).cloned())
    }

    fn admin(&self, op: AdminOp, signature: &Signature) -> Result<(), ChainError> {
        let mut state = self.state.lock();
        let signer = signature.recover_address(&op.signing_hash(state.admin_nonce))?;
        if signer != state.admin || state.admin == Address::ZERO {
            return Err(ChainError::NotAdmin(signer));
        }
        let mut change = Change::new();
        let nonce = state.admin_nonce + 1;
        change.put(key::NONCE, nonce.to_bytes());
        match op {
            AdminOp::Whitelist {
                record,
                possession,
                stake,
            } => {
                if state.expelled(&record.id) {
                    return Err(ChainError::Expelled(record.id));
                }
                if state.candidates.contains_key(&record.id) {
                    return Err(ChainError::AlreadyWhitelisted(record.id));
                }
                if stake > state.stake_cap {
                    return Err(ChainError::StakeCapExceeded {
                        stake,
                        cap: state.stake_cap,
                    });
                }
                record
                    .bls_key
                    .verify_possession(&possession)
                    .map_err(|_| ChainError::BadPossession)?;
                let candidate = SequencerCandidate { record, stake };
                change.put(
                    key::node(key::CANDIDATE, &candidate.record.id),
                    candidate.to_bytes(),
                );
                self.commit(change)?;
                state.candidates.insert(candidate.record.id, candidate);
            }
            AdminOp::Remove(id) => {
                if !state.candidates.contains_key(&id) {
                    return Err(ChainError::UnknownSequencer(id));
                }
                let active: Vec<SequencerRecord> = state
                    .sequencers
                    .iter()
                    .filter(|s| s.id != id)
                    .cloned()
                    .collect();
                change.batch.delete(key::node(key::CANDIDATE, &id));
                change.put(key::ACTIVE, SequencerSet(active.clone()).to_bytes());
                self.commit(change)?;
                state.candidates.remove(&id);
                state.sequencers = active;
            }
            AdminOp::SetStakeCap(cap) => {
                change.put(key::CAP, cap.to_be_bytes());
                self.commit(change)?;
                state.stake_cap = cap;
            }
            AdminOp::Rotate { size } => {
                let candidates = state.candidates.len() as u32;
                if size == 0 || size > candidates {
                    return Err(ChainError::BadRotation { size, candidates });
                }
                let active = rotate(&state.candidates, state.stake_cap, size as usize);
                change.put(key::ACTIVE, SequencerSet(active.clone()).to_bytes());
                change.put(key::SEQUENCER_SET_SIZE, size.to_be_bytes());
                self.commit(change)?;
                state.sequencers = active;
                state.sequencer_set_size = size;
            }
            AdminOp::AdvanceEpoch => {
                let epoch = state.epoch + 1;
                change.put(key::EPOCH, epoch.to_bytes());
                self.commit(change)?;
                state.epoch = epoch;
            }
        }
        state.admin_nonce = nonce;
        Ok(())
    }

    fn admin_nonce(&self) -> Result<u64, ChainError> {
        Ok(self.state.lock().admin_nonce)
    }

    fn sequencer_candidates(&self) -> Result<Vec<SequencerCandidate>, ChainError> {
        Ok(self.state.lock().candidates.values().cloned().collect())
    }

    fn stake_cap(&self) -> Result<u128, ChainError> {
        Ok(self.state.lock().stake_cap)
    }

    fn deposits_since(&self, from: u64, limit: usize) -> Result<Vec<Deposit>, ChainError> {
        let state = self.state.lock();
        Ok(state
            .deposits
            .iter()
            .skip(from as usize)
            .take(limit)
            .cloned()
            .collect())
    }

    fn report_equivocation(
        &self,
        evidence: &EquivocationEvidence,
        offender: NodeId,
    ) -> Result<(), ChainError> {
        let mut state = self.state.lock();
        // Checked first: an expelled sequencer is off the whitelist, and every correct sequencer
        // that saw the offence reports it, so this is the expected answer to all but the first.
        if state.equivocations.contains_key(&offender) {
            return Err(ChainError::EquivocationRecorded(offender));
        }
        let candidate = state
            .candidates
            .get(&offender)
            .ok_or(ChainError::UnknownSequencer(offender))?;
        evidence.verify(&offender, &candidate.record.bls_key)?;
        // It leaves the whitelist now and the active set at the next rotation (see the trait).
        let mut change = Change::new();
        change.batch.delete(key::node(key::CANDIDATE, &offender));
        change.put(key::node(key::EQUIVOCATION, &offender), evidence.to_bytes());
        self.commit(change)?;
        state.candidates.remove(&offender);
        state.equivocations.insert(offender, evidence.clone());
        Ok(())
    }

    fn equivocations(&self) -> Result<Vec<(NodeId, EquivocationEvidence)>, ChainError> {
        Ok(self
            .state
            .lock()
            .equivocations
            .iter()
            .map(|(id, evidence)| (*id, evidence.clone()))
            .collect())
    }

    fn report_broken_preconfirmation(
        &self,
        evidence: &PreconfirmationEvidence,
    ) -> Result<(), ChainError> {
        let offender = evidence.offender();
        let mut state = self.state.lock();
        if state.expelled(&offender) {
            return Err(ChainError::Expelled(offender));
        }
        if !state.candidates.contains_key(&offender) {
            return Err(ChainError::UnknownSequencer(offender));
        }
        // The only state the check reads: the batch hashes this chain committed, each checked
        // against its epoch's certificate when it was.
        evidence.verify(|number| {
            number
                .checked_sub(1)
                .and_then(|index| state.batches.get(index as usize).copied())
        })?;
        // Expelled as an equivocator is: off the whitelist now, out of the next epoch's set.
        let mut change = Change::new();
        change.batch.delete(key::node(key::CANDIDATE, &offender));
        change.put(
            key::node(key::BROKEN_PRECONFIRMATION, &offender),
            evidence.preconfirmation.to_bytes(),
        );
        self.commit(change)?;
        state.candidates.remove(&offender);
        state
            .broken_preconfirmations
            .insert(offender, evidence.preconfirmation.clone());
        Ok(())
    }

    fn broken_preconfirmations(&self) -> Result<Vec<(NodeId, SignedPreconfirmation)>, ChainError> {
        Ok(self
            .state
            .lock()
            .broken_preconfirmations
            .iter()
            .map(|(id, promise)| (*id, promise.clone()))
            .collect())
    }
}
