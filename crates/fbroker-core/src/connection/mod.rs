//! One client connection: handshake, then a single task that reads, decodes
//! and handles every available packet, drains the session's queue into a
//! write buffer, and writes the buffer with as few syscalls as possible.
//!
//! The task never blocks on a write: reads, writes, wake-ups for new
//! messages, the keep-alive deadline and shutdown are all branches of one
//! `select!`, so a client that stops reading cannot stall its own acks or
//! any other client.

mod handlers;
mod handshake;
mod publish_auth;

use crate::config::LogLevel;
use crate::events::{BrokerEvent, DisconnectReason, EventKind};
use crate::hooks::ClientInfo;
use fbroker_auth::ClientAcl;
use crate::message::Message;
use crate::persistence::{HeldAck, HeldAckKind, Journal, PersistMode, PersistOp, WillRecord};
use crate::session::inflight::{InflightEntry, Stage};
use crate::session::{ConnControl, Session};
use crate::state::BrokerState;
use crate::stats::Stats;
use bytes::{Buf, BytesMut};
use fbroker_codec::{connack_code, encode, encode_publish, reason, Ack, ConnAck, Connect, LastWill, Packet, Properties, ProtocolVersion, QoS};
use handshake::{read_connect, refusal_connack, HandshakeError};
use crate::listener::{ConnectionSlot, ListenerContext};
use fbroker_transport::{ReadOutcome, Stream};
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};

/// Stop moving queued messages into the write buffer above this size; the
/// rest wait in the session queue, where its limits apply.
const WRITE_HIGH_WATER: usize = 256 * 1024;
/// Read at most this much per wake-up before handling what was read, so
/// one fast publisher cannot starve the other branches.
const READ_BUDGET: usize = 256 * 1024;
const READ_CHUNK: usize = 8 * 1024;
/// Woken for deliveries with fewer messages than this queued, the task
/// yields once before draining (see `coalesce_deliveries`). Above it, one
/// write carries many messages anyway, and waiting would only let the
/// queue grow towards its limit.
const COALESCE_BELOW: usize = 32;

/// Entry point for an accepted socket; `slot` holds its place in the
/// connection counts until the task ends.
pub(crate) async fn serve(state: Arc<BrokerState>, tcp: TcpStream, peer: SocketAddr, slot: ConnectionSlot) {
    let _slot = slot;
    // The handshake's state (the CONNECT packet, its timers, the transport
    // setup) is several KB: boxed, it is freed when the handshake ends
    // instead of being reserved in every connection task for the
    // connection's whole life.
    let Some(mut conn) = Box::pin(handshake(state, tcp, peer, _slot.listener())).await else { return };
    let reason = conn.run().await;
    // Boxed for the same reason: the goodbye (flush, TLS close_notify,
    // WebSocket close) runs once and should not size every idle task.
    Box::pin(conn.finish(reason)).await;
}

/// Reads and answers CONNECT; on success the client is attached to its
/// session and the CONNACK is in the write buffer.
async fn handshake(state: Arc<BrokerState>, tcp: TcpStream, peer: SocketAddr, listener: &ListenerContext) -> Option<Connection> {
    let mut read_buf = BytesMut::with_capacity(512);
    let mut shutdown = state.shutdown.clone();
    // The transport setup and the CONNECT share one deadline: a client that
    // stalls a TLS handshake or a WebSocket upgrade is dropped like one
    // that never sends CONNECT.
    let setup = async {
        let mut stream = fbroker_transport::accept(tcp, peer, &listener.transport).await.map_err(SetupError::Transport)?;
        match read_connect(&mut stream, &mut read_buf, state.config.max_packet_size).await {
            Ok(connect) => Ok((stream, connect)),
            Err(e) => Err(SetupError::Handshake(stream, e)),
        }
    };
    let connect = tokio::select! {
        r = timeout(state.config.connect_timeout, setup) => r,
        _ = shutdown.wait_for(|stopped| *stopped) => return None,
    };
    let (stream, mut connect) = match connect {
        Err(_elapsed) => {
            state.events.log(LogLevel::Debug, None, || format!("{peer} on the {}: no CONNECT within the connect timeout", listener.label));
            return None;
        }
        Ok(Err(SetupError::Transport(e))) => {
            state.events.log(LogLevel::Debug, None, || format!("{peer} on the {}: {e}", listener.label));
            return None;
        }
        Ok(Err(SetupError::Handshake(stream, e))) => {
            refuse_handshake(&state, stream, e).await;
            return None;
        }
        Ok(Ok(accepted)) => accepted,
    };
    // Behind a PROXY header this is the client's own address.
    let peer = stream.peer_addr();
    let certificate_authenticated = listener.transport.tls.as_ref().is_some_and(|tls| tls.use_identity_as_username());
    if certificate_authenticated {
        // The verified certificate is the credential: its CN replaces the
        // username and no password check follows (as in Mosquitto).
        match stream.peer_identity() {
            Some(identity) => {
                connect.username = Some(identity);
                connect.password = None;
            }
            None => {
                state.events.log(LogLevel::Debug, None, || format!("{peer}: no client certificate identity to use as username"));
                let _ = write_and_close(stream, &refusal_connack(connack_code::BAD_USERNAME_OR_PASSWORD)).await;
                return None;
            }
        }
    }
    handshake_session(state, stream, peer, read_buf, connect, certificate_authenticated).await.ok()
}

