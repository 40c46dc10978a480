//! Transports under the MQTT byte stream: plain TCP, TLS (rustls, ring
//! provider, server verified against a CA file), WebSocket (RFC 6455 client
//! framing written here: HTTP/1.1 Upgrade with `Sec-WebSocket-Protocol: mqtt`,
//! masked binary frames client → server) and WebSocket over TLS.
//!
//! Plain TCP keeps the bare path: a read is one `read_buf` into the caller's
//! MQTT buffer, a write is one `write_all`; the other transports branch off
//! before that. Outgoing PUBLISH batches are framed once up front
//! ([`crate::mqtt::PublishFrames`] builds one masked WebSocket frame per
//! message); control packets are framed on the way out ([`Conn::send`]).

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use anyhow::{anyhow, bail, Context as _, Result};
use base64::Engine as _;
use bytes::{Buf, BytesMut};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::util::{now_ns, tcp_connect};

/// The masking key of every client frame. RFC 6455 asks for an unpredictable
/// key per frame (against cache poisoning by intermediaries); a load generator
/// on loopback has no intermediary, and a fixed non-zero key lets PUBLISH
/// frames be masked once and stamped in place. The server unmasks every byte
/// either way.
pub const WS_MASK: [u8; 4] = [0x6b, 0x1d, 0xc3, 0x58];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Tls => "tls",
            Kind::Ws => "ws",
            Kind::Wss => "wss",
        }
    }
    pub fn tls(self) -> bool {
        matches!(self, Kind::Tls | Kind::Wss)
    }
    pub fn ws(self) -> bool {
        matches!(self, Kind::Ws | Kind::Wss)
    }
}

/// How to reach the broker: shared by every connection of a run.
pub struct Transport {
    pub kind: Kind,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    ws_path: String,
    host_header: String,
}

/// What the first TLS handshake of the process negotiated, e.g.
/// "TLSv1_3 TLS13_AES_256_GCM_SHA384".
static NEGOTIATED: OnceLock<String> = OnceLock::new();

pub fn negotiated() -> Option<&'static str> {
    NEGOTIATED.get().map(|s| s.as_str())
}

pub struct TransportOptions<'a> {
    pub kind: Kind,
    pub cafile: Option<&'a str>,
    /// TLS server name to verify (default: the host).
    pub server_name: &'a str,
    /// "1.3" (default) or "1.2".
    pub tls_version: &'a str,
    pub ws_path: &'a str,
    pub target: SocketAddr,
}

impl Transport {
    pub fn new(o: TransportOptions<'_>) -> Result<Self> {
        let tls = if o.kind.tls() {
            let cafile = o.cafile.context("--transport tls/wss needs --cafile (the CA that signed the broker's certificate)")?;
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(cafile).with_context(|| format!("reading {cafile}"))? {
                roots.add(c.with_context(|| format!("parsing {cafile}"))?).context("adding a CA certificate")?;
            }
            if roots.is_empty() {
                bail!("{cafile} holds no certificate");
            }
            let versions: &[&'static rustls::SupportedProtocolVersion] = match o.tls_version {
                "1.3" => &[&rustls::version::TLS13],
                "1.2" => &[&rustls::version::TLS12],
                v => bail!("--tls-version must be 1.2 or 1.3, not {v:?}"),
            };
            let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_protocol_versions(versions)
                .context("TLS protocol versions")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            let name = ServerName::try_from(o.server_name.to_string()).map_err(|e| anyhow!("bad TLS server name {:?}: {e}", o.server_name))?;
            Some((TlsConnector::from(Arc::new(cfg)), name))
        } else {
            None
        };
        if o.kind.ws() && !o.ws_path.starts_with('/') {
            bail!("--ws-path must start with /");
        }
        Ok(Transport { kind: o.kind, tls, ws_path: o.ws_path.to_string(), host_header: o.target.to_string() })
    }

