//! Outbound QoS 1 and 2 messages that were sent and not yet fully
//! acknowledged, in the order they were first sent (MQTT 3.1.1 4.4 and 4.6:
//! on reconnect they are re-sent in that order).

use crate::message::SharedMessage;
use fbroker_codec::QoS;
use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    AwaitingPubAck,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    AwaitingPubRec,
    /// PUBREL sent, waiting for PUBCOMP.
    AwaitingPubComp,
}

#[derive(Debug, Clone)]
pub struct InflightEntry {
    pub packet_id: u16,
    pub msg: SharedMessage,
    pub qos: QoS,
    pub retain: bool,
    pub stage: Stage,
}

/// The window is small (max_inflight_messages, 20 by default), so a
/// VecDeque with linear look-up beats a map and keeps the send order.
#[derive(Debug, Default)]
pub struct OutboundInflight {
    entries: VecDeque<InflightEntry>,
    last_packet_id: u16,
}

impl OutboundInflight {
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &InflightEntry> {
        self.entries.iter()
    }

    /// Next packet id not in use by an in-flight message [MQTT-2.3.1-2].
    pub fn allocate_packet_id(&mut self) -> u16 {
        loop {
            self.last_packet_id = self.last_packet_id.wrapping_add(1);
            if self.last_packet_id == 0 {
                self.last_packet_id = 1;
            }
            let id = self.last_packet_id;
            if !self.entries.iter().any(|e| e.packet_id == id) {
                return id;
            }
        }
    }

    pub fn push(&mut self, entry: InflightEntry) {
        self.entries.push_back(entry);
    }

    /// An entry read back from the persistence store; later ids continue
    /// after it.
    pub fn restore(&mut self, entry: InflightEntry) {
        self.last_packet_id = self.last_packet_id.max(entry.packet_id);
        self.entries.push_back(entry);
    }

    fn position(&self, packet_id: u16, stage: Stage) -> Option<usize> {
        self.entries.iter().position(|e| e.packet_id == packet_id && e.stage == stage)
    }

    /// PUBACK: completes a QoS 1 delivery; returns the completed entry.
    pub fn puback(&mut self, packet_id: u16) -> Option<InflightEntry> {
        self.position(packet_id, Stage::AwaitingPubAck).and_then(|i| self.entries.remove(i))
    }

    /// PUBREC: the message is now owned by the receiver; only the PUBREL
    /// handshake remains [MQTT-4.3.3-1].
    pub fn pubrec(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id, Stage::AwaitingPubRec) {
            Some(i) => {
                self.entries[i].stage = Stage::AwaitingPubComp;
                true
            }
            None => false,
        }
    }

    /// PUBCOMP: completes a QoS 2 delivery; returns the completed entry.
    pub fn pubcomp(&mut self, packet_id: u16) -> Option<InflightEntry> {
        self.position(packet_id, Stage::AwaitingPubComp).and_then(|i| self.entries.remove(i))
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;

    fn entry(inflight: &mut OutboundInflight, qos: QoS) -> u16 {
        let packet_id = inflight.allocate_packet_id();
        let stage = if qos == QoS::AtLeastOnce { Stage::AwaitingPubAck } else { Stage::AwaitingPubRec };
        let msg = Message::new("t".into(), Bytes::new(), qos, false);
        inflight.push(InflightEntry { packet_id, msg, qos, retain: false, stage });
        packet_id
    }

    #[test]
    fn mqtt_2_3_1_2_packet_ids_are_unique_among_inflight_and_skip_zero() {
        let mut inflight = OutboundInflight { last_packet_id: u16::MAX - 1, ..Default::default() };
        let a = entry(&mut inflight, QoS::AtLeastOnce);
        let b = entry(&mut inflight, QoS::AtLeastOnce);
        assert_eq!((a, b), (u16::MAX, 1), "wraps past 0");
        inflight.last_packet_id = 0;
        assert_eq!(inflight.allocate_packet_id(), 2, "1 is in flight, so it is skipped");
    }

    #[test]
    fn qos2_flow_moves_through_its_stages_in_order() {
        let mut inflight = OutboundInflight::default();
        let id = entry(&mut inflight, QoS::ExactlyOnce);
        assert!(inflight.pubcomp(id).is_none(), "PUBCOMP before PUBREC does not complete");
        assert!(inflight.puback(id).is_none(), "PUBACK does not complete a QoS 2 message");
        assert!(inflight.pubrec(id));
        assert_eq!(inflight.iter().next().unwrap().stage, Stage::AwaitingPubComp);
        assert!(inflight.pubcomp(id).is_some());
        assert!(inflight.is_empty());
    }

    #[test]
    fn puback_removes_only_its_own_message() {
        let mut inflight = OutboundInflight::default();
        let a = entry(&mut inflight, QoS::AtLeastOnce);
        let b = entry(&mut inflight, QoS::AtLeastOnce);
        assert!(inflight.puback(b).is_some());
        assert!(inflight.puback(b).is_none(), "a second PUBACK is ignored");
        assert_eq!(inflight.iter().map(|e| e.packet_id).collect::<Vec<_>>(), vec![a]);
    }
}