enum SetupError {
    Transport(fbroker_transport::AcceptError),
    Handshake(Stream, HandshakeError),
}

/// Answers a first packet that was not an acceptable CONNECT.
async fn refuse_handshake(state: &BrokerState, stream: Stream, e: HandshakeError) {
    let peer = stream.peer_addr();
    match e {
        HandshakeError::UnsupportedProtocolVersion(level) => {
            state.events.log(LogLevel::Debug, None, || format!("{peer}: unsupported protocol level {level}"));
            let _ = write_and_close(stream, &refusal_connack(connack_code::UNACCEPTABLE_PROTOCOL_VERSION)).await;
        }
        HandshakeError::Decode(e) => {
            state.events.log(LogLevel::Debug, None, || format!("{peer}: malformed CONNECT: {e}"));
            close_quietly(stream).await;
        }
        HandshakeError::NotConnect => {
            state.events.log(LogLevel::Debug, None, || format!("{peer}: first packet was not CONNECT"));
            close_quietly(stream).await;
        }
        HandshakeError::Closed => {
            if let Some(code) = stream.websocket_violation() {
                state.events.log(LogLevel::Debug, None, || format!("{peer}: WebSocket protocol violation, closed with {code}"));
            }
            close_quietly(stream).await;
        }
    }
}

