//! MQTT packet codec. Pure functions over byte buffers: no sockets, no
//! timers, no allocation beyond the decoded packet itself.
//!
//! Supports MQTT 3.1 (`MQIsdp`, level 3), 3.1.1 (`MQTT`, level 4) and 5.0
//! (`MQTT`, level 5, with properties and reason codes).
//!
//! * [`decode`] takes one packet off the front of a [`BytesMut`]; the
//!   PUBLISH topic and payload (and binary properties) are reference-counted
//!   slices of the received frame, not copies.
//! * [`encode`] appends a packet; [`encoded_len`] gives its exact size
//!   beforehand; [`encode_publish`] writes a PUBLISH from borrowed parts for
//!   the broker's fan-out.
//!
//! What the codec leaves to the broker: topic name and filter syntax
//! (wildcards, depth, empty filters), topic alias resolution and Topic
//! Alias 0, client identifier rules, the meaning of reason codes, and
//! which direction a packet may travel in.

mod connect;
mod control;
mod error;
mod fixed_header;
mod primitives;
mod properties;
mod publish;
mod subscribe;
mod types;

use bytes::{Buf, BytesMut};

pub use error::{DecodeError, EncodeError};
pub use fixed_header::MAX_REMAINING_LENGTH;
pub use types::*;

use fixed_header::{HeaderStatus, PINGREQ, PINGRESP, PUBACK, PUBCOMP, PUBREC, PUBREL};
use primitives::Reader;

/// Decodes one packet from the front of `buf`.
///
/// On success the packet's bytes are split off `buf`; the PUBLISH topic and
/// payload share the frame's memory. `version` is the level negotiated by
/// CONNECT and is ignored for a CONNECT itself, which carries its own.
///
/// `max_packet_size` limits the whole packet (fixed header included). A
/// larger packet is rejected with [`DecodeError::PacketTooLarge`] as soon as
/// its fixed header is readable, without waiting for the rest.
///
/// Returns [`Decoded::Incomplete`] with the number of further bytes needed
/// (at least 1) while `buf` holds less than a whole packet: 2 for an empty
/// buffer, 1 while the remaining length is still arriving, then exactly the
/// bytes missing from the packet. `buf` is not touched in that case.
///
/// On error the connection must be closed. Errors found in the fixed header
/// leave `buf` untouched; errors found in the body leave the offending
/// packet consumed.
pub fn decode(buf: &mut BytesMut, version: ProtocolVersion, max_packet_size: usize) -> Result<Decoded, DecodeError> {
    let header = match fixed_header::parse(buf, version, max_packet_size)? {
        HeaderStatus::Complete(h) => h,
        HeaderStatus::Incomplete(needed) => return Ok(Decoded::Incomplete { needed }),
    };
    let total = header.total_len();
    if buf.len() < total {
        return Ok(Decoded::Incomplete { needed: total - buf.len() });
    }
    let mut frame = buf.split_to(total).freeze();
    frame.advance(header.header_len);
    let r = Reader::new(frame);
    let packet = match header.packet_type {
        fixed_header::PUBLISH => publish::decode_publish(r, header.flags, version),
        fixed_header::CONNECT => connect::decode_connect(r),
        fixed_header::CONNACK => connect::decode_connack(r, version),
        PUBACK => publish::decode_ack(r, version).map(Packet::PubAck),
        PUBREC => publish::decode_ack(r, version).map(Packet::PubRec),
        PUBREL => publish::decode_ack(r, version).map(Packet::PubRel),
        PUBCOMP => publish::decode_ack(r, version).map(Packet::PubComp),
        fixed_header::SUBSCRIBE => subscribe::decode_subscribe(r, version),
        fixed_header::SUBACK => subscribe::decode_suback(r, version),
        fixed_header::UNSUBSCRIBE => subscribe::decode_unsubscribe(r, version),
        fixed_header::UNSUBACK => subscribe::decode_unsuback(r, version),
        PINGREQ => control::decode_empty(r, Packet::PingReq),
        PINGRESP => control::decode_empty(r, Packet::PingResp),
        fixed_header::DISCONNECT => control::decode_disconnect(r, version),
        // The fixed header check already refused AUTH outside 5.0.
        fixed_header::AUTH => control::decode_auth(r),
        t => Err(DecodeError::InvalidPacketType(t)),
    };
    packet.map(Decoded::Packet)
}

