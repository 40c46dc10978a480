//! Durable state: what the engine tells the control plane's persistence
//! backend (memory or Redis) so that sessions, subscriptions, queued and
//! in-flight messages, inbound QoS 2 ids and retained messages survive a
//! restart or a crash.
//!
//! The engine never talks to a store. It records [`PersistOp`]s in a
//! [`Journal`], which hands them over in numbered batches through a
//! [`PersistSink`] (the N-API binding forwards them to JS). The control
//! plane writes each batch and acknowledges its number. In
//! acknowledge-after-store mode, a connection holds back the PUBACK/PUBREC
//! of a publish whose ops are in a batch that is not yet acknowledged;
//! the rest of the connection's traffic goes on meanwhile.
//!
//! Only persistent sessions (Clean Session = 0) and retained messages are
//! journaled; QoS 0 deliveries never are.

pub mod restore;

use crate::message::SharedMessage;
use crate::session::inflight::Stage;
use bytes::Bytes;
use fbroker_codec::QoS;
use parking_lot::Mutex;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{watch, Notify};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistMode {
    /// PUBACK/PUBREC only after the publish's ops are stored.
    AckAfterStore,
    /// Acknowledge at once; the store catches up (a crash can lose the
    /// last batches).
    Async,
}

/// A will as stored with its session.
#[derive(Debug, Clone)]
pub struct WillRecord {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

#[derive(Debug, Clone)]
pub enum PersistOp {
    /// A persistent session was opened (or resumed) by a connection, or its
    /// connection ended (`connected: false`; the will is gone by then).
    SessionSave { client_id: Arc<str>, connected: bool, expiry_secs: Option<u64>, will: Option<WillRecord> },
    /// The session and everything of it is gone (clean start over a
    /// persistent session, or expiry).
    SessionDelete { client_id: Arc<str> },
    SubscriptionAdd { client_id: Arc<str>, filter: String, qos: QoS },
    SubscriptionRemove { client_id: Arc<str>, filter: String },
    /// A QoS 1/2 message joined the session's queue.
    QueuePush { client_id: Arc<str>, msg: SharedMessage, qos: QoS, retain: bool },
    /// A message left the queue: sent (an `InflightSet` follows) or
    /// discarded by the queue limits.
    QueueRemove { client_id: Arc<str>, msg: SharedMessage },
    /// An outbound message was sent and waits for `stage`'s ack. `msg` is
    /// None for the PUBCOMP stage, where only the packet id matters.
    InflightSet { client_id: Arc<str>, packet_id: u16, stage: Stage, msg: Option<SharedMessage>, qos: QoS, retain: bool },
    InflightClear { client_id: Arc<str>, packet_id: u16 },
    /// Inbound QoS 2: PUBREC sent, PUBREL not received yet.
    IncomingAdd { client_id: Arc<str>, packet_id: u16 },
    IncomingRemove { client_id: Arc<str>, packet_id: u16 },
    RetainedSet { msg: SharedMessage },
    RetainedDelete { topic: String },
}

pub struct PersistBatch {
    /// Consecutive from 1; the acknowledgement names it.
    pub seq: u64,
    pub ops: Vec<PersistOp>,
}

/// Where batches go (the binding's threadsafe function). Must not drop a
/// batch: an unacknowledged batch holds back its publishers' acks.
pub trait PersistSink: Send + Sync + 'static {
    fn deliver(&self, batch: PersistBatch);
}

thread_local! {
    /// The highest batch number an op recorded on this thread went into
    /// since the last `take_ticket`. Packet handling is synchronous between
    /// the two calls, so the task cannot move threads in between.
    static TICKET: Cell<u64> = const { Cell::new(0) };
}

/// How many failed batch numbers are remembered for late waiters.
const FAILED_MEMORY: usize = 4096;
/// Ops handed over or waiting and not yet settled above which persistent
/// sessions stop moving messages from their queue to the wire. Each
/// delivery journals three ops (queue remove, in-flight set, clear), so a
/// reconnecting session drains far faster than a store writes; without
/// this the control plane's buffer would fill and refuse writes. Well
/// under the control plane's default buffer of 100,000 ops.
pub const DELIVERY_BACKLOG_LIMIT: usize = 20_000;

pub struct Journal {
    pub mode: PersistMode,
    sink: Arc<dyn PersistSink>,
    /// (number of the batch being filled, its ops)
    filling: Mutex<(u64, Vec<PersistOp>)>,
    flush: Notify,
    /// The highest batch number the control plane has settled (stored or
    /// failed); acks arrive in order.
    settled: watch::Sender<u64>,
    failed: Mutex<VecDeque<u64>>,
    /// Ops recorded and not yet settled.
    unsettled: AtomicUsize,
    /// (batch number, ops in it) of the batches handed over, oldest first.
    in_flight: Mutex<VecDeque<(u64, usize)>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("mode", &self.mode).finish_non_exhaustive()
    }
}

impl Journal {
    pub fn new(mode: PersistMode, sink: Arc<dyn PersistSink>) -> Arc<Journal> {
        Arc::new(Journal {
            mode,
            sink,
            filling: Mutex::new((1, Vec::new())),
            flush: Notify::new(),
            settled: watch::channel(0).0,
            failed: Mutex::new(VecDeque::new()),
            unsettled: AtomicUsize::new(0),
            in_flight: Mutex::new(VecDeque::new()),
        })
    }

