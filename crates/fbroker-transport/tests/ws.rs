//! WebSocket (ws and wss) over real loopback sockets, with a
//! tokio-tungstenite client and, for what that client will not send, raw
//! bytes.

mod common;

use common::*;
use fbroker_transport::ws::Rejection;
use fbroker_transport::{AcceptError, ListenerKind, ListenerTransport, WsSettings};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

fn ws_settings(max_frame_size: usize, allowed_origins: &[&str]) -> WsSettings {
    WsSettings { path: "/mqtt".into(), allowed_origins: allowed_origins.iter().map(|s| s.to_string()).collect(), max_frame_size }
}

fn request(path: &str, protocol: Option<&str>, origin: Option<&str>) -> tungstenite::handshake::client::Request {
    let mut request = format!("ws://localhost{path}").into_client_request().unwrap();
    if let Some(protocol) = protocol {
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_str(protocol).unwrap());
    }
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", HeaderValue::from_str(origin).unwrap());
    }
    request
}

async fn ws_client<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    request: tungstenite::handshake::client::Request,
) -> Result<WebSocketStream<S>, tungstenite::Error> {
    tokio_tungstenite::client_async(request, stream).await.map(|(ws, _)| ws)
}

/// The next message that is not a pong or ping (tungstenite answers pings itself).
async fn next_message<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> Option<Message> {
    loop {
        match tokio::time::timeout(TIMEOUT, ws.next()).await.expect("no message") {
            Some(Ok(Message::Ping(_))) => {}
            Some(Ok(m)) => return Some(m),
            Some(Err(_)) | None => return None,
        }
    }
}

/// Reads binary messages until `n` bytes in all arrived.
async fn read_binary<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, n: usize) -> Vec<u8> {
    let mut got = Vec::new();
    while got.len() < n {
        match next_message(ws).await {
            Some(Message::Binary(b)) => got.extend_from_slice(&b),
            other => panic!("expected binary, got {other:?}"),
        }
    }
    got
}

/// Waits for the server's close frame and returns its code.
async fn close_code<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>) -> u16 {
    loop {
        match next_message(ws).await {
            Some(Message::Close(Some(frame))) => return u16::from(frame.code),
            Some(Message::Close(None)) => panic!("close without a code"),
            Some(Message::Pong(_)) | Some(Message::Binary(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_stream_split_across_frames_and_coalesced_in_one() {
    let mut server = server(ListenerTransport::ws(ws_settings(64 * 1024, &[]))).await;
    let tcp = connect(server.addr).await;
    let client_addr = tcp.local_addr().unwrap();
    let (client, accepted) = tokio::join!(ws_client(tcp, request("/mqtt", Some("mqtt"), None)), server.next());
    let mut client = client.unwrap();
    let stream = accepted.unwrap();
    assert_eq!(stream.kind(), ListenerKind::Ws);
    assert_eq!(stream.peer_addr(), client_addr);
    let mut driven = spawn_drive(stream, true);

    let mqtt = mqtt_bytes();
    // One packet split over three messages.
    for part in [&mqtt[..3], &mqtt[3..11], &mqtt[11..18]] {
        client.send(Message::Binary(part.to_vec().into())).await.unwrap();
    }
    assert_eq!(driven.take(18).await, &mqtt[..18]);
    // Several packets in one message.
    client.send(Message::Binary(mqtt[18..].to_vec().into())).await.unwrap();
    assert_eq!(driven.take(mqtt.len() - 18).await, &mqtt[18..]);
    assert_eq!(read_binary(&mut client, mqtt.len()).await, mqtt);

    // A fragmented message: binary frame without FIN, then continuations.
    client.send(Message::Frame(Frame::message(b"ab".to_vec(), OpCode::Data(Data::Binary), false))).await.unwrap();
    client.send(Message::Frame(Frame::message(b"cd".to_vec(), OpCode::Data(Data::Continue), false))).await.unwrap();
    client.send(Message::Frame(Frame::message(b"ef".to_vec(), OpCode::Data(Data::Continue), true))).await.unwrap();
    assert_eq!(driven.take(6).await, b"abcdef");
    assert_eq!(read_binary(&mut client, 6).await, b"abcdef");

    // Large both ways: the server's output is framed within its bound.
    let big = payload(2 << 20);
    let (mut sink, mut source) = client.split();
    let send = async {
        for chunk in big.chunks(60_000) {
            sink.send(Message::Binary(chunk.to_vec().into())).await.unwrap();
        }
        sink
    };
    let receive = async {
        let mut got = Vec::new();
        while got.len() < big.len() {
            match tokio::time::timeout(TIMEOUT, source.next()).await.unwrap() {
                Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
                other => panic!("expected binary, got {other:?}"),
            }
        }
        got
    };
    let (sink, got) = tokio::join!(send, receive);
    assert!(got == big, "echo differs");
    assert!(driven.take(big.len()).await == big);

    // A client close: the server answers and its loop ends.
    let mut client = sink.reunite(source).unwrap();
    client.close(None).await.unwrap();
    assert_eq!(driven.ended().await, End::PeerClosed);
    assert!(matches!(next_message(&mut client).await, None | Some(Message::Close(_))));
}

#[tokio::test]
async fn subprotocol_negotiation() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &[]))).await;

    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("mqttv3.1"), None)), server.next());
    client.unwrap();
    accepted.unwrap();

    // No subprotocol offered: accepted without one.
    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", None, None)), server.next());
    client.unwrap();
    accepted.unwrap();

    // Only foreign subprotocols: refused.
    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("chat, stomp"), None)), server.next());
    assert!(matches!(client, Err(tungstenite::Error::Http(ref r)) if r.status() == 400), "{client:?}");
    assert!(matches!(accepted, Err(AcceptError::WebSocket(Rejection { status: 400, .. }))));
}

