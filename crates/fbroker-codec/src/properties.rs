//! MQTT 5.0 properties (section 2.2.2): a variable byte integer length, then
//! (identifier, value) pairs. Which identifiers a packet may carry follows
//! the table in section 2.2.2.2.

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::{varint_len, MAX_REMAINING_LENGTH};
use crate::primitives::{field_len, put_binary, put_str, put_varint_u32, Reader};
use crate::types::Properties;

pub(crate) const PAYLOAD_FORMAT_INDICATOR: u32 = 0x01;
pub(crate) const MESSAGE_EXPIRY_INTERVAL: u32 = 0x02;
pub(crate) const CONTENT_TYPE: u32 = 0x03;
pub(crate) const RESPONSE_TOPIC: u32 = 0x08;
pub(crate) const CORRELATION_DATA: u32 = 0x09;
pub(crate) const SUBSCRIPTION_IDENTIFIER: u32 = 0x0B;
pub(crate) const SESSION_EXPIRY_INTERVAL: u32 = 0x11;
pub(crate) const ASSIGNED_CLIENT_IDENTIFIER: u32 = 0x12;
pub(crate) const SERVER_KEEP_ALIVE: u32 = 0x13;
pub(crate) const AUTHENTICATION_METHOD: u32 = 0x15;
pub(crate) const AUTHENTICATION_DATA: u32 = 0x16;
pub(crate) const REQUEST_PROBLEM_INFORMATION: u32 = 0x17;
pub(crate) const WILL_DELAY_INTERVAL: u32 = 0x18;
pub(crate) const REQUEST_RESPONSE_INFORMATION: u32 = 0x19;
pub(crate) const RESPONSE_INFORMATION: u32 = 0x1A;
pub(crate) const SERVER_REFERENCE: u32 = 0x1C;
pub(crate) const REASON_STRING: u32 = 0x1F;
pub(crate) const RECEIVE_MAXIMUM: u32 = 0x21;
pub(crate) const TOPIC_ALIAS_MAXIMUM: u32 = 0x22;
pub(crate) const TOPIC_ALIAS: u32 = 0x23;
pub(crate) const MAXIMUM_QOS: u32 = 0x24;
pub(crate) const RETAIN_AVAILABLE: u32 = 0x25;
pub(crate) const USER_PROPERTY: u32 = 0x26;
pub(crate) const MAXIMUM_PACKET_SIZE: u32 = 0x27;
pub(crate) const WILDCARD_SUBSCRIPTION_AVAILABLE: u32 = 0x28;
pub(crate) const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u32 = 0x29;
pub(crate) const SHARED_SUBSCRIPTION_AVAILABLE: u32 = 0x2A;

const fn mask(ids: &[u32]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

const KNOWN: u64 = mask(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    SUBSCRIPTION_IDENTIFIER,
    SESSION_EXPIRY_INTERVAL,
    ASSIGNED_CLIENT_IDENTIFIER,
    SERVER_KEEP_ALIVE,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REQUEST_PROBLEM_INFORMATION,
    WILL_DELAY_INTERVAL,
    REQUEST_RESPONSE_INFORMATION,
    RESPONSE_INFORMATION,
    SERVER_REFERENCE,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    TOPIC_ALIAS,
    MAXIMUM_QOS,
    RETAIN_AVAILABLE,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE,
]);

/// Where a property list appears; selects the allowed identifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PropertyContext {
    Connect,
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropertyContext {
    /// Section 2.2.2.2, table 2-4.
    const fn allowed(self) -> u64 {
        match self {
            PropertyContext::Connect => mask(&[
                SESSION_EXPIRY_INTERVAL,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REQUEST_PROBLEM_INFORMATION,
                REQUEST_RESPONSE_INFORMATION,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
            ]),
            PropertyContext::Will => mask(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                WILL_DELAY_INTERVAL,
                USER_PROPERTY,
            ]),
            PropertyContext::ConnAck => mask(&[
                SESSION_EXPIRY_INTERVAL,
                ASSIGNED_CLIENT_IDENTIFIER,
                SERVER_KEEP_ALIVE,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                RESPONSE_INFORMATION,
                SERVER_REFERENCE,
                REASON_STRING,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                MAXIMUM_QOS,
                RETAIN_AVAILABLE,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE,
            ]),
            PropertyContext::Publish => mask(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                SUBSCRIPTION_IDENTIFIER,
                TOPIC_ALIAS,
                USER_PROPERTY,
            ]),
            PropertyContext::Ack | PropertyContext::SubAck | PropertyContext::UnsubAck => {
                mask(&[REASON_STRING, USER_PROPERTY])
            }
            PropertyContext::Subscribe => mask(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
            PropertyContext::Unsubscribe => mask(&[USER_PROPERTY]),
            PropertyContext::Disconnect => {
                mask(&[SESSION_EXPIRY_INTERVAL, SERVER_REFERENCE, REASON_STRING, USER_PROPERTY])
            }
            PropertyContext::Auth => mask(&[AUTHENTICATION_METHOD, AUTHENTICATION_DATA, REASON_STRING, USER_PROPERTY]),
        }
    }
}

