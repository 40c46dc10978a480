//! The N-API surface of fbroker. Deliberately thin: it converts the config
//! and events between JS objects and `fbroker-core` types and forwards
//! commands; all behaviour lives in the engine crate.
//!
//! FFI contract (documented in docs/ARCHITECTURE.md):
//! - Rust → JS: lifecycle and log events, in batches, through one
//!   threadsafe function ([`EventsCallback`]) with a bounded queue;
//! - JS → Rust: `NativeBroker` methods (`publish`, `disconnectClient`,
//!   `stats`, `listeners`, `stop`) and `raiseOpenFileLimit`.

#![deny(clippy::all)]

mod journal_wire;

use fbroker_auth::{Acl, PasswordFile};
use fbroker_core::auth::AuthSettings;
use fbroker_core::broker::PersistenceSetup;
use fbroker_core::hooks::{HookRequest, HookResponse, HookSink, RegisteredHooks};
use fbroker_core::persistence::restore::{Snapshot, StoredInflight, StoredMessage, StoredSession};
use fbroker_core::persistence::{PersistBatch, PersistMode, PersistSink, WillRecord};
use fbroker_core::session::inflight::Stage;
use fbroker_core::{
    Broker, BrokerConfig, BrokerEvent, EventSink, ListenerConfig, ListenerKind, ListenerTransport, LogLevel, QueueDropPolicy,
    TlsOptions, TlsSettings, WsSettings,
};
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use std::sync::Arc;
use std::time::Duration;

/// Batches waiting for the JS thread before new ones are dropped (and
/// counted by the engine as dropped events). Callee-handled: JS receives
/// `(err, events)`. Strong: the broker keeps Node's event loop alive until
/// it is stopped, like a listening `net.Server`.
type EventsCallback = ThreadsafeFunction<Vec<NativeEvent>, (), Vec<NativeEvent>, Status, true, false, 1024>;

/// Plugin hook requests, batched. Unbounded (0): every request must reach
/// JS, and each connection has at most one outstanding, so the queue is
/// bounded by the number of connections. Weak: hooks alone do not keep
/// Node alive; the events callback does.
type HooksCallback = ThreadsafeFunction<Vec<NativeHookRequest>, (), Vec<NativeHookRequest>, Status, true, true, 0>;

/// Persistence journal batches. Unbounded (0): a dropped batch would hold
/// its publishers' acks forever; the control plane bounds what it buffers
/// and fails batches past that bound instead. Weak, like hooks.
type PersistCallback = ThreadsafeFunction<NativePersistBatch, (), NativePersistBatch, Status, true, true, 0>;

/// A message as the persistence store keeps it. `id` is a decimal u64.
#[napi(object)]
pub struct NativeStoredMessage {
    pub id: String,
    pub topic: String,
    pub payload: Buffer,
    /// The publish QoS (a queue entry's delivery QoS is on its op).
    pub qos: u32,
    pub retain: bool,
}

#[napi(object)]
pub struct NativeStoredWill {
    pub topic: String,
    pub payload: Buffer,
    pub qos: u32,
    pub retain: bool,
}

#[napi(object)]
pub struct NativeStoredSubscription {
    pub filter: String,
    pub qos: u32,
}

#[napi(object)]
pub struct NativeStoredInflight {
    pub packet_id: u32,
    /// `puback`, `pubrec` or `pubcomp`: the ack it waits for.
    pub stage: String,
    /// Absent for `pubcomp`.
    pub message: Option<NativeStoredMessage>,
    /// Delivery QoS.
    pub qos: u32,
    pub retain: Option<bool>,
}

#[napi(object)]
pub struct NativeStoredSession {
    pub client_id: String,
    /// Epoch ms of the last disconnect; absent when the broker went down
    /// while the client was connected (its will is then published).
    pub disconnected_at_ms: Option<f64>,
    pub will: Option<NativeStoredWill>,
    pub subscriptions: Vec<NativeStoredSubscription>,
    /// Oldest first; each message's `qos` here is the delivery QoS.
    pub queue: Vec<NativeStoredMessage>,
    pub inflight: Vec<NativeStoredInflight>,
    pub incoming_qos2: Vec<u32>,
}

