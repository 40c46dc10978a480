//! The server side of WebSocket (RFC 6455), without I/O: the HTTP/1.1
//! upgrade request's evaluation and the answers to it, an incremental
//! frame decoder that hands a binary message's payload over as it arrives,
//! and the frames the server sends.
//!
//! MQTT over WebSocket is a byte stream carried in binary messages: frame
//! and message boundaries mean nothing to it, so the decoder appends every
//! data payload to one output buffer.

use base64::Engine as _;
use bytes::{BufMut, BytesMut};

/// Longest upgrade request head (request line and headers) accepted.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Subprotocols served, in order of preference.
pub const SUBPROTOCOLS: [&str; 2] = ["mqtt", "mqttv3.1"];

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Largest header a frame can have: 2 + 8 (length) + 4 (mask).
pub const MAX_FRAME_HEADER: usize = 14;

// ---------------------------------------------------------------------------
// The upgrade request
// ---------------------------------------------------------------------------

/// Where the request head ends (the index just past the blank line), when
/// it is complete.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|at| at + 4)
}

/// An upgrade that is to be accepted.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The Sec-WebSocket-Accept value.
    pub accept: String,
    /// The subprotocol chosen, when the client offered any.
    pub protocol: Option<&'static str>,
}

/// Why an upgrade request was refused: the HTTP status answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

impl Rejection {
    const fn new(status: u16, reason: &'static str) -> Self {
        Rejection { status, reason }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.status, self.reason)
    }
}

/// What the upgrade is checked against.
pub struct UpgradePolicy<'a> {
    pub path: &'a str,
    /// Empty: any origin. Otherwise the Origin header, when sent, must be
    /// one of these (ASCII case-insensitive, a trailing '/' ignored); `*`
    /// admits every origin.
    pub allowed_origins: &'a [String],
}

/// Evaluates a complete request head (through the blank line).
pub fn evaluate_upgrade(head: &[u8], policy: &UpgradePolicy<'_>) -> Result<Upgrade, Rejection> {
    let head = std::str::from_utf8(head).map_err(|_| Rejection::new(400, "request is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Rejection::new(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/") {
        return Err(Rejection::new(400, "malformed request line"));
    }
    if version != "HTTP/1.1" {
        return Err(Rejection::new(400, "WebSocket needs HTTP/1.1"));
    }
    let mut upgrade = String::new();
    let mut connection = String::new();
    let mut key: Option<&str> = None;
    let mut ws_version: Option<&str> = None;
    let mut origin: Option<&str> = None;
    let mut protocols = String::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Rejection::new(400, "malformed header line"));
        };
        if name.is_empty() || name.bytes().any(|b| b <= b' ' || b == 0x7F) {
            return Err(Rejection::new(400, "malformed header name"));
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        let append = |list: &mut String| {
            if !list.is_empty() {
                list.push(',');
            }
            list.push_str(value);
        };
        if name.eq_ignore_ascii_case("upgrade") {
            append(&mut upgrade);
        } else if name.eq_ignore_ascii_case("connection") {
            append(&mut connection);
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            if key.replace(value).is_some() {
                return Err(Rejection::new(400, "repeated Sec-WebSocket-Key"));
            }
        } else if name.eq_ignore_ascii_case("sec-websocket-version") {
            ws_version = Some(value);
        } else if name.eq_ignore_ascii_case("origin") {
            origin = Some(value);
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            append(&mut protocols);
        }
    }
    if method != "GET" {
        return Err(Rejection::new(405, "method is not GET"));
    }
    let path = target.split(['?', '#']).next().unwrap_or_default();
    if path != normalized_path(policy.path) {
        return Err(Rejection::new(404, "no WebSocket endpoint at this path"));
    }
    if !has_token(&upgrade, "websocket") {
        return Err(Rejection::new(426, "not a WebSocket upgrade"));
    }
    if !has_token(&connection, "upgrade") {
        return Err(Rejection::new(400, "Connection header lacks upgrade"));
    }
    if ws_version != Some("13") {
        return Err(Rejection::new(426, "unsupported Sec-WebSocket-Version"));
    }
    let key = key.ok_or(Rejection::new(400, "missing Sec-WebSocket-Key"))?;
    if !valid_key(key) {
        return Err(Rejection::new(400, "malformed Sec-WebSocket-Key"));
    }
    if let Some(origin) = origin {
        if !origin_allowed(origin, policy.allowed_origins) {
            return Err(Rejection::new(403, "origin not allowed"));
        }
    }
    let protocol = if protocols.trim().is_empty() {
        None
    } else {
        let offered: Vec<&str> = protocols.split(',').map(str::trim).collect();
        let chosen = SUBPROTOCOLS.iter().find(|p| offered.contains(p));
        Some(*chosen.ok_or(Rejection::new(400, "none of the offered subprotocols is mqtt or mqttv3.1"))?)
    };
    Ok(Upgrade { accept: accept_key(key), protocol })
}