/// A byte property whose only legal values are 0 and 1.
#[inline]
fn bool_byte(r: &mut Reader, what: &'static str) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::ProtocolError(what)),
    }
}

/// Reads the property length and the properties that follow it.
pub(crate) fn decode_properties(r: &mut Reader, ctx: PropertyContext) -> Result<Properties, DecodeError> {
    let mut p = Properties::default();
    decode_properties_into(r, ctx, &mut p)?;
    Ok(p)
}

/// [`decode_properties`] into a `Properties::default()` that is already in
/// place, which saves moving the large struct on the PUBLISH path.
#[inline]
pub(crate) fn decode_properties_into(
    r: &mut Reader,
    ctx: PropertyContext,
    p: &mut Properties,
) -> Result<(), DecodeError> {
    let len = r.varint()? as usize;
    if len == 0 {
        return Ok(());
    }
    decode_property_list(r, ctx, len, p)
}

fn decode_property_list(
    r: &mut Reader,
    ctx: PropertyContext,
    len: usize,
    p: &mut Properties,
) -> Result<(), DecodeError> {
    if len > r.remaining() {
        return Err(DecodeError::Malformed("property length exceeds the packet"));
    }
    let end = r.position() + len;
    let allowed = ctx.allowed();
    let mut seen = 0u64;
    while r.position() < end {
        let id = r.varint()?;
        let bit = if id < 64 { 1u64 << id } else { 0 };
        if bit & KNOWN == 0 {
            return Err(DecodeError::Malformed("unknown property identifier"));
        }
        if bit & allowed == 0 {
            return Err(DecodeError::Malformed("property not allowed in this packet"));
        }
        let repeatable = id == USER_PROPERTY || (id == SUBSCRIPTION_IDENTIFIER && ctx == PropertyContext::Publish);
        if !repeatable {
            if seen & bit != 0 {
                return Err(DecodeError::Malformed("duplicate property"));
            }
            seen |= bit;
        }
        match id {
            PAYLOAD_FORMAT_INDICATOR => {
                p.payload_format_indicator = Some(bool_byte(r, "payload format indicator not 0 or 1")?)
            }
            MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(r.u32()?),
            CONTENT_TYPE => p.content_type = Some(r.string()?),
            RESPONSE_TOPIC => p.response_topic = Some(r.string()?),
            CORRELATION_DATA => p.correlation_data = Some(r.binary()?),
            SUBSCRIPTION_IDENTIFIER => {
                let v = r.varint()?;
                if v == 0 {
                    return Err(DecodeError::ProtocolError("subscription identifier 0"));
                }
                p.subscription_identifiers.push(v);
            }
            SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32()?),
            ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(r.string()?),
            SERVER_KEEP_ALIVE => p.server_keep_alive = Some(r.u16()?),
            AUTHENTICATION_METHOD => p.authentication_method = Some(r.string()?),
            AUTHENTICATION_DATA => p.authentication_data = Some(r.binary()?),
            REQUEST_PROBLEM_INFORMATION => {
                p.request_problem_information = Some(bool_byte(r, "request problem information not 0 or 1")?)
            }
            WILL_DELAY_INTERVAL => p.will_delay_interval = Some(r.u32()?),
            REQUEST_RESPONSE_INFORMATION => {
                p.request_response_information = Some(bool_byte(r, "request response information not 0 or 1")?)
            }
            RESPONSE_INFORMATION => p.response_information = Some(r.string()?),
            SERVER_REFERENCE => p.server_reference = Some(r.string()?),
            REASON_STRING => p.reason_string = Some(r.string()?),
            RECEIVE_MAXIMUM => match r.u16()? {
                0 => return Err(DecodeError::ProtocolError("receive maximum 0")),
                v => p.receive_maximum = Some(v),
            },
            TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(r.u16()?),
            // Topic Alias 0 is left to the broker, which answers it with
            // reason 0x94 (Topic Alias invalid) rather than 0x82.
            TOPIC_ALIAS => p.topic_alias = Some(r.u16()?),
            MAXIMUM_QOS => p.maximum_qos = Some(bool_byte(r, "maximum QoS not 0 or 1")?),
            RETAIN_AVAILABLE => p.retain_available = Some(bool_byte(r, "retain available not 0 or 1")?),
            USER_PROPERTY => {
                let k = r.string()?;
                let v = r.string()?;
                p.user_properties.push((k, v));
            }
            MAXIMUM_PACKET_SIZE => match r.u32()? {
                0 => return Err(DecodeError::ProtocolError("maximum packet size 0")),
                v => p.maximum_packet_size = Some(v),
            },
            WILDCARD_SUBSCRIPTION_AVAILABLE => {
                p.wildcard_subscription_available = Some(bool_byte(r, "wildcard subscription available not 0 or 1")?)
            }
            SUBSCRIPTION_IDENTIFIER_AVAILABLE => {
                p.subscription_identifier_available =
                    Some(bool_byte(r, "subscription identifier available not 0 or 1")?)
            }
            SHARED_SUBSCRIPTION_AVAILABLE => {
                p.shared_subscription_available = Some(bool_byte(r, "shared subscription available not 0 or 1")?)
            }
            _ => unreachable!("identifier checked against KNOWN"),
        }
    }
    if r.position() != end {
        return Err(DecodeError::Malformed("property value crosses the property length"));
    }
    Ok(())
}

