//! Every `DecodeError` variant, named after the spec statement it enforces
//! where there is one, plus a deterministic garbage loop that must never
//! panic.

mod common;

use bytes::BytesMut;
use common::*;
use fbroker_codec::*;

fn malformed(bytes: &[u8], version: ProtocolVersion) {
    match decode_err(bytes, version) {
        DecodeError::Malformed(_) => {}
        other => panic!("expected Malformed for {bytes:02X?} ({version:?}), got {other:?}"),
    }
}

fn protocol_error(bytes: &[u8], version: ProtocolVersion) {
    match decode_err(bytes, version) {
        DecodeError::ProtocolError(_) => {}
        other => panic!("expected ProtocolError for {bytes:02X?}, got {other:?}"),
    }
}

/// A CONNECT with the given name, level, flags and the rest of the body
/// after the keep alive.
fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = s(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&[0x00, 0x3C]);
    body.extend_from_slice(rest);
    frame(0x10, &body)
}

fn connect311(flags: u8, payload: &[u8]) -> Vec<u8> {
    connect(b"MQTT", 4, flags, payload)
}

/// A 5.0 CONNECT whose properties are `props` (without their length).
fn connect5_props(props: &[u8]) -> Vec<u8> {
    let mut rest = vec![props.len() as u8];
    rest.extend_from_slice(props);
    rest.extend(s(b"id"));
    connect(b"MQTT", 5, 0x02, &rest)
}

/// A 5.0 QoS 0 PUBLISH to topic "t" with the given properties.
fn publish5_props(props: &[u8]) -> Vec<u8> {
    let mut body = s(b"t");
    body.push(props.len() as u8);
    body.extend_from_slice(props);
    body.extend_from_slice(b"payload");
    frame(0x30, &body)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

// ---------------------------------------------------------------- fixed header

#[test]
fn mqtt_1_5_5_1_remaining_length_of_five_bytes() {
    for v in ALL_VERSIONS {
        // Rejected as soon as the fourth byte still has a continuation bit.
        assert_eq!(decode_err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF], v), DecodeError::MalformedRemainingLength);
        assert_eq!(decode_err(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], v), DecodeError::MalformedRemainingLength);
        assert_eq!(decode_err(&[0xC0, 0x80, 0x80, 0x80, 0x80, 0x00], v), DecodeError::MalformedRemainingLength);
    }
}

#[test]
fn mqtt_1_5_5_1_remaining_length_not_minimal() {
    assert_eq!(decode_err(&[0xC0, 0x80, 0x00], V5), DecodeError::MalformedRemainingLength);
    assert_eq!(decode_err(&[0x30, 0x85, 0x80, 0x00], V311), DecodeError::MalformedRemainingLength);
}

#[test]
fn packet_too_large_rejected_from_the_fixed_header_alone() {
    for v in ALL_VERSIONS {
        // PUBLISH announcing 2,097,151 bytes; nothing but the header buffered.
        let mut buf = BytesMut::from(&[0x30, 0xFF, 0xFF, 0x7F][..]);
        assert_eq!(decode(&mut buf, v, 1 << 20), Err(DecodeError::PacketTooLarge { size: 2_097_155, max: 1 << 20 }));
        assert_eq!(buf.len(), 4, "nothing consumed");
        // CONNECT too, whatever the version.
        let mut buf = BytesMut::from(&[0x10, 0xE8, 0x07][..]);
        assert_eq!(decode(&mut buf, v, 1000), Err(DecodeError::PacketTooLarge { size: 1003, max: 1000 }));
    }
    // Before the remaining length is complete the size is unknown.
    let mut buf = BytesMut::from(&[0x30, 0xFF][..]);
    assert_eq!(decode(&mut buf, V5, 10).unwrap(), Decoded::Incomplete { needed: 1 });
}

#[test]
fn invalid_packet_type_zero() {
    for v in ALL_VERSIONS {
        // Detected from the first byte alone.
        assert_eq!(decode_err(&[0x00], v), DecodeError::InvalidPacketType(0));
        assert_eq!(decode_err(&[0x00, 0x00], v), DecodeError::InvalidPacketType(0));
    }
}

#[test]
fn auth_is_an_invalid_packet_type_before_5_0() {
    for v in [V31, V311] {
        assert_eq!(decode_err(&[0xF0, 0x00], v), DecodeError::InvalidPacketType(15));
    }
    assert_eq!(decode_one(&[0xF0, 0x00], V5).unwrap(), Packet::Auth(Auth::default()));
}

