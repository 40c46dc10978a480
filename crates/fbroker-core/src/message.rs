//! An application message as the router holds it: one allocation per
//! publish, shared by every subscriber queue it is fanned out to.

use bytes::Bytes;
use fbroker_codec::{QoS, Utf8Bytes};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};

#[derive(Debug)]
pub struct Message {
    /// Names the message in the persistence store, where one payload is
    /// kept for every queue that holds it. Unique across restarts.
    pub id: u64,
    pub topic: Utf8Bytes,
    pub payload: Bytes,
    /// QoS the publisher used; each subscriber receives min(this, granted).
    pub qos: QoS,
    pub retain: bool,
}

pub type SharedMessage = Arc<Message>;

/// Ids start from the clock at first use (milliseconds << 20), so a
/// restarted broker never reuses the ids of messages it stored before.
fn next_id() -> u64 {
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let millis = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        AtomicU64::new(millis << 20)
    });
    next.fetch_add(1, Relaxed)
}

impl Message {
    pub fn new(topic: Utf8Bytes, payload: Bytes, qos: QoS, retain: bool) -> SharedMessage {
        Arc::new(Message { id: next_id(), topic, payload, qos, retain })
    }

    /// A message read back from the persistence store, with its stored id.
    pub fn restored(id: u64, topic: Utf8Bytes, payload: Bytes, qos: QoS, retain: bool) -> SharedMessage {
        Arc::new(Message { id, topic, payload, qos, retain })
    }
}
