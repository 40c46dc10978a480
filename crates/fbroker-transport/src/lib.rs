//! The byte transports an MQTT client connection arrives over: plain TCP,
//! TLS, WebSocket and WebSocket over TLS, each optionally behind an HAProxy
//! PROXY protocol header.
//!
//! [`accept`] runs the setup (PROXY header, TLS handshake, WebSocket
//! upgrade) and returns a [`Stream`]. The stream is driven without
//! blocking by the connection task, the same way as a bare
//! `tokio::net::TcpStream`: wait for [`Stream::readable`] /
//! [`Stream::writable`] in a `select!`, then call the non-blocking
//! [`Stream::read_available`], [`Stream::try_write`] and
//! [`Stream::flush_pending`]. The TLS and WebSocket layers are sans-IO
//! state machines (rustls's `ServerConnection`, this crate's
//! [`ws::FrameDecoder`]) run inline in those calls; there is no extra task.
//!
//! # Driving a stream
//!
//! Besides the caller's own write buffer, a TLS or WebSocket stream can
//! hold output of its own: records or frames the socket did not take yet,
//! pongs and close frames produced while reading, TLS handshake messages.
//! So the loop that drives it:
//!
//! - after writing its buffer with `try_write` (until empty or
//!   `WouldBlock`), calls `flush_pending()`;
//! - waits for `writable()` while its buffer is non-empty **or**
//!   `wants_write()`;
//! - on `readable()`, calls `read_available` until `Drained`, `Closed` or
//!   `Err(WouldBlock)` (a `More(0)` is normal: TLS or WebSocket overhead);
//! - on `Closed`, handles the bytes already appended, then ends and calls
//!   `shutdown()` (which sends the WebSocket close / TLS close_notify).
//!
//! `readable()` answers at once when bytes that arrived during setup are
//! waiting (a CONNECT sent with the TLS handshake's last flight or right
//! behind the WebSocket upgrade request), and after the peer closed.
//! For plain TCP none of this costs anything: no layer, `flush_pending` is
//! a no-op and `wants_write` is false.

use std::io::{self, ErrorKind, IoSlice, Write};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rustls::ServerConnection;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

pub mod proxy;
pub mod tls;
pub mod ws;

pub use proxy::{ProxyError, ProxyHeader};
pub use tls::{TlsConfigError, TlsOptions, TlsSettings};

/// Output the TLS layer may hold (encrypted records not yet taken by the
/// socket).
const TLS_OUT_LIMIT: usize = 128 * 1024;
/// Output the WebSocket layer may hold (frames not yet taken by TLS or the
/// socket).
const WS_OUT_LIMIT: usize = 128 * 1024;
/// One socket read for the TLS and WebSocket layers (a stack buffer).
const LAYER_READ_CHUNK: usize = 32 * 1024;
/// Reserved in the caller's buffer when it has no room for a plain read.
const PLAIN_READ_RESERVE: usize = 8 * 1024;
/// How long `shutdown` waits for buffered output (close frame, close_notify).
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ListenerKind {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl ListenerKind {
    pub fn uses_tls(self) -> bool {
        matches!(self, ListenerKind::Tls | ListenerKind::Wss)
    }

    pub fn uses_websocket(self) -> bool {
        matches!(self, ListenerKind::Ws | ListenerKind::Wss)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ListenerKind::Tcp => "tcp",
            ListenerKind::Tls => "tls",
            ListenerKind::Ws => "ws",
            ListenerKind::Wss => "wss",
        }
    }
}

impl std::fmt::Display for ListenerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A WebSocket listener's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WsSettings {
    /// The request path served (the query string is ignored); others get 404.
    pub path: String,
    /// Browser origins admitted; empty for any. A request without an Origin
    /// header (not a browser) is admitted.
    pub allowed_origins: Vec<String>,
    /// Largest frame payload accepted (the MQTT maximum packet size); larger
    /// frames close the connection with 1009. 0: no limit.
    pub max_frame_size: usize,
}

impl Default for WsSettings {
    fn default() -> Self {
        WsSettings { path: "/mqtt".into(), allowed_origins: Vec::new(), max_frame_size: 0 }
    }
}

