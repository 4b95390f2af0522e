//! The protobuf wire format as both fast paths use it: wire types,
//! varints, tags, zigzag and length-delimited runs, read ([`reply`]) and
//! written ([`request`]). What a field's bytes mean is the plans' business.
//!
//! Spec: <https://protobuf.dev/programming-guides/encoding/>.
//!
//! These run once per field or value on the hot path; each is `#[inline]`
//! so that, from a module of their own, they still inline into their
//! callers as the copies beside those callers did.
//!
//! [`reply`]: super::reply
//! [`request`]: super::request

use super::{Fallback, Result};

/// A field's wire type: the low three bits of its tag. Groups (3, 4) are
/// not here; the fast paths leave them to the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireType {
    /// int32, int64, uint32, uint64, sint32, sint64, bool, enum.
    Varint = 0,
    /// fixed64, sfixed64, double.
    I64 = 1,
    /// string, bytes, messages, packed repeated fields.
    Len = 2,
    /// fixed32, sfixed32, float.
    I32 = 5,
}

impl WireType {
    /// The wire type of a decoded tag.
    ///
    /// # Errors
    /// [`Fallback`] for groups (3, 4) and the invalid 6 and 7: the
    /// reference decides.
    #[inline]
    pub(super) fn of_tag(tag: u64) -> Result<Self> {
        match tag & 7 {
            0 => Ok(Self::Varint),
            1 => Ok(Self::I64),
            2 => Ok(Self::Len),
            5 => Ok(Self::I32),
            _ => Err(Fallback),
        }
    }

    /// Whether repeated values of this type may be packed into one
    /// length-delimited run: all but length-delimited values.
    #[inline]
    pub(super) fn is_packable(self) -> bool {
        self != Self::Len
    }
}

/// Reads a varint.
///
/// # Errors
/// [`Fallback`] when truncated or longer than ten bytes (or ten bytes
/// that overflow 64 bits).
#[inline]
pub(super) fn varint(buf: &mut &[u8]) -> Result<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&byte, rest) = buf.split_first().ok_or(Fallback)?;
        *buf = rest;
        if i == 9 && byte > 1 {
            return Err(Fallback);
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(Fallback)
}

/// Reads `N` fixed bytes (a little-endian I32 or I64 value).
///
/// # Errors
/// [`Fallback`] when fewer are left.
#[inline]
pub(super) fn take<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N]> {
    let (head, rest) = buf.split_first_chunk::<N>().ok_or(Fallback)?;
    *buf = rest;
    Ok(*head)
}

/// Reads a length-delimited run: its varint length, then that many bytes.
///
/// # Errors
/// [`Fallback`] when the length is bad or longer than what is left.
#[inline]
pub(super) fn take_len<'a>(buf: &mut &'a [u8]) -> Result<&'a [u8]> {
    let len = usize::try_from(varint(buf)?).map_err(|_| Fallback)?;
    if len > buf.len() {
        return Err(Fallback);
    }
    let (head, rest) = buf.split_at(len);
    *buf = rest;
    Ok(head)
}

/// Skips one value of `wire_type`.
///
/// # Errors
/// [`Fallback`] when the value is truncated.
#[inline]
pub(super) fn skip(wire_type: WireType, buf: &mut &[u8]) -> Result<()> {
    match wire_type {
        WireType::Varint => varint(buf).map(|_| ()),
        WireType::I64 => take::<8>(buf).map(|_| ()),
        WireType::Len => take_len(buf).map(|_| ()),
        WireType::I32 => take::<4>(buf).map(|_| ()),
    }
}

/// A sint32 from its zigzag encoding.
#[inline]
pub(super) fn zigzag_decode32(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// A sint64 from its zigzag encoding.
#[inline]
pub(super) fn zigzag_decode64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// The zigzag encoding of a sint32.
#[inline]
pub(super) fn zigzag_encode32(v: i32) -> u32 {
    ((v << 1) ^ (v >> 31)) as u32
}

/// The zigzag encoding of a sint64.
#[inline]
pub(super) fn zigzag_encode64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Writes the tag of field `number` with `wire_type`.
#[inline]
pub(super) fn put_tag(out: &mut Vec<u8>, number: u32, wire_type: WireType) {
    put_varint(out, u64::from(number << 3 | wire_type as u32));
}

/// Writes a varint.
#[inline]
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reserves one byte for a length; returns where the content starts.
#[inline]
pub(super) fn begin_len(out: &mut Vec<u8>) -> usize {
    out.push(0);
    out.len()
}

/// Writes the length of everything after `start`, widening the reserved byte if needed.
#[inline]
pub(super) fn end_len(out: &mut Vec<u8>, start: usize) {
    let len = out.len() - start;
    if len < 0x80 {
        out[start - 1] = len as u8;
        return;
    }
    let mut varint = [0u8; 10];
    let mut n = 0;
    let mut v = len as u64;
    while v >= 0x80 {
        varint[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    varint[n] = v as u8;
    let extra = n;
    out.resize(out.len() + extra, 0);
    out.copy_within(start..start + len, start + extra);
    out[start - 1..start + extra].copy_from_slice(&varint[..=n]);
}
