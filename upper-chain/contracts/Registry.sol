// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.30;

/// BLS12-381 signatures (min-pk: keys in G1, signatures in G2, hash-to-curve
/// BLS12381G2_XMD:SHA-256_SSWU_RO_) on the EIP-2537 precompiles (Prague and later).
///
/// Points are passed in the EIP-2537 encoding: a G1 point is 128 bytes (x, y; each a 64-byte
/// big-endian field element, top 16 bytes zero), a G2 point 256 bytes (x.c0, x.c1, y.c0, y.c1).
library BLS12381 {
    address private constant G1ADD = address(0x0b);
    address private constant G2ADD = address(0x0d);
    address private constant PAIRING = address(0x0f);
    address private constant MAP_FP2_TO_G2 = address(0x11);
    address private constant MODEXP = address(0x05);

    bytes private constant P =
        hex"1a0111ea397fe69a4b1ba7b6434bacd764774b84f38512bf6730d2a0f6b0f6241eabfffeb153ffffb9feffffffffaaab";
    // (p - 1) / 2, split into its top 128 and low 256 bits.
    uint256 private constant HALF_P_HI = 0xd0088f51cbff34d258dd3db21a5d66b;
    uint256 private constant HALF_P_LO = 0xb23ba5c279c2895fb39869507b587b120f55ffff58a9ffffdcff7fffffffd555;
    // The negated G1 generator.
    bytes private constant NEG_G1 =
        hex"0000000000000000000000000000000017f1d3a73197d7942695638c4fa9ac0fc3688c4f9774b905a14e3a3f171bac586c55e83ff97a1aeffb3af00adb22c6bb"
        hex"00000000000000000000000000000000114d1d6855d545a8aa7d76c8cf2e21f267816aef1db507c96655b9d5caac42364e6f38ba0ecb751bad54dcd6b939c2ca";

    /// expand_message_xmd (RFC 9380) with SHA-256, for 256 bytes: two Fp2 elements.
    function expandMessage(bytes memory dst, bytes memory message) internal pure returns (bytes memory out) {
        bytes memory dstPrime = abi.encodePacked(dst, uint8(dst.length));
        bytes32 b0 = sha256(abi.encodePacked(bytes32(0), bytes32(0), message, uint16(256), uint8(0), dstPrime));
        out = new bytes(256);
        bytes32 bi = sha256(abi.encodePacked(b0, uint8(1), dstPrime));
        assembly {
            mstore(add(out, 32), bi)
        }
        for (uint256 i = 2; i <= 8; i++) {
            bi = sha256(abi.encodePacked(b0 ^ bi, uint8(i), dstPrime));
            assembly {
                mstore(add(out, mul(32, i)), bi)
            }
        }
    }

    /// The 64 bytes of `u` at `offset`, reduced modulo p, in the 64-byte EIP-2537 encoding.
    function fieldElement(bytes memory u, uint256 offset) private view returns (bytes memory) {
        bytes32 hi;
        bytes32 lo;
        assembly {
            hi := mload(add(add(u, 32), offset))
            lo := mload(add(add(u, 64), offset))
        }
        (bool ok, bytes memory reduced) =
            MODEXP.staticcall(abi.encodePacked(uint256(64), uint256(1), uint256(48), hi, lo, uint8(1), P));
        require(ok && reduced.length == 48, "modexp");
        return abi.encodePacked(bytes16(0), reduced);
    }

    function call(address precompile, bytes memory input, uint256 outLength) private view returns (bytes memory) {
        (bool ok, bytes memory out) = precompile.staticcall(input);
        require(ok && out.length == outLength, "BLS precompile");
        return out;
    }

    /// hash_to_curve to G2 (the map precompile clears the cofactor).
    function hashToG2(bytes memory dst, bytes memory message) internal view returns (bytes memory) {
        bytes memory u = expandMessage(dst, message);
        bytes memory q0 = call(MAP_FP2_TO_G2, abi.encodePacked(fieldElement(u, 0), fieldElement(u, 64)), 256);
        bytes memory q1 = call(MAP_FP2_TO_G2, abi.encodePacked(fieldElement(u, 128), fieldElement(u, 192)), 256);
        return call(G2ADD, abi.encodePacked(q0, q1), 256);
    }

    /// The sum of two G1 points (not subgroup-checked here; the pairing checks its inputs).
    function addG1(bytes memory a, bytes memory b) internal view returns (bytes memory) {
        return call(G1ADD, abi.encodePacked(a, b), 128);
    }

    /// Whether `signature` (G2) is `key`'s (G1) signature of `message` under `dst`. Invalid or
    /// out-of-subgroup points make the pairing precompile fail, which is a refusal.
    function verify(bytes memory key, bytes memory dst, bytes memory message, bytes memory signature)
        internal
        view
        returns (bool)
    {
        if (key.length != 128 || signature.length != 256) return false;
        bytes memory h = hashToG2(dst, message);
        (bool ok, bytes memory out) = PAIRING.staticcall(abi.encodePacked(key, h, NEG_G1, signature));
        return ok && out.length == 32 && uint256(bytes32(out)) == 1;
    }

    /// Whether the 128-byte G1 point `point` is the 48-byte compressed key `compressed` (same x,
    /// same sign of y). Whether it is on the curve and in the subgroup is checked by the pairing.
    function sameKey(bytes memory compressed, bytes memory point) internal pure returns (bool) {
        if (compressed.length != 48 || point.length != 128) return false;
        uint8 flags = uint8(compressed[0]) & 0xe0;
        if (flags & 0x80 == 0 || flags & 0x40 != 0) return false;
        for (uint256 i = 0; i < 16; i++) {
            if (point[i] != 0 || point[64 + i] != 0) return false;
        }
        if (uint8(compressed[0]) & 0x1f != uint8(point[16])) return false;
        for (uint256 i = 1; i < 48; i++) {
            if (compressed[i] != point[16 + i]) return false;
        }
        uint256 yHi;
        uint256 yLo;
        assembly {
            // point[80..96] (top 128 bits of y) and point[96..128].
            yHi := shr(128, mload(add(point, 112)))
            yLo := mload(add(point, 128))
        }
        bool larger = yHi > HALF_P_HI || (yHi == HALF_P_HI && yLo > HALF_P_LO);
        return larger == (flags & 0x20 != 0);
    }
}