fn normalized_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

fn has_token(list: &str, token: &str) -> bool {
    list.split(',').any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn valid_key(key: &str) -> bool {
    matches!(base64::engine::general_purpose::STANDARD.decode(key), Ok(raw) if raw.len() == 16)
}

fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let origin = origin.trim_end_matches('/');
    allowed.iter().any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// Sec-WebSocket-Accept for a client's key: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(key.as_bytes());
    ctx.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(ctx.finish().as_ref())
}

/// The 101 answer accepting an upgrade.
pub fn accept_response(upgrade: &Upgrade) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        upgrade.accept
    );
    if let Some(protocol) = upgrade.protocol {
        out.push_str("Sec-WebSocket-Protocol: ");
        out.push_str(protocol);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The answer refusing an upgrade; the connection is closed after it.
pub fn reject_response(rejection: Rejection) -> Vec<u8> {
    let text = match rejection.status {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    };
    let mut out = format!("HTTP/1.1 {} {text}\r\nConnection: close\r\nContent-Length: 0\r\n", rejection.status);
    if rejection.status == 426 {
        out.push_str("Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n");
    }
    if rejection.status == 405 {
        out.push_str("Allow: GET\r\n");
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The refusal for a request head over [`MAX_REQUEST_HEAD`].
pub const HEAD_TOO_LARGE: Rejection = Rejection::new(431, "request head too large");

// ---------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------

/// The status codes this side closes with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000
    Normal,
    /// 1002: a frame broke the protocol (unmasked, reserved bits, bad opcode…).
    Protocol,
    /// 1003: a text message; MQTT needs binary ones.
    Unsupported,
    /// 1007: a close reason that is not UTF-8.
    InvalidPayload,
    /// 1009: a frame over the size limit.
    TooBig,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::Protocol => 1002,
            CloseCode::Unsupported => 1003,
            CloseCode::InvalidPayload => 1007,
            CloseCode::TooBig => 1009,
        }
    }
}

/// A control frame the decoder completed.
#[derive(Debug, PartialEq, Eq)]
pub enum Control {
    Ping(Vec<u8>),
    Pong,
    /// The peer's close, with its status code when it gave one.
    Close(Option<u16>),
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    opcode: u8,
    remaining: u64,
    mask: [u8; 4],
    /// How many payload bytes were unmasked so far, modulo 4.
    mask_offset: usize,
}

/// Incremental decoder of client-to-server frames.
pub struct FrameDecoder {
    max_frame_size: u64,
    header: [u8; MAX_FRAME_HEADER],
    header_len: usize,
    frame: Option<Frame>,
    /// A data message was started by a frame without FIN: continuation
    /// frames are expected.
    in_message: bool,
    control: Vec<u8>,
}

impl FrameDecoder {
    /// `max_frame_size`: the largest payload one frame may declare; 0 for
    /// no limit.
    pub fn new(max_frame_size: usize) -> Self {
        let max = if max_frame_size == 0 { u64::MAX } else { max_frame_size as u64 };
        FrameDecoder { max_frame_size: max, header: [0; MAX_FRAME_HEADER], header_len: 0, frame: None, in_message: false, control: Vec::new() }
    }