    pub fn record(&self, op: PersistOp) {
        let mut filling = self.filling.lock();
        let first = filling.1.is_empty();
        filling.1.push(op);
        let seq = filling.0;
        drop(filling);
        self.unsettled.fetch_add(1, Ordering::Relaxed);
        TICKET.with(|t| t.set(t.get().max(seq)));
        if first {
            self.flush.notify_one();
        }
    }

    /// The batch the ops recorded on this thread since the last call went
    /// into (0: none), and forgets it.
    pub fn take_ticket() -> u64 {
        TICKET.with(|t| t.replace(0))
    }

    pub fn subscribe_settled(&self) -> watch::Receiver<u64> {
        self.settled.subscribe()
    }

    /// The control plane's answer for batch `seq`.
    /// Whether the store is so far behind that deliveries to persistent
    /// sessions should wait (see `DELIVERY_BACKLOG_LIMIT`).
    pub fn congested(&self) -> bool {
        self.unsettled.load(Ordering::Relaxed) > DELIVERY_BACKLOG_LIMIT
    }

    pub fn acknowledge(&self, seq: u64, stored: bool) {
        {
            let mut in_flight = self.in_flight.lock();
            while in_flight.front().is_some_and(|(s, _)| *s <= seq) {
                let (_, ops) = in_flight.pop_front().expect("front exists");
                self.unsettled.fetch_sub(ops, Ordering::Relaxed);
            }
        }
        if !stored {
            let mut failed = self.failed.lock();
            failed.push_back(seq);
            if failed.len() > FAILED_MEMORY {
                failed.pop_front();
            }
        }
        self.settled.send_if_modified(|settled| {
            let advanced = seq > *settled;
            *settled = (*settled).max(seq);
            advanced
        });
    }

    pub fn failed(&self, seq: u64) -> bool {
        self.failed.lock().contains(&seq)
    }

    /// Hands the filled batch over; one task does this, woken by `record`.
    /// At shutdown the broker calls `flush_now` itself once every
    /// connection has closed, so their last changes (sessions saved as
    /// disconnected) are handed over too.
    pub async fn run_flusher(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = self.flush.notified() => {}
                _ = shutdown.wait_for(|stopped| *stopped) => return,
            }
            // Let the connections that are ready run first, so one batch
            // carries a whole scheduler pass of publishes.
            tokio::task::yield_now().await;
            self.flush_now();
        }
    }

    pub fn flush_now(&self) {
        let batch = {
            let mut filling = self.filling.lock();
            if filling.1.is_empty() {
                return;
            }
            let seq = filling.0;
            filling.0 += 1;
            let batch = PersistBatch { seq, ops: std::mem::take(&mut filling.1) };
            // Under the filling lock, so batches enter in number order.
            self.in_flight.lock().push_back((seq, batch.ops.len()));
            batch
        };
        self.sink.deliver(batch);
    }
}

/// An inbound publish's acknowledgement held back until its batch is
/// stored.
#[derive(Debug, Clone, Copy)]
pub struct HeldAck {
    pub ticket: u64,
    pub kind: HeldAckKind,
    pub packet_id: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldAckKind {
    PubAck,
    PubRec,
    PubComp,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect(Mutex<Vec<PersistBatch>>);
    impl PersistSink for Collect {
        fn deliver(&self, batch: PersistBatch) {
            self.0.lock().push(batch);
        }
    }

    fn op(n: u16) -> PersistOp {
        PersistOp::IncomingAdd { client_id: "c".into(), packet_id: n }
    }

    #[tokio::test]
    async fn ops_recorded_together_travel_in_one_numbered_batch() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        let journal = Journal::new(PersistMode::AckAfterStore, sink.clone());
        let (_stop, stopped) = watch::channel(false);
        tokio::spawn(journal.clone().run_flusher(stopped));
        journal.record(op(1));
        journal.record(op(2));
        assert_eq!(Journal::take_ticket(), 1);
        assert_eq!(Journal::take_ticket(), 0, "taking the ticket forgets it");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        journal.record(op(3));
        assert_eq!(Journal::take_ticket(), 2);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let batches = sink.0.lock();
        assert_eq!(batches.iter().map(|b| (b.seq, b.ops.len())).collect::<Vec<_>>(), vec![(1, 2), (2, 1)]);
    }

    #[test]
    fn the_journal_is_congested_while_too_many_ops_are_unsettled() {
        let journal = Journal::new(PersistMode::AckAfterStore, Arc::new(Collect(Mutex::new(Vec::new()))));
        for n in 0..=DELIVERY_BACKLOG_LIMIT {
            journal.record(op(n as u16));
        }
        assert!(journal.congested(), "recorded, not yet handed over");
        journal.flush_now();
        assert!(journal.congested(), "handed over, not yet settled");
        journal.acknowledge(1, true);
        assert!(!journal.congested(), "settled");
    }

    #[tokio::test]
    async fn waiters_see_settled_batches_and_failures() {
        let journal = Journal::new(PersistMode::AckAfterStore, Arc::new(Collect(Mutex::new(Vec::new()))));
        let mut settled = journal.subscribe_settled();
        journal.acknowledge(1, true);
        journal.acknowledge(2, false);
        settled.changed().await.unwrap();
        assert_eq!(*settled.borrow(), 2);
        assert!(!journal.failed(1));
        assert!(journal.failed(2));
    }
}
