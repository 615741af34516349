// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// The Groth16 verifier of the transfer circuit, generated from its verifying key by
/// `assets-setup export-verifier` (public inputs: old root, new root, first new leaf index,
/// nullifier 0, nullifier 1, commitment 0, commitment 1, withdrawal recipient, withdrawn asset
/// high and low 128 bits, withdrawn amount high and low 128 bits).
interface ITransferVerifier {
    function verifyProof(uint256[8] calldata proof, uint256[12] calldata input)
        external
        view
        returns (bool);
}

/// The Groth16 verifier of the deposit circuit (public inputs: old root, new root, leaf index,
/// deposit id, owner key x, owner key y, owner nullifier-key hash, asset high and low, amount
/// high and low).
interface IDepositVerifier {
    function verifyProof(uint256[8] calldata proof, uint256[11] calldata input)
        external
        view
        returns (bool);
}

/// What the rollup reads of the bridge: the deposits it recorded.
interface IDepositLedger {
    function depositCount() external view returns (uint64);
    function depositHash(uint64 depositId) external view returns (bytes32);
}

/// The asset rollup: the root of Tickrate's output tree (the UTXO state of the bridge group),
/// moved only by proofs. Every update names the root it starts from and must start from the
/// current one, so the chain and the bridge group apply the same operations in the same order:
/// a deposit minted (the deposit circuit, for the bridge's next unminted deposit), or a
/// transfer or withdraw (the transfer circuit). The contract keeps the nullifiers (a second
/// spend of an output is refused here, whatever a prover claims) and the withdrawals proven,
/// which the bridge releases once each. It is deployed by the bridge (`AssetBridge`).
contract AssetRollup {
    /// BN254's scalar field modulus: roots, nullifiers and commitments are below it.
    uint256 internal constant R =
        21888242871839275222246405745257275088548364400416034343698204186575808495617;
    uint256 internal constant LIMB_MASK = type(uint128).max;
    /// Bytes a note may hold: one note is 144 (`assets::note::NOTE_BYTES`); the bound keeps
    /// what wallets scan small.
    uint256 public constant MAX_NOTE_BYTES = 256;

    /// The public values of a transfer or withdraw proof.
    struct TransferInputs {
        uint256 oldRoot;
        uint256 newRoot;
        uint64 leafIndex;
        uint256[2] nullifiers;
        uint256[2] commitments;
        /// Zero for a transfer; the upper-chain account of a withdraw.
        address recipient;
        uint256 asset;
        uint256 amount;
    }

    /// The data of a deposit as the bridge recorded it.
    struct DepositData {
        uint256 ownerX;
        uint256 ownerY;
        uint256 nullifierKeyHash;
        uint256 asset;
        uint256 amount;
    }

    error ProofInvalid();
    error StaleRoot(uint256 current, uint256 got);
    error WrongLeafIndex(uint64 expected, uint64 got);
    error NullifierSpent(uint256 nullifier);
    error DuplicateNullifier();
    error NotCanonical();
    error DepositAlreadyMinted(uint64 depositId);
    error DepositOutOfOrder(uint64 expected, uint64 got);
    error DepositMismatch(uint64 depositId);
    error UnknownDeposit(uint64 depositId);
    error TooManyNotes(uint256 notes, uint256 outputs);
    error NoteTooLong(uint256 length);
    error NoSuchLeaf(uint64 leafIndex);

    event DepositMinted(uint64 indexed depositId, uint64 leafIndex, uint256 newRoot);
    event TransferApplied(
        uint256 newRoot, uint64 leafIndex, uint256[2] nullifiers, uint256[2] commitments
    );
    /// The note of the output at `leafIndex`: its data encrypted to its recipient, who finds it
    /// by trying to decrypt every note (`assets::note`). Not checked here: a wallet accepts a
    /// note only if it opens to the commitment at its leaf.
    event OutputNote(uint64 indexed leafIndex, bytes note);
    event WithdrawalProven(
        uint64 indexed withdrawalId, address indexed recipient, uint256 asset, uint256 amount
    );

    IDepositLedger public immutable bridge;
    ITransferVerifier public immutable transferVerifier;
    IDepositVerifier public immutable depositVerifier;

    /// The current root of the output tree.
    uint256 public root;
    /// Leaves of the output tree (the next output's index).
    uint64 public leafCount;
    /// Deposits of the bridge minted so far, in order.
    uint64 public depositsMinted;
    /// Withdrawals proven so far.
    uint64 public withdrawalCount;
    mapping(uint256 => bool) public nullifierSpent;
    /// keccak256(abi.encode(recipient, asset, amount)) of each proven withdrawal.
    mapping(uint64 => bytes32) public withdrawalHash;

    constructor(ITransferVerifier transferVerifier_, IDepositVerifier depositVerifier_, uint256 genesisRoot) {
        if (genesisRoot >= R) revert NotCanonical();
        bridge = IDepositLedger(msg.sender);
        transferVerifier = transferVerifier_;
        depositVerifier = depositVerifier_;
        root = genesisRoot;
    }

    /// Mints the bridge's deposit `depositId` (the next unminted one) as leaf `leafCount`:
    /// the proof shows that appending its output commitment to the tree of `root` gives
    /// `newRoot`.
    function mintDeposit(
        uint64 depositId,
        DepositData calldata data,
        uint256 newRoot,
        uint256[8] calldata proof
    ) external {
        uint64 expected = depositsMinted;
        if (depositId < expected) revert DepositAlreadyMinted(depositId);
        if (depositId > expected) revert DepositOutOfOrder(expected, depositId);
        if (depositId >= bridge.depositCount()) revert UnknownDeposit(depositId);
        if (bridge.depositHash(depositId) != keccak256(abi.encode(data))) {
            revert DepositMismatch(depositId);
        }
        if (newRoot >= R) revert NotCanonical();
        uint64 leafIndex = leafCount;
        uint256[11] memory input = [
            root,
            newRoot,
            uint256(leafIndex),
            uint256(depositId),
            data.ownerX,
            data.ownerY,
            data.nullifierKeyHash,
            data.asset >> 128,
            data.asset & LIMB_MASK,
            data.amount >> 128,
            data.amount & LIMB_MASK
        ];
        if (!depositVerifier.verifyProof(proof, input)) revert ProofInvalid();
        root = newRoot;
        leafCount = leafIndex + 1;
        depositsMinted = expected + 1;
        emit DepositMinted(depositId, leafIndex, newRoot);
    }

    /// Applies a proven transfer or withdraw starting from the current root: its nullifiers
    /// are spent, its outputs appended (one for a withdraw, whose second output leaves), and a
    /// withdrawal recorded for the bridge to release.
    function transfer(TransferInputs calldata t, uint256[8] calldata proof) public {
        if (t.oldRoot != root) revert StaleRoot(root, t.oldRoot);
        if (t.leafIndex != leafCount) revert WrongLeafIndex(leafCount, t.leafIndex);
        if (t.nullifiers[0] == t.nullifiers[1]) revert DuplicateNullifier();
        for (uint256 i = 0; i < 2; i++) {
            if (nullifierSpent[t.nullifiers[i]]) revert NullifierSpent(t.nullifiers[i]);
        }
        // Out-of-range values are refused by the verifier; checked here for a clearer error.
        if (
            t.newRoot >= R || t.nullifiers[0] >= R || t.nullifiers[1] >= R
                || t.commitments[0] >= R || t.commitments[1] >= R
        ) revert NotCanonical();
        uint256[12] memory input = [
            t.oldRoot,
            t.newRoot,
            uint256(t.leafIndex),
            t.nullifiers[0],
            t.nullifiers[1],
            t.commitments[0],
            t.commitments[1],
            uint256(uint160(t.recipient)),
            t.asset >> 128,
            t.asset & LIMB_MASK,
            t.amount >> 128,
            t.amount & LIMB_MASK
        ];
        if (!transferVerifier.verifyProof(proof, input)) revert ProofInvalid();
        nullifierSpent[t.nullifiers[0]] = true;
        nullifierSpent[t.nullifiers[1]] = true;
        root = t.newRoot;
        // A withdraw's second output is not a leaf: the circuit inserted zero, an empty leaf.
        leafCount = t.leafIndex + (t.recipient == address(0) ? 2 : 1);
        emit TransferApplied(t.newRoot, t.leafIndex, t.nullifiers, t.commitments);
        if (t.recipient != address(0)) {
            uint64 withdrawalId = withdrawalCount;
            withdrawalCount = withdrawalId + 1;
            withdrawalHash[withdrawalId] = keccak256(abi.encode(t.recipient, t.asset, t.amount));
            emit WithdrawalProven(withdrawalId, t.recipient, t.asset, t.amount);
        }
    }

    /// `transfer`, publishing with it the notes of its new outputs: `notes[i]` for the output
    /// at leaf `t.leafIndex + i` (two outputs for a transfer, one for a withdraw).
    function transferWithNotes(TransferInputs calldata t, uint256[8] calldata proof, bytes[] calldata notes)
        external
    {
        uint256 outputs = t.recipient == address(0) ? 2 : 1;
        if (notes.length > outputs) revert TooManyNotes(notes.length, outputs);
        for (uint256 i = 0; i < notes.length; i++) {
            if (notes[i].length > MAX_NOTE_BYTES) revert NoteTooLong(notes[i].length);
        }
        transfer(t, proof);
        for (uint256 i = 0; i < notes.length; i++) {
            emit OutputNote(t.leafIndex + uint64(i), notes[i]);
        }
    }

    /// Publishes a note for an output already in the tree (a sender whose first note was lost or
    /// replaced by whoever submitted its proof publishes it again).
    function publishNote(uint64 leafIndex, bytes calldata note) external {
        if (leafIndex >= leafCount) revert NoSuchLeaf(leafIndex);
        if (note.length > MAX_NOTE_BYTES) revert NoteTooLong(note.length);
        emit OutputNote(leafIndex, note);
    }
}