    /// Decodes from `input`, appending (unmasked) binary payload to `out`.
    /// Stops after a control frame completes, returning it with the count
    /// of input bytes consumed; otherwise consumes all of `input`. A frame
    /// cut anywhere, header included, is resumed on the next call. An error
    /// names the status to close with; the decoder is unusable after it.
    pub fn decode(&mut self, input: &[u8], out: &mut BytesMut) -> Result<(usize, Option<Control>), CloseCode> {
        let mut pos = 0;
        loop {
            let frame = match self.frame {
                Some(frame) => frame,
                None => {
                    let (used, frame) = self.read_header(&input[pos..])?;
                    pos += used;
                    match frame {
                        Some(frame) => frame,
                        None => return Ok((pos, None)),
                    }
                }
            };
            let take = (frame.remaining.min((input.len() - pos) as u64)) as usize;
            let chunk = &input[pos..pos + take];
            pos += take;
            let is_control = frame.opcode >= 0x8;
            if is_control {
                let start = self.control.len();
                self.control.extend_from_slice(chunk);
                unmask(&mut self.control[start..], frame.mask, frame.mask_offset);
            } else if take > 0 {
                let start = out.len();
                out.extend_from_slice(chunk);
                unmask(&mut out[start..], frame.mask, frame.mask_offset);
            }
            let remaining = frame.remaining - take as u64;
            if remaining > 0 {
                self.frame = Some(Frame { remaining, mask_offset: (frame.mask_offset + take) % 4, ..frame });
                return Ok((pos, None));
            }
            self.frame = None;
            if is_control {
                let control = self.finish_control(frame.opcode)?;
                return Ok((pos, Some(control)));
            }
            if pos == input.len() {
                return Ok((pos, None));
            }
        }
    }

    /// Gathers header bytes; returns how many of `input` it used and the
    /// frame once its header is whole.
    fn read_header(&mut self, input: &[u8]) -> Result<(usize, Option<Frame>), CloseCode> {
        let mut used = 0;
        loop {
            let needed = self.header_needed()?;
            if self.header_len >= needed {
                break;
            }
            let take = (needed - self.header_len).min(input.len() - used);
            if take == 0 {
                return Ok((used, None));
            }
            self.header[self.header_len..self.header_len + take].copy_from_slice(&input[used..used + take]);
            self.header_len += take;
            used += take;
        }
        let h = &self.header;
        let fin = h[0] & 0x80 != 0;
        let opcode = h[0] & 0x0F;
        let (len, mask_at) = match h[1] & 0x7F {
            126 => (u16::from_be_bytes([h[2], h[3]]) as u64, 4),
            127 => (u64::from_be_bytes([h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]]), 10),
            n => (n as u64, 2),
        };
        if len >> 63 != 0 {
            return Err(CloseCode::Protocol);
        }
        let mask = [h[mask_at], h[mask_at + 1], h[mask_at + 2], h[mask_at + 3]];
        self.header_len = 0;
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || len > 125 {
                    return Err(CloseCode::Protocol);
                }
                self.control.clear();
            }
            OP_TEXT => return Err(if self.in_message { CloseCode::Protocol } else { CloseCode::Unsupported }),
            OP_BINARY | OP_CONTINUATION => {
                if (opcode == OP_CONTINUATION) != self.in_message {
                    return Err(CloseCode::Protocol);
                }
                if len > self.max_frame_size {
                    return Err(CloseCode::TooBig);
                }
                self.in_message = !fin;
            }
            _ => return Err(CloseCode::Protocol),
        }
        Ok((used, Some(Frame { opcode, remaining: len, mask, mask_offset: 0 })))
    }

    /// How long the header being gathered is, as far as its first bytes tell.
    fn header_needed(&self) -> Result<usize, CloseCode> {
        if self.header_len < 2 {
            return Ok(2);
        }
        let (b0, b1) = (self.header[0], self.header[1]);
        if b0 & 0x70 != 0 {
            // No extension was negotiated: reserved bits must be clear.
            return Err(CloseCode::Protocol);
        }
        if b1 & 0x80 == 0 {
            // Client frames must be masked.
            return Err(CloseCode::Protocol);
        }
        Ok(match b1 & 0x7F {
            126 => 2 + 2 + 4,
            127 => 2 + 8 + 4,
            _ => 2 + 4,
        })
    }

    fn finish_control(&mut self, opcode: u8) -> Result<Control, CloseCode> {
        let payload = std::mem::take(&mut self.control);
        match opcode {
            OP_PING => Ok(Control::Ping(payload)),
            OP_PONG => Ok(Control::Pong),
            _ => {
                if payload.is_empty() {
                    return Ok(Control::Close(None));
                }
                if payload.len() == 1 {
                    return Err(CloseCode::Protocol);
                }
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                let valid = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
                if !valid {
                    return Err(CloseCode::Protocol);
                }
                if std::str::from_utf8(&payload[2..]).is_err() {
                    return Err(CloseCode::InvalidPayload);
                }
                Ok(Control::Close(Some(code)))
            }
        }
    }
}

