//! PINGREQ, PINGRESP (sections 3.12, 3.13), DISCONNECT (3.14) and the
//! MQTT 5.0 AUTH packet (3.15).

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::{put_header, AUTH, DISCONNECT};
use crate::primitives::Reader;
use crate::properties::{decode_properties, properties_len, properties_section_len, put_properties, PropertyContext};
use crate::types::{Auth, Disconnect, Packet, Properties, ProtocolVersion};

/// PINGREQ and PINGRESP have no variable header or payload.
pub(crate) fn decode_empty(r: Reader, packet: Packet) -> Result<Packet, DecodeError> {
    r.finish()?;
    Ok(packet)
}

pub(crate) fn encode_empty(packet_type: u8, out: &mut BytesMut) -> Result<(), EncodeError> {
    put_header(out, packet_type << 4, 0)
}

/// DISCONNECT and AUTH share one shape in 5.0: an optional reason code
/// (0x00 when the remaining length is 0) and optional properties (none
/// when the remaining length is less than 2).
fn decode_reason_and_props(mut r: Reader, ctx: PropertyContext) -> Result<(u8, Properties), DecodeError> {
    let mut reason_code = 0;
    let mut properties = Properties::default();
    if !r.is_empty() {
        reason_code = r.u8()?;
        if !r.is_empty() {
            properties = decode_properties(&mut r, ctx)?;
        }
    }
    r.finish()?;
    Ok((reason_code, properties))
}

pub(crate) fn decode_disconnect(r: Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    if !version.is_v5() {
        // 3.1.1 section 3.14: no variable header, no payload.
        r.finish()?;
        return Ok(Packet::Disconnect(Disconnect::default()));
    }
    let (reason_code, properties) = decode_reason_and_props(r, PropertyContext::Disconnect)?;
    Ok(Packet::Disconnect(Disconnect { reason_code, properties }))
}

pub(crate) fn decode_auth(r: Reader) -> Result<Packet, DecodeError> {
    let (reason_code, properties) = decode_reason_and_props(r, PropertyContext::Auth)?;
    Ok(Packet::Auth(Auth { reason_code, properties }))
}

/// (remaining length, property length if the properties are written).
/// `one_byte_form`: whether a bare reason code without a property length may
/// be sent (DISCONNECT); AUTH always writes the property length once it
/// writes a reason code.
fn reason_and_props_lens(reason_code: u8, p: &Properties, one_byte_form: bool) -> (usize, Option<usize>) {
    let props = properties_len(p);
    if props == 0 {
        if reason_code == 0 {
            return (0, None);
        }
        if one_byte_form {
            return (1, None);
        }
    }
    (1 + properties_section_len(props), Some(props))
}

fn encode_reason_and_props(
    packet_type: u8,
    reason_code: u8,
    p: &Properties,
    one_byte_form: bool,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let (remaining, props) = reason_and_props_lens(reason_code, p, one_byte_form);
    put_header(out, packet_type << 4, remaining)?;
    if remaining > 0 {
        out.put_u8(reason_code);
    }
    if let Some(n) = props {
        put_properties(out, p, n)?;
    }
    Ok(())
}

pub(crate) fn disconnect_remaining_len(d: &Disconnect, version: ProtocolVersion) -> usize {
    if version.is_v5() {
        reason_and_props_lens(d.reason_code, &d.properties, true).0
    } else {
        0
    }
}

pub(crate) fn encode_disconnect(
    d: &Disconnect,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    if version.is_v5() {
        encode_reason_and_props(DISCONNECT, d.reason_code, &d.properties, true, out)
    } else {
        put_header(out, DISCONNECT << 4, 0)
    }
}

pub(crate) fn auth_remaining_len(a: &Auth) -> usize {
    reason_and_props_lens(a.reason_code, &a.properties, false).0
}

pub(crate) fn encode_auth(a: &Auth, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    if !version.is_v5() {
        return Err(EncodeError::UnsupportedPacket { packet: "AUTH", version });
    }
    encode_reason_and_props(AUTH, a.reason_code, &a.properties, false, out)
}
