//! The table of sessions by client id: attaching a connection (with session
//! takeover [MQTT-3.1.4-2] and clean-session discard [MQTT-3.1.2-6]),
//! detaching it, and expiring abandoned persistent sessions.

use crate::events::DisconnectReason;
use crate::persistence::{Journal, PersistOp};
use crate::router::{ClientKey, Router};
use crate::session::{ConnControl, Session};
use ahash::AHashMap;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Registry {
    sessions: Mutex<AHashMap<ClientKey, Arc<Session>>>,
    /// Set when a persistence backend is configured; persistent sessions
    /// journal through it.
    journal: Option<Arc<Journal>>,
}

pub struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
}

impl Registry {
    pub fn with_journal(journal: Option<Arc<Journal>>) -> Self {
        Registry { sessions: Mutex::default(), journal }
    }

    /// A session read back from the persistence store at start.
    pub fn insert_restored(&self, session: Arc<Session>) {
        self.sessions.lock().insert(session.client_id.clone(), session);
    }

    pub fn len(&self) -> usize {
        self.sessions.lock().len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Gives the session for `client_id` to the connection `owner`, closing
    /// any connection that held it. A clean-session request, or an existing
    /// session that was not persistent, starts from an empty session.
    pub fn attach(&self, router: &Router, client_id: &str, clean_session: bool, owner: Arc<ConnControl>) -> Attached {
        let mut sessions = self.sessions.lock();
        if let Some(existing) = sessions.get(client_id).cloned() {
            let mut st = existing.state.lock();
            if let Some(previous) = st.owner.take() {
                previous.kick(DisconnectReason::Takeover);
            }
            if !clean_session && st.persistent {
                st.owner = Some(owner);
                // A grace the previous connection took does not carry over.
                st.coalescing = false;
                st.disconnected_at = None;
                drop(st);
                return Attached { session: existing, session_present: true };
            }
            let filters: Vec<String> = st.subscriptions.drain().map(|(f, _)| f).collect();
            let was_persistent = st.persistent;
            drop(st);
            unsubscribe_all(router, &existing.client_id, &filters);
            sessions.remove(client_id);
            if was_persistent {
                existing.journal(|client_id| PersistOp::SessionDelete { client_id });
            }
        }
        let key: ClientKey = Arc::from(client_id);
        let session = Session::new(key.clone(), !clean_session, owner, self.journal.clone());
        sessions.insert(key, session.clone());
        Attached { session, session_present: false }
    }

    /// Releases the session when its connection ends. A non-persistent
    /// session is deleted with its subscriptions [MQTT-3.1.2-6]; a
    /// persistent one starts its expiry clock.
    pub fn detach(&self, router: &Router, session: &Arc<Session>, conn_id: u64) {
        let mut sessions = self.sessions.lock();
        let mut st = session.state.lock();
        if !st.is_owned_by(conn_id) {
            // Taken over: the new owner has it now.
            return;
        }
        st.owner = None;
        if st.persistent {
            st.disconnected_at = Some(Instant::now());
            drop(st);
            session.journal(|client_id| PersistOp::SessionSave { client_id, connected: false, expiry_secs: None, will: None });
            return;
        }
        let filters: Vec<String> = st.subscriptions.drain().map(|(f, _)| f).collect();
        st.queue.clear();
        st.inflight.clear();
        drop(st);
        unsubscribe_all(router, &session.client_id, &filters);
        if sessions.get(&*session.client_id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            sessions.remove(&*session.client_id);
        }
    }

    /// Deletes persistent sessions that have been offline longer than
    /// `expiry`. Returns how many were removed.
    pub fn expire(&self, router: &Router, expiry: Duration) -> usize {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        let mut expired = Vec::new();
        sessions.retain(|_, session| {
            let mut st = session.state.lock();
            let stale = st.owner.is_none() && st.disconnected_at.is_some_and(|t| now.duration_since(t) >= expiry);
            if stale {
                let filters: Vec<String> = st.subscriptions.drain().map(|(f, _)| f).collect();
                expired.push((session.client_id.clone(), filters));
                session.journal(|client_id| PersistOp::SessionDelete { client_id });
            }
            !stale
        });
        drop(sessions);
        for (client_id, filters) in &expired {
            unsubscribe_all(router, client_id, filters);
        }
        expired.len()
    }

    /// Every session, for whole-broker updates such as an ACL reload.
    pub fn sessions(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().values().cloned().collect()
    }

    pub fn owner_of(&self, client_id: &str) -> Option<Arc<ConnControl>> {
        let sessions = self.sessions.lock();
        let session = sessions.get(client_id)?;
        let st = session.state.lock();
        st.owner.clone()
    }

    pub fn owners(&self) -> Vec<Arc<ConnControl>> {
        let sessions = self.sessions.lock();
        sessions.values().filter_map(|s| s.state.lock().owner.clone()).collect()
    }
}

fn unsubscribe_all(router: &Router, client_id: &ClientKey, filters: &[String]) {
    if filters.is_empty() {
        return;
    }
    let mut trie = router.subscriptions.write();
    for filter in filters {
        trie.remove(filter, client_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::SubscriptionEntry;
    use fbroker_codec::SubscriptionOptions;

    fn subscribe(router: &Router, session: &Arc<Session>, filter: &str) {
        let entry = SubscriptionEntry { options: SubscriptionOptions::default(), session: session.clone() };
        router.subscriptions.write().insert(filter, session.client_id.clone(), entry);
        session.state.lock().subscriptions.insert(filter.into(), SubscriptionOptions::default());
    }

    #[test]
    fn mqtt_3_1_4_2_takeover_kicks_the_previous_connection() {
        let (registry, router) = (Registry::default(), Router::default());
        let first = ConnControl::new(1);
        registry.attach(&router, "c", false, first.clone());
        let second = ConnControl::new(2);
        let attached = registry.attach(&router, "c", false, second);
        assert_eq!(first.kicked(), Some(DisconnectReason::Takeover));
        assert!(attached.session_present);
        // The old connection's detach must not release the new owner's session.
        registry.detach(&router, &attached.session, 1);
        assert_eq!(attached.session.state.lock().owner.as_ref().map(|o| o.conn_id), Some(2));
    }

    #[test]
    fn mqtt_3_1_2_6_clean_session_discards_the_old_session_and_its_subscriptions() {
        let (registry, router) = (Registry::default(), Router::default());
        let a = registry.attach(&router, "c", false, ConnControl::new(1));
        subscribe(&router, &a.session, "x/#");
        registry.detach(&router, &a.session, 1);
        assert_eq!(router.subscriptions.read().len(), 1, "persistent subscriptions survive");
        let b = registry.attach(&router, "c", true, ConnControl::new(2));
        assert!(!b.session_present);
        assert_eq!(router.subscriptions.read().len(), 0);
        registry.detach(&router, &b.session, 2);
        assert_eq!(registry.len(), 0, "a clean session ends with its connection");
    }

    #[test]
    fn abandoned_persistent_sessions_expire() {
        let (registry, router) = (Registry::default(), Router::default());
        let a = registry.attach(&router, "gone", false, ConnControl::new(1));
        subscribe(&router, &a.session, "t");
        let b = registry.attach(&router, "online", false, ConnControl::new(2));
        subscribe(&router, &b.session, "t");
        registry.detach(&router, &a.session, 1);
        assert_eq!(registry.expire(&router, Duration::ZERO), 1);
        assert_eq!(registry.len(), 1, "the connected session stays");
        assert_eq!(router.subscriptions.read().len(), 1);
    }
}