/// CONNECT is in: checks it, authenticates, attaches the session and
/// queues the CONNACK.
async fn handshake_session(
    state: Arc<BrokerState>,
    stream: Stream,
    peer: SocketAddr,
    read_buf: BytesMut,
    connect: Connect,
    certificate_authenticated: bool,
) -> Result<Connection, ()> {
    if connect.protocol == ProtocolVersion::V5 {
        // MQTT 5.0 broker semantics are not served yet; the codec is ready.
        let mut out = BytesMut::new();
        let ack = ConnAck { session_present: false, code: reason::UNSUPPORTED_PROTOCOL_VERSION, properties: Properties::default() };
        let _ = encode(&Packet::ConnAck(ack), ProtocolVersion::V5, &mut out);
        let _ = write_and_close(stream, &out).await;
        return Err(());
    }
    let client_id = match accept_client_id(&state, &connect) {
        Ok(id) => id,
        Err(code) => {
            state.events.log(LogLevel::Debug, Some(&connect.client_id), || "client identifier rejected".into());
            let _ = write_and_close(stream, &refusal_connack(code)).await;
            return Err(());
        }
    };
    let client = ClientInfo {
        client_id: client_id.clone(),
        username: connect.username.clone(),
        address: peer.to_string(),
        protocol_version: connect.protocol.level(),
    };
    let hooks = state.hooks.clone();
    let verdict = if certificate_authenticated {
        Ok(())
    } else {
        state.auth.authenticate(hooks.as_deref(), &client, connect.username.as_deref(), connect.password.as_ref()).await
    };
    if let Err(code) = verdict {
        state.events.log(LogLevel::Debug, Some(&client_id), || format!("connection refused with return code {code}"));
        let _ = write_and_close(stream, &refusal_connack(code)).await;
        return Err(());
    }
    let acl_generation = state.auth.generation();
    let acl = state.auth.compile_acl(&client_id, connect.username.as_deref());
    if let Some(will) = &connect.will {
        // A will is a publish the client makes in advance: refuse the
        // connection when the client could not publish there (as Mosquitto
        // does), rather than let the will bypass the ACL later.
        let topic = will.topic.as_str();
        if topic.starts_with("$SYS") || acl.as_ref().is_some_and(|acl| !acl.can_publish(topic)) {
            state.events.log(LogLevel::Debug, Some(&client_id), || format!("will topic {topic} not allowed"));
            let _ = write_and_close(stream, &refusal_connack(connack_code::NOT_AUTHORIZED)).await;
            return Err(());
        }
    }
    let conn_id = state.next_conn_id();
    let control = ConnControl::new(conn_id);
    let attached = state.registry.attach(&state.router, &client_id, connect.clean_start, control.clone());
    {
        let mut st = attached.session.state.lock();
        st.acl = acl.clone();
        st.username = connect.username.clone();
    }
    let mut conn = Connection {
        state: state.clone(),
        stream,
        peer,
        version: connect.protocol,
        client_id: client_id.clone(),
        session: attached.session,
        control,
        will: connect.will.map(Box::new),
        keep_alive: (connect.keep_alive > 0).then(|| Duration::from_millis(connect.keep_alive as u64 * 1500)),
        read_buf,
        write_buf: BytesMut::with_capacity(256),
        received: 0,
        sent: 0,
        acl,
        acl_generation,
        username: client.username.clone(),
        hook_client: hooks.is_some().then_some(client),
        publish_verdicts: None,
        held_acks: None,
    };
    conn.session.journal(|client_id| PersistOp::SessionSave {
        client_id,
        connected: true,
        expiry_secs: state.config.session_expiry.map(|d| d.as_secs()),
        will: conn.will.as_ref().map(|w| WillRecord { topic: w.topic.to_string(), payload: w.payload.clone(), qos: w.qos, retain: w.retain }),
    });
    conn.send(&Packet::ConnAck(ConnAck {
        session_present: attached.session_present,
        code: connack_code::ACCEPTED,
        properties: Properties::default(),
    }));
    state.events.emit_if_wanted(EventKind::ClientConnected, || BrokerEvent::ClientConnected {
        client_id: client_id.clone(),
        address: peer.to_string(),
        username: connect.username.clone(),
        protocol_version: connect.protocol.level(),
        clean_session: connect.clean_start,
        session_present: attached.session_present,
        keep_alive: connect.keep_alive,
    });
    conn.resend_inflight();
    Ok(conn)
}

/// Applies the client identifier rules [MQTT-3.1.3-6..9]; returns the id
/// to use or the CONNACK return code to refuse with.
fn accept_client_id(state: &BrokerState, connect: &Connect) -> Result<String, u8> {
    if connect.client_id.len() > state.config.max_client_id_length {
        return Err(connack_code::IDENTIFIER_REJECTED);
    }
    if !connect.client_id.is_empty() {
        return Ok(connect.client_id.clone());
    }
    // MQTT 3.1 has no zero-length client id; 3.1.1 allows it only with a
    // clean session [MQTT-3.1.3-7], [MQTT-3.1.3-8].
    if connect.protocol == ProtocolVersion::V3_1 || !connect.clean_start {
        return Err(connack_code::IDENTIFIER_REJECTED);
    }
    Ok(generate_client_id(state.next_conn_id()))
}

fn generate_client_id(seed: u64) -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = ahash::RandomState::new().build_hasher();
    h.write_u64(seed);
    format!("fbroker-{:016x}", h.finish())
}

async fn write_and_close(mut stream: Stream, bytes: &[u8]) -> std::io::Result<()> {
    let _ = timeout(Duration::from_secs(1), stream.write_all(bytes)).await;
    stream.shutdown().await
}

/// Closes a connection that is refused without an answer; a TLS or
/// WebSocket stream still says goodbye (close_notify, close frame).
async fn close_quietly(mut stream: Stream) {
    let _ = timeout(Duration::from_secs(1), stream.shutdown()).await;
}

