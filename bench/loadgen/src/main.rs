//! fbroker-loadgen: open-loop MQTT 3.1.1 load generator for the benchmark
//! suite. Each subcommand runs one bounded scenario against a broker on the
//! loopback interface and prints ONE JSON object on stdout.

mod conns;
mod mqtt;
mod persist;
mod pubsub;
mod transport;
mod util;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};

use util::{parse_rate, parse_rates, round2, self_cpu_secs, Sources};

#[derive(Parser)]
#[command(name = "fbroker-loadgen", version, about = "Open-loop MQTT 3.1.1 load generator (loopback only)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// Broker address (must be a loopback address).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// tcp, tls (rustls, ring), ws (WebSocket) or wss (WebSocket over TLS).
    #[arg(long, value_enum, default_value_t = transport::Kind::Tcp)]
    transport: transport::Kind,
    /// tls/wss: PEM file of the CA(s) the broker's certificate is verified against.
    #[arg(long)]
    cafile: Option<String>,
    /// tls/wss: name the certificate must carry (default: --host).
    #[arg(long)]
    tls_server_name: Option<String>,
    /// tls/wss: protocol version, 1.3 or 1.2.
    #[arg(long, default_value = "1.3")]
    tls_version: String,
    /// ws/wss: request path of the HTTP Upgrade.
    #[arg(long, default_value = "/mqtt")]
    ws_path: String,
    /// Length of the measured phase (per step for sweeps and connrate).
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Runtime threads: 1 = current-thread runtime (best when pinned to one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Spread client sockets over source addresses 127.0.0.1 ..= 127.0.0.N.
    #[arg(long, default_value_t = 1)]
    source_addrs: u8,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 100)]
    connect_concurrency: usize,
    /// MQTT keep-alive sent in CONNECT (seconds); clients ping at half of it.
    #[arg(long, default_value_t = 60)]
    keepalive: u16,
    /// Client identifier prefix (kept short: some brokers cap ids at 23 bytes).
    #[arg(long, default_value = "lg")]
    client_prefix: String,
    /// Pretty-print the JSON result.
    #[arg(long)]
    pretty: bool,
}

