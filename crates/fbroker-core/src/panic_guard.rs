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
