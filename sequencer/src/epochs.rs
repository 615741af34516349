//! Sequencer sets per epoch, as the upper chain fixes them ([`upper_chain::SequencerEpoch`]),
//! turned into the consensus core's validator sets.
//!
//! The chain decides who serves which span of PBFT sequences; the core switches sets at the
//! boundary ([`consensus::ReplicaInput::NextEpoch`]). What is here is the glue: reading an epoch
//! into a [`ValidatorSet`], finding the epoch a starting sequencer serves in, and following the
//! chain for the next one.

use std::{sync::Arc, time::Duration};

use consensus::{Validator, ValidatorSet};
use primitives::{NodeId, constants::VALIDATORS_MAX};
use upper_chain::{ChainError, SequencerEpoch, UpperChain};

/// How often a sequencer asks the chain whether the next epoch is fixed.
pub const EPOCH_POLL: Duration = Duration::from_millis(20);

/// Why a sequencer epoch read from the chain cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EpochError {
    /// The chain could not be read.
    #[error("upper chain: {0}")]
    Chain(#[from] ChainError),
    /// The epoch names no sequencer, too many, or one twice, or spans nothing.
    #[error("sequencer epoch {epoch} is unusable: {why}")]
    Unusable {
        /// The epoch.
        epoch: u64,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// The validator set of `epoch`, in the chain's certificate order, deciding its span.
pub fn validator_set(epoch: &SequencerEpoch) -> Result<ValidatorSet, EpochError> {
    let unusable = |why| EpochError::Unusable {
        epoch: epoch.epoch,
        why,
    };
    if epoch.sequencers.is_empty() || epoch.sequencers.len() > VALIDATORS_MAX {
        return Err(unusable("no sequencer, or more than a set may hold"));
    }
    for (index, record) in epoch.sequencers.iter().enumerate() {
        if epoch.sequencers[..index]
            .iter()
            .any(|other| other.id == record.id)
        {
            return Err(unusable("a sequencer listed twice"));
        }
    }
    if epoch.first == 0 || epoch.length == Some(0) {
        return Err(unusable("an empty span"));
    }
    let validators = epoch
        .sequencers
        .iter()
        .map(|record| Validator {
            id: record.id,
            key: record.bls_key,
        })
        .collect();
    Ok(ValidatorSet::for_epoch(
        validators,
        epoch.epoch,
        epoch.first - 1,
        epoch.last(),
    ))
}

/// The members of a set, in validator order.
pub fn members(set: &ValidatorSet) -> Vec<NodeId> {
    set.validators()
        .iter()
        .map(|validator| validator.id)
        .collect()
}

/// The epoch a view belongs to: every epoch starts in its own first view
/// ([`consensus::epoch_first_view`], `epoch << 32`).
pub fn epoch_of_view(view: u64) -> u64 {
    view >> 32
}

/// Reads sequencer epoch `epoch` off the async threads.
pub async fn read_epoch(
    chain: &Arc<dyn UpperChain>,
    epoch: u64,
) -> Result<Option<SequencerEpoch>, ChainError> {
    let chain = chain.clone();
    tokio::task::spawn_blocking(move || chain.sequencer_epoch(epoch))
        .await
        .map_err(|join| ChainError::Rpc(join.to_string()))?
}

/// The latest epoch fixed on the chain that `me` serves in, waiting (polling) until one is:
/// where a sequencer that was not in the first set joins.
pub async fn wait_for_membership(
    chain: &Arc<dyn UpperChain>,
    me: NodeId,
) -> Result<SequencerEpoch, ChainError> {
    let mut next = 0;
    let mut latest_with_me = None;
    loop {
        match read_epoch(chain, next).await? {
            Some(epoch) => {
                latest_with_me = epoch
                    .sequencers
                    .iter()
                    .any(|record| record.id == me)
                    .then_some(epoch);
                next += 1;
            }
            None => match latest_with_me {
                Some(epoch) => return Ok(epoch),
                None => tokio::time::sleep(EPOCH_POLL).await,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use primitives::{Address, bls::BlsSecretKey};
    use upper_chain::SequencerRecord;

    use super::*;

    fn record(seed: u8) -> SequencerRecord {
        SequencerRecord {
            id: NodeId(Address::repeat_byte(seed)),
            bls_key: BlsSecretKey::from_seed(&[seed; 32]).public_key(),
        }
    }

    #[test]
    fn an_epoch_becomes_the_set_deciding_its_span_and_a_bad_one_is_an_error() {
        let epoch = SequencerEpoch {
            epoch: 2,
            first: 41,
            length: Some(20),
            sequencers: vec![record(1), record(2), record(3), record(4)],
        };
        let set = validator_set(&epoch).expect("usable");
        assert_eq!((set.epoch(), set.start(), set.end()), (2, 40, Some(60)));
        assert_eq!(
            members(&set),
            epoch.sequencers.iter().map(|r| r.id).collect::<Vec<_>>()
        );
        assert_eq!(epoch_of_view(consensus::epoch_first_view(2) + 7), 2);

        let twice = SequencerEpoch {
            sequencers: vec![record(1), record(1)],
            ..epoch.clone()
        };
        assert!(matches!(
            validator_set(&twice),
            Err(EpochError::Unusable { .. })
        ));
        let empty = SequencerEpoch {
            sequencers: Vec::new(),
            ..epoch.clone()
        };
        assert!(matches!(
            validator_set(&empty),
            Err(EpochError::Unusable { .. })
        ));
        let nothing = SequencerEpoch {
            length: Some(0),
            ..epoch
        };
        assert!(matches!(
            validator_set(&nothing),
            Err(EpochError::Unusable { .. })
        ));
    }
}
