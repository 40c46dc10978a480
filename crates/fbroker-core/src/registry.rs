//! The table of sessions by client id: attaching a connection (with session
//! takeover [MQTT-3.1.4-2] and clean-session discard [MQTT-3.1.2-6]),
//! detaching it, and expiring abandoned persistent sessions.

use crate::events::DisconnectReason;
use crate::router::{ClientKey, Router};
use crate::session::{ConnControl, Session};
use ahash::AHashMap;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct Registry {
    sessions: Mutex<AHashMap<ClientKey, Arc<Session>>>,
}

pub struct Attached {
    pub session: Arc<Session>,
    pub session_present: bool,
}

impl Registry {
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
                st.disconnected_at = None;
                drop(st);
                return Attached { session: existing, session_present: true };
            }
            let filters: Vec<String> = st.subscriptions.drain().map(|(f, _)| f).collect();
            drop(st);
            unsubscribe_all(router, &existing.client_id, &filters);
            sessions.remove(client_id);
        }
        let key: ClientKey = Arc::from(client_id);
        let session = Session::new(key.clone(), !clean_session, owner);
        sessions.insert(key, session.clone());
        Attached { session, session_present: false }
    }

    /// Releases the session when its connection ends. A non-persistent
    /// session is deleted with its subscriptions [MQTT-3.1.2-6]; a
    /// persistent one starts its expiry clock.
    pub fn detach(&self, router: &Router, session: &Arc<Session>, conn_id: u64) {
        let mut sessions = self.sessions.lock();
        let mut st = session.state.lock();
        match &st.owner {
            Some(owner) if owner.conn_id == conn_id => st.owner = None,
            // Taken over: the new owner has it now.
            _ => return,
        }
        if st.persistent {
            st.disconnected_at = Some(Instant::now());
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
            }
            !stale
        });
        drop(sessions);
        for (client_id, filters) in &expired {
            unsubscribe_all(router, client_id, filters);
        }
        expired.len()
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
