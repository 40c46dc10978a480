//! PUBLISH (section 3.3) and its acknowledgements PUBACK, PUBREC, PUBREL and
//! PUBCOMP (sections 3.4 to 3.7).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::{packet_len, put_header, put_varint, MAX_REMAINING_LENGTH, PUBLISH, PUBREL};
use crate::primitives::{field_len, Reader};
use crate::properties::{
    decode_properties_into, properties_len, properties_section_len, put_properties, PropertyContext,
};
use crate::types::{Ack, Packet, Properties, ProtocolVersion, Publish, QoS};

/// Decodes the body of a PUBLISH. The header flags were already checked
/// (QoS 3, DUP on QoS 0). The topic and payload are slices of `r`'s frame.
#[inline]
pub(crate) fn decode_publish(mut r: Reader, flags: u8, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let qos = match (flags >> 1) & 0b11 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        q => return Err(DecodeError::InvalidQoS(q)),
    };
    let topic = r.utf8()?;
    let packet_id = if qos == QoS::AtMostOnce { None } else { Some(r.packet_id()?) };
    // Built in place and filled in: the packet is large, so every move of
    // it costs a memcpy.
    let mut packet = Packet::Publish(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        payload: Bytes::new(),
        properties: Properties::default(),
    });
    let Packet::Publish(p) = &mut packet else { unreachable!() };
    if version.is_v5() {
        decode_properties_into(&mut r, PropertyContext::Publish, &mut p.properties)?;
    }
    if p.topic.is_empty() {
        if !version.is_v5() {
            // [MQTT-4.7.3-1]
            return Err(DecodeError::Malformed("empty topic name"));
        }
        if p.properties.topic_alias.is_none() {
            // 5.0 section 3.3.2.1
            return Err(DecodeError::ProtocolError("empty topic name without a topic alias"));
        }
    }
    p.payload = r.rest();
    Ok(packet)
}

#[inline]
fn publish_remaining_len_parts(topic_len: usize, payload_len: usize, qos: QoS, v5_props: Option<usize>) -> usize {
    let mut n = field_len(topic_len) + payload_len;
    if qos != QoS::AtMostOnce {
        n += 2;
    }
    if let Some(p) = v5_props {
        n += properties_section_len(p);
    }
    n
}

pub(crate) fn publish_remaining_len(p: &Publish, version: ProtocolVersion) -> usize {
    let props = version.is_v5().then(|| properties_len(&p.properties));
    publish_remaining_len_parts(p.topic.len(), p.payload.len(), p.qos, props)
}

/// The one PUBLISH writer behind both `encode` and `encode_publish`.
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn write_publish(
    out: &mut BytesMut,
    version: ProtocolVersion,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    dup: bool,
    packet_id: u16,
    props: Option<&Properties>,
) -> Result<(), EncodeError> {
    if topic.len() > u16::MAX as usize {
        return Err(EncodeError::StringTooLong(topic.len()));
    }
    let v5 = version.is_v5();
    let props_len = if v5 { Some(props.map_or(0, properties_len)) } else { None };
    let remaining = publish_remaining_len_parts(topic.len(), payload.len(), qos, props_len);
    if remaining > MAX_REMAINING_LENGTH {
        return Err(EncodeError::PacketTooLarge(remaining));
    }
    out.reserve(packet_len(remaining));
    out.put_u8((PUBLISH << 4) | ((dup as u8) << 3) | ((qos as u8) << 1) | retain as u8);
    put_varint(out, remaining);
    out.put_u16(topic.len() as u16);
    out.put_slice(topic.as_bytes());
    if qos != QoS::AtMostOnce {
        out.put_u16(packet_id);
    }
    match (props_len, props) {
        (Some(len), Some(p)) if len > 0 => put_properties(out, p, len)?,
        (Some(_), _) => out.put_u8(0),
        (None, _) => {}
    }
    out.put_slice(payload);
    Ok(())
}

pub(crate) fn encode_publish_packet(
    p: &Publish,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let packet_id = match (p.qos, p.packet_id) {
        (QoS::AtMostOnce, None) => 0,
        (QoS::AtMostOnce, Some(_)) => return Err(EncodeError::InvalidPacket("QoS 0 PUBLISH with a packet identifier")),
        (_, Some(id)) => id,
        (_, None) => return Err(EncodeError::InvalidPacket("QoS 1/2 PUBLISH without a packet identifier")),
    };
    write_publish(out, version, &p.topic, &p.payload, p.qos, p.retain, p.dup, packet_id, Some(&p.properties))
}

/// Decodes PUBACK, PUBREC, PUBREL or PUBCOMP; the caller wraps the result.
pub(crate) fn decode_ack(mut r: Reader, version: ProtocolVersion) -> Result<Ack, DecodeError> {
    let packet_id = r.packet_id()?;
    let mut ack = Ack::new(packet_id);
    if version.is_v5() {
        // 5.0 section 3.4.2.1: remaining length 2 means reason 0x00 and no
        // properties; less than 4 means no properties.
        if !r.is_empty() {
            ack.reason_code = r.u8()?;
            if !r.is_empty() {
                decode_properties_into(&mut r, PropertyContext::Ack, &mut ack.properties)?;
            }
        }
    }
    r.finish()?;
    Ok(ack)
}

/// Property length when the full form is used, `None` for the short forms.
#[inline]
fn ack_props_len(a: &Ack, version: ProtocolVersion) -> Option<usize> {
    if !version.is_v5() {
        return None;
    }
    match properties_len(&a.properties) {
        0 => None,
        n => Some(n),
    }
}

#[inline]
fn ack_remaining_len_with(a: &Ack, version: ProtocolVersion, props: Option<usize>) -> usize {
    match props {
        Some(n) => 3 + properties_section_len(n),
        None if version.is_v5() && a.reason_code != 0 => 3,
        None => 2,
    }
}

pub(crate) fn ack_remaining_len(a: &Ack, version: ProtocolVersion) -> usize {
    ack_remaining_len_with(a, version, ack_props_len(a, version))
}

pub(crate) fn encode_ack(
    packet_type: u8,
    a: &Ack,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let props = ack_props_len(a, version);
    let remaining = ack_remaining_len_with(a, version, props);
    let flags = if packet_type == PUBREL { 0b0010 } else { 0 };
    put_header(out, (packet_type << 4) | flags, remaining)?;
    out.put_u16(a.packet_id);
    if remaining > 2 {
        out.put_u8(a.reason_code);
    }
    if let Some(n) = props {
        put_properties(out, &a.properties, n)?;
    }
    Ok(())
}
