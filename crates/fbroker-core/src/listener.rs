//! Accept loops: one task per listener, each accepted socket becomes one
//! connection task. The transport setup (PROXY header, TLS handshake,
//! WebSocket upgrade) runs in the connection task, under its connect
//! timeout, so a slow or hostile client never holds up the accept loop.

use crate::config::{ListenerConfig, LogLevel};
use crate::state::BrokerState;
use fbroker_transport::ListenerTransport;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct BoundListener {
    pub protocol: &'static str,
    pub host: String,
    pub port: u16,
}

/// What a listener's connections share: how to set them up, and the
/// listener's own connection count and cap.
pub struct ListenerContext {
    pub transport: ListenerTransport,
    /// `tls listener 0.0.0.0:8883` (with the bound port).
    pub label: String,
    max_connections: usize,
    active: AtomicUsize,
}

impl ListenerContext {
    pub fn new(config: &ListenerConfig, bound_port: u16) -> Self {
        ListenerContext {
            transport: config.transport.clone(),
            label: format!("{} listener {}:{}", config.transport.kind, config.host, bound_port),
            max_connections: config.max_connections,
            active: AtomicUsize::new(0),
        }
    }
}

/// Holds one connection's place in the broker-wide and the listener's
/// counts; frees both however the task ends (panics included).
pub(crate) struct ConnectionSlot {
    state: Arc<BrokerState>,
    listener: Arc<ListenerContext>,
}

impl ConnectionSlot {
    /// None when the broker or the listener is full.
    pub(crate) fn claim(state: &Arc<BrokerState>, listener: &Arc<ListenerContext>) -> Result<ConnectionSlot, String> {
        let max = state.config.max_connections;
        let current = state.stats.connections.fetch_add(1, Relaxed);
        // From here on, dropping the slot gives both counts back.
        let listener_current = listener.active.fetch_add(1, Relaxed);
        let slot = ConnectionSlot { state: state.clone(), listener: listener.clone() };
        if max != 0 && current >= max {
            return Err(format!("max_connections ({max}) reached"));
        }
        if listener.max_connections != 0 && listener_current >= listener.max_connections {
            return Err(format!("the {}'s max_connections ({}) reached", listener.label, listener.max_connections));
        }
        Ok(slot)
    }
}

impl ConnectionSlot {
    pub(crate) fn listener(&self) -> &ListenerContext {
        &self.listener
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.state.stats.connections.fetch_sub(1, Relaxed);
        self.listener.active.fetch_sub(1, Relaxed);
    }
}

/// Binds synchronously so that a bad address fails `start` with a clear
/// error instead of failing later in a task.
pub fn bind(config: &ListenerConfig) -> Result<std::net::TcpListener, String> {
    let what = config.describe();
    config.transport.validate().map_err(|e| format!("{what}: {e}"))?;
    let addr: SocketAddr = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(|e| format!("{what}: cannot resolve host: {e}"))?
        .next()
        .ok_or_else(|| format!("{what}: host resolves to no address"))?;
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(|e| format!("{what}: {e}"))?;
    socket.set_reuse_address(true).map_err(|e| format!("{what}: {e}"))?;
    socket.set_nonblocking(true).map_err(|e| format!("{what}: {e}"))?;
    socket.bind(&addr.into()).map_err(|e| format!("{what}: {e}"))?;
    socket.listen(4096).map_err(|e| format!("{what}: {e}"))?;
    Ok(socket.into())
}

pub async fn accept_loop(state: Arc<BrokerState>, listener: TcpListener, context: Arc<ListenerContext>) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let slot = match ConnectionSlot::claim(&state, &context) {
                    Ok(slot) => slot,
                    Err(why) => {
                        state.events.log(LogLevel::Warn, None, || format!("refused {peer}: {why}"));
                        drop(stream);
                        continue;
                    }
                };
                // Small packets (acks, the TLS handshake's flights) go out
                // at once; the connection coalesces its own writes.
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                tokio::spawn(crate::panic_guard::guarded(state.clone(), crate::connection::serve(state, stream, peer, slot)));
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                state.events.log(LogLevel::Error, None, || format!("accept failed on the {}: {e}", context.label));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
