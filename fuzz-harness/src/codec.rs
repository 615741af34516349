//! The property every bounded-codec type must hold.

use std::{any::type_name, fmt::Debug};

use primitives::{Decode, Encode};

/// Decodes `data` as a `T`; if it decodes, asserts that `data` is exactly the value's
/// canonical encoding (so no two byte strings name one value, and the decoder read no byte
/// it did not account for) and that the encoding decodes back to the same value.
pub fn canonical<T: Decode + Encode + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value = T::from_bytes(data).ok()?;
    assert_canonical(&value, data);
    Some(value)
}

/// Asserts that `value`, decoded from `data`, re-encodes to `data` and decodes to itself.
pub fn assert_canonical<T: Decode + Encode + PartialEq + Debug>(value: &T, data: &[u8]) {
    let encoded = value.to_bytes();
    assert!(
        encoded == data,
        "{} decoded from {} bytes that are not its canonical encoding ({} bytes)",
        type_name::<T>(),
        data.len(),
        encoded.len()
    );
    let again = T::from_bytes(&encoded);
    assert_eq!(
        again.as_ref(),
        Ok(value),
        "{} does not decode from its own encoding",
        type_name::<T>()
    );
}