/// Turns persistence on: how acks relate to stores, and the state read
/// back from the store.
#[napi(object)]
pub struct NativePersistence {
    /// `ack_after_store` or `async`.
    pub mode: String,
    pub sessions: Vec<NativeStoredSession>,
    pub retained: Vec<NativeStoredMessage>,
}

/// One journal batch: acknowledge it with `persistAck(seq, stored)`.
/// `data` is the batch in the wire form of `journal_wire.rs` (decoded by
/// `persistence/journalWire.ts`): one buffer, so the hand-over costs no JS
/// object per op or message.
#[napi(object)]
pub struct NativePersistBatch {
    pub seq: f64,
    pub data: Buffer,
}

/// One listener. TLS fields apply to `tls` and `wss`, WebSocket fields to
/// `ws` and `wss`.
#[napi(object)]
pub struct NativeListenerConfig {
    /// `tcp`, `tls`, `ws` or `wss`.
    pub protocol: String,
    pub host: String,
    pub port: u32,
    /// Connections this listener admits at once; 0 or absent = only the
    /// broker-wide maxConnections applies.
    pub max_connections: Option<u32>,
    /// Every connection starts with an HAProxy PROXY v1/v2 header.
    pub proxy_protocol: Option<bool>,
    /// PEM: server certificate, then any intermediates.
    pub cert_file: Option<String>,
    /// PEM: the server's private key.
    pub key_file: Option<String>,
    /// PEM: CAs that client certificates are verified against.
    pub ca_file: Option<String>,
    pub require_certificate: Option<bool>,
    /// The verified client certificate's subject CN becomes the username.
    pub use_identity_as_username: Option<bool>,
    /// WebSocket request path; default `/mqtt`.
    pub ws_path: Option<String>,
    /// Browser origins admitted; empty or absent = any.
    pub allowed_origins: Option<Vec<String>>,
}

#[napi(object)]
pub struct NativeBrokerConfig {
    pub listeners: Vec<NativeListenerConfig>,
    pub max_connections: u32,
    pub max_packet_size: u32,
    pub max_inflight_messages: u32,
    pub max_queued_messages: u32,
    pub max_queued_bytes: i64,
    pub queue_drop_policy: String,
    pub max_topic_levels: u32,
    pub max_topic_length: u32,
    pub max_client_id_length: u32,
    pub connect_timeout_ms: u32,
    pub session_expiry_secs: u32,
    pub worker_threads: u32,
    pub log_level: String,
    pub allow_anonymous: bool,
    /// Contents of the password file (Mosquitto `$7$`/`$6$` or legacy sha256 lines).
    pub password_file: Option<String>,
    /// Contents of the ACL file (Mosquitto format).
    pub acl_file: Option<String>,
    pub hooks: NativeRegisteredHooks,
    pub hook_timeout_ms: u32,
    pub publish_auth_cache_ttl_ms: u32,
}

#[napi(object)]
pub struct NativeRegisteredHooks {
    pub authenticate: bool,
    pub authorize_subscribe: bool,
    pub authorize_publish: bool,
}

#[napi(object)]
pub struct NativeHookClient {
    pub id: String,
    pub username: Option<String>,
    pub address: String,
    pub protocol_version: u32,
}

#[napi(object)]
pub struct NativePublishCheck {
    pub topic: String,
    pub payload: Buffer,
    pub qos: u32,
    pub retain: bool,
}

#[napi(object)]
pub struct NativeHookRequest {
    pub id: f64,
    /// 'authenticate' | 'authorizeSubscribe' | 'authorizePublish'
    pub kind: String,
    pub client: NativeHookClient,
    pub username: Option<String>,
    pub password: Option<Buffer>,
    pub subscriptions: Option<Vec<NativeSubscription>>,
    pub publishes: Option<Vec<NativePublishCheck>>,
}

#[napi(object)]
pub struct NativeHookResponse {
    pub id: f64,
    pub kind: String,
    /// authenticate: 0 accepts, another number is the CONNACK return code, absent = no plugin answered.
    pub code: Option<u32>,
    /// authorizeSubscribe: per filter, the granted QoS ceiling or 128 (0x80).
    pub grants: Option<Vec<u32>>,
    /// authorizePublish: per publish.
    pub allowed: Option<Vec<bool>>,
}