/// How a listener's connections are set up.
#[derive(Clone, Debug)]
pub struct ListenerTransport {
    pub kind: ListenerKind,
    /// Required for `Tls` and `Wss`.
    pub tls: Option<Arc<TlsSettings>>,
    /// Required for `Ws` and `Wss`.
    pub ws: Option<WsSettings>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header.
    pub proxy_protocol: bool,
}

impl ListenerTransport {
    pub fn tcp() -> Self {
        ListenerTransport { kind: ListenerKind::Tcp, tls: None, ws: None, proxy_protocol: false }
    }

    pub fn tls(tls: Arc<TlsSettings>) -> Self {
        ListenerTransport { kind: ListenerKind::Tls, tls: Some(tls), ws: None, proxy_protocol: false }
    }

    pub fn ws(ws: WsSettings) -> Self {
        ListenerTransport { kind: ListenerKind::Ws, tls: None, ws: Some(ws), proxy_protocol: false }
    }

    pub fn wss(tls: Arc<TlsSettings>, ws: WsSettings) -> Self {
        ListenerTransport { kind: ListenerKind::Wss, tls: Some(tls), ws: Some(ws), proxy_protocol: false }
    }

    pub fn with_proxy_protocol(mut self, on: bool) -> Self {
        self.proxy_protocol = on;
        self
    }

    /// Whether the settings the kind needs are there.
    pub fn validate(&self) -> Result<(), String> {
        if self.kind.uses_tls() && self.tls.is_none() {
            return Err(format!("a {} listener needs TLS settings", self.kind));
        }
        if self.kind.uses_websocket() && self.ws.is_none() {
            return Err(format!("a {} listener needs WebSocket settings", self.kind));
        }
        Ok(())
    }
}

/// Why a connection's setup failed. The socket is gone either way; for a
/// refused WebSocket upgrade the HTTP answer was sent first, and for a TLS
/// failure the alert was sent if the socket took it.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    #[error("peer closed the connection during setup")]
    Closed,
    #[error("socket error during setup: {0}")]
    Io(#[from] io::Error),
    #[error("PROXY protocol: {0}")]
    Proxy(#[from] ProxyError),
    #[error("TLS handshake failed: {0}")]
    Tls(#[from] rustls::Error),
    #[error("WebSocket upgrade refused with HTTP {0}")]
    WebSocket(ws::Rejection),
    #[error("listener misconfigured: {0}")]
    Config(String),
}

/// What one [`Stream::read_available`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// This many application bytes were appended; the socket read was
    /// full, so more may be waiting (call again).
    More(usize),
    /// This many application bytes were appended (possibly 0, when the
    /// bytes read were TLS or WebSocket overhead); the socket is drained
    /// and its readiness cleared, so wait for `readable()` again.
    Drained(usize),
    /// The peer closed: TCP EOF, TLS close_notify, a WebSocket close frame,
    /// or a WebSocket protocol violation this side answered with a close
    /// frame. Bytes appended before the close are in the buffer.
    Closed,
}

/// A client connection's byte stream.
pub struct Stream {
    tcp: TcpStream,
    peer: SocketAddr,
    kind: ListenerKind,
    /// The layers above TCP. None for plain TCP once nothing is left over
    /// from setup: that path is a bare `recv` into the caller's buffer.
    layers: Option<Box<Layers>>,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("kind", &self.kind)
            .field("peer", &self.peer)
            .field("identity", &self.peer_identity())
            .finish_non_exhaustive()
    }
}

struct Layers {
    /// Boxed so that a plain WebSocket stream does not carry its room.
    tls: Option<Box<ServerConnection>>,
    ws: Option<WsLayer>,
    /// Bytes above the TLS layer (input of the WebSocket layer, or
    /// application bytes) received during setup and not yet delivered.
    carry: BytesMut,
    /// `carry` or layer state holds input: `readable()` answers at once.
    pending_input: bool,
    /// The peer closed (or broke the protocol): reads answer `Closed`.
    closed: bool,
    identity: Option<String>,
}

