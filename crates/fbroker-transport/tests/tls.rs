//! TLS over real loopback sockets, with certificates generated per test.

mod common;

use std::time::Duration;

use common::*;
use fbroker_transport::tls::subject_common_name;
use fbroker_transport::{AcceptError, ListenerKind, ListenerTransport};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const BOTH: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Writes `data` and reads the echo back, concurrently.
async fn round_trip<S: AsyncRead + AsyncWrite + Unpin>(client: &mut S, data: &[u8]) {
    let (mut rd, mut wr) = tokio::io::split(client);
    let write = async {
        wr.write_all(data).await.unwrap();
        wr.flush().await.unwrap();
    };
    let read = async {
        let mut back = vec![0; data.len()];
        tokio::time::timeout(TIMEOUT, rd.read_exact(&mut back)).await.expect("echo timed out").unwrap();
        back
    };
    let (_, back) = tokio::join!(write, read);
    assert!(back == data, "echo differs");
}

fn served_cn(client: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Option<String> {
    let certs = client.get_ref().1.peer_certificates()?;
    subject_common_name(certs.first()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_round_trip_both_ways() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker-1"), None, false);
    let mut server = server(ListenerTransport::tls(settings)).await;

    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12][..]] {
        let tcp = connect(server.addr).await;
        let client_addr = tcp.local_addr().unwrap();
        let connecting = connector(&ca, None, versions).connect(server_name(), tcp);
        let (client, stream) = tokio::join!(connecting, server.next());
        let mut client = client.unwrap();
        let stream = stream.unwrap();
        assert_eq!(stream.kind(), ListenerKind::Tls);
        assert_eq!(stream.peer_addr(), client_addr);
        assert_eq!(stream.peer_identity(), None);
        let expected = if versions[0] == &rustls::version::TLS13 { "TLSv1.3" } else { "TLSv1.2" };
        assert_eq!(stream.tls_version(), Some(expected));
        assert_eq!(served_cn(&client).as_deref(), Some("broker-1"));
        let mut driven = spawn_drive(stream, true);

        // Small, then large enough to fill the socket buffers and the
        // stream's bounded output both ways.
        round_trip(&mut client, &mqtt_bytes()).await;
        assert_eq!(driven.take(mqtt_bytes().len()).await, mqtt_bytes());
        let big = payload(3 << 20);
        round_trip(&mut client, &big).await;
        assert!(driven.take(big.len()).await == big);

        // Server-initiated output.
        driven.send.send(b"from-server".to_vec()).unwrap();
        let mut got = [0u8; 11];
        tokio::time::timeout(TIMEOUT, client.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(&got, b"from-server");

        // A clean TLS close ends the server loop with Closed, and the server
        // answers with its own close_notify.
        client.shutdown().await.unwrap();
        assert_eq!(driven.ended().await, End::PeerClosed);
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(TIMEOUT, client.read_to_end(&mut rest)).await.unwrap();
        assert!(rest.is_empty());
    }
}

#[tokio::test]
async fn client_bytes_sent_with_the_handshake_are_kept() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker"), None, false);
    let mut server = server(ListenerTransport::tls(settings)).await;
    let tcp = connect(server.addr).await;
    let client = async {
        let mut client = connector(&ca, None, BOTH).connect(server_name(), tcp).await.unwrap();
        // Written right after the client's Finished, before the server's
        // accept returned: it may arrive with the handshake's last flight.
        client.write_all(&mqtt_bytes()).await.unwrap();
        client.flush().await.unwrap();
        client
    };
    let (_client, stream) = tokio::join!(client, server.next());
    let mut driven = spawn_drive(stream.unwrap(), false);
    assert_eq!(driven.take(mqtt_bytes().len()).await, mqtt_bytes());
}

