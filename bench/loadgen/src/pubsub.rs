//! The publish/subscribe engine shared by `fanin`, `fanin-sweep`, `fanout`
//! and `roundtrip`: P publishers, S subscribers whose filters all match every
//! publisher's topic, and a list of steps (offered aggregate rate, duration).
//!
//! Each step: publishers send open-loop on a schedule, then a drain period
//! waits for the deliveries (and PUBACKs) still in flight. Every message
//! carries its step number, so late deliveries are credited to the right step.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use bytes::{Buf, BytesMut};
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::time::{sleep, sleep_until, timeout, MissedTickBehavior};

use crate::mqtt::{self, Packet, PublishFrames};
use crate::transport::{Conn, ConnRead, ConnWrite, Transport};
use crate::util::*;

pub const MAX_STEPS: usize = 64;
const PING_EVERY: Duration = Duration::from_secs(20);

pub struct Config {
    pub target: SocketAddr,
    pub transport: Arc<Transport>,
    pub publishers: usize,
    pub subscribers: usize,
    /// Topic of publisher i.
    pub pub_topic: Box<dyn Fn(usize) -> String>,
    pub sub_filter: String,
    pub qos: u8,
    pub sub_qos: u8,
    pub payload: usize,
    /// QoS 1: most PUBLISHes a publisher has outstanding (not yet PUBACKed).
    pub window: usize,
    /// Most frames per write.
    pub batch: usize,
    pub hist_sigfig: u8,
    pub connect_concurrency: usize,
    pub sources: Sources,
    pub client_prefix: String,
    pub keepalive: u16,
    pub drain_max: Duration,
    pub drain_idle: Duration,
}

impl Config {
    /// QoS 0 without subscribers: nothing comes back to say the broker has
    /// read what was written (it may still sit in socket buffers when the
    /// step ends), so each publisher ends its step with a PINGREQ, and the
    /// step is complete when every PINGRESP is back (a broker answers a
    /// connection's packets in order).
    fn barrier(&self) -> bool {
        self.subscribers == 0 && self.qos == 0
    }
}

#[derive(Clone, Copy, Debug)]
pub struct StepSpec {
    /// Aggregate offered rate (msg/s over all publishers); None = as fast as possible.
    pub rate: Option<f64>,
    pub duration: Duration,
}

/// What to do after a step, given its result.
pub enum Next {
    Continue,
    Stop,
}

#[derive(Clone, Debug)]
enum Phase {
    Idle,
    Run { index: u16, rate_per_pub: Option<f64>, duration: Duration },
    Stop,
}

