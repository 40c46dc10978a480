//! Where a published message goes: the subscription trie and the retained
//! store. Routing takes the trie's read lock only to collect matches, then
//! hands the shared message to each session's queue.

use crate::message::SharedMessage;
use crate::session::queue::QueueLimits;
use crate::session::Session;
use crate::topic::{RetainedStore, SubscriptionTrie};
use fbroker_codec::{QoS, SubscriptionOptions};
use parking_lot::RwLock;
use smallvec::SmallVec;
use std::sync::Arc;

/// A subscription as the trie stores it: the options and the session that
/// receives matches, so routing never looks a client up by name.
#[derive(Debug, Clone)]
pub struct SubscriptionEntry {
    pub options: SubscriptionOptions,
    pub session: Arc<Session>,
}

pub type ClientKey = Arc<str>;

#[derive(Default)]
pub struct Router {
    pub subscriptions: RwLock<SubscriptionTrie<ClientKey, SubscriptionEntry>>,
    pub retained: RwLock<RetainedStore<SharedMessage>>,
}

/// Matches per publish are usually few; above this many, de-duplication
/// switches from a linear scan to a hash map.
const LINEAR_DEDUP_LIMIT: usize = 16;

impl Router {
    /// Stores or clears the retained message for the topic [MQTT-3.3.1-5],
    /// [MQTT-3.3.1-10], [MQTT-3.3.1-11].
    pub fn retain(&self, msg: &SharedMessage) {
        let mut store = self.retained.write();
        if msg.payload.is_empty() {
            store.remove(msg.topic.as_str());
        } else {
            store.set(msg.topic.as_str(), msg.clone());
        }
    }

    /// Fans `msg` out to every matching session, once per session at the
    /// highest granted QoS of its matching subscriptions, downgraded to the
    /// publish QoS [MQTT-3.3.5-1]. Returns (deliveries, drops).
    pub fn route(&self, msg: &SharedMessage, limits: &QueueLimits) -> (u64, u64) {
        let mut targets: SmallVec<[(Arc<Session>, QoS); 8]> = SmallVec::new();
        let mut index: Option<ahash::AHashMap<*const Session, usize>> = None;
        {
            let trie = self.subscriptions.read();
            trie.for_each_match(msg.topic.as_str(), |_, entry| {
                let ptr = Arc::as_ptr(&entry.session);
                let qos = entry.options.qos;
                let existing = match &index {
                    Some(map) => map.get(&ptr).copied(),
                    None => targets.iter().position(|(s, _)| Arc::as_ptr(s) == ptr),
                };
                match existing {
                    Some(i) => {
                        if qos > targets[i].1 {
                            targets[i].1 = qos;
                        }
                    }
                    None => {
                        targets.push((entry.session.clone(), qos));
                        if let Some(map) = &mut index {
                            map.insert(ptr, targets.len() - 1);
                        } else if targets.len() > LINEAR_DEDUP_LIMIT {
                            index = Some(targets.iter().enumerate().map(|(i, (s, _))| (Arc::as_ptr(s), i)).collect());
                        }
                    }
                }
            });
        }
        let mut dropped = 0;
        for (session, granted) in &targets {
            dropped += session.enqueue(msg.clone(), msg.qos.min(*granted), false, limits);
        }
        (targets.len() as u64, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueDropPolicy;
    use crate::message::Message;
    use crate::session::ConnControl;
    use bytes::Bytes;

    const LIMITS: QueueLimits = QueueLimits { max_messages: 100, max_bytes: 0, policy: QueueDropPolicy::DropOldest };

    fn subscribe(router: &Router, session: &Arc<Session>, filter: &str, qos: QoS) {
        let options = SubscriptionOptions { qos, ..Default::default() };
        router.subscriptions.write().insert(filter, session.client_id.clone(), SubscriptionEntry { options, session: session.clone() });
    }

    #[test]
    fn overlapping_subscriptions_deliver_one_copy_at_the_highest_granted_qos() {
        let router = Router::default();
        let s = Session::new("s".into(), false, ConnControl::new(1), None);
        subscribe(&router, &s, "a/#", QoS::AtMostOnce);
        subscribe(&router, &s, "a/+", QoS::ExactlyOnce);
        subscribe(&router, &s, "a/b", QoS::AtLeastOnce);
        let msg = Message::new("a/b".into(), Bytes::from_static(b"x"), QoS::ExactlyOnce, false);
        assert_eq!(router.route(&msg, &LIMITS), (1, 0));
        let st = s.state.lock();
        assert_eq!(st.queue.len(), 1);
        assert_eq!(st.queue.front().unwrap().qos, QoS::ExactlyOnce);
    }

    #[test]
    fn mqtt_3_3_5_1_delivery_qos_is_the_minimum_of_publish_and_granted() {
        let router = Router::default();
        let s = Session::new("s".into(), false, ConnControl::new(1), None);
        subscribe(&router, &s, "t", QoS::ExactlyOnce);
        router.route(&Message::new("t".into(), Bytes::from_static(b"x"), QoS::AtLeastOnce, false), &LIMITS);
        assert_eq!(s.state.lock().queue.front().unwrap().qos, QoS::AtLeastOnce);
    }

    #[test]
    fn many_subscribers_are_each_served_once() {
        let router = Router::default();
        let sessions: Vec<_> = (0..50).map(|i| Session::new(format!("s{i}").into(), false, ConnControl::new(i), None)).collect();
        for s in &sessions {
            subscribe(&router, s, "t/#", QoS::AtMostOnce);
            subscribe(&router, s, "t/+", QoS::AtLeastOnce);
        }
        let msg = Message::new("t/x".into(), Bytes::from_static(b"x"), QoS::AtLeastOnce, false);
        assert_eq!(router.route(&msg, &LIMITS), (50, 0));
        assert!(sessions.iter().all(|s| s.state.lock().queue.len() == 1));
    }

    #[test]
    fn mqtt_3_3_1_10_empty_retained_payload_clears_the_topic() {
        let router = Router::default();
        router.retain(&Message::new("t".into(), Bytes::from_static(b"x"), QoS::AtMostOnce, true));
        assert_eq!(router.retained.read().len(), 1);
        router.retain(&Message::new("t".into(), Bytes::new(), QoS::AtMostOnce, true));
        assert_eq!(router.retained.read().len(), 0);
    }
}
