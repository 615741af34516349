//! What a node did in one epoch, signed by it and checked against what others saw.
//!
//! A node's own claim is not enough to be paid on. Figures that others witness (moves executed
//! and group rounds joined, seen by the node's group; bytes relayed, seen by the peers relayed
//! for; DA chunks stored, seen by the dispersers) are accepted only as far as the witnesses
//! corroborate them: the accepted value is the lower of the claim and the median of the
//! witnesses' observations. A node serving in several groups is seen by each group's members
//! only for that group's work, so observations may name their group: the median is then taken
//! per group and the medians are summed. Figures no one else can see (state held, uptime) are accepted as
//! claimed but bounded by what the network expects of a member (an epoch's length of uptime).

use std::collections::BTreeMap;

use primitives::{Address, B256, NodeId, Signature, keccak256};
use serde::{Deserialize, Serialize};

/// One usage figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Figure {
    /// Moves the node executed as a member of their group.
    MovesExecuted,
    /// Group BFT rounds the node took part in.
    GroupRounds,
    /// Bytes of state the node held at the epoch's end.
    StateBytes,
    /// Bytes the node relayed for peers behind NAT.
    RelayedBytes,
    /// Strong-DA chunks the node stored.
    DaChunks,
    /// Seconds the node was up and reachable.
    UptimeSeconds,
}

impl Figure {
    /// Every figure, in report order.
    pub const ALL: [Figure; 6] = [
        Figure::MovesExecuted,
        Figure::GroupRounds,
        Figure::StateBytes,
        Figure::RelayedBytes,
        Figure::DaChunks,
        Figure::UptimeSeconds,
    ];

    /// The figure's name in rate files, CSV headers and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Figure::MovesExecuted => "moves_executed",
            Figure::GroupRounds => "group_rounds",
            Figure::StateBytes => "state_bytes",
            Figure::RelayedBytes => "relayed_bytes",
            Figure::DaChunks => "da_chunks",
            Figure::UptimeSeconds => "uptime_seconds",
        }
    }

    /// Whether other nodes witness this figure (and so must corroborate it).
    pub fn witnessed(self) -> bool {
        !matches!(self, Figure::StateBytes | Figure::UptimeSeconds)
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Figure::MovesExecuted => 0,
            Figure::GroupRounds => 1,
            Figure::StateBytes => 2,
            Figure::RelayedBytes => 3,
            Figure::DaChunks => 4,
            Figure::UptimeSeconds => 5,
        }
    }
}

/// The six usage figures of a node over some span.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// See [`Figure::MovesExecuted`].
    pub moves_executed: u64,
    /// See [`Figure::GroupRounds`].
    pub group_rounds: u64,
    /// See [`Figure::StateBytes`].
    pub state_bytes: u64,
    /// See [`Figure::RelayedBytes`].
    pub relayed_bytes: u64,
    /// See [`Figure::DaChunks`].
    pub da_chunks: u64,
    /// See [`Figure::UptimeSeconds`].
    pub uptime_seconds: u64,
}

impl Usage {
    /// One figure.
    pub fn get(&self, figure: Figure) -> u64 {
        match figure {
            Figure::MovesExecuted => self.moves_executed,
            Figure::GroupRounds => self.group_rounds,
            Figure::StateBytes => self.state_bytes,
            Figure::RelayedBytes => self.relayed_bytes,
            Figure::DaChunks => self.da_chunks,
            Figure::UptimeSeconds => self.uptime_seconds,
        }
    }

    /// Sets one figure.
    pub fn set(&mut self, figure: Figure, value: u64) {
        let slot = match figure {
            Figure::MovesExecuted => &mut self.moves_executed,
            Figure::GroupRounds => &mut self.group_rounds,
            Figure::StateBytes => &mut self.state_bytes,
            Figure::RelayedBytes => &mut self.relayed_bytes,
            Figure::DaChunks => &mut self.da_chunks,
            Figure::UptimeSeconds => &mut self.uptime_seconds,
        };
        *slot = value;
    }

    /// Adds another span's figures (saturating). State held is a level, not a flow, so a sum
    /// over epochs is "byte-epochs": what a per-byte-per-epoch rate multiplies.
    pub fn add(&mut self, other: &Usage) {
        for figure in Figure::ALL {
            self.set(figure, self.get(figure).saturating_add(other.get(figure)));
        }
    }
}

