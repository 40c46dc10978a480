//! Hand-written byte vectors laid out field by field from the MQTT 3.1,
//! 3.1.1 and 5.0 specifications, so the decoder and the encoder are each
//! checked against the wire format rather than only against each other.

mod common;

use bytes::Bytes;
use common::*;
use fbroker_codec::*;

fn props() -> Properties {
    Properties::default()
}

/// Decodes `bytes` to `packet` and, when the vector is the canonical
/// encoding, encodes `packet` back to exactly `bytes`.
fn check(bytes: &[u8], version: ProtocolVersion, packet: Packet, canonical: bool) {
    assert_eq!(decode_one(bytes, version).unwrap(), packet, "decode {bytes:02X?}");
    if canonical {
        assert_eq!(encode_vec(&packet, version), bytes, "encode {packet:?}");
    }
}

#[test]
fn connect_3_1_1_with_username_and_password() {
    let bytes = [
        0x10, 0x1E, // CONNECT, remaining length 30
        0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
        0x04, // level 4
        0xC2, // user name, password, clean session
        0x00, 0x3C, // keep alive 60
        0x00, 0x06, b'c', b'l', b'i', b'e', b'n', b't', // client id
        0x00, 0x04, b'u', b's', b'e', b'r', // user name
        0x00, 0x04, b'p', b'a', b's', b's', // password
    ];
    let p = Packet::Connect(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 60,
        client_id: "client".into(),
        will: None,
        username: Some("user".into()),
        password: Some(Bytes::from_static(b"pass")),
        properties: props(),
    });
    check(&bytes, V311, p, true);
}

#[test]
fn connect_3_1_1_with_will() {
    let bytes = [
        0x10, 0x1A, //
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, //
        0x2E, // will retain, will QoS 1, will flag, clean session
        0x00, 0x0A, //
        0x00, 0x02, b'i', b'd', //
        0x00, 0x05, b'w', b'/', b't', b'o', b'p', // will topic
        0x00, 0x03, b'b', b'y', b'e', // will message
    ];
    let p = Packet::Connect(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 10,
        client_id: "id".into(),
        will: Some(LastWill {
            topic: "w/top".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: props(),
        }),
        username: None,
        password: None,
        properties: props(),
    });
    check(&bytes, V311, p, true);
}

#[test]
fn connect_3_1_mqisdp() {
    let bytes = [
        0x10, 0x11, //
        0x00, 0x06, b'M', b'Q', b'I', b's', b'd', b'p', 0x03, // MQIsdp level 3
        0x02, 0x00, 0x3C, //
        0x00, 0x03, b'a', b'b', b'c',
    ];
    let p = Packet::Connect(Connect {
        protocol: V31,
        clean_start: true,
        keep_alive: 60,
        client_id: "abc".into(),
        will: None,
        username: None,
        password: None,
        properties: props(),
    });
    // CONNECT is self-describing: the connection version does not matter.
    for v in ALL_VERSIONS {
        check(&bytes, v, p.clone(), true);
    }
}

#[test]
fn connect_5_0_with_session_expiry() {
    let bytes = [
        0x10, 0x15, //
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, //
        0x02, 0x00, 0x3C, //
        0x05, 0x11, 0x00, 0x00, 0x00, 0x78, // properties: session expiry 120
        0x00, 0x03, b'a', b'b', b'c',
    ];
    let p = Packet::Connect(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 60,
        client_id: "abc".into(),
        will: None,
        username: None,
        password: None,
        properties: Properties { session_expiry_interval: Some(120), ..props() },
    });
    check(&bytes, V5, p, true);
}

