//! The connection's first packet: waiting for CONNECT under the connect
//! timeout, and answering the CONNECTs that must be refused.

use bytes::BytesMut;
use fbroker_codec::{decode, Connect, DecodeError, Decoded, Packet, ProtocolVersion};
use fbroker_transport::{ReadOutcome, Stream};

pub enum HandshakeError {
    /// The peer closed or the socket failed before a whole CONNECT arrived.
    Closed,
    /// The first packet was not CONNECT [MQTT-3.1.0-1].
    NotConnect,
    /// Protocol level we do not serve: answer CONNACK 0x01 [MQTT-3.1.2-2].
    UnsupportedProtocolVersion(u8),
    Decode(DecodeError),
}

/// Reads until one whole CONNECT is decoded. Bytes after it stay in `buf`
/// for the session loop.
pub async fn read_connect(stream: &mut Stream, buf: &mut BytesMut, max_packet_size: usize) -> Result<Connect, HandshakeError> {
    let mut peer_closed = false;
    loop {
        match decode(buf, ProtocolVersion::V3_1_1, max_packet_size) {
            Ok(Decoded::Packet(Packet::Connect(connect))) => return Ok(connect),
            Ok(Decoded::Packet(_)) => return Err(HandshakeError::NotConnect),
            Ok(Decoded::Incomplete { .. }) if peer_closed => return Err(HandshakeError::Closed),
            Ok(Decoded::Incomplete { needed }) => {
                buf.reserve(needed.max(256));
                if stream.readable().await.is_err() {
                    return Err(HandshakeError::Closed);
                }
                // Bytes that came with the close are decoded before giving up.
                match stream.read_available(buf) {
                    Ok(ReadOutcome::Closed) => peer_closed = true,
                    Ok(ReadOutcome::More(_) | ReadOutcome::Drained(_)) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(HandshakeError::Closed),
                }
            }
            Err(DecodeError::UnsupportedProtocolVersion(level)) => {
                return Err(HandshakeError::UnsupportedProtocolVersion(level))
            }
            Err(e) => return Err(HandshakeError::Decode(e)),
        }
    }
}

/// A 3.1.1-format CONNACK refusing the connection with `code`.
pub fn refusal_connack(code: u8) -> [u8; 4] {
    [0x20, 0x02, 0x00, code]
}
