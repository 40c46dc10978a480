//! An application message as the router holds it: one allocation per
//! publish, shared by every subscriber queue it is fanned out to.

use bytes::Bytes;
use fbroker_codec::{QoS, Utf8Bytes};
use std::sync::Arc;

#[derive(Debug)]
pub struct Message {
    pub topic: Utf8Bytes,
    pub payload: Bytes,
    /// QoS the publisher used; each subscriber receives min(this, granted).
    pub qos: QoS,
    pub retain: bool,
}

pub type SharedMessage = Arc<Message>;

impl Message {
    pub fn new(topic: Utf8Bytes, payload: Bytes, qos: QoS, retain: bool) -> SharedMessage {
        Arc::new(Message { topic, payload, qos, retain })
    }
}
