//! Every packet type of every protocol level survives encode then decode,
//! and `encoded_len` matches what `encode` writes.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use fbroker_codec::*;

fn round_trip_all(version: ProtocolVersion) {
    let packets = sample_packets(version);
    let mut kinds = std::collections::HashSet::new();
    for p in &packets {
        assert_round_trip(p, version);
        kinds.insert(std::mem::discriminant(p));
    }
    let expected = if version.is_v5() { 15 } else { 14 };
    assert_eq!(kinds.len(), expected, "every packet type of {version:?} is covered");
}

#[test]
fn round_trip_every_packet_v3_1() {
    round_trip_all(V31);
}

#[test]
fn round_trip_every_packet_v3_1_1() {
    round_trip_all(V311);
}

#[test]
fn round_trip_every_packet_v5() {
    round_trip_all(V5);
}

#[test]
fn all_samples_back_to_back_in_one_buffer() {
    for version in ALL_VERSIONS {
        let packets = sample_packets(version);
        let mut buf = BytesMut::new();
        for p in &packets {
            encode(p, version, &mut buf).unwrap();
        }
        for p in &packets {
            match decode(&mut buf, version, usize::MAX).unwrap() {
                Decoded::Packet(q) => assert_eq!(&q, p),
                other => panic!("{other:?}"),
            }
        }
        assert!(buf.is_empty());
        assert_eq!(decode(&mut buf, version, usize::MAX).unwrap(), Decoded::Incomplete { needed: 2 });
    }
}

#[test]
fn connect_is_encoded_for_its_own_protocol() {
    // The connection version passed to encode/decode does not matter for CONNECT.
    for own in ALL_VERSIONS {
        let p = sample_packets(own).into_iter().find(|p| matches!(p, Packet::Connect(c) if c.will.is_some())).unwrap();
        for conn in ALL_VERSIONS {
            let bytes = encode_vec(&p, conn);
            assert_eq!(encoded_len(&p, conn), bytes.len());
            for dec in ALL_VERSIONS {
                assert_eq!(decode_one(&bytes, dec).unwrap(), p);
            }
        }
    }
}

#[test]
fn v3_encoders_ignore_properties_and_v5_fields() {
    for version in [V31, V311] {
        for p5 in sample_packets(V5) {
            if matches!(p5, Packet::Auth(_)) {
                let mut out = BytesMut::new();
                assert_eq!(
                    encode(&p5, version, &mut out),
                    Err(EncodeError::UnsupportedPacket { packet: "AUTH", version })
                );
                assert!(out.is_empty());
                continue;
            }
            if let Packet::Connect(_) = p5 {
                continue; // CONNECT carries its own version.
            }
            let Some(mut expected) = strip_v5(p5.clone()) else { continue };
            if let (Packet::ConnAck(c), ProtocolVersion::V3_1) = (&mut expected, version) {
                c.session_present = false; // not in MQTT 3.1
            }
            assert_eq!(round_trip(&p5, version), expected);
        }
    }
}

/// What a 3.x round trip keeps of a 5.0 packet (`None` when the 5.0 packet
/// uses values that have no 3.x meaning, such as 5.0 reason codes).
fn strip_v5(p: Packet) -> Option<Packet> {
    let none = Properties::default;
    let ack = |a: Ack| Ack { packet_id: a.packet_id, reason_code: 0, properties: none() };
    Some(match p {
        Packet::ConnAck(c) if c.code > connack_code::NOT_AUTHORIZED => return None,
        Packet::ConnAck(c) => Packet::ConnAck(ConnAck { properties: none(), ..c }),
        // An empty topic relies on a topic alias, which 3.x lacks.
        Packet::Publish(x) if x.topic.is_empty() => return None,
        Packet::Publish(x) => Packet::Publish(Publish { properties: none(), ..x }),
        Packet::PubAck(a) => Packet::PubAck(ack(a)),
        Packet::PubRec(a) => Packet::PubRec(ack(a)),
        Packet::PubRel(a) => Packet::PubRel(ack(a)),
        Packet::PubComp(a) => Packet::PubComp(ack(a)),
        Packet::Subscribe(s) => Packet::Subscribe(Subscribe {
            properties: none(),
            filters: s
                .filters
                .into_iter()
                .map(|f| SubscribeFilter {
                    filter: f.filter,
                    options: SubscriptionOptions { qos: f.options.qos, ..SubscriptionOptions::default() },
                })
                .collect(),
            ..s
        }),
        Packet::SubAck(s) if s.return_codes.iter().any(|&c| !matches!(c, 0 | 1 | 2 | 0x80)) => return None,
        Packet::SubAck(s) => Packet::SubAck(SubAck { properties: none(), ..s }),
        Packet::Unsubscribe(u) => Packet::Unsubscribe(Unsubscribe { properties: none(), ..u }),
        Packet::UnsubAck(u) => Packet::UnsubAck(UnsubAck { properties: none(), reason_codes: vec![], ..u }),
        Packet::Disconnect(_) => Packet::Disconnect(Disconnect::default()),
        other => other,
    })
}

