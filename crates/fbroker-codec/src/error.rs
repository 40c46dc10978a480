//! Decode and encode errors.

use thiserror::Error;

use crate::types::{reason, ProtocolVersion};

/// Why a packet could not be decoded. Every variant is fatal to the
/// connection: the broker answers with [`DecodeError::reason_code`] (in a
/// CONNACK before the session exists, in a DISCONNECT afterwards, or not at
/// all for 3.x) and closes it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The remaining-length varint is longer than 4 bytes or not minimal.
    #[error("malformed remaining length")]
    MalformedRemainingLength,
    /// The fixed header announces a packet larger than the limit.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: usize },
    /// Packet type 0, or AUTH (15) on a connection that is not MQTT 5.0.
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// Reserved flag bits of the fixed header have the wrong value.
    #[error("invalid fixed header flags {flags:#06b} for packet type {packet_type}")]
    InvalidFixedHeaderFlags { packet_type: u8, flags: u8 },
    /// CONNECT protocol name is neither `MQTT` nor `MQIsdp`.
    #[error("invalid protocol name {0:?}")]
    InvalidProtocolName(String),
    /// CONNECT protocol level is not 3, 4 or 5, or does not match the
    /// protocol name. The value is the level byte as received: the broker
    /// answers with CONNACK return code 1 (3.x) or reason 0x84 (level 5).
    #[error("unsupported protocol version {0}")]
    UnsupportedProtocolVersion(u8),
    /// QoS 3 in a PUBLISH header, a will, or subscription options.
    #[error("invalid QoS {0}")]
    InvalidQoS(u8),
    /// A UTF-8 string field is not well-formed UTF-8 or contains U+0000.
    #[error("invalid UTF-8 string")]
    InvalidUtf8,
    /// Any other malformation; the text says which rule was broken.
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// An MQTT 5.0 protocol error that is not a malformation.
    #[error("protocol error: {0}")]
    ProtocolError(&'static str),
}

impl DecodeError {
    /// The MQTT 5.0 reason code to send in CONNACK or DISCONNECT.
    pub fn reason_code(&self) -> u8 {
        match self {
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            // [MQTT-3.1.2-1]: the server MAY answer an unknown protocol name
            // with 0x84 as well.
            DecodeError::UnsupportedProtocolVersion(_) | DecodeError::InvalidProtocolName(_) => {
                reason::UNSUPPORTED_PROTOCOL_VERSION
            }
            DecodeError::ProtocolError(_) => reason::PROTOCOL_ERROR,
            DecodeError::MalformedRemainingLength
            | DecodeError::InvalidPacketType(_)
            | DecodeError::InvalidFixedHeaderFlags { .. }
            | DecodeError::InvalidQoS(_)
            | DecodeError::InvalidUtf8
            | DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
        }
    }
}

/// Why a packet could not be encoded. On error `encode` leaves the output
/// buffer as it was.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EncodeError {
    /// A UTF-8 string field is longer than 65,535 bytes.
    #[error("string of {0} bytes is longer than 65535 bytes")]
    StringTooLong(usize),
    /// A binary data field is longer than 65,535 bytes.
    #[error("binary field of {0} bytes is longer than 65535 bytes")]
    BinaryTooLong(usize),
    /// The remaining length would exceed 268,435,455 bytes.
    #[error("remaining length {0} exceeds 268435455 bytes")]
    PacketTooLarge(usize),
    /// A subscription identifier outside 1..=268,435,455.
    #[error("subscription identifier {0} is outside 1..=268435455")]
    InvalidSubscriptionIdentifier(u32),
    /// The packet type does not exist in this protocol version (AUTH in 3.x).
    #[error("{packet} does not exist in protocol {version:?}")]
    UnsupportedPacket { packet: &'static str, version: ProtocolVersion },
    /// The packet cannot be represented on the wire as given.
    #[error("invalid packet: {0}")]
    InvalidPacket(&'static str),
}
