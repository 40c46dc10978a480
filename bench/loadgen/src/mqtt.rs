//! Minimal MQTT 3.1.1 wire format: just what the load generator sends
//! (CONNECT, SUBSCRIBE, PUBLISH QoS 0/1, PUBACK, PINGREQ, DISCONNECT) and a
//! streaming decoder for what brokers send back (CONNACK, SUBACK, PUBLISH,
//! PUBACK, PINGRESP). Everything else is surfaced as `Packet::Other`.

use anyhow::{bail, Result};

pub const PINGREQ: [u8; 2] = [0xC0, 0x00];
pub const DISCONNECT: [u8; 2] = [0xE0, 0x00];

/// Bytes at the start of every payload: 8-byte monotonic timestamp (ns, LE)
/// followed by an 8-byte message id (LE, see [`message_id`]).
pub const PAYLOAD_HEADER: usize = 16;

/// Packs step (phase), publisher index and per-publisher sequence into the
/// 8-byte id carried after the timestamp.
#[inline]
pub fn message_id(step: u16, publisher: u16, seq: u32) -> u64 {
    ((step as u64) << 48) | ((publisher as u64) << 32) | seq as u64
}

#[inline]
pub fn id_step(id: u64) -> u16 {
    (id >> 48) as u16
}

fn put_remaining_length(out: &mut Vec<u8>, mut len: usize) {
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

/// CONNECT, no will, no credentials; clean session or not (`clean = false`:
/// the broker keeps the session, its subscriptions and its queue after the
/// connection ends).
pub fn connect_session(client_id: &str, keepalive_secs: u16, clean: bool) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + client_id.len());
    put_str(&mut body, b"MQTT");
    body.push(4); // protocol level 3.1.1
    body.push(if clean { 0x02 } else { 0x00 }); // connect flags: clean session bit
    body.extend_from_slice(&keepalive_secs.to_be_bytes());
    put_str(&mut body, client_id.as_bytes());
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0x10);
    put_remaining_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

/// SUBSCRIBE to one filter.
pub fn subscribe(packet_id: u16, filter: &str, qos: u8) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + filter.len());
    body.extend_from_slice(&packet_id.to_be_bytes());
    put_str(&mut body, filter.as_bytes());
    body.push(qos);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(0x82);
    put_remaining_length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

#[inline]
pub fn puback(packet_id: u16) -> [u8; 4] {
    let p = packet_id.to_be_bytes();
    [0x40, 0x02, p[0], p[1]]
}

/// A PUBLISH frame encoded once, then stamped in place for every send.
///
/// `buf` holds the same frame `slots` times back to back, so a batch of `n`
/// messages is `buf[..n * frame_len]`, written with one syscall. Over
/// WebSocket each frame is one masked binary WebSocket frame around one
/// PUBLISH (masked once here with the fixed key; stamps are masked as written).
pub struct PublishFrames {
    pub buf: Vec<u8>,
    pub frame_len: usize,
    /// Offset of the packet identifier inside a frame (QoS 1 only).
    pid_off: Option<usize>,
    /// Offset of the payload inside a frame.
    payload_off: usize,
    /// WebSocket: bytes of the frame header before the MQTT packet (the mask
    /// is indexed from there).
    ws_hdr: usize,
    ws: bool,
    pub slots: usize,
}

impl PublishFrames {
    pub fn new(topic: &str, qos: u8, payload_len: usize, slots: usize, ws: bool) -> Self {
        assert!(payload_len >= PAYLOAD_HEADER);
        assert!(qos <= 1);
        let mut var = Vec::new();
        put_str(&mut var, topic.as_bytes());
        let pid_rel = if qos > 0 {
            let at = var.len();
            var.extend_from_slice(&[0, 0]);
            Some(at)
        } else {
            None
        };
        let payload_rel = var.len();
        let mut packet = vec![0x30 | (qos << 1)];
        put_remaining_length(&mut packet, var.len() + payload_len);
        let header_len = packet.len();
        packet.extend_from_slice(&var);
        // Padding after the 16-byte header: a recognisable, compressible filler.
        packet.extend(std::iter::repeat(b'x').take(payload_len));
        let (frame, ws_hdr) = if ws {
            let f = crate::transport::ws_frame(&packet);
            let h = f.len() - packet.len();
            (f, h)
        } else {
            (packet, 0)
        };
        let frame_len = frame.len();
        let mut buf = Vec::with_capacity(frame_len * slots);
        for _ in 0..slots {
            buf.extend_from_slice(&frame);
        }
        PublishFrames {
            buf,
            frame_len,
            pid_off: pid_rel.map(|p| p + header_len),
            payload_off: payload_rel + header_len,
            ws_hdr,
            ws,
            slots,
        }
    }