#[napi(object)]
pub struct NativeBoundListener {
    pub protocol: String,
    pub host: String,
    pub port: u32,
}

#[napi(object)]
pub struct NativeSubscription {
    pub topic: String,
    pub qos: u32,
}

#[napi(object)]
#[derive(Default)]
pub struct NativeEvent {
    pub kind: String,
    pub client_id: Option<String>,
    pub address: Option<String>,
    pub username: Option<String>,
    pub protocol_version: Option<u32>,
    pub clean_session: Option<bool>,
    pub session_present: Option<bool>,
    pub keep_alive: Option<u32>,
    pub reason: Option<String>,
    pub subscriptions: Option<Vec<NativeSubscription>>,
    pub topics: Option<Vec<String>>,
    pub level: Option<String>,
    pub message: Option<String>,
    /// published / delivered / acked
    pub topic: Option<String>,
    /// published
    pub payload: Option<Buffer>,
    pub qos: Option<u32>,
    pub retain: Option<bool>,
    /// delivered / acked (0 for QoS 0)
    pub packet_id: Option<u32>,
}

#[napi(object)]
pub struct NativeStats {
    pub connections: f64,
    pub sessions: f64,
    pub subscriptions: f64,
    pub retained_messages: f64,
    pub messages_received: f64,
    pub messages_sent: f64,
    pub bytes_received: f64,
    pub bytes_sent: f64,
    pub publish_dropped: f64,
    pub publish_denied: f64,
    pub events_dropped: f64,
    pub events_delivered: f64,
    pub uptime_secs: f64,
}

#[napi(object)]
pub struct NativeOpenFileLimit {
    pub soft: f64,
    pub hard: f64,
}

fn to_listener_config(l: NativeListenerConfig, max_packet_size: usize) -> Result<ListenerConfig> {
    let invalid = |what: String| Error::new(Status::InvalidArg, what);
    let what = format!("{} listener {}:{}", l.protocol, l.host, l.port);
    let kind = match l.protocol.as_str() {
        "tcp" => ListenerKind::Tcp,
        "tls" => ListenerKind::Tls,
        "ws" => ListenerKind::Ws,
        "wss" => ListenerKind::Wss,
        other => return Err(invalid(format!("listener protocol {other:?} is not one of tcp, tls, ws, wss"))),
    };
    let port = u16::try_from(l.port).map_err(|_| invalid(format!("{what}: port {} out of range", l.port)))?;
    let tls = if kind.uses_tls() {
        let (Some(cert_file), Some(key_file)) = (l.cert_file, l.key_file) else {
            return Err(invalid(format!("{what}: needs a certificate file and a key file")));
        };
        let options = TlsOptions {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            ca_file: l.ca_file.map(Into::into),
            require_certificate: l.require_certificate.unwrap_or(false),
            use_identity_as_username: l.use_identity_as_username.unwrap_or(false),
        };
        // Reads and checks the PEM files now, so a bad file fails start
        // with its name instead of failing every handshake later.
        Some(Arc::new(TlsSettings::load(options).map_err(|e| invalid(format!("{what}: {e}")))?))
    } else {
        None
    };
    let ws = kind.uses_websocket().then(|| WsSettings {
        path: l.ws_path.unwrap_or_else(|| "/mqtt".into()),
        allowed_origins: l.allowed_origins.unwrap_or_default(),
        // max_packet_size counts the whole packet, fixed header included,
        // so a frame larger than that cannot hold an acceptable packet.
        max_frame_size: max_packet_size,
    });
    let transport = ListenerTransport { kind, tls, ws, proxy_protocol: l.proxy_protocol.unwrap_or(false) };
    Ok(ListenerConfig { host: l.host, port, transport, max_connections: l.max_connections.unwrap_or(0) as usize })
}