    /// TCP connect (from `source`, if given), then the TLS handshake and the
    /// WebSocket upgrade as the transport asks. `seed` varies the WebSocket key.
    pub async fn connect(&self, target: SocketAddr, source: Option<Ipv4Addr>, seed: u64) -> Result<Conn> {
        let tcp = tcp_connect(target, source).await?;
        let stream = match &self.tls {
            None => Stream::Tcp(tcp),
            Some((connector, name)) => {
                let s = connector.connect(name.clone(), tcp).await.context("TLS handshake")?;
                if NEGOTIATED.get().is_none() {
                    let c = s.get_ref().1;
                    let v = c.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
                    let cs = c.negotiated_cipher_suite().map(|cs| format!("{:?}", cs.suite())).unwrap_or_default();
                    let _ = NEGOTIATED.set(format!("{v} {cs}"));
                }
                Stream::Tls(Box::new(s))
            }
        };
        let mut conn = Conn { s: stream, ws: None };
        if self.kind.ws() {
            let leftover = ws_upgrade(&mut conn.s, &self.host_header, &self.ws_path, seed).await?;
            conn.ws = Some(WsDecoder::new(leftover));
        }
        Ok(conn)
    }
}

// ------------------------------------------------------------------ streams

pub enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One MQTT connection over some transport.
pub struct Conn {
    s: Stream,
    ws: Option<WsDecoder>,
}

impl Conn {
    /// Appends MQTT bytes to `buf`; Ok(0) = closed by the peer. Cancel-safe.
    #[inline]
    pub async fn read_into(&mut self, buf: &mut BytesMut) -> Result<usize> {
        match (&mut self.s, &mut self.ws) {
            (Stream::Tcp(s), None) => Ok(s.read_buf(buf).await?),
            (s, None) => Ok(s.read_buf(buf).await?),
            (s, Some(ws)) => ws.read_into(s, buf).await,
        }
    }

    /// Writes MQTT packets (one or several back to back), in one WebSocket
    /// frame where the transport needs one.
    pub async fn send(&mut self, pkts: &[u8]) -> Result<()> {
        if self.ws.is_some() {
            self.s.write_all(&ws_frame(pkts)).await?;
        } else {
            self.s.write_all(pkts).await?;
        }
        Ok(())
    }

    pub fn is_ws(&self) -> bool {
        self.ws.is_some()
    }

    /// Read and write halves (plain TCP: tokio's owned halves, no lock;
    /// TLS: `tokio::io::split`).
    pub fn into_split(self) -> (ConnRead, ConnWrite) {
        let ws = self.ws.is_some();
        let (r, w) = match self.s {
            Stream::Tcp(s) => {
                let (r, w) = s.into_split();
                (ReadPart::Tcp(r), WritePart::Tcp(w))
            }
            s => {
                let (r, w) = tokio::io::split(s);
                (ReadPart::Other(r), WritePart::Other(w))
            }
        };
        (ConnRead { r, ws: self.ws }, ConnWrite { w, ws })
    }
}

enum ReadPart {
    Tcp(OwnedReadHalf),
    Other(tokio::io::ReadHalf<Stream>),
}

enum WritePart {
    Tcp(OwnedWriteHalf),
    Other(tokio::io::WriteHalf<Stream>),
}

pub struct ConnRead {
    r: ReadPart,
    ws: Option<WsDecoder>,
}

impl ConnRead {
    /// As [`Conn::read_into`].
    #[inline]
    pub async fn read_into(&mut self, buf: &mut BytesMut) -> Result<usize> {
        match (&mut self.r, &mut self.ws) {
            (ReadPart::Tcp(r), None) => Ok(r.read_buf(buf).await?),
            (ReadPart::Tcp(r), Some(ws)) => ws.read_into(r, buf).await,
            (ReadPart::Other(r), None) => Ok(r.read_buf(buf).await?),
            (ReadPart::Other(r), Some(ws)) => ws.read_into(r, buf).await,
        }
    }
}

pub struct ConnWrite {
    w: WritePart,
    ws: bool,
}

