//! The engine's public handle: start it with a config and an event sink,
//! then command it (publish, disconnect a client, stats, stop). This is the
//! whole surface the N-API binding wraps.

use crate::config::BrokerConfig;
use crate::events::{EventBus, EventSink};
use crate::hooks::{HookBridge, HookResponse, HookSink};
use fbroker_auth::{Acl, PasswordFile};
use crate::listener::{accept_loop, bind, BoundListener, ListenerContext};
use fbroker_transport::TlsSettings;
use crate::message::Message;
use crate::persistence::restore::Snapshot;
use crate::persistence::{Journal, PersistMode, PersistSink};
use crate::state::BrokerState;
use crate::stats::{Stats, StatsSnapshot};
use crate::topic::validate_topic_name;
use bytes::Bytes;
use fbroker_codec::QoS;
use parking_lot::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

pub struct Broker {
    runtime: Mutex<Option<tokio::runtime::Runtime>>,
    state: Arc<BrokerState>,
    shutdown: watch::Sender<bool>,
    listeners: Vec<BoundListener>,
    /// Each TLS listener's certificates, for `reload_tls`.
    tls: Vec<(String, Arc<TlsSettings>)>,
}

/// How long `stop` waits for connections to close before tearing down.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A persistence backend's side of the engine: where journal batches go,
/// and the state read back from the store at start.
pub struct PersistenceSetup {
    pub mode: PersistMode,
    pub sink: Arc<dyn PersistSink>,
    pub snapshot: Snapshot,
}