#[test]
fn mqtt_3_8_1_1_subscribe_reserved_flags() {
    let body = [0x00, 0x01, 0x00, 0x01, b'a', 0x00];
    for v in ALL_VERSIONS {
        for first in [0x80u8, 0x81, 0x83, 0x84, 0x8F] {
            assert_eq!(
                decode_err(&frame(first, &body), v),
                DecodeError::InvalidFixedHeaderFlags { packet_type: 8, flags: first & 0x0F }
            );
        }
    }
}

#[test]
fn mqtt_3_10_1_1_unsubscribe_reserved_flags() {
    let body = [0x00, 0x01, 0x00, 0x01, b'a'];
    for v in ALL_VERSIONS {
        assert_eq!(
            decode_err(&frame(0xA0, &body), v),
            DecodeError::InvalidFixedHeaderFlags { packet_type: 10, flags: 0 }
        );
    }
}

#[test]
fn mqtt_3_6_1_1_pubrel_reserved_flags() {
    for v in ALL_VERSIONS {
        assert_eq!(
            decode_err(&[0x60, 0x02, 0x00, 0x01], v),
            DecodeError::InvalidFixedHeaderFlags { packet_type: 6, flags: 0 }
        );
    }
}

#[test]
fn mqtt_2_2_2_2_reserved_flags_must_be_zero() {
    for v in ALL_VERSIONS {
        for packet_type in [1u8, 2, 4, 5, 7, 9, 11, 12, 13, 14] {
            for flags in 1..16u8 {
                assert_eq!(
                    decode_err(&[(packet_type << 4) | flags, 0x00], v),
                    DecodeError::InvalidFixedHeaderFlags { packet_type, flags }
                );
            }
        }
    }
    assert_eq!(decode_err(&[0xF1, 0x00], V5), DecodeError::InvalidFixedHeaderFlags { packet_type: 15, flags: 1 });
}

// ---------------------------------------------------------------- CONNECT

#[test]
fn mqtt_3_1_2_1_invalid_protocol_name() {
    for name in [&b"MQTX"[..], b"mqtt", b"MQIsdp\0", b"", b"MQ"] {
        let bytes = connect(name, 4, 0x02, &s(b"id"));
        assert_eq!(
            decode_err(&bytes, V311),
            DecodeError::InvalidProtocolName(String::from_utf8_lossy(name).into_owned())
        );
    }
    let bytes = connect(b"\xFF\xFE", 4, 0x02, &s(b"id"));
    assert!(matches!(decode_err(&bytes, V5), DecodeError::InvalidProtocolName(_)));
}

#[test]
fn mqtt_3_1_2_2_unsupported_protocol_level() {
    let cases: [(&[u8], u8); 7] =
        [(b"MQTT", 6), (b"MQTT", 3), (b"MQTT", 0), (b"MQTT", 0x84), (b"MQIsdp", 4), (b"MQIsdp", 5), (b"MQIsdp", 2)];
    for (name, level) in cases {
        for v in ALL_VERSIONS {
            let err = decode_err(&connect(name, level, 0x02, &s(b"id")), v);
            assert_eq!(err, DecodeError::UnsupportedProtocolVersion(level));
            assert_eq!(err.reason_code(), reason::UNSUPPORTED_PROTOCOL_VERSION);
        }
    }
}

#[test]
fn mqtt_3_1_2_3_connect_reserved_flag() {
    malformed(&connect311(0x03, &s(b"id")), V311);
    malformed(&connect(b"MQTT", 5, 0x01, &cat(&[&[0], &s(b"id")])), V5);
    malformed(&connect(b"MQIsdp", 3, 0x01, &s(b"id")), V31);
}

#[test]
fn mqtt_3_1_2_11_and_13_will_qos_without_will_flag() {
    malformed(&connect311(0x08, &s(b"id")), V311);
    malformed(&connect311(0x10, &s(b"id")), V311);
}

#[test]
fn mqtt_3_1_2_15_will_retain_without_will_flag() {
    malformed(&connect311(0x20, &s(b"id")), V311);
    malformed(&connect(b"MQTT", 5, 0x22, &cat(&[&[0], &s(b"id")])), V5);
}