    /// Writes `bytes` at offset `rel` of slot `base`'s MQTT packet.
    #[inline(always)]
    fn put<const N: usize>(&mut self, base: usize, rel: usize, bytes: [u8; N]) {
        let at = base + self.ws_hdr + rel;
        let dst = &mut self.buf[at..at + N];
        if self.ws {
            let m = crate::transport::WS_MASK;
            for k in 0..N {
                dst[k] = bytes[k] ^ m[(rel + k) & 3];
            }
        } else {
            dst.copy_from_slice(&bytes);
        }
    }

    /// Stamps slot `i` with timestamp, message id and (QoS 1) packet id.
    #[inline]
    pub fn stamp(&mut self, i: usize, ts_ns: u64, id: u64, packet_id: u16) {
        let base = i * self.frame_len;
        if let Some(p) = self.pid_off {
            self.put(base, p, packet_id.to_be_bytes());
        }
        let o = self.payload_off;
        self.put(base, o, ts_ns.to_le_bytes());
        self.put(base, o + 8, id.to_le_bytes());
    }

    #[inline]
    pub fn batch(&self, n: usize) -> &[u8] {
        &self.buf[..n * self.frame_len]
    }
}

#[derive(Debug)]
#[allow(dead_code)] // every field is decoded; not every scenario reads every one
pub enum Packet<'a> {
    ConnAck { session_present: bool, return_code: u8 },
    SubAck { packet_id: u16, granted: &'a [u8] },
    Publish { qos: u8, dup: bool, packet_id: u16, payload: &'a [u8] },
    PubAck { packet_id: u16 },
    PingResp,
    Other { kind: u8 },
}

/// Decodes one complete packet from the front of `buf`.
/// Ok(None): not enough bytes yet. Ok(Some((packet, consumed))) otherwise.
#[inline]
pub fn parse(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let first = buf[0];
    let mut len: usize = 0;
    let mut mult: usize = 1;
    let mut i = 1;
    loop {
        if i >= buf.len() {
            return Ok(None);
        }
        if i > 4 {
            bail!("malformed remaining length");
        }
        let b = buf[i];
        len += (b & 0x7f) as usize * mult;
        mult *= 128;
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
    }
    let total = i + len;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[i..total];
    let kind = first >> 4;
    let pkt = match kind {
        2 => {
            if body.len() < 2 {
                bail!("short CONNACK");
            }
            Packet::ConnAck { session_present: body[0] & 1 == 1, return_code: body[1] }
        }
        3 => {
            let qos = (first >> 1) & 0x03;
            if body.len() < 2 {
                bail!("short PUBLISH");
            }
            let tlen = u16::from_be_bytes([body[0], body[1]]) as usize;
            let mut p = 2 + tlen;
            let mut packet_id = 0;
            if qos > 0 {
                if body.len() < p + 2 {
                    bail!("short PUBLISH");
                }
                packet_id = u16::from_be_bytes([body[p], body[p + 1]]);
                p += 2;
            }
            if body.len() < p {
                bail!("short PUBLISH");
            }
            Packet::Publish { qos, dup: first & 0x08 != 0, packet_id, payload: &body[p..] }
        }
        4 => {
            if body.len() < 2 {
                bail!("short PUBACK");
            }
            Packet::PubAck { packet_id: u16::from_be_bytes([body[0], body[1]]) }
        }
        9 => {
            if body.len() < 2 {
                bail!("short SUBACK");
            }
            Packet::SubAck { packet_id: u16::from_be_bytes([body[0], body[1]]), granted: &body[2..] }
        }
        13 => Packet::PingResp,
        k => Packet::Other { kind: k },
    };
    Ok(Some((pkt, total)))
}

/// Reads the timestamp and id from a payload written by [`PublishFrames`].
#[inline]
pub fn payload_header(payload: &[u8]) -> Option<(u64, u64)> {
    if payload.len() < PAYLOAD_HEADER {
        return None;
    }
    let ts = u64::from_le_bytes(payload[0..8].try_into().unwrap());
    let id = u64::from_le_bytes(payload[8..16].try_into().unwrap());
    Some((ts, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_roundtrip() {
        let mut f = PublishFrames::new("bench/1/x", 1, 256, 3, false);
        f.stamp(1, 12345, message_id(2, 7, 99), 513);
        let frame = &f.buf[f.frame_len..2 * f.frame_len];
        let (pkt, used) = parse(frame).unwrap().unwrap();
        assert_eq!(used, f.frame_len);
        match pkt {
            Packet::Publish { qos, packet_id, payload, .. } => {
                assert_eq!(qos, 1);
                assert_eq!(packet_id, 513);
                assert_eq!(payload.len(), 256);
                let (ts, id) = payload_header(payload).unwrap();
                assert_eq!(ts, 12345);
                assert_eq!(id_step(id), 2);
                assert_eq!(id & 0xffff_ffff, 99);
            }
            other => panic!("{other:?}"),
        }
        // Two-byte remaining length (256-byte payload) and partial input.
        assert!(parse(&frame[..frame.len() - 1]).unwrap().is_none());
        assert!(parse(&frame[..1]).unwrap().is_none());
    }

    #[test]
    fn publish_over_websocket() {
        let mut f = PublishFrames::new("bench/1/x", 1, 256, 2, true);
        f.stamp(1, 777, message_id(3, 1, 5), 9);
        let frame = &f.buf[f.frame_len..2 * f.frame_len];
        // 0x82, 126 + mask bit, 16-bit length, mask, masked packet.
        assert_eq!(frame[0], 0x82);
        assert_eq!(frame[1], 0x80 | 126);
        let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
        assert_eq!(len + 8, f.frame_len);
        let mask = &frame[4..8];
        let packet: Vec<u8> = frame[8..].iter().enumerate().map(|(i, b)| b ^ mask[i & 3]).collect();
        let (pkt, used) = parse(&packet).unwrap().unwrap();
        assert_eq!(used, packet.len());
        match pkt {
            Packet::Publish { qos, packet_id, payload, .. } => {
                assert_eq!((qos, packet_id), (1, 9));
                let (ts, id) = payload_header(payload).unwrap();
                assert_eq!(ts, 777);
                assert_eq!(id, message_id(3, 1, 5));
                assert!(payload[16..].iter().all(|&b| b == b'x'));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn control_packets() {
        let c = connect_session("abc", 60, true);
        assert_eq!(c[0], 0x10);
        assert_eq!(c[1] as usize, c.len() - 2);
        let s = subscribe(1, "bench/+/x", 0);
        assert_eq!(&s[..2], &[0x82, (s.len() - 2) as u8]);
        let (p, n) = parse(&[0x20, 0x02, 0x00, 0x00, 0x90]).unwrap().unwrap();
        assert_eq!(n, 4);
        assert!(matches!(p, Packet::ConnAck { session_present: false, return_code: 0 }));
        let (p, _) = parse(&[0x20, 0x02, 0x01, 0x00]).unwrap().unwrap();
        assert!(matches!(p, Packet::ConnAck { session_present: true, return_code: 0 }));
        assert_eq!(connect_session("abc", 60, false)[9], 0x00);
        assert_eq!(c[9], 0x02);
        let (p, _) = parse(&[0x90, 0x03, 0x00, 0x01, 0x00]).unwrap().unwrap();
        assert!(matches!(p, Packet::SubAck { packet_id: 1, granted: [0] }));
        let ack = puback(7);
        let (p, _) = parse(&ack).unwrap().unwrap();
        assert!(matches!(p, Packet::PubAck { packet_id: 7 }));
    }
}