impl Broker {
    /// `hook_sink` receives plugin hook requests; it is used only when
    /// `config.hooks` names at least one hook. With `persistence`, the
    /// stored state is restored before any listener accepts.
    pub fn start(
        config: BrokerConfig,
        sink: Arc<dyn EventSink>,
        hook_sink: Option<Arc<dyn HookSink>>,
        persistence: Option<PersistenceSetup>,
    ) -> Result<Broker, String> {
        let threads = if config.worker_threads == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            config.worker_threads
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("fbroker-io")
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| format!("cannot start the I/O runtime: {e}"))?;
        let mut std_listeners = Vec::new();
        let mut bound = Vec::new();
        let mut tls = Vec::new();
        for l in &config.listeners {
            let listener = bind(l)?;
            let port = listener.local_addr().map(|a| a.port()).unwrap_or(l.port);
            bound.push(BoundListener { protocol: l.transport.kind.as_str(), host: l.host.clone(), port });
            let context = Arc::new(ListenerContext::new(l, port));
            if let Some(settings) = &l.transport.tls {
                tls.push((context.label.clone(), settings.clone()));
            }
            std_listeners.push((listener, context));
        }
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        let (journal, snapshot) = match persistence {
            Some(setup) => (Some(Journal::new(setup.mode, setup.sink)), Some(setup.snapshot)),
            None => (None, None),
        };
        let state = runtime.block_on(async {
            let events = EventBus::start(sink, config.log_level, stats.clone());
            let hooks = match hook_sink {
                Some(hook_sink) if config.hooks.any() => Some(HookBridge::start(hook_sink, config.hooks, config.hook_timeout)),
                _ => None,
            };
            Arc::new(BrokerState::new(config, stats, events, hooks, shutdown_rx.clone(), journal.clone()))
        });
        if let (Some(journal), Some(snapshot)) = (&journal, snapshot) {
            let restored = crate::persistence::restore::apply(snapshot, &state.registry, &state.router, journal, &state.queue_limits);
            state.events.log(crate::config::LogLevel::Info, None, || {
                format!("restored {} sessions and {} retained messages from the persistence store", restored.sessions, restored.retained)
            });
            runtime.spawn(journal.clone().run_flusher(shutdown_rx.clone()));
            let _guard = runtime.enter();
            // The connections these wills belong to were cut by the
            // broker's own stop or crash, not closed by their clients.
            for will in restored.wills {
                state.publish(will);
            }
        }
        for (listener, context) in std_listeners {
            let state = state.clone();
            let _guard = runtime.enter();
            let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| format!("{}: {e}", context.label))?;
            runtime.spawn(accept_loop(state, listener, context));
        }
        if let Some(expiry) = state.config.session_expiry {
            runtime.spawn(expire_sessions(state.clone(), expiry));
        }
        Ok(Broker { runtime: Mutex::new(Some(runtime)), state, shutdown: shutdown_tx, listeners: bound, tls })
    }

    pub fn listeners(&self) -> &[BoundListener] {
        &self.listeners
    }

    /// Injects a message as if a client had published it.
    pub fn publish(&self, topic: &str, payload: Bytes, qos: u8, retain: bool) -> Result<(), String> {
        let config = &self.state.config;
        validate_topic_name(topic, config.max_topic_levels, config.max_topic_length).map_err(|e| format!("invalid topic {topic:?}: {e}"))?;
        let qos = QoS::from_u8(qos).ok_or_else(|| format!("invalid qos {qos}"))?;
        self.state.publish(Message::new(topic.into(), payload, qos, retain));
        Ok(())
    }

    /// Closes the client's connection as an administrative action; its
    /// will is published. False when no such client is connected.
    pub fn disconnect_client(&self, client_id: &str) -> bool {
        match self.state.registry.owner_of(client_id) {
            Some(owner) => {
                owner.kick(crate::events::DisconnectReason::Administrative);
                true
            }
            None => false,
        }
    }

    /// Replaces the password file and ACL (SIGHUP) without dropping any
    /// connection; connected clients use the new ACL from their next packet.
    pub fn reload_auth(&self, password_file: Option<PasswordFile>, acl: Option<Acl>) {
        self.state.auth.reload(password_file, acl);
        // Deliveries follow the new read rules at once, also for idle and
        // offline sessions; each connection refreshes its publish rules
        // before its next packet.
        for session in self.state.registry.sessions() {
            let mut st = session.state.lock();
            let username = st.username.clone();
            st.acl = self.state.auth.compile_acl(&session.client_id, username.as_deref());
        }
    }

    /// The control plane stored (or failed to store) journal batch `seq`.
    pub fn persist_ack(&self, seq: u64, stored: bool) {
        if let Some(journal) = &self.state.journal {
            journal.acknowledge(seq, stored);
        }
    }

    /// Re-reads every TLS listener's certificate, key and CA files (SIGHUP).
    /// New handshakes use the new material; established connections keep
    /// theirs. Returns one message per listener that failed and kept its
    /// previous certificates.
    pub fn reload_tls(&self) -> Vec<String> {
        self.tls
            .iter()
            .filter_map(|(label, settings)| settings.reload().err().map(|e| format!("{label}: {e}")))
            .collect()
    }

    /// Which lifecycle events to produce (a mask of `EventKind` bits): the
    /// control plane clears the kinds nobody listens to.
    pub fn set_event_interest(&self, mask: u32) {
        self.state.events.set_interest(mask);
    }

    /// Topic filters for the per-message events; empty = every topic.
    pub fn set_message_event_filters(&self, filters: Vec<String>) {
        self.state.events.set_message_filters(filters);
    }

    /// The control plane's answer to hook request `id`.
    pub fn resolve_hook(&self, id: u64, response: HookResponse) -> bool {
        self.state.hooks.as_ref().is_some_and(|h| h.resolve(id, response))
    }

    pub fn stats(&self) -> StatsSnapshot {
        let s = &self.state.stats;
        StatsSnapshot {
            connections: s.connections.load(Relaxed) as u64,
            sessions: self.state.registry.len() as u64,
            subscriptions: self.state.router.subscriptions.read().len() as u64,
            retained_messages: self.state.router.retained.read().len() as u64,
            messages_received: Stats::load(&s.messages_received),
            messages_sent: Stats::load(&s.messages_sent),
            bytes_received: Stats::load(&s.bytes_received),
            bytes_sent: Stats::load(&s.bytes_sent),
            publish_dropped: Stats::load(&s.publish_dropped),
            publish_denied: Stats::load(&s.publish_denied),
            events_dropped: Stats::load(&s.events_dropped),
            events_delivered: Stats::load(&s.events_delivered),
            uptime_secs: s.started.elapsed().as_secs_f64(),
        }
    }

    /// Stops accepting, closes every connection without publishing wills,
    /// and tears the runtime down. Blocking; idempotent.
    pub fn stop(&self) {
        let Some(runtime) = self.runtime.lock().take() else { return };
        let _ = self.shutdown.send(true);
        let deadline = Instant::now() + STOP_GRACE;
        while self.state.stats.connections.load(Relaxed) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(journal) = &self.state.journal {
            // The closed connections' last changes: their sessions saved as
            // disconnected, so a restart does not take them for crashed.
            journal.flush_now();
        }
        // Let the event task hand over the last disconnect events.
        std::thread::sleep(Duration::from_millis(20));
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn expire_sessions(state: Arc<BrokerState>, expiry: Duration) {
    let period = (expiry / 4).clamp(Duration::from_millis(250), Duration::from_secs(60));
    let mut shutdown = state.shutdown.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        }
        state.registry.expire(&state.router, expiry);
    }
}