struct Shared {
    offered: Vec<AtomicU64>,
    acked: Vec<AtomicU64>,
    delivered: Vec<AtomicU64>,
    /// PINGRESPs seen by publishers (the end-of-step barrier, see `barrier`).
    pingresps: AtomicU64,
    errors: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Shared {
    fn new() -> Self {
        let v = || (0..MAX_STEPS).map(|_| AtomicU64::new(0)).collect();
        Shared { offered: v(), acked: v(), delivered: v(), pingresps: AtomicU64::new(0), errors: AtomicU64::new(0), last_error: Mutex::new(None) }
    }
    fn error(&self, what: &str, e: &anyhow::Error) {
        self.errors.fetch_add(1, Relaxed);
        let mut le = self.last_error.lock().unwrap();
        if le.is_none() {
            *le = Some(format!("{what}: {e:#}"));
        }
    }
}

/// Per-publisher QoS 1 bookkeeping, indexed by packet id.
struct Outstanding {
    sent_ns: Box<[AtomicU64]>,
    step: Box<[AtomicU16]>,
    count: AtomicUsize,
    notify: Notify,
}

fn grow(hists: &mut Vec<Histogram<u64>>, step: usize, sigfig: u8) {
    while hists.len() <= step {
        hists.push(new_hist(sigfig));
    }
}

async fn open_mqtt(
    target: SocketAddr,
    transport: Arc<Transport>,
    sources: Sources,
    i: usize,
    client_id: String,
    keepalive: u16,
    subscribe: Option<(String, u8)>,
) -> Result<(Conn, BytesMut)> {
    let work = async {
        let mut s = transport.connect(target, sources.addr(i), i as u64).await?;
        let mut buf = BytesMut::with_capacity(4096);
        mqtt_connect(&mut s, &client_id, keepalive, &mut buf).await?;
        if let Some((f, q)) = subscribe {
            mqtt_subscribe(&mut s, &f, q, &mut buf).await?;
        }
        Ok::<_, anyhow::Error>((s, buf))
    };
    timeout(Duration::from_secs(15), work).await.map_err(|_| anyhow!("connect/subscribe timed out"))?
}

/// Opens `n` MQTT connections with bounded concurrency, in index order.
async fn open_many(
    n: usize,
    concurrency: usize,
    mk: impl Fn(usize) -> (String, Option<(String, u8)>),
    target: SocketAddr,
    transport: &Arc<Transport>,
    sources: Sources,
    keepalive: u16,
    offset: usize,
) -> Result<Vec<(Conn, BytesMut)>> {
    let sem = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await?;
        let (id, sub) = mk(i);
        let transport = transport.clone();
        handles.push(tokio::spawn(async move {
            let r = open_mqtt(target, transport, sources, i + offset, id, keepalive, sub).await;
            drop(permit);
            r
        }));
    }
    let mut out = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        out.push(h.await?.map_err(|e| anyhow!("connection {i}: {e:#}"))?);
    }
    Ok(out)
}

async fn subscriber(
    mut stream: Conn,
    mut buf: BytesMut,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    sigfig: u8,
) -> Vec<Histogram<u64>> {
    let mut hists: Vec<Histogram<u64>> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    let mut acks: Vec<u8> = Vec::with_capacity(256);
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.tick().await;
    let result: Result<()> = async {
        loop {
            // Decode everything buffered.
            let now = now_ns();
            let mut off = 0;
            while let Some((pkt, used)) = mqtt::parse(&buf[off..])? {
                if let Packet::Publish { qos, packet_id, payload, .. } = pkt {
                    if let Some((ts, id)) = mqtt::payload_header(payload) {
                        let step = mqtt::id_step(id) as usize;
                        if step < MAX_STEPS {
                            grow(&mut hists, step, sigfig);
                            if counts.len() <= step {
                                counts.resize(step + 1, 0);
                            }
                            record_ns(&mut hists[step], now.saturating_sub(ts));
                            counts[step] += 1;
                        }
                    }
                    if qos > 0 {
                        acks.extend_from_slice(&mqtt::puback(packet_id));
                    }
                }
                off += used;
            }
            buf.advance(off);
            for (s, c) in counts.iter_mut().enumerate() {
                if *c > 0 {
                    shared.delivered[s].fetch_add(*c, Relaxed);
                    *c = 0;
                }
            }
            if !acks.is_empty() {
                stream.send(&acks).await?;
                acks.clear();
            }
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16384);
            }
            tokio::select! {
                biased;
                r = stream.read_into(&mut buf) => {
                    if r? == 0 {
                        if *stop.borrow() { return Ok(()); }
                        bail!("subscriber connection closed by broker");
                    }
                }
                _ = ping.tick() => stream.send(&mqtt::PINGREQ).await?,
                _ = stop.changed() => return Ok(()),
            }
        }
    }
    .await;
    if let Err(e) = result {
        shared.error("subscriber", &e);
    }
    let _ = stream.send(&mqtt::DISCONNECT).await;
    hists
}