#[tokio::test]
async fn wrong_path_is_404_and_bad_origin_is_403() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &["https://app.example"]))).await;

    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/other", Some("mqtt"), None)), server.next());
    assert!(matches!(client, Err(tungstenite::Error::Http(ref r)) if r.status() == 404), "{client:?}");
    assert!(matches!(accepted, Err(AcceptError::WebSocket(Rejection { status: 404, .. }))));

    let (client, accepted) =
        tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("mqtt"), Some("https://evil.example"))), server.next());
    assert!(matches!(client, Err(tungstenite::Error::Http(ref r)) if r.status() == 403), "{client:?}");
    assert!(matches!(accepted, Err(AcceptError::WebSocket(Rejection { status: 403, .. }))));

    let (client, accepted) =
        tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("mqtt"), Some("https://app.example"))), server.next());
    client.unwrap();
    accepted.unwrap();
}

#[tokio::test]
async fn text_frame_closes_with_1003() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &[]))).await;
    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("mqtt"), None)), server.next());
    let mut client = client.unwrap();
    let stream = accepted.unwrap();
    let driven = spawn_drive(stream, false);
    client.send(Message::Text("hello".into())).await.unwrap();
    assert_eq!(close_code(&mut client).await, 1003);
    assert_eq!(driven.ended().await, End::PeerClosed);
}

#[tokio::test]
async fn ping_gets_pong() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &[]))).await;
    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("mqtt"), None)), server.next());
    let mut client = client.unwrap();
    let mut driven = spawn_drive(accepted.unwrap(), false);
    client.send(Message::Ping(b"are you there".to_vec().into())).await.unwrap();
    match next_message(&mut client).await {
        Some(Message::Pong(payload)) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected pong, got {other:?}"),
    }
    // Pings carry no application bytes.
    client.send(Message::Binary(vec![0xC0, 0x00].into())).await.unwrap();
    assert_eq!(driven.take(2).await, [0xC0, 0x00]);
}