struct WsLayer {
    decoder: ws::FrameDecoder,
    /// Frames (data, pong, close) not yet handed to TLS or the socket.
    out: BytesMut,
    close_sent: bool,
    /// The close status this side sent because of a protocol violation.
    violation: Option<ws::CloseCode>,
}

/// `recv` on the socket: (bytes, drained) or WouldBlock, Ok((0, _)) at EOF.
/// A short read means the receive queue was emptied, so the readiness is
/// cleared right away instead of learning it from a second `recv`.
fn recv(tcp: &TcpStream, into: &mut [MaybeUninit<u8>]) -> io::Result<(usize, bool)> {
    let room = into.len();
    let mut short = 0;
    let result = tcp.try_io(Interest::READABLE, || {
        let n = socket2::SockRef::from(tcp).recv(into)?;
        if n > 0 && n < room {
            short = n;
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match result {
        Ok(n) => Ok((n, false)),
        Err(e) if e.kind() == ErrorKind::WouldBlock && short > 0 => Ok((short, true)),
        Err(e) => Err(e),
    }
}

/// `io::Write` over the socket's non-blocking writes, for rustls.
struct SocketWriter<'a>(&'a TcpStream);

impl Write for SocketWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, e)
}

impl Layers {
    fn new(tls: Option<Box<ServerConnection>>, carry: BytesMut) -> Box<Self> {
        let pending_input = !carry.is_empty();
        Box::new(Layers { tls, ws: None, carry, pending_input, closed: false, identity: None })
    }

    /// Runs bytes received from the socket through TLS (if any) and the
    /// layer above it into `buf`.
    fn ingest(&mut self, mut input: &[u8], buf: &mut BytesMut) -> io::Result<()> {
        let Layers { tls, ws, closed, .. } = self;
        let Some(conn) = tls else {
            above_tls(ws, closed, input, buf);
            return Ok(());
        };
        while !input.is_empty() && !*closed {
            if conn.read_tls(&mut input)? == 0 {
                break; // close_notify was received: nothing more is read.
            }
            conn.process_new_packets().map_err(tls_error)?;
            drain_plaintext(conn, ws, closed, buf)?;
        }
        Ok(())
    }

    /// The socket reached EOF.
    fn ingest_eof(&mut self, buf: &mut BytesMut) -> io::Result<()> {
        let Layers { tls, ws, closed, .. } = self;
        if let Some(conn) = tls {
            let _ = conn.read_tls(&mut &[][..]);
            if conn.process_new_packets().is_ok() {
                drain_plaintext(conn, ws, closed, buf)?;
            }
        }
        *closed = true;
        Ok(())
    }

    fn wants_write(&self) -> bool {
        self.ws.as_ref().is_some_and(|w| !w.out.is_empty()) || self.tls.as_ref().is_some_and(|c| c.wants_write())
    }

