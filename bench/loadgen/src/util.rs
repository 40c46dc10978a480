//! Clock, histograms, CPU accounting, connection helpers.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::BytesMut;
use hdrhistogram::Histogram;
use serde_json::{json, Value};
use tokio::net::{TcpSocket, TcpStream};

use crate::mqtt::{self, Packet};
use crate::transport::Conn;

static BASE: OnceLock<Instant> = OnceLock::new();

/// Process-wide monotonic clock (CLOCK_MONOTONIC via `Instant`), in ns since start.
#[inline]
pub fn now_ns() -> u64 {
    BASE.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

pub fn init_clock() {
    let _ = now_ns();
}

/// Latency histogram in microseconds, 1 µs .. 60 s.
pub fn new_hist(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, sigfig).expect("histogram bounds")
}

#[inline]
pub fn record_ns(h: &mut Histogram<u64>, ns: u64) {
    h.saturating_record(ns / 1000);
}

/// JSON summary of a µs histogram.
pub fn hist_json(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({ "count": 0 });
    }
    json!({
        "count": h.len(),
        "min": h.min(),
        "mean": (h.mean() * 10.0).round() / 10.0,
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

/// CPU seconds (user + system) consumed by this process so far.
pub fn self_cpu_secs() -> f64 {
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0.0;
        }
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(ru.ru_utime) + t(ru.ru_stime)
    }
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `20000`, `20k`, `1.5m` → msg/s; `max` → None.
pub fn parse_rate(s: &str) -> Result<Option<f64>> {
    let t = s.trim().to_ascii_lowercase();
    if t == "max" {
        return Ok(None);
    }
    let (num, mult) = if let Some(n) = t.strip_suffix('k') {
        (n, 1e3)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 1e6)
    } else {
        (t.as_str(), 1.0)
    };
    let v: f64 = num.parse().with_context(|| format!("bad rate {s:?}"))?;
    if !(v > 0.0) {
        bail!("rate must be > 0 (or `max`)");
    }
    Ok(Some(v * mult))
}

pub fn parse_rates(s: &str) -> Result<Vec<f64>> {
    s.split(',')
        .map(|p| parse_rate(p)?.ok_or_else(|| anyhow!("`max` is not allowed in a rate list")))
        .collect()
}

/// Where connections come from: 127.0.0.1 .. 127.0.0.N, round robin (every
/// 127/8 address is local on Linux). Spreading over several source addresses
/// multiplies the ephemeral ports available towards one broker port.
#[derive(Clone, Copy)]
pub struct Sources {
    pub count: u8,
}

impl Sources {
    pub fn addr(&self, i: usize) -> Option<Ipv4Addr> {
        if self.count <= 1 {
            None
        } else {
            Some(Ipv4Addr::new(127, 0, 0, 1 + (i % self.count as usize) as u8))
        }
    }
}

/// TCP connect, optionally bound to a source address first (port chosen by
/// connect() thanks to IP_BIND_ADDRESS_NO_PORT, so the 4-tuple, not the
/// (addr, port) pair, has to be unique).
pub async fn tcp_connect(target: SocketAddr, source: Option<Ipv4Addr>) -> Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if let Some(src) = source {
        sock.set_reuseaddr(true)?;
        let one: libc::c_int = 1;
        // IP_BIND_ADDRESS_NO_PORT = 24 (linux/in.h)
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::IPPROTO_IP,
                24,
                &one as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        sock.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
    }
    let stream = sock.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Reads until one complete packet is at the front of `buf`, then hands it to
/// `f` and removes it. Extra bytes stay in `buf` for the caller.
pub async fn read_packet<T>(
    stream: &mut Conn,
    buf: &mut BytesMut,
    f: impl FnOnce(Packet<'_>) -> Result<T>,
) -> Result<T> {
    loop {
        if let Some((pkt, used)) = mqtt::parse(buf)? {
            let r = f(pkt);
            bytes::Buf::advance(buf, used);
            return r;
        }
        if buf.capacity() - buf.len() < 512 {
            buf.reserve(4096);
        }
        let n = stream.read_into(buf).await?;
        if n == 0 {
            bail!("connection closed by broker");
        }
    }
}

/// CONNECT (clean session) → CONNACK. Returns the time from writing CONNECT to reading CONNACK.
pub async fn mqtt_connect(stream: &mut Conn, client_id: &str, keepalive: u16, buf: &mut BytesMut) -> Result<Duration> {
    Ok(mqtt_connect_session(stream, client_id, keepalive, true, buf).await?.0)
}

/// CONNECT with the given clean-session flag → CONNACK. Returns the time
/// from writing CONNECT to reading CONNACK, and CONNACK's session-present flag.
pub async fn mqtt_connect_session(stream: &mut Conn, client_id: &str, keepalive: u16, clean: bool, buf: &mut BytesMut) -> Result<(Duration, bool)> {
    let t0 = Instant::now();
    stream.send(&mqtt::connect_session(client_id, keepalive, clean)).await?;
    let present = read_packet(stream, buf, |p| match p {
        Packet::ConnAck { session_present, return_code: 0 } => Ok(session_present),
        Packet::ConnAck { return_code, .. } => bail!("CONNACK refused, code {return_code}"),
        other => bail!("expected CONNACK, got {other:?}"),
    })
    .await?;
    Ok((t0.elapsed(), present))
}

/// SUBSCRIBE → SUBACK; fails if the broker refuses the filter (0x80).
pub async fn mqtt_subscribe(stream: &mut Conn, filter: &str, qos: u8, buf: &mut BytesMut) -> Result<u8> {
    stream.send(&mqtt::subscribe(1, filter, qos)).await?;
    loop {
        let r = read_packet(stream, buf, |p| match p {
            Packet::SubAck { granted, .. } => match granted.first() {
                Some(&g) if g < 0x80 => Ok(Some(g)),
                _ => bail!("SUBACK refused filter {filter:?}"),
            },
            // A retained message could come first; ignore anything else.
            _ => Ok(None),
        })
        .await?;
        if let Some(g) = r {
            return Ok(g);
        }
    }
}