#[tokio::test]
async fn oversized_frame_closes_with_1009() {
    let mut server = server(ListenerTransport::ws(ws_settings(1024, &[]))).await;
    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("mqtt"), None)), server.next());
    let mut client = client.unwrap();
    let mut driven = spawn_drive(accepted.unwrap(), false);
    client.send(Message::Binary(vec![1; 1024].into())).await.unwrap();
    assert_eq!(driven.take(1024).await, vec![1; 1024]);
    client.send(Message::Binary(vec![2; 1025].into())).await.unwrap();
    assert_eq!(close_code(&mut client).await, 1009);
    assert_eq!(driven.ended().await, End::PeerClosed);
}

#[tokio::test]
async fn server_shutdown_sends_close_1000() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &[]))).await;
    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("mqtt"), None)), server.next());
    let mut client = client.unwrap();
    let mut stream = accepted.unwrap();
    stream.write_all(&[0x20, 0x02, 0x00, 0x00]).await.unwrap();
    stream.shutdown().await.unwrap();
    assert_eq!(read_binary(&mut client, 4).await, [0x20, 0x02, 0x00, 0x00]);
    assert_eq!(close_code(&mut client).await, 1000);
    // Writing after the close frame is refused.
    assert!(stream.try_write(b"late").is_err());
}

#[tokio::test]
async fn wss_round_trip() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker"), Some(&ca), false);
    let mut server = server(ListenerTransport::wss(settings, ws_settings(0, &[])).with_proxy_protocol(true)).await;

    let mut tcp = connect(server.addr).await;
    tcp.write_all(b"PROXY TCP4 192.0.2.9 192.0.2.1 6000 443\r\n").await.unwrap();
    let client = async {
        let tls = connector(&ca, Some(&ca.client("browser-user")), &[&rustls::version::TLS13]).connect(server_name(), tcp).await.unwrap();
        let mut request = "wss://localhost/mqtt".into_client_request().unwrap();
        request.headers_mut().insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        ws_client(tls, request).await.unwrap()
    };
    let (mut client, accepted) = tokio::join!(client, server.next());
    let stream = accepted.unwrap();
    assert_eq!(stream.kind(), ListenerKind::Wss);
    assert_eq!(stream.peer_addr(), "192.0.2.9:6000".parse().unwrap());
    assert_eq!(stream.peer_identity().as_deref(), Some("browser-user"));
    let mut driven = spawn_drive(stream, true);

    let mqtt = mqtt_bytes();
    client.send(Message::Binary(mqtt[..7].to_vec().into())).await.unwrap();
    client.send(Message::Binary(mqtt[7..].to_vec().into())).await.unwrap();
    assert_eq!(driven.take(mqtt.len()).await, mqtt);
    assert_eq!(read_binary(&mut client, mqtt.len()).await, mqtt);

    let big = payload(1 << 20);
    driven.send.send(big.clone()).unwrap();
    assert!(read_binary(&mut client, big.len()).await == big);

    client.send(Message::Ping(b"p".to_vec().into())).await.unwrap();
    assert!(matches!(next_message(&mut client).await, Some(Message::Pong(p)) if &p[..] == b"p"));
    client.send(Message::Text("no".into())).await.unwrap();
    assert_eq!(close_code(&mut client).await, 1003);
    assert_eq!(driven.ended().await, End::PeerClosed);
}

// --- raw clients -----------------------------------------------------------

const UPGRADE: &str = "GET /mqtt HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

/// Reads an HTTP response head; returns it and whatever followed.
async fn read_head(tcp: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = got.split_off(end + 4);
            return (String::from_utf8(got).unwrap(), rest);
        }
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(TIMEOUT, tcp.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "closed before the response head: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
}

async fn read_to_end(tcp: &mut TcpStream, mut got: Vec<u8>) -> Vec<u8> {
    tokio::time::timeout(TIMEOUT, tcp.read_to_end(&mut got)).await.unwrap().unwrap();
    got
}

