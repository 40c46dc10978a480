//! Partial input: `decode` reports exactly how many bytes it still needs and
//! never consumes anything until a whole packet is there.

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use fbroker_codec::*;

/// What `needed` must be when only `have` bytes of `packet` have arrived.
fn expected_needed(packet: &[u8], have: usize) -> usize {
    if have == 0 {
        return 2;
    }
    let varint_len = packet[1..].iter().position(|b| b & 0x80 == 0).unwrap() + 1;
    if have < 1 + varint_len {
        1
    } else {
        packet.len() - have
    }
}

fn feed_byte_at_a_time(bytes: &[u8], version: ProtocolVersion) -> Packet {
    let mut buf = BytesMut::new();
    for (i, &b) in bytes.iter().enumerate() {
        match decode(&mut buf, version, usize::MAX).unwrap() {
            Decoded::Incomplete { needed } => {
                assert_eq!(needed, expected_needed(bytes, i), "after {i} of {} bytes", bytes.len());
                assert!(needed >= 1);
            }
            Decoded::Packet(p) => panic!("packet {p:?} decoded from {i} of {} bytes", bytes.len()),
        }
        assert_eq!(buf.len(), i, "nothing consumed while incomplete");
        buf.extend_from_slice(&[b]);
    }
    let Decoded::Packet(p) = decode(&mut buf, version, usize::MAX).unwrap() else { panic!("complete packet") };
    assert!(buf.is_empty());
    p
}

#[test]
fn byte_at_a_time_every_sample_packet() {
    for version in ALL_VERSIONS {
        for p in sample_packets(version) {
            let bytes = encode_vec(&p, version);
            if bytes.len() > 5_000 {
                continue; // covered by feeding_exactly_what_is_needed
            }
            assert_eq!(feed_byte_at_a_time(&bytes, version), p);
        }
    }
}

#[test]
fn feeding_exactly_what_is_needed() {
    // Following `needed` must reach the packet in a handful of steps even
    // with a 4-byte remaining length.
    for version in ALL_VERSIONS {
        for size in [0, 200, 20_000, 2_100_000] {
            let p = Packet::Publish(Publish {
                dup: false,
                qos: QoS::ExactlyOnce,
                retain: false,
                topic: "big/payload".into(),
                packet_id: Some(3),
                payload: Bytes::from(vec![7u8; size]),
                properties: Properties::default(),
            });
            let bytes = encode_vec(&p, version);
            let mut buf = BytesMut::new();
            let mut fed = 0;
            let mut steps = 0;
            let got = loop {
                match decode(&mut buf, version, usize::MAX).unwrap() {
                    Decoded::Packet(q) => break q,
                    Decoded::Incomplete { needed } => {
                        assert_eq!(needed, expected_needed(&bytes, fed));
                        buf.extend_from_slice(&bytes[fed..fed + needed]);
                        fed += needed;
                        steps += 1;
                    }
                }
            };
            assert_eq!(got, p);
            assert!(steps <= 6, "{steps} steps");
        }
    }
}

#[test]
fn two_packets_back_to_back() {
    for version in ALL_VERSIONS {
        let a = Packet::Publish(Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "a".into(),
            packet_id: Some(1),
            payload: Bytes::from_static(b"first"),
            properties: Properties::default(),
        });
        let b = Packet::PingReq;
        let mut buf = BytesMut::new();
        encode(&a, version, &mut buf).unwrap();
        encode(&b, version, &mut buf).unwrap();
        // Half of a third packet.
        let c = encode_vec(&Packet::PubAck(Ack::new(1)), version);
        buf.extend_from_slice(&c[..3]);

        assert_eq!(decode(&mut buf, version, usize::MAX).unwrap(), Decoded::Packet(a));
        assert_eq!(decode(&mut buf, version, usize::MAX).unwrap(), Decoded::Packet(b));
        assert_eq!(decode(&mut buf, version, usize::MAX).unwrap(), Decoded::Incomplete { needed: c.len() - 3 });
        buf.extend_from_slice(&c[3..]);
        assert_eq!(decode(&mut buf, version, usize::MAX).unwrap(), Decoded::Packet(Packet::PubAck(Ack::new(1))));
        assert!(buf.is_empty());
    }
}

#[test]
fn byte_at_a_time_stream_of_packets() {
    // A whole session's worth of packets fed one byte at a time through one buffer.
    for version in ALL_VERSIONS {
        let packets: Vec<Packet> =
            sample_packets(version).into_iter().filter(|p| encoded_len(p, version) < 5_000).collect();
        let mut stream = Vec::new();
        for p in &packets {
            stream.extend(encode_vec(p, version));
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for &b in &stream {
            buf.extend_from_slice(&[b]);
            while let Decoded::Packet(p) = decode(&mut buf, version, usize::MAX).unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got, packets);
        assert!(buf.is_empty());
    }
}

#[test]
fn incomplete_does_not_consume() {
    let mut buf = BytesMut::from(&[0x30, 0x05, 0x00, 0x01][..]);
    assert_eq!(decode(&mut buf, V311, 1024).unwrap(), Decoded::Incomplete { needed: 3 });
    assert_eq!(&buf[..], &[0x30, 0x05, 0x00, 0x01]);
}

#[test]
fn max_packet_size_is_the_whole_packet() {
    let bytes = encode_vec(&Packet::PubAck(Ack::new(1)), V311); // 4 bytes
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, V311, 4).unwrap(), Decoded::Packet(Packet::PubAck(Ack::new(1))));
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decode(&mut buf, V311, 3), Err(DecodeError::PacketTooLarge { size: 4, max: 3 }));
}
