//! A panic in one connection task must not take down the process or other
//! clients: it is caught here and reported to the control plane.

use crate::events::BrokerEvent;
use crate::state::BrokerState;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub fn guarded<F: Future<Output = ()>>(state: Arc<BrokerState>, fut: F) -> impl Future<Output = ()> {
    CatchUnwind { state, inner: Box::pin(fut) }
}

struct CatchUnwind<F> {
    state: Arc<BrokerState>,
    inner: Pin<Box<F>>,
}

impl<F: Future<Output = ()>> Future for CatchUnwind<F> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = &mut *self;
        match std::panic::catch_unwind(AssertUnwindSafe(|| this.inner.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                this.state.events.emit(BrokerEvent::Panic { message: format!("connection task panicked: {message}") });
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BrokerConfig;
    use crate::events::{EventBus, EventSink};
    use crate::stats::Stats;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<BrokerEvent>>);
    impl EventSink for Arc<Collect> {
        fn deliver(&self, batch: Vec<BrokerEvent>) {
            self.0.lock().extend(batch);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_connection_task_is_reported_and_the_runtime_survives() {
        let collected = Arc::new(Collect::default());
        let stats = Arc::new(Stats::default());
        let events = EventBus::start(Arc::new(collected.clone()), crate::config::LogLevel::Info, stats.clone());
        let (_tx, rx) = tokio::sync::watch::channel(false);
        let state = Arc::new(BrokerState::new(BrokerConfig::default(), stats, events, None, rx, None));
        let handle = tokio::spawn(guarded(state.clone(), async { panic!("boom") }));
        handle.await.expect("the guard turns the panic into a normal completion");
        // Other tasks keep running on the same runtime.
        assert_eq!(tokio::spawn(async { 7 }).await.unwrap(), 7);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let events = collected.0.lock();
        assert!(
            events.iter().any(|e| matches!(e, BrokerEvent::Panic { message } if message.contains("boom"))),
            "expected a panic event, got {events:?}"
        );
    }
}
