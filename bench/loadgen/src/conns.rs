//! Connection scenarios: `idle` (many held connections) and `connrate`
//! (new connections opened at a fixed rate, then closed).

use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::{sleep, timeout, MissedTickBehavior};

use crate::mqtt;
use crate::transport::Transport;
use crate::util::*;

pub struct IdleConfig {
    pub target: SocketAddr,
    pub transport: Arc<Transport>,
    pub connections: usize,
    pub concurrency: usize,
    pub hold: Duration,
    pub keepalive: u16,
    pub sources: Sources,
    pub client_prefix: String,
}

/// Opens N connections (CONNECT + SUBSCRIBE to a topic of its own), reports
/// how long it took, prints `READY` on stderr and holds them for `hold`.
pub async fn idle(cfg: IdleConfig) -> Result<Value> {
    let cpu0 = self_cpu_secs();
    let sem = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<Result<Duration, String>>();
    let closed = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let mut handles = Vec::with_capacity(cfg.connections);
    for i in 0..cfg.connections {
        let permit = sem.clone().acquire_owned().await?;
        let ready_tx = ready_tx.clone();
        let mut stop = stop_rx.clone();
        let closed = closed.clone();
        let id = format!("{}i{i}", cfg.client_prefix);
        let (target, src, keepalive) = (cfg.target, cfg.sources.addr(i), cfg.keepalive);
        let transport = cfg.transport.clone();
        handles.push(tokio::spawn(async move {
            let t = Instant::now();
            let setup = async {
                let mut s = transport.connect(target, src, i as u64).await?;
                let mut buf = BytesMut::with_capacity(64);
                mqtt_connect(&mut s, &id, keepalive, &mut buf).await?;
                mqtt_subscribe(&mut s, &format!("bench/idle/{i}"), 0, &mut buf).await?;
                Ok::<_, anyhow::Error>(s)
            };
            let r = timeout(Duration::from_secs(20), setup).await;
            drop(permit);
            let mut s = match r {
                Ok(Ok(s)) => {
                    let _ = ready_tx.send(Ok(t.elapsed()));
                    s
                }
                Ok(Err(e)) => {
                    let _ = ready_tx.send(Err(format!("{e:#}")));
                    return;
                }
                Err(_) => {
                    let _ = ready_tx.send(Err("connect/subscribe timed out".into()));
                    return;
                }
            };
            drop(ready_tx);
            let period = Duration::from_secs((keepalive as u64 / 2).max(1));
            let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut scratch = BytesMut::with_capacity(64);
            loop {
                scratch.clear();
                tokio::select! {
                    r = s.read_into(&mut scratch) => {
                        if !matches!(r, Ok(n) if n > 0) { closed.fetch_add(1, Relaxed); return; }
                    }
                    _ = ping.tick() => { if s.send(&mqtt::PINGREQ).await.is_err() { closed.fetch_add(1, Relaxed); return; } }
                    _ = stop.changed() => { let _ = s.send(&mqtt::DISCONNECT).await; return; }
                }
            }
        }));
    }
    drop(ready_tx);
    let mut setup = new_hist(3);
    let mut ok = 0u64;
    let mut failed = 0u64;
    let mut first_error = None;
    while let Some(r) = ready_rx.recv().await {
        match r {
            Ok(d) => {
                ok += 1;
                record_ns(&mut setup, d.as_nanos() as u64);
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    let connect_all = t0.elapsed().as_secs_f64();
    let cpu_connect = self_cpu_secs() - cpu0;
    // Tell the runner: everything is open, sample the broker now.
    {
        let mut e = std::io::stderr().lock();
        let _ = writeln!(e, "READY idle connected={ok} failed={failed} connect_all_secs={connect_all:.3}");
        let _ = e.flush();
    }
    sleep(cfg.hold).await;
    let closed_during_hold = closed.load(Relaxed);
    let _ = stop_tx.send(true);
    for h in handles {
        let _ = timeout(Duration::from_secs(5), h).await;
    }
    Ok(json!({
        "connections": cfg.connections,
        "connected": ok,
        "failed": failed,
        "first_error": first_error,
        "connect_all_secs": (connect_all * 1000.0).round() / 1000.0,
        "connect_rate": (ok as f64 / connect_all).round(),
        "setup_latency_us": hist_json(&setup),
        "hold_secs": cfg.hold.as_secs_f64(),
        "closed_during_hold": closed_during_hold,
        "loadgen_cpu_connect_secs": round2(cpu_connect),
    }))
}

pub struct ConnRateConfig {
    pub target: SocketAddr,
    pub transport: Arc<Transport>,
    pub rates: Vec<f64>,
    pub step: Duration,
    pub conn_timeout: Duration,
    pub max_inflight: usize,
    pub keepalive: u16,
    pub sources: Sources,
    pub client_prefix: String,
}

enum Outcome {
    Ok { tcp_ns: u64, connack_ns: u64, total_ns: u64 },
    Failed(String),
    TimedOut,
}

/// Opens connections at each fixed rate for `step`: TCP connect, CONNECT,
/// wait for CONNACK, DISCONNECT, close. Records CONNECT→CONNACK and the
/// whole TCP-connect→CONNACK time.
pub async fn connrate(cfg: ConnRateConfig) -> Result<Value> {
    let mut rows = Vec::new();
    let mut global_idx: usize = 0;
    for (k, &rate) in cfg.rates.iter().enumerate() {
        eprintln!("MARK step={k} begin");
        let cpu0 = self_cpu_secs();
        let inflight = Arc::new(AtomicUsize::new(0));
        let (tx, mut rx) = mpsc::unbounded_channel::<Outcome>();
        let collector = tokio::spawn(async move {
            let (mut connack, mut tcp, mut total) = (new_hist(3), new_hist(3), new_hist(3));
            let (mut ok, mut failed, mut timed_out) = (0u64, 0u64, 0u64);
            let mut first_error: Option<String> = None;
            while let Some(o) = rx.recv().await {
                match o {
                    Outcome::Ok { tcp_ns, connack_ns, total_ns } => {
                        ok += 1;
                        record_ns(&mut tcp, tcp_ns);
                        record_ns(&mut connack, connack_ns);
                        record_ns(&mut total, total_ns);
                    }
                    Outcome::Failed(e) => {
                        failed += 1;
                        first_error.get_or_insert(e);
                    }
                    Outcome::TimedOut => timed_out += 1,
                }
            }
            (connack, tcp, total, ok, failed, timed_out, first_error)
        });
        let start = Instant::now();
        let total_target = (rate * cfg.step.as_secs_f64()).floor() as u64;
        let mut iv = tokio::time::interval(Duration::from_millis(1));
        iv.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut started = 0u64;
        let mut skipped = 0u64;
        let hard_end = cfg.step + Duration::from_millis(50);
        while started + skipped < total_target {
            iv.tick().await;
            let el = start.elapsed();
            if el >= hard_end {
                break;
            }
            let due = ((el.as_secs_f64() * rate) as u64 + 1).min(total_target);
            while started + skipped < due {
                if inflight.load(Relaxed) >= cfg.max_inflight {
                    skipped += 1;
                    continue;
                }
                inflight.fetch_add(1, Relaxed);
                let tx = tx.clone();
                let inflight = inflight.clone();
                let id = format!("{}c{global_idx}", cfg.client_prefix);
                let (target, src, keepalive, to) = (cfg.target, cfg.sources.addr(global_idx), cfg.keepalive, cfg.conn_timeout);
                let transport = cfg.transport.clone();
                let seed = global_idx as u64;
                global_idx += 1;
                started += 1;
                tokio::spawn(async move {
                    let t0 = Instant::now();
                    let work = async {
                        let mut s = transport.connect(target, src, seed).await?;
                        let tcp_ns = t0.elapsed().as_nanos() as u64;
                        let mut buf = BytesMut::with_capacity(64);
                        let connack = mqtt_connect(&mut s, &id, keepalive, &mut buf).await?;
                        let total_ns = t0.elapsed().as_nanos() as u64;
                        let _ = s.send(&mqtt::DISCONNECT).await;
                        Ok::<_, anyhow::Error>(Outcome::Ok { tcp_ns, connack_ns: connack.as_nanos() as u64, total_ns })
                    };
                    let o = match timeout(to, work).await {
                        Ok(Ok(o)) => o,
                        Ok(Err(e)) => Outcome::Failed(format!("{e:#}")),
                        Err(_) => Outcome::TimedOut,
                    };
                    inflight.fetch_sub(1, Relaxed);
                    let _ = tx.send(o);
                });
            }
        }
        let schedule_secs = start.elapsed().as_secs_f64();
        drop(tx);
        let (connack, tcp, total, ok, failed, timed_out, first_error) =
            timeout(cfg.conn_timeout + Duration::from_secs(5), collector)
                .await
                .map_err(|_| anyhow!("connections of step {k} did not finish"))??;
        let wall = start.elapsed().as_secs_f64();
        let cpu = self_cpu_secs() - cpu0;
        eprintln!("MARK step={k} end");
        rows.push(json!({
            "step": k,
            "target_rate": rate.round(),
            "duration_secs": cfg.step.as_secs_f64(),
            "schedule_secs": round2(schedule_secs),
            "attempted": started,
            "skipped_inflight_cap": skipped,
            "connected": ok,
            "failed": failed,
            "timed_out": timed_out,
            "first_error": first_error,
            "achieved_rate": (ok as f64 / cfg.step.as_secs_f64()).round(),
            "connack_latency_us": hist_json(&connack),
            "tcp_connect_latency_us": hist_json(&tcp),
            "total_latency_us": hist_json(&total),
            "loadgen_cpu_util": round2(cpu / wall),
        }));
        // Let the closes settle between steps.
        sleep(Duration::from_millis(300)).await;
    }
    Ok(json!({ "steps": rows }))
}