#[tokio::test]
async fn unmasked_client_frame_closes_with_1002() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &[]))).await;
    let mut tcp = connect(server.addr).await;
    tcp.write_all(UPGRADE.as_bytes()).await.unwrap();
    let (head, rest) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
    assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{head}");
    assert!(head.contains("Sec-WebSocket-Protocol: mqtt\r\n"), "{head}");
    let driven = spawn_drive(server.next().await.unwrap(), false);
    tcp.write_all(&[0x82, 0x02, 0xC0, 0x00]).await.unwrap();
    let got = read_to_end(&mut tcp, rest).await;
    assert_eq!(got, [0x88, 0x02, 0x03, 0xEA]);
    assert_eq!(driven.ended().await, End::PeerClosed);
}

#[tokio::test]
async fn frames_sent_with_the_upgrade_request_are_kept() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &[])).with_proxy_protocol(true)).await;
    let mut tcp = connect(server.addr).await;
    let mut bytes = b"PROXY TCP4 198.51.100.1 198.51.100.2 7000 80\r\n".to_vec();
    bytes.extend_from_slice(UPGRADE.as_bytes());
    // A masked binary frame with PINGREQ, then a masked ping.
    bytes.extend_from_slice(&[0x82, 0x82, 1, 2, 3, 4, 0xC0 ^ 1, 2]);
    bytes.extend_from_slice(&[0x89, 0x80, 9, 9, 9, 9]);
    tcp.write_all(&bytes).await.unwrap();
    let stream = server.next().await.unwrap();
    assert_eq!(stream.peer_addr(), "198.51.100.1:7000".parse().unwrap());
    let mut driven = spawn_drive(stream, false);
    assert_eq!(driven.take(2).await, [0xC0, 0x00]);
    let (head, mut rest) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 101 "));
    while rest.len() < 2 {
        let mut buf = [0u8; 64];
        let n = tcp.read(&mut buf).await.unwrap();
        rest.extend_from_slice(&buf[..n]);
    }
    assert_eq!(rest, [0x8A, 0x00], "the pong");
}

#[tokio::test]
async fn non_upgrade_and_oversized_requests() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &[]))).await;

    let mut tcp = connect(server.addr).await;
    tcp.write_all(b"GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let (head, _) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 426 "), "{head}");
    assert!(matches!(server.next().await, Err(AcceptError::WebSocket(Rejection { status: 426, .. }))));

    let mut tcp = connect(server.addr).await;
    tcp.write_all(b"BREW /mqtt HTCPCP\r\n\r\n").await.unwrap();
    let (head, _) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 400 "), "{head}");
    assert!(server.next().await.is_err());

    let mut tcp = connect(server.addr).await;
    let mut big = b"GET /mqtt HTTP/1.1\r\nX-Filler: ".to_vec();
    big.resize(10 * 1024, b'a');
    let _ = tcp.write_all(&big).await;
    let (head, _) = read_head(&mut tcp).await;
    assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
    assert!(matches!(server.next().await, Err(AcceptError::WebSocket(Rejection { status: 431, .. }))));

    let tcp = connect(server.addr).await;
    drop(tcp);
    assert!(matches!(server.next().await, Err(AcceptError::Closed)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_bounded_when_the_client_does_not_read() {
    let mut server = server(ListenerTransport::ws(ws_settings(0, &[]))).await;
    let (client, accepted) = tokio::join!(ws_client(connect(server.addr).await, request("/mqtt", Some("mqtt"), None)), server.next());
    let mut client = client.unwrap();
    let mut stream = accepted.unwrap();
    let data = payload(64 * 1024);
    let taken = fill_until_blocked(&mut stream, &data, 64 << 20);
    assert!(stream.wants_write(), "the refused write leaves frames buffered");
    let (flushed, got) = tokio::join!(stream.write_all(&[]), read_binary(&mut client, taken));
    flushed.unwrap();
    assert_eq!(got.len(), taken);
    for (i, chunk) in got.chunks(data.len()).enumerate() {
        assert!(chunk == &data[..chunk.len()], "chunk {i} differs");
    }
}
