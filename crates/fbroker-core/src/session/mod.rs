//! Session state (MQTT 3.1.1 section 4.1): subscriptions, queued and
//! in-flight outbound messages, and inbound QoS 2 packet ids. A session
//! outlives its connection when the client asked for a persistent session.

pub mod inflight;
pub mod queue;

use crate::events::DisconnectReason;
use crate::message::SharedMessage;
use crate::persistence::{Journal, PersistOp};
use fbroker_auth::ClientAcl;
use ahash::{AHashMap, AHashSet};
use fbroker_codec::{QoS, SubscriptionOptions};
use inflight::OutboundInflight;
use parking_lot::Mutex;
use queue::{MessageQueue, PushOutcome, QueueLimits, Queued};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Notify;

/// The handle a router or the control plane uses to reach the connection
/// that currently owns a session: wake it for new messages, or ask it to
/// close.
#[derive(Debug)]
pub struct ConnControl {
    pub conn_id: u64,
    wake: Notify,
    kick: AtomicU8,
}

const NO_KICK: u8 = 0;

impl ConnControl {
    pub fn new(conn_id: u64) -> Arc<ConnControl> {
        Arc::new(ConnControl { conn_id, wake: Notify::new(), kick: AtomicU8::new(NO_KICK) })
    }
    pub fn wake(&self) {
        self.wake.notify_one();
    }
    pub async fn woken(&self) {
        self.wake.notified().await
    }
    /// Asks the connection to close; the first reason wins.
    pub fn kick(&self, reason: DisconnectReason) {
        let code = reason as u8 + 1;
        let _ = self.kick.compare_exchange(NO_KICK, code, Ordering::AcqRel, Ordering::Acquire);
        self.wake.notify_one();
    }
    pub fn kicked(&self) -> Option<DisconnectReason> {
        match self.kick.load(Ordering::Acquire) {
            NO_KICK => None,
            code => DisconnectReason::from_code(code - 1),
        }
    }
}

#[derive(Debug)]
pub struct SessionState {
    /// Clean Session = 0: the session survives disconnects.
    pub persistent: bool,
    /// Filter → options, exactly as subscribed.
    pub subscriptions: AHashMap<String, SubscriptionOptions>,
    pub queue: MessageQueue,
    pub inflight: OutboundInflight,
    /// Inbound QoS 2 packet ids that were PUBREC'd and await PUBREL; a
    /// re-sent PUBLISH with one of these ids is not routed again.
    pub incoming_qos2: AHashSet<u16>,
    pub owner: Option<Arc<ConnControl>>,
    pub disconnected_at: Option<Instant>,
    /// Read rules of the client's ACL, checked per delivery; None = all.
    pub acl: Option<Arc<ClientAcl>>,
    /// The user name of the session's last connection, to recompile its
    /// ACL when the ACL file is reloaded.
    pub username: Option<String>,
    /// The connection yielded to coalesce its next write with an empty
    /// write buffer, so what is routed to it meanwhile is not backlog: see
    /// `COALESCE_GRACE`. Cleared when it drains the queue.
    pub coalescing: bool,
}

/// While the owning connection yields to coalesce deliveries, the QoS 0
/// messages routed to it may exceed the count limit by this many. Without
/// the yield each publisher's batch was drained before the next publisher
/// ran; with it, the batches of every publisher made ready by the same turn
/// of the scheduler land in the queue before one drain, and a keeping-up
/// subscriber would otherwise be pushed over the limit. 1,024 was too few:
/// 100 publishers at 400k msg/s lost 0.3 % (quick fan-in sweep). The grace
/// lasts one scheduler pass (the drain after the yield ends it), and
/// `COALESCE_GRACE_BYTES` bounds its memory. The limit still binds a
/// subscriber whose socket is full: it does not yield then.
pub const COALESCE_GRACE: usize = 65_536;
/// The payload bytes the grace may add to a queue (on top of
/// `max_queued_bytes`, or as the only byte bound when that is 0).
pub const COALESCE_GRACE_BYTES: usize = 16 * 1024 * 1024;

impl SessionState {
    /// Whether the connection `conn_id` still owns this session (it may
    /// have lost it to a takeover it has not noticed yet).
    pub fn is_owned_by(&self, conn_id: u64) -> bool {
        self.owner.as_ref().is_some_and(|o| o.conn_id == conn_id)
    }
}

#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    pub state: Mutex<SessionState>,
    /// Where changes to this session are journaled: present for persistent
    /// sessions when a persistence backend is configured.
    pub journal: Option<Arc<Journal>>,
}

impl Session {
    pub fn new(client_id: Arc<str>, persistent: bool, owner: Arc<ConnControl>, journal: Option<Arc<Journal>>) -> Arc<Session> {
        Self::build(client_id, persistent, Some(owner), journal.filter(|_| persistent))
    }

    /// A persistent session without a connection (restored at start).
    pub fn offline(client_id: Arc<str>, journal: Option<Arc<Journal>>) -> Arc<Session> {
        Self::build(client_id, true, None, journal)
    }

    fn build(client_id: Arc<str>, persistent: bool, owner: Option<Arc<ConnControl>>, journal: Option<Arc<Journal>>) -> Arc<Session> {
        Arc::new(Session {
            client_id,
            state: Mutex::new(SessionState {
                persistent,
                subscriptions: AHashMap::new(),
                queue: MessageQueue::default(),
                inflight: OutboundInflight::default(),
                incoming_qos2: AHashSet::new(),
                owner,
                disconnected_at: None,
                acl: None,
                username: None,
                coalescing: false,
            }),
            journal,
        })
    }