#[test]
fn mqtt_3_1_2_14_will_qos_3() {
    let payload = cat(&[&s(b"id"), &s(b"will"), &s(b"msg")]);
    assert_eq!(decode_err(&connect311(0x1C, &payload), V311), DecodeError::InvalidQoS(3));
}

#[test]
fn mqtt_3_1_2_22_password_without_username() {
    let payload = cat(&[&s(b"id"), &s(b"pw")]);
    malformed(&connect311(0x42, &payload), V311);
    malformed(&connect(b"MQIsdp", 3, 0x42, &payload), V31);
    // MQTT 5.0 allows it.
    let Packet::Connect(c) = decode_one(&connect(b"MQTT", 5, 0x42, &cat(&[&[0], &payload])), V5).unwrap() else {
        panic!()
    };
    assert_eq!((c.username, c.password.as_deref()), (None, Some(&b"pw"[..])));
}

#[test]
fn mqtt_3_1_3_client_id_may_be_empty_in_3_x() {
    for (name, level, v) in [(&b"MQTT"[..], 4, V311), (b"MQIsdp", 3, V31)] {
        let Packet::Connect(c) = decode_one(&connect(name, level, 0x00, &s(b"")), v).unwrap() else { panic!() };
        assert_eq!(c.client_id, "");
        assert!(!c.clean_start);
    }
}

#[test]
fn connect_truncated_and_trailing_bytes() {
    // Username flag set but no user name.
    malformed(&connect311(0x82, &s(b"id")), V311);
    // Will flag set but no will message.
    malformed(&connect311(0x06, &cat(&[&s(b"id"), &s(b"topic")])), V311);
    // Trailing byte after the client id.
    malformed(&connect311(0x02, &cat(&[&s(b"id"), &[0]])), V311);
    // Stops after the protocol name.
    malformed(&frame(0x10, &s(b"MQTT")), V311);
    // 5.0 without a property length.
    malformed(&frame(0x10, &cat(&[&s(b"MQTT"), &[5, 2, 0, 60]])), V5);
}

#[test]
fn connect_properties_only_in_5_0() {
    // In 3.1.1 the bytes after keep alive are the client id: a property
    // length of 0 then "id" reads as a bad client id length.
    let bytes = connect311(0x02, &cat(&[&[0], &s(b"id")]));
    malformed(&bytes, V311);
}

#[test]
fn connect_5_0_auth_data_without_method_is_protocol_error() {
    protocol_error(&connect5_props(&[0x16, 0x00, 0x01, 0xAA]), V5);
    // With a method it is fine.
    decode_one(&connect5_props(&[0x15, 0x00, 0x01, b'M', 0x16, 0x00, 0x01, 0xAA]), V5).unwrap();
}

// ---------------------------------------------------------------- CONNACK

#[test]
fn connack_reserved_bits_and_codes() {
    malformed(&[0x20, 0x02, 0x02, 0x00], V311);
    malformed(&[0x20, 0x03, 0x80, 0x00, 0x00], V5);
    malformed(&[0x20, 0x02, 0x00, 0x06], V311); // 3.1.1 return codes 6-255 are reserved
    malformed(&[0x20, 0x03, 0x00, 0x00, 0x00], V311); // trailing byte
    malformed(&[0x20, 0x01, 0x00], V311); // truncated
    malformed(&[0x20, 0x02, 0x00, 0x00], V5); // 5.0 requires the property length
}

// ---------------------------------------------------------------- PUBLISH

#[test]
fn mqtt_3_3_1_4_publish_qos_3() {
    for v in ALL_VERSIONS {
        // From the first byte alone.
        assert_eq!(decode_err(&[0x36], v), DecodeError::InvalidQoS(3));
        assert_eq!(decode_err(&[0x3F, 0x05, 0x00, 0x01, b't', 0x00, 0x01], v), DecodeError::InvalidQoS(3));
    }
}

#[test]
fn mqtt_3_3_1_2_qos0_publish_with_dup() {
    for v in ALL_VERSIONS {
        malformed(&[0x38, 0x03, 0x00, 0x01, b't'], v);
    }
}