#[tokio::test]
async fn required_client_certificate() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker"), Some(&ca), true);
    assert!(settings.use_identity_as_username());
    let mut server = server(ListenerTransport::tls(settings)).await;

    // Without a certificate: the server refuses the handshake.
    let tcp = connect(server.addr).await;
    let client = async {
        // TLS 1.3: the client may finish before the server judged it; the
        // refusal then arrives as an alert on the first read.
        if let Ok(mut client) = connector(&ca, None, BOTH).connect(server_name(), tcp).await {
            let mut buf = [0u8; 1];
            assert!(client.read(&mut buf).await.is_err());
        }
    };
    let (_, accepted) = tokio::join!(client, server.next());
    assert!(matches!(accepted, Err(AcceptError::Tls(_))), "{accepted:?}");

    // A certificate from another CA: refused as well.
    let other = Ca::new("Other CA");
    let tcp = connect(server.addr).await;
    let client = async {
        if let Ok(mut client) = connector(&ca, Some(&other.client("intruder")), BOTH).connect(server_name(), tcp).await {
            let mut buf = [0u8; 1];
            assert!(client.read(&mut buf).await.is_err());
        }
    };
    let (_, accepted) = tokio::join!(client, server.next());
    assert!(matches!(accepted, Err(AcceptError::Tls(_))), "{accepted:?}");

    // With a certificate signed by the CA: accepted, identity is its CN.
    let tcp = connect(server.addr).await;
    let (client, accepted) =
        tokio::join!(connector(&ca, Some(&ca.client("device-42")), BOTH).connect(server_name(), tcp), server.next());
    let mut client = client.unwrap();
    let stream = accepted.unwrap();
    assert_eq!(stream.peer_identity().as_deref(), Some("device-42"));
    let mut driven = spawn_drive(stream, true);
    round_trip(&mut client, &mqtt_bytes()).await;
    assert_eq!(driven.take(mqtt_bytes().len()).await, mqtt_bytes());
}

#[tokio::test]
async fn optional_client_certificate() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker"), Some(&ca), false);
    let mut server = server(ListenerTransport::tls(settings)).await;

    let tcp = connect(server.addr).await;
    let (client, accepted) = tokio::join!(connector(&ca, None, BOTH).connect(server_name(), tcp), server.next());
    client.unwrap();
    assert_eq!(accepted.unwrap().peer_identity(), None);

    let tcp = connect(server.addr).await;
    let (client, accepted) =
        tokio::join!(connector(&ca, Some(&ca.client("sensor-1")), BOTH).connect(server_name(), tcp), server.next());
    client.unwrap();
    assert_eq!(accepted.unwrap().peer_identity().as_deref(), Some("sensor-1"));
}

#[tokio::test]
async fn garbage_instead_of_client_hello() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker"), None, false);
    let mut server = server(ListenerTransport::tls(settings)).await;

    // Plain MQTT sent to a TLS port.
    let mut client = connect(server.addr).await;
    client.write_all(&mqtt_bytes()).await.unwrap();
    let accepted = server.next().await;
    assert!(matches!(accepted, Err(AcceptError::Tls(_))), "{accepted:?}");
    // The server sent an alert (or closed); either way the client sees the end.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, client.read_to_end(&mut rest)).await.unwrap();

    // A handshake record header with a nonsense body.
    let mut client = connect(server.addr).await;
    let mut record = vec![0x16, 0x03, 0x01, 0x00, 0x40];
    record.extend_from_slice(&payload(0x40));
    client.write_all(&record).await.unwrap();
    let accepted = server.next().await;
    assert!(matches!(accepted, Err(AcceptError::Tls(_))), "{accepted:?}");

    // A client that goes away mid-handshake.
    let mut client = connect(server.addr).await;
    client.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    drop(client);
    let accepted = server.next().await;
    assert!(matches!(accepted, Err(AcceptError::Closed)), "{accepted:?}");
}