#[test]
fn v5_short_forms_are_used() {
    // PUBACK/PUBREC/PUBREL/PUBCOMP: reason 0, no properties -> remaining length 2.
    assert_eq!(encode_vec(&Packet::PubAck(Ack::new(7)), V5), [0x40, 0x02, 0x00, 0x07]);
    assert_eq!(encode_vec(&Packet::PubRel(Ack::new(7)), V5), [0x62, 0x02, 0x00, 0x07]);
    // Reason only -> remaining length 3.
    let a = Ack { packet_id: 7, reason_code: 0x10, properties: Properties::default() };
    assert_eq!(encode_vec(&Packet::PubRec(a), V5), [0x50, 0x03, 0x00, 0x07, 0x10]);
    // Properties force the full form even with reason 0.
    let a = Ack {
        packet_id: 7,
        reason_code: 0,
        properties: Properties { reason_string: Some("x".into()), ..Properties::default() },
    };
    assert_eq!(encode_vec(&Packet::PubComp(a), V5), [0x70, 0x08, 0x00, 0x07, 0x00, 0x04, 0x1F, 0x00, 0x01, b'x']);
    // DISCONNECT and AUTH: remaining length 0.
    assert_eq!(encode_vec(&Packet::Disconnect(Disconnect::default()), V5), [0xE0, 0x00]);
    assert_eq!(encode_vec(&Packet::Auth(Auth::default()), V5), [0xF0, 0x00]);
    let d = Disconnect { reason_code: 0x8E, properties: Properties::default() };
    assert_eq!(encode_vec(&Packet::Disconnect(d), V5), [0xE0, 0x01, 0x8E]);
    let a = Auth { reason_code: 0x18, properties: Properties::default() };
    assert_eq!(encode_vec(&Packet::Auth(a), V5), [0xF0, 0x02, 0x18, 0x00]);
}

#[test]
fn encode_publish_matches_encode() {
    for version in ALL_VERSIONS {
        for p in sample_packets(version) {
            let Packet::Publish(pb) = &p else { continue };
            let mut fast = BytesMut::new();
            encode_publish(
                &mut fast,
                version,
                &pb.topic,
                &pb.payload,
                pb.qos,
                pb.retain,
                pb.dup,
                pb.packet_id.unwrap_or(0),
                Some(&pb.properties),
            );
            assert_eq!(fast.to_vec(), encode_vec(&p, version));
            if pb.properties.is_empty() {
                let mut none = BytesMut::new();
                encode_publish(
                    &mut none,
                    version,
                    &pb.topic,
                    &pb.payload,
                    pb.qos,
                    pb.retain,
                    pb.dup,
                    pb.packet_id.unwrap_or(0),
                    None,
                );
                assert_eq!(none, fast);
            }
        }
    }
}

#[test]
fn encode_publish_reserves_once() {
    let mut out = BytesMut::new();
    let payload = vec![1u8; 10_000];
    encode_publish(&mut out, V5, "t/1", &payload, QoS::AtLeastOnce, false, false, 9, Some(&publish_props()));
    let expected = encoded_len(
        &Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t/1".into(),
            packet_id: Some(9),
            payload: Bytes::from(payload.clone()),
            properties: publish_props(),
        }),
        V5,
    );
    assert_eq!(out.len(), expected);
    // One reservation of the exact size up front; the writer never grows the buffer.
    assert!(out.capacity() >= expected && out.capacity() < expected + 64, "capacity {}", out.capacity());
}