async fn publisher_reader(
    mut rd: ConnRead,
    mut buf: BytesMut,
    out: Arc<Outstanding>,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> Vec<Histogram<u64>> {
    let mut hists: Vec<Histogram<u64>> = Vec::new();
    let result: Result<()> = async {
        loop {
            let mut off = 0;
            let now = now_ns();
            let mut freed = 0;
            while let Some((pkt, used)) = mqtt::parse(&buf[off..])? {
                if let Packet::PingResp = pkt {
                    shared.pingresps.fetch_add(1, Relaxed);
                } else if let Packet::PubAck { packet_id } = pkt {
                    let p = packet_id as usize;
                    let sent = out.sent_ns[p].swap(0, AcqRel);
                    if sent != 0 {
                        let step = out.step[p].load(Relaxed) as usize;
                        grow(&mut hists, step, 3);
                        record_ns(&mut hists[step], now.saturating_sub(sent));
                        shared.acked[step].fetch_add(1, Relaxed);
                        freed += 1;
                    }
                }
                off += used;
            }
            buf.advance(off);
            if freed > 0 {
                out.count.fetch_sub(freed, AcqRel);
                out.notify.notify_one();
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8192);
            }
            tokio::select! {
                biased;
                r = rd.read_into(&mut buf) => {
                    if r? == 0 {
                        // After our DISCONNECT the broker closing is expected.
                        if *stop.borrow() { return Ok(()); }
                        bail!("publisher connection closed by broker");
                    }
                }
                _ = stop.changed() => return Ok(()),
            }
        }
    }
    .await;
    if let Err(e) = result {
        shared.error("publisher", &e);
    }
    hists
}

struct PubCtx {
    index: usize,
    qos: u8,
    window: usize,
    frames: PublishFrames,
    out: Arc<Outstanding>,
    next_pid: u16,
    seq: u32,
    shared: Arc<Shared>,
}

impl PubCtx {
    /// Stamps and writes `n` frames (n ≤ slots).
    async fn send(&mut self, wr: &mut ConnWrite, step: u16, n: usize, deadline: Instant) -> Result<()> {
        let ts = now_ns();
        for i in 0..n {
            let id = mqtt::message_id(step, self.index as u16, self.seq);
            self.seq = self.seq.wrapping_add(1);
            let mut pid = 0;
            if self.qos > 0 {
                pid = self.next_pid;
                self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
                self.out.step[pid as usize].store(step, Relaxed);
                self.out.sent_ns[pid as usize].store(ts.max(1), Release);
            }
            self.frames.stamp(i, ts, id, pid);
        }
        if self.qos > 0 {
            self.out.count.fetch_add(n, AcqRel);
        }
        // Bounded: a broker that stops reading must not hang the run.
        let grace = deadline + Duration::from_secs(5);
        match tokio::time::timeout_at(grace.into(), wr.send_framed(self.frames.batch(n))).await {
            Ok(r) => r?,
            Err(_) => bail!("write blocked for more than 5 s past the end of the step"),
        }
        self.shared.offered[step as usize].fetch_add(n as u64, Relaxed);
        Ok(())
    }

    /// QoS 1: free window slots (waits for PUBACKs); None once `end` passes.
    async fn window_room(&self, end: Instant) -> Option<usize> {
        if self.qos == 0 {
            return Some(usize::MAX);
        }
        loop {
            let used = self.out.count.load(Acquire);
            if used < self.window {
                return Some(self.window - used);
            }
            tokio::select! {
                _ = self.out.notify.notified() => {}
                _ = sleep_until(end.into()) => return None,
            }
        }
    }