impl ConnWrite {
    /// As [`Conn::send`].
    pub async fn send(&mut self, pkts: &[u8]) -> Result<()> {
        if self.ws {
            let f = ws_frame(pkts);
            self.send_framed(&f).await
        } else {
            self.send_framed(pkts).await
        }
    }

    /// Writes bytes already framed for this transport (PUBLISH batches).
    #[inline]
    pub async fn send_framed(&mut self, bytes: &[u8]) -> Result<()> {
        match &mut self.w {
            WritePart::Tcp(w) => w.write_all(bytes).await?,
            WritePart::Other(w) => w.write_all(bytes).await?,
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- WebSocket

/// Length of the header of a masked client frame carrying `len` bytes.
pub fn ws_header_len(len: usize) -> usize {
    4 + if len < 126 {
        2
    } else if len <= 0xffff {
        4
    } else {
        10
    }
}

/// Header of a masked final binary frame (FIN, opcode 2) of `len` bytes.
pub fn ws_header(out: &mut Vec<u8>, len: usize) {
    out.push(0x82);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&WS_MASK);
}

/// One masked binary frame around `payload`.
pub fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ws_header_len(payload.len()) + payload.len());
    ws_header(&mut out, payload.len());
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ WS_MASK[i & 3]));
    out
}

const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Sends the HTTP/1.1 Upgrade request and checks the 101 answer (status,
/// `Sec-WebSocket-Accept`, the `mqtt` subprotocol). Returns the bytes that
/// followed the answer (frames already sent by the server).
async fn ws_upgrade<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, host: &str, path: &str, seed: u64) -> Result<BytesMut> {
    // 16 key bytes from a splitmix64 of the seed and the clock.
    let mut x = seed ^ now_ns().rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    let mut key = [0u8; 16];
    for chunk in key.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes());
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.encode(key);
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            bail!("WebSocket upgrade: answer headers longer than 16 KB");
        }
        buf.reserve(1024);
        if s.read_buf(&mut buf).await? == 0 {
            bail!("WebSocket upgrade: connection closed before the answer ({:?})", String::from_utf8_lossy(&buf));
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    if !(status.starts_with("HTTP/1.1 101") || status.starts_with("HTTP/1.0 101")) {
        bail!("WebSocket upgrade refused: {status:?}");
    }
    let mut accept = None;
    let mut protocol = None;
    for l in lines {
        if let Some((k, v)) = l.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "sec-websocket-accept" => accept = Some(v.trim().to_string()),
                "sec-websocket-protocol" => protocol = Some(v.trim().to_string()),
                _ => {}
            }
        }
    }
    let want = b64.encode(Sha1::digest(format!("{key}{WS_GUID}").as_bytes()));
    if accept.as_deref() != Some(want.as_str()) {
        bail!("WebSocket upgrade: Sec-WebSocket-Accept is {accept:?}, expected {want:?}");
    }
    // RFC 6455 4.1: a subprotocol the client did not offer, or none where the
    // client requires one, fails the connection (MQTT clients require `mqtt`).
    if !protocol.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("mqtt")) {
        bail!("WebSocket upgrade: server chose subprotocol {protocol:?}, not \"mqtt\"");
    }
    buf.advance(end);
    Ok(buf)
}

/// Turns the server's frames back into the MQTT byte stream: data frames
/// (binary and continuation) contribute their payload, whatever MQTT packet
/// boundaries they cut through; ping/pong are skipped; close ends the stream.
pub struct WsDecoder {
    raw: BytesMut,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// Whether the current frame's payload is MQTT data.
    data: bool,
    closed: bool,
}

impl WsDecoder {
    pub fn new(leftover: BytesMut) -> Self {
        let mut raw = leftover;
        raw.reserve(16 * 1024);
        WsDecoder { raw, remaining: 0, data: false, closed: false }
    }