fn to_core_config(c: NativeBrokerConfig) -> Result<BrokerConfig> {
    let invalid = |what: String| Error::new(Status::InvalidArg, what);
    let mut listeners = Vec::with_capacity(c.listeners.len());
    for l in c.listeners {
        listeners.push(to_listener_config(l, c.max_packet_size as usize)?);
    }
    let queue_drop_policy = match c.queue_drop_policy.as_str() {
        "drop_oldest" => QueueDropPolicy::DropOldest,
        "drop_new" => QueueDropPolicy::DropNew,
        other => return Err(invalid(format!("queueDropPolicy {other:?} is not one of drop_oldest, drop_new"))),
    };
    let log_level = LogLevel::parse(&c.log_level).ok_or_else(|| invalid(format!("logLevel {:?} is not valid", c.log_level)))?;
    let password_file = c.password_file.as_deref().map(parse_password_file).transpose()?;
    let acl = c.acl_file.as_deref().map(parse_acl).transpose()?;
    Ok(BrokerConfig {
        listeners,
        max_connections: c.max_connections as usize,
        max_packet_size: c.max_packet_size as usize,
        max_inflight_messages: c.max_inflight_messages as usize,
        max_queued_messages: c.max_queued_messages as usize,
        max_queued_bytes: c.max_queued_bytes.max(0) as usize,
        queue_drop_policy,
        max_topic_levels: c.max_topic_levels as usize,
        max_topic_length: c.max_topic_length as usize,
        max_client_id_length: c.max_client_id_length as usize,
        connect_timeout: Duration::from_millis(c.connect_timeout_ms as u64),
        session_expiry: (c.session_expiry_secs > 0).then(|| Duration::from_secs(c.session_expiry_secs as u64)),
        worker_threads: c.worker_threads as usize,
        log_level,
        auth: AuthSettings {
            allow_anonymous: c.allow_anonymous,
            password_file,
            acl,
            publish_cache_ttl: Duration::from_millis(c.publish_auth_cache_ttl_ms as u64),
        },
        hooks: RegisteredHooks {
            authenticate: c.hooks.authenticate,
            authorize_subscribe: c.hooks.authorize_subscribe,
            authorize_publish: c.hooks.authorize_publish,
        },
        hook_timeout: Duration::from_millis(c.hook_timeout_ms.max(1) as u64),
    })
}

/// Parse errors name the line ("password file line 3: ..."); the control
/// plane adds the file's path.
fn parse_password_file(text: &str) -> Result<PasswordFile> {
    PasswordFile::parse(text).map(|(file, _warnings)| file).map_err(|e| Error::new(Status::InvalidArg, e.to_string()))
}

fn parse_acl(text: &str) -> Result<Acl> {
    Acl::parse(text).map(|(acl, _warnings)| acl).map_err(|e| Error::new(Status::InvalidArg, e.to_string()))
}

/// Warnings (legacy hashes, duplicate users, placeholders in `topic` lines)
/// for the control plane to log; parse errors are thrown.
#[napi(catch_unwind)]
pub fn check_auth_files(password_file: Option<String>, acl_file: Option<String>) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    if let Some(text) = password_file {
        let (_, w) = PasswordFile::parse(&text).map_err(|e| Error::new(Status::InvalidArg, e.to_string()))?;
        warnings.extend(w.iter().map(|w| w.to_string()));
    }
    if let Some(text) = acl_file {
        let (_, w) = Acl::parse(&text).map_err(|e| Error::new(Status::InvalidArg, e.to_string()))?;
        warnings.extend(w.iter().map(|w| w.to_string()));
    }
    Ok(warnings)
}

/// A Mosquitto-compatible `$7$` PBKDF2-SHA512 hash with a fresh salt.
#[napi(catch_unwind)]
pub fn hash_password(password: Buffer, iterations: u32) -> String {
    fbroker_auth::hash_password(&password, iterations.max(1), &fbroker_auth::generate_salt())
}

