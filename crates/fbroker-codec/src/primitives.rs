//! Data representations of MQTT section 1.5: integers, UTF-8 strings,
//! binary data and variable byte integers, read from a frame held as
//! [`Bytes`] (so strings and payloads can be sliced without copying) and
//! written to a [`BytesMut`].

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::MAX_REMAINING_LENGTH;
use crate::types::Utf8Bytes;

const TRUNCATED: DecodeError = DecodeError::Malformed("packet shorter than its fields");

/// A cursor over one packet's variable header and payload.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    #[inline]
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    #[inline]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.pos == self.buf.len()
    }

    #[inline]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Fails unless every byte has been read.
    #[inline]
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed("bytes left over after the last field"))
        }
    }

    #[inline]
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or(TRUNCATED)?;
        self.pos += 1;
        Ok(b)
    }

    #[inline]
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        let s = self.slice(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    #[inline]
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        let s = self.slice(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    /// A packet identifier, which must not be 0 [MQTT-2.3.1-1].
    #[inline]
    pub fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::Malformed("packet identifier 0")),
            id => Ok(id),
        }
    }

    #[inline]
    pub fn slice(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if n > self.remaining() {
            return Err(TRUNCATED);
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    /// `n` bytes as a reference-counted slice of the frame.
    #[inline]
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.remaining() {
            return Err(TRUNCATED);
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Everything not read yet, as a slice of the frame.
    #[inline]
    pub fn rest(&mut self) -> Bytes {
        let start = self.pos;
        self.pos = self.buf.len();
        if start == 0 {
            self.buf.clone()
        } else {
            self.buf.slice(start..)
        }
    }

    /// Everything not read yet, borrowed.
    #[inline]
    pub fn rest_slice(&mut self) -> &[u8] {
        let start = self.pos;
        self.pos = self.buf.len();
        &self.buf[start..]
    }

    /// Two-byte length then that many bytes, borrowed.
    #[inline]
    pub fn binary_slice(&mut self) -> Result<&[u8], DecodeError> {
        let n = usize::from(self.u16()?);
        self.slice(n)
    }

    /// Binary Data (section 1.5.6) as a slice of the frame.
    #[inline]
    pub fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let n = usize::from(self.u16()?);
        self.bytes(n)
    }

    /// UTF-8 Encoded String (section 1.5.4), copied into a `String`.
    #[inline]
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary_slice()?;
        Ok(check_utf8(raw)?.to_owned())
    }

    /// UTF-8 Encoded String as a slice of the frame.
    #[inline]
    pub fn utf8(&mut self) -> Result<Utf8Bytes, DecodeError> {
        let raw = self.binary()?;
        if raw.contains(&0) {
            return Err(DecodeError::InvalidUtf8);
        }
        Utf8Bytes::try_from_bytes(raw).map_err(|_| DecodeError::InvalidUtf8)
    }

    /// Variable Byte Integer (section 1.5.5) inside the variable header.
    #[inline]
    pub fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let b = self.u8()?;
            value |= u32::from(b & 0x7F) << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    // [MQTT-1.5.5-1]
                    return Err(DecodeError::Malformed("variable byte integer not minimally encoded"));
                }
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("variable byte integer longer than 4 bytes"))
    }
}

/// Checks a UTF-8 string field: well-formed UTF-8 (which excludes the
/// surrogates U+D800..U+DFFF) [MQTT-1.5.3-1] and no U+0000 [MQTT-1.5.3-2].
#[inline]
pub(crate) fn check_utf8(raw: &[u8]) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
    if raw.contains(&0) {
        return Err(DecodeError::InvalidUtf8);
    }
    Ok(s)
}

/// Encoded size of a string or binary field.
#[inline]
pub(crate) fn field_len(len: usize) -> usize {
    2 + len
}

/// Writes a UTF-8 Encoded String.
#[inline]
pub(crate) fn put_str(out: &mut BytesMut, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong(s.len()))?;
    out.put_u16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// Writes Binary Data.
#[inline]
pub(crate) fn put_binary(out: &mut BytesMut, b: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(b.len()).map_err(|_| EncodeError::BinaryTooLong(b.len()))?;
    out.put_u16(len);
    out.put_slice(b);
    Ok(())
}

/// Writes a Variable Byte Integer that is not a remaining length.
#[inline]
pub(crate) fn put_varint_u32(out: &mut BytesMut, value: u32) {
    debug_assert!(value as usize <= MAX_REMAINING_LENGTH);
    crate::fixed_header::put_varint(out, value as usize);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reads_fields_in_order() {
        let mut r = Reader::new(Bytes::from_static(b"\x01\x00\x02\x00\x00\x00\x03\x00\x02hi\x80\x01tail"));
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.u16().unwrap(), 2);
        assert_eq!(r.u32().unwrap(), 3);
        assert_eq!(&*r.utf8().unwrap(), "hi");
        assert_eq!(r.varint().unwrap(), 128);
        assert_eq!(r.remaining(), 4);
        assert_eq!(&r.rest()[..], b"tail");
        assert!(r.is_empty());
        assert!(r.finish().is_ok());
        assert_eq!(r.u8(), Err(TRUNCATED));
    }

    #[test]
    fn mqtt_1_5_3_1_and_2_string_checks() {
        assert_eq!(check_utf8(b"a\0b"), Err(DecodeError::InvalidUtf8));
        assert_eq!(check_utf8(b"\xED\xA0\x80"), Err(DecodeError::InvalidUtf8));
        assert_eq!(check_utf8(b"\xC0\x80"), Err(DecodeError::InvalidUtf8));
        assert_eq!(check_utf8("\u{FEFF}ok".as_bytes()).unwrap(), "\u{FEFF}ok");
    }

    #[test]
    fn truncated_string_is_malformed() {
        let mut r = Reader::new(Bytes::from_static(b"\x00\x05abc"));
        assert!(matches!(r.string(), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn property_varint_rejects_overlong() {
        let mut r = Reader::new(Bytes::from_static(b"\xFF\xFF\xFF\xFF\x01"));
        assert!(matches!(r.varint(), Err(DecodeError::Malformed(_))));
        let mut r = Reader::new(Bytes::from_static(b"\x85\x00"));
        assert!(matches!(r.varint(), Err(DecodeError::Malformed(_))));
    }
}
