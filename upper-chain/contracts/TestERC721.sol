// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";

/// A plain OpenZeppelin ERC-721 for the bridge's tests: the deployer mints items.
contract TestERC721 is ERC721 {
    address private immutable minter;

    error NotMinter(address caller);

    constructor(string memory name_, string memory symbol_) ERC721(name_, symbol_) {
        minter = msg.sender;
    }

    function mint(address to, uint256 tokenId) external {
        if (msg.sender != minter) revert NotMinter(msg.sender);
        _mint(to, tokenId);
    }
}