    /// Moves buffered output down the layers and into the socket, as far as
    /// the socket takes it.
    fn flush(&mut self, tcp: &TcpStream) -> io::Result<()> {
        loop {
            let mut progressed = false;
            if let Some(ws) = &mut self.ws {
                while !ws.out.is_empty() {
                    let taken = match &mut self.tls {
                        Some(conn) => conn.writer().write(&ws.out)?,
                        None => match tcp.try_write(&ws.out) {
                            Ok(0) => return Err(ErrorKind::WriteZero.into()),
                            Ok(n) => n,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
                            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e),
                        },
                    };
                    if taken == 0 {
                        break;
                    }
                    ws.out.advance(taken);
                    progressed = true;
                }
                if ws.out.is_empty() && ws.out.capacity() > 16 * 1024 {
                    ws.out = BytesMut::new();
                }
            }
            let Some(conn) = &mut self.tls else { return Ok(()) };
            let mut blocked = false;
            while conn.wants_write() {
                match conn.write_tls(&mut SocketWriter(tcp)) {
                    Ok(0) => return Err(ErrorKind::WriteZero.into()),
                    Ok(_) => progressed = true,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        blocked = true;
                        break;
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            // With WebSocket over TLS, frames still waiting can go into TLS
            // now that its buffer drained.
            let frames_waiting = self.ws.as_ref().is_some_and(|w| !w.out.is_empty());
            if blocked || !frames_waiting || !progressed {
                return Ok(());
            }
        }
    }

    /// Takes application bytes into the layers' output; how many it took.
    fn accept_output(&mut self, data: &[u8]) -> io::Result<usize> {
        if let Some(ws) = &mut self.ws {
            if ws.close_sent {
                return Err(ErrorKind::BrokenPipe.into());
            }
            let room = WS_OUT_LIMIT.saturating_sub(ws.out.len());
            if room <= ws::MAX_FRAME_HEADER {
                return Ok(0);
            }
            let take = data.len().min(room - ws::MAX_FRAME_HEADER);
            ws::put_binary_frame(&data[..take], &mut ws.out);
            return Ok(take);
        }
        match &mut self.tls {
            Some(conn) => conn.writer().write(data),
            None => unreachable!("try_write writes to the socket when there is no layer"),
        }
    }
}

/// Hands rustls's decrypted bytes to the layer above.
fn drain_plaintext(conn: &mut ServerConnection, ws: &mut Option<WsLayer>, closed: &mut bool, buf: &mut BytesMut) -> io::Result<()> {
    use std::io::BufRead;
    while !*closed {
        let mut reader = conn.reader();
        match reader.fill_buf() {
            Ok([]) => {
                // close_notify: a clean end of the TLS stream.
                *closed = true;
            }
            Ok(chunk) => {
                let n = chunk.len();
                above_tls(ws, closed, chunk, buf);
                reader.consume(n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => *closed = true,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Bytes above TLS: WebSocket frames, or application bytes.
fn above_tls(ws: &mut Option<WsLayer>, closed: &mut bool, mut input: &[u8], buf: &mut BytesMut) {
    let Some(ws) = ws else {
        buf.extend_from_slice(input);
        return;
    };
    while !input.is_empty() && !*closed {
        match ws.decoder.decode(input, buf) {
            Ok((used, control)) => {
                input = &input[used..];
                match control {
                    Some(ws::Control::Ping(payload)) => {
                        if !ws.close_sent {
                            ws::put_pong(&payload, &mut ws.out);
                        }
                    }
                    Some(ws::Control::Pong) | None => {}
                    Some(ws::Control::Close(code)) => {
                        if !ws.close_sent {
                            ws::put_close(code.unwrap_or(1000), &mut ws.out);
                            ws.close_sent = true;
                        }
                        *closed = true;
                    }
                }
            }
            Err(code) => {
                if !ws.close_sent {
                    ws::put_close(code.code(), &mut ws.out);
                    ws.close_sent = true;
                }
                ws.violation = Some(code);
                *closed = true;
            }
        }
    }
}

impl Stream {
    fn new(tcp: TcpStream, peer: SocketAddr, kind: ListenerKind, layers: Option<Box<Layers>>) -> Self {
        Stream { tcp, peer, kind, layers }
    }

    /// Waits until the socket is readable, or at once when input received
    /// during setup is waiting or the peer already closed. Cancel-safe.
    pub async fn readable(&self) -> io::Result<()> {
        if self.layers.as_ref().is_some_and(|l| l.pending_input || l.closed) {
            return Ok(());
        }
        self.tcp.readable().await
    }

    /// Waits until the socket is writable. Cancel-safe.
    pub async fn writable(&self) -> io::Result<()> {
        self.tcp.writable().await
    }

    /// Reads what the socket has (one `recv`), runs it through the layers
    /// and appends the application bytes to `buf`. `Err(WouldBlock)` when
    /// the socket had nothing. TLS handshake messages, WebSocket pings
    /// (answered with a pong) and close frames are handled here; answers
    /// go out right away when the socket takes them, otherwise they wait
    /// in the stream ([`Stream::wants_write`]).
    pub fn read_available(&mut self, buf: &mut BytesMut) -> io::Result<ReadOutcome> {
        let Some(layers) = &mut self.layers else {
            return read_plain(&self.tcp, buf);
        };
        if layers.closed {
            return Ok(ReadOutcome::Closed);
        }
        let before = buf.len();
        if layers.pending_input {
            layers.pending_input = false;
            let carry = std::mem::take(&mut layers.carry);
            let Layers { ws, closed, .. } = &mut **layers;
            above_tls(ws, closed, &carry, buf);
            if layers.tls.is_none() && layers.ws.is_none() {
                // Plain TCP with bytes left from the PROXY header: from now
                // on the bare path.
                self.layers = None;
                return Ok(ReadOutcome::More(buf.len() - before));
            }
            let closed = layers.closed;
            self.flush_quietly();
            return Ok(if closed { ReadOutcome::Closed } else { ReadOutcome::More(buf.len() - before) });
        }
        let mut chunk = [MaybeUninit::<u8>::uninit(); LAYER_READ_CHUNK];
        let (n, drained) = recv(&self.tcp, &mut chunk)?;
        if n == 0 {
            layers.ingest_eof(buf)?;
        } else {
            // SAFETY: recv initialised the first `n` bytes.
            let input = unsafe { std::slice::from_raw_parts(chunk.as_ptr().cast::<u8>(), n) };
            if let Err(e) = layers.ingest(input, buf) {
                // Let the TLS alert out if the socket takes it.
                self.flush_quietly();
                return Err(e);
            }
        }
        let closed = layers.closed;
        self.flush_quietly();
        let appended = buf.len() - before;
        Ok(if closed {
            ReadOutcome::Closed
        } else if drained {
            ReadOutcome::Drained(appended)
        } else {
            ReadOutcome::More(appended)
        })
    }

    /// Pushes answers produced while reading (pongs, close frames, TLS
    /// messages); a write error here shows up on the next write.
    fn flush_quietly(&mut self) {
        if let Some(layers) = &mut self.layers {
            let _ = layers.flush(&self.tcp);
        }
    }

    /// Takes up to `data.len()` application bytes — framing and encrypting
    /// them — and writes as much as the socket takes. Returns how many
    /// application bytes were taken (never 0 for non-empty `data`:
    /// `Err(WouldBlock)` instead, when the socket and the stream's bounded
    /// output buffer are full). Bytes taken but not yet written are held by
    /// the stream: see [`Stream::wants_write`].
    pub fn try_write(&mut self, data: &[u8]) -> io::Result<usize> {
        let layers = match &mut self.layers {
            Some(layers) if layers.tls.is_some() || layers.ws.is_some() => layers,
            // No layer (plain TCP, or a WebSocket listener before its upgrade).
            _ => return self.tcp.try_write(data),
        };
        if data.is_empty() {
            return Ok(0);
        }
        layers.flush(&self.tcp)?;
        let taken = layers.accept_output(data)?;
        layers.flush(&self.tcp)?;
        if taken == 0 {
            return Err(ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Writes the stream's own buffered output (TLS records, WebSocket
    /// frames, pongs, close frames) as far as the socket takes it. Ok even
    /// when some is left: check [`Stream::wants_write`].
    pub fn flush_pending(&mut self) -> io::Result<()> {
        match &mut self.layers {
            Some(layers) => layers.flush(&self.tcp),
            None => Ok(()),
        }
    }

    /// True while the stream holds output the socket has not taken; the
    /// caller then waits for [`Stream::writable`] and calls
    /// [`Stream::flush_pending`].
    pub fn wants_write(&self) -> bool {
        self.layers.as_ref().is_some_and(|l| l.wants_write())
    }

    /// Writes all of `data` and the stream's buffered output, waiting for
    /// the socket as needed (apply a timeout around it).
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            match self.try_write(data) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => data = &data[n..],
                Err(e) if e.kind() == ErrorKind::WouldBlock => self.tcp.writable().await?,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.flush_all().await
    }

    async fn flush_all(&mut self) -> io::Result<()> {
        loop {
            self.flush_pending()?;
            if !self.wants_write() {
                return Ok(());
            }
            self.tcp.writable().await?;
        }
    }

    /// Graceful close: a WebSocket close frame (1000, unless one was sent
    /// already) and TLS close_notify, written within a short bound (1 s),
    /// then the socket's write side is shut down.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        if let Some(layers) = &mut self.layers {
            if let Some(ws) = &mut layers.ws {
                if !ws.close_sent {
                    ws::put_close(ws::CloseCode::Normal.code(), &mut ws.out);
                    ws.close_sent = true;
                }
            }
            if let Some(conn) = &mut layers.tls {
                // The close frame must be inside TLS before close_notify.
                if let Some(ws) = &mut layers.ws {
                    while !ws.out.is_empty() {
                        let n = conn.writer().write(&ws.out)?;
                        if n == 0 {
                            break;
                        }
                        ws.out.advance(n);
                    }
                }
                conn.send_close_notify();
            }
            let _ = tokio::time::timeout(SHUTDOWN_FLUSH, self.flush_all()).await;
        }
        self.tcp.shutdown().await
    }

    /// The client's address: the PROXY protocol source when a header gave
    /// one, the socket's peer otherwise.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
    }

    pub fn set_nodelay(&self, on: bool) -> io::Result<()> {
        self.tcp.set_nodelay(on)
    }

    pub fn kind(&self) -> ListenerKind {
        self.kind
    }

    /// The subject CN of the client certificate verified during the TLS
    /// handshake; None without TLS, without a client certificate, or when
    /// its subject has no CN. (Whether it stands for the username is
    /// [`TlsSettings::use_identity_as_username`].)
    pub fn peer_identity(&self) -> Option<String> {
        self.layers.as_ref().and_then(|l| l.identity.clone())
    }

    /// The close status sent because the client broke the WebSocket
    /// protocol (1002, 1003, 1007, 1009), for logs.
    pub fn websocket_violation(&self) -> Option<u16> {
        self.layers.as_ref()?.ws.as_ref()?.violation.map(ws::CloseCode::code)
    }

    /// The TLS protocol version negotiated, for logs.
    pub fn tls_version(&self) -> Option<&'static str> {
        let conn = self.layers.as_ref()?.tls.as_ref()?;
        conn.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
            _ => "TLS",
        })
    }

    /// The socket, for socket options.
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }
}

/// Plain TCP: one `recv` straight into the caller's buffer.
fn read_plain(tcp: &TcpStream, buf: &mut BytesMut) -> io::Result<ReadOutcome> {
    if buf.capacity() == buf.len() {
        buf.reserve(PLAIN_READ_RESERVE);
    }
    let spare = buf.spare_capacity_mut();
    let (n, drained) = recv(tcp, spare)?;
    // SAFETY: recv initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(match (n, drained) {
        (0, _) => ReadOutcome::Closed,
        (n, true) => ReadOutcome::Drained(n),
        (n, false) => ReadOutcome::More(n),
    })
}

