//! SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK (sections 3.8 to 3.11).

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::{put_header, SUBACK, SUBSCRIBE, UNSUBACK, UNSUBSCRIBE};
use crate::primitives::{field_len, put_str, Reader};
use crate::properties::{decode_properties, properties_len, properties_section_len, put_properties, PropertyContext};
use crate::types::{
    Packet, Properties, ProtocolVersion, QoS, SubAck, Subscribe, SubscribeFilter, SubscriptionOptions, UnsubAck,
    Unsubscribe,
};

#[inline]
fn decode_props(r: &mut Reader, version: ProtocolVersion, ctx: PropertyContext) -> Result<Properties, DecodeError> {
    if version.is_v5() {
        decode_properties(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

#[inline]
fn props_len(p: &Properties, version: ProtocolVersion) -> Option<usize> {
    version.is_v5().then(|| properties_len(p))
}

#[inline]
fn section_len(props: Option<usize>) -> usize {
    props.map_or(0, properties_section_len)
}

#[inline]
fn put_props(out: &mut BytesMut, p: &Properties, props: Option<usize>) -> Result<(), EncodeError> {
    match props {
        Some(n) => put_properties(out, p, n),
        None => Ok(()),
    }
}

/// Subscription options byte (5.0 section 3.8.3.1; 3.1.1 section 3.8.3.1).
fn decode_options(b: u8, version: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if version.is_v5() { 0b1100_0000 } else { 0b1111_1100 };
    if b & reserved != 0 {
        // [MQTT-3-8.3-4] / 5.0 [MQTT-3.8.3-5]
        return Err(DecodeError::Malformed("subscription options reserved bits set"));
    }
    let qos = QoS::from_u8(b & 0b11).ok_or(DecodeError::InvalidQoS(b & 0b11))?;
    let retain_handling = (b >> 4) & 0b11;
    if retain_handling == 3 {
        return Err(DecodeError::Malformed("retain handling 3"));
    }
    Ok(SubscriptionOptions { qos, no_local: b & 0b0100 != 0, retain_as_published: b & 0b1000 != 0, retain_handling })
}

fn encode_options(o: &SubscriptionOptions, version: ProtocolVersion) -> u8 {
    let mut b = o.qos as u8;
    if version.is_v5() {
        b |= (o.no_local as u8) << 2 | (o.retain_as_published as u8) << 3 | (o.retain_handling & 0b11) << 4;
    }
    b
}

pub(crate) fn decode_subscribe(mut r: Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = decode_props(&mut r, version, PropertyContext::Subscribe)?;
    let mut filters = Vec::with_capacity(1);
    // Filter syntax (wildcards, empty filters) is the broker's business: in
    // 5.0 it answers a bad filter with a SUBACK reason code, not a disconnect.
    while !r.is_empty() {
        let filter = r.string()?;
        let options = decode_options(r.u8()?, version)?;
        filters.push(SubscribeFilter { filter, options });
    }
    if filters.is_empty() {
        // [MQTT-3.8.3-3]
        return Err(DecodeError::Malformed("SUBSCRIBE without topic filters"));
    }
    Ok(Packet::Subscribe(Subscribe { packet_id, filters, properties }))
}

fn subscribe_lens(s: &Subscribe, version: ProtocolVersion) -> (usize, Option<usize>) {
    let props = props_len(&s.properties, version);
    let filters: usize = s.filters.iter().map(|f| field_len(f.filter.len()) + 1).sum();
    (2 + section_len(props) + filters, props)
}

pub(crate) fn subscribe_remaining_len(s: &Subscribe, version: ProtocolVersion) -> usize {
    subscribe_lens(s, version).0
}

pub(crate) fn encode_subscribe(s: &Subscribe, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let (remaining, props) = subscribe_lens(s, version);
    put_header(out, (SUBSCRIBE << 4) | 0b0010, remaining)?;
    out.put_u16(s.packet_id);
    put_props(out, &s.properties, props)?;
    for f in &s.filters {
        put_str(out, &f.filter)?;
        out.put_u8(encode_options(&f.options, version));
    }
    Ok(())
}

pub(crate) fn decode_suback(mut r: Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = decode_props(&mut r, version, PropertyContext::SubAck)?;
    let codes = r.rest_slice();
    if codes.is_empty() {
        return Err(DecodeError::Malformed("SUBACK without return codes"));
    }
    if !version.is_v5() && codes.iter().any(|&c| !matches!(c, 0 | 1 | 2 | 0x80)) {
        // [MQTT-3.9.3-2]
        return Err(DecodeError::Malformed("reserved SUBACK return code"));
    }
    let return_codes = codes.to_vec();
    Ok(Packet::SubAck(SubAck { packet_id, return_codes, properties }))
}

pub(crate) fn suback_remaining_len(s: &SubAck, version: ProtocolVersion) -> usize {
    2 + section_len(props_len(&s.properties, version)) + s.return_codes.len()
}

pub(crate) fn encode_suback(s: &SubAck, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let props = props_len(&s.properties, version);
    let remaining = 2 + section_len(props) + s.return_codes.len();
    put_header(out, SUBACK << 4, remaining)?;
    out.put_u16(s.packet_id);
    put_props(out, &s.properties, props)?;
    out.put_slice(&s.return_codes);
    Ok(())
}

pub(crate) fn decode_unsubscribe(mut r: Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = decode_props(&mut r, version, PropertyContext::Unsubscribe)?;
    let mut filters = Vec::with_capacity(1);
    while !r.is_empty() {
        filters.push(r.string()?);
    }
    if filters.is_empty() {
        // [MQTT-3.10.3-2]
        return Err(DecodeError::Malformed("UNSUBSCRIBE without topic filters"));
    }
    Ok(Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties }))
}

fn unsubscribe_lens(u: &Unsubscribe, version: ProtocolVersion) -> (usize, Option<usize>) {
    let props = props_len(&u.properties, version);
    let filters: usize = u.filters.iter().map(|f| field_len(f.len())).sum();
    (2 + section_len(props) + filters, props)
}

pub(crate) fn unsubscribe_remaining_len(u: &Unsubscribe, version: ProtocolVersion) -> usize {
    unsubscribe_lens(u, version).0
}

pub(crate) fn encode_unsubscribe(
    u: &Unsubscribe,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let (remaining, props) = unsubscribe_lens(u, version);
    put_header(out, (UNSUBSCRIBE << 4) | 0b0010, remaining)?;
    out.put_u16(u.packet_id);
    put_props(out, &u.properties, props)?;
    for f in &u.filters {
        put_str(out, f)?;
    }
    Ok(())
}

pub(crate) fn decode_unsuback(mut r: Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let packet_id = r.packet_id()?;
    if !version.is_v5() {
        // 3.1.1 section 3.11: no payload.
        r.finish()?;
        return Ok(Packet::UnsubAck(UnsubAck {
            packet_id,
            reason_codes: Vec::new(),
            properties: Properties::default(),
        }));
    }
    let properties = decode_properties(&mut r, PropertyContext::UnsubAck)?;
    let codes = r.rest_slice();
    if codes.is_empty() {
        return Err(DecodeError::Malformed("UNSUBACK without reason codes"));
    }
    Ok(Packet::UnsubAck(UnsubAck { packet_id, reason_codes: codes.to_vec(), properties }))
}

pub(crate) fn unsuback_remaining_len(u: &UnsubAck, version: ProtocolVersion) -> usize {
    match props_len(&u.properties, version) {
        Some(n) => 2 + properties_section_len(n) + u.reason_codes.len(),
        None => 2,
    }
}

pub(crate) fn encode_unsuback(u: &UnsubAck, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let props = props_len(&u.properties, version);
    let remaining = match props {
        Some(n) => 2 + properties_section_len(n) + u.reason_codes.len(),
        None => 2,
    };
    put_header(out, UNSUBACK << 4, remaining)?;
    out.put_u16(u.packet_id);
    if let Some(n) = props {
        put_properties(out, &u.properties, n)?;
        out.put_slice(&u.reason_codes);
    }
    Ok(())
}