#[tokio::test]
async fn reload_swaps_certificate_for_new_connections_only() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker-old"), None, false);
    let mut server = server(ListenerTransport::tls(settings.clone())).await;

    let tcp = connect(server.addr).await;
    let (old_client, accepted) = tokio::join!(connector(&ca, None, BOTH).connect(server_name(), tcp), server.next());
    let mut old_client = old_client.unwrap();
    assert_eq!(served_cn(&old_client).as_deref(), Some("broker-old"));
    let mut old_driven = spawn_drive(accepted.unwrap(), true);

    // New files, then reload.
    let new = ca.server("broker-new");
    dir.write("server.pem", &new.cert_pem);
    dir.write("server.key", &new.key_pem);
    settings.reload().unwrap();

    let tcp = connect(server.addr).await;
    let (new_client, accepted) = tokio::join!(connector(&ca, None, BOTH).connect(server_name(), tcp), server.next());
    let mut new_client = new_client.unwrap();
    assert_eq!(served_cn(&new_client).as_deref(), Some("broker-new"));
    let mut new_driven = spawn_drive(accepted.unwrap(), true);

    // Both keep working.
    round_trip(&mut old_client, b"old connection").await;
    assert_eq!(old_driven.take(14).await, b"old connection");
    round_trip(&mut new_client, b"new connection").await;
    assert_eq!(new_driven.take(14).await, b"new connection");

    // A reload that fails keeps the current configuration.
    dir.write("server.key", "not a key\n");
    let err = settings.reload().unwrap_err().to_string();
    assert!(err.contains("contains no private key"), "{err}");
    let tcp = connect(server.addr).await;
    let (client, accepted) = tokio::join!(connector(&ca, None, BOTH).connect(server_name(), tcp), server.next());
    assert_eq!(served_cn(&client.unwrap()).as_deref(), Some("broker-new"));
    accepted.unwrap();
}

#[tokio::test]
async fn proxy_header_before_tls() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker"), None, false);
    let mut server = server(ListenerTransport::tls(settings).with_proxy_protocol(true)).await;
    let mut tcp = connect(server.addr).await;
    tcp.write_all(b"PROXY TCP4 192.0.2.44 192.0.2.1 5555 8883\r\n").await.unwrap();
    let (client, accepted) = tokio::join!(connector(&ca, None, BOTH).connect(server_name(), tcp), server.next());
    let mut client = client.unwrap();
    let stream = accepted.unwrap();
    assert_eq!(stream.peer_addr(), "192.0.2.44:5555".parse().unwrap());
    let mut driven = spawn_drive(stream, true);
    round_trip(&mut client, &mqtt_bytes()).await;
    assert_eq!(driven.take(mqtt_bytes().len()).await, mqtt_bytes());
}

#[tokio::test]
async fn server_shutdown_sends_close_notify() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker"), None, false);
    let mut server = server(ListenerTransport::tls(settings)).await;
    let tcp = connect(server.addr).await;
    let (client, accepted) = tokio::join!(connector(&ca, None, BOTH).connect(server_name(), tcp), server.next());
    let mut client = client.unwrap();
    let mut stream = accepted.unwrap();
    stream.write_all(b"bye").await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), stream.shutdown()).await.unwrap().unwrap();
    let mut got = Vec::new();
    // read_to_end succeeds only on a clean close_notify.
    tokio::time::timeout(TIMEOUT, client.read_to_end(&mut got)).await.unwrap().unwrap();
    assert_eq!(got, b"bye");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_is_bounded_when_the_client_does_not_read() {
    let ca = Ca::new("Test CA");
    let dir = TempDir::new();
    let settings = tls_settings(&dir, &ca.server("broker"), None, false);
    let mut server = server(ListenerTransport::tls(settings)).await;
    let tcp = connect(server.addr).await;
    let (client, accepted) = tokio::join!(connector(&ca, None, BOTH).connect(server_name(), tcp), server.next());
    let mut client = client.unwrap();
    let mut stream = accepted.unwrap();
    let data = payload(64 * 1024);
    let taken = fill_until_blocked(&mut stream, &data, 64 << 20);
    assert!(stream.wants_write(), "the refused write leaves records buffered");
    // The client reads it all while the server flushes what it holds.
    let read = async {
        let mut got = vec![0u8; taken];
        tokio::time::timeout(TIMEOUT, client.read_exact(&mut got)).await.unwrap().unwrap();
        got
    };
    let (flushed, got) = tokio::join!(stream.write_all(&[]), read);
    flushed.unwrap();
    assert!(!stream.wants_write());
    for (i, chunk) in got.chunks(data.len()).enumerate() {
        assert!(chunk == &data[..chunk.len()], "chunk {i} differs");
    }
}
