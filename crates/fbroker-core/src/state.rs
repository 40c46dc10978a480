//! Everything the socket tasks share, behind one `Arc`.

use crate::auth::Auth;
use crate::config::BrokerConfig;
use crate::hooks::HookBridge;
use crate::events::EventBus;
use crate::message::SharedMessage;
use crate::persistence::{Journal, PersistOp};
use crate::registry::Registry;
use crate::router::Router;
use crate::session::queue::QueueLimits;
use crate::stats::Stats;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::watch;

pub struct BrokerState {
    pub config: BrokerConfig,
    pub queue_limits: QueueLimits,
    pub stats: Arc<Stats>,
    pub events: EventBus,
    pub router: Router,
    pub registry: Registry,
    pub auth: Auth,
    /// Present when at least one plugin hook is registered.
    pub hooks: Option<Arc<HookBridge>>,
    /// Present when a persistence backend is configured.
    pub journal: Option<Arc<Journal>>,
    /// Flips to true once when the broker stops.
    pub shutdown: watch::Receiver<bool>,
    next_conn_id: AtomicU64,
}

impl BrokerState {
    pub fn new(
        config: BrokerConfig,
        stats: Arc<Stats>,
        events: EventBus,
        hooks: Option<Arc<HookBridge>>,
        shutdown: watch::Receiver<bool>,
        journal: Option<Arc<Journal>>,
    ) -> Self {
        let queue_limits = QueueLimits {
            max_messages: config.max_queued_messages,
            max_bytes: config.max_queued_bytes,
            policy: config.queue_drop_policy,
        };
        let auth = Auth::new(config.auth.clone());
        BrokerState {
            auth,
            hooks,
            config,
            queue_limits,
            stats,
            events,
            router: Router::default(),
            registry: Registry::with_journal(journal.clone()),
            journal,
            shutdown,
            next_conn_id: AtomicU64::new(1),
        }
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Relaxed)
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Publishes an application message: updates the retained store when
    /// asked to, then routes it to subscribers with RETAIN cleared.
    pub fn publish(&self, msg: SharedMessage) {
        if msg.retain {
            self.router.retain(&msg);
            if let Some(journal) = &self.journal {
                journal.record(if msg.payload.is_empty() {
                    PersistOp::RetainedDelete { topic: msg.topic.to_string() }
                } else {
                    PersistOp::RetainedSet { msg: msg.clone() }
                });
            }
        }
        let (_, dropped) = self.router.route(&msg, &self.queue_limits);
        Stats::add(&self.stats.publish_dropped, dropped);
    }
}