    async fn run_step(
        &mut self,
        wr: &mut ConnWrite,
        step: u16,
        rate: Option<f64>,
        duration: Duration,
        npubs: usize,
    ) -> Result<()> {
        let start = Instant::now();
        let end = start + duration;
        let slots = self.frames.slots;
        match rate {
            Some(r) => {
                let total = (r * duration.as_secs_f64()).floor() as u64;
                let period = Duration::from_secs_f64((1.0 / r).clamp(0.001, 0.010));
                // Stagger publishers across the tick period.
                let offset = period.mul_f64(self.index as f64 / npubs as f64);
                let mut iv = tokio::time::interval_at((start + offset).into(), period);
                iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
                let mut sent: u64 = 0;
                // The last tick may land just past `end`: it still sends what
                // was due; past `end + 50 ms` the schedule gives up.
                let hard_end = end + Duration::from_millis(50);
                while sent < total {
                    iv.tick().await;
                    let now = Instant::now();
                    if now >= hard_end {
                        break;
                    }
                    let due = (((now - start).as_secs_f64() * r) as u64 + 1).min(total);
                    while sent < due {
                        let Some(room) = self.window_room(hard_end).await else { break };
                        let n = ((due - sent) as usize).min(slots).min(room);
                        self.send(wr, step, n, end).await?;
                        sent += n as u64;
                        if Instant::now() >= hard_end {
                            break;
                        }
                    }
                }
            }
            None => {
                while Instant::now() < end {
                    let Some(room) = self.window_room(end).await else { break };
                    let n = slots.min(room);
                    self.send(wr, step, n, end).await?;
                    tokio::task::yield_now().await;
                }
            }
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn publisher(
    index: usize,
    stream: Conn,
    buf: BytesMut,
    barrier: bool,
    topic: String,
    cfg_qos: u8,
    payload: usize,
    window: usize,
    batch: usize,
    npubs: usize,
    shared: Arc<Shared>,
    mut phases: watch::Receiver<Phase>,
    done: mpsc::UnboundedSender<usize>,
    stop: watch::Receiver<bool>,
) -> Vec<Histogram<u64>> {
    let out = Arc::new(Outstanding {
        sent_ns: (0..=u16::MAX as usize).map(|_| AtomicU64::new(0)).collect(),
        step: (0..=u16::MAX as usize).map(|_| AtomicU16::new(0)).collect(),
        count: AtomicUsize::new(0),
        notify: Notify::new(),
    });
    let ws = stream.is_ws();
    let (rd, mut wr) = stream.into_split();
    let reader = tokio::spawn(publisher_reader(rd, buf, out.clone(), shared.clone(), stop));
    let mut ctx = PubCtx {
        index,
        qos: cfg_qos,
        window: window.clamp(1, 60_000),
        frames: PublishFrames::new(&topic, cfg_qos, payload, batch.max(1), ws),
        out,
        next_pid: 1,
        seq: 0,
        shared: shared.clone(),
    };
    let mut broken = false;
    loop {
        let phase = match timeout(PING_EVERY, phases.changed()).await {
            Ok(Ok(())) => phases.borrow_and_update().clone(),
            Ok(Err(_)) => break,
            Err(_) => {
                if !broken && wr.send(&mqtt::PINGREQ).await.is_err() {
                    broken = true;
                }
                continue;
            }
        };
        match phase {
            Phase::Idle => continue,
            Phase::Stop => break,
            Phase::Run { index: step, rate_per_pub, duration } => {
                if !broken {
                    if let Err(e) = ctx.run_step(&mut wr, step, rate_per_pub, duration, npubs).await {
                        shared.error("publisher", &e);
                        broken = true;
                    }
                }
                if barrier && !broken && wr.send(&mqtt::PINGREQ).await.is_err() {
                    broken = true;
                }
                let _ = done.send(index);
            }
        }
    }
    if !broken {
        let _ = wr.send(&mqtt::DISCONNECT).await;
    }
    reader.await.unwrap_or_default()
}

fn merge(into: &mut Vec<Histogram<u64>>, from: Vec<Histogram<u64>>, sigfig: u8) {
    for (s, h) in from.into_iter().enumerate() {
        grow(into, s, sigfig);
        into[s].add(&h).expect("histogram add");
    }
}

/// Runs the steps; `judge` sees each step's JSON and decides whether to go on.
pub async fn run(cfg: Config, steps: &[StepSpec], mut judge: impl FnMut(&Value) -> Next) -> Result<Value> {
    if steps.len() > MAX_STEPS {
        bail!("at most {MAX_STEPS} steps");
    }
    if cfg.payload < mqtt::PAYLOAD_HEADER {
        bail!("payload must be at least {} bytes", mqtt::PAYLOAD_HEADER);
    }
    if cfg.publishers == 0 || cfg.publishers > u16::MAX as usize {
        bail!("publishers must be 1..=65535");
    }
    let shared = Arc::new(Shared::new());
    let t_setup = Instant::now();
    let cpu_setup = self_cpu_secs();

    // Subscribers first, so no message is published before they are in place.
    let filter = cfg.sub_filter.clone();
    let sub_qos = cfg.sub_qos;
    let prefix = cfg.client_prefix.clone();
    let subs = open_many(
        cfg.subscribers,
        cfg.connect_concurrency,
        |i| (format!("{prefix}s{i}"), Some((filter.clone(), sub_qos))),
        cfg.target,
        &cfg.transport,
        cfg.sources,
        cfg.keepalive,
        0,
    )
    .await?;
    let pubs = open_many(
        cfg.publishers,
        cfg.connect_concurrency,
        |i| (format!("{prefix}p{i}"), None),
        cfg.target,
        &cfg.transport,
        cfg.sources,
        cfg.keepalive,
        cfg.subscribers,
    )
    .await?;
    let setup_secs = t_setup.elapsed().as_secs_f64();
    let setup_cpu = self_cpu_secs() - cpu_setup;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (phase_tx, phase_rx) = watch::channel(Phase::Idle);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<usize>();

    let mut sub_handles = Vec::with_capacity(subs.len());
    for (s, b) in subs {
        sub_handles.push(tokio::spawn(subscriber(s, b, shared.clone(), stop_rx.clone(), cfg.hist_sigfig)));
    }
    let mut pub_handles = Vec::with_capacity(pubs.len());
    for (i, (s, b)) in pubs.into_iter().enumerate() {
        pub_handles.push(tokio::spawn(publisher(
            i,
            s,
            b,
            cfg.barrier(),
            (cfg.pub_topic)(i),
            cfg.qos,
            cfg.payload,
            cfg.window,
            cfg.batch,
            cfg.publishers,
            shared.clone(),
            phase_rx.clone(),
            done_tx.clone(),
            stop_rx.clone(),
        )));
    }
    drop(done_tx);
    // Let the broker settle after the connection burst.
    sleep(Duration::from_millis(200)).await;

    let fan = cfg.subscribers as u64;
    let mut step_rows: Vec<Value> = Vec::new();
    for (k, spec) in steps.iter().enumerate() {
        // Step boundaries on stderr: the runner samples the broker's CPU there.
        eprintln!("MARK step={k} begin");
        let cpu0 = self_cpu_secs();
        let t0 = Instant::now();
        let pings0 = shared.pingresps.load(Relaxed);
        phase_tx.send(Phase::Run {
            index: k as u16,
            rate_per_pub: spec.rate.map(|r| r / cfg.publishers as f64),
            duration: spec.duration,
        })?;
        let mut finished = 0;
        let limit = tokio::time::Instant::now() + spec.duration + Duration::from_secs(15);
        while finished < cfg.publishers {
            match tokio::time::timeout_at(limit, done_rx.recv()).await {
                Ok(Some(_)) => finished += 1,
                _ => bail!("publishers did not finish step {k}"),
            }
        }
        let send_secs = t0.elapsed().as_secs_f64();
        // Drain: until everything expected has arrived, nothing moved for
        // `drain_idle`, or `drain_max` passed.
        let td = Instant::now();
        let mut last = (u64::MAX, u64::MAX);
        let mut last_change = Instant::now();
        let mut barrier_secs = None;
        loop {
            let offered = shared.offered[k].load(Relaxed);
            let delivered = shared.delivered[k].load(Relaxed);
            let acked = shared.acked[k].load(Relaxed);
            let barrier_done = shared.pingresps.load(Relaxed) - pings0 >= cfg.publishers as u64;
            let complete = delivered >= offered * fan && (cfg.qos == 0 || acked >= offered) && (!cfg.barrier() || barrier_done);
            if complete {
                if cfg.barrier() {
                    barrier_secs = Some(t0.elapsed().as_secs_f64());
                }
                break;
            }
            if td.elapsed() >= cfg.drain_max {
                break;
            }
            if (delivered, acked) != last {
                last = (delivered, acked);
                last_change = Instant::now();
            } else if !cfg.barrier() && last_change.elapsed() >= cfg.drain_idle {
                break;
            }
            sleep(Duration::from_millis(if cfg.barrier() { 1 } else { 10 })).await;
        }
        let drain_secs = td.elapsed().as_secs_f64();
        eprintln!("MARK step={k} end");
        let cpu = self_cpu_secs() - cpu0;
        let wall = t0.elapsed().as_secs_f64();
        let offered = shared.offered[k].load(Relaxed);
        let delivered = shared.delivered[k].load(Relaxed);
        let acked = shared.acked[k].load(Relaxed);
        let expected = offered * fan;
        let dur = spec.duration.as_secs_f64();
        let mut row = json!({
            "step": k,
            "target_rate": spec.rate.map(|r| Value::from(r.round())).unwrap_or(Value::from("max")),
            "duration_secs": dur,
            "send_secs": round2(send_secs),
            "drain_secs": round2(drain_secs),
            "offered": offered,
            "offered_rate": (offered as f64 / dur).round(),
            "expected_deliveries": expected,
            "delivered": delivered,
            "delivered_rate": (delivered as f64 / dur).round(),
            "lost": expected.saturating_sub(delivered),
            "duplicates": delivered.saturating_sub(expected),
            "delivered_pct": if expected > 0 { (delivered as f64 * 1e5 / expected as f64).round() / 1e3 } else { 0.0 },
            "loadgen_cpu_util": round2(cpu / wall),
        });
        if cfg.barrier() {
            // Written and read by the broker: offered ÷ time until the last PINGRESP.
            row["barrier_complete"] = json!(barrier_secs.is_some());
            row["processed_rate"] = match barrier_secs {
                Some(b) => json!((offered as f64 / b).round()),
                None => Value::Null,
            };
        }
        if cfg.qos > 0 {
            row["acked"] = json!(acked);
            row["acked_rate"] = json!((acked as f64 / dur).round());
            row["unacked"] = json!(offered.saturating_sub(acked));
        }
        let next = judge(&row);
        step_rows.push(row);
        if matches!(next, Next::Stop) {
            break;
        }
    }
    let _ = stop_tx.send(true);
    phase_tx.send(Phase::Stop)?;

    let mut delivery: Vec<Histogram<u64>> = Vec::new();
    let mut puback: Vec<Histogram<u64>> = Vec::new();
    for h in pub_handles {
        if let Ok(Ok(v)) = timeout(Duration::from_secs(10), h).await {
            merge(&mut puback, v, 3);
        }
    }
    for h in sub_handles {
        if let Ok(Ok(v)) = timeout(Duration::from_secs(10), h).await {
            merge(&mut delivery, v, cfg.hist_sigfig);
        }
    }
    let mut all_delivery = new_hist(cfg.hist_sigfig);
    let mut all_puback = new_hist(3);
    for (k, row) in step_rows.iter_mut().enumerate() {
        if let Some(h) = delivery.get(k) {
            row["latency_us"] = hist_json(h);
            all_delivery.add(h)?;
        } else {
            row["latency_us"] = json!({ "count": 0 });
        }
        if cfg.qos > 0 {
            if let Some(h) = puback.get(k) {
                row["puback_latency_us"] = hist_json(h);
                all_puback.add(h)?;
            } else {
                row["puback_latency_us"] = json!({ "count": 0 });
            }
        }
    }
    let last_error = shared.last_error.lock().unwrap().clone();
    Ok(json!({
        "setup_secs": round2(setup_secs),
        "setup_loadgen_cpu_secs": round2(setup_cpu),
        "connection_errors": shared.errors.load(Relaxed),
        "last_error": last_error,
        "steps": step_rows,
        "latency_us_all_steps": hist_json(&all_delivery),
        "puback_latency_us_all_steps": if cfg.qos > 0 { hist_json(&all_puback) } else { Value::Null },
    }))
}
