//! The HAProxy PROXY protocol header (versions 1 and 2) that a load
//! balancer sends before the client's own bytes, carrying the client's
//! address.
//!
//! [`parse`] is pure and incremental: it is handed everything received so
//! far and says whether a whole header is there, how long it is, or that
//! the bytes cannot be one. `read_header` (used by `accept`) drives it over
//! the socket.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::BytesMut;
use tokio::net::TcpStream;

/// The longest version 1 header, CRLF included.
pub const V1_MAX_LEN: usize = 107;
/// The fixed part of a version 2 header: signature, version/command,
/// family/protocol and the 16-bit length.
const V2_FIXED_LEN: usize = 16;
const V2_SIGNATURE: [u8; 12] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A];
const V1_PREFIX: &[u8] = b"PROXY ";

/// What a complete header said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProxyHeader {
    /// The client's address; None for a version 2 LOCAL command (a health
    /// check from the proxy itself) or a version 1 `UNKNOWN` line, where
    /// the socket's own peer address stands.
    pub source: Option<SocketAddr>,
    /// The address the client connected to, when given.
    pub destination: Option<SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    #[error("the connection did not start with a PROXY protocol header")]
    Missing,
    #[error("PROXY v1 header longer than {V1_MAX_LEN} bytes")]
    V1TooLong,
    #[error("malformed PROXY v1 header: {0}")]
    V1Malformed(&'static str),
    #[error("malformed PROXY v2 header: {0}")]
    V2Malformed(&'static str),
    #[error("unsupported PROXY v2 {0}")]
    V2Unsupported(&'static str),
}

/// Looks for a whole header at the start of `buf`. `Ok(None)`: not enough
/// bytes yet to tell. `Ok(Some((header, len)))`: the header takes the first
/// `len` bytes; the rest belong to the next layer.
pub fn parse(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let Some(&first) = buf.first() else { return Ok(None) };
    match first {
        b'P' => parse_v1(buf),
        0x0D => parse_v2(buf),
        _ => Err(ProxyError::Missing),
    }
}

fn parse_v1(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let prefix_len = buf.len().min(V1_PREFIX.len());
    if buf[..prefix_len] != V1_PREFIX[..prefix_len] {
        return Err(ProxyError::Missing);
    }
    let window = &buf[..buf.len().min(V1_MAX_LEN)];
    let Some(cr) = window.iter().position(|&b| b == b'\r') else {
        if buf.len() >= V1_MAX_LEN {
            return Err(ProxyError::V1TooLong);
        }
        if window.contains(&b'\n') {
            return Err(ProxyError::V1Malformed("line ends without CR"));
        }
        return Ok(None);
    };
    match window.get(cr + 1) {
        None if buf.len() >= V1_MAX_LEN => return Err(ProxyError::V1TooLong),
        None => return Ok(None),
        Some(b'\n') => {}
        Some(_) => return Err(ProxyError::V1Malformed("CR not followed by LF")),
    }
    let line = std::str::from_utf8(&buf[V1_PREFIX.len()..cr]).map_err(|_| ProxyError::V1Malformed("not ASCII"))?;
    let header = parse_v1_fields(line)?;
    Ok(Some((header, cr + 2)))
}

fn parse_v1_fields(line: &str) -> Result<ProxyHeader, ProxyError> {
    let mut fields = line.split(' ');
    let proto = fields.next().unwrap_or_default();
    if proto == "UNKNOWN" {
        // The proxy could not tell: whatever follows is to be ignored.
        return Ok(ProxyHeader { source: None, destination: None });
    }
    let want_v4 = match proto {
        "TCP4" => true,
        "TCP6" => false,
        _ => return Err(ProxyError::V1Malformed("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(src), Some(dst), Some(sport), Some(dport), None) =
        (fields.next(), fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(ProxyError::V1Malformed("expected source, destination and two ports"));
    };
    let ip = |text: &str| -> Result<IpAddr, ProxyError> {
        let addr: IpAddr = text.parse().map_err(|_| ProxyError::V1Malformed("bad address"))?;
        if addr.is_ipv4() != want_v4 {
            return Err(ProxyError::V1Malformed("address family does not match the protocol"));
        }
        Ok(addr)
    };
    let port = |text: &str| -> Result<u16, ProxyError> {
        let valid = !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit());
        let valid = valid && (text == "0" || !text.starts_with('0'));
        if !valid {
            return Err(ProxyError::V1Malformed("bad port"));
        }
        text.parse().map_err(|_| ProxyError::V1Malformed("bad port"))
    };
    Ok(ProxyHeader {
        source: Some(SocketAddr::new(ip(src)?, port(sport)?)),
        destination: Some(SocketAddr::new(ip(dst)?, port(dport)?)),
    })
}

fn parse_v2(buf: &[u8]) -> Result<Option<(ProxyHeader, usize)>, ProxyError> {
    let sig_len = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig_len] != V2_SIGNATURE[..sig_len] {
        return Err(ProxyError::Missing);
    }
    if buf.len() < V2_FIXED_LEN {
        return Ok(None);
    }
    let version_command = buf[12];
    if version_command >> 4 != 2 {
        return Err(ProxyError::V2Malformed("version is not 2"));
    }
    let local = match version_command & 0x0F {
        0 => true,
        1 => false,
        _ => return Err(ProxyError::V2Malformed("command is neither LOCAL nor PROXY")),
    };
    let family_protocol = buf[13];
    let len = u16::from_be_bytes([buf[14], buf[15]]) as usize;
    let total = V2_FIXED_LEN + len;
    if buf.len() < total {
        return Ok(None);
    }
    let body = &buf[V2_FIXED_LEN..total];
    if local {
        // A connection the proxy makes on its own behalf: the socket's
        // addresses are the real ones, the body is ignored.
        return Ok(Some((ProxyHeader { source: None, destination: None }, total)));
    }
    let header = match family_protocol {
        // AF_UNSPEC: the receiver keeps the socket's addresses.
        0x00 => ProxyHeader { source: None, destination: None },
        // TCP over IPv4.
        0x11 => {
            if body.len() < 12 {
                return Err(ProxyError::V2Malformed("IPv4 address block shorter than 12 bytes"));
            }
            let src = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            let dst = Ipv4Addr::new(body[4], body[5], body[6], body[7]);
            let sport = u16::from_be_bytes([body[8], body[9]]);
            let dport = u16::from_be_bytes([body[10], body[11]]);
            ProxyHeader {
                source: Some(SocketAddr::new(src.into(), sport)),
                destination: Some(SocketAddr::new(dst.into(), dport)),
            }
        }
        // TCP over IPv6.
        0x21 => {
            if body.len() < 36 {
                return Err(ProxyError::V2Malformed("IPv6 address block shorter than 36 bytes"));
            }
            let octets = |at: usize| -> [u8; 16] {
                let mut a = [0u8; 16];
                a.copy_from_slice(&body[at..at + 16]);
                a
            };
            let src = Ipv6Addr::from(octets(0));
            let dst = Ipv6Addr::from(octets(16));
            let sport = u16::from_be_bytes([body[32], body[33]]);
            let dport = u16::from_be_bytes([body[34], body[35]]);
            ProxyHeader {
                source: Some(SocketAddr::new(src.into(), sport)),
                destination: Some(SocketAddr::new(dst.into(), dport)),
            }
        }
        0x12 | 0x22 => return Err(ProxyError::V2Unsupported("transport (UDP)")),
        0x31 | 0x32 => return Err(ProxyError::V2Unsupported("address family (UNIX)")),
        _ => return Err(ProxyError::V2Malformed("unknown address family or transport")),
    };
    // Any TLVs after the addresses are skipped.
    Ok(Some((header, total)))
}

/// Reads from `tcp` until a whole header arrived. Returns it with the bytes
/// read past it. Reads are bounded by the header's own limits (107 bytes
/// for v1, 16 + 65535 for v2).
pub(crate) async fn read_header(tcp: &TcpStream) -> Result<(ProxyHeader, BytesMut), crate::AcceptError> {
    let mut buf = BytesMut::with_capacity(256);
    loop {
        if let Some((header, len)) = parse(&buf)? {
            let rest = buf.split_off(len);
            return Ok((header, rest));
        }
        // Never read more than the header can still need plus a little:
        // the parser reports a malformed or oversize header as soon as it
        // can tell.
        if buf.capacity() - buf.len() < 128 {
            buf.reserve(1024);
        }
        tcp.readable().await?;
        match tcp.try_read_buf(&mut buf) {
            Ok(0) => return Err(crate::AcceptError::Closed),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut out = V2_SIGNATURE.to_vec();
        out.push(0x20 | command);
        out.push(family);
        out.extend_from_slice(&(body.len() as u16).to_be_bytes());
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_tcp4_and_rest() {
        let input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n\x10\x0c";
        let (header, len) = parse(input).unwrap().unwrap();
        assert_eq!(header.source, Some("192.168.0.1:56324".parse().unwrap()));
        assert_eq!(header.destination, Some("192.168.0.11:443".parse().unwrap()));
        assert_eq!(&input[len..], b"\x10\x0c");
    }

    #[test]
    fn v1_tcp6() {
        let input = b"PROXY TCP6 2001:db8::1 ::1 4000 1883\r\n";
        let (header, len) = parse(input).unwrap().unwrap();
        assert_eq!(header.source, Some("[2001:db8::1]:4000".parse().unwrap()));
        assert_eq!(len, input.len());
    }

    #[test]
    fn v1_unknown_keeps_socket_address() {
        let (header, _) = parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n").unwrap().unwrap();
        assert_eq!(header.source, None);
        let (header, _) = parse(b"PROXY UNKNOWN\r\n").unwrap().unwrap();
        assert_eq!(header.source, None);
    }

    #[test]
    fn v1_incremental() {
        let input = b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n";
        for cut in 0..input.len() {
            assert_eq!(parse(&input[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert!(parse(input).unwrap().is_some());
    }

    #[test]
    fn v1_malformed() {
        for bad in [
            &b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n"[..],
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2 3\r\n",
            b"PROXY TCP4 ::1 10.0.0.2 1 2\r\n",
            b"PROXY TCP6 10.0.0.1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 65536 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 01 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 -1 2\r\n",
            b"PROXY UDP4 10.0.0.1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4  10.0.0.1 10.0.0.2 1 2\r\n",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\rX",
            b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\n",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(ProxyError::Missing));
        assert_eq!(parse(b"PROXX"), Err(ProxyError::Missing));
        assert_eq!(parse(&[0x10, 0x0c]), Err(ProxyError::Missing));
    }

    #[test]
    fn v1_too_long() {
        let mut long = b"PROXY TCP4 ".to_vec();
        long.resize(V1_MAX_LEN, b'1');
        assert_eq!(parse(&long), Err(ProxyError::V1TooLong));
        // A CR as the 107th byte with the LF beyond the limit is too long as well.
        let mut edge = b"PROXY TCP4 ".to_vec();
        edge.resize(V1_MAX_LEN - 1, b'1');
        edge.push(b'\r');
        assert_eq!(parse(&edge), Err(ProxyError::V1TooLong));
    }

    #[test]
    fn v2_ipv4_with_tlv_and_rest() {
        let mut body = vec![10, 0, 0, 1, 10, 0, 0, 2, 0x1F, 0x90, 0x07, 0x5B];
        body.extend_from_slice(&[0x04, 0x00, 0x01, 0xAA]); // a NOOP TLV
        let mut input = v2(1, 0x11, &body);
        let header_len = input.len();
        input.extend_from_slice(b"\x10");
        let (header, len) = parse(&input).unwrap().unwrap();
        assert_eq!(len, header_len);
        assert_eq!(header.source, Some("10.0.0.1:8080".parse().unwrap()));
        assert_eq!(header.destination, Some("10.0.0.2:1883".parse().unwrap()));
        for cut in 0..header_len {
            assert_eq!(parse(&input[..cut]).unwrap(), None, "cut at {cut}");
        }
    }

    #[test]
    fn v2_ipv6() {
        let mut body = Vec::new();
        body.extend_from_slice(&"2001:db8::7".parse::<Ipv6Addr>().unwrap().octets());
        body.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        body.extend_from_slice(&[0x30, 0x39, 0x07, 0x5B]);
        let (header, _) = parse(&v2(1, 0x21, &body)).unwrap().unwrap();
        assert_eq!(header.source, Some("[2001:db8::7]:12345".parse().unwrap()));
    }

    #[test]
    fn v2_local_and_unspec() {
        let (header, len) = parse(&v2(0, 0x00, &[])).unwrap().unwrap();
        assert_eq!((header.source, len), (None, 16));
        let (header, _) = parse(&v2(0, 0x11, &[0; 12])).unwrap().unwrap();
        assert_eq!(header.source, None);
        let (header, _) = parse(&v2(1, 0x00, &[])).unwrap().unwrap();
        assert_eq!(header.source, None);
    }

    #[test]
    fn v2_malformed() {
        assert!(matches!(parse(&v2(1, 0x11, &[0; 8])), Err(ProxyError::V2Malformed(_))));
        assert!(matches!(parse(&v2(1, 0x21, &[0; 12])), Err(ProxyError::V2Malformed(_))));
        assert!(matches!(parse(&v2(1, 0x12, &[0; 12])), Err(ProxyError::V2Unsupported(_))));
        assert!(matches!(parse(&v2(1, 0x31, &[0; 216])), Err(ProxyError::V2Unsupported(_))));
        assert!(matches!(parse(&v2(2, 0x11, &[0; 12])), Err(ProxyError::V2Malformed(_))));
        let mut wrong_version = v2(1, 0x11, &[0; 12]);
        wrong_version[12] = 0x11;
        assert!(matches!(parse(&wrong_version), Err(ProxyError::V2Malformed(_))));
        assert_eq!(parse(b"\r\n\r\n\0\r\nQUIX"), Err(ProxyError::Missing));
    }
}