fn to_native_hook_request(id: u64, request: HookRequest) -> NativeHookRequest {
    let client_of = |c: fbroker_core::hooks::ClientInfo| NativeHookClient {
        id: c.client_id,
        username: c.username,
        address: c.address,
        protocol_version: c.protocol_version as u32,
    };
    let mut out = NativeHookRequest {
        id: id as f64,
        kind: String::new(),
        client: NativeHookClient { id: String::new(), username: None, address: String::new(), protocol_version: 0 },
        username: None,
        password: None,
        subscriptions: None,
        publishes: None,
    };
    match request {
        HookRequest::Authenticate { client, username, password } => {
            out.kind = "authenticate".into();
            out.client = client_of(client);
            out.username = username;
            out.password = password.map(|p| Buffer::from(p.to_vec()));
        }
        HookRequest::AuthorizeSubscribe { client, subscriptions } => {
            out.kind = "authorizeSubscribe".into();
            out.client = client_of(client);
            out.subscriptions =
                Some(subscriptions.into_iter().map(|(topic, qos)| NativeSubscription { topic, qos: qos as u32 }).collect());
        }
        HookRequest::AuthorizePublish { client, publishes } => {
            out.kind = "authorizePublish".into();
            out.client = client_of(client);
            out.publishes = Some(
                publishes
                    .into_iter()
                    .map(|p| NativePublishCheck {
                        topic: p.topic,
                        payload: Buffer::from(p.payload.to_vec()),
                        qos: p.qos as u32,
                        retain: p.retain,
                    })
                    .collect(),
            );
        }
    }
    out
}

fn to_hook_response(r: NativeHookResponse) -> Option<HookResponse> {
    match r.kind.as_str() {
        "authenticate" => Some(HookResponse::Authenticate(r.code.map(|c| c.min(255) as u8))),
        "authorizeSubscribe" => Some(HookResponse::AuthorizeSubscribe(r.grants?.into_iter().map(|g| g.min(0x80) as u8).collect())),
        "authorizePublish" => Some(HookResponse::AuthorizePublish(r.allowed?)),
        _ => None,
    }
}

struct JsHookSink {
    callback: HooksCallback,
}

struct JsPersistSink {
    callback: PersistCallback,
}