/// Encoded size of the properties, not counting the property length.
pub(crate) fn properties_len(p: &Properties) -> usize {
    #[inline]
    fn opt<T>(v: &Option<T>, size: impl FnOnce(&T) -> usize) -> usize {
        v.as_ref().map_or(0, |v| 1 + size(v))
    }
    let mut n = 0;
    n += opt(&p.payload_format_indicator, |_| 1);
    n += opt(&p.message_expiry_interval, |_| 4);
    n += opt(&p.content_type, |s| field_len(s.len()));
    n += opt(&p.response_topic, |s| field_len(s.len()));
    n += opt(&p.correlation_data, |b| field_len(b.len()));
    for &id in &p.subscription_identifiers {
        n += 1 + varint_len(id as usize);
    }
    n += opt(&p.session_expiry_interval, |_| 4);
    n += opt(&p.assigned_client_identifier, |s| field_len(s.len()));
    n += opt(&p.server_keep_alive, |_| 2);
    n += opt(&p.authentication_method, |s| field_len(s.len()));
    n += opt(&p.authentication_data, |b| field_len(b.len()));
    n += opt(&p.request_problem_information, |_| 1);
    n += opt(&p.will_delay_interval, |_| 4);
    n += opt(&p.request_response_information, |_| 1);
    n += opt(&p.response_information, |s| field_len(s.len()));
    n += opt(&p.server_reference, |s| field_len(s.len()));
    n += opt(&p.reason_string, |s| field_len(s.len()));
    n += opt(&p.receive_maximum, |_| 2);
    n += opt(&p.topic_alias_maximum, |_| 2);
    n += opt(&p.topic_alias, |_| 2);
    n += opt(&p.maximum_qos, |_| 1);
    n += opt(&p.retain_available, |_| 1);
    for (k, v) in &p.user_properties {
        n += 1 + field_len(k.len()) + field_len(v.len());
    }
    n += opt(&p.maximum_packet_size, |_| 4);
    n += opt(&p.wildcard_subscription_available, |_| 1);
    n += opt(&p.subscription_identifier_available, |_| 1);
    n += opt(&p.shared_subscription_available, |_| 1);
    n
}

/// Encoded size of the property length plus the properties.
#[inline]
pub(crate) fn properties_section_len(props_len: usize) -> usize {
    varint_len(props_len) + props_len
}