#[test]
fn mqtt_2_3_1_1_packet_identifier_zero() {
    for v in ALL_VERSIONS {
        malformed(&[0x32, 0x05, 0x00, 0x01, b't', 0x00, 0x00], v); // PUBLISH QoS 1
        malformed(&[0x34, 0x05, 0x00, 0x01, b't', 0x00, 0x00], v); // PUBLISH QoS 2
        malformed(&[0x40, 0x02, 0x00, 0x00], v); // PUBACK
        malformed(&[0x50, 0x02, 0x00, 0x00], v); // PUBREC
        malformed(&[0x62, 0x02, 0x00, 0x00], v); // PUBREL
        malformed(&[0x70, 0x02, 0x00, 0x00], v); // PUBCOMP
        let props: &[u8] = if v.is_v5() { &[0] } else { &[] };
        malformed(&frame(0x82, &cat(&[&[0, 0], props, &s(b"a"), &[0]])), v); // SUBSCRIBE
        malformed(&frame(0x90, &cat(&[&[0, 0], props, &[0]])), v); // SUBACK
        malformed(&frame(0xA2, &cat(&[&[0, 0], props, &s(b"a")])), v); // UNSUBSCRIBE
    }
    malformed(&[0xB0, 0x02, 0x00, 0x00], V311); // UNSUBACK
}

#[test]
fn mqtt_4_7_3_1_empty_topic_in_3_x() {
    for v in [V31, V311] {
        malformed(&[0x30, 0x02, 0x00, 0x00], v);
    }
}

#[test]
fn publish_5_0_empty_topic_without_alias_is_protocol_error() {
    protocol_error(&[0x30, 0x03, 0x00, 0x00, 0x00], V5);
}

#[test]
fn publish_wildcards_are_left_to_the_broker() {
    for v in ALL_VERSIONS {
        let props: &[u8] = if v.is_v5() { &[0] } else { &[] };
        let Packet::Publish(p) = decode_one(&frame(0x30, &cat(&[&s(b"a/+/#"), props])), v).unwrap() else { panic!() };
        assert_eq!(&*p.topic, "a/+/#");
    }
}

#[test]
fn publish_truncated() {
    for v in ALL_VERSIONS {
        malformed(&[0x30, 0x03, 0x00, 0x05, b't'], v); // topic longer than the packet
        malformed(&[0x32, 0x04, 0x00, 0x01, b't', 0x00], v); // half a packet id
        malformed(&[0x30, 0x01, 0x00], v);
    }
    malformed(&[0x30, 0x03, 0x00, 0x01, b't'], V5); // no property length
    malformed(&[0x30, 0x04, 0x00, 0x01, b't', 0x05], V5); // property length beyond the packet
}

// ---------------------------------------------------------------- acks

#[test]
fn acks_3_x_must_be_exactly_two_bytes() {
    for v in [V31, V311] {
        malformed(&[0x40, 0x03, 0x00, 0x01, 0x00], v);
        malformed(&[0x70, 0x01, 0x00], v);
        malformed(&[0x50, 0x00], v);
    }
}

#[test]
fn acks_5_0_trailing_bytes_after_properties() {
    malformed(&[0x40, 0x05, 0x00, 0x01, 0x00, 0x00, 0x00], V5);
}

// ---------------------------------------------------------------- SUBSCRIBE

#[test]
fn mqtt_3_8_3_3_subscribe_without_filters() {
    malformed(&[0x82, 0x02, 0x00, 0x01], V311);
    malformed(&[0x82, 0x03, 0x00, 0x01, 0x00], V5);
}

#[test]
fn mqtt_3_10_3_2_unsubscribe_without_filters() {
    malformed(&[0xA2, 0x02, 0x00, 0x01], V311);
    malformed(&[0xA2, 0x03, 0x00, 0x01, 0x00], V5);
}

#[test]
fn mqtt_3_8_3_4_subscribe_options_reserved_bits_3_x() {
    for v in [V31, V311] {
        for opt in [0x04u8, 0x08, 0x10, 0x20, 0x40, 0x80, 0xFD] {
            malformed(&frame(0x82, &cat(&[&[0, 1], &s(b"a"), &[opt]])), v);
        }
    }
}

#[test]
fn mqtt_3_8_3_5_subscribe_options_reserved_bits_5_0() {
    for opt in [0x40u8, 0x80, 0xC1] {
        malformed(&frame(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[opt]])), V5);
    }
}

#[test]
fn mqtt_3_8_3_4_subscribe_qos_3() {
    for v in ALL_VERSIONS {
        let props: &[u8] = if v.is_v5() { &[0] } else { &[] };
        assert_eq!(decode_err(&frame(0x82, &cat(&[&[0, 1], props, &s(b"a"), &[0x03]])), v), DecodeError::InvalidQoS(3));
    }
}

