//! Shared checks for the codec fuzz targets.
//!
//! Every target ends in [`decode_all`]: decode packets off the input until
//! an error or an incomplete packet, and for every packet decoded check that
//! its re-encoding has the announced size and decodes to the same packet.

use bytes::BytesMut;
use fbroker_codec::{decode, encode, encode_publish, encoded_len, Decoded, Packet, ProtocolVersion};

pub const VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];

/// A protocol version chosen by a selector byte.
pub fn version(selector: u8) -> ProtocolVersion {
    VERSIONS[usize::from(selector) % VERSIONS.len()]
}

/// Decodes packets from `data` until error or incomplete, checking each one.
pub fn decode_all(data: &[u8], version: ProtocolVersion) {
    let mut buf = BytesMut::from(data);
    while let Ok(Decoded::Packet(packet)) = decode(&mut buf, version, usize::MAX) {
        check_round_trip(&packet, version);
    }
}

/// `packet` was decoded under `version`: it must re-encode to exactly
/// `encoded_len` bytes that decode to an equal packet.
pub fn check_round_trip(packet: &Packet, version: ProtocolVersion) {
    let mut out = BytesMut::new();
    if let Err(e) = encode(packet, version, &mut out) {
        panic!("decoded packet does not re-encode: {e}\n{packet:?}");
    }
    assert_eq!(out.len(), encoded_len(packet, version), "encoded_len of {packet:?}");

    if let Packet::Publish(p) = packet {
        let mut fast = BytesMut::new();
        encode_publish(
            &mut fast,
            version,
            &p.topic,
            &p.payload,
            p.qos,
            p.retain,
            p.dup,
            p.packet_id.unwrap_or(0),
            Some(&p.properties),
        );
        assert_eq!(fast, out, "encode_publish and encode disagree");
    }

    match decode(&mut out, version, usize::MAX) {
        Ok(Decoded::Packet(again)) => assert_eq!(&again, packet, "re-encoding decodes differently"),
        other => panic!("re-encoding of {packet:?} decodes as {other:?}"),
    }
    assert!(out.is_empty(), "re-encoding has trailing bytes");
}

/// `body` behind a fixed header byte and a correct remaining length, so the
/// fuzzer spends its time inside one packet family's body parser.
pub fn frame(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 5);
    v.push(first_byte);
    let mut n = body.len();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        v.push(b);
        if n == 0 {
            break;
        }
    }
    v.extend_from_slice(body);
    v
}

/// Input layout shared by the family targets: byte 0 picks the version and
/// the packet type among `types`, byte 1 the PUBLISH flags (ignored for the
/// others, which get their mandatory flags), the rest is the packet body.
/// The framed packet is followed by the body again as raw bytes, so a
/// second, arbitrarily framed packet is tried too.
pub fn decode_family(data: &[u8], types: &[u8]) {
    let [sel, flags, body @ ..] = data else { return };
    let v = version(sel >> 4);
    let packet_type = types[usize::from(sel & 0x0F) % types.len()];
    let flags = match packet_type {
        3 => flags & 0x0F,
        6 | 8 | 10 => 0b0010,
        _ => 0,
    };
    let mut input = frame((packet_type << 4) | flags, body);
    input.extend_from_slice(body);
    decode_all(&input, v);
}