/// Appends the encoding of `packet` for protocol `version` to `out`.
///
/// The 3.x encodings leave out properties and every 5.0-only field (reason
/// codes of acknowledgements and DISCONNECT, subscription option bits other
/// than QoS). A CONNECT is encoded for its own `protocol`, not `version`.
/// MQTT 5.0 acknowledgements, DISCONNECT and AUTH use the short forms when
/// the reason code is 0 and there are no properties.
///
/// The encoder does not re-check every rule the decoder enforces; it refuses
/// only what cannot be put on the wire as given. On error `out` is left as
/// it was.
pub fn encode(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    let start = out.len();
    let result = encode_inner(packet, version, out);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

fn encode_inner(packet: &Packet, version: ProtocolVersion, out: &mut BytesMut) -> Result<(), EncodeError> {
    match packet {
        Packet::Connect(c) => connect::encode_connect(c, out),
        Packet::ConnAck(c) => connect::encode_connack(c, version, out),
        Packet::Publish(p) => publish::encode_publish_packet(p, version, out),
        Packet::PubAck(a) => publish::encode_ack(PUBACK, a, version, out),
        Packet::PubRec(a) => publish::encode_ack(PUBREC, a, version, out),
        Packet::PubRel(a) => publish::encode_ack(PUBREL, a, version, out),
        Packet::PubComp(a) => publish::encode_ack(PUBCOMP, a, version, out),
        Packet::Subscribe(s) => subscribe::encode_subscribe(s, version, out),
        Packet::SubAck(s) => subscribe::encode_suback(s, version, out),
        Packet::Unsubscribe(u) => subscribe::encode_unsubscribe(u, version, out),
        Packet::UnsubAck(u) => subscribe::encode_unsuback(u, version, out),
        Packet::PingReq => control::encode_empty(PINGREQ, out),
        Packet::PingResp => control::encode_empty(PINGRESP, out),
        Packet::Disconnect(d) => control::encode_disconnect(d, version, out),
        Packet::Auth(a) => control::encode_auth(a, version, out),
    }
}

/// Exact size [`encode`] writes for `packet` (fixed header included), so a
/// client's Maximum Packet Size can be checked before encoding. For AUTH
/// under 3.x, which cannot be encoded, this is its 5.0 size.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let remaining = match packet {
        Packet::Connect(c) => connect::connect_remaining_len(c),
        Packet::ConnAck(c) => connect::connack_remaining_len(c, version),
        Packet::Publish(p) => publish::publish_remaining_len(p, version),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            publish::ack_remaining_len(a, version)
        }
        Packet::Subscribe(s) => subscribe::subscribe_remaining_len(s, version),
        Packet::SubAck(s) => subscribe::suback_remaining_len(s, version),
        Packet::Unsubscribe(u) => subscribe::unsubscribe_remaining_len(u, version),
        Packet::UnsubAck(u) => subscribe::unsuback_remaining_len(u, version),
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => control::disconnect_remaining_len(d, version),
        Packet::Auth(a) => control::auth_remaining_len(a),
    };
    fixed_header::packet_len(remaining)
}

/// Writes a PUBLISH from its parts straight into `out` (one `reserve`),
/// without building a [`Packet`]: the broker's fan-out path.
///
/// `packet_id` is written only for QoS 1 and 2; `props` only for 5.0
/// (`None` means no properties).
///
/// # Panics
///
/// If the packet cannot be encoded: a topic or string property longer than
/// 65,535 bytes, a subscription identifier outside 1..=268,435,455, or a
/// packet larger than 268,435,455 bytes of remaining length. A topic
/// received from a client never triggers this.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn encode_publish(
    out: &mut BytesMut,
    version: ProtocolVersion,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
    dup: bool,
    packet_id: u16,
    props: Option<&Properties>,
) {
    if let Err(e) = publish::write_publish(out, version, topic, payload, qos, retain, dup, packet_id, props) {
        panic!("encode_publish: {e}");
    }
}
