//! The engine's configuration. The TypeScript control plane parses and
//! validates the user's file; this struct is what crosses the FFI.

use crate::auth::AuthSettings;
use crate::hooks::RegisteredHooks;
pub use fbroker_transport::{ListenerKind, ListenerTransport, TlsOptions, TlsSettings, WsSettings};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueDropPolicy {
    /// Make room by discarding the oldest queued message.
    DropOldest,
    /// Keep what is queued and discard the message that did not fit.
    DropNew,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Trace = 10,
    Debug = 20,
    Info = 30,
    Warn = 40,
    Error = 50,
    Fatal = 60,
    Silent = 100,
}

impl LogLevel {
    pub fn parse(s: &str) -> Option<LogLevel> {
        Some(match s {
            "trace" => LogLevel::Trace,
            "debug" => LogLevel::Debug,
            "info" => LogLevel::Info,
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            "fatal" => LogLevel::Fatal,
            "silent" => LogLevel::Silent,
            _ => return None,
        })
    }
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::Fatal => "fatal",
            LogLevel::Silent => "silent",
        }
    }
}

/// One listening socket and how its connections are set up (plain TCP,
/// TLS, WebSocket, WebSocket over TLS, optionally behind a PROXY header).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub host: String,
    pub port: u16,
    pub transport: ListenerTransport,
    /// Connections this listener admits at once; 0 = only the broker-wide
    /// `max_connections` applies.
    pub max_connections: usize,
}

impl ListenerConfig {
    pub fn tcp(host: impl Into<String>, port: u16) -> Self {
        ListenerConfig { host: host.into(), port, transport: ListenerTransport::tcp(), max_connections: 0 }
    }

    /// `tls listener 0.0.0.0:8883`, for logs and errors.
    pub fn describe(&self) -> String {
        format!("{} listener {}:{}", self.transport.kind, self.host, self.port)
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub listeners: Vec<ListenerConfig>,
    /// 0 = unlimited.
    pub max_connections: usize,
    pub max_packet_size: usize,
    pub max_inflight_messages: usize,
    /// 0 = unlimited.
    pub max_queued_messages: usize,
    /// 0 = unlimited.
    pub max_queued_bytes: usize,
    pub queue_drop_policy: QueueDropPolicy,
    /// 0 = unlimited.
    pub max_topic_levels: usize,
    pub max_topic_length: usize,
    pub max_client_id_length: usize,
    pub connect_timeout: Duration,
    /// How long a persistent session outlives its connection; None = forever.
    pub session_expiry: Option<Duration>,
    /// 0 = one per CPU core.
    pub worker_threads: usize,
    pub log_level: LogLevel,
    pub auth: AuthSettings,
    /// Plugin hooks the control plane registered; only these cross the FFI.
    pub hooks: RegisteredHooks,
    /// A hook that has not answered by then fails closed.
    pub hook_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listeners: vec![ListenerConfig::tcp("0.0.0.0", 1883)],
            max_connections: 100_000,
            max_packet_size: 1024 * 1024,
            max_inflight_messages: 20,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_drop_policy: QueueDropPolicy::DropOldest,
            max_topic_levels: 128,
            max_topic_length: 65535,
            max_client_id_length: 65535,
            connect_timeout: Duration::from_secs(10),
            session_expiry: Some(Duration::from_secs(7200)),
            worker_threads: 0,
            log_level: LogLevel::Info,
            auth: AuthSettings::default(),
            hooks: RegisteredHooks::default(),
            hook_timeout: Duration::from_secs(5),
        }
    }
}