/// Sets up a client connection: the PROXY header when the listener expects
/// one, the TLS handshake (tls, wss), the WebSocket upgrade (ws, wss).
/// Runs in the connection's task before MQTT starts; the caller bounds it
/// with a timeout. Bytes the client sent after the setup are kept for the
/// first [`Stream::read_available`].
pub async fn accept(tcp: TcpStream, peer: SocketAddr, listener: &ListenerTransport) -> Result<Stream, AcceptError> {
    listener.validate().map_err(AcceptError::Config)?;
    let mut peer = peer;
    let mut after_proxy = BytesMut::new();
    if listener.proxy_protocol {
        let (header, rest) = proxy::read_header(&tcp).await?;
        if let Some(source) = header.source {
            peer = source;
        }
        after_proxy = rest;
    }
    let kind = listener.kind;
    let mut stream = match (&listener.tls, kind.uses_tls()) {
        (Some(settings), true) => {
            let mut conn = ServerConnection::new(settings.server_config())?;
            conn.set_buffer_limit(Some(TLS_OUT_LIMIT));
            let layers = Layers::new(Some(Box::new(conn)), BytesMut::new());
            let mut stream = Stream::new(tcp, peer, kind, Some(layers));
            tls_handshake(&mut stream, &after_proxy).await?;
            stream
        }
        _ if after_proxy.is_empty() => Stream::new(tcp, peer, kind, None),
        _ => Stream::new(tcp, peer, kind, Some(Layers::new(None, after_proxy))),
    };
    if let (Some(settings), true) = (&listener.ws, kind.uses_websocket()) {
        websocket_upgrade(&mut stream, settings).await?;
    }
    Ok(stream)
}