pub(crate) struct Connection {
    pub(crate) state: Arc<BrokerState>,
    stream: Stream,
    peer: SocketAddr,
    pub(crate) version: ProtocolVersion,
    pub(crate) client_id: String,
    pub(crate) session: Arc<Session>,
    pub(crate) control: Arc<ConnControl>,
    pub(crate) will: Option<Box<LastWill>>,
    keep_alive: Option<Duration>,
    read_buf: BytesMut,
    pub(crate) write_buf: BytesMut,
    /// Counters batched per wake-up before touching the shared stats.
    pub(crate) received: u64,
    sent: u64,
    /// This client's compiled ACL; None = every topic allowed.
    pub(crate) acl: Option<Arc<ClientAcl>>,
    acl_generation: u64,
    username: Option<String>,
    /// Who this client is, for plugin hooks (None when no hook is registered).
    pub(crate) hook_client: Option<ClientInfo>,
    /// Plugins' recent `authorizePublish` answers by topic.
    pub(crate) publish_verdicts: Option<Box<crate::connection::publish_auth::VerdictCache>>,
    /// Acks waiting for the persistence store (acknowledge-after-store),
    /// and the wake-up for deliveries paused while the store is behind.
    held_acks: Option<Box<HeldAcks>>,
}

/// PUBACK/PUBREC/PUBCOMP held back, in the order they must go out
/// [MQTT-4.6.0-2], [MQTT-4.6.0-3], until the batches they wait for are
/// stored.
struct HeldAcks {
    queue: std::collections::VecDeque<HeldAck>,
    settled: tokio::sync::watch::Receiver<u64>,
    /// The session's queue was not drained because the store is behind
    /// (`Journal::congested`): retry when it settles more.
    deliveries_paused: bool,
}

