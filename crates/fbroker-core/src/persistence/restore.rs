//! Rebuilding the broker from the persistence store at start: sessions
//! with their subscriptions (into the trie), queues, in-flight and inbound
//! QoS 2 state, and the retained store. Runs before any listener accepts.

use super::{Journal, WillRecord};
use crate::message::{Message, SharedMessage};
use crate::registry::Registry;
use crate::router::{Router, SubscriptionEntry};
use crate::session::inflight::{InflightEntry, Stage};
use crate::session::queue::{QueueLimits, Queued};
use crate::session::Session;
use bytes::Bytes;
use fbroker_codec::{QoS, SubscriptionOptions, Utf8Bytes};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: u64,
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

#[derive(Debug, Clone)]
pub struct StoredInflight {
    pub packet_id: u16,
    pub stage: Stage,
    /// Absent for the PUBCOMP stage.
    pub message: Option<StoredMessage>,
    pub qos: QoS,
}

#[derive(Debug, Clone, Default)]
pub struct StoredSession {
    pub client_id: String,
    /// When its last connection ended; None when the broker stopped (or
    /// crashed) while the client was connected.
    pub disconnected_at: Option<SystemTime>,
    pub will: Option<WillRecord>,
    pub subscriptions: Vec<(String, QoS)>,
    /// Delivery QoS is in each message.
    pub queue: Vec<StoredMessage>,
    pub inflight: Vec<StoredInflight>,
    pub incoming_qos2: Vec<u16>,
}

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub sessions: Vec<StoredSession>,
    pub retained: Vec<StoredMessage>,
}

pub struct Restored {
    pub sessions: usize,
    pub retained: usize,
    /// Wills of sessions whose connection was cut by the broker's own stop
    /// or crash: published once the broker runs.
    pub wills: Vec<SharedMessage>,
}

fn message(stored: StoredMessage) -> Option<SharedMessage> {
    if stored.topic.is_empty() {
        return None;
    }
    let topic = Utf8Bytes::from(stored.topic);
    Some(Message::restored(stored.id, topic, stored.payload, stored.qos, stored.retain))
}

pub fn apply(snapshot: Snapshot, registry: &Registry, router: &Router, journal: &Arc<Journal>, limits: &QueueLimits) -> Restored {
    let mut restored = Restored { sessions: 0, retained: 0, wills: Vec::new() };
    {
        let mut store = router.retained.write();
        for stored in snapshot.retained {
            if let Some(msg) = message(stored) {
                let topic = msg.topic.clone();
                store.set(topic.as_str(), msg);
                restored.retained += 1;
            }
        }
    }
    let now_wall = SystemTime::now();
    let now = Instant::now();
    for stored in snapshot.sessions {
        let session = Session::offline(Arc::from(stored.client_id.as_str()), Some(journal.clone()));
        {
            let mut st = session.state.lock();
            // Offline since its recorded disconnect, or from now when the
            // broker went down under a connected client.
            let offline_for = stored.disconnected_at.and_then(|t| now_wall.duration_since(t).ok()).unwrap_or(Duration::ZERO);
            st.disconnected_at = Some(now.checked_sub(offline_for).unwrap_or(now));
            for message_stored in stored.queue {
                let qos = message_stored.qos;
                if let Some(msg) = message(message_stored) {
                    // The stored queue already respects the limits; pushing
                    // keeps the in-memory byte count right.
                    st.queue.push(Queued { msg, qos, retain: false }, &QueueLimits { max_messages: 0, max_bytes: 0, ..*limits });
                }
            }
            for entry in stored.inflight {
                let msg = match entry.message.and_then(message) {
                    Some(msg) => msg,
                    None if entry.stage == Stage::AwaitingPubComp => Message::restored(0, Utf8Bytes::default(), Bytes::new(), entry.qos, false),
                    None => continue,
                };
                st.inflight.restore(InflightEntry { packet_id: entry.packet_id, retain: msg.retain, msg, qos: entry.qos, stage: entry.stage });
            }
            st.incoming_qos2.extend(stored.incoming_qos2);
            let mut trie = router.subscriptions.write();
            for (filter, qos) in stored.subscriptions {
                let options = SubscriptionOptions { qos, ..Default::default() };
                trie.insert(&filter, session.client_id.clone(), SubscriptionEntry { options, session: session.clone() });
                st.subscriptions.insert(filter, options);
            }
        }
        if stored.disconnected_at.is_none() {
            // Its connection is gone: record that, so the will is published
            // once, not at every restart.
            journal.record(super::PersistOp::SessionSave { client_id: session.client_id.clone(), connected: false, expiry_secs: None, will: None });
            if let Some(will) = stored.will {
                restored.wills.push(Message::new(Utf8Bytes::from(will.topic), will.payload, will.qos, will.retain));
            }
        }
        registry.insert_restored(session);
        restored.sessions += 1;
    }
    restored
}
