//! The bounded queue of messages waiting for a client: messages published
//! while it is offline, and messages beyond its in-flight window while it is
//! online. Bounded by count and by payload bytes; what does not fit is
//! dropped by the configured policy and counted.

use crate::config::QueueDropPolicy;
use crate::message::SharedMessage;
use fbroker_codec::QoS;
use std::collections::VecDeque;

#[derive(Debug, Clone)]
pub struct Queued {
    pub msg: SharedMessage,
    /// Delivery QoS: min(publish QoS, granted QoS).
    pub qos: QoS,
    /// RETAIN flag on delivery: set only for retained messages sent because
    /// of a new subscription [MQTT-3.3.1-8], [MQTT-3.3.1-9].
    pub retain: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct QueueLimits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub policy: QueueDropPolicy,
}

#[derive(Debug, Default)]
pub struct MessageQueue {
    items: VecDeque<Queued>,
    bytes: usize,
    /// Messages this queue discarded because of its limits.
    pub dropped: u64,
}

pub enum PushOutcome {
    Queued,
    /// Queued after discarding this many older messages.
    QueuedAfterDropping(u64),
    /// The new message was discarded.
    Rejected,
}

impl MessageQueue {
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn bytes(&self) -> usize {
        self.bytes
    }
    pub fn front(&self) -> Option<&Queued> {
        self.items.front()
    }
    pub fn pop_front(&mut self) -> Option<Queued> {
        let q = self.items.pop_front()?;
        self.bytes -= q.msg.payload.len();
        Some(q)
    }

    fn over(&self, limits: &QueueLimits, extra_count: usize, extra_bytes: usize) -> bool {
        (limits.max_messages != 0 && self.items.len() + extra_count > limits.max_messages)
            || (limits.max_bytes != 0 && self.bytes + extra_bytes > limits.max_bytes)
    }

    pub fn push(&mut self, item: Queued, limits: &QueueLimits) -> PushOutcome {
        self.push_reporting(item, limits, |_| {})
    }

    /// `push`, calling `evicted` with each message the drop-oldest policy
    /// discards to make room.
    pub fn push_reporting(&mut self, item: Queued, limits: &QueueLimits, mut evicted: impl FnMut(&Queued)) -> PushOutcome {
        let size = item.msg.payload.len();
        if limits.max_bytes != 0 && size > limits.max_bytes {
            // Could never fit, whatever the policy.
            self.dropped += 1;
            return PushOutcome::Rejected;
        }
        if !self.over(limits, 1, size) {
            self.bytes += size;
            self.items.push_back(item);
            return PushOutcome::Queued;
        }
        match limits.policy {
            QueueDropPolicy::DropNew => {
                self.dropped += 1;
                PushOutcome::Rejected
            }
            QueueDropPolicy::DropOldest => {
                let mut count = 0;
                while self.over(limits, 1, size) {
                    let Some(old) = self.pop_front() else { break };
                    evicted(&old);
                    count += 1;
                }
                self.dropped += count;
                self.bytes += size;
                self.items.push_back(item);
                PushOutcome::QueuedAfterDropping(count)
            }
        }
    }

    pub fn clear(&mut self) {
        self.items.clear();
        self.bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use bytes::Bytes;

    fn item(n: u8, size: usize) -> Queued {
        Queued {
            msg: Message::new("t".into(), Bytes::from(vec![n; size]), QoS::AtLeastOnce, false),
            qos: QoS::AtLeastOnce,
            retain: false,
        }
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let limits = QueueLimits { max_messages: 3, max_bytes: 0, policy: QueueDropPolicy::DropOldest };
        let mut q = MessageQueue::default();
        for n in 0..5 {
            q.push(item(n, 1), &limits);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped, 2);
        assert_eq!(q.front().unwrap().msg.payload[0], 2);
    }

    #[test]
    fn drop_new_keeps_the_oldest() {
        let limits = QueueLimits { max_messages: 3, max_bytes: 0, policy: QueueDropPolicy::DropNew };
        let mut q = MessageQueue::default();
        for n in 0..5 {
            q.push(item(n, 1), &limits);
        }
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped, 2);
        assert_eq!(q.front().unwrap().msg.payload[0], 0);
    }

    #[test]
    fn byte_limit_evicts_until_it_fits() {
        let limits = QueueLimits { max_messages: 0, max_bytes: 10, policy: QueueDropPolicy::DropOldest };
        let mut q = MessageQueue::default();
        q.push(item(0, 4), &limits);
        q.push(item(1, 4), &limits);
        q.push(item(2, 6), &limits);
        assert_eq!(q.len(), 2);
        assert_eq!(q.bytes(), 10);
        assert!(matches!(q.push(item(3, 11), &limits), PushOutcome::Rejected));
        assert_eq!(q.dropped, 2);
    }
}
