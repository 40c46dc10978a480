//! Shared helpers and sample packets for the integration tests.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use fbroker_codec::*;

pub const ALL_VERSIONS: [ProtocolVersion; 3] = [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, ProtocolVersion::V5];
pub const V31: ProtocolVersion = ProtocolVersion::V3_1;
pub const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

/// Decodes exactly one packet that must fill `bytes` completely.
pub fn decode_one(bytes: &[u8], version: ProtocolVersion) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, version, usize::MAX)? {
        Decoded::Packet(p) => {
            assert!(buf.is_empty(), "{} bytes left after the packet", buf.len());
            Ok(p)
        }
        Decoded::Incomplete { needed } => panic!("incomplete, needs {needed} more bytes"),
    }
}

pub fn encode_vec(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).expect("encode");
    assert_eq!(out.len(), encoded_len(packet, version), "encoded_len of {packet:?}");
    out.to_vec()
}

/// Encodes, checks `encoded_len`, decodes and returns the decoded packet.
pub fn round_trip(packet: &Packet, version: ProtocolVersion) -> Packet {
    let bytes = encode_vec(packet, version);
    decode_one(&bytes, version).unwrap_or_else(|e| panic!("decode of {packet:?} for {version:?} failed: {e}"))
}

pub fn assert_round_trip(packet: &Packet, version: ProtocolVersion) {
    assert_eq!(&round_trip(packet, version), packet, "round trip for {version:?}");
}

/// The error from decoding `bytes` as a whole packet.
pub fn decode_err(bytes: &[u8], version: ProtocolVersion) -> DecodeError {
    let mut buf = BytesMut::from(bytes);
    match decode(&mut buf, version, usize::MAX) {
        Err(e) => e,
        Ok(d) => panic!("expected an error, got {d:?}"),
    }
}

/// Frames `body` behind a fixed header byte with the right remaining length.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![first];
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

/// Length-prefixed string.
pub fn s(text: &[u8]) -> Vec<u8> {
    let mut v = (text.len() as u16).to_be_bytes().to_vec();
    v.extend_from_slice(text);
    v
}

pub fn user_props() -> Vec<(String, String)> {
    vec![
        ("region".into(), "eu".into()),
        ("region".into(), "us".into()),
        ("".into(), "empty key".into()),
        ("ключ".into(), "значение".into()),
    ]
}

pub fn connect_props() -> Properties {
    Properties {
        session_expiry_interval: Some(3600),
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"\x00\x01client-first")),
        request_problem_information: Some(0),
        request_response_information: Some(1),
        receive_maximum: Some(100),
        topic_alias_maximum: Some(10),
        user_properties: user_props(),
        maximum_packet_size: Some(1 << 20),
        ..Properties::default()
    }
}

pub fn will_props() -> Properties {
    Properties {
        payload_format_indicator: Some(1),
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies/1".into()),
        correlation_data: Some(Bytes::from_static(b"\x01\x02\x03")),
        will_delay_interval: Some(30),
        user_properties: user_props(),
        ..Properties::default()
    }
}

pub fn connack_props() -> Properties {
    Properties {
        session_expiry_interval: Some(0),
        assigned_client_identifier: Some("auto-4f2a".into()),
        server_keep_alive: Some(120),
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"server-final")),
        response_information: Some("resp/".into()),
        server_reference: Some("other.example:1883".into()),
        reason_string: Some("welcome".into()),
        receive_maximum: Some(65535),
        topic_alias_maximum: Some(0),
        maximum_qos: Some(1),
        retain_available: Some(0),
        user_properties: user_props(),
        maximum_packet_size: Some(268_435_460),
        wildcard_subscription_available: Some(1),
        subscription_identifier_available: Some(0),
        shared_subscription_available: Some(1),
        ..Properties::default()
    }
}

pub fn publish_props() -> Properties {
    Properties {
        payload_format_indicator: Some(0),
        message_expiry_interval: Some(u32::MAX),
        content_type: Some("application/json".into()),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        subscription_identifiers: vec![1, 127, 128, 16_384, 268_435_455],
        topic_alias: Some(7),
        user_properties: user_props(),
        ..Properties::default()
    }
}

pub fn reason_props() -> Properties {
    Properties { reason_string: Some("because".into()), user_properties: user_props(), ..Properties::default() }
}