/// XORs `data` with the mask, `offset` bytes into it.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let rotated = [mask[offset % 4], mask[(offset + 1) % 4], mask[(offset + 2) % 4], mask[(offset + 3) % 4]];
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2], rotated[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rotated[i % 4];
    }
}

/// Appends an unmasked server frame header for a FIN frame.
pub fn put_frame_header(opcode: u8, len: usize, out: &mut BytesMut) {
    out.put_u8(0x80 | opcode);
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// Appends a whole binary frame carrying `payload`.
pub fn put_binary_frame(payload: &[u8], out: &mut BytesMut) {
    out.reserve(MAX_FRAME_HEADER + payload.len());
    put_frame_header(OP_BINARY, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends a pong answering a ping's payload.
pub fn put_pong(payload: &[u8], out: &mut BytesMut) {
    put_frame_header(OP_PONG, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with a status code.
pub fn put_close(code: u16, out: &mut BytesMut) {
    put_frame_header(OP_CLOSE, 2, out);
    out.put_u16(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A masked client frame.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn decode_all(decoder: &mut FrameDecoder, input: &[u8]) -> Result<(BytesMut, Vec<Control>), CloseCode> {
        let mut out = BytesMut::new();
        let mut controls = Vec::new();
        let mut pos = 0;
        while pos < input.len() {
            let (used, control) = decoder.decode(&input[pos..], &mut out)?;
            pos += used;
            controls.extend(control);
        }
        Ok((out, controls))
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    fn request(extra: &str) -> String {
        format!("GET /mqtt HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n")
    }

    fn policy(origins: &[String]) -> UpgradePolicy<'_> {
        UpgradePolicy { path: "/mqtt", allowed_origins: origins }
    }

    #[test]
    fn upgrade_accepted_with_protocol_choice() {
        let up = evaluate_upgrade(request("Sec-WebSocket-Protocol: mqttv3.1, mqtt\r\n").as_bytes(), &policy(&[])).unwrap();
        assert_eq!(up.protocol, Some("mqtt"));
        assert_eq!(up.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        let up = evaluate_upgrade(request("Sec-WebSocket-Protocol: foo\r\nSec-WebSocket-Protocol: mqttv3.1\r\n").as_bytes(), &policy(&[])).unwrap();
        assert_eq!(up.protocol, Some("mqttv3.1"));
        let up = evaluate_upgrade(request("").as_bytes(), &policy(&[])).unwrap();
        assert_eq!(up.protocol, None);
        let response = String::from_utf8(accept_response(&Upgrade { accept: "k".into(), protocol: Some("mqtt") })).unwrap();
        assert!(response.starts_with("HTTP/1.1 101 "));
        assert!(response.contains("\r\nSec-WebSocket-Protocol: mqtt\r\n"));
        assert!(response.ends_with("\r\n\r\n"));
    }

    #[test]
    fn upgrade_query_string_ignored() {
        let req = request("").replace("/mqtt ", "/mqtt?token=1 ");
        assert!(evaluate_upgrade(req.as_bytes(), &policy(&[])).is_ok());
    }

    #[test]
    fn upgrade_rejections() {
        let status = |req: &str, origins: &[String]| evaluate_upgrade(req.as_bytes(), &policy(origins)).unwrap_err().status;
        assert_eq!(status(&request("Sec-WebSocket-Protocol: foo\r\n"), &[]), 400);
        assert_eq!(status(&request("").replace("/mqtt", "/other"), &[]), 404);
        assert_eq!(status(&request("").replace("GET", "POST"), &[]), 405);
        assert_eq!(status(&request("").replace("Upgrade: websocket\r\n", ""), &[]), 426);
        assert_eq!(status(&request("").replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"), &[]), 426);
        assert_eq!(status(&request("").replace("keep-alive, Upgrade", "keep-alive"), &[]), 400);
        assert_eq!(status(&request("").replace("dGhlIHNhbXBsZSBub25jZQ==", "short"), &[]), 400);
        assert_eq!(status(&request("").replace("HTTP/1.1", "HTTP/1.0"), &[]), 400);
        assert_eq!(status("garbage\r\n\r\n", &[]), 400);
        assert_eq!(status(&request("Bad Header\r\n"), &[]), 400);
        let allowed = vec!["https://good.example".to_string()];
        assert_eq!(status(&request("Origin: https://evil.example\r\n"), &allowed), 403);
        assert!(evaluate_upgrade(request("Origin: HTTPS://GOOD.example/\r\n").as_bytes(), &policy(&allowed)).is_ok());
        assert!(evaluate_upgrade(request("").as_bytes(), &policy(&allowed)).is_ok(), "no Origin: not a browser");
        assert!(evaluate_upgrade(request("Origin: https://any\r\n").as_bytes(), &policy(&["*".to_string()])).is_ok());
        let reject = String::from_utf8(reject_response(Rejection::new(426, "x"))).unwrap();
        assert!(reject.starts_with("HTTP/1.1 426 Upgrade Required\r\n") && reject.contains("Sec-WebSocket-Version: 13"));
    }

    #[test]
    fn head_end() {
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nxx"), Some(18));
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r"), None);
    }

    #[test]
    fn unmask_any_offset_matches_bytewise() {
        let data: Vec<u8> = (0..=255u8).cycle().take(77).collect();
        for offset in 0..8 {
            let mut fast = data.clone();
            unmask(&mut fast, MASK, offset);
            let slow: Vec<u8> = data.iter().enumerate().map(|(i, b)| b ^ MASK[(i + offset) % 4]).collect();
            assert_eq!(fast, slow, "offset {offset}");
        }
    }

    #[test]
    fn fragmented_message_and_several_frames_in_one_read() {
        let mut input = client_frame(false, OP_BINARY, b"\x10\x0c\x00\x04MQ", MASK);
        input.extend(client_frame(false, OP_CONTINUATION, b"TT\x04\x02\x00", [1, 2, 3, 4]));
        input.extend(client_frame(true, OP_CONTINUATION, b"\x3c\x00\x00", [9, 9, 9, 9]));
        input.extend(client_frame(true, OP_BINARY, b"\xc0\x00\xc0\x00", MASK));
        let mut decoder = FrameDecoder::new(1024);
        let (out, controls) = decode_all(&mut decoder, &input).unwrap();
        assert_eq!(&out[..], b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\xc0\x00\xc0\x00");
        assert!(controls.is_empty());
    }

    #[test]
    fn byte_at_a_time_with_all_length_forms() {
        let payloads: Vec<Vec<u8>> = vec![vec![7; 0], vec![1; 125], vec![2; 126], vec![3; 70_000]];
        let mut input = Vec::new();
        for p in &payloads {
            input.extend(client_frame(true, OP_BINARY, p, MASK));
        }
        input.extend(client_frame(true, OP_PING, b"hi", MASK));
        let mut decoder = FrameDecoder::new(100_000);
        let mut out = BytesMut::new();
        let mut controls = Vec::new();
        for byte in input.chunks(1) {
            let (used, control) = decoder.decode(byte, &mut out).unwrap();
            assert_eq!(used, 1);
            controls.extend(control);
        }
        let expected: Vec<u8> = payloads.concat();
        assert_eq!(&out[..], &expected[..]);
        assert_eq!(controls, vec![Control::Ping(b"hi".to_vec())]);
    }

    #[test]
    fn control_frame_between_fragments_stops_decoding() {
        let mut input = client_frame(false, OP_BINARY, b"ab", MASK);
        input.extend(client_frame(true, OP_PING, b"", MASK));
        input.extend(client_frame(true, OP_CONTINUATION, b"cd", MASK));
        input.extend(client_frame(true, OP_CLOSE, &[0x03, 0xE8, b'o', b'k'], MASK));
        let mut decoder = FrameDecoder::new(0);
        let mut out = BytesMut::new();
        let (used, control) = decoder.decode(&input, &mut out).unwrap();
        assert_eq!(control, Some(Control::Ping(vec![])));
        assert_eq!(&out[..], b"ab");
        let (_, control) = decoder.decode(&input[used..], &mut out).unwrap();
        assert_eq!(control, Some(Control::Close(Some(1000))));
        assert_eq!(&out[..], b"abcd");
    }

    #[test]
    fn protocol_errors() {
        let err = |input: Vec<u8>, max: usize| decode_all(&mut FrameDecoder::new(max), &input).unwrap_err();
        // Unmasked.
        assert_eq!(err(vec![0x82, 0x02, 1, 2], 0), CloseCode::Protocol);
        // Text.
        assert_eq!(err(client_frame(true, OP_TEXT, b"hello", MASK), 0), CloseCode::Unsupported);
        // Too big, whatever length form.
        assert_eq!(err(client_frame(true, OP_BINARY, &[0; 300], MASK), 200), CloseCode::TooBig);
        assert_eq!(err(client_frame(true, OP_BINARY, &[0; 100], MASK), 99), CloseCode::TooBig);
        // Reserved bits.
        let mut rsv = client_frame(true, OP_BINARY, b"x", MASK);
        rsv[0] |= 0x40;
        assert_eq!(err(rsv, 0), CloseCode::Protocol);
        // Unknown opcode.
        assert_eq!(err(client_frame(true, 0x3, b"x", MASK), 0), CloseCode::Protocol);
        // Continuation without a message, a new message inside one.
        assert_eq!(err(client_frame(true, OP_CONTINUATION, b"x", MASK), 0), CloseCode::Protocol);
        let mut twice = client_frame(false, OP_BINARY, b"x", MASK);
        twice.extend(client_frame(true, OP_BINARY, b"y", MASK));
        assert_eq!(err(twice, 0), CloseCode::Protocol);
        // Fragmented or long control frames.
        assert_eq!(err(client_frame(false, OP_PING, b"x", MASK), 0), CloseCode::Protocol);
        assert_eq!(err(client_frame(true, OP_PING, &[0; 126], MASK), 0), CloseCode::Protocol);
        // Close payloads.
        assert_eq!(err(client_frame(true, OP_CLOSE, &[3], MASK), 0), CloseCode::Protocol);
        assert_eq!(err(client_frame(true, OP_CLOSE, &[0x03, 0xED], MASK), 0), CloseCode::Protocol);
        assert_eq!(err(client_frame(true, OP_CLOSE, &[0x03, 0xE8, 0xFF], MASK), 0), CloseCode::InvalidPayload);
        // 64-bit length with the top bit set.
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        huge.extend_from_slice(&MASK);
        assert_eq!(err(huge, 0), CloseCode::Protocol);
    }

    #[test]
    fn server_frames() {
        let mut out = BytesMut::new();
        put_binary_frame(&[5; 3], &mut out);
        assert_eq!(&out[..], &[0x82, 3, 5, 5, 5]);
        out.clear();
        put_binary_frame(&[0; 200], &mut out);
        assert_eq!(&out[..4], &[0x82, 126, 0, 200]);
        out.clear();
        put_binary_frame(&[0; 70_000], &mut out);
        assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        out.clear();
        put_close(1009, &mut out);
        assert_eq!(&out[..], &[0x88, 2, 0x03, 0xF1]);
        out.clear();
        put_pong(b"p", &mut out);
        assert_eq!(&out[..], &[0x8A, 1, b'p']);
    }
}