#[test]
fn subscribe_retain_handling_3() {
    malformed(&frame(0x82, &cat(&[&[0, 1, 0], &s(b"a"), &[0x30]])), V5);
}

#[test]
fn subscribe_filter_without_options_byte() {
    malformed(&frame(0x82, &cat(&[&[0, 1], &s(b"a/b")])), V311);
    malformed(&frame(0x82, &cat(&[&[0, 1], &s(b"a/b"), &[0], &s(b"c")])), V311);
}

#[test]
fn mqtt_3_9_3_2_suback_reserved_return_codes_3_x() {
    malformed(&[0x90, 0x03, 0x00, 0x01, 0x03], V311);
    malformed(&[0x90, 0x03, 0x00, 0x01, 0x87], V311);
    malformed(&[0x90, 0x02, 0x00, 0x01], V311); // no return codes
                                                // 5.0 reason codes are fine in 5.0.
    decode_one(&[0x90, 0x04, 0x00, 0x01, 0x00, 0x87], V5).unwrap();
}

#[test]
fn unsuback_lengths() {
    malformed(&[0xB0, 0x03, 0x00, 0x01, 0x00], V311); // 3.x has no payload
    malformed(&[0xB0, 0x03, 0x00, 0x01, 0x00], V5); // 5.0 needs reason codes
}

// ---------------------------------------------------------------- control packets

#[test]
fn mqtt_3_12_pingreq_and_pingresp_have_no_body() {
    for v in ALL_VERSIONS {
        malformed(&[0xC0, 0x01, 0x00], v);
        malformed(&[0xD0, 0x02, 0x00, 0x00], v);
    }
}

#[test]
fn mqtt_3_14_disconnect_3_x_has_no_body() {
    for v in [V31, V311] {
        malformed(&[0xE0, 0x01, 0x00], v);
    }
}

#[test]
fn disconnect_and_auth_5_0_trailing_bytes() {
    malformed(&[0xE0, 0x03, 0x00, 0x00, 0x00], V5);
    malformed(&[0xF0, 0x03, 0x18, 0x00, 0x00], V5);
}

// ---------------------------------------------------------------- UTF-8

/// Every UTF-8 string field with `bad` in it.
fn utf8_field_cases(bad: &[u8]) -> Vec<(Vec<u8>, ProtocolVersion)> {
    let mut v = Vec::new();
    // PUBLISH topic.
    for ver in ALL_VERSIONS {
        let props: &[u8] = if ver.is_v5() { &[0] } else { &[] };
        v.push((frame(0x30, &cat(&[&s(bad), props])), ver));
        v.push((frame(0x82, &cat(&[&[0, 1], props, &s(bad), &[0]])), ver)); // topic filter
        v.push((frame(0xA2, &cat(&[&[0, 1], props, &s(bad)])), ver)); // unsubscribe filter
    }
    v.push((connect311(0x02, &s(bad)), V311)); // client id
    v.push((connect311(0x82, &cat(&[&s(b"id"), &s(bad)])), V311)); // user name
    v.push((connect311(0x06, &cat(&[&s(b"id"), &s(bad), &s(b"msg")])), V311)); // will topic
    v.push((connect(b"MQIsdp", 3, 0x02, &s(bad)), V31));
    // User property key and value.
    let up_key = cat(&[&[0x26], &s(bad), &s(b"v")]);
    let up_val = cat(&[&[0x26], &s(b"k"), &s(bad)]);
    v.push((publish5_props(&up_key), V5));
    v.push((publish5_props(&up_val), V5));
    v.push((connect5_props(&up_key), V5));
    // String properties.
    v.push((publish5_props(&cat(&[&[0x03], &s(bad)])), V5)); // content type
    v.push((publish5_props(&cat(&[&[0x08], &s(bad)])), V5)); // response topic
    v.push((connect5_props(&cat(&[&[0x15], &s(bad)])), V5)); // authentication method
    let reason_string = cat(&[&[0x1F], &s(bad)]);
    let mut ack = vec![0x00, 0x01, 0x80, reason_string.len() as u8];
    ack.extend_from_slice(&reason_string);
    v.push((frame(0x40, &ack), V5));
    v
}