#[test]
fn connect_5_0_with_will_properties() {
    let bytes = [
        0x10, 0x25, //
        0x00, 0x04, b'M', b'Q', b'T', b'T', 0x05, //
        0x86, // user name, will flag (QoS 0), clean start
        0x00, 0x00, //
        0x0A, // property length 10
        0x21, 0x00, 0x14, // receive maximum 20
        0x26, 0x00, 0x01, b'k', 0x00, 0x01, b'v', // user property k=v
        0x00, 0x00, // empty client id
        0x05, 0x18, 0x00, 0x00, 0x00, 0x05, // will properties: will delay 5
        0x00, 0x01, b't', // will topic
        0x00, 0x00, // empty will payload
        0x00, 0x01, b'u', // user name
    ];
    let p = Packet::Connect(Connect {
        protocol: V5,
        clean_start: true,
        keep_alive: 0,
        client_id: String::new(),
        will: Some(LastWill {
            topic: "t".into(),
            payload: Bytes::new(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties { will_delay_interval: Some(5), ..props() },
        }),
        username: Some("u".into()),
        password: None,
        properties: Properties {
            receive_maximum: Some(20),
            user_properties: vec![("k".into(), "v".into())],
            ..props()
        },
    });
    check(&bytes, V5, p, true);
}

#[test]
fn connack_3_1_1_and_5_0() {
    check(
        &[0x20, 0x02, 0x01, 0x00],
        V311,
        Packet::ConnAck(ConnAck { session_present: true, code: 0, properties: props() }),
        true,
    );
    check(
        &[0x20, 0x02, 0x00, 0x05],
        V31,
        Packet::ConnAck(ConnAck { session_present: false, code: 5, properties: props() }),
        true,
    );
    // MQTT 3.1: the first byte is reserved and not used; no Session Present.
    check(
        &[0x20, 0x02, 0x01, 0x00],
        V31,
        Packet::ConnAck(ConnAck { session_present: false, code: 0, properties: props() }),
        false,
    );
    let sp = Packet::ConnAck(ConnAck { session_present: true, code: 0, properties: props() });
    assert_eq!(encode_vec(&sp, V31), [0x20, 0x02, 0x00, 0x00]);
    check(
        &[0x20, 0x03, 0x00, 0x00, 0x00],
        V5,
        Packet::ConnAck(ConnAck { session_present: false, code: 0, properties: props() }),
        true,
    );
    check(
        &[0x20, 0x06, 0x00, 0x87, 0x03, 0x21, 0x00, 0x0A],
        V5,
        Packet::ConnAck(ConnAck {
            session_present: false,
            code: reason::NOT_AUTHORIZED,
            properties: Properties { receive_maximum: Some(10), ..props() },
        }),
        true,
    );
}

#[test]
fn publish_3_1_1() {
    check(
        &[0x32, 0x09, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x01, b'h', b'i'],
        V311,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a/b".into(),
            packet_id: Some(1),
            payload: Bytes::from_static(b"hi"),
            properties: props(),
        }),
        true,
    );
    check(
        &[0x31, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'],
        V31,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: true,
            topic: "a/b".into(),
            packet_id: None,
            payload: Bytes::from_static(b"hi"),
            properties: props(),
        }),
        true,
    );
}

#[test]
fn publish_5_0_empty_topic_with_topic_alias() {
    check(
        &[0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x05, b'x'],
        V5,
        Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "".into(),
            packet_id: None,
            payload: Bytes::from_static(b"x"),
            properties: Properties { topic_alias: Some(5), ..props() },
        }),
        true,
    );
}

#[test]
fn publish_5_0_qos2_dup_with_subscription_identifiers() {
    check(
        &[
            0x3D, 0x11, // PUBLISH, DUP, QoS 2, retain
            0x00, 0x01, b't', // topic
            0x00, 0x0A, // packet id 10
            0x0A, // property length 10
            0x02, 0x00, 0x00, 0x00, 0x3C, // message expiry 60
            0x0B, 0x02, // subscription id 2
            0x0B, 0x80, 0x01, // subscription id 128
            b'p',
        ],
        V5,
        Packet::Publish(Publish {
            dup: true,
            qos: QoS::ExactlyOnce,
            retain: true,
            topic: "t".into(),
            packet_id: Some(10),
            payload: Bytes::from_static(b"p"),
            properties: Properties {
                message_expiry_interval: Some(60),
                subscription_identifiers: vec![2, 128],
                ..props()
            },
        }),
        true,
    );
}

#[test]
fn publish_acks_3_1_1() {
    check(&[0x40, 0x02, 0x00, 0x01], V311, Packet::PubAck(Ack::new(1)), true);
    check(&[0x50, 0x02, 0x00, 0x01], V311, Packet::PubRec(Ack::new(1)), true);
    check(&[0x62, 0x02, 0x00, 0x01], V311, Packet::PubRel(Ack::new(1)), true);
    check(&[0x70, 0x02, 0x00, 0x01], V31, Packet::PubComp(Ack::new(1)), true);
}

#[test]
fn publish_acks_5_0_all_three_lengths() {
    // Remaining length 2: reason 0x00, no properties.
    check(&[0x40, 0x02, 0x12, 0x34], V5, Packet::PubAck(Ack::new(0x1234)), true);
    // Remaining length 3: reason code, no properties.
    check(
        &[0x62, 0x03, 0x00, 0x01, 0x92],
        V5,
        Packet::PubRel(Ack { packet_id: 1, reason_code: reason::PACKET_IDENTIFIER_NOT_FOUND, properties: props() }),
        true,
    );
    // Remaining length 4 with an empty property list: same packet as the short form.
    check(&[0x40, 0x04, 0x00, 0x01, 0x00, 0x00], V5, Packet::PubAck(Ack::new(1)), false);
    check(
        &[0x50, 0x08, 0x00, 0x01, 0x10, 0x04, 0x1F, 0x00, 0x01, b'x'],
        V5,
        Packet::PubRec(Ack {
            packet_id: 1,
            reason_code: reason::NO_MATCHING_SUBSCRIBERS,
            properties: Properties { reason_string: Some("x".into()), ..props() },
        }),
        true,
    );
}

