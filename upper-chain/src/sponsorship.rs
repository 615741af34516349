//! Sponsorship policies on the upper chain: a sponsor account publishes the terms on which it
//! pays for players' moves, and every sequencer reads the policies in force.
//!
//! A policy is set (or withdrawn) by a [`SponsorPolicyUpdate`] signed by the sponsor's own
//! account key: the chain recovers the signer and refuses an update for any other account
//! ([`crate::ChainError::NotSponsor`]), so only a sponsor sets its own policy. Each update
//! carries the sponsor's next policy nonce ([`crate::UpperChain::sponsor_nonce`]), so an old
//! update cannot be replayed over a newer one.

use primitives::{Address, B256, Decode, DecodeError, Decoder, Encode, codec::put_list, keccak256};

/// Most target contracts one policy names.
pub const SPONSOR_TARGETS_MAX: usize = 256;

/// What a sponsor pays for: moves to `targets`, up to a gas budget per player and in total, at a
/// bounded rate per player (as a sequencer's token bucket: `player_moves_per_second` on average,
/// up to `player_moves_burst` at once). Budgets count gas limits, the most each move may cost.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SponsorTerms {
    /// The contracts whose moves it pays for.
    pub targets: Vec<Address>,
    /// Gas each player may spend on the sponsor's account.
    pub player_gas_budget: u64,
    /// Gas the sponsor pays in total.
    pub total_gas_budget: u64,
    /// Sponsored moves a second per player, sustained.
    pub player_moves_per_second: u64,
    /// Sponsored moves a player may send back to back.
    pub player_moves_burst: u64,
}

/// A policy in force on the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SponsorPolicyRecord {
    /// The paying account.
    pub sponsor: Address,
    /// Its terms.
    pub terms: SponsorTerms,
    /// The policy nonce of the update that set it: a reader tells a changed policy by it.
    pub nonce: u64,
}

/// Sets (`terms: Some`) or withdraws (`None`) the policy of `sponsor`; signed by the sponsor's
/// account key over [`SponsorPolicyUpdate::signing_hash`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SponsorPolicyUpdate {
    /// The paying account; it signs the update.
    pub sponsor: Address,
    /// The new terms, or `None` to withdraw the policy.
    pub terms: Option<SponsorTerms>,
    /// The sponsor's next policy nonce.
    pub nonce: u64,
}

impl SponsorPolicyUpdate {
    /// The hash the sponsor's key signs.
    pub fn signing_hash(&self) -> B256 {
        let mut out = b"tickrate:sponsor-policy".to_vec();
        self.encode(&mut out);
        keccak256(&out)
    }
}

impl Encode for SponsorTerms {
    fn encode(&self, out: &mut Vec<u8>) {
        put_list(out, &self.targets);
        self.player_gas_budget.encode(out);
        self.total_gas_budget.encode(out);
        self.player_moves_per_second.encode(out);
        self.player_moves_burst.encode(out);
    }
}

impl Decode for SponsorTerms {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SponsorTerms {
            targets: decoder.list("sponsored targets", SPONSOR_TARGETS_MAX)?,
            player_gas_budget: decoder.u64()?,
            total_gas_budget: decoder.u64()?,
            player_moves_per_second: decoder.u64()?,
            player_moves_burst: decoder.u64()?,
        })
    }
}

impl Encode for SponsorPolicyRecord {
    fn encode(&self, out: &mut Vec<u8>) {
        self.sponsor.encode(out);
        self.terms.encode(out);
        self.nonce.encode(out);
    }
}

impl Decode for SponsorPolicyRecord {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SponsorPolicyRecord {
            sponsor: decoder.address()?,
            terms: SponsorTerms::decode(decoder)?,
            nonce: decoder.u64()?,
        })
    }
}

impl Encode for SponsorPolicyUpdate {
    fn encode(&self, out: &mut Vec<u8>) {
        self.sponsor.encode(out);
        match &self.terms {
            None => out.push(0),
            Some(terms) => {
                out.push(1);
                terms.encode(out);
            }
        }
        self.nonce.encode(out);
    }
}

impl Decode for SponsorPolicyUpdate {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(SponsorPolicyUpdate {
            sponsor: decoder.address()?,
            terms: if decoder.bool()? {
                Some(SponsorTerms::decode(decoder)?)
            } else {
                None
            },
            nonce: decoder.u64()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use primitives::{AccountKey, Encode};

    use super::*;

    #[test]
    fn updates_round_trip_and_sign_what_they_say() {
        let sponsor = AccountKey::from_seed(9);
        let terms = SponsorTerms {
            targets: vec![Address::repeat_byte(1), Address::repeat_byte(2)],
            player_gas_budget: 100,
            total_gas_budget: 1_000,
            player_moves_per_second: 5,
            player_moves_burst: 10,
        };
        let update = SponsorPolicyUpdate {
            sponsor: sponsor.address(),
            terms: Some(terms.clone()),
            nonce: 3,
        };
        assert_eq!(
            SponsorPolicyUpdate::from_bytes(&update.to_bytes()),
            Ok(update.clone())
        );
        let withdrawal = SponsorPolicyUpdate {
            terms: None,
            ..update.clone()
        };
        assert_eq!(
            SponsorPolicyUpdate::from_bytes(&withdrawal.to_bytes()),
            Ok(withdrawal.clone())
        );
        assert_ne!(update.signing_hash(), withdrawal.signing_hash());
        let signature = sponsor.sign_prehash(&update.signing_hash());
        assert_eq!(
            signature.recover_address(&update.signing_hash()),
            Ok(sponsor.address())
        );
        let record = SponsorPolicyRecord {
            sponsor: sponsor.address(),
            terms,
            nonce: 3,
        };
        assert_eq!(
            SponsorPolicyRecord::from_bytes(&record.to_bytes()),
            Ok(record)
        );
    }
}