fn io_to_accept_error(e: io::Error) -> AcceptError {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(tls) => AcceptError::Tls(tls.clone()),
        None => AcceptError::Io(e),
    }
}

async fn tls_handshake(stream: &mut Stream, ciphertext: &[u8]) -> Result<(), AcceptError> {
    // Plaintext that arrives with the handshake's last flight (the client's
    // CONNECT, typically) is kept for the first read.
    let mut early = BytesMut::new();
    if !ciphertext.is_empty() {
        let layers = stream.layers.as_mut().expect("TLS layer");
        if let Err(e) = layers.ingest(ciphertext, &mut early) {
            stream.flush_quietly();
            return Err(io_to_accept_error(e));
        }
    }
    loop {
        stream.flush_pending()?;
        let layers = stream.layers.as_ref().expect("TLS layer");
        let conn = layers.tls.as_ref().expect("TLS layer");
        if !conn.is_handshaking() {
            break;
        }
        if layers.closed {
            return Err(AcceptError::Closed);
        }
        if stream.wants_write() {
            stream.tcp.writable().await?;
            continue;
        }
        stream.tcp.readable().await?;
        match stream.read_available(&mut early) {
            Ok(ReadOutcome::Closed) => return Err(AcceptError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_to_accept_error(e)),
        }
    }
    let layers = stream.layers.as_mut().expect("TLS layer");
    let conn = layers.tls.as_ref().expect("TLS layer");
    layers.identity = conn.peer_certificates().and_then(|chain| chain.first()).and_then(|leaf| tls::subject_common_name(leaf));
    layers.pending_input = true;
    layers.carry = early;
    Ok(())
}