#[test]
fn subscribe_3_1_1() {
    check(
        &[0x82, 0x08, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'#', 0x01],
        V311,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![SubscribeFilter {
                filter: "a/#".into(),
                options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
            }],
            properties: props(),
        }),
        true,
    );
    check(
        &[0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, b'a', b'/', b'b', 0x00, 0x00, 0x03, b'c', b'/', b'd', 0x02],
        V311,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![
                SubscribeFilter { filter: "a/b".into(), options: SubscriptionOptions::default() },
                SubscribeFilter {
                    filter: "c/d".into(),
                    options: SubscriptionOptions { qos: QoS::ExactlyOnce, ..Default::default() },
                },
            ],
            properties: props(),
        }),
        true,
    );
}

#[test]
fn subscribe_5_0_options_byte() {
    check(
        &[0x82, 0x0B, 0x00, 0x0A, 0x02, 0x0B, 0x05, 0x00, 0x03, b'a', b'/', b'b', 0x2D],
        V5,
        Packet::Subscribe(Subscribe {
            packet_id: 10,
            filters: vec![SubscribeFilter {
                filter: "a/b".into(),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: 2,
                },
            }],
            properties: Properties { subscription_identifiers: vec![5], ..props() },
        }),
        true,
    );
}

#[test]
fn suback_unsubscribe_unsuback() {
    check(
        &[0x90, 0x04, 0x00, 0x0A, 0x00, 0x80],
        V311,
        Packet::SubAck(SubAck { packet_id: 10, return_codes: vec![0x00, 0x80], properties: props() }),
        true,
    );
    check(
        &[0x90, 0x05, 0x00, 0x0A, 0x00, 0x01, 0x02],
        V5,
        Packet::SubAck(SubAck { packet_id: 10, return_codes: vec![0x01, 0x02], properties: props() }),
        true,
    );
    check(
        &[0xA2, 0x05, 0x00, 0x0B, 0x00, 0x01, b'x'],
        V311,
        Packet::Unsubscribe(Unsubscribe { packet_id: 11, filters: vec!["x".into()], properties: props() }),
        true,
    );
    check(
        &[0xA2, 0x06, 0x00, 0x0B, 0x00, 0x00, 0x01, b'x'],
        V5,
        Packet::Unsubscribe(Unsubscribe { packet_id: 11, filters: vec!["x".into()], properties: props() }),
        true,
    );
    check(
        &[0xB0, 0x02, 0x00, 0x0B],
        V311,
        Packet::UnsubAck(UnsubAck { packet_id: 11, reason_codes: vec![], properties: props() }),
        true,
    );
    check(
        &[0xB0, 0x05, 0x00, 0x0B, 0x00, 0x00, 0x11],
        V5,
        Packet::UnsubAck(UnsubAck { packet_id: 11, reason_codes: vec![0x00, 0x11], properties: props() }),
        true,
    );
}

#[test]
fn ping_disconnect_auth() {
    for v in ALL_VERSIONS {
        check(&[0xC0, 0x00], v, Packet::PingReq, true);
        check(&[0xD0, 0x00], v, Packet::PingResp, true);
        check(&[0xE0, 0x00], v, Packet::Disconnect(Disconnect::default()), true);
    }
    check(
        &[0xE0, 0x01, 0x8E],
        V5,
        Packet::Disconnect(Disconnect { reason_code: reason::SESSION_TAKEN_OVER, properties: props() }),
        true,
    );
    check(
        &[0xE0, 0x07, 0x04, 0x05, 0x11, 0x00, 0x00, 0x00, 0x00],
        V5,
        Packet::Disconnect(Disconnect {
            reason_code: reason::DISCONNECT_WITH_WILL,
            properties: Properties { session_expiry_interval: Some(0), ..props() },
        }),
        true,
    );
    check(&[0xF0, 0x00], V5, Packet::Auth(Auth::default()), true);
    check(
        &[0xF0, 0x0B, 0x18, 0x09, 0x15, 0x00, 0x01, b'X', 0x16, 0x00, 0x02, 0x01, 0x02],
        V5,
        Packet::Auth(Auth {
            reason_code: reason::CONTINUE_AUTHENTICATION,
            properties: Properties {
                authentication_method: Some("X".into()),
                authentication_data: Some(Bytes::from_static(&[1, 2])),
                ..props()
            },
        }),
        true,
    );
    // A one-byte AUTH (reason only) is accepted, like the one-byte DISCONNECT.
    check(&[0xF0, 0x01, 0x19], V5, Packet::Auth(Auth { reason_code: 0x19, properties: props() }), false);
}

#[test]
fn mqtt_3_1_dup_tolerated_on_subscribe_unsubscribe_pubrel() {
    check(&[0x6A, 0x02, 0x00, 0x01], V31, Packet::PubRel(Ack::new(1)), false);
    check(
        &[0xAA, 0x05, 0x00, 0x0B, 0x00, 0x01, b'x'],
        V31,
        Packet::Unsubscribe(Unsubscribe { packet_id: 11, filters: vec!["x".into()], properties: props() }),
        false,
    );
    assert_eq!(
        decode_err(&[0x6A, 0x02, 0x00, 0x01], V311),
        DecodeError::InvalidFixedHeaderFlags { packet_type: 6, flags: 0b1010 }
    );
}
