//! Lifecycle events from the engine to the control plane.
//!
//! Events are produced on the socket tasks, pushed into one bounded channel
//! and handed to the [`EventSink`] in batches by a single task, so the FFI
//! is crossed once per batch rather than once per event. When the channel
//! is full the event is dropped and counted: a slow JS consumer must never
//! stall the socket loop. Nothing here runs per message.

use crate::config::LogLevel;
use crate::stats::Stats;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Why a client connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent DISCONNECT.
    Normal,
    KeepAliveTimeout,
    /// Another connection with the same client id took the session.
    Takeover,
    ProtocolError,
    /// Read/write error or the peer closed without DISCONNECT.
    SocketError,
    ServerShutdown,
    /// Closed on request of the control plane (`disconnectClient`).
    Administrative,
    /// A publish needed the persistence store, which could not take it
    /// (outage past the buffer bound): MQTT 3.1.1 has no way to refuse a
    /// single publish, so the connection is closed without acknowledging.
    StorageUnavailable,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::Normal => "normal",
            DisconnectReason::KeepAliveTimeout => "keepAliveTimeout",
            DisconnectReason::Takeover => "takeover",
            DisconnectReason::ProtocolError => "protocolError",
            DisconnectReason::SocketError => "socketError",
            DisconnectReason::ServerShutdown => "serverShutdown",
            DisconnectReason::Administrative => "administrative",
            DisconnectReason::StorageUnavailable => "storageUnavailable",
        }
    }
    /// The inverse of `reason as u8`.
    pub fn from_code(code: u8) -> Option<DisconnectReason> {
        use DisconnectReason::*;
        [Normal, KeepAliveTimeout, Takeover, ProtocolError, SocketError, ServerShutdown, Administrative, StorageUnavailable]
            .into_iter()
            .find(|r| *r as u8 == code)
    }

    /// Whether the will message is published for this reason.
    pub fn publishes_will(self) -> bool {
        !matches!(self, DisconnectReason::Normal | DisconnectReason::ServerShutdown)
    }
}

#[derive(Debug, Clone)]
pub enum BrokerEvent {
    ClientConnected {
        client_id: String,
        address: String,
        username: Option<String>,
        protocol_version: u8,
        clean_session: bool,
        session_present: bool,
        keep_alive: u16,
    },
    ClientDisconnected {
        client_id: String,
        reason: DisconnectReason,
    },
    Subscribed {
        client_id: String,
        /// Granted (filter, qos) pairs; refused filters are not listed.
        subscriptions: Vec<(String, u8)>,
    },
    Unsubscribed {
        client_id: String,
        topics: Vec<String>,
    },
    Log {
        level: LogLevel,
        client_id: Option<String>,
        message: String,
    },
    /// A Rust panic that was caught at a task or FFI boundary.
    Panic {
        message: String,
    },
    /// A client's PUBLISH was accepted for routing (opt-in, topic-filtered).
    Published {
        client_id: String,
        topic: String,
        payload: bytes::Bytes,
        qos: u8,
        retain: bool,
    },
    /// A PUBLISH was written to a subscriber (opt-in, topic-filtered).
    Delivered {
        client_id: String,
        topic: String,
        qos: u8,
        packet_id: u16,
    },
    /// A subscriber completed a QoS 1 or 2 delivery (opt-in, topic-filtered).
    Acked {
        client_id: String,
        topic: String,
        qos: u8,
        packet_id: u16,
    },
    /// A connection was closed for a protocol violation.
    ClientError {
        client_id: Option<String>,
        message: String,
    },
}

/// The receiver of event batches (the N-API binding in production, a
/// collecting vector in tests).
pub trait EventSink: Send + Sync + 'static {
    fn deliver(&self, batch: Vec<BrokerEvent>);
}

const EVENT_QUEUE_CAPACITY: usize = 16_384;
const MAX_BATCH: usize = 1024;

/// Lifecycle event kinds the control plane can switch off when nobody
/// listens, so they are never built nor sent across the FFI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum EventKind {
    ClientConnected = 1,
    ClientDisconnected = 2,
    Subscribed = 4,
    Unsubscribed = 8,
    /// Per-message kinds: off unless the control plane asks, and then only
    /// for topics matching its filters.
    Published = 16,
    Delivered = 32,
    Acked = 64,
    ClientError = 128,
}

impl EventKind {
    /// The default: lifecycle events on, per-message events off.
    pub const ALL: u32 = 1 | 2 | 4 | 8 | 128;
    const PER_MESSAGE: u32 = 16 | 32 | 64;
}

