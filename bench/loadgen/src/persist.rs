//! `persist`: QoS 1 publishes into persistent sessions whose clients are
//! offline, so that every message has to be queued (and, on a broker with a
//! store, stored) before the broker acknowledges it.
//!
//! 1. **sessions**: S subscribers, client ids `<prefix>q<i>`, each first
//!    connects with clean session = 1 and disconnects (drops whatever an
//!    earlier run left under that id), then connects with clean session = 0,
//!    subscribes QoS 1 to `bench/persist/<i mod P>` and disconnects. Each
//!    DISCONNECT is followed by a wait for the broker to close the socket, so
//!    the session is offline before anything is published.
//! 2. **publish**: P publishers (clean session, `<prefix>p<j>`), publisher j on
//!    `bench/persist/<j>`, QoS 1, run the steps of the pubsub engine
//!    (open loop at a rate, or `max`: as fast as the window of unacknowledged
//!    messages allows). Every message is queued for S ÷ P sessions. Per step:
//!    offered, acked, publish → PUBACK latency.
//! 3. **verify** (unless `--verify-max-secs 0`): the S subscribers reconnect
//!    with clean session = 0 and PUBACK what the broker sends them; the run
//!    counts distinct messages received against `acked × S ÷ P`, until every
//!    offered message has arrived, nothing arrived for `--verify-idle-ms`, or
//!    `--verify-max-secs` passed.
//! 4. **pause** (with `--pause-after-verify`): `MARK phase=store begin` on
//!    stderr, then wait (at most 120 s) for a line on stdin, so that the
//!    caller can look at the broker's store while the sessions are in place
//!    and should hold nothing queued; then `MARK phase=store end`.
//! 5. **cleanup**: every subscriber id connects once more with clean session
//!    = 1, so the broker (and its store) drops the sessions.
//!
//! stderr carries `MARK step=N begin|end` around each publish step (from the
//! engine) and `MARK phase=verify begin|end` around the verify phase.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::{Buf, BytesMut};
use serde_json::{json, Value};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, timeout};

use crate::mqtt::{self, Packet};
use crate::pubsub;
use crate::transport::{Conn, Transport};
use crate::util::*;

pub struct Config {
    pub engine: pubsub::Config,
    pub steps: Vec<pubsub::StepSpec>,
    pub subscribers: usize,
    pub verify_max: Option<Duration>,
    pub verify_idle: Duration,
    pub pause_after_verify: bool,
    pub cleanup: bool,
}

pub fn topic(publisher: usize) -> String {
    format!("bench/persist/{publisher}")
}

struct Net {
    target: SocketAddr,
    transport: Arc<Transport>,
    sources: Sources,
    keepalive: u16,
    concurrency: usize,
    prefix: String,
}

impl Net {
    fn sub_id(&self, i: usize) -> String {
        format!("{}q{i}", self.prefix)
    }

    async fn open(&self, i: usize, clean: bool) -> Result<(Conn, BytesMut, bool)> {
        let id = self.sub_id(i);
        let work = async {
            let mut s = self.transport.connect(self.target, self.sources.addr(i), i as u64).await?;
            let mut buf = BytesMut::with_capacity(4096);
            let (_, present) = mqtt_connect_session(&mut s, &id, self.keepalive, clean, &mut buf).await?;
            Ok::<_, anyhow::Error>((s, buf, present))
        };
        timeout(Duration::from_secs(15), work).await.map_err(|_| anyhow!("{id}: connect timed out"))?
    }
}

