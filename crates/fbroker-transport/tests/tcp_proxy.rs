//! Plain TCP and the PROXY protocol over real loopback sockets.

mod common;

use common::*;
use fbroker_transport::{AcceptError, ListenerKind, ListenerTransport, ProxyError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn plain_tcp_passthrough_both_ways() {
    let mut server = server(ListenerTransport::tcp()).await;
    let mut client = connect(server.addr).await;
    let client_addr = client.local_addr().unwrap();
    let stream = server.next().await.unwrap();
    assert_eq!(stream.kind(), ListenerKind::Tcp);
    assert_eq!(stream.peer_addr(), client_addr);
    assert_eq!(stream.peer_identity(), None);
    stream.set_nodelay(true).unwrap();
    let mut driven = spawn_drive(stream, true);

    let data = payload(1 << 20);
    let (mut rd, mut wr) = client.split();
    let write = async {
        wr.write_all(&data).await.unwrap();
    };
    let read = async {
        let mut back = vec![0; data.len()];
        rd.read_exact(&mut back).await.unwrap();
        back
    };
    let (_, back) = tokio::join!(write, read);
    assert!(back == data, "echo differs");
    assert_eq!(driven.take(data.len()).await, data);
    drop(client);
    assert_eq!(driven.ended().await, End::PeerClosed);
}

#[tokio::test]
async fn server_initiated_writes_and_shutdown() {
    let mut server = server(ListenerTransport::tcp()).await;
    let mut client = connect(server.addr).await;
    let mut stream = server.next().await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    stream.shutdown().await.unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"hello");
}

#[tokio::test]
async fn proxy_v1_sets_peer_and_keeps_following_bytes() {
    let mut server = server(ListenerTransport::tcp().with_proxy_protocol(true)).await;
    let mut client = connect(server.addr).await;
    let mut first = b"PROXY TCP4 203.0.113.9 192.0.2.1 40000 1883\r\n".to_vec();
    let mqtt = mqtt_bytes();
    first.extend_from_slice(&mqtt[..10]);
    client.write_all(&first).await.unwrap();
    let stream = server.next().await.unwrap();
    assert_eq!(stream.peer_addr(), "203.0.113.9:40000".parse().unwrap());
    let mut driven = spawn_drive(stream, false);
    assert_eq!(driven.take(10).await, &mqtt[..10]);
    client.write_all(&mqtt[10..]).await.unwrap();
    assert_eq!(driven.take(mqtt.len() - 10).await, &mqtt[10..]);
}

#[tokio::test]
async fn proxy_v1_header_in_pieces() {
    let mut server = server(ListenerTransport::tcp().with_proxy_protocol(true)).await;
    let mut client = connect(server.addr).await;
    let header = b"PROXY TCP6 2001:db8::5 2001:db8::1 1234 8883\r\n";
    for piece in header.chunks(7) {
        client.write_all(piece).await.unwrap();
        client.flush().await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let stream = server.next().await.unwrap();
    assert_eq!(stream.peer_addr(), "[2001:db8::5]:1234".parse().unwrap());
}

fn v2_header(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
    let mut out = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    out.push(0x20 | command);
    out.push(family);
    out.extend_from_slice(&(body.len() as u16).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn proxy_v2_ipv4_and_ipv6() {
    let mut server = server(ListenerTransport::tcp().with_proxy_protocol(true)).await;

    let mut client = connect(server.addr).await;
    let mut bytes = v2_header(1, 0x11, &[198, 51, 100, 7, 10, 0, 0, 1, 0xC3, 0x50, 0x07, 0x5B]);
    bytes.extend_from_slice(&[0xC0, 0x00]);
    client.write_all(&bytes).await.unwrap();
    let stream = server.next().await.unwrap();
    assert_eq!(stream.peer_addr(), "198.51.100.7:50000".parse().unwrap());
    let mut driven = spawn_drive(stream, false);
    assert_eq!(driven.take(2).await, [0xC0, 0x00]);

    let mut client6 = connect(server.addr).await;
    let mut body = "2001:db8::77".parse::<std::net::Ipv6Addr>().unwrap().octets().to_vec();
    body.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
    body.extend_from_slice(&[0x00, 0x50, 0x07, 0x5B]);
    body.extend_from_slice(&[0x01, 0x00, 0x02, b'h', b'2']); // an ALPN TLV, skipped
    client6.write_all(&v2_header(1, 0x21, &body)).await.unwrap();
    let stream = server.next().await.unwrap();
    assert_eq!(stream.peer_addr(), "[2001:db8::77]:80".parse().unwrap());
}

#[tokio::test]
async fn proxy_v2_local_keeps_socket_peer() {
    let mut server = server(ListenerTransport::tcp().with_proxy_protocol(true)).await;
    let mut client = connect(server.addr).await;
    let client_addr = client.local_addr().unwrap();
    client.write_all(&v2_header(0, 0x00, &[])).await.unwrap();
    let stream = server.next().await.unwrap();
    assert_eq!(stream.peer_addr(), client_addr);
}

#[tokio::test]
async fn proxy_garbage_and_early_close_are_errors() {
    let mut server = server(ListenerTransport::tcp().with_proxy_protocol(true)).await;

    let mut client = connect(server.addr).await;
    client.write_all(&mqtt_bytes()).await.unwrap();
    assert!(matches!(server.next().await, Err(AcceptError::Proxy(ProxyError::Missing))));

    let mut client = connect(server.addr).await;
    client.write_all(b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n").await.unwrap();
    assert!(matches!(server.next().await, Err(AcceptError::Proxy(ProxyError::V1Malformed(_)))));

    let mut client = connect(server.addr).await;
    client.write_all(b"PROXY ").await.unwrap();
    client.write_all(&[b'1'; 200]).await.unwrap();
    assert!(matches!(server.next().await, Err(AcceptError::Proxy(ProxyError::V1TooLong))));

    let mut client = connect(server.addr).await;
    client.write_all(&v2_header(1, 0x11, &[1, 2, 3])).await.unwrap();
    assert!(matches!(server.next().await, Err(AcceptError::Proxy(ProxyError::V2Malformed(_)))));

    let mut client = connect(server.addr).await;
    client.write_all(b"PROXY TCP4 1.2").await.unwrap();
    drop(client);
    assert!(matches!(server.next().await, Err(AcceptError::Closed)));
}