/// The Tickrate upper-chain registry: node registry, sequencer set, batch and group-root
/// commitments, synced roots, departures, sequencer equivocations and bridge deposits. It makes the checks
/// `upper_chain::EmbeddedChain` makes, with the same messages and hashes.
contract Registry {
    bytes private constant SIG_DST = "TICKRATE_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";
    bytes private constant POP_DST = "TICKRATE_BLS_POP_BLS12381G2_XMD:SHA-256_SSWU_RO_POP_";

    error BadSignature();
    error AlreadyRegistered(address node);
    error BlsKeyTaken();
    error BadPossession();
    error BadKeyEncoding();
    error TooFewSigners(uint256 signers, uint256 quorum);
    error UnknownSigner(uint256 index, uint256 validators);
    error BadBlsSignature();
    error BatchOutOfOrder(uint64 expected, uint64 got);
    error UnknownMember(address node);
    error DuplicateMember(address node);
    error NotRegistered(address node);
    error WrongSigner(address node, address signer);
    error NotAdmin(address signer);
    error StakeCapExceeded(uint128 stake, uint128 cap);
    error UnknownSequencer(address id);
    error AlreadyWhitelisted(address id);
    error BadRotation(uint32 size, uint32 candidates);
    error BadEpoch(uint64 got, uint64 current);
    error Stale(uint64 recorded, uint64 got);
    error AlreadyDeparted(address node);
    error BadDepartureProof();
    error EquivocationRecorded(address offender);
    error Expelled(address id);
    error EvidenceNotCanonical();
    error BadEvidenceSignature();
    error BadWalletNonce(uint64 expected, uint64 got);
    error UnknownSequencerEpoch(uint64 epoch);
    error BadCommitMessage();

    event NodeRegistered(address indexed node, string endpoint, address rewardWallet, string[] features, bytes blsKey, uint64 activeFrom);
    event NodeWalletUpdated(address indexed node, address rewardWallet, string[] features, uint64 nonce);
    event SyncedRootRecorded(address indexed node, uint64 epoch, bytes32 indexed group, uint64 batch, bytes32 root);
    event SequencerWhitelisted(address indexed id, bytes blsKey, uint128 stake);
    event SequencerRemoved(address indexed id);
    event StakeCapSet(uint128 cap);
    event SequencersRotated(address[] ids);
    event SequencerEpochFixed(uint64 indexed epoch, address[] ids);
    event EpochAdvanced(uint64 epoch);
    event BatchCommitted(uint64 indexed number, bytes32 batchHash);
    event GroupRootCommitted(bytes32 indexed group, uint64 epoch, uint64 batch, bytes32 root);
    event NodeDeparted(address indexed node, uint8 kind, uint64 epoch, bytes evidence);
    event EquivocationReported(
        address indexed offender, uint8 kind, uint64 viewNumber, uint64 sequence, bytes32 firstDigest, bytes32 secondDigest
    );
    event Deposited(uint64 indexed index, address indexed from, address indexed recipient, uint256 amount);

    /// What an operator registers. `blsKeyG1` and `possessionG2` are `blsKey` and `possession`
    /// in the EIP-2537 encoding; the contract checks `blsKeyG1` is `blsKey` and verifies
    /// `possessionG2`.
    struct Registration {
        string endpoint;
        address rewardWallet;
        string[] features;
        bytes blsKey;
        bytes blsKeyG1;
        bytes possession;
        bytes possessionG2;
    }

    struct Node {
        address id;
        string endpoint;
        address rewardWallet;
        string[] features;
        bytes blsKey;
        bytes possession;
        uint64 activeFrom;
        /// 0 while the node has not departed.
        uint64 leftAt;
    }

    struct Sequencer {
        address id;
        bytes blsKey;
        bytes blsKeyG1;
        uint128 stake;
    }

    struct GroupRoot {
        uint64 epoch;
        bytes32 group;
        uint64 batch;
        bytes32 root;
    }

    struct SyncedRoot {
        address node;
        uint64 epoch;
        bytes32 group;
        uint64 batch;
        bytes32 root;
    }

    struct Departure {
        address node;
        /// 0 exit, 1 eviction.
        uint8 kind;
        uint64 epoch;
        bytes evidence;
    }

    /// Equivocation evidence (`primitives::pbft::EquivocationEvidence`): the offender, validator
    /// `index` of the set that saw it, signed both digests as votes of `kind` (0 pre-prepare,
    /// 1 prepare, 2 commit) at one `(view, sequence)`. `firstDigest < secondDigest` (one offence,
    /// one encoding). Pre-prepares and prepares are signed by the offender's operator key (65
    /// bytes, r s v, over the keccak-256 of the message); commits by its BLS key, in the
    /// EIP-2537 encoding.
    struct Equivocation {
        uint8 kind;
        uint16 index;
        uint64 viewNumber;
        uint64 sequence;
        bytes32 firstDigest;
        bytes firstSignature;
        bytes32 secondDigest;
        bytes secondSignature;
    }

    /// A quorum certificate: the signer bitmap (bit i of byte i/8 is validator i) and the
    /// aggregate signature in the EIP-2537 encoding.
    struct Certificate {
        bytes signers;
        bytes signatureG2;
    }

    address public immutable admin;
    uint64 public adminNonce;
    uint128 public stakeCap;
    uint64 public epoch;
    uint64 public depositCount;

    mapping(address => Node) private nodes;
    mapping(address => bytes) private nodeKeyG1;
    mapping(bytes32 => bool) private blsKeyTaken;
    /// Each node's next wallet nonce (`upper_chain::UpperChain::wallet_nonce`).
    mapping(address => uint64) private walletNonces;
    address[] private nodeIds;

    mapping(address => Sequencer) private candidates;
    address[] private candidateIds;
    address[] private active;

    bytes32[] private batches;
    mapping(bytes32 => GroupRoot) private groupRoots;
    mapping(address => SyncedRoot) private synced;
    mapping(address => Departure) private departures;

    mapping(address => bool) private expelled;
    mapping(address => Equivocation) private equivocations;
    address[] private equivocators;

    /// PBFT sequences per sequencer epoch; 0: no epochs (one open-ended epoch whose set is the
    /// active set, which a rotation changes at once). With epochs (`upper_chain::SequencerEpoch`),
    /// epoch `e` spans sequences `e * length + 1 ..= (e + 1) * length`; the first rotation fixes
    /// epoch 0's set, and the commitment of epoch `e`'s last sequence fixes the set of `e + 1` by
    /// the rotation rule over the whitelist as it stands then, with the size of the last rotation.
    uint64 public immutable sequencerEpochLength;
    /// How many sequencers an epoch boundary chooses: the size of the last rotation.
    uint32 public sequencerSetSize;
    /// The sets of the sequencer epochs fixed so far, in order, records whole: a set's
    /// certificates keep verifying whatever later happens to its members' whitelist entries.
    Sequencer[][] private sequencerEpochs;

    constructor(address admin_, uint128 stakeCap_, uint64 sequencerEpochLength_) {
        admin = admin_;
        stakeCap = stakeCap_;
        sequencerEpochLength = sequencerEpochLength_;
    }

    // ---------------------------------------------------------------- registry

    function register(Registration calldata r, bytes calldata signature) external returns (address id) {
        id = recover(registrationHash(r), signature);
        if (nodes[id].id != address(0)) revert AlreadyRegistered(id);
        bytes32 keyHash = keccak256(r.blsKey);
        if (blsKeyTaken[keyHash]) revert BlsKeyTaken();
        if (!BLS12381.sameKey(r.blsKey, r.blsKeyG1) || r.possession.length != 96) revert BadKeyEncoding();
        if (!BLS12381.verify(r.blsKeyG1, POP_DST, r.blsKey, r.possessionG2)) revert BadPossession();
        Node storage node = nodes[id];
        node.id = id;
        node.endpoint = r.endpoint;
        node.rewardWallet = r.rewardWallet;
        for (uint256 i = 0; i < r.features.length; i++) {
            node.features.push(r.features[i]);
        }
        node.blsKey = r.blsKey;
        node.possession = r.possession;
        node.activeFrom = epoch + 1;
        nodeKeyG1[id] = r.blsKeyG1;
        blsKeyTaken[keyHash] = true;
        nodeIds.push(id);
        emit NodeRegistered(id, r.endpoint, r.rewardWallet, r.features, r.blsKey, epoch + 1);
    }

    /// The hash the node key signs: `upper_chain::Registration::signing_hash`.
    function registrationHash(Registration calldata r) public pure returns (bytes32) {
        bytes memory out = abi.encodePacked(
            "tickrate:register", uint32(bytes(r.endpoint).length), r.endpoint, r.rewardWallet, uint32(r.features.length)
        );
        for (uint256 i = 0; i < r.features.length; i++) {
            out = abi.encodePacked(out, uint32(bytes(r.features[i]).length), r.features[i]);
        }
        return keccak256(abi.encodePacked(out, r.blsKey, r.possession));
    }

    /// Changes a registered node's reward wallet and payout features. Only the node's operator
    /// may: the change is signed by the node's key, with the node's next wallet nonce so that an
    /// old change cannot be replayed over a newer one.
    function updateWallet(
        address node,
        address rewardWallet,
        string[] calldata features,
        uint64 nonce,
        bytes calldata signature
    ) external {
        address signer = recover(walletUpdateHash(node, rewardWallet, features, nonce), signature);
        if (signer != node) revert WrongSigner(node, signer);
        Node storage record = nodes[node];
        if (record.id == address(0)) revert NotRegistered(node);
        if (record.leftAt != 0) revert AlreadyDeparted(node);
        if (walletNonces[node] != nonce) revert BadWalletNonce(walletNonces[node], nonce);
        walletNonces[node] = nonce + 1;
        record.rewardWallet = rewardWallet;
        delete record.features;
        for (uint256 i = 0; i < features.length; i++) {
            record.features.push(features[i]);
        }
        emit NodeWalletUpdated(node, rewardWallet, features, nonce);
    }

    /// The nonce `node`'s next wallet update must carry.
    function walletNonce(address node) external view returns (uint64) {
        return walletNonces[node];
    }

    /// The hash the node key signs: `upper_chain::WalletUpdate::signing_hash`.
    function walletUpdateHash(address node, address rewardWallet, string[] calldata features, uint64 nonce)
        public
        pure
        returns (bytes32)
    {
        bytes memory out =
            abi.encodePacked("tickrate:update-wallet", node, rewardWallet, uint32(features.length));
        for (uint256 i = 0; i < features.length; i++) {
            out = abi.encodePacked(out, uint32(bytes(features[i]).length), features[i]);
        }
        return keccak256(abi.encodePacked(out, nonce));
    }

    function recordSyncedRoot(SyncedRoot calldata s, bytes calldata signature) external {
        address signer = recover(
            keccak256(abi.encodePacked("tickrate:synced-root", s.node, s.epoch, s.group, s.batch, s.root)), signature
        );
        if (signer != s.node) revert WrongSigner(s.node, signer);
        if (nodes[s.node].id == address(0)) revert NotRegistered(s.node);
        if (nodes[s.node].leftAt != 0) revert AlreadyDeparted(s.node);
        if (synced[s.node].node != address(0) && synced[s.node].batch > s.batch) {
            revert Stale(synced[s.node].batch, s.batch);
        }
        synced[s.node] = s;
        emit SyncedRootRecorded(s.node, s.epoch, s.group, s.batch, s.root);
    }

    function exitNode(address node, uint64 effectiveEpoch, bytes calldata evidence, bytes calldata signature) external {
        checkDeparture(node, effectiveEpoch);
        address signer = recover(keccak256(departureMessage(node, 0, effectiveEpoch, evidence)), signature);
        if (signer != node) revert WrongSigner(node, signer);
        depart(node, 0, effectiveEpoch, evidence);
    }

    function evictNode(
        address node,
        uint64 effectiveEpoch,
        bytes calldata evidence,
        address[] calldata members,
        Certificate calldata certificate
    ) external {
        checkDeparture(node, effectiveEpoch);
        bool inGroup = false;
        for (uint256 i = 0; i < members.length; i++) {
            if (members[i] == node) inGroup = true;
        }
        if (!inGroup) revert BadDepartureProof();
        bytes[] memory keys = activeKeys(members, epoch);
        checkCertificate(keys, departureMessage(node, 1, effectiveEpoch, evidence), certificate);
        depart(node, 1, effectiveEpoch, evidence);
    }

    function checkDeparture(address node, uint64 effectiveEpoch) private view {
        if (effectiveEpoch <= epoch) revert BadEpoch(effectiveEpoch, epoch);
        if (nodes[node].id == address(0)) revert NotRegistered(node);
        if (nodes[node].leftAt != 0) revert AlreadyDeparted(node);
    }

    function departureMessage(address node, uint8 kind, uint64 effectiveEpoch, bytes calldata evidence)
        private
        pure
        returns (bytes memory)
    {
        return abi.encodePacked("tickrate:departure", node, kind, effectiveEpoch, keccak256(evidence));
    }

    function depart(address node, uint8 kind, uint64 effectiveEpoch, bytes calldata evidence) private {
        nodes[node].leftAt = effectiveEpoch;
        departures[node] = Departure(node, kind, effectiveEpoch, evidence);
        emit NodeDeparted(node, kind, effectiveEpoch, evidence);
    }

    // ---------------------------------------------------------------- administration

    function authorize(bytes memory op, bytes calldata signature) private {
        address signer = recover(keccak256(abi.encodePacked("tickrate:admin", adminNonce, op)), signature);
        if (signer != admin || admin == address(0)) revert NotAdmin(signer);
        adminNonce += 1;
    }

    function whitelistSequencer(Sequencer calldata s, bytes calldata possession, bytes calldata possessionG2, bytes calldata signature)
        external
    {
        authorize(abi.encodePacked(uint8(0), s.id, s.blsKey, possession, s.stake), signature);
        if (expelled[s.id]) revert Expelled(s.id);
        if (candidates[s.id].id != address(0)) revert AlreadyWhitelisted(s.id);
        if (s.stake > stakeCap) revert StakeCapExceeded(s.stake, stakeCap);
        if (!BLS12381.sameKey(s.blsKey, s.blsKeyG1)) revert BadKeyEncoding();
        if (!BLS12381.verify(s.blsKeyG1, POP_DST, s.blsKey, possessionG2)) revert BadPossession();
        candidates[s.id] = s;
        candidateIds.push(s.id);
        emit SequencerWhitelisted(s.id, s.blsKey, s.stake);
    }

    function removeSequencer(address id, bytes calldata signature) external {
        authorize(abi.encodePacked(uint8(1), id), signature);
        // An expelled sequencer is off the whitelist already (its record stays only for the
        // keys of the active set until the next rotation).
        if (candidates[id].id == address(0) || expelled[id]) revert UnknownSequencer(id);
        delete candidates[id];
        dropCandidate(id);
        for (uint256 i = 0; i < active.length; i++) {
            if (active[i] == id) {
                for (uint256 j = i; j + 1 < active.length; j++) {
                    active[j] = active[j + 1];
                }
                active.pop();
                break;
            }
        }
        emit SequencerRemoved(id);
    }

    function dropCandidate(address id) private {
        for (uint256 i = 0; i < candidateIds.length; i++) {
            if (candidateIds[i] == id) {
                candidateIds[i] = candidateIds[candidateIds.length - 1];
                candidateIds.pop();
                break;
            }
        }
    }

    function setStakeCap(uint128 cap, bytes calldata signature) external {
        authorize(abi.encodePacked(uint8(2), cap), signature);
        stakeCap = cap;
        emit StakeCapSet(cap);
    }

    /// The active set becomes the `size` candidates with the most stake counted up to the cap
    /// (ties by lower ID), ordered by ID. With sequencer epochs only the first rotation sets it
    /// (fixing epoch 0); later ones set the size the next boundaries choose.
    function rotateSequencers(uint32 size, bytes calldata signature) external {
        authorize(abi.encodePacked(uint8(3), size), signature);
        uint256 n = candidateIds.length;
        if (size == 0 || size > n) revert BadRotation(size, uint32(n));
        sequencerSetSize = size;
        if (sequencerEpochLength != 0 && sequencerEpochs.length != 0) return;
        address[] memory chosen = selectSequencers(size);
        delete active;
        for (uint256 i = 0; i < chosen.length; i++) {
            active.push(chosen[i]);
        }
        if (sequencerEpochLength != 0) fixSequencerEpoch(chosen);
        emit SequencersRotated(chosen);
    }

    /// The one rule (`upper_chain::select_sequencers`): the `size` candidates with the most stake
    /// counted up to the cap (ties to the lower ID), or all of them if fewer, ordered by ID.
    function selectSequencers(uint32 size) private view returns (address[] memory chosen) {
        uint256 n = candidateIds.length;
        address[] memory ranked = new address[](n);
        for (uint256 i = 0; i < n; i++) {
            address id = candidateIds[i];
            uint256 j = i;
            while (j > 0 && ranksBefore(id, ranked[j - 1])) {
                ranked[j] = ranked[j - 1];
                j--;
            }
            ranked[j] = id;
        }
        uint256 count = size < n ? size : n;
        chosen = new address[](count);
        for (uint256 i = 0; i < count; i++) {
            chosen[i] = ranked[i];
        }
        sortAddresses(chosen);
    }

    /// Appends the next sequencer epoch with the whitelist records of `ids`.
    function fixSequencerEpoch(address[] memory ids) private {
        sequencerEpochs.push();
        Sequencer[] storage set = sequencerEpochs[sequencerEpochs.length - 1];
        for (uint256 i = 0; i < ids.length; i++) {
            set.push(candidates[ids[i]]);
        }
        emit SequencerEpochFixed(uint64(sequencerEpochs.length - 1), ids);
    }

    function ranksBefore(address a, address b) private view returns (bool) {
        uint128 sa = candidates[a].stake < stakeCap ? candidates[a].stake : stakeCap;
        uint128 sb = candidates[b].stake < stakeCap ? candidates[b].stake : stakeCap;
        return sa > sb || (sa == sb && a < b);
    }

    function advanceEpoch(bytes calldata signature) external {
        authorize(abi.encodePacked(uint8(4)), signature);
        epoch += 1;
        emit EpochAdvanced(epoch);
    }

    // ---------------------------------------------------------------- equivocation

    /// Records that the whitelisted sequencer `offender` signed two different digests for one
    /// slot, and expels it; anyone may report (the signatures are the authority). It leaves the
    /// whitelist now, for good, and the active set at the next rotation: certificates index the
    /// active set by position, so shrinking it now would make the running set's certificates
    /// fail. Its record stays in `candidates` until then, for `commitBatch`'s keys.
    /// `upper_chain::EmbeddedChain::report_equivocation` makes the same checks.
    function reportEquivocation(address offender, Equivocation calldata e) external {
        if (expelled[offender]) revert EquivocationRecorded(offender);
        if (candidates[offender].id == address(0)) revert UnknownSequencer(offender);
        if (e.kind > 2 || e.firstDigest >= e.secondDigest) revert EvidenceNotCanonical();
        bytes memory first = voteMessage(e.kind, e.viewNumber, e.sequence, e.firstDigest);
        bytes memory second = voteMessage(e.kind, e.viewNumber, e.sequence, e.secondDigest);
        bool signed;
        if (e.kind < 2) {
            signed = signerOf(keccak256(first), e.firstSignature) == offender
                && signerOf(keccak256(second), e.secondSignature) == offender;
        } else {
            bytes memory key = candidates[offender].blsKeyG1;
            signed = BLS12381.verify(key, SIG_DST, first, e.firstSignature)
                && BLS12381.verify(key, SIG_DST, second, e.secondSignature);
        }
        if (!signed) revert BadEvidenceSignature();
        expelled[offender] = true;
        equivocations[offender] = e;
        equivocators.push(offender);
        dropCandidate(offender);
        emit EquivocationReported(offender, e.kind, e.viewNumber, e.sequence, e.firstDigest, e.secondDigest);
    }

    /// The bytes a PBFT vote of `kind` signs (`primitives::pbft::{pre_prepare,prepare,commit}_message`):
    /// the kind's domain, then the view, the sequence (both 8 bytes big-endian) and the digest.
    function voteMessage(uint8 kind, uint64 viewNumber, uint64 sequence, bytes32 digest)
        private
        pure
        returns (bytes memory)
    {
        bytes memory domain = kind == 0
            ? bytes("tickrate:pre-prepare")
            : kind == 1 ? bytes("tickrate:prepare") : bytes("tickrate:commit");
        return abi.encodePacked(domain, viewNumber, sequence, digest);
    }

    // ---------------------------------------------------------------- commitments

    function commitBatch(uint64 number, bytes32 digest, bytes calldata message, Certificate calldata certificate)
        external
    {
        uint64 expected = uint64(batches.length) + 1;
        if (number != expected) revert BatchOutOfOrder(expected, number);
        if (sequencerEpochLength == 0) {
            bytes[] memory keys = new bytes[](active.length);
            for (uint256 i = 0; i < active.length; i++) {
                keys[i] = candidates[active[i]].blsKeyG1;
            }
            checkCertificate(keys, message, certificate);
            batches.push(digest);
            emit BatchCommitted(number, digest);
            return;
        }
        uint64 sequence = commitSequence(message);
        uint64 epochOf = sequence == 0 ? 0 : (sequence - 1) / sequencerEpochLength;
        if (epochOf >= sequencerEpochs.length) revert UnknownSequencerEpoch(epochOf);
        Sequencer[] storage set = sequencerEpochs[epochOf];
        bytes[] memory setKeys = new bytes[](set.length);
        for (uint256 i = 0; i < set.length; i++) {
            setKeys[i] = set[i].blsKeyG1;
        }
        checkCertificate(setKeys, message, certificate);
        batches.push(digest);
        emit BatchCommitted(number, digest);
        // The commitment of an epoch's last sequence fixes the next epoch's set from the
        // whitelist as it stands now (an empty whitelist fixes nothing: no set could decide).
        if (sequence == (epochOf + 1) * sequencerEpochLength && sequencerEpochs.length == epochOf + 1) {
            address[] memory next = selectSequencers(sequencerSetSize);
            if (next.length != 0) {
                delete active;
                for (uint256 i = 0; i < next.length; i++) {
                    active.push(next[i]);
                }
                fixSequencerEpoch(next);
            }
        }
    }

    /// The sequence a commit's signed bytes name (`primitives::pbft::parse_commit_message`):
    /// `"tickrate:commit" || view || sequence || digest`, integers 8 bytes big-endian.
    function commitSequence(bytes calldata message) private pure returns (uint64) {
        bytes memory domain = bytes("tickrate:commit");
        if (message.length != domain.length + 8 + 8 + 32) revert BadCommitMessage();
        for (uint256 i = 0; i < domain.length; i++) {
            if (message[i] != domain[i]) revert BadCommitMessage();
        }
        return uint64(bytes8(message[domain.length + 8:domain.length + 16]));
    }

    function commitGroupRoot(GroupRoot calldata c, address[] calldata members, Certificate calldata certificate)
        external
    {
        if (c.epoch > epoch) revert BadEpoch(c.epoch, epoch);
        bytes[] memory keys = activeKeys(members, c.epoch);
        if (groupId(members) != c.group) revert UnknownMember(members.length > 0 ? members[0] : address(0));
        checkCertificate(
            keys, abi.encodePacked("tickrate:group-root", c.epoch, c.group, c.batch, c.root), certificate
        );
        if (groupRoots[c.group].batch < c.batch || groupRoots[c.group].group == bytes32(0)) {
            groupRoots[c.group] = c;
            emit GroupRootCommitted(c.group, c.epoch, c.batch, c.root);
        }
    }

    /// `upper_chain::group_id`: keccak256 of the sorted members, each padded to 32 bytes.
    function groupId(address[] calldata members) public pure returns (bytes32) {
        address[] memory sorted = members;
        sortAddresses(sorted);
        return keccak256(abi.encodePacked(sorted));
    }

    function activeKeys(address[] calldata members, uint64 inEpoch) private view returns (bytes[] memory keys) {
        keys = new bytes[](members.length);
        for (uint256 i = 0; i < members.length; i++) {
            address member = members[i];
            for (uint256 j = 0; j < i; j++) {
                if (members[j] == member) revert DuplicateMember(member);
            }
            Node storage node = nodes[member];
            bool isActive =
                node.id != address(0) && node.activeFrom <= inEpoch && (node.leftAt == 0 || inEpoch < node.leftAt);
            if (!isActive) revert UnknownMember(member);
            keys[i] = nodeKeyG1[member];
        }
    }

    /// At least a quorum (all but (n - 1) / 3) of `keys` signed `message`.
    function checkCertificate(bytes[] memory keys, bytes memory message, Certificate calldata certificate)
        private
        view
    {
        uint256 n = keys.length;
        uint256 count = 0;
        bytes memory aggregate;
        for (uint256 i = 0; i < certificate.signers.length * 8; i++) {
            if (uint8(certificate.signers[i / 8]) & (uint8(1) << uint8(i % 8)) == 0) continue;
            if (i >= n) revert UnknownSigner(i, n);
            aggregate = count == 0 ? keys[i] : BLS12381.addG1(aggregate, keys[i]);
            count++;
        }
        uint256 quorum = n - (n == 0 ? 0 : (n - 1) / 3);
        if (count < quorum) revert TooFewSigners(count, quorum);
        if (count == 0 || !BLS12381.verify(aggregate, SIG_DST, message, certificate.signatureG2)) {
            revert BadBlsSignature();
        }
    }

    // ---------------------------------------------------------------- bridge

    function deposit(address recipient) external payable {
        emit Deposited(depositCount, msg.sender, recipient, msg.value);
        depositCount += 1;
    }

    // ---------------------------------------------------------------- reads

    function allNodes() external view returns (Node[] memory out) {
        out = new Node[](nodeIds.length);
        for (uint256 i = 0; i < nodeIds.length; i++) {
            out[i] = nodes[nodeIds[i]];
        }
    }

    /// The active set; with sequencer epochs, the set of the latest epoch fixed.
    function activeSequencers() external view returns (Sequencer[] memory out) {
        if (sequencerEpochs.length != 0) return sequencerEpochs[sequencerEpochs.length - 1];
        out = new Sequencer[](active.length);
        for (uint256 i = 0; i < active.length; i++) {
            out[i] = candidates[active[i]];
        }
    }

    /// Sequencer epoch `e`'s set, if fixed (`upper_chain::UpperChain::sequencer_epoch`). Without
    /// epochs, epoch 0 is the active set and no other epoch is ever fixed.
    function sequencerEpoch(uint64 e) external view returns (bool found, Sequencer[] memory members) {
        if (sequencerEpochLength == 0) {
            if (e != 0) return (false, members);
            return (true, this.activeSequencers());
        }
        if (e >= sequencerEpochs.length) return (false, members);
        return (true, sequencerEpochs[e]);
    }

    function sequencerCandidates() external view returns (Sequencer[] memory out) {
        out = new Sequencer[](candidateIds.length);
        for (uint256 i = 0; i < candidateIds.length; i++) {
            out[i] = candidates[candidateIds[i]];
        }
    }

    function lastBatch() external view returns (uint64) {
        return uint64(batches.length);
    }

    function batchHash(uint64 number) external view returns (bool found, bytes32 hash) {
        if (number == 0 || number > batches.length) return (false, bytes32(0));
        return (true, batches[number - 1]);
    }

    function groupRoot(bytes32 group) external view returns (bool found, GroupRoot memory root) {
        root = groupRoots[group];
        found = root.group != bytes32(0);
    }

    function syncedRoot(address node) external view returns (bool found, SyncedRoot memory root) {
        root = synced[node];
        found = root.node != address(0);
    }

    /// Every recorded equivocation, in the order reported.
    function allEquivocations() external view returns (address[] memory offenders, Equivocation[] memory evidence) {
        offenders = equivocators;
        evidence = new Equivocation[](equivocators.length);
        for (uint256 i = 0; i < equivocators.length; i++) {
            evidence[i] = equivocations[equivocators[i]];
        }
    }

    function departureOf(address node) external view returns (bool found, Departure memory departure) {
        departure = departures[node];
        found = departure.node != address(0);
    }

    // ---------------------------------------------------------------- helpers

    /// The signer of a 65-byte (r, s, v) signature over a prehash, or zero if it has none.
    function signerOf(bytes32 hash, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) return address(0);
        uint8 v = uint8(signature[64]);
        if (v < 27) v += 27;
        if (v != 27 && v != 28) return address(0);
        return ecrecover(hash, v, bytes32(signature[0:32]), bytes32(signature[32:64]));
    }

    /// The signer of a 65-byte (r, s, v) signature over a prehash; v is 0/1 or 27/28.
    function recover(bytes32 hash, bytes calldata signature) private pure returns (address signer) {
        signer = signerOf(hash, signature);
        if (signer == address(0)) revert BadSignature();
    }

    function sortAddresses(address[] memory items) private pure {
        for (uint256 i = 1; i < items.length; i++) {
            address item = items[i];
            uint256 j = i;
            while (j > 0 && items[j - 1] > item) {
                items[j] = items[j - 1];
                j--;
            }
            items[j] = item;
        }
    }
}