/// Writes the property length `len` (from [`properties_len`]) and the
/// properties, in identifier order.
pub(crate) fn put_properties(out: &mut BytesMut, p: &Properties, len: usize) -> Result<(), EncodeError> {
    if len > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(len));
    }
    crate::fixed_header::put_varint(out, len);
    if len == 0 {
        return Ok(());
    }
    #[inline]
    fn id(out: &mut BytesMut, id: u32) {
        out.put_u8(id as u8);
    }
    if let Some(v) = p.payload_format_indicator {
        id(out, PAYLOAD_FORMAT_INDICATOR);
        out.put_u8(v);
    }
    if let Some(v) = p.message_expiry_interval {
        id(out, MESSAGE_EXPIRY_INTERVAL);
        out.put_u32(v);
    }
    if let Some(v) = &p.content_type {
        id(out, CONTENT_TYPE);
        put_str(out, v)?;
    }
    if let Some(v) = &p.response_topic {
        id(out, RESPONSE_TOPIC);
        put_str(out, v)?;
    }
    if let Some(v) = &p.correlation_data {
        id(out, CORRELATION_DATA);
        put_binary(out, v)?;
    }
    for &v in &p.subscription_identifiers {
        if v == 0 || v as usize > MAX_REMAINING_LENGTH {
            return Err(EncodeError::InvalidSubscriptionIdentifier(v));
        }
        id(out, SUBSCRIPTION_IDENTIFIER);
        put_varint_u32(out, v);
    }
    if let Some(v) = p.session_expiry_interval {
        id(out, SESSION_EXPIRY_INTERVAL);
        out.put_u32(v);
    }
    if let Some(v) = &p.assigned_client_identifier {
        id(out, ASSIGNED_CLIENT_IDENTIFIER);
        put_str(out, v)?;
    }
    if let Some(v) = p.server_keep_alive {
        id(out, SERVER_KEEP_ALIVE);
        out.put_u16(v);
    }
    if let Some(v) = &p.authentication_method {
        id(out, AUTHENTICATION_METHOD);
        put_str(out, v)?;
    }
    if let Some(v) = &p.authentication_data {
        id(out, AUTHENTICATION_DATA);
        put_binary(out, v)?;
    }
    if let Some(v) = p.request_problem_information {
        id(out, REQUEST_PROBLEM_INFORMATION);
        out.put_u8(v);
    }
    if let Some(v) = p.will_delay_interval {
        id(out, WILL_DELAY_INTERVAL);
        out.put_u32(v);
    }
    if let Some(v) = p.request_response_information {
        id(out, REQUEST_RESPONSE_INFORMATION);
        out.put_u8(v);
    }
    if let Some(v) = &p.response_information {
        id(out, RESPONSE_INFORMATION);
        put_str(out, v)?;
    }
    if let Some(v) = &p.server_reference {
        id(out, SERVER_REFERENCE);
        put_str(out, v)?;
    }
    if let Some(v) = &p.reason_string {
        id(out, REASON_STRING);
        put_str(out, v)?;
    }
    if let Some(v) = p.receive_maximum {
        id(out, RECEIVE_MAXIMUM);
        out.put_u16(v);
    }
    if let Some(v) = p.topic_alias_maximum {
        id(out, TOPIC_ALIAS_MAXIMUM);
        out.put_u16(v);
    }
    if let Some(v) = p.topic_alias {
        id(out, TOPIC_ALIAS);
        out.put_u16(v);
    }
    if let Some(v) = p.maximum_qos {
        id(out, MAXIMUM_QOS);
        out.put_u8(v);
    }
    if let Some(v) = p.retain_available {
        id(out, RETAIN_AVAILABLE);
        out.put_u8(v);
    }
    for (k, v) in &p.user_properties {
        id(out, USER_PROPERTY);
        put_str(out, k)?;
        put_str(out, v)?;
    }
    if let Some(v) = p.maximum_packet_size {
        id(out, MAXIMUM_PACKET_SIZE);
        out.put_u32(v);
    }
    if let Some(v) = p.wildcard_subscription_available {
        id(out, WILDCARD_SUBSCRIPTION_AVAILABLE);
        out.put_u8(v);
    }
    if let Some(v) = p.subscription_identifier_available {
        id(out, SUBSCRIPTION_IDENTIFIER_AVAILABLE);
        out.put_u8(v);
    }
    if let Some(v) = p.shared_subscription_available {
        id(out, SHARED_SUBSCRIPTION_AVAILABLE);
        out.put_u8(v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn decode(bytes: &'static [u8], ctx: PropertyContext) -> Result<Properties, DecodeError> {
        let mut r = Reader::new(Bytes::from_static(bytes));
        let p = decode_properties(&mut r, ctx)?;
        r.finish()?;
        Ok(p)
    }

    #[test]
    fn allowed_sets_are_subsets_of_known() {
        for ctx in [
            PropertyContext::Connect,
            PropertyContext::Will,
            PropertyContext::ConnAck,
            PropertyContext::Publish,
            PropertyContext::Ack,
            PropertyContext::Subscribe,
            PropertyContext::SubAck,
            PropertyContext::Unsubscribe,
            PropertyContext::UnsubAck,
            PropertyContext::Disconnect,
            PropertyContext::Auth,
        ] {
            assert_eq!(ctx.allowed() & !KNOWN, 0, "{ctx:?}");
            assert_ne!(ctx.allowed() & (1 << USER_PROPERTY), 0, "{ctx:?}");
        }
    }

    #[test]
    fn empty_property_list() {
        assert_eq!(decode(b"\x00", PropertyContext::Ack).unwrap(), Properties::default());
    }

    #[test]
    fn value_crossing_the_property_length_is_malformed() {
        // Length says 2 but a four-byte integer follows the identifier.
        assert!(matches!(
            decode(b"\x02\x02\x00\x00\x00\x01", PropertyContext::Publish),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn property_length_beyond_packet_is_malformed() {
        assert!(matches!(decode(b"\x05\x01\x00", PropertyContext::Publish), Err(DecodeError::Malformed(_))));
    }

    #[test]
    fn invalid_subscription_identifier_is_not_encoded() {
        let p = Properties { subscription_identifiers: vec![0], ..Properties::default() };
        let mut out = BytesMut::new();
        assert_eq!(
            put_properties(&mut out, &p, properties_len(&p)),
            Err(EncodeError::InvalidSubscriptionIdentifier(0))
        );
    }
}