impl PersistSink for JsPersistSink {
    fn deliver(&self, batch: PersistBatch) {
        self.callback.call(Ok(to_native_batch(batch)), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

fn qos_of(n: u32) -> Result<fbroker_core::QoS> {
    fbroker_core::QoS::from_u8(n.min(255) as u8).ok_or_else(|| Error::new(Status::InvalidArg, format!("stored qos {n} is not 0, 1 or 2")))
}

fn stored_message(m: NativeStoredMessage) -> Result<StoredMessage> {
    let id = m.id.parse::<u64>().map_err(|_| Error::new(Status::InvalidArg, format!("stored message id {:?} is not a u64", m.id)))?;
    Ok(StoredMessage { id, topic: m.topic, payload: bytes_from_buffer(m.payload), qos: qos_of(m.qos)?, retain: m.retain })
}

fn stored_will(w: NativeStoredWill) -> Result<WillRecord> {
    Ok(WillRecord { topic: w.topic, payload: bytes_from_buffer(w.payload), qos: qos_of(w.qos)?, retain: w.retain })
}

fn to_persistence_setup(p: NativePersistence, sink: JsPersistSink) -> Result<PersistenceSetup> {
    let mode = match p.mode.as_str() {
        "ack_after_store" => PersistMode::AckAfterStore,
        "async" => PersistMode::Async,
        other => return Err(Error::new(Status::InvalidArg, format!("persistence mode {other:?} is not ack_after_store or async"))),
    };
    let mut sessions = Vec::with_capacity(p.sessions.len());
    for s in p.sessions {
        let mut inflight = Vec::with_capacity(s.inflight.len());
        for e in s.inflight {
            let stage = match e.stage.as_str() {
                "puback" => Stage::AwaitingPubAck,
                "pubrec" => Stage::AwaitingPubRec,
                "pubcomp" => Stage::AwaitingPubComp,
                other => return Err(Error::new(Status::InvalidArg, format!("stored in-flight stage {other:?}"))),
            };
            let packet_id = u16::try_from(e.packet_id).map_err(|_| Error::new(Status::InvalidArg, "stored packet id out of range"))?;
            let message = e.message.map(stored_message).transpose()?.map(|mut m| {
                m.retain = e.retain.unwrap_or(m.retain);
                m
            });
            inflight.push(StoredInflight { packet_id, stage, message, qos: qos_of(e.qos)? });
        }
        sessions.push(StoredSession {
            client_id: s.client_id,
            disconnected_at: s.disconnected_at_ms.map(|ms| std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0.0) as u64)),
            will: s.will.map(stored_will).transpose()?,
            subscriptions: s.subscriptions.into_iter().map(|sub| Ok((sub.filter, qos_of(sub.qos)?))).collect::<Result<_>>()?,
            queue: s.queue.into_iter().map(stored_message).collect::<Result<_>>()?,
            inflight,
            incoming_qos2: s.incoming_qos2.into_iter().filter_map(|id| u16::try_from(id).ok()).collect(),
        });
    }
    let retained = p.retained.into_iter().map(stored_message).collect::<Result<_>>()?;
    Ok(PersistenceSetup { mode, sink: Arc::new(sink), snapshot: Snapshot { sessions, retained } })
}

fn to_native_batch(batch: PersistBatch) -> NativePersistBatch {
    NativePersistBatch { seq: batch.seq as f64, data: Buffer::from(journal_wire::encode(&batch)) }
}

impl HookSink for JsHookSink {
    fn deliver(&self, batch: Vec<(u64, HookRequest)>) {
        let requests = batch.into_iter().map(|(id, r)| to_native_hook_request(id, r)).collect();
        self.callback.call(Ok(requests), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

fn to_native_event(e: BrokerEvent) -> NativeEvent {
    match e {
        BrokerEvent::ClientConnected { client_id, address, username, protocol_version, clean_session, session_present, keep_alive } => NativeEvent {
            kind: "clientConnected".into(),
            client_id: Some(client_id),
            address: Some(address),
            username,
            protocol_version: Some(protocol_version as u32),
            clean_session: Some(clean_session),
            session_present: Some(session_present),
            keep_alive: Some(keep_alive as u32),
            ..Default::default()
        },
        BrokerEvent::ClientDisconnected { client_id, reason } => NativeEvent {
            kind: "clientDisconnected".into(),
            client_id: Some(client_id),
            reason: Some(reason.as_str().into()),
            ..Default::default()
        },
        BrokerEvent::Subscribed { client_id, subscriptions } => NativeEvent {
            kind: "subscribed".into(),
            client_id: Some(client_id),
            subscriptions: Some(subscriptions.into_iter().map(|(topic, qos)| NativeSubscription { topic, qos: qos as u32 }).collect()),
            ..Default::default()
        },
        BrokerEvent::Unsubscribed { client_id, topics } => NativeEvent {
            kind: "unsubscribed".into(),
            client_id: Some(client_id),
            topics: Some(topics),
            ..Default::default()
        },
        BrokerEvent::Log { level, client_id, message } => NativeEvent {
            kind: "log".into(),
            client_id,
            level: Some(level.as_str().into()),
            message: Some(message),
            ..Default::default()
        },
        BrokerEvent::Panic { message } => NativeEvent { kind: "panic".into(), message: Some(message), ..Default::default() },
        BrokerEvent::Published { client_id, topic, payload, qos, retain } => NativeEvent {
            kind: "published".into(),
            client_id: Some(client_id),
            topic: Some(topic),
            payload: Some(Buffer::from(payload.to_vec())),
            qos: Some(qos as u32),
            retain: Some(retain),
            ..Default::default()
        },
        BrokerEvent::Delivered { client_id, topic, qos, packet_id } => NativeEvent {
            kind: "delivered".into(),
            client_id: Some(client_id),
            topic: Some(topic),
            qos: Some(qos as u32),
            packet_id: Some(packet_id as u32),
            ..Default::default()
        },
        BrokerEvent::Acked { client_id, topic, qos, packet_id } => NativeEvent {
            kind: "acked".into(),
            client_id: Some(client_id),
            topic: Some(topic),
            qos: Some(qos as u32),
            packet_id: Some(packet_id as u32),
            ..Default::default()
        },
        BrokerEvent::ClientError { client_id, message } => {
            NativeEvent { kind: "clientError".into(), client_id, message: Some(message), ..Default::default() }
        }
    }
}

struct JsEventSink {
    callback: EventsCallback,
}

impl EventSink for JsEventSink {
    fn deliver(&self, batch: Vec<BrokerEvent>) {
        let events: Vec<NativeEvent> = batch.into_iter().map(to_native_event).collect();
        // NonBlocking: when JS falls 1024 batches behind, this batch is
        // dropped rather than stalling the engine.
        self.callback.call(Ok(events), ThreadsafeFunctionCallMode::NonBlocking);
    }
}

#[napi]
pub struct NativeBroker {
    inner: Arc<Broker>,
}

pub struct StartTask {
    config: Option<BrokerConfig>,
    sink: Option<JsEventSink>,
    hook_sink: Option<JsHookSink>,
    persistence: Option<PersistenceSetup>,
}

impl Task for StartTask {
    type Output = Broker;
    type JsValue = NativeBroker;

    fn compute(&mut self) -> Result<Broker> {
        let config = self.config.take().expect("start runs once");
        let sink = self.sink.take().expect("start runs once");
        let hook_sink = self.hook_sink.take().map(|s| Arc::new(s) as Arc<dyn HookSink>);
        Broker::start(config, Arc::new(sink), hook_sink, self.persistence.take()).map_err(|e| Error::new(Status::GenericFailure, e))
    }

    fn resolve(&mut self, _env: Env, broker: Broker) -> Result<NativeBroker> {
        Ok(NativeBroker { inner: Arc::new(broker) })
    }
}

pub struct StopTask {
    broker: Arc<Broker>,
}

impl Task for StopTask {
    type Output = ();
    type JsValue = ();

    fn compute(&mut self) -> Result<()> {
        self.broker.stop();
        Ok(())
    }

    fn resolve(&mut self, _env: Env, _output: ()) -> Result<()> {
        Ok(())
    }
}

#[napi]
impl NativeBroker {
    /// Binds every listener and starts serving; events arrive in batches
    /// through `onEvents(err, events)`.
    #[napi(
        catch_unwind,
        ts_args_type = "config: NativeBrokerConfig, onEvents: (err: Error | null, events: NativeEvent[]) => void, onHooks?: ((err: Error | null, requests: NativeHookRequest[]) => void) | null, persistence?: NativePersistence | null, onPersist?: ((err: Error | null, batch: NativePersistBatch) => void) | null",
        ts_return_type = "Promise<NativeBroker>"
    )]
    pub fn start(
        config: NativeBrokerConfig,
        on_events: Function<'_, Vec<NativeEvent>, ()>,
        on_hooks: Option<Function<'_, Vec<NativeHookRequest>, ()>>,
        persistence: Option<NativePersistence>,
        on_persist: Option<Function<'_, NativePersistBatch, ()>>,
    ) -> Result<AsyncTask<StartTask>> {
        let persistence = match (persistence, on_persist) {
            (Some(p), Some(f)) => {
                let callback: PersistCallback = f
                    .build_threadsafe_function::<NativePersistBatch>()
                    .callee_handled::<true>()
                    .weak::<true>()
                    .max_queue_size::<0>()
                    .build()?;
                Some(to_persistence_setup(p, JsPersistSink { callback })?)
            }
            (Some(_), None) => return Err(Error::new(Status::InvalidArg, "persistence needs an onPersist callback")),
            _ => None,
        };
        let config = to_core_config(config)?;
        let callback: EventsCallback =
            on_events.build_threadsafe_function::<Vec<NativeEvent>>().callee_handled::<true>().max_queue_size::<1024>().build()?;
        let hook_sink = match on_hooks {
            Some(f) if config.hooks.any() => {
                let callback: HooksCallback = f
                    .build_threadsafe_function::<Vec<NativeHookRequest>>()
                    .callee_handled::<true>()
                    .weak::<true>()
                    .max_queue_size::<0>()
                    .build()?;
                Some(JsHookSink { callback })
            }
            _ => None,
        };
        Ok(AsyncTask::new(StartTask { config: Some(config), sink: Some(JsEventSink { callback }), hook_sink, persistence }))
    }

    /// Which events to send: a mask of clientConnected = 1,
    /// clientDisconnected = 2, subscribed = 4, unsubscribed = 8, and the
    /// per-message kinds published = 16, delivered = 32, acked = 64, plus
    /// clientError = 128. Kinds left out are filtered in Rust and never built.
    #[napi(catch_unwind)]
    pub fn set_event_interest(&self, mask: u32) {
        self.inner.set_event_interest(mask);
    }

    /// Limits the per-message events to topics matching these filters
    /// (empty = every topic); matching happens in Rust.
    #[napi(catch_unwind)]
    pub fn set_message_event_filters(&self, filters: Vec<String>) {
        self.inner.set_message_event_filters(filters);
    }

    /// Answers to hook requests, by id; unknown (timed-out) ids are ignored.
    #[napi(catch_unwind)]
    pub fn resolve_hooks(&self, responses: Vec<NativeHookResponse>) {
        for r in responses {
            let id = r.id as u64;
            if let Some(response) = to_hook_response(r) {
                self.inner.resolve_hook(id, response);
            }
        }
    }

    /// Replaces the password file and ACL (both as file contents; None =
    /// not configured) without dropping connections. Throws on a parse
    /// error, leaving the previous files in force.
    #[napi(catch_unwind)]
    pub fn reload_auth(&self, password_file: Option<String>, acl_file: Option<String>) -> Result<()> {
        let password_file = password_file.as_deref().map(parse_password_file).transpose()?;
        let acl = acl_file.as_deref().map(parse_acl).transpose()?;
        self.inner.reload_auth(password_file, acl);
        Ok(())
    }

    /// The control plane's answer for journal batch `seq`: stored, or not
    /// (then the publishes waiting for it are refused). Acks go in order.
    #[napi(catch_unwind)]
    pub fn persist_ack(&self, seq: f64, stored: bool) {
        self.inner.persist_ack(seq as u64, stored);
    }

    /// Re-reads every TLS listener's certificate, key and CA files; new
    /// handshakes use them, established connections are untouched. Returns
    /// one message per listener that failed and kept its old files.
    #[napi(catch_unwind)]
    pub fn reload_tls(&self) -> Vec<String> {
        self.inner.reload_tls()
    }

    #[napi(catch_unwind)]
    pub fn listeners(&self) -> Vec<NativeBoundListener> {
        self.inner
            .listeners()
            .iter()
            .map(|l| NativeBoundListener { protocol: l.protocol.into(), host: l.host.clone(), port: l.port as u32 })
            .collect()
    }

    /// Injects a message as if a client published it.
    #[napi(catch_unwind)]
    pub fn publish(&self, topic: String, payload: Buffer, qos: u32, retain: bool) -> Result<()> {
        let payload = bytes_from_buffer(payload);
        self.inner.publish(&topic, payload, qos.min(255) as u8, retain).map_err(|e| Error::new(Status::InvalidArg, e))
    }

    #[napi(catch_unwind)]
    pub fn disconnect_client(&self, client_id: String) -> bool {
        self.inner.disconnect_client(&client_id)
    }

    #[napi(catch_unwind)]
    pub fn stats(&self) -> NativeStats {
        let s = self.inner.stats();
        NativeStats {
            connections: s.connections as f64,
            sessions: s.sessions as f64,
            subscriptions: s.subscriptions as f64,
            retained_messages: s.retained_messages as f64,
            messages_received: s.messages_received as f64,
            messages_sent: s.messages_sent as f64,
            bytes_received: s.bytes_received as f64,
            bytes_sent: s.bytes_sent as f64,
            publish_dropped: s.publish_dropped as f64,
            publish_denied: s.publish_denied as f64,
            events_dropped: s.events_dropped as f64,
            events_delivered: s.events_delivered as f64,
            uptime_secs: s.uptime_secs,
        }
    }

    /// Stops accepting, closes every connection without publishing wills.
    #[napi(catch_unwind, ts_return_type = "Promise<void>")]
    pub fn stop(&self) -> AsyncTask<StopTask> {
        AsyncTask::new(StopTask { broker: self.inner.clone() })
    }
}

fn bytes_from_buffer(payload: Buffer) -> fbroker_core::bytes::Bytes {
    // One copy out of the JS heap: the engine must own the bytes, since the
    // JS buffer may be mutated or collected after this call returns.
    fbroker_core::bytes::Bytes::copy_from_slice(&payload)
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns both.
#[napi(catch_unwind)]
pub fn raise_open_file_limit() -> NativeOpenFileLimit {
    let l = fbroker_core::limits::raise_open_file_limit();
    NativeOpenFileLimit { soft: l.soft as f64, hard: l.hard as f64 }
}
