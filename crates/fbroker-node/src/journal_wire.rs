//! The wire form of a persistence journal batch as it crosses to JS: one
//! byte buffer instead of an object per op and per message.
//!
//! Building JS objects through N-API costs a property lookup and a map
//! transition per field; for a batch of queued publishes that was most of
//! the main thread's time. JS decodes this buffer with plain reads
//! (`packages/fbroker/src/persistence/journalWire.ts`, which documents the
//! same format; keep the two in step).
//!
//! All integers are little-endian. `str` is a u32 byte length and UTF-8.
//!
//! ```text
//! u8  version (1)
//! u32 client count, then each client id: str
//! u32 message count, then each message:
//!     str id (decimal u64), str topic, u8 qos, u8 retain, u32 payload length, payload
//! u32 op count, then each op: u8 kind, then
//!     1 session.save     u32 client, u8 connected, u8 has expiry, [f64 expiry secs],
//!                        u8 has will, [str topic, u8 qos, u8 retain, u32 length, payload]
//!     2 session.delete   u32 client
//!     3 sub.add          u32 client, str filter, u8 qos
//!     4 sub.remove       u32 client, str filter
//!     5 queue.push       u32 client, u32 message, u8 delivery qos, u8 retain
//!     6 queue.remove     u32 client, u32 message
//!     7 inflight.set     u32 client, u16 packet id, u8 stage (0 puback, 1 pubrec, 2 pubcomp),
//!                        u32 message (NO_MESSAGE: none), u8 delivery qos, u8 retain
//!     8 inflight.clear   u32 client, u16 packet id
//!     9 incoming.add     u32 client, u16 packet id
//!     10 incoming.remove u32 client, u16 packet id
//!     11 retained.set    u32 message
//!     12 retained.delete str topic
//! ```

use fbroker_core::message::SharedMessage;
use fbroker_core::persistence::{PersistBatch, PersistOp, WillRecord};
use fbroker_core::session::inflight::Stage;
use std::collections::HashMap;
use std::sync::Arc;

pub const VERSION: u8 = 1;
pub const NO_MESSAGE: u32 = u32::MAX;

const SESSION_SAVE: u8 = 1;
const SESSION_DELETE: u8 = 2;
const SUB_ADD: u8 = 3;
const SUB_REMOVE: u8 = 4;
const QUEUE_PUSH: u8 = 5;
const QUEUE_REMOVE: u8 = 6;
const INFLIGHT_SET: u8 = 7;
const INFLIGHT_CLEAR: u8 = 8;
const INCOMING_ADD: u8 = 9;
const INCOMING_REMOVE: u8 = 10;
const RETAINED_SET: u8 = 11;
const RETAINED_DELETE: u8 = 12;

/// Tables of the batch: each client id and each message once.
#[derive(Default)]
struct Tables<'a> {
    clients: Vec<&'a str>,
    client_index: HashMap<&'a str, u32>,
    messages: Vec<&'a SharedMessage>,
    message_index: HashMap<u64, u32>,
}

impl<'a> Tables<'a> {
    fn client(&mut self, id: &'a Arc<str>) -> u32 {
        let next = self.clients.len() as u32;
        *self.client_index.entry(id).or_insert_with(|| {
            self.clients.push(id);
            next
        })
    }

    /// An op's kind and the index of the client it belongs to.
    fn begin(&mut self, out: &mut Vec<u8>, kind: u8, client_id: &'a Arc<str>) {
        out.push(kind);
        put_u32(out, self.client(client_id));
    }

