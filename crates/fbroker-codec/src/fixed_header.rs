//! The fixed header: packet type and flags byte, then the remaining length
//! as a variable byte integer of 1 to 4 bytes.

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::types::ProtocolVersion;

/// Largest value a 4-byte variable byte integer can hold.
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;
pub(crate) const AUTH: u8 = 15;

/// A fully read fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub packet_type: u8,
    pub flags: u8,
    /// Bytes taken by the fixed header itself (2 to 5).
    pub header_len: usize,
    pub remaining_len: usize,
}

impl FixedHeader {
    /// Size of the whole packet.
    #[inline]
    pub fn total_len(&self) -> usize {
        self.header_len + self.remaining_len
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeaderStatus {
    Complete(FixedHeader),
    /// The header is not complete; at least this many more bytes are needed.
    Incomplete(usize),
}

/// Reads the fixed header at the front of `buf` without consuming it.
///
/// The type and flags are checked as soon as the first byte is present, and
/// the size limit as soon as the remaining length is complete, so neither a
/// bad packet type nor an oversized packet is ever buffered.
#[inline]
pub(crate) fn parse(buf: &[u8], version: ProtocolVersion, max_packet_size: usize) -> Result<HeaderStatus, DecodeError> {
    let Some(&first) = buf.first() else {
        // The shortest packet is two bytes (e.g. PINGREQ).
        return Ok(HeaderStatus::Incomplete(2));
    };
    let packet_type = first >> 4;
    let flags = first & 0x0F;
    check_type_and_flags(packet_type, flags, version)?;

    let mut value = 0usize;
    for i in 0..4 {
        let Some(&b) = buf.get(1 + i) else {
            return Ok(HeaderStatus::Incomplete(1));
        };
        value |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            // [MQTT-1.5.5-1] the minimum number of bytes: a final byte of 0
            // after a continuation byte adds nothing.
            if i > 0 && b == 0 {
                return Err(DecodeError::MalformedRemainingLength);
            }
            let header = FixedHeader { packet_type, flags, header_len: 2 + i, remaining_len: value };
            let size = header.total_len();
            if size > max_packet_size {
                return Err(DecodeError::PacketTooLarge { size, max: max_packet_size });
            }
            return Ok(HeaderStatus::Complete(header));
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

/// MQTT 5.0 section 2.1.3 / MQTT 3.1.1 section 2.2.2: the flag bits of every
/// packet type other than PUBLISH are fixed.
#[inline]
fn check_type_and_flags(packet_type: u8, flags: u8, version: ProtocolVersion) -> Result<(), DecodeError> {
    let ok = match packet_type {
        0 => return Err(DecodeError::InvalidPacketType(0)),
        PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                // [MQTT-3.3.1-4]
                return Err(DecodeError::InvalidQoS(3));
            }
            if qos == 0 && flags & 0b1000 != 0 {
                // [MQTT-3.3.1-2]
                return Err(DecodeError::Malformed("DUP flag set on a QoS 0 PUBLISH"));
            }
            true
        }
        // [MQTT-3.6.1-1] [MQTT-3.8.1-1] [MQTT-3.10.1-1]. MQTT 3.1 clients set
        // DUP on retransmitted PUBREL/SUBSCRIBE/UNSUBSCRIBE, which that
        // version allowed, so the DUP bit is tolerated there.
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => flags == 0b0010 || (version == ProtocolVersion::V3_1 && flags == 0b1010),
        AUTH if !version.is_v5() => return Err(DecodeError::InvalidPacketType(AUTH)),
        _ => flags == 0,
    };
    if ok {
        Ok(())
    } else {
        Err(DecodeError::InvalidFixedHeaderFlags { packet_type, flags })
    }
}

/// Number of bytes `value` takes as a variable byte integer (4 for values
/// too large to encode, which the writers reject).
#[inline]
pub(crate) fn varint_len(value: usize) -> usize {
    if value < 128 {
        1
    } else if value < 16_384 {
        2
    } else if value < 2_097_152 {
        3
    } else {
        4
    }
}

/// Writes a variable byte integer. `value` must be at most
/// [`MAX_REMAINING_LENGTH`].
#[inline]
pub(crate) fn put_varint(out: &mut BytesMut, mut value: usize) {
    debug_assert!(value <= MAX_REMAINING_LENGTH);
    loop {
        let mut b = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            b |= 0x80;
        }
        out.put_u8(b);
        if value == 0 {
            break;
        }
    }
}

/// Size of a whole packet whose remaining length is `remaining_len`.
#[inline]
pub(crate) fn packet_len(remaining_len: usize) -> usize {
    1 + varint_len(remaining_len) + remaining_len
}

/// Checks the remaining length, reserves room for the whole packet and
/// writes the fixed header.
#[inline]
pub(crate) fn put_header(out: &mut BytesMut, first_byte: u8, remaining_len: usize) -> Result<(), EncodeError> {
    if remaining_len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining_len));
    }
    out.reserve(packet_len(remaining_len));
    out.put_u8(first_byte);
    put_varint(out, remaining_len);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: ProtocolVersion = ProtocolVersion::V5;

    fn header(bytes: &[u8]) -> Result<HeaderStatus, DecodeError> {
        parse(bytes, V, usize::MAX)
    }

    #[test]
    fn varint_boundaries_round_trip() {
        for (value, len) in [
            (0, 1),
            (127, 1),
            (128, 2),
            (16_383, 2),
            (16_384, 3),
            (2_097_151, 3),
            (2_097_152, 4),
            (MAX_REMAINING_LENGTH, 4),
        ] {
            let mut out = BytesMut::new();
            out.put_u8(0xC0);
            put_varint(&mut out, value);
            assert_eq!(out.len(), 1 + len, "{value}");
            assert_eq!(varint_len(value), len);
            match header(&out).unwrap() {
                HeaderStatus::Complete(h) => {
                    assert_eq!(h.remaining_len, value);
                    assert_eq!(h.header_len, 1 + len);
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn spec_varint_examples() {
        // MQTT 3.1.1 table 2.4 boundaries.
        let cases: [(&[u8], usize); 8] = [
            (&[0x00], 0),
            (&[0x7F], 127),
            (&[0x80, 0x01], 128),
            (&[0xFF, 0x7F], 16_383),
            (&[0x80, 0x80, 0x01], 16_384),
            (&[0xFF, 0xFF, 0x7F], 2_097_151),
            (&[0x80, 0x80, 0x80, 0x01], 2_097_152),
            (&[0xFF, 0xFF, 0xFF, 0x7F], 268_435_455),
        ];
        for (bytes, value) in cases {
            let mut buf = vec![0x30];
            buf.extend_from_slice(bytes);
            match header(&buf).unwrap() {
                HeaderStatus::Complete(h) => assert_eq!(h.remaining_len, value),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn incomplete_header_needs() {
        assert_eq!(header(&[]).unwrap(), HeaderStatus::Incomplete(2));
        assert_eq!(header(&[0x30]).unwrap(), HeaderStatus::Incomplete(1));
        assert_eq!(header(&[0x30, 0x80]).unwrap(), HeaderStatus::Incomplete(1));
        assert_eq!(header(&[0x30, 0x80, 0x80, 0x80]).unwrap(), HeaderStatus::Incomplete(1));
    }

    #[test]
    fn mqtt_1_5_5_1_five_byte_and_non_minimal_varints() {
        assert_eq!(header(&[0x30, 0x80, 0x80, 0x80, 0x80]), Err(DecodeError::MalformedRemainingLength));
        assert_eq!(header(&[0x30, 0x80, 0x00]), Err(DecodeError::MalformedRemainingLength));
        assert_eq!(header(&[0x30, 0xFF, 0x80, 0x00]), Err(DecodeError::MalformedRemainingLength));
    }
}
