//! The canonical, bounded binary codec.
//!
//! Integers are big-endian and fixed-width; byte strings and lists carry a `u32` length that is
//! checked against a maximum *before* anything is allocated. Every versioned type starts with a
//! version byte. Decoding never panics: malformed input yields a [`DecodeError`].

use alloy_primitives::{Address, B256, U256};

use crate::constants::BYTES_FIELD_MAX;

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended before the value did.
    #[error("input ended early: needed {needed} bytes, {remaining} left")]
    UnexpectedEnd {
        /// Bytes the next field needs.
        needed: usize,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// A length prefix exceeds the bound for its field.
    #[error("{what} too large: {len} > {max}")]
    Oversized {
        /// The field.
        what: &'static str,
        /// The declared length.
        len: usize,
        /// The bound.
        max: usize,
    },
    /// A version byte this build does not know.
    #[error("unknown {what} version {version}")]
    UnknownVersion {
        /// The type.
        what: &'static str,
        /// The version found.
        version: u8,
    },
    /// An enum tag this build does not know.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// The type.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// Bytes left over after a complete value.
    #[error("{count} trailing bytes after the value")]
    TrailingBytes {
        /// How many bytes were left.
        count: usize,
    },
    /// A field decoded but breaks a rule of its type.
    #[error("invalid {what}: {why}")]
    Invalid {
        /// The field.
        what: &'static str,
        /// The rule broken.
        why: &'static str,
    },
}

/// A value with one canonical encoding.
pub trait Encode {
    /// Appends the encoding to `out` (callers reuse buffers on hot paths).
    fn encode(&self, out: &mut Vec<u8>);

    /// The encoding in a fresh buffer.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// A value decodable from untrusted bytes.
pub trait Decode: Sized {
    /// Reads one value from the decoder.
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError>;

    /// Decodes exactly one value; trailing bytes are an error.
    fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut decoder = Decoder::new(bytes);
        let value = Self::decode(&mut decoder)?;
        decoder.finish()?;
        Ok(value)
    }
}

/// A cursor over untrusted bytes.
#[derive(Debug)]
pub struct Decoder<'a> {
    input: &'a [u8],
}

impl<'a> Decoder<'a> {
    /// A decoder over `input`.
    pub fn new(input: &'a [u8]) -> Self {
        Decoder { input }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.input.len()
    }

    /// Fails unless every byte was read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.input.len(),
            })
        }
    }

    /// The next `len` bytes.
    pub fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.input.len() {
            return Err(DecodeError::UnexpectedEnd {
                needed: len,
                remaining: self.input.len(),
            });
        }
        let (head, tail) = self.input.split_at(len);
        self.input = tail;
        Ok(head)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u16`.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A big-endian `u128`.
    pub fn u128(&mut self) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(self.array()?))
    }

    /// A boolean byte, 0 or 1.
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(DecodeError::UnknownTag { what: "bool", tag }),
        }
    }

    /// A 20-byte address.
    pub fn address(&mut self) -> Result<Address, DecodeError> {
        Ok(Address::from(self.array::<20>()?))
    }

    /// A 32-byte hash.
    pub fn b256(&mut self) -> Result<B256, DecodeError> {
        Ok(B256::from(self.array::<32>()?))
    }

    /// A 256-bit big-endian unsigned integer.
    pub fn u256(&mut self) -> Result<U256, DecodeError> {
        Ok(U256::from_be_bytes(self.array::<32>()?))
    }

    /// A list or string length, checked against `max` before the caller allocates.
    pub fn length(&mut self, what: &'static str, max: usize) -> Result<usize, DecodeError> {
        let len = self.u32()? as usize;
        if len > max {
            return Err(DecodeError::Oversized { what, len, max });
        }
        Ok(len)
    }

    /// A length-prefixed byte string of at most `max` bytes.
    pub fn bytes(&mut self, what: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = self.length(what, max.min(BYTES_FIELD_MAX))?;
        self.take(len)
    }

    /// A length-prefixed list of at most `max` items.
    pub fn list<T: Decode>(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<Vec<T>, DecodeError> {
        let len = self.length(what, max)?;
        // Each item takes at least one byte, so a length beyond the input is refused before
        // reserving memory for it.
        if len > self.remaining() {
            return Err(DecodeError::UnexpectedEnd {
                needed: len,
                remaining: self.remaining(),
            });
        }
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(T::decode(self)?);
        }
        Ok(items)
    }

    /// A version byte that must equal one of `known`.
    pub fn version(&mut self, what: &'static str, known: &[u8]) -> Result<u8, DecodeError> {
        let version = self.u8()?;
        if known.contains(&version) {
            Ok(version)
        } else {
            Err(DecodeError::UnknownVersion { what, version })
        }
    }
}

/// Appends a length prefix; panics only if our own value exceeds `u32`, which the bounds forbid.
pub fn put_length(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("encoded lengths are bounded far below u32::MAX");
    out.extend_from_slice(&len.to_be_bytes());
}

/// Appends a length-prefixed byte string.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_length(out, bytes.len());
    out.extend_from_slice(bytes);
}

/// Appends a length-prefixed list.
pub fn put_list<T: Encode>(out: &mut Vec<u8>, items: &[T]) {
    put_length(out, items.len());
    for item in items {
        item.encode(out);
    }
}

/// Appends a 256-bit integer, big-endian.
pub fn put_u256(out: &mut Vec<u8>, value: &U256) {
    out.extend_from_slice(&value.to_be_bytes::<32>());
}

impl Encode for B256 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_slice());
    }
}

impl Decode for B256 {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.b256()
    }
}

impl Encode for Address {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_slice());
    }
}

impl Decode for Address {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.address()
    }
}

impl Encode for u64 {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

impl Decode for u64 {
    fn decode(decoder: &mut Decoder<'_>) -> Result<Self, DecodeError> {
        decoder.u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_oversized_lengths_before_allocating() {
        let mut bytes = Vec::new();
        put_length(&mut bytes, 1_000_000);
        let mut decoder = Decoder::new(&bytes);
        assert_eq!(
            decoder.list::<u64>("items", 10),
            Err(DecodeError::Oversized {
                what: "items",
                len: 1_000_000,
                max: 10
            })
        );
        let mut decoder = Decoder::new(&bytes);
        assert!(matches!(
            decoder.list::<u64>("items", usize::MAX),
            Err(DecodeError::UnexpectedEnd { .. })
        ));
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = 7u64.to_bytes();
        bytes.push(0);
        assert_eq!(
            u64::from_bytes(&bytes),
            Err(DecodeError::TrailingBytes { count: 1 })
        );
    }
}