/// A node's claim of what it did in one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageReport {
    /// The node (its operator key's address).
    pub node: Address,
    /// The epoch.
    pub epoch: u64,
    /// What it claims.
    pub usage: Usage,
}

impl UsageReport {
    /// The hash the node key signs.
    pub fn signing_hash(&self) -> primitives::B256 {
        let mut out = b"tickrate:usage".to_vec();
        out.extend_from_slice(self.node.as_slice());
        out.extend_from_slice(&self.epoch.to_be_bytes());
        for figure in Figure::ALL {
            out.extend_from_slice(&self.usage.get(figure).to_be_bytes());
        }
        keccak256(&out)
    }

    /// Signs the report with the node's key.
    pub fn sign(self, key: &primitives::AccountKey) -> SignedUsage {
        let signature = key.sign_prehash(&self.signing_hash());
        SignedUsage {
            report: self,
            signature: primitives::Bytes::copy_from_slice(&signature.0),
        }
    }
}

/// A usage report with the node's signature, as nodes write it and the report command reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedUsage {
    /// The claim.
    pub report: UsageReport,
    /// `r || s || v` over [`UsageReport::signing_hash`].
    pub signature: primitives::Bytes,
}

/// Why a usage report or observation is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The signature is not 65 bytes or recovers to no key.
    #[error("usage report of {node} for epoch {epoch}: bad signature")]
    BadSignature {
        /// The node named in the report.
        node: Address,
        /// The epoch.
        epoch: u64,
    },
    /// The signature recovers to another key than the node's.
    #[error("usage report of {node} for epoch {epoch} is signed by {signer}")]
    WrongSigner {
        /// The node named in the report.
        node: Address,
        /// The epoch.
        epoch: u64,
        /// Who signed it.
        signer: Address,
    },
    /// Two different reports of one node for one epoch.
    #[error("two different usage reports of {node} for epoch {epoch}")]
    Conflicting {
        /// The node.
        node: Address,
        /// The epoch.
        epoch: u64,
    },
    /// A node witnessing its own work.
    #[error("{node} cannot witness its own usage")]
    SelfWitness {
        /// The node.
        node: Address,
    },
}

impl SignedUsage {
    /// Checks that the node named in the report signed it.
    pub fn verify(&self) -> Result<&UsageReport, UsageError> {
        let report = &self.report;
        let bad = || UsageError::BadSignature {
            node: report.node,
            epoch: report.epoch,
        };
        let bytes: [u8; 65] = self.signature.as_ref().try_into().map_err(|_| bad())?;
        let signer = Signature(bytes)
            .recover_address(&report.signing_hash())
            .map_err(|_| bad())?;
        if signer != report.node {
            return Err(UsageError::WrongSigner {
                node: report.node,
                epoch: report.epoch,
                signer,
            });
        }
        Ok(report)
    }
}

/// What one node saw of another's work in an epoch (a group member counting the rounds a peer
/// joined, a peer counting the bytes a relay forwarded for it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    /// Who saw it.
    pub witness: Address,
    /// Whose work.
    pub subject: Address,
    /// The epoch.
    pub epoch: u64,
    /// Which figure (its [`Figure::name`]).
    pub figure: FigureName,
    /// The value seen.
    pub value: u64,
    /// The group in which it was seen, for work a node does in several groups (each group's
    /// members see only their group's share); absent for work seen whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<B256>,
}

/// A [`Figure`] as it is written in files.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FigureName {
    /// [`Figure::MovesExecuted`].
    MovesExecuted,
    /// [`Figure::GroupRounds`].
    GroupRounds,
    /// [`Figure::StateBytes`].
    StateBytes,
    /// [`Figure::RelayedBytes`].
    RelayedBytes,
    /// [`Figure::DaChunks`].
    DaChunks,
    /// [`Figure::UptimeSeconds`].
    UptimeSeconds,
}