/// Resolves when the journal settles another batch while acks are held;
/// never otherwise.
async fn held_acks_settled(held: &mut Option<Box<HeldAcks>>) {
    match held {
        Some(h) if !h.queue.is_empty() || h.deliveries_paused => {
            if h.settled.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        _ => std::future::pending::<()>().await,
    }
}

/// Pending once, after waking its own task: tokio then reschedules the task
/// at the back of the worker's run queue (a wake from inside its own poll
/// counts as a yield and bypasses the LIFO slot). Unlike
/// `tokio::task::yield_now`, which defers the wake-up until the worker
/// parks, this costs no `epoll_wait` when no other task is runnable.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// The outcome of decoding and handling one packet synchronously.
enum Step {
    Handled(Flow),
    Incomplete,
    SubscribeNeedsHook(Box<fbroker_codec::Subscribe>),
}

/// What ended the session loop.
pub(crate) enum Flow {
    Continue,
    Close(DisconnectReason),
}

impl Connection {
    pub(crate) fn send(&mut self, packet: &Packet) {
        // Every packet the broker builds is within the codec's limits.
        let _ = encode(packet, self.version, &mut self.write_buf);
    }

    pub(crate) fn send_ack(&mut self, make: fn(Ack) -> Packet, packet_id: u16) {
        self.send(&make(Ack::new(packet_id)));
    }

    fn send_held(&mut self, kind: HeldAckKind, packet_id: u16) {
        let make = match kind {
            HeldAckKind::PubAck => Packet::PubAck,
            HeldAckKind::PubRec => Packet::PubRec,
            HeldAckKind::PubComp => Packet::PubComp,
        };
        self.send_ack(make, packet_id);
    }

    /// Forgets any journal ticket left on this thread, before handling a
    /// publish whose own ticket `ack_after_store` will take.
    pub(crate) fn start_ticket(&self) {
        if self.state.journal.is_some() {
            Journal::take_ticket();
        }
    }

    /// Sends the ack of an inbound publish, or holds it until the journal
    /// batch with the publish's durable ops is stored. An ack with nothing
    /// to wait for still queues behind held ones to keep the order.
    pub(crate) fn ack_after_store(&mut self, kind: HeldAckKind, packet_id: u16) {
        let ticket = match &self.state.journal {
            Some(journal) if journal.mode == PersistMode::AckAfterStore => Journal::take_ticket(),
            _ => 0,
        };
        let holding = self.held_acks.as_ref().is_some_and(|h| !h.queue.is_empty());
        if ticket == 0 && !holding {
            self.send_held(kind, packet_id);
            return;
        }
        let journal = self.state.journal.clone().expect("a ticket comes from the journal");
        let held = self.held_acks_mut(&journal);
        held.queue.push_back(HeldAck { ticket, kind, packet_id });
    }

    fn held_acks_mut(&mut self, journal: &Journal) -> &mut HeldAcks {
        self.held_acks.get_or_insert_with(|| {
            Box::new(HeldAcks { queue: Default::default(), settled: journal.subscribe_settled(), deliveries_paused: false })
        })
    }

    /// Sends the held acks whose batches are stored; a failed batch closes
    /// the connection without acking (the client re-sends after
    /// reconnecting).
    fn release_held_acks(&mut self) -> Result<(), DisconnectReason> {
        let Some(journal) = self.state.journal.clone() else { return Ok(()) };
        loop {
            let Some(held) = self.held_acks.as_mut() else { return Ok(()) };
            let settled = *held.settled.borrow_and_update();
            let Some(front) = held.queue.front().copied() else { return Ok(()) };
            if front.ticket > settled {
                return Ok(());
            }
            if front.ticket != 0 && journal.failed(front.ticket) {
                self.state.events.log(LogLevel::Warn, Some(&self.client_id), || {
                    "the persistence store could not take a publish: closing the connection without acknowledging it".into()
                });
                return Err(DisconnectReason::StorageUnavailable);
            }
            held.queue.pop_front();
            self.send_held(front.kind, front.packet_id);
        }
    }

    async fn run(&mut self) -> DisconnectReason {
        let mut shutdown = self.state.shutdown.clone();
        let far_future = Instant::now() + Duration::from_secs(86400 * 365);
        let keep_alive_deadline = sleep_until(self.keep_alive.map_or(far_future, |k| Instant::now() + k));
        tokio::pin!(keep_alive_deadline);
        if !self.read_buf.is_empty() {
            // Packets that came in the same read as CONNECT: the read that
            // found them drained the socket and cleared its readiness, so no
            // wake-up will come for them.
            let flow = self.handle_buffered().await;
            Stats::add(&self.state.stats.messages_received, std::mem::take(&mut self.received));
            match flow {
                Ok(Flow::Continue) => {}
                Ok(Flow::Close(reason)) | Err(reason) => return reason,
            }
        }
        let mut refills = 0u32;
        loop {
            if let Some(reason) = self.control.kicked() {
                return reason;
            }
            if self.held_acks.is_some() {
                if let Err(reason) = self.release_held_acks() {
                    return reason;
                }
            }
            let capped = self.drain_session();
            if let Err(reason) = self.flush_now() {
                return reason;
            }
            if capped && self.write_buf.len() < WRITE_HIGH_WATER {
                // The flush made room for what the high-water mark left
                // queued. No wake-up will come for those messages (the queue
                // never went empty), so drain again now; a reader that keeps
                // up with a long queue lets other tasks in every 4 MiB.
                refills += 1;
                if refills.is_multiple_of(16) {
                    YieldOnce(false).await;
                }
                continue;
            }
            refills = 0;
            // A TLS or WebSocket layer may hold output of its own (records,
            // pongs) even when the write buffer is empty.
            let want_write = !self.write_buf.is_empty() || self.stream.wants_write();
            let mut readable = false;
            let mut delivery = false;
            tokio::select! {
                biased;
                _ = shutdown.wait_for(|stopped| *stopped) => return DisconnectReason::ServerShutdown,
                _ = self.control.woken() => delivery = true,
                _ = held_acks_settled(&mut self.held_acks) => {}
                ready = self.stream.readable() => {
                    if ready.is_err() {
                        return DisconnectReason::SocketError;
                    }
                    readable = true;
                }
                ready = self.stream.writable(), if want_write => {
                    if ready.is_err() {
                        return DisconnectReason::SocketError;
                    }
                }
                _ = &mut keep_alive_deadline => {
                    self.state.events.log(LogLevel::Debug, Some(&self.client_id), || "keep-alive timeout".into());
                    return DisconnectReason::KeepAliveTimeout;
                }
            }
            if delivery && self.coalesce_deliveries() {
                YieldOnce(false).await;
            }
            // Handled outside the select so that a plugin hook awaited while
            // handling does not hold the other branches' futures.
            if readable {
                match self.read_and_handle().await {
                    Ok(true) => {
                        if let Some(k) = self.keep_alive {
                            keep_alive_deadline.as_mut().reset(Instant::now() + k);
                        }
                    }
                    Ok(false) => {}
                    Err(reason) => return reason,
                }
            }
        }
    }

    /// Whether to let the other runnable tasks go first before draining a
    /// delivery wake-up. The publisher that routed the message woke this
    /// task into tokio's LIFO slot, so without a yield it runs right after
    /// that one publisher and writes its message alone; publishers made
    /// ready by the same epoll wake-up then each cost the subscriber another
    /// `send`. Yielding puts this task behind them, and their messages join
    /// the queue first, so one write carries them all. When nothing else is
    /// runnable, the task is polled again at once, with no syscall between.
    fn coalesce_deliveries(&self) -> bool {
        if !self.write_buf.is_empty() {
            // Waiting for the socket anyway: the drain below adds to what
            // the next writable wake-up sends.
            return false;
        }
        let mut st = self.session.state.lock();
        st.coalescing = st.queue.len() < COALESCE_BELOW && st.is_owned_by(self.control.conn_id);
        st.coalescing
    }

    /// Drains the socket (up to the read budget), then decodes and handles
    /// every whole packet. Ok(true) when any byte arrived.
    async fn read_and_handle(&mut self) -> Result<bool, DisconnectReason> {
        let mut total = 0;
        let mut peer_closed = false;
        while total < READ_BUDGET {
            if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK / 2 {
                self.read_buf.reserve(READ_CHUNK);
            }
            match self.stream.read_available(&mut self.read_buf) {
                Ok(ReadOutcome::Closed) => {
                    peer_closed = true;
                    break;
                }
                Ok(ReadOutcome::More(n)) => total += n,
                Ok(ReadOutcome::Drained(n)) => {
                    total += n;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(DisconnectReason::SocketError),
            }
        }
        Stats::add(&self.state.stats.bytes_received, total as u64);
        let flow = self.handle_buffered().await;
        Stats::add(&self.state.stats.messages_received, std::mem::take(&mut self.received));
        if let Flow::Close(reason) = flow? {
            return Err(reason);
        }
        if self.read_buf.is_empty() && total < READ_CHUNK / 2 {
            // An idle client (pings, the odd publish) should not pin a read
            // buffer between packets: with many thousands of connections
            // that buffer would dominate the broker's memory.
            self.read_buf = BytesMut::new();
        }
        if peer_closed {
            return Err(DisconnectReason::SocketError);
        }
        Ok(total > 0)
    }

    async fn handle_buffered(&mut self) -> Result<Flow, DisconnectReason> {
        self.refresh_acl();
        if self.state.hooks.as_ref().is_some_and(|h| h.registered.authorize_publish) {
            return Ok(Box::pin(self.handle_buffered_with_publish_hook()).await);
        }
        loop {
            // Decoding and handling stay synchronous; only a SUBSCRIBE that
            // waits for a plugin suspends, and it is boxed so that an idle
            // connection's task does not reserve room for a whole packet.
            match self.decode_and_handle_next() {
                Step::Handled(Flow::Continue) => {}
                Step::Handled(flow) => return Ok(flow),
                Step::Incomplete => return Ok(Flow::Continue),
                Step::SubscribeNeedsHook(subscribe) => {
                    if let Flow::Close(reason) = Box::pin(self.subscribe_with_hook(*subscribe)).await {
                        return Ok(Flow::Close(reason));
                    }
                }
            }
        }
    }

    fn decode_and_handle_next(&mut self) -> Step {
        match fbroker_codec::decode(&mut self.read_buf, self.version, self.state.config.max_packet_size) {
            Ok(fbroker_codec::Decoded::Packet(Packet::Subscribe(subscribe))) if self.subscribe_hook() => {
                Step::SubscribeNeedsHook(Box::new(subscribe))
            }
            Ok(fbroker_codec::Decoded::Packet(packet)) => Step::Handled(self.handle_packet(packet, true)),
            Ok(fbroker_codec::Decoded::Incomplete { .. }) => Step::Incomplete,
            Err(e) => Step::Handled(self.malformed(e)),
        }
    }

    fn subscribe_hook(&self) -> bool {
        self.state.hooks.as_ref().is_some_and(|h| h.registered.authorize_subscribe)
    }

    async fn subscribe_with_hook(&mut self, subscribe: fbroker_codec::Subscribe) -> Flow {
        let grants = self.authorize_subscribe(&subscribe).await;
        self.on_subscribe(subscribe, grants)
    }

    /// With an `authorizePublish` hook, every whole packet of the batch is
    /// decoded first so all its publishes are authorized in one call; the
    /// packets are then handled in their original order.
    async fn handle_buffered_with_publish_hook(&mut self) -> Flow {
        let mut packets = Vec::new();
        let mut malformed = None;
        loop {
            match fbroker_codec::decode(&mut self.read_buf, self.version, self.state.config.max_packet_size) {
                Ok(fbroker_codec::Decoded::Packet(packet)) => packets.push(packet),
                Ok(fbroker_codec::Decoded::Incomplete { .. }) => break,
                Err(e) => {
                    malformed = Some(e);
                    break;
                }
            }
        }
        let verdicts = self.authorize_publishes(&packets).await;
        for (packet, allowed) in packets.into_iter().zip(verdicts) {
            let flow = match packet {
                Packet::Subscribe(subscribe) if self.subscribe_hook() => self.subscribe_with_hook(subscribe).await,
                packet => self.handle_packet(packet, allowed),
            };
            if let Flow::Close(reason) = flow {
                return Flow::Close(reason);
            }
        }
        match malformed {
            Some(e) => self.malformed(e),
            None => Flow::Continue,
        }
    }

    fn malformed(&self, e: fbroker_codec::DecodeError) -> Flow {
        self.protocol_error(format!("malformed packet from {}: {e}", self.peer))
    }

    /// Picks up a reloaded ACL before the next packet is handled.
    fn refresh_acl(&mut self) {
        let generation = self.state.auth.generation();
        if generation == self.acl_generation {
            return;
        }
        self.acl_generation = generation;
        self.acl = self.state.auth.compile_acl(&self.client_id, self.username.as_deref());
        self.session.state.lock().acl = self.acl.clone();
    }

    /// Moves queued messages into the write buffer while the in-flight
    /// window and the write high-water mark allow. True when the high-water
    /// mark stopped it (messages may be left).
    pub(crate) fn drain_session(&mut self) -> bool {
        if self.write_buf.len() >= WRITE_HIGH_WATER {
            return true;
        }
        // A persistent session's deliveries are journaled: while the store
        // is far behind, leave them queued rather than outrun it.
        if let Some(paused) = self.session.journal.as_ref().map(|j| j.congested()) {
            if paused || self.held_acks.is_some() {
                let journal = self.session.journal.clone().expect("checked above");
                self.held_acks_mut(&journal).deliveries_paused = paused;
            }
            if paused {
                self.session.state.lock().coalescing = false;
                return false;
            }
        }
        let max_inflight = self.state.config.max_inflight_messages.max(1);
        let mut st = self.session.state.lock();
        if !st.is_owned_by(self.control.conn_id) {
            return false;
        }
        st.coalescing = false;
        if st.queue.is_empty() {
            return false;
        }
        let mut sent = 0;
        while self.write_buf.len() < WRITE_HIGH_WATER {
            let Some(front) = st.queue.front() else { break };
            if front.qos != QoS::AtMostOnce && st.inflight.len() >= max_inflight {
                break;
            }
            let item = st.queue.pop_front().expect("front exists");
            let packet_id = if item.qos == QoS::AtMostOnce { 0 } else { st.inflight.allocate_packet_id() };
            encode_publish(&mut self.write_buf, self.version, item.msg.topic.as_str(), &item.msg.payload, item.qos, item.retain, false, packet_id, None);
            if self.state.events.wants_message(EventKind::Delivered, item.msg.topic.as_str()) {
                self.state.events.emit(BrokerEvent::Delivered {
                    client_id: self.client_id.clone(),
                    topic: item.msg.topic.to_string(),
                    qos: item.qos as u8,
                    packet_id,
                });
            }
            if item.qos != QoS::AtMostOnce {
                let stage = if item.qos == QoS::AtLeastOnce { Stage::AwaitingPubAck } else { Stage::AwaitingPubRec };
                if let Some(journal) = &self.session.journal {
                    let client_id = &self.session.client_id;
                    journal.record(PersistOp::QueueRemove { client_id: client_id.clone(), msg: item.msg.clone() });
                    journal.record(PersistOp::InflightSet {
                        client_id: client_id.clone(),
                        packet_id,
                        stage,
                        msg: Some(item.msg.clone()),
                        qos: item.qos,
                        retain: item.retain,
                    });
                }
                st.inflight.push(InflightEntry { packet_id, msg: item.msg, qos: item.qos, retain: item.retain, stage });
            }
            sent += 1;
        }
        let capped = self.write_buf.len() >= WRITE_HIGH_WATER && !st.queue.is_empty();
        drop(st);
        self.sent += sent;
        capped
    }

    /// Re-sends unacknowledged messages of a resumed session, with DUP set,
    /// in their original order [MQTT-4.4.0-1].
    fn resend_inflight(&mut self) {
        let st = self.session.state.lock();
        for entry in st.inflight.iter() {
            match entry.stage {
                Stage::AwaitingPubAck | Stage::AwaitingPubRec => encode_publish(
                    &mut self.write_buf,
                    self.version,
                    entry.msg.topic.as_str(),
                    &entry.msg.payload,
                    entry.qos,
                    entry.retain,
                    true,
                    entry.packet_id,
                    None,
                ),
                Stage::AwaitingPubComp => {
                    let _ = encode(&Packet::PubRel(Ack::new(entry.packet_id)), self.version, &mut self.write_buf);
                }
            }
        }
    }

    /// Writes as much of the buffer as the socket takes without waiting.
    fn flush_now(&mut self) -> Result<(), DisconnectReason> {
        let mut written = 0;
        while !self.write_buf.is_empty() {
            match self.stream.try_write(&self.write_buf) {
                Ok(0) => return Err(DisconnectReason::SocketError),
                Ok(n) => {
                    self.write_buf.advance(n);
                    written += n;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return Err(DisconnectReason::SocketError),
            }
        }
        if self.stream.flush_pending().is_err() {
            return Err(DisconnectReason::SocketError);
        }
        Stats::add(&self.state.stats.bytes_sent, written as u64);
        Stats::add(&self.state.stats.messages_sent, std::mem::take(&mut self.sent));
        if self.write_buf.is_empty() && self.write_buf.capacity() > 64 * 1024 {
            // Give back a burst's buffer instead of holding it while idle.
            self.write_buf = BytesMut::with_capacity(256);
        }
        Ok(())
    }

    async fn finish(mut self, reason: DisconnectReason) {
        if reason == DisconnectReason::Normal || reason == DisconnectReason::ServerShutdown {
            // Best effort: let acks already produced reach the client.
            let _ = timeout(Duration::from_millis(200), self.stream.write_all(&self.write_buf)).await;
        }
        let _ = timeout(Duration::from_secs(1), self.stream.shutdown()).await;
        drop(self.stream);
        self.state.registry.detach(&self.state.router, &self.session, self.control.conn_id);
        if reason.publishes_will() {
            if let Some(will) = self.will.take() {
                // The will is the client's last publish: the same rules as
                // for its other publishes apply ($SYS, its ACL).
                let topic = will.topic.as_str();
                let allowed = !topic.starts_with("$SYS") && self.acl.as_ref().is_none_or(|acl| acl.can_publish(topic));
                if allowed {
                    self.state.publish(Message::new(will.topic, will.payload, will.qos, will.retain));
                } else {
                    self.state.stats.publish_denied.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        let client_id = self.client_id;
        self.state.events.emit_if_wanted(EventKind::ClientDisconnected, || BrokerEvent::ClientDisconnected { client_id, reason });
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{BrokerConfig, LogLevel};
    use crate::events::{BrokerEvent, EventBus, EventSink};
    use crate::state::BrokerState;
    use crate::stats::Stats;
    use std::sync::Arc;

    struct Discard;
    impl EventSink for Discard {
        fn deliver(&self, _: Vec<BrokerEvent>) {}
    }

    /// Every idle connection pays for its task's future: keep it small so
    /// 10,000 idle clients cost megabytes, not tens of megabytes.
    #[tokio::test]
    async fn an_idle_connection_task_stays_small() {
        let stats = Arc::new(Stats::default());
        let events = EventBus::start(Arc::new(Discard), LogLevel::Info, stats.clone());
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(BrokerState::new(BrokerConfig::default(), stats, events, None, rx, None));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let config = crate::config::ListenerConfig::tcp("127.0.0.1", addr.port());
        let context = Arc::new(crate::listener::ListenerContext::new(&config, addr.port()));
        let slot = crate::listener::ConnectionSlot::claim(&state, &context).unwrap();
        let task = super::serve(state, stream, addr, slot);
        let size = std::mem::size_of_val(&task);
        eprintln!("connection future: {size} bytes");
        assert!(size <= 1536, "the connection future grew to {size} bytes");
    }
}