/// DISCONNECT, then wait (bounded) until the broker closes the connection:
/// once it has, the session is offline.
async fn disconnect(mut s: Conn, mut buf: BytesMut) -> Result<()> {
    s.send(&mqtt::DISCONNECT).await?;
    let wait = async {
        loop {
            buf.clear();
            if buf.capacity() < 1024 {
                buf.reserve(4096);
            }
            match s.read_into(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    timeout(Duration::from_secs(5), wait).await.map_err(|_| anyhow!("broker did not close the connection within 5 s of DISCONNECT"))
}

/// Runs `f(i)` for i in 0..n, at most `concurrency` at once; fails with the first error.
async fn for_each<F, Fut>(n: usize, concurrency: usize, f: F) -> Result<()>
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Result<()>> + 'static,
{
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let fut = f(i);
        handles.push(tokio::task::spawn_local(async move {
            let r = fut.await;
            drop(permit);
            r
        }));
    }
    for (i, h) in handles.into_iter().enumerate() {
        h.await?.map_err(|e| anyhow!("subscriber {i}: {e:#}"))?;
    }
    Ok(())
}

/// What one reconnected subscriber received.
#[derive(Default)]
struct Received {
    publishes: u64,
    distinct: u64,
    dup_flagged: u64,
    out_of_order: u64,
    foreign: u64,
    per_step: Vec<u64>,
    session_present: bool,
    error: Option<String>,
}

async fn verify_one(
    mut s: Conn,
    mut buf: BytesMut,
    session_present: bool,
    total: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> Received {
    let mut r = Received { session_present, ..Default::default() };
    let mut seen: HashSet<u64> = HashSet::new();
    let mut last_id: Option<u64> = None;
    let mut acks: Vec<u8> = Vec::with_capacity(1024);
    let result: Result<()> = async {
        loop {
            let mut off = 0;
            let mut fresh = 0;
            while let Some((pkt, used)) = mqtt::parse(&buf[off..])? {
                if let Packet::Publish { qos, dup, packet_id, payload } = pkt {
                    r.publishes += 1;
                    if dup {
                        r.dup_flagged += 1;
                    }
                    match mqtt::payload_header(payload) {
                        Some((_, id)) => {
                            if seen.insert(id) {
                                fresh += 1;
                                let step = mqtt::id_step(id) as usize;
                                if r.per_step.len() <= step {
                                    r.per_step.resize(step + 1, 0);
                                }
                                r.per_step[step] += 1;
                                // One publisher per subscriber: ids grow with
                                // (step, sequence), so a smaller one than the
                                // last new one is out of order.
                                if last_id.is_some_and(|l| id < l) {
                                    r.out_of_order += 1;
                                }
                                last_id = Some(last_id.map_or(id, |l| l.max(id)));
                            }
                        }
                        None => r.foreign += 1,
                    }
                    if qos > 0 {
                        acks.extend_from_slice(&mqtt::puback(packet_id));
                    }
                }
                off += used;
            }
            buf.advance(off);
            if fresh > 0 {
                r.distinct += fresh;
                total.fetch_add(fresh, Relaxed);
            }
            if !acks.is_empty() {
                s.send(&acks).await?;
                acks.clear();
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16384);
            }
            tokio::select! {
                biased;
                _ = stop.changed() => return Ok(()),
                n = s.read_into(&mut buf) => {
                    if n? == 0 {
                        bail!("connection closed by broker");
                    }
                }
            }
        }
    }
    .await;
    if let Err(e) = result {
        r.error = Some(format!("{e:#}"));
    } else {
        let _ = disconnect(s, buf).await;
    }
    r
}

pub async fn run(cfg: Config) -> Result<Value> {
    let e = &cfg.engine;
    let (p, subs) = (e.publishers, cfg.subscribers);
    if subs == 0 || subs % p != 0 {
        bail!("--subscribers must be a positive multiple of --publishers (subscriber i subscribes to publisher i mod P's topic)");
    }
    let fan = (subs / p) as u64;
    let net = Arc::new(Net {
        target: e.target,
        transport: e.transport.clone(),
        sources: e.sources,
        keepalive: e.keepalive,
        concurrency: e.connect_concurrency,
        prefix: e.client_prefix.clone(),
    });
    let local = tokio::task::LocalSet::new();

    // 1. sessions
    let t_sessions = Instant::now();
    let cpu0 = self_cpu_secs();
    {
        let net2 = net.clone();
        local
            .run_until(for_each(subs, net.concurrency, move |i| {
                let net = net2.clone();
                async move {
                    let (s, b, _) = net.open(i, true).await?;
                    disconnect(s, b).await?;
                    let (mut s, mut b, present) = net.open(i, false).await?;
                    if present {
                        bail!("session present right after a clean-session connect");
                    }
                    mqtt_subscribe(&mut s, &topic(i % p), 1, &mut b).await?;
                    disconnect(s, b).await
                }
            }))
            .await?;
    }
    let sessions_secs = t_sessions.elapsed().as_secs_f64();
    let sessions_cpu = self_cpu_secs() - cpu0;
    sleep(Duration::from_millis(200)).await;

    // 2. publish
    let steps = cfg.steps.clone();
    let mut publish = pubsub::run(cfg.engine, &steps, |_| pubsub::Next::Continue).await?;
    let step_rows = publish["steps"].as_array().cloned().unwrap_or_default();
    let offered: u64 = step_rows.iter().map(|r| r["offered"].as_u64().unwrap_or(0)).sum();
    let acked: u64 = step_rows.iter().map(|r| r["acked"].as_u64().unwrap_or(0)).sum();

    // 3. verify
    let mut verify = Value::Null;
    if let Some(max) = cfg.verify_max {
        eprintln!("MARK phase=verify begin");
        let t0 = Instant::now();
        let cpu0 = self_cpu_secs();
        let total = Arc::new(AtomicU64::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let want = offered * fan;
        let v = local
            .run_until(async {
                // Reconnect every subscriber (bounded concurrency), each then
                // reads on its own task until told to stop.
                let sem = Arc::new(Semaphore::new(net.concurrency.max(1)));
                let mut handles = Vec::with_capacity(subs);
                let mut connect_errors = 0u64;
                let mut first_error: Option<String> = None;
                for i in 0..subs {
                    let permit = sem.clone().acquire_owned().await?;
                    let net = net.clone();
                    let total = total.clone();
                    let stop = stop_rx.clone();
                    handles.push(tokio::task::spawn_local(async move {
                        let opened = net.open(i, false).await;
                        drop(permit);
                        match opened {
                            Ok((s, b, present)) => Ok(verify_one(s, b, present, total, stop).await),
                            Err(e) => Err(e),
                        }
                    }));
                }
                let mut last = 0;
                let mut last_change = Instant::now();
                let mut last_arrival = t0;
                let stop_reason = loop {
                    let got = total.load(Relaxed);
                    if got != last {
                        last = got;
                        last_change = Instant::now();
                        last_arrival = last_change;
                    }
                    if got >= want {
                        break "all offered messages received";
                    }
                    if t0.elapsed() >= max {
                        break "--verify-max-secs passed";
                    }
                    if last_change.elapsed() >= cfg.verify_idle {
                        break "nothing new for --verify-idle-ms";
                    }
                    sleep(Duration::from_millis(10)).await;
                };
                let _ = stop_tx.send(true);
                let mut sum = Received::default();
                let mut not_present = 0u64;
                let mut read_errors = 0u64;
                for h in handles {
                    match timeout(Duration::from_secs(10), h).await {
                        Ok(Ok(Ok(r))) => {
                            sum.publishes += r.publishes;
                            sum.distinct += r.distinct;
                            sum.dup_flagged += r.dup_flagged;
                            sum.out_of_order += r.out_of_order;
                            sum.foreign += r.foreign;
                            for (k, n) in r.per_step.iter().enumerate() {
                                if sum.per_step.len() <= k {
                                    sum.per_step.resize(k + 1, 0);
                                }
                                sum.per_step[k] += n;
                            }
                            if !r.session_present {
                                not_present += 1;
                            }
                            if let Some(e) = r.error {
                                read_errors += 1;
                                first_error.get_or_insert(e);
                            }
                        }
                        Ok(Ok(Err(e))) => {
                            connect_errors += 1;
                            first_error.get_or_insert(format!("{e:#}"));
                        }
                        _ => {
                            read_errors += 1;
                            first_error.get_or_insert("subscriber task did not finish".into());
                        }
                    }
                }
                let expected_acked = acked * fan;
                let drain_secs = (last_arrival - t0).as_secs_f64();
                Ok::<_, anyhow::Error>(json!({
                    "subscribers": subs,
                    "expected_acked": expected_acked,
                    "expected_offered": want,
                    "delivered": sum.distinct,
                    "delivered_pct_of_acked": if expected_acked > 0 { (sum.distinct as f64 * 1e5 / expected_acked as f64).round() / 1e3 } else { 0.0 },
                    "missing_acked": expected_acked.saturating_sub(sum.distinct),
                    "publishes_received": sum.publishes,
                    "redelivered": sum.publishes - sum.distinct - sum.foreign,
                    "dup_flagged": sum.dup_flagged,
                    "out_of_order": sum.out_of_order,
                    "foreign": sum.foreign,
                    "delivered_per_step": sum.per_step,
                    "sessions_not_present": not_present,
                    "connect_errors": connect_errors,
                    "read_errors": read_errors,
                    "first_error": first_error,
                    "stop_reason": stop_reason,
                    "secs": round2(t0.elapsed().as_secs_f64()),
                    "secs_to_last_delivery": round2(drain_secs),
                    "delivered_rate": if drain_secs > 0.0 { (sum.distinct as f64 / drain_secs).round() } else { 0.0 },
                    "loadgen_cpu_secs": round2(self_cpu_secs() - cpu0),
                }))
            })
            .await?;
        eprintln!("MARK phase=verify end");
        verify = v;
    }

    // 4. pause
    let mut pause = Value::Null;
    if cfg.pause_after_verify {
        eprintln!("MARK phase=store begin");
        let t0 = Instant::now();
        let line = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            std::io::stdin().read_line(&mut s).map(|_| s)
        });
        let how = match timeout(Duration::from_secs(120), line).await {
            Ok(Ok(Ok(_))) => "resumed",
            Ok(_) => "stdin closed or unreadable",
            Err(_) => "timed out after 120 s",
        };
        eprintln!("MARK phase=store end");
        pause = json!({ "secs": round2(t0.elapsed().as_secs_f64()), "end": how });
    }

    // 5. cleanup
    let mut cleanup_error = Value::Null;
    if cfg.cleanup {
        let net2 = net.clone();
        let r = local
            .run_until(for_each(subs, net.concurrency, move |i| {
                let net = net2.clone();
                async move {
                    let (s, b, _) = net.open(i, true).await?;
                    disconnect(s, b).await
                }
            }))
            .await;
        if let Err(e) = r {
            cleanup_error = json!(format!("{e:#}"));
        }
    }

    let obj = publish.as_object_mut().expect("object");
    obj.insert(
        "sessions".into(),
        json!({
            "subscribers": subs,
            "publishers": p,
            "queues_per_message": fan,
            "setup_secs": round2(sessions_secs),
            "setup_loadgen_cpu_secs": round2(sessions_cpu),
        }),
    );
    obj.insert("offered".into(), json!(offered));
    obj.insert("acked".into(), json!(acked));
    obj.insert("verify".into(), verify);
    obj.insert("pause".into(), pause);
    obj.insert("cleanup_error".into(), cleanup_error);
    Ok(publish)
}
