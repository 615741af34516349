//! Attestations and availability certificates.
//!
//! DA node `i` of a committee holds chunk `i`. When it has verified and stored that chunk it signs
//! [`availability_message`]`(commitment)` with its BLS key. The chunk index is not in the message:
//! it is the signer's position in the committee, which the certificate's signer bitmap records.
//! So every attestation for one commitment signs the same bytes and they aggregate into one
//! [`primitives::bls::Certificate`], verified with one pairing check (fast aggregate verify).
//!
//! The message starts with a domain tag of its own, so an attestation can never be replayed as a
//! vote of another Tickrate protocol signed with the same kind of key (batch commits, group
//! roots), and the commitment binds n, k and the payload length (see [`crate::coding`]).

use primitives::{
    B256,
    bls::{BlsPublicKey, BlsSecretKey, BlsSignature, Certificate},
    codec::{Decode, DecodeError, Decoder, Encode},
};

use crate::{coding::ErasureParams, error::DaError};

pub use primitives::da::{AVAILABILITY_DOMAIN as ATTESTATION_DOMAIN, availability_message};

/// Signs the attestation for `commitment`.
pub fn attest(key: &BlsSecretKey, commitment: &B256) -> BlsSignature {
    key.sign(&availability_message(commitment))
}

/// Checks one node's attestation.
pub fn verify_attestation(
    public_key: &BlsPublicKey,
    commitment: &B256,
    attestation: &BlsSignature,
) -> Result<(), DaError> {
    Ok(public_key.verify(&availability_message(commitment), attestation)?)
}

/// Proof that a quorum of the committee holds verified chunks of `commitment`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailabilityCertificate {
    /// The DA commitment.
    pub commitment: B256,
    /// The aggregate attestation and who signed (bit `i` = node `i` holds chunk `i`).
    pub certificate: Certificate,
}

impl AvailabilityCertificate {
    /// Aggregates `(node position, attestation)` pairs, refusing fewer than the quorum.
    /// Callers verify each attestation first ([`verify_attestation`]) so a forged one is
    /// dropped instead of spoiling the aggregate.
    pub fn aggregate(
        commitment: B256,
        params: &ErasureParams,
        attestations: &[(usize, BlsSignature)],
    ) -> Result<Self, DaError> {
        let quorum = params.quorum();
        if attestations.len() < quorum {
            return Err(DaError::TooFewAttestations {
                valid: attestations.len(),
                quorum,
            });
        }
        Ok(AvailabilityCertificate {
            commitment,
            certificate: Certificate::aggregate(attestations)?,
        })
    }

    /// Checks the certificate against the committee's keys (in position order).
    pub fn verify(
        &self,
        committee: &[BlsPublicKey],
        params: &ErasureParams,
    ) -> Result<(), DaError> {
        if committee.len() != usize::from(params.total_chunks) {
            return Err(DaError::CommitteeSize {
                nodes: committee.len(),
                total_chunks: params.total_chunks,
            });
        }
        Ok(self.certificate.verify(
            &availability_message(&self.commitment),
            committee,
            params.quorum(),
        )?)
    }
}

impl Encode for AvailabilityCertificate {
    fn encode(&self, out: &mut Vec<u8>) {
        self.commitment.encode(out);
        self.certificate.encode(out);
    }
}

impl Decode for AvailabilityCertificate {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        Ok(AvailabilityCertificate {
            commitment: decoder.b256()?,
            certificate: Certificate::decode(decoder)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use primitives::bls::{BlsError, SignerBitmap};

    use super::*;

    fn committee(nodes: u8) -> (Vec<BlsSecretKey>, Vec<BlsPublicKey>) {
        let secrets: Vec<BlsSecretKey> = (0..nodes)
            .map(|index| BlsSecretKey::from_seed(&[index + 10; 32]))
            .collect();
        let publics = secrets.iter().map(BlsSecretKey::public_key).collect();
        (secrets, publics)
    }

    #[test]
    fn quorum_certifies_and_too_few_or_forged_are_refused() {
        let params = ErasureParams::new(4, 6).expect("params");
        let (secrets, publics) = committee(6);
        let commitment = B256::repeat_byte(3);
        let attestations: Vec<(usize, BlsSignature)> = (0..5)
            .map(|index| (index, attest(&secrets[index], &commitment)))
            .collect();
        let certificate =
            AvailabilityCertificate::aggregate(commitment, &params, &attestations).expect("5");
        assert!(certificate.verify(&publics, &params).is_ok());
        let decoded = AvailabilityCertificate::from_bytes(&certificate.to_bytes()).expect("codec");
        assert_eq!(decoded, certificate);

        // Too few: refused when aggregating, and when verifying a certificate built anyway.
        assert!(matches!(
            AvailabilityCertificate::aggregate(commitment, &params, &attestations[..4]),
            Err(DaError::TooFewAttestations {
                valid: 4,
                quorum: 5
            })
        ));
        let short = AvailabilityCertificate {
            commitment,
            certificate: Certificate::aggregate(&attestations[..4]).expect("4"),
        };
        assert!(matches!(
            short.verify(&publics, &params),
            Err(DaError::Certificate(BlsError::TooFewSigners {
                signers: 4,
                quorum: 5
            }))
        ));

        // Forged: node 5 never signed but the bitmap claims it did, with node 4's signature.
        let mut forged_votes = attestations[..4].to_vec();
        forged_votes.push((5, attestations[4].1));
        let forged = AvailabilityCertificate {
            commitment,
            certificate: Certificate::aggregate(&forged_votes).expect("5"),
        };
        assert!(matches!(
            forged.verify(&publics, &params),
            Err(DaError::Certificate(BlsError::BadSignature))
        ));
        assert!(verify_attestation(&publics[5], &commitment, &attestations[4].1).is_err());

        // Another commitment, a signer beyond the committee, or the wrong committee size.
        let mut moved = certificate.clone();
        moved.commitment = B256::repeat_byte(4);
        assert!(moved.verify(&publics, &params).is_err());
        let mut beyond = certificate.clone();
        let mut bitmap = SignerBitmap::new();
        for index in [0usize, 1, 2, 3, 9] {
            bitmap.insert(index);
        }
        beyond.certificate.signers = bitmap;
        assert!(matches!(
            beyond.verify(&publics, &params),
            Err(DaError::Certificate(BlsError::UnknownSigner {
                index: 9,
                ..
            }))
        ));
        assert!(matches!(
            certificate.verify(&publics[..5], &params),
            Err(DaError::CommitteeSize { .. })
        ));
    }

    #[test]
    fn attestations_are_domain_separated() {
        let message = availability_message(&B256::ZERO);
        assert!(message.starts_with(ATTESTATION_DOMAIN));
        assert_ne!(message, B256::ZERO.as_slice());
    }
}