impl From<FigureName> for Figure {
    fn from(name: FigureName) -> Figure {
        match name {
            FigureName::MovesExecuted => Figure::MovesExecuted,
            FigureName::GroupRounds => Figure::GroupRounds,
            FigureName::StateBytes => Figure::StateBytes,
            FigureName::RelayedBytes => Figure::RelayedBytes,
            FigureName::DaChunks => Figure::DaChunks,
            FigureName::UptimeSeconds => Figure::UptimeSeconds,
        }
    }
}

impl From<Figure> for FigureName {
    fn from(figure: Figure) -> FigureName {
        match figure {
            Figure::MovesExecuted => FigureName::MovesExecuted,
            Figure::GroupRounds => FigureName::GroupRounds,
            Figure::StateBytes => FigureName::StateBytes,
            Figure::RelayedBytes => FigureName::RelayedBytes,
            Figure::DaChunks => FigureName::DaChunks,
            Figure::UptimeSeconds => FigureName::UptimeSeconds,
        }
    }
}

/// A figure whose accepted value differs from the claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discrepancy {
    /// The node.
    pub node: Address,
    /// The epoch.
    pub epoch: u64,
    /// The figure.
    pub figure: Figure,
    /// What the node claimed.
    pub claimed: u64,
    /// What was accepted.
    pub accepted: u64,
}

/// The usage of an epoch range after checking: accepted figures per node and every place a
/// claim was cut.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsageSummary {
    /// Accepted usage per node, summed over the epochs.
    pub per_node: BTreeMap<NodeId, Usage>,
    /// Accepted usage per node and epoch (a report splits a node's epochs by the wallet in
    /// force in each).
    pub per_epoch: BTreeMap<(NodeId, u64), Usage>,
    /// Claims cut to what witnesses saw (or to the epoch's length for uptime).
    pub discrepancies: Vec<Discrepancy>,
    /// Reports refused outright, with why.
    pub refused: Vec<UsageError>,
}

impl UsageSummary {
    /// The accepted usage of `node` over `epochs`.
    pub fn between(&self, node: &NodeId, epochs: std::ops::RangeInclusive<u64>) -> Usage {
        let mut total = Usage::default();
        for (_, usage) in self
            .per_epoch
            .range((*node, *epochs.start())..=(*node, *epochs.end()))
        {
            total.add(usage);
        }
        total
    }
}

/// Checks signed reports against observations and sums the accepted figures per node.
///
/// `epoch_seconds` bounds a claimed uptime. Reports outside `epochs` are ignored; a report
/// with a bad signature, or a second different report of the same node and epoch, is refused
/// (both conflicting reports are, so a node gains nothing from equivocating).
pub fn summarise(
    epochs: std::ops::RangeInclusive<u64>,
    epoch_seconds: u64,
    reports: &[SignedUsage],
    observations: &[Observation],
) -> UsageSummary {
    let mut summary = UsageSummary::default();
    let mut claims: BTreeMap<(Address, u64), Option<UsageReport>> = BTreeMap::new();
    for signed in reports {
        if !epochs.contains(&signed.report.epoch) {
            continue;
        }
        match signed.verify() {
            Ok(report) => {
                let key = (report.node, report.epoch);
                match claims.get(&key) {
                    None => {
                        claims.insert(key, Some(*report));
                    }
                    Some(Some(earlier)) if earlier == report => {}
                    Some(Some(_)) => {
                        summary.refused.push(UsageError::Conflicting {
                            node: report.node,
                            epoch: report.epoch,
                        });
                        claims.insert(key, None);
                    }
                    Some(None) => {}
                }
            }
            Err(error) => summary.refused.push(error),
        }
    }

    // Witnessed values per (subject, epoch, figure), per group (`None`: seen whole), one per
    // witness (its largest).
    type Seen = BTreeMap<Option<B256>, BTreeMap<Address, u64>>;
    let mut seen: BTreeMap<(Address, u64, Figure), Seen> = BTreeMap::new();
    for observation in observations {
        if !epochs.contains(&observation.epoch) {
            continue;
        }
        if observation.witness == observation.subject {
            summary.refused.push(UsageError::SelfWitness {
                node: observation.subject,
            });
            continue;
        }
        let values = seen
            .entry((
                observation.subject,
                observation.epoch,
                observation.figure.into(),
            ))
            .or_default()
            .entry(observation.group)
            .or_default();
        let value = values.entry(observation.witness).or_default();
        *value = (*value).max(observation.value);
    }

    for ((node, epoch), report) in claims {
        let Some(report) = report else { continue };
        let mut accepted = Usage::default();
        for figure in Figure::ALL {
            let claimed = report.usage.get(figure);
            let value = if figure.witnessed() {
                seen.get(&(node, epoch, figure))
                    .map_or(0, |groups| {
                        groups
                            .values()
                            .map(|values| median(values.values().copied()))
                            .fold(0u64, u64::saturating_add)
                    })
                    .min(claimed)
            } else if figure == Figure::UptimeSeconds {
                claimed.min(epoch_seconds)
            } else {
                claimed
            };
            if value != claimed {
                summary.discrepancies.push(Discrepancy {
                    node,
                    epoch,
                    figure,
                    claimed,
                    accepted: value,
                });
            }
            accepted.set(figure, value);
        }
        summary
            .per_node
            .entry(NodeId(node))
            .or_default()
            .add(&accepted);
        summary.per_epoch.insert((NodeId(node), epoch), accepted);
    }
    summary
}

