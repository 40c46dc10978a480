//! Broker-wide counters. Connections add their per-batch totals once per
//! read or write rather than once per message, so the shared cache lines are
//! touched rarely under load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Instant;

#[derive(Debug)]
pub struct Stats {
    pub started: Instant,
    pub connections: AtomicUsize,
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub publish_dropped: AtomicU64,
    /// Publishes refused by the ACL or a plugin (acknowledged, not routed).
    pub publish_denied: AtomicU64,
    pub events_dropped: AtomicU64,
    /// Lifecycle and log events handed to the control plane.
    pub events_delivered: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            connections: AtomicUsize::new(0),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            publish_dropped: AtomicU64::new(0),
            publish_denied: AtomicU64::new(0),
            events_dropped: AtomicU64::new(0),
            events_delivered: AtomicU64::new(0),
        }
    }
}

/// A point-in-time copy for the control plane.
#[derive(Debug, Clone, Default)]
pub struct StatsSnapshot {
    pub connections: u64,
    pub sessions: u64,
    pub subscriptions: u64,
    pub retained_messages: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub publish_dropped: u64,
    pub publish_denied: u64,
    pub events_dropped: u64,
    pub events_delivered: u64,
    pub uptime_secs: f64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        if n != 0 {
            counter.fetch_add(n, Relaxed);
        }
    }
    pub fn load(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}