#[test]
fn mqtt_1_5_3_1_ill_formed_utf8() {
    for bad in [&b"\xFF"[..], b"a\xC3", b"\xED\xA0\x80" /* surrogate U+D800 */, b"\xC0\xAF" /* overlong */] {
        for (bytes, v) in utf8_field_cases(bad) {
            assert_eq!(decode_err(&bytes, v), DecodeError::InvalidUtf8, "{bytes:02X?} {v:?}");
        }
    }
}

#[test]
fn mqtt_1_5_3_2_null_character() {
    for (bytes, v) in utf8_field_cases(b"a\0b") {
        assert_eq!(decode_err(&bytes, v), DecodeError::InvalidUtf8, "{bytes:02X?} {v:?}");
    }
}

#[test]
fn mqtt_1_5_4_utf8_strings_are_accepted() {
    for (bytes, v) in utf8_field_cases("ü€😀/\u{FEFF}".as_bytes()) {
        decode_one(&bytes, v).unwrap_or_else(|e| panic!("{bytes:02X?} {v:?}: {e}"));
    }
}

// ---------------------------------------------------------------- properties

#[test]
fn property_duplicate_single_valued() {
    malformed(&connect5_props(&[0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2]), V5);
    malformed(&publish5_props(&[0x23, 0, 1, 0x23, 0, 2]), V5);
    malformed(&frame(0x82, &cat(&[&[0, 1, 4, 0x0B, 1, 0x0B, 2], &s(b"a"), &[0]])), V5); // two subscription ids in SUBSCRIBE
    malformed(&[0xE0, 0x08, 0x00, 0x06, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x00], V5);
    // two reason strings
}

#[test]
fn property_repeatable_ones() {
    let Packet::Publish(p) =
        decode_one(&publish5_props(&[0x0B, 1, 0x0B, 2, 0x26, 0, 1, b'k', 0, 0, 0x26, 0, 1, b'k', 0, 0]), V5).unwrap()
    else {
        panic!()
    };
    assert_eq!(p.properties.subscription_identifiers, [1, 2]);
    assert_eq!(p.properties.user_properties.len(), 2);
}

#[test]
fn property_not_allowed_in_packet() {
    malformed(&connect5_props(&[0x23, 0, 1]), V5); // topic alias in CONNECT
    malformed(&publish5_props(&[0x18, 0, 0, 0, 1]), V5); // will delay in PUBLISH
    malformed(&publish5_props(&[0x11, 0, 0, 0, 1]), V5); // session expiry in PUBLISH
    malformed(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x0B, 0x01], V5); // subscription id in CONNACK
    malformed(&[0x40, 0x07, 0x00, 0x01, 0x00, 0x03, 0x21, 0x00, 0x01], V5); // receive max in PUBACK
    malformed(&[0xF0, 0x07, 0x00, 0x05, 0x11, 0, 0, 0, 1], V5); // session expiry in AUTH
                                                                // Will properties: content type allowed, topic alias not.
    let will = |props: &[u8]| {
        let mut rest = vec![0];
        rest.extend(s(b"id"));
        rest.push(props.len() as u8);
        rest.extend_from_slice(props);
        rest.extend(s(b"wt"));
        rest.extend(s(b"wm"));
        connect(b"MQTT", 5, 0x06, &rest)
    };
    decode_one(&will(&[0x03, 0, 1, b'x']), V5).unwrap();
    malformed(&will(&[0x23, 0, 1]), V5);
    malformed(&will(&[0x11, 0, 0, 0, 1]), V5);
}

#[test]
fn property_unknown_identifier() {
    for id in [&[0x00u8][..], &[0x05], &[0x2B], &[0x7F], &[0x80, 0x01]] {
        let mut props = id.to_vec();
        props.push(0);
        malformed(&publish5_props(&props), V5);
    }
}

#[test]
fn property_value_truncated_or_crossing_length() {
    malformed(&publish5_props(&[0x02, 0, 0]), V5);
    malformed(&publish5_props(&[0x26, 0, 1, b'k']), V5);
}

#[test]
fn subscription_identifier_zero_is_protocol_error() {
    protocol_error(&publish5_props(&[0x0B, 0x00]), V5);
    protocol_error(&frame(0x82, &cat(&[&[0, 1, 2, 0x0B, 0], &s(b"a"), &[0]])), V5);
    // Non-minimal subscription identifier.
    malformed(&publish5_props(&[0x0B, 0x81, 0x00]), V5);
}