/// The median of the values (the lower middle for an even count), 0 for none.
fn median(values: impl Iterator<Item = u64>) -> u64 {
    let mut values: Vec<u64> = values.collect();
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[(values.len() - 1) / 2]
}

#[cfg(test)]
mod tests {
    use primitives::AccountKey;

    use super::*;

    fn usage(moves: u64, rounds: u64, uptime: u64) -> Usage {
        Usage {
            moves_executed: moves,
            group_rounds: rounds,
            state_bytes: 4_096,
            relayed_bytes: 0,
            da_chunks: 0,
            uptime_seconds: uptime,
        }
    }

    fn saw(
        witness: &AccountKey,
        subject: &AccountKey,
        epoch: u64,
        figure: Figure,
        value: u64,
    ) -> Observation {
        Observation {
            witness: witness.address(),
            subject: subject.address(),
            epoch,
            figure: figure.into(),
            value,
            group: None,
        }
    }

    #[test]
    fn a_report_verifies_only_for_its_signer() {
        let node = AccountKey::from_seed(1);
        let other = AccountKey::from_seed(2);
        let report = UsageReport {
            node: node.address(),
            epoch: 3,
            usage: usage(10, 2, 60),
        };
        assert!(report.sign(&node).verify().is_ok());
        assert!(matches!(
            report.sign(&other).verify(),
            Err(UsageError::WrongSigner { signer, .. }) if signer == other.address()
        ));
        let mut truncated = report.sign(&node);
        truncated.signature = primitives::Bytes::copy_from_slice(&truncated.signature[..64]);
        assert!(matches!(
            truncated.verify(),
            Err(UsageError::BadSignature { .. })
        ));
        let mut tampered = report.sign(&node);
        tampered.report.usage.moves_executed += 1;
        assert!(tampered.verify().is_err());
    }

    #[test]
    fn witnessed_figures_are_cut_to_the_median_witness_and_summed_over_epochs() {
        let node = AccountKey::from_seed(1);
        let witnesses: Vec<AccountKey> = (10..13).map(AccountKey::from_seed).collect();
        let reports = vec![
            UsageReport {
                node: node.address(),
                epoch: 1,
                usage: usage(100, 10, 7_200),
            }
            .sign(&node),
            UsageReport {
                node: node.address(),
                epoch: 2,
                usage: usage(50, 5, 60),
            }
            .sign(&node),
        ];
        let mut observations = Vec::new();
        for (witness, moves) in witnesses.iter().zip([100, 90, 40]) {
            observations.push(saw(witness, &node, 1, Figure::MovesExecuted, moves));
            observations.push(saw(witness, &node, 1, Figure::GroupRounds, 10));
            observations.push(saw(witness, &node, 2, Figure::MovesExecuted, 50));
            observations.push(saw(witness, &node, 2, Figure::GroupRounds, 5));
        }
        let summary = summarise(1..=2, 3_600, &reports, &observations);
        assert!(summary.refused.is_empty(), "{:?}", summary.refused);
        let accepted = summary.per_node[&NodeId(node.address())];
        // Epoch 1: moves cut to the median witness (90); uptime cut to the epoch (3,600).
        assert_eq!(accepted.moves_executed, 90 + 50);
        assert_eq!(accepted.group_rounds, 15);
        assert_eq!(accepted.uptime_seconds, 3_600 + 60);
        assert_eq!(accepted.state_bytes, 2 * 4_096);
        let cut: Vec<(u64, Figure, u64, u64)> = summary
            .discrepancies
            .iter()
            .map(|d| (d.epoch, d.figure, d.claimed, d.accepted))
            .collect();
        assert_eq!(
            cut,
            vec![
                (1, Figure::MovesExecuted, 100, 90),
                (1, Figure::UptimeSeconds, 7_200, 3_600)
            ]
        );
    }