#[derive(Args, Clone)]
struct Drain {
    /// Longest wait after publishing stops for deliveries still in flight.
    #[arg(long, default_value_t = 3.0)]
    drain_max_secs: f64,
    /// Stop draining once nothing arrived for this long.
    #[arg(long, default_value_t = 500)]
    drain_idle_ms: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// N publishers → 1 wildcard subscriber, at an offered aggregate rate.
    Fanin {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        drain: Drain,
        #[arg(long, default_value_t = 10)]
        publishers: usize,
        /// Subscribers of the filter (0: publish only, as third-party
        /// publish benchmarks do; QoS 1 then counts PUBACKs).
        #[arg(long, default_value_t = 1)]
        subscribers: usize,
        /// Payload bytes (≥ 16: timestamp + id, then padding).
        #[arg(long, default_value_t = 16)]
        payload: usize,
        /// Offered aggregate msg/s (`20000`, `20k`) or `max`.
        #[arg(long, default_value = "20000")]
        rate: String,
        /// Subscriber's filter; publisher i publishes to bench/i/x.
        #[arg(long, default_value = "bench/+/x")]
        filter: String,
        #[arg(long, default_value_t = 0)]
        qos: u8,
        #[arg(long, default_value_t = 1000)]
        window: usize,
        /// Most PUBLISH frames per write.
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// fanin at increasing rates; reports the highest rate delivered ≥ threshold.
    FaninSweep {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        drain: Drain,
        #[arg(long, default_value_t = 10)]
        publishers: usize,
        #[arg(long, default_value_t = 16)]
        payload: usize,
        /// Offered aggregate rates, in order (`--duration-secs` each).
        #[arg(long, default_value = "20k,40k,80k,160k,320k,640k")]
        rates: String,
        /// A step is sustained when delivered ≥ threshold × offered and
        /// offered ≥ 99 % of the target.
        #[arg(long, default_value_t = 0.999)]
        threshold: f64,
        /// Stop after this many consecutive unsustained steps.
        #[arg(long, default_value_t = 1)]
        max_failures: usize,
        #[arg(long, default_value = "bench/+/x")]
        filter: String,
        #[arg(long, default_value_t = 0)]
        qos: u8,
        #[arg(long, default_value_t = 1000)]
        window: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// 1 publisher → S subscribers of the same topic.
    Fanout {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        drain: Drain,
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// Publish QoS (0 or 1).
        #[arg(long, default_value_t = 0)]
        qos: u8,
        /// Subscription QoS (default: same as --qos).
        #[arg(long)]
        sub_qos: Option<u8>,
        /// Publisher msg/s (each delivered S times) or `max`.
        #[arg(long, default_value = "100")]
        rate: String,
        #[arg(long, default_value_t = 16)]
        payload: usize,
        /// QoS 1: most unacknowledged PUBLISHes.
        #[arg(long, default_value_t = 100)]
        window: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// QoS 1 publish → QoS 1 subscriber at a fixed rate: delivery and PUBACK latency.
    Roundtrip {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        drain: Drain,
        #[arg(long, default_value = "10000")]
        rate: String,
        #[arg(long, default_value_t = 1)]
        publishers: usize,
        #[arg(long, default_value_t = 16)]
        payload: usize,
        #[arg(long, default_value_t = 1000)]
        window: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
    },
    /// QoS 1 publishes into offline persistent sessions (queued, stored), then the sessions reconnect and count what they get.
    Persist {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        drain: Drain,
        /// Persistent sessions (clean session = 0), offline while the
        /// publishers run; subscriber i subscribes QoS 1 to publisher
        /// (i mod P)'s topic, so every message is queued S ÷ P times.
        #[arg(long, default_value_t = 10)]
        subscribers: usize,
        #[arg(long, default_value_t = 10)]
        publishers: usize,
        #[arg(long, default_value_t = 16)]
        payload: usize,
        /// Steps, `--duration-secs` each: offered aggregate msg/s (`5k`), or
        /// `max` (as fast as the window of unacknowledged messages allows).
        #[arg(long, default_value = "5k,max")]
        rates: String,
        /// Most unacknowledged PUBLISHes per publisher.
        #[arg(long, default_value_t = 100)]
        window: usize,
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// After publishing, reconnect the sessions and count what they
        /// receive, for at most this long (0: skip).
        #[arg(long, default_value_t = 120.0)]
        verify_max_secs: f64,
        /// ... or until nothing new arrived for this long.
        #[arg(long, default_value_t = 5000)]
        verify_idle_ms: u64,
        /// After the reconnect phase, print `MARK phase=store begin` and wait
        /// for a line on stdin (at most 120 s) before the cleanup, so that a
        /// caller can inspect the broker's store meanwhile.
        #[arg(long)]
        pause_after_verify: bool,
        /// Leave the sessions on the broker at the end (by default each id
        /// connects once more with clean session = 1, which drops them).
        #[arg(long)]
        keep_sessions: bool,
    },
    /// Open N connections (each subscribes to a topic of its own) and hold them.
    Idle {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 10000)]
        connections: usize,
        /// Seconds to hold the connections after the last one is up
        /// (`READY` is printed on stderr when they are).
        #[arg(long, default_value_t = 10.0)]
        hold_secs: f64,
    },
    /// Open (and close) new connections at fixed rates, `--duration-secs` each.
    Connrate {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value = "1000,5000")]
        rates: String,
        #[arg(long, default_value_t = 5000)]
        timeout_ms: u64,
        /// Most connections being set up at once; beyond it, attempts are skipped (and counted).
        #[arg(long, default_value_t = 8000)]
        max_inflight: usize,
    },
}

