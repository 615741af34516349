// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {IERC721} from "@openzeppelin/contracts/token/ERC721/IERC721.sol";
import {AssetRollup, ITransferVerifier, IDepositVerifier} from "./AssetRollup.sol";

/// The bridge between the upper chain and Tickrate's asset rollup. It locks ERC-20 tokens and
/// ERC-721 items, records each deposit (numbered from 0) and emits `Deposit` with everything the
/// bridge group needs to mint the output: the owner's asset address (Baby Jubjub key and
/// nullifier-key hash), the asset type and the amount; the output's blinding is the deposit id.
/// It releases a withdrawal the rollup has proven, once.
///
/// Asset types (u256) are the token contract in the low 160 bits and, for an ERC-721 item, its
/// id in the high 96 bits (ids from 2^96 on cannot be deposited); an ERC-20's type is its
/// address. A token contract is bridged as the kind of its first deposit, so an ERC-20 and an
/// item of id 0 of one contract never share a type.
contract AssetBridge {
    using SafeERC20 for IERC20;

    uint256 internal constant R =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    uint256 internal constant ITEM_ID_LIMIT = 1 << 96;

    enum Kind {
        None,
        Erc20,
        Erc721
    }

    error NotCanonical();
    error ZeroAmount();
    error ItemIdTooLarge(uint256 tokenId);
    error WrongKind(address token);
    error NotReceived(address token);
    error UnknownWithdrawal(uint64 withdrawalId);
    error AlreadyReleased(uint64 withdrawalId);
    error NothingToRelease(uint64 withdrawalId);

    event Deposit(
        uint64 indexed depositId,
        address indexed depositor,
        address indexed token,
        uint256 asset,
        uint256 amount,
        uint256 ownerX,
        uint256 ownerY,
        uint256 nullifierKeyHash
    );
    event Released(uint64 indexed withdrawalId, address indexed recipient, uint256 asset, uint256 amount);

    AssetRollup public immutable rollup;
    /// Deposits recorded so far.
    uint64 public depositCount;
    /// keccak256(abi.encode(ownerX, ownerY, nullifierKeyHash, asset, amount)) of each deposit.
    mapping(uint64 => bytes32) public depositHash;
    mapping(address => Kind) public kindOf;
    mapping(uint64 => bool) public released;

    constructor(ITransferVerifier transferVerifier, IDepositVerifier depositVerifier, uint256 genesisRoot) {
        rollup = new AssetRollup(transferVerifier, depositVerifier, genesisRoot);
    }

    /// Locks `amount` of `token` (approved to this contract) for the owner's asset address.
    function depositERC20(IERC20 token, uint256 amount, uint256 ownerX, uint256 ownerY, uint256 nullifierKeyHash)
        external
        returns (uint64)
    {
        if (amount == 0) revert ZeroAmount();
        _claimKind(address(token), Kind.Erc20);
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        // What arrived, for a token that takes a fee on transfers.
        uint256 received = token.balanceOf(address(this)) - before;
        if (received == 0) revert NotReceived(address(token));
        return _record(address(token), uint256(uint160(address(token))), received, ownerX, ownerY, nullifierKeyHash);
    }

    /// Locks item `tokenId` of `token` (approved to this contract) for the owner's asset address.
    function depositERC721(IERC721 token, uint256 tokenId, uint256 ownerX, uint256 ownerY, uint256 nullifierKeyHash)
        external
        returns (uint64)
    {
        if (tokenId >= ITEM_ID_LIMIT) revert ItemIdTooLarge(tokenId);
        _claimKind(address(token), Kind.Erc721);
        token.transferFrom(msg.sender, address(this), tokenId);
        if (token.ownerOf(tokenId) != address(this)) revert NotReceived(address(token));
        uint256 asset = (tokenId << 160) | uint256(uint160(address(token)));
        return _record(address(token), asset, 1, ownerX, ownerY, nullifierKeyHash);
    }

    /// Releases withdrawal `withdrawalId` as the rollup proved it: `amount` of the ERC-20, or
    /// the item, to `recipient`. Anyone may call it; the tokens go to the recipient.
    function release(uint64 withdrawalId, address recipient, uint256 asset, uint256 amount) external {
        if (rollup.withdrawalHash(withdrawalId) != keccak256(abi.encode(recipient, asset, amount))) {
            revert UnknownWithdrawal(withdrawalId);
        }
        if (released[withdrawalId]) revert AlreadyReleased(withdrawalId);
        released[withdrawalId] = true;
        address token = address(uint160(asset));
        if (kindOf[token] == Kind.Erc721) {
            if (amount != 1) revert NothingToRelease(withdrawalId);
            IERC721(token).transferFrom(address(this), recipient, asset >> 160);
        } else {
            if (amount == 0) revert NothingToRelease(withdrawalId);
            IERC20(token).safeTransfer(recipient, amount);
        }
        emit Released(withdrawalId, recipient, asset, amount);
    }

    function _claimKind(address token, Kind kind) private {
        Kind known = kindOf[token];
        if (known == Kind.None) {
            kindOf[token] = kind;
        } else if (known != kind) {
            revert WrongKind(token);
        }
    }

    function _record(
        address token,
        uint256 asset,
        uint256 amount,
        uint256 ownerX,
        uint256 ownerY,
        uint256 nullifierKeyHash
    ) private returns (uint64 depositId) {
        // Field elements only: a deposit the rollup could not mint would hold up every later one.
        if (ownerX >= R || ownerY >= R || nullifierKeyHash >= R) revert NotCanonical();
        depositId = depositCount;
        depositCount = depositId + 1;
        depositHash[depositId] = keccak256(abi.encode(ownerX, ownerY, nullifierKeyHash, asset, amount));
        emit Deposit(depositId, msg.sender, token, asset, amount, ownerX, ownerY, nullifierKeyHash);
    }
}
