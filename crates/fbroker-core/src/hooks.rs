//! Calls from the engine into the control plane's plugin hooks, for the
//! hooks a plugin actually registered (the control plane says which at
//! start; nothing crosses for the others).
//!
//! Requests from every connection go into one channel and reach the
//! [`HookSink`] in batches; the control plane answers each by id through
//! [`HookBridge::resolve`]. A request that is not answered within the hook
//! timeout, or whose answer is lost, fails closed.

use bytes::Bytes;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Which hooks have at least one plugin behind them.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisteredHooks {
    pub authenticate: bool,
    pub authorize_subscribe: bool,
    pub authorize_publish: bool,
}

impl RegisteredHooks {
    pub fn any(&self) -> bool {
        self.authenticate || self.authorize_subscribe || self.authorize_publish
    }
}

#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub username: Option<String>,
    pub address: String,
    pub protocol_version: u8,
}

#[derive(Debug, Clone)]
pub struct PublishCheck {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
}

#[derive(Debug, Clone)]
pub enum HookRequest {
    Authenticate { client: ClientInfo, username: Option<String>, password: Option<Bytes> },
    /// (filter, requested QoS) for every filter of one SUBSCRIBE.
    AuthorizeSubscribe { client: ClientInfo, subscriptions: Vec<(String, u8)> },
    /// Every PUBLISH of one read batch of one client that was not cached.
    AuthorizePublish { client: ClientInfo, publishes: Vec<PublishCheck> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookResponse {
    /// None: no plugin gave a definite answer; Some(0): allow; Some(code):
    /// refuse with that CONNACK code.
    Authenticate(Option<u8>),
    /// Per filter: granted QoS (0..=2) or 0x80.
    AuthorizeSubscribe(Vec<u8>),
    /// Per publish: allowed or not.
    AuthorizePublish(Vec<bool>),
}

pub trait HookSink: Send + Sync + 'static {
    fn deliver(&self, batch: Vec<(u64, HookRequest)>);
}

const MAX_BATCH: usize = 512;

pub struct HookBridge {
    pub registered: RegisteredHooks,
    pub timeout: Duration,
    tx: mpsc::UnboundedSender<(u64, HookRequest)>,
    pending: Mutex<HashMap<u64, oneshot::Sender<HookResponse>>>,
    next_id: AtomicU64,
}

impl HookBridge {
    /// Spawns the batching task on the current runtime.
    pub fn start(sink: Arc<dyn HookSink>, registered: RegisteredHooks, timeout: Duration) -> Arc<HookBridge> {
        let (tx, mut rx) = mpsc::unbounded_channel::<(u64, HookRequest)>();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(64);
            while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
                sink.deliver(std::mem::take(&mut batch));
            }
        });
        Arc::new(HookBridge { registered, timeout, tx, pending: Mutex::new(HashMap::new()), next_id: AtomicU64::new(1) })
    }

    /// Sends one request and waits for its answer; None on timeout or when
    /// the control plane is gone (the caller then fails closed). Pending
    /// requests are bounded by the connections waiting on them: each
    /// connection has at most one in flight.
    pub async fn call(&self, request: HookRequest) -> Option<HookResponse> {
        let id = self.next_id.fetch_add(1, Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        if self.tx.send((id, request)).is_err() {
            self.pending.lock().remove(&id);
            return None;
        }
        let answer = tokio::time::timeout(self.timeout, rx).await;
        self.pending.lock().remove(&id);
        answer.ok().and_then(Result::ok)
    }

    /// The control plane's answer to request `id`; false when the request
    /// is unknown (already timed out).
    pub fn resolve(&self, id: u64, response: HookResponse) -> bool {
        match self.pending.lock().remove(&id) {
            Some(tx) => tx.send(response).is_ok(),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo(Mutex<Option<Arc<HookBridge>>>, bool);
    impl HookSink for Echo {
        fn deliver(&self, batch: Vec<(u64, HookRequest)>) {
            if !self.1 {
                return; // a control plane that never answers
            }
            let bridge = self.0.lock().clone().unwrap();
            for (id, req) in batch {
                let resp = match req {
                    HookRequest::AuthorizePublish { publishes, .. } => {
                        HookResponse::AuthorizePublish(publishes.iter().map(|p| !p.topic.starts_with("deny")).collect())
                    }
                    _ => HookResponse::Authenticate(Some(0)),
                };
                bridge.resolve(id, resp);
            }
        }
    }

    fn client() -> ClientInfo {
        ClientInfo { client_id: "c".into(), username: None, address: "127.0.0.1:1".into(), protocol_version: 4 }
    }

    #[tokio::test]
    async fn answers_reach_the_caller_by_id() {
        let sink = Arc::new(Echo(Mutex::new(None), true));
        let bridge = HookBridge::start(sink.clone(), RegisteredHooks::default(), Duration::from_secs(1));
        *sink.0.lock() = Some(bridge.clone());
        let publishes = ["ok/1", "deny/2"]
            .iter()
            .map(|t| PublishCheck { topic: t.to_string(), payload: Bytes::new(), qos: 0, retain: false })
            .collect();
        let r = bridge.call(HookRequest::AuthorizePublish { client: client(), publishes }).await;
        assert_eq!(r, Some(HookResponse::AuthorizePublish(vec![true, false])));
    }

    #[tokio::test]
    async fn an_unanswered_request_times_out_and_fails_closed() {
        let sink = Arc::new(Echo(Mutex::new(None), false));
        let bridge = HookBridge::start(sink, RegisteredHooks::default(), Duration::from_millis(50));
        let r = bridge.call(HookRequest::Authenticate { client: client(), username: None, password: None }).await;
        assert_eq!(r, None);
        assert!(!bridge.resolve(1, HookResponse::Authenticate(Some(0))), "a late answer is ignored");
    }
}