    /// Moves the payload of every complete-or-partial data frame in `raw` to `out`.
    pub fn decode(&mut self, out: &mut BytesMut) -> Result<()> {
        loop {
            if self.remaining > 0 {
                let k = (self.remaining as usize).min(self.raw.len());
                if k == 0 {
                    return Ok(());
                }
                if self.data {
                    out.extend_from_slice(&self.raw[..k]);
                }
                self.raw.advance(k);
                self.remaining -= k as u64;
                continue;
            }
            if self.closed || self.raw.len() < 2 {
                return Ok(());
            }
            let (b0, b1) = (self.raw[0], self.raw[1]);
            let ext = match b1 & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            if b1 & 0x80 != 0 {
                bail!("WebSocket: the server sent a masked frame");
            }
            if self.raw.len() < 2 + ext {
                return Ok(());
            }
            let len = match ext {
                0 => (b1 & 0x7f) as u64,
                2 => u16::from_be_bytes([self.raw[2], self.raw[3]]) as u64,
                _ => u64::from_be_bytes(self.raw[2..10].try_into().unwrap()),
            };
            if b0 & 0x70 != 0 {
                bail!("WebSocket: reserved bits set (no extension was negotiated)");
            }
            match b0 & 0x0f {
                0 | 2 => self.data = true,
                1 => bail!("WebSocket: text frame (MQTT needs binary frames)"),
                8 => {
                    self.closed = true;
                    self.data = false;
                }
                9 | 10 => self.data = false,
                op => bail!("WebSocket: unknown opcode {op}"),
            }
            self.raw.advance(2 + ext);
            self.remaining = len;
        }
    }

    /// Cancel-safe: everything read is kept in `raw` or moved to `buf`.
    async fn read_into<R: AsyncRead + Unpin>(&mut self, r: &mut R, buf: &mut BytesMut) -> Result<usize> {
        loop {
            let before = buf.len();
            self.decode(buf)?;
            if buf.len() > before {
                return Ok(buf.len() - before);
            }
            if self.closed {
                return Ok(0);
            }
            if self.raw.capacity() - self.raw.len() < 4096 {
                self.raw.reserve(16 * 1024);
            }
            if r.read_buf(&mut self.raw).await? == 0 {
                return Ok(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(op: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![0x80 | op];
        if payload.len() < 126 {
            v.push(payload.len() as u8);
        } else {
            v.push(126);
            v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn decoder_joins_and_splits() {
        let big: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let mut wire = server_frame(2, b"abc");
        wire.extend(server_frame(9, b"ping"));
        wire.extend(server_frame(2, &big));
        wire.extend(server_frame(0, b"xyz"));
        // Fed one byte at a time, then all at once: same stream.
        for chunk in [1usize, 7, wire.len()] {
            let mut d = WsDecoder::new(BytesMut::new());
            let mut out = BytesMut::new();
            for c in wire.chunks(chunk) {
                d.raw.extend_from_slice(c);
                d.decode(&mut out).unwrap();
            }
            let mut want = b"abc".to_vec();
            want.extend_from_slice(&big);
            want.extend_from_slice(b"xyz");
            assert_eq!(&out[..], &want[..]);
        }
        let mut d = WsDecoder::new(BytesMut::from(&server_frame(8, &[3, 232])[..]));
        let mut out = BytesMut::new();
        d.decode(&mut out).unwrap();
        assert!(d.closed && out.is_empty());
    }

    #[test]
    fn client_frames_are_masked() {
        let f = ws_frame(&[0u8; 5]);
        assert_eq!(&f[..2], &[0x82, 0x85]);
        assert_eq!(&f[2..6], &WS_MASK);
        assert_eq!(&f[6..], &[WS_MASK[0], WS_MASK[1], WS_MASK[2], WS_MASK[3], WS_MASK[0]]);
        assert_eq!(ws_header_len(5), 6);
        assert_eq!(ws_header_len(200), 8);
        assert_eq!(ws_frame(&[0u8; 200]).len(), 208);
    }
}
