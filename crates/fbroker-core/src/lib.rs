//! fbroker's engine: everything on the per-message path. The control plane
//! (TypeScript) configures it, receives batched lifecycle events from it,
//! and commands it through [`Broker`].

pub mod auth;
pub mod broker;
pub mod config;
mod connection;
pub mod events;
pub mod hooks;
pub mod limits;
mod listener;
pub mod message;
pub mod persistence;
mod panic_guard;
pub mod registry;
pub mod router;
pub mod session;
pub mod state;
pub mod stats;
pub mod topic;

pub use broker::Broker;
pub use config::{BrokerConfig, ListenerConfig, ListenerKind, ListenerTransport, LogLevel, QueueDropPolicy, TlsOptions, TlsSettings, WsSettings};
pub use events::{BrokerEvent, DisconnectReason, EventSink};
pub use listener::BoundListener;
pub use stats::StatsSnapshot;
pub use bytes;
pub use fbroker_codec::QoS;