#[derive(Clone)]
pub struct EventBus {
    tx: mpsc::Sender<BrokerEvent>,
    log_level: LogLevel,
    stats: Arc<Stats>,
    interest: Arc<AtomicU32>,
    /// Topic filters for the per-message kinds; empty = every topic.
    message_filters: Arc<parking_lot::RwLock<Vec<String>>>,
}

impl EventBus {
    /// Spawns the batching task on the current runtime.
    pub fn start(sink: Arc<dyn EventSink>, log_level: LogLevel, stats: Arc<Stats>) -> EventBus {
        let (tx, mut rx) = mpsc::channel::<BrokerEvent>(EVENT_QUEUE_CAPACITY);
        let counters = stats.clone();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                counters.events_delivered.fetch_add(batch.len() as u64, Relaxed);
                sink.deliver(std::mem::take(&mut batch));
            }
        });
        EventBus {
            tx,
            log_level,
            stats,
            interest: Arc::new(AtomicU32::new(EventKind::ALL)),
            message_filters: Arc::new(parking_lot::RwLock::new(Vec::new())),
        }
    }

    /// Topic filters that per-message events (published, delivered, acked)
    /// are limited to; an empty list means every topic.
    pub fn set_message_filters(&self, filters: Vec<String>) {
        *self.message_filters.write() = filters;
    }

    /// Whether a per-message event of `kind` is wanted for `topic`. The
    /// common case (no per-message kind enabled) is one relaxed load.
    pub fn wants_message(&self, kind: EventKind, topic: &str) -> bool {
        let interest = self.interest.load(Relaxed);
        if interest & EventKind::PER_MESSAGE == 0 || interest & kind as u32 == 0 {
            return false;
        }
        let filters = self.message_filters.read();
        filters.is_empty() || filters.iter().any(|f| crate::topic::matches(f, topic))
    }

    /// Sets which lifecycle kinds are wanted (a bit mask of [`EventKind`]).
    pub fn set_interest(&self, mask: u32) {
        self.interest.store(mask, Relaxed);
    }

    pub fn wants(&self, kind: EventKind) -> bool {
        self.interest.load(Relaxed) & kind as u32 != 0
    }

    /// Builds and sends a lifecycle event only if someone wants its kind.
    pub fn emit_if_wanted(&self, kind: EventKind, event: impl FnOnce() -> BrokerEvent) {
        if self.wants(kind) {
            self.emit(event());
        }
    }

    pub fn emit(&self, event: BrokerEvent) {
        if self.tx.try_send(event).is_err() {
            self.stats.events_dropped.fetch_add(1, Relaxed);
        }
    }

    pub fn log_enabled(&self, level: LogLevel) -> bool {
        level >= self.log_level && self.log_level != LogLevel::Silent
    }

    /// Logs through the control plane's logger; filtered here so disabled
    /// levels never allocate or cross the FFI.
    pub fn log(&self, level: LogLevel, client_id: Option<&str>, message: impl FnOnce() -> String) {
        if self.log_enabled(level) {
            self.emit(BrokerEvent::Log { level, client_id: client_id.map(str::to_owned), message: message() });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    struct Collect(Mutex<Vec<BrokerEvent>>);
    impl EventSink for Arc<Collect> {
        fn deliver(&self, batch: Vec<BrokerEvent>) {
            self.0.lock().extend(batch);
        }
    }

    #[tokio::test]
    async fn kinds_nobody_listens_to_are_not_built_or_sent() {
        let collected = Arc::new(Collect(Mutex::new(Vec::new())));
        let bus = EventBus::start(Arc::new(collected.clone()), LogLevel::Info, Arc::new(Stats::default()));
        bus.set_interest(EventKind::ClientDisconnected as u32);
        let mut built = 0;
        bus.emit_if_wanted(EventKind::ClientConnected, || {
            built += 1;
            BrokerEvent::Panic { message: "unwanted".into() }
        });
        bus.emit_if_wanted(EventKind::ClientDisconnected, || BrokerEvent::ClientDisconnected {
            client_id: "c".into(),
            reason: DisconnectReason::Normal,
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(built, 0, "the unwanted event was never constructed");
        let got = collected.0.lock();
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0], BrokerEvent::ClientDisconnected { .. }));
    }

    #[tokio::test]
    async fn logs_below_the_level_are_filtered_in_rust() {
        let collected = Arc::new(Collect(Mutex::new(Vec::new())));
        let bus = EventBus::start(Arc::new(collected.clone()), LogLevel::Warn, Arc::new(Stats::default()));
        bus.log(LogLevel::Debug, None, || unreachable!("a filtered message is never formatted"));
        bus.log(LogLevel::Error, Some("c"), || "kept".into());
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert_eq!(collected.0.lock().len(), 1);
    }
}
