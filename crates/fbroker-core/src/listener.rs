//! Accept loops: one task per listener, each accepted socket becomes one
//! connection task.

use crate::config::{ListenerConfig, LogLevel};
use crate::state::BrokerState;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct BoundListener {
    pub protocol: &'static str,
    pub host: String,
    pub port: u16,
}

/// Binds synchronously so that a bad address fails `start` with a clear
/// error instead of failing later in a task.
pub fn bind(config: &ListenerConfig) -> Result<std::net::TcpListener, String> {
    let what = format!("tcp listener {}:{}", config.host, config.port);
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

pub async fn accept_loop(state: Arc<BrokerState>, listener: TcpListener) {
    let mut shutdown = state.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.wait_for(|stopped| *stopped) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let max = state.config.max_connections;
                let current = state.stats.connections.fetch_add(1, Relaxed);
                if max != 0 && current >= max {
                    state.stats.connections.fetch_sub(1, Relaxed);
                    state.events.log(LogLevel::Warn, None, || format!("refused {peer}: max_connections ({max}) reached"));
                    drop(stream);
                    continue;
                }
                let state = state.clone();
                tokio::spawn(crate::panic_guard::guarded(state.clone(), crate::connection::serve(state, stream, peer)));
            }
            Err(e) => {
                // Usually EMFILE: back off instead of spinning.
                state.events.log(LogLevel::Error, None, || format!("accept failed: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