    /// Journals `op` when this session is persisted.
    pub fn journal(&self, op: impl FnOnce(Arc<str>) -> PersistOp) {
        if let Some(journal) = &self.journal {
            journal.record(op(self.client_id.clone()));
        }
    }

    /// Pushes onto the queue, journaling what a persisted session stores:
    /// QoS 1/2 messages in, and what the limits evicted out.
    fn push(&self, queue: &mut MessageQueue, item: Queued, limits: &QueueLimits) -> PushOutcome {
        let Some(journal) = self.journal.as_ref().filter(|_| item.qos != QoS::AtMostOnce) else {
            return queue.push(item, limits);
        };
        let (msg, qos, retain) = (item.msg.clone(), item.qos, item.retain);
        let outcome = queue.push_reporting(item, limits, |evicted| {
            if evicted.qos != QoS::AtMostOnce {
                journal.record(PersistOp::QueueRemove { client_id: self.client_id.clone(), msg: evicted.msg.clone() });
            }
        });
        if !matches!(outcome, PushOutcome::Rejected) {
            journal.record(PersistOp::QueuePush { client_id: self.client_id.clone(), msg, qos, retain });
        }
        outcome
    }

    /// Queues a message for this session and wakes its connection. Returns
    /// how many messages the queue limits discarded.
    pub fn enqueue(&self, msg: SharedMessage, qos: QoS, retain: bool, limits: &QueueLimits) -> u64 {
        let mut st = self.state.lock();
        if let Some(acl) = &st.acl {
            // Denied reads are not delivered (nor counted as drops). Checked
            // on every delivery, not only when deny rules exist: after an
            // ACL reload, existing subscriptions may cover topics the new
            // rules no longer grant. (~70 ns with a 1,000-rule file.)
            if !acl.can_receive(msg.topic.as_str()) {
                return 0;
            }
        }
        let Some(owner) = st.owner.clone() else {
            // Offline: only QoS 1 and 2 are kept for later [MQTT-3.1.2-5].
            if qos == QoS::AtMostOnce || !st.persistent {
                return 0;
            }
            return match self.push(&mut st.queue, Queued { msg, qos, retain }, limits) {
                PushOutcome::Queued => 0,
                PushOutcome::QueuedAfterDropping(n) => n,
                PushOutcome::Rejected => 1,
            };
        };
        let was_empty = st.queue.is_empty();
        let graced;
        let limits = if st.coalescing && qos == QoS::AtMostOnce && limits.max_messages != 0 {
            graced = QueueLimits { max_messages: limits.max_messages + COALESCE_GRACE, max_bytes: limits.max_bytes + COALESCE_GRACE_BYTES, ..*limits };
            &graced
        } else {
            limits
        };
        let dropped = match self.push(&mut st.queue, Queued { msg, qos, retain }, limits) {
            PushOutcome::Queued => 0,
            PushOutcome::QueuedAfterDropping(n) => n,
            PushOutcome::Rejected => 1,
        };
        drop(st);
        // The connection drains the whole queue on each wake-up, so only the
        // transition from empty needs a wake.
        if was_empty {
            owner.wake();
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::QueueDropPolicy;
    use crate::message::Message;
    use bytes::Bytes;

    const LIMITS: QueueLimits = QueueLimits { max_messages: 10, max_bytes: 0, policy: QueueDropPolicy::DropOldest };

    fn online() -> Arc<Session> {
        Session::new("s".into(), false, ConnControl::new(1), None)
    }

    fn offer(session: &Session, n: usize, qos: QoS) -> u64 {
        (0..n).map(|_| session.enqueue(Message::new("t".into(), Bytes::from_static(b"x"), qos, false), qos, false, &LIMITS)).sum()
    }

    #[test]
    fn the_count_limit_binds_online_qos0_when_the_connection_is_not_coalescing() {
        let s = online();
        assert_eq!(offer(&s, 15, QoS::AtMostOnce), 5);
        assert_eq!(s.state.lock().queue.len(), 10);
    }

    #[test]
    fn a_coalescing_connection_gets_qos0_up_to_the_grace_past_the_count_limit() {
        let s = online();
        s.state.lock().coalescing = true;
        assert_eq!(offer(&s, 10 + COALESCE_GRACE, QoS::AtMostOnce), 0);
        assert_eq!(offer(&s, 3, QoS::AtMostOnce), 3, "the grace is bounded too");
        assert_eq!(s.state.lock().queue.len(), 10 + COALESCE_GRACE);
    }

    #[test]
    fn the_grace_is_bounded_in_bytes_even_without_a_byte_limit() {
        let s = online();
        s.state.lock().coalescing = true;
        let mib = Bytes::from(vec![0u8; 1 << 20]);
        let dropped: u64 = (0..20).map(|_| s.enqueue(Message::new("t".into(), mib.clone(), QoS::AtMostOnce, false), QoS::AtMostOnce, false, &LIMITS)).sum();
        assert_eq!(dropped, 4, "16 MiB of grace holds 16 messages of 1 MiB");
        assert_eq!(s.state.lock().queue.len(), 16);
    }

    #[test]
    fn the_grace_is_for_qos0_only() {
        // QoS 1 and 2 beyond the in-flight window wait in the queue with or
        // without the yield: they are backlog, and the limit applies.
        let s = online();
        s.state.lock().coalescing = true;
        assert_eq!(offer(&s, 15, QoS::AtLeastOnce), 5);
    }
}