pub fn disconnect_props() -> Properties {
    Properties {
        session_expiry_interval: Some(10),
        server_reference: Some("backup:1883".into()),
        reason_string: Some("bye".into()),
        user_properties: user_props(),
        ..Properties::default()
    }
}

pub fn auth_props() -> Properties {
    Properties {
        authentication_method: Some("SCRAM-SHA-1".into()),
        authentication_data: Some(Bytes::from_static(b"\x00\xFFdata")),
        reason_string: Some("continue".into()),
        user_properties: user_props(),
        ..Properties::default()
    }
}

fn p(props: &Properties, version: ProtocolVersion) -> Properties {
    if version.is_v5() {
        props.clone()
    } else {
        Properties::default()
    }
}

/// Every packet type that exists in `version`, with every field used (and
/// full property sets in 5.0), in several variants each.
pub fn sample_packets(version: ProtocolVersion) -> Vec<Packet> {
    let v5 = version.is_v5();
    let rc = |code: u8| if v5 { code } else { 0 };
    let mut v = Vec::new();

    // CONNECT: minimal, full with will, username only, password only (5.0).
    v.push(Packet::Connect(Connect {
        protocol: version,
        clean_start: false,
        keep_alive: 0,
        client_id: String::new(),
        will: None,
        username: None,
        password: None,
        properties: Properties::default(),
    }));
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        v.push(Packet::Connect(Connect {
            protocol: version,
            clean_start: true,
            keep_alive: 65535,
            client_id: "client-äöü-1".into(),
            will: Some(LastWill {
                topic: "status/client-1".into(),
                payload: Bytes::from_static(b"offline\x00\xFF"),
                qos,
                retain: qos == QoS::AtLeastOnce,
                properties: p(&will_props(), version),
            }),
            username: Some("user".into()),
            password: Some(Bytes::from_static(b"\x00secret\xFF")),
            properties: p(&connect_props(), version),
        }));
    }
    v.push(Packet::Connect(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 30,
        client_id: "c".into(),
        will: None,
        username: Some(String::new()),
        password: None,
        properties: Properties::default(),
    }));
    if v5 {
        v.push(Packet::Connect(Connect {
            protocol: version,
            clean_start: false,
            keep_alive: 30,
            client_id: "c".into(),
            will: None,
            username: None,
            password: Some(Bytes::new()),
            properties: Properties { session_expiry_interval: Some(1), ..Properties::default() },
        }));
    }

    // CONNACK
    v.push(Packet::ConnAck(ConnAck { session_present: false, code: 0, properties: Properties::default() }));
    v.push(Packet::ConnAck(ConnAck {
        // MQTT 3.1 has no Session Present flag.
        session_present: version != ProtocolVersion::V3_1,
        code: 0,
        properties: p(&connack_props(), version),
    }));
    v.push(Packet::ConnAck(ConnAck {
        session_present: false,
        code: if v5 { reason::NOT_AUTHORIZED } else { connack_code::NOT_AUTHORIZED },
        properties: Properties::default(),
    }));

    // PUBLISH: each QoS, retain, dup, empty and large payloads.
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce].into_iter().enumerate() {
        v.push(Packet::Publish(Publish {
            dup: qos != QoS::AtMostOnce,
            qos,
            retain: i % 2 == 0,
            topic: "sensors/+/temp/#".into(),
            packet_id: (qos != QoS::AtMostOnce).then_some(65535 - i as u16),
            payload: Bytes::from(vec![i as u8; 300 * i]),
            properties: p(&publish_props(), version),
        }));
    }
    v.push(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "a".into(),
        packet_id: None,
        payload: Bytes::new(),
        properties: Properties::default(),
    }));
    v.push(Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: true,
        topic: "big".into(),
        packet_id: Some(1),
        payload: Bytes::from(vec![0xA5; 70_000]),
        properties: Properties::default(),
    }));
    if v5 {
        // Empty topic with a topic alias.
        v.push(Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "".into(),
            packet_id: None,
            payload: Bytes::from_static(b"aliased"),
            properties: Properties { topic_alias: Some(1), ..Properties::default() },
        }));
    }

    // The four acknowledgements: short forms and full forms.
    let acks = [
        Ack::new(1),
        Ack { packet_id: 65535, reason_code: rc(reason::NO_MATCHING_SUBSCRIBERS), properties: Properties::default() },
        Ack {
            packet_id: 42,
            reason_code: rc(reason::PACKET_IDENTIFIER_IN_USE),
            properties: p(&reason_props(), version),
        },
        Ack { packet_id: 43, reason_code: 0, properties: p(&reason_props(), version) },
    ];
    for a in acks {
        v.push(Packet::PubAck(a.clone()));
        v.push(Packet::PubRec(a.clone()));
        v.push(Packet::PubRel(a.clone()));
        v.push(Packet::PubComp(a));
    }

    // SUBSCRIBE
    let opts = |qos, nl, rap, rh| {
        if v5 {
            SubscriptionOptions { qos, no_local: nl, retain_as_published: rap, retain_handling: rh }
        } else {
            SubscriptionOptions { qos, ..SubscriptionOptions::default() }
        }
    };
    v.push(Packet::Subscribe(Subscribe {
        packet_id: 10,
        filters: vec![SubscribeFilter { filter: "a/b".into(), options: opts(QoS::AtMostOnce, false, false, 0) }],
        properties: Properties::default(),
    }));
    v.push(Packet::Subscribe(Subscribe {
        packet_id: 11,
        filters: vec![
            SubscribeFilter { filter: "a/+/c".into(), options: opts(QoS::AtLeastOnce, true, false, 1) },
            SubscribeFilter { filter: "#".into(), options: opts(QoS::ExactlyOnce, false, true, 2) },
            SubscribeFilter { filter: "$share/g/x".into(), options: opts(QoS::AtLeastOnce, true, true, 0) },
        ],
        properties: if v5 {
            Properties {
                subscription_identifiers: vec![268_435_455],
                user_properties: user_props(),
                ..Properties::default()
            }
        } else {
            Properties::default()
        },
    }));

    // SUBACK
    v.push(Packet::SubAck(SubAck { packet_id: 10, return_codes: vec![0], properties: Properties::default() }));
    v.push(Packet::SubAck(SubAck {
        packet_id: 11,
        return_codes: if v5 { vec![1, 2, 0x80, 0x87, 0xA2] } else { vec![1, 2, 0x80] },
        properties: p(&reason_props(), version),
    }));

    // UNSUBSCRIBE
    v.push(Packet::Unsubscribe(Unsubscribe {
        packet_id: 12,
        filters: vec!["a/b".into()],
        properties: Properties::default(),
    }));
    v.push(Packet::Unsubscribe(Unsubscribe {
        packet_id: 13,
        filters: vec!["a/+".into(), "#".into(), "".into()],
        properties: if v5 {
            Properties { user_properties: user_props(), ..Properties::default() }
        } else {
            Properties::default()
        },
    }));

    // UNSUBACK
    v.push(Packet::UnsubAck(UnsubAck {
        packet_id: 12,
        reason_codes: if v5 { vec![0] } else { vec![] },
        properties: Properties::default(),
    }));
    if v5 {
        v.push(Packet::UnsubAck(UnsubAck {
            packet_id: 13,
            reason_codes: vec![0, reason::NO_SUBSCRIPTION_EXISTED, reason::NOT_AUTHORIZED],
            properties: reason_props(),
        }));
    }

    v.push(Packet::PingReq);
    v.push(Packet::PingResp);

    // DISCONNECT
    v.push(Packet::Disconnect(Disconnect::default()));
    if v5 {
        v.push(Packet::Disconnect(Disconnect {
            reason_code: reason::DISCONNECT_WITH_WILL,
            properties: Properties::default(),
        }));
        v.push(Packet::Disconnect(Disconnect {
            reason_code: reason::SESSION_TAKEN_OVER,
            properties: disconnect_props(),
        }));
        v.push(Packet::Disconnect(Disconnect { reason_code: 0, properties: disconnect_props() }));

        // AUTH
        v.push(Packet::Auth(Auth::default()));
        v.push(Packet::Auth(Auth { reason_code: reason::CONTINUE_AUTHENTICATION, properties: Properties::default() }));
        v.push(Packet::Auth(Auth { reason_code: reason::CONTINUE_AUTHENTICATION, properties: auth_props() }));
    }
    v
}

/// Tiny deterministic PRNG (xorshift64*), so the garbage tests need no
/// dependencies and always see the same inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}
