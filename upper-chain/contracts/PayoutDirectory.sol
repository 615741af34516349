// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// Where each reward wallet takes its payouts inside Tickrate's asset rollup: an asset address
/// (Baby Jubjub key x and y, and nullifier-key hash, as a bridge deposit names its owner) set by
/// the wallet itself (`msg.sender`), so only the wallet's owner can say where its money goes.
/// The operator accounting's rollup rail pays a wallet with the `assets` payout feature to the
/// address registered here, and refuses to pay a wallet that registered none.
contract PayoutDirectory {
    /// BN254's scalar field modulus: every word of an asset address is below it.
    uint256 internal constant R =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;

    error NotCanonical();

    event PayoutRecipientSet(address indexed wallet, uint256 ownerX, uint256 ownerY, uint256 nullifierKeyHash);

    struct Recipient {
        uint256 ownerX;
        uint256 ownerY;
        uint256 nullifierKeyHash;
    }

    mapping(address => Recipient) private recipients;

    /// Sets the sender's asset address (replacing an earlier one).
    function setPayoutRecipient(uint256 ownerX, uint256 ownerY, uint256 nullifierKeyHash) external {
        if (ownerX >= R || ownerY >= R || nullifierKeyHash >= R) revert NotCanonical();
        recipients[msg.sender] = Recipient(ownerX, ownerY, nullifierKeyHash);
        emit PayoutRecipientSet(msg.sender, ownerX, ownerY, nullifierKeyHash);
    }

    /// `wallet`'s asset address; all zero when it set none.
    function payoutRecipient(address wallet)
        external
        view
        returns (uint256 ownerX, uint256 ownerY, uint256 nullifierKeyHash)
    {
        Recipient storage r = recipients[wallet];
        return (r.ownerX, r.ownerY, r.nullifierKeyHash);
    }
}