fn target(c: &Common) -> Result<SocketAddr> {
    let addr = (c.host.as_str(), c.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", c.host))?
        .find(|a| a.is_ipv4())
        .context("no IPv4 address")?;
    if !addr.ip().is_loopback() {
        bail!("refusing to load {addr}: only loopback targets are allowed");
    }
    Ok(addr)
}

fn transport_of(c: &Common) -> Result<Arc<transport::Transport>> {
    let t = target(c)?;
    Ok(Arc::new(transport::Transport::new(transport::TransportOptions {
        kind: c.transport,
        cafile: c.cafile.as_deref(),
        server_name: c.tls_server_name.as_deref().unwrap_or(&c.host),
        tls_version: &c.tls_version,
        ws_path: &c.ws_path,
        target: t,
    })?))
}

fn dur(secs: f64) -> Result<Duration> {
    if !(secs > 0.0 && secs <= 3600.0) {
        bail!("durations must be in (0, 3600] seconds");
    }
    Ok(Duration::from_secs_f64(secs))
}

fn check_qos(q: u8) -> Result<u8> {
    if q > 1 {
        bail!("QoS must be 0 or 1");
    }
    Ok(q)
}

fn pubsub_cfg(
    c: &Common,
    d: &Drain,
    publishers: usize,
    subscribers: usize,
    pub_topic: Box<dyn Fn(usize) -> String>,
    filter: String,
    (qos, sub_qos): (u8, u8),
    payload: usize,
    window: usize,
    batch: usize,
) -> Result<pubsub::Config> {
    Ok(pubsub::Config {
        target: target(c)?,
        transport: transport_of(c)?,
        publishers,
        subscribers,
        pub_topic,
        sub_filter: filter,
        qos: check_qos(qos)?,
        sub_qos: check_qos(sub_qos)?,
        payload,
        window,
        batch,
        hist_sigfig: if subscribers > 100 { 2 } else { 3 },
        connect_concurrency: c.connect_concurrency,
        sources: Sources { count: c.source_addrs },
        client_prefix: c.client_prefix.clone(),
        keepalive: c.keepalive,
        drain_max: dur(d.drain_max_secs)?,
        drain_idle: Duration::from_millis(d.drain_idle_ms),
    })
}

/// Single-step scenarios: lift the step's fields to the top level.
fn flatten_single(mut r: Value) -> Value {
    let step = r["steps"].get(0).cloned();
    if let (Some(Value::Object(step)), Value::Object(top)) = (step, &mut r) {
        for (k, v) in step {
            if k != "step" {
                top.insert(k, v);
            }
        }
        top.remove("steps");
        top.remove("latency_us_all_steps");
        top.remove("puback_latency_us_all_steps");
    }
    r
}

fn common_of(cmd: &Cmd) -> &Common {
    match cmd {
        Cmd::Fanin { common, .. }
        | Cmd::FaninSweep { common, .. }
        | Cmd::Fanout { common, .. }
        | Cmd::Roundtrip { common, .. }
        | Cmd::Persist { common, .. }
        | Cmd::Idle { common, .. }
        | Cmd::Connrate { common, .. } => common,
    }
}

async fn run(cmd: Cmd) -> Result<Value> {
    let c = common_of(&cmd).clone();
    let d = dur(c.duration_secs)?;
    let mut params = Map::new();
    let result = match cmd {
        Cmd::Fanin { drain, publishers, subscribers, payload, rate, filter, qos, window, batch, .. } => {
            params.extend(json!({ "publishers": publishers, "subscribers": subscribers, "payload": payload, "rate": rate, "filter": filter, "qos": qos, "window": window, "batch": batch }).as_object().unwrap().clone());
            let cfg = pubsub_cfg(&c, &drain, publishers, subscribers, Box::new(|i| format!("bench/{i}/x")), filter, (qos, qos), payload, window, batch)?;
            let steps = [pubsub::StepSpec { rate: parse_rate(&rate)?, duration: d }];
            flatten_single(pubsub::run(cfg, &steps, |_| pubsub::Next::Continue).await?)
        }
        Cmd::FaninSweep { drain, publishers, payload, rates, threshold, max_failures, filter, qos, window, batch, .. } => {
            params.extend(json!({ "publishers": publishers, "subscribers": 1, "payload": payload, "rates": rates, "step_secs": c.duration_secs, "threshold": threshold, "filter": filter, "qos": qos }).as_object().unwrap().clone());
            let cfg = pubsub_cfg(&c, &drain, publishers, 1, Box::new(|i| format!("bench/{i}/x")), filter, (qos, qos), payload, window, batch)?;
            let steps: Vec<_> = parse_rates(&rates)?.into_iter().map(|r| pubsub::StepSpec { rate: Some(r), duration: d }).collect();
            let mut best: Option<(f64, f64)> = None; // (target, delivered_rate)
            let mut fails = 0;
            let mut stop_reason = String::from("top of range");
            let mut r = pubsub::run(cfg, &steps, |row| {
                let target = row["target_rate"].as_f64().unwrap_or(0.0);
                let offered = row["offered"].as_f64().unwrap_or(0.0);
                let pct = row["delivered_pct"].as_f64().unwrap_or(0.0);
                let sustained = offered >= 0.99 * target * row["duration_secs"].as_f64().unwrap_or(0.0) && pct >= threshold * 100.0;
                if sustained {
                    fails = 0;
                    let dr = row["delivered_rate"].as_f64().unwrap_or(0.0);
                    if best.map_or(true, |(t, _)| target > t) {
                        best = Some((target, dr));
                    }
                    pubsub::Next::Continue
                } else {
                    fails += 1;
                    let short = offered < 0.99 * target * row["duration_secs"].as_f64().unwrap_or(0.0);
                    let gen_busy = row["loadgen_cpu_util"].as_f64().unwrap_or(0.0) >= 0.9;
                    stop_reason = format!(
                        "{} at {}",
                        match (short, gen_busy) {
                            (_, true) => "generator CPU-bound",
                            (true, false) => "offer fell short (backpressure)",
                            (false, false) => "loss",
                        },
                        target
                    );
                    if fails >= max_failures { pubsub::Next::Stop } else { pubsub::Next::Continue }
                }
            })
            .await?;
            if let Some(steps) = r["steps"].as_array_mut() {
                for row in steps.iter_mut() {
                    let target = row["target_rate"].as_f64().unwrap_or(0.0);
                    let offered = row["offered"].as_f64().unwrap_or(0.0);
                    let pct = row["delivered_pct"].as_f64().unwrap_or(0.0);
                    row["sustained"] = json!(offered >= 0.99 * target * row["duration_secs"].as_f64().unwrap_or(0.0) && pct >= threshold * 100.0);
                }
            }
            r["max_sustained_rate"] = json!(best.map(|b| b.0));
            r["stop_reason"] = json!(stop_reason);
            r["max_sustained_delivered_rate"] = json!(best.map(|b| b.1));
            r
        }
        Cmd::Fanout { drain, subscribers, qos, sub_qos, rate, payload, window, batch, .. } => {
            let sub_qos = sub_qos.unwrap_or(qos);
            params.extend(json!({ "publishers": 1, "subscribers": subscribers, "payload": payload, "rate": rate, "qos": qos, "sub_qos": sub_qos }).as_object().unwrap().clone());
            let cfg = pubsub_cfg(&c, &drain, 1, subscribers, Box::new(|_| "bench/fanout".to_string()), "bench/fanout".into(), (qos, sub_qos), payload, window, batch)?;
            let steps = [pubsub::StepSpec { rate: parse_rate(&rate)?, duration: d }];
            flatten_single(pubsub::run(cfg, &steps, |_| pubsub::Next::Continue).await?)
        }
        Cmd::Roundtrip { drain, rate, publishers, payload, window, batch, .. } => {
            params.extend(json!({ "publishers": publishers, "subscribers": 1, "payload": payload, "rate": rate, "qos": 1, "sub_qos": 1 }).as_object().unwrap().clone());
            let cfg = pubsub_cfg(&c, &drain, publishers, 1, Box::new(|i| format!("bench/rt/{i}")), "bench/rt/+".into(), (1, 1), payload, window, batch)?;
            let steps = [pubsub::StepSpec { rate: parse_rate(&rate)?, duration: d }];
            flatten_single(pubsub::run(cfg, &steps, |_| pubsub::Next::Continue).await?)
        }
        Cmd::Persist { drain, subscribers, publishers, payload, rates, window, batch, verify_max_secs, verify_idle_ms, pause_after_verify, keep_sessions, .. } => {
            params.extend(json!({ "publishers": publishers, "subscribers": subscribers, "payload": payload, "rates": rates, "step_secs": c.duration_secs, "qos": 1, "sub_qos": 1, "window": window, "batch": batch, "verify_max_secs": verify_max_secs, "verify_idle_ms": verify_idle_ms }).as_object().unwrap().clone());
            let engine = pubsub_cfg(&c, &drain, publishers, 0, Box::new(persist::topic), String::new(), (1, 1), payload, window, batch)?;
            let steps = rates
                .split(',')
                .map(|r| Ok(pubsub::StepSpec { rate: parse_rate(r)?, duration: d }))
                .collect::<Result<Vec<_>>>()?;
            persist::run(persist::Config {
                engine,
                steps,
                subscribers,
                verify_max: if verify_max_secs > 0.0 { Some(dur(verify_max_secs)?) } else { None },
                verify_idle: Duration::from_millis(verify_idle_ms),
                pause_after_verify,
                cleanup: !keep_sessions,
            })
            .await?
        }
        Cmd::Idle { connections, hold_secs, .. } => {
            params.extend(json!({ "connections": connections, "hold_secs": hold_secs, "source_addrs": c.source_addrs }).as_object().unwrap().clone());
            conns::idle(conns::IdleConfig {
                target: target(&c)?,
                transport: transport_of(&c)?,
                connections,
                concurrency: c.connect_concurrency,
                hold: dur(hold_secs)?,
                keepalive: c.keepalive,
                sources: Sources { count: c.source_addrs },
                client_prefix: c.client_prefix.clone(),
            })
            .await?
        }
        Cmd::Connrate { rates, timeout_ms, max_inflight, .. } => {
            params.extend(json!({ "rates": rates, "step_secs": c.duration_secs, "timeout_ms": timeout_ms, "source_addrs": c.source_addrs }).as_object().unwrap().clone());
            conns::connrate(conns::ConnRateConfig {
                target: target(&c)?,
                transport: transport_of(&c)?,
                rates: parse_rates(&rates)?,
                step: d,
                conn_timeout: Duration::from_millis(timeout_ms),
                max_inflight,
                keepalive: c.keepalive,
                sources: Sources { count: c.source_addrs },
                client_prefix: c.client_prefix.clone(),
            })
            .await?
        }
    };
    params.insert("duration_secs".into(), json!(c.duration_secs));
    params.insert("threads".into(), json!(c.threads));
    params.insert("transport".into(), json!(c.transport.as_str()));
    if c.transport.tls() {
        params.insert("tls_version".into(), json!(c.tls_version));
        params.insert("tls_negotiated".into(), json!(transport::negotiated()));
    }
    if c.transport.ws() {
        params.insert("ws_path".into(), json!(c.ws_path));
    }
    let mut out = json!({ "target": format!("{}:{}", c.host, c.port), "params": params });
    if let (Value::Object(o), Value::Object(r)) = (&mut out, result) {
        o.extend(r);
    }
    Ok(out)
}

fn main() {
    util::init_clock();
    let cli = Cli::parse();
    let scenario = match &cli.cmd {
        Cmd::Fanin { .. } => "fanin",
        Cmd::FaninSweep { .. } => "fanin-sweep",
        Cmd::Fanout { .. } => "fanout",
        Cmd::Roundtrip { .. } => "roundtrip",
        Cmd::Persist { .. } => "persist",
        Cmd::Idle { .. } => "idle",
        Cmd::Connrate { .. } => "connrate",
    };
    let common = common_of(&cli.cmd).clone();
    let rt = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(common.threads).enable_all().build()
    }
    .expect("tokio runtime");
    let t0 = Instant::now();
    let result = rt.block_on(run(cli.cmd));
    let mut out = match result {
        Ok(v) => v,
        Err(e) => {
            eprintln!("fbroker-loadgen {scenario}: error: {e:#}");
            let v = json!({ "scenario": scenario, "error": format!("{e:#}") });
            println!("{v}");
            // Tear down without waiting for tasks still blocked on a broker.
            std::process::exit(1);
        }
    };
    out["scenario"] = json!(scenario);
    out["wall_secs"] = json!(round2(t0.elapsed().as_secs_f64()));
    out["loadgen_cpu_secs"] = json!(round2(self_cpu_secs()));
    let text = if common.pretty { serde_json::to_string_pretty(&out) } else { serde_json::to_string(&out) };
    println!("{}", text.expect("json"));
    // Exit without dropping the runtime: leftover connection tasks are not
    // waited for (the result is already out).
    std::process::exit(0);
}