#[test]
fn decoded_publish_is_zero_copy() {
    for version in ALL_VERSIONS {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "zero/copy".into(),
            packet_id: Some(5),
            payload: Bytes::from_static(b"payload bytes"),
            properties: if version.is_v5() { publish_props() } else { Properties::default() },
        });
        let mut buf = BytesMut::new();
        encode(&p, version, &mut buf).unwrap();
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        let Decoded::Packet(Packet::Publish(d)) = decode(&mut buf, version, usize::MAX).unwrap() else { panic!() };
        assert!(range.contains(&(d.payload.as_ptr() as usize)), "payload is a slice of the frame");
        assert!(range.contains(&(d.topic.as_bytes().as_ptr() as usize)), "topic is a slice of the frame");
        if version.is_v5() {
            let corr = d.properties.correlation_data.as_ref().unwrap();
            assert!(range.contains(&(corr.as_ptr() as usize)), "binary properties are slices of the frame");
        }
    }
}

#[test]
fn encoded_len_matches_for_multi_byte_remaining_lengths() {
    for size in [0, 120, 121, 122, 123, 16_370, 16_380, 16_383, 16_384, 2_097_140, 2_097_152] {
        let p = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtMostOnce,
            retain: false,
            topic: "t".into(),
            packet_id: None,
            payload: Bytes::from(vec![0u8; size]),
            properties: Properties::default(),
        });
        for version in ALL_VERSIONS {
            assert_round_trip(&p, version);
        }
    }
}

#[test]
fn encode_errors_leave_output_untouched() {
    let mut out = BytesMut::from(&b"prefix"[..]);
    let long = "x".repeat(65_536);
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: long.as_str().into(),
        packet_id: None,
        payload: Bytes::new(),
        properties: Properties::default(),
    });
    assert_eq!(encode(&p, V311, &mut out), Err(EncodeError::StringTooLong(65_536)));
    assert_eq!(&out[..], b"prefix");

    // A too-long string property is only seen half way through writing.
    let p = Packet::PubAck(Ack {
        packet_id: 1,
        reason_code: 0,
        properties: Properties { reason_string: Some(long.clone()), ..Properties::default() },
    });
    assert_eq!(encode(&p, V5, &mut out), Err(EncodeError::StringTooLong(65_536)));
    assert_eq!(&out[..], b"prefix");

    let p = Packet::Connect(Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 0,
        client_id: "c".into(),
        will: None,
        username: None,
        password: Some(Bytes::from(vec![0; 70_000])),
        properties: Properties::default(),
    });
    assert_eq!(encode(&p, V311, &mut out), Err(EncodeError::BinaryTooLong(70_000)));
    assert_eq!(&out[..], b"prefix");

    let p = Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![SubscribeFilter { filter: "a".into(), options: SubscriptionOptions::default() }],
        properties: Properties { subscription_identifiers: vec![268_435_456], ..Properties::default() },
    });
    assert_eq!(encode(&p, V5, &mut out), Err(EncodeError::InvalidSubscriptionIdentifier(268_435_456)));
    assert_eq!(&out[..], b"prefix");
}

#[test]
fn encode_rejects_publish_packet_id_mismatch() {
    let mut p = Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "t".into(),
        packet_id: None,
        payload: Bytes::new(),
        properties: Properties::default(),
    };
    let mut out = BytesMut::new();
    assert!(matches!(encode(&Packet::Publish(p.clone()), V311, &mut out), Err(EncodeError::InvalidPacket(_))));
    p.qos = QoS::AtMostOnce;
    p.packet_id = Some(1);
    assert!(matches!(encode(&Packet::Publish(p), V311, &mut out), Err(EncodeError::InvalidPacket(_))));
    assert!(out.is_empty());
}

#[test]
fn encode_rejects_packets_over_the_remaining_length_limit() {
    let p = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtMostOnce,
        retain: false,
        topic: "t".into(),
        packet_id: None,
        payload: Bytes::from(vec![0u8; MAX_REMAINING_LENGTH - 2]),
        properties: Properties::default(),
    });
    let mut out = BytesMut::new();
    assert_eq!(encode(&p, V311, &mut out), Err(EncodeError::PacketTooLarge(MAX_REMAINING_LENGTH + 1)));
    assert!(out.is_empty());
}

#[test]
#[should_panic(expected = "encode_publish")]
fn encode_publish_panics_on_unencodable_topic() {
    let mut out = BytesMut::new();
    encode_publish(&mut out, V5, &"x".repeat(70_000), b"", QoS::AtMostOnce, false, false, 0, None);
}
