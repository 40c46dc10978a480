//! CONNECT (3.1.1 section 3.1, 5.0 section 3.1) and CONNACK (section 3.2).

use bytes::{BufMut, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::{put_header, CONNACK, CONNECT};
use crate::primitives::{field_len, put_binary, put_str, Reader};
use crate::properties::{decode_properties, properties_len, properties_section_len, put_properties, PropertyContext};
use crate::types::{ConnAck, Connect, LastWill, Packet, Properties, ProtocolVersion, QoS};

const NAME_MQTT: &[u8] = b"MQTT";
const NAME_MQISDP: &[u8] = b"MQIsdp";

const FLAG_RESERVED: u8 = 0x01;
const FLAG_CLEAN: u8 = 0x02;
const FLAG_WILL: u8 = 0x04;
const FLAG_WILL_QOS_SHIFT: u8 = 3;
const FLAG_WILL_RETAIN: u8 = 0x20;
const FLAG_PASSWORD: u8 = 0x40;
const FLAG_USERNAME: u8 = 0x80;

fn protocol_name(v: ProtocolVersion) -> &'static [u8] {
    match v {
        ProtocolVersion::V3_1 => NAME_MQISDP,
        ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => NAME_MQTT,
    }
}

/// Decodes the body of a CONNECT. The protocol level comes from the packet
/// itself, not from the connection.
pub(crate) fn decode_connect(mut r: Reader) -> Result<Packet, DecodeError> {
    let name = r.binary_slice()?;
    let (is_mqtt, is_mqisdp) = (name == NAME_MQTT, name == NAME_MQISDP);
    if !is_mqtt && !is_mqisdp {
        // [MQTT-3.1.2-1]
        return Err(DecodeError::InvalidProtocolName(String::from_utf8_lossy(name).into_owned()));
    }
    let level = r.u8()?;
    let protocol = match (level, is_mqtt) {
        (3, false) => ProtocolVersion::V3_1,
        (4, true) => ProtocolVersion::V3_1_1,
        (5, true) => ProtocolVersion::V5,
        // [MQTT-3.1.2-2]
        _ => return Err(DecodeError::UnsupportedProtocolVersion(level)),
    };
    let v5 = protocol.is_v5();

    let flags = r.u8()?;
    if flags & FLAG_RESERVED != 0 {
        // [MQTT-3.1.2-3]
        return Err(DecodeError::Malformed("CONNECT reserved flag set"));
    }
    let will_flag = flags & FLAG_WILL != 0;
    let will_qos = (flags >> FLAG_WILL_QOS_SHIFT) & 0b11;
    let will_retain = flags & FLAG_WILL_RETAIN != 0;
    if !will_flag && (will_qos != 0 || will_retain) {
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]
        return Err(DecodeError::Malformed("will QoS or will retain set without the will flag"));
    }
    // [MQTT-3.1.2-14]
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::InvalidQoS(will_qos))?;
    let has_username = flags & FLAG_USERNAME != 0;
    let has_password = flags & FLAG_PASSWORD != 0;
    if !v5 && has_password && !has_username {
        // [MQTT-3.1.2-22]; 5.0 allows a password without a user name.
        return Err(DecodeError::Malformed("password flag set without the user name flag"));
    }
    let keep_alive = r.u16()?;
    let properties = if v5 {
        let p = decode_properties(&mut r, PropertyContext::Connect)?;
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            // 5.0 section 3.1.2.11.10
            return Err(DecodeError::ProtocolError("authentication data without authentication method"));
        }
        p
    } else {
        Properties::default()
    };

    // [MQTT-3.1.3-1] payload order: client id, will, user name, password.
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = if v5 { decode_properties(&mut r, PropertyContext::Will)? } else { Properties::default() };
        let topic = r.utf8()?;
        let payload = r.binary()?;
        Some(LastWill { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if has_username { Some(r.string()?) } else { None };
    let password = if has_password { Some(r.binary()?) } else { None };
    r.finish()?;

    Ok(Packet::Connect(Connect {
        protocol,
        clean_start: flags & FLAG_CLEAN != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    }))
}

/// Property lengths computed once and shared by the size and the writer.
struct ConnectLens {
    remaining: usize,
    props: usize,
    will_props: usize,
}

fn connect_lens(c: &Connect) -> ConnectLens {
    let v5 = c.protocol.is_v5();
    // Protocol name, level, flags, keep alive.
    let mut remaining = field_len(protocol_name(c.protocol).len()) + 1 + 1 + 2;
    let mut props = 0;
    let mut will_props = 0;
    if v5 {
        props = properties_len(&c.properties);
        remaining += properties_section_len(props);
    }
    remaining += field_len(c.client_id.len());
    if let Some(w) = &c.will {
        if v5 {
            will_props = properties_len(&w.properties);
            remaining += properties_section_len(will_props);
        }
        remaining += field_len(w.topic.len()) + field_len(w.payload.len());
    }
    if let Some(u) = &c.username {
        remaining += field_len(u.len());
    }
    if let Some(p) = &c.password {
        remaining += field_len(p.len());
    }
    ConnectLens { remaining, props, will_props }
}

pub(crate) fn connect_remaining_len(c: &Connect) -> usize {
    connect_lens(c).remaining
}

/// Writes a CONNECT for `c.protocol` (the connection's version is not
/// used: CONNECT is what negotiates it).
pub(crate) fn encode_connect(c: &Connect, out: &mut BytesMut) -> Result<(), EncodeError> {
    let v5 = c.protocol.is_v5();
    let lens = connect_lens(c);
    let mut flags = 0u8;
    if c.clean_start {
        flags |= FLAG_CLEAN;
    }
    if let Some(w) = &c.will {
        flags |= FLAG_WILL | ((w.qos as u8) << FLAG_WILL_QOS_SHIFT);
        if w.retain {
            flags |= FLAG_WILL_RETAIN;
        }
    }
    if c.username.is_some() {
        flags |= FLAG_USERNAME;
    }
    if c.password.is_some() {
        flags |= FLAG_PASSWORD;
    }
    put_header(out, CONNECT << 4, lens.remaining)?;
    put_binary(out, protocol_name(c.protocol))?;
    out.put_u8(c.protocol.level());
    out.put_u8(flags);
    out.put_u16(c.keep_alive);
    if v5 {
        put_properties(out, &c.properties, lens.props)?;
    }
    put_str(out, &c.client_id)?;
    if let Some(w) = &c.will {
        if v5 {
            put_properties(out, &w.properties, lens.will_props)?;
        }
        put_str(out, &w.topic)?;
        put_binary(out, &w.payload)?;
    }
    if let Some(u) = &c.username {
        put_str(out, u)?;
    }
    if let Some(p) = &c.password {
        put_binary(out, p)?;
    }
    Ok(())
}

/// Decodes the body of a CONNACK.
pub(crate) fn decode_connack(mut r: Reader, version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut flags = r.u8()?;
    if version == ProtocolVersion::V3_1 {
        // MQTT 3.1 has no Session Present flag: the first byte is reserved
        // and not used.
        flags = 0;
    } else if flags & 0xFE != 0 {
        // 3.1.1 section 3.2.2.1 / 5.0 section 3.2.2.1: bits 7-1 reserved.
        return Err(DecodeError::Malformed("CONNACK reserved flags set"));
    }
    let code = r.u8()?;
    let properties = if version.is_v5() {
        decode_properties(&mut r, PropertyContext::ConnAck)?
    } else {
        if code > crate::types::connack_code::NOT_AUTHORIZED {
            // 3.1.1 section 3.2.2.3: return codes 6-255 are reserved.
            return Err(DecodeError::Malformed("reserved CONNACK return code"));
        }
        Properties::default()
    };
    r.finish()?;
    Ok(Packet::ConnAck(ConnAck { session_present: flags & 1 != 0, code, properties }))
}

pub(crate) fn connack_remaining_len(c: &ConnAck, version: ProtocolVersion) -> usize {
    if version.is_v5() {
        2 + properties_section_len(properties_len(&c.properties))
    } else {
        2
    }
}

pub(crate) fn encode_connack(c: &ConnAck, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let props = if version.is_v5() { properties_len(&c.properties) } else { 0 };
    let remaining = if version.is_v5() { 2 + properties_section_len(props) } else { 2 };
    put_header(out, CONNACK << 4, remaining)?;
    // MQTT 3.1 has no Session Present flag.
    out.put_u8((c.session_present && version != ProtocolVersion::V3_1) as u8);
    out.put_u8(c.code);
    if version.is_v5() {
        put_properties(out, &c.properties, props)?;
    }
    Ok(())
}
