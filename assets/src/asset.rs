//! Asset types: how an upper-chain token becomes the u256 an output holds, as the bridge
//! contract (`AssetBridge.sol`) builds it. An ERC-20's type is its contract address; an ERC-721
//! item's type is its contract address in the low 160 bits and its id in the high 96, so items
//! of one contract are distinct types and never balance against each other. The bridge takes
//! each token contract as the kind of its first deposit, so an ERC-20 and item 0 of the same
//! contract never meet.

use alloy_primitives::{Address, U256};

use crate::error::AssetsError;

/// Bits of an item id in an asset type.
pub const ITEM_ID_BITS: usize = 96;

/// The asset type of ERC-20 `token`.
pub fn erc20(token: Address) -> U256 {
    U256::from_be_slice(token.as_slice())
}

/// The asset type of item `id` of ERC-721 `token`; ids from 2^96 on cannot be bridged.
pub fn erc721(token: Address, id: U256) -> Result<U256, AssetsError> {
    if id.bit_len() > ITEM_ID_BITS {
        return Err(AssetsError::ItemIdTooLarge { id });
    }
    Ok((id << 160) | erc20(token))
}

/// The token contract of an asset type.
pub fn token_of(asset: U256) -> Address {
    Address::from_slice(&asset.to_be_bytes::<32>()[12..])
}

/// The item id of an ERC-721 asset type (zero for an ERC-20).
pub fn item_id_of(asset: U256) -> U256 {
    asset >> 160
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_types_round_trip_and_bound_item_ids() {
        let token = Address::repeat_byte(0x72);
        assert_eq!(token_of(erc20(token)), token);
        assert_eq!(item_id_of(erc20(token)), U256::ZERO);
        let id = (U256::from(1) << 96) - U256::from(1);
        let item = erc721(token, id).expect("fits");
        assert_eq!((token_of(item), item_id_of(item)), (token, id));
        assert_ne!(item, erc721(token, U256::from(7)).expect("fits"));
        assert_eq!(
            erc721(token, U256::from(1) << 96),
            Err(AssetsError::ItemIdTooLarge {
                id: U256::from(1) << 96
            })
        );
    }
}