async fn websocket_upgrade(stream: &mut Stream, settings: &WsSettings) -> Result<(), AcceptError> {
    let mut head = BytesMut::with_capacity(1024);
    let head_len = loop {
        if let Some(end) = ws::find_head_end(&head) {
            if end > ws::MAX_REQUEST_HEAD {
                return Err(refuse(stream, ws::HEAD_TOO_LARGE).await);
            }
            break end;
        }
        if head.len() > ws::MAX_REQUEST_HEAD {
            return Err(refuse(stream, ws::HEAD_TOO_LARGE).await);
        }
        stream.readable().await?;
        match stream.read_available(&mut head) {
            Ok(ReadOutcome::Closed) => return Err(AcceptError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(io_to_accept_error(e)),
        }
    };
    let policy = ws::UpgradePolicy { path: &settings.path, allowed_origins: &settings.allowed_origins };
    let upgrade = match ws::evaluate_upgrade(&head[..head_len], &policy) {
        Ok(upgrade) => upgrade,
        Err(rejection) => return Err(refuse(stream, rejection).await),
    };
    stream.write_all(&ws::accept_response(&upgrade)).await?;
    let rest = head.split_off(head_len);
    let layers = match &mut stream.layers {
        Some(layers) => layers,
        None => stream.layers.insert(Layers::new(None, BytesMut::new())),
    };
    layers.ws = Some(WsLayer {
        decoder: ws::FrameDecoder::new(settings.max_frame_size),
        out: BytesMut::new(),
        close_sent: false,
        violation: None,
    });
    layers.carry = rest;
    layers.pending_input = true;
    Ok(())
}

/// Answers a refused upgrade and closes.
async fn refuse(stream: &mut Stream, rejection: ws::Rejection) -> AcceptError {
    let _ = stream.write_all(&ws::reject_response(rejection)).await;
    let _ = stream.shutdown().await;
    AcceptError::WebSocket(rejection)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stream_is_send_and_small() {
        fn is_send<T: Send>() {}
        is_send::<super::Stream>();
        is_send::<super::ListenerTransport>();
        // A plain TCP stream costs one pointer more than the socket.
        assert!(std::mem::size_of::<super::Stream>() <= std::mem::size_of::<tokio::net::TcpStream>() + 48);
    }
}