#[test]
fn property_values_out_of_range_are_protocol_errors() {
    protocol_error(&connect5_props(&[0x21, 0, 0]), V5); // receive maximum 0
    protocol_error(&connect5_props(&[0x27, 0, 0, 0, 0]), V5); // maximum packet size 0
    protocol_error(&connect5_props(&[0x17, 2]), V5); // request problem information 2
    protocol_error(&connect5_props(&[0x19, 2]), V5); // request response information 2
    protocol_error(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x24, 0x02], V5); // maximum QoS 2
    protocol_error(&[0x20, 0x05, 0x00, 0x00, 0x02, 0x25, 0x02], V5); // retain available 2
    protocol_error(&publish5_props(&[0x01, 0x02]), V5); // payload format indicator 2
}

// ---------------------------------------------------------------- reason codes

#[test]
fn reason_codes_for_errors() {
    let cases = [
        (DecodeError::MalformedRemainingLength, 0x81),
        (DecodeError::PacketTooLarge { size: 10, max: 5 }, 0x95),
        (DecodeError::InvalidPacketType(0), 0x81),
        (DecodeError::InvalidFixedHeaderFlags { packet_type: 8, flags: 0 }, 0x81),
        (DecodeError::InvalidProtocolName("x".into()), 0x84),
        (DecodeError::UnsupportedProtocolVersion(6), 0x84),
        (DecodeError::InvalidQoS(3), 0x81),
        (DecodeError::InvalidUtf8, 0x81),
        (DecodeError::Malformed("x"), 0x81),
        (DecodeError::ProtocolError("x"), 0x82),
    ];
    for (e, code) in cases {
        assert_eq!(e.reason_code(), code, "{e}");
    }
}

// ---------------------------------------------------------------- garbage

/// Decodes everything in `buf`, re-encoding every packet and checking that
/// it decodes back to itself. Returns the number of packets.
fn decode_all_checked(bytes: &[u8], version: ProtocolVersion, max: usize) -> usize {
    let mut buf = BytesMut::from(bytes);
    let mut n = 0;
    while let Ok(Decoded::Packet(p)) = decode(&mut buf, version, max) {
        let mut out = BytesMut::new();
        encode(&p, version, &mut out).unwrap_or_else(|e| panic!("re-encode {p:?}: {e}"));
        assert_eq!(out.len(), encoded_len(&p, version));
        match decode(&mut out, version, usize::MAX) {
            Ok(Decoded::Packet(q)) => assert_eq!(q, p),
            other => panic!("re-encoded {p:?} decoded as {other:?}"),
        }
        assert!(out.is_empty());
        n += 1;
    }
    n
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng::new(0x5EED_F00D);
    let mut decoded = 0;
    for _ in 0..20_000 {
        let len = rng.below(64);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        // Make the header plausible half of the time so bodies get parsed.
        if len >= 2 && rng.below(2) == 0 {
            bytes[1] = (len - 2).min(127) as u8;
        }
        for v in ALL_VERSIONS {
            decoded += decode_all_checked(&bytes, v, 1 + rng.below(200));
        }
    }
    assert!(decoded > 0, "some random inputs decode");
}

#[test]
fn mutated_valid_packets_never_panic() {
    let mut rng = Rng::new(42);
    let mut decoded = 0;
    for v in ALL_VERSIONS {
        let samples: Vec<Vec<u8>> =
            sample_packets(v).iter().map(|p| encode_vec(p, v)).filter(|b| b.len() < 2_000).collect();
        for _ in 0..7_000 {
            let mut bytes = samples[rng.below(samples.len())].clone();
            for _ in 0..1 + rng.below(3) {
                match rng.below(4) {
                    0 => {
                        let i = rng.below(bytes.len());
                        bytes[i] = rng.byte();
                    }
                    1 => {
                        let i = rng.below(bytes.len());
                        bytes[i] ^= 1 << rng.below(8);
                    }
                    2 => bytes.truncate(rng.below(bytes.len() + 1)),
                    _ => {
                        let i = rng.below(bytes.len() + 1);
                        bytes.insert(i, rng.byte());
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            decoded += decode_all_checked(&bytes, v, usize::MAX);
        }
    }
    assert!(decoded > 1_000, "{decoded} mutated packets decoded");
}