    fn message(&mut self, msg: &'a SharedMessage) -> u32 {
        let next = self.messages.len() as u32;
        *self.message_index.entry(msg.id).or_insert_with(|| {
            self.messages.push(msg);
            next
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_bytes(out, s.as_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// `n` as a decimal `str`, without a String per message.
fn put_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    put_bytes(out, &digits[at..]);
}

fn put_u32(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn stage_code(stage: Stage) -> u8 {
    match stage {
        Stage::AwaitingPubAck => 0,
        Stage::AwaitingPubRec => 1,
        Stage::AwaitingPubComp => 2,
    }
}

fn put_will(out: &mut Vec<u8>, will: &Option<WillRecord>) {
    match will {
        None => out.push(0),
        Some(w) => {
            out.push(1);
            put_str(out, &w.topic);
            out.push(w.qos as u8);
            out.push(w.retain as u8);
            put_bytes(out, &w.payload);
        }
    }
}

/// Encodes a batch; ops keep their order.
pub fn encode(batch: &PersistBatch) -> Vec<u8> {
    let mut tables = Tables::default();
    // Ops first, into their own buffer, so the tables they fill can be written ahead of them.
    let mut ops = Vec::with_capacity(batch.ops.len() * 12);
    for op in &batch.ops {
        match op {
            PersistOp::SessionSave { client_id, connected, expiry_secs, will } => {
                tables.begin(&mut ops, SESSION_SAVE, client_id);
                ops.push(*connected as u8);
                match expiry_secs {
                    None => ops.push(0),
                    Some(secs) => {
                        ops.push(1);
                        ops.extend_from_slice(&(*secs as f64).to_le_bytes());
                    }
                }
                put_will(&mut ops, will);
            }
            PersistOp::SessionDelete { client_id } => tables.begin(&mut ops, SESSION_DELETE, client_id),
            PersistOp::SubscriptionAdd { client_id, filter, qos } => {
                tables.begin(&mut ops, SUB_ADD, client_id);
                put_str(&mut ops, filter);
                ops.push(*qos as u8);
            }
            PersistOp::SubscriptionRemove { client_id, filter } => {
                tables.begin(&mut ops, SUB_REMOVE, client_id);
                put_str(&mut ops, filter);
            }
            PersistOp::QueuePush { client_id, msg, qos, retain } => {
                tables.begin(&mut ops, QUEUE_PUSH, client_id);
                put_u32(&mut ops, tables.message(msg));
                ops.push(*qos as u8);
                ops.push(*retain as u8);
            }
            PersistOp::QueueRemove { client_id, msg } => {
                tables.begin(&mut ops, QUEUE_REMOVE, client_id);
                put_u32(&mut ops, tables.message(msg));
            }
            PersistOp::InflightSet { client_id, packet_id, stage, msg, qos, retain } => {
                tables.begin(&mut ops, INFLIGHT_SET, client_id);
                ops.extend_from_slice(&packet_id.to_le_bytes());
                ops.push(stage_code(*stage));
                let message = msg.as_ref().map_or(NO_MESSAGE, |m| tables.message(m));
                put_u32(&mut ops, message);
                ops.push(*qos as u8);
                ops.push(*retain as u8);
            }
            PersistOp::InflightClear { client_id, packet_id } | PersistOp::IncomingAdd { client_id, packet_id } | PersistOp::IncomingRemove { client_id, packet_id } => {
                let kind = match op {
                    PersistOp::InflightClear { .. } => INFLIGHT_CLEAR,
                    PersistOp::IncomingAdd { .. } => INCOMING_ADD,
                    _ => INCOMING_REMOVE,
                };
                tables.begin(&mut ops, kind, client_id);
                ops.extend_from_slice(&packet_id.to_le_bytes());
            }
            PersistOp::RetainedSet { msg } => {
                ops.push(RETAINED_SET);
                put_u32(&mut ops, tables.message(msg));
            }
            PersistOp::RetainedDelete { topic } => {
                ops.push(RETAINED_DELETE);
                put_str(&mut ops, topic);
            }
        }
    }

    let payload_bytes: usize = tables
        .messages
        .iter()
        .map(|m| m.payload.len() + m.topic.len() + 32)
        .sum();
    let client_bytes: usize = tables.clients.iter().map(|c| c.len() + 4).sum();
    let mut out = Vec::with_capacity(1 + 12 + client_bytes + payload_bytes + ops.len());
    out.push(VERSION);
    put_u32(&mut out, tables.clients.len() as u32);
    for c in &tables.clients {
        put_str(&mut out, c);
    }
    put_u32(&mut out, tables.messages.len() as u32);
    for m in &tables.messages {
        put_decimal(&mut out, m.id);
        put_str(&mut out, &m.topic);
        out.push(m.qos as u8);
        out.push(m.retain as u8);
        put_bytes(&mut out, &m.payload);
    }
    put_u32(&mut out, batch.ops.len() as u32);
    out.extend_from_slice(&ops);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use fbroker_core::message::Message;
    use fbroker_core::QoS;

    fn msg(topic: &str, payload: &'static [u8]) -> SharedMessage {
        Message::new(
            topic.into(),
            fbroker_core::bytes::Bytes::from_static(payload),
            QoS::AtLeastOnce,
            false,
        )
    }

    #[test]
    fn a_message_and_a_client_used_by_several_ops_are_written_once() {
        let client: Arc<str> = Arc::from("c1");
        let m = msg("t/1", b"hello");
        let batch = PersistBatch {
            seq: 7,
            ops: vec![
                PersistOp::QueuePush {
                    client_id: client.clone(),
                    msg: m.clone(),
                    qos: QoS::AtLeastOnce,
                    retain: false,
                },
                PersistOp::QueueRemove {
                    client_id: client.clone(),
                    msg: m.clone(),
                },
                PersistOp::InflightSet {
                    client_id: client.clone(),
                    packet_id: 9,
                    stage: Stage::AwaitingPubAck,
                    msg: Some(m.clone()),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                },
                PersistOp::InflightSet {
                    client_id: client,
                    packet_id: 9,
                    stage: Stage::AwaitingPubComp,
                    msg: None,
                    qos: QoS::ExactlyOnce,
                    retain: false,
                },
            ],
        };
        let out = encode(&batch);
        assert_eq!(out[0], VERSION);
        assert_eq!(
            u32::from_le_bytes(out[1..5].try_into().unwrap()),
            1,
            "one client"
        );
        assert_eq!(&out[5..9], &2u32.to_le_bytes());
        assert_eq!(&out[9..11], b"c1");
        assert_eq!(
            u32::from_le_bytes(out[11..15].try_into().unwrap()),
            1,
            "one message"
        );
        let id = m.id.to_string();
        let mut at = 15;
        assert_eq!(
            u32::from_le_bytes(out[at..at + 4].try_into().unwrap()) as usize,
            id.len()
        );
        at += 4;
        assert_eq!(&out[at..at + id.len()], id.as_bytes());
        at += id.len();
        assert_eq!(&out[at..at + 7], b"\x03\0\0\0t/1");
        at += 7;
        assert_eq!(&out[at..at + 2], &[1, 0], "qos 1, not retained");
        at += 2;
        assert_eq!(&out[at..at + 9], b"\x05\0\0\0hello");
        at += 9;
        assert_eq!(
            u32::from_le_bytes(out[at..at + 4].try_into().unwrap()),
            4,
            "four ops"
        );
        at += 4;
        assert_eq!(
            &out[at..at + 11],
            &[QUEUE_PUSH, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]
        );
        at += 11;
        assert_eq!(&out[at..at + 9], &[QUEUE_REMOVE, 0, 0, 0, 0, 0, 0, 0, 0]);
        at += 9;
        assert_eq!(
            &out[at..at + 14],
            &[INFLIGHT_SET, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 1, 1]
        );
        at += 14;
        assert_eq!(
            &out[at..at + 14],
            &[
                INFLIGHT_SET,
                0,
                0,
                0,
                0,
                9,
                0,
                2,
                0xff,
                0xff,
                0xff,
                0xff,
                2,
                0
            ]
        );
        assert_eq!(at + 14, out.len());
    }
}