    #[test]
    fn an_unwitnessed_claim_of_witnessed_work_earns_nothing() {
        let node = AccountKey::from_seed(1);
        let reports = vec![
            UsageReport {
                node: node.address(),
                epoch: 1,
                usage: usage(100, 10, 60),
            }
            .sign(&node),
        ];
        // The node tries to witness itself.
        let observations = vec![saw(&node, &node, 1, Figure::MovesExecuted, 100)];
        let summary = summarise(1..=1, 3_600, &reports, &observations);
        assert_eq!(
            summary.refused,
            vec![UsageError::SelfWitness {
                node: node.address()
            }]
        );
        let accepted = summary.per_node[&NodeId(node.address())];
        assert_eq!((accepted.moves_executed, accepted.group_rounds), (0, 0));
        assert_eq!(accepted.uptime_seconds, 60);
    }

    #[test]
    fn work_seen_in_several_groups_is_the_sum_of_each_groups_median() {
        let node = AccountKey::from_seed(1);
        let members: Vec<AccountKey> = (10..16).map(AccountKey::from_seed).collect();
        let reports = vec![
            UsageReport {
                node: node.address(),
                epoch: 1,
                usage: usage(70, 0, 60),
            }
            .sign(&node),
        ];
        let (first, second) = (B256::repeat_byte(1), B256::repeat_byte(2));
        let mut observations = Vec::new();
        // Three members of the first group saw 40 moves (one saw fewer), three of the second 30.
        for (witness, moves) in members[..3].iter().zip([40, 40, 10]) {
            let mut seen = saw(witness, &node, 1, Figure::MovesExecuted, moves);
            seen.group = Some(first);
            observations.push(seen);
        }
        for witness in &members[3..] {
            let mut seen = saw(witness, &node, 1, Figure::MovesExecuted, 30);
            seen.group = Some(second);
            observations.push(seen);
        }
        let summary = summarise(1..=1, 3_600, &reports, &observations);
        assert_eq!(summary.per_node[&NodeId(node.address())].moves_executed, 70);
        assert!(
            summary.discrepancies.is_empty(),
            "{:?}",
            summary.discrepancies
        );

        // Without groups the partial views would cut the claim to one group's share.
        for observation in &mut observations {
            observation.group = None;
        }
        let summary = summarise(1..=1, 3_600, &reports, &observations);
        assert_eq!(summary.per_node[&NodeId(node.address())].moves_executed, 30);

        // The file form leaves the group out when there is none, and reads either form.
        let line = serde_json::to_string(&observations[0]).expect("serializes");
        assert!(!line.contains("group"), "{line}");
        let grouped = Observation {
            group: Some(first),
            ..observations[0]
        };
        let line = serde_json::to_string(&grouped).expect("serializes");
        assert_eq!(
            serde_json::from_str::<Observation>(&line).expect("parses"),
            grouped
        );
    }

    #[test]
    fn conflicting_reports_are_both_refused() {
        let node = AccountKey::from_seed(1);
        let first = UsageReport {
            node: node.address(),
            epoch: 1,
            usage: usage(1, 1, 1),
        };
        let second = UsageReport {
            node: node.address(),
            epoch: 1,
            usage: usage(2, 1, 1),
        };
        let reports = vec![
            first.sign(&node),
            first.sign(&node),
            second.sign(&node),
            first.sign(&node),
        ];
        let summary = summarise(1..=1, 3_600, &reports, &[]);
        assert_eq!(
            summary.refused,
            vec![UsageError::Conflicting {
                node: node.address(),
                epoch: 1
            }]
        );
        assert!(summary.per_node.is_empty());
    }
}
