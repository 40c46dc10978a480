//! Shared test helpers: throwaway certificates, a loopback listener, and a
//! server loop that drives a `Stream` the way the broker's connection task
//! does.
#![allow(dead_code)]

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use fbroker_transport::{accept, AcceptError, ListenerTransport, ReadOutcome, Stream, TlsOptions, TlsSettings};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A throwaway CA.
pub struct Ca {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

/// A certificate (PEM) and its key (PEM).
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    fn issue(&self, cn: &str, purpose: ExtendedKeyUsagePurpose) -> Issued {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![purpose];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    pub fn server(&self, cn: &str) -> Issued {
        self.issue(cn, ExtendedKeyUsagePurpose::ServerAuth)
    }

    pub fn client(&self, cn: &str) -> Issued {
        self.issue(cn, ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!("fbroker-transport-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed)));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Server TLS settings from files written to `dir`.
pub fn tls_settings(dir: &TempDir, server: &Issued, client_ca: Option<&Ca>, require: bool) -> Arc<TlsSettings> {
    let cert_file = dir.write("server.pem", &server.cert_pem);
    let key_file = dir.write("server.key", &server.key_pem);
    let ca_file = client_ca.map(|ca| dir.write("ca.pem", &ca.pem()));
    let options = TlsOptions { cert_file, key_file, ca_file, require_certificate: require, use_identity_as_username: client_ca.is_some() };
    Arc::new(TlsSettings::load(options).unwrap())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client TLS connector trusting `ca`, optionally presenting a client cert.
pub fn connector(ca: &Ca, client: Option<&Issued>, versions: &[&'static rustls::SupportedProtocolVersion]) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider()).with_protocol_versions(versions).unwrap().with_root_certificates(roots);
    let config = match client {
        Some(client) => {
            let chain = vec![CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).unwrap()];
            let key = PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

pub fn server_name() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::try_from("localhost").unwrap()
}

/// A loopback listener whose accepted connections go through `accept`;
/// each result is handed over on the channel.
pub struct Server {
    pub addr: SocketAddr,
    pub accepted: mpsc::UnboundedReceiver<Result<Stream, AcceptError>>,
}

pub async fn server(transport: ListenerTransport) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, accepted) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else { return };
            let transport = transport.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let result = tokio::time::timeout(TIMEOUT, accept(tcp, peer, &transport)).await.expect("accept timed out");
                let _ = tx.send(result);
            });
        }
    });
    Server { addr, accepted }
}

impl Server {
    pub async fn next(&mut self) -> Result<Stream, AcceptError> {
        tokio::time::timeout(TIMEOUT, self.accepted.recv()).await.expect("no connection accepted").expect("server gone")
    }
}

/// How a driven connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// read_available said Closed.
    PeerClosed,
    /// A socket or protocol error.
    Error(ErrorKind),
}

/// Drives `stream` like the broker's connection task: one select on
/// readable / writable (only while output waits); reads drain the socket,
/// writes go through `try_write`, then `flush_pending`. Every application
/// byte received is reported on `received` and, when `echo`, written back.
/// Bytes arriving on `send` are written too.
pub async fn drive(mut stream: Stream, echo: bool, received: mpsc::UnboundedSender<Vec<u8>>, mut send: mpsc::UnboundedReceiver<Vec<u8>>) -> End {
    let mut read_buf = BytesMut::new();
    let mut write_buf = BytesMut::new();
    let mut send_open = true;
    loop {
        while !write_buf.is_empty() {
            match stream.try_write(&write_buf) {
                Ok(0) => return End::Error(ErrorKind::WriteZero),
                Ok(n) => write_buf.advance(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) => return End::Error(e.kind()),
            }
        }
        if let Err(e) = stream.flush_pending() {
            return End::Error(e.kind());
        }
        let want_write = !write_buf.is_empty() || stream.wants_write();
        tokio::select! {
            ready = stream.readable() => {
                if let Err(e) = ready {
                    return End::Error(e.kind());
                }
                let mut closed = false;
                let mut total = 0;
                while total < 256 * 1024 {
                    if read_buf.capacity() - read_buf.len() < 4096 {
                        read_buf.reserve(8192);
                    }
                    match stream.read_available(&mut read_buf) {
                        Ok(ReadOutcome::More(n)) => total += n,
                        Ok(ReadOutcome::Drained(_)) => break,
                        Ok(ReadOutcome::Closed) => {
                            closed = true;
                            break;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return End::Error(e.kind()),
                    }
                }
                if !read_buf.is_empty() {
                    let bytes = read_buf.split().to_vec();
                    if echo {
                        write_buf.extend_from_slice(&bytes);
                    }
                    let _ = received.send(bytes);
                }
                if closed {
                    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&write_buf)).await;
                    let _ = stream.shutdown().await;
                    return End::PeerClosed;
                }
            }
            ready = stream.writable(), if want_write => {
                if let Err(e) = ready {
                    return End::Error(e.kind());
                }
            }
            data = send.recv(), if send_open => match data {
                Some(data) => write_buf.extend_from_slice(&data),
                None => send_open = false,
            },
        }
    }
}

/// A driven server-side stream: what it received, what to send, how it ended.
pub struct Driven {
    pub received: mpsc::UnboundedReceiver<Vec<u8>>,
    pub send: mpsc::UnboundedSender<Vec<u8>>,
    pub end: tokio::task::JoinHandle<End>,
    got: Vec<u8>,
}

pub fn spawn_drive(stream: Stream, echo: bool) -> Driven {
    let (received_tx, received) = mpsc::unbounded_channel();
    let (send, send_rx) = mpsc::unbounded_channel();
    let end = tokio::spawn(drive(stream, echo, received_tx, send_rx));
    Driven { received, send, end, got: Vec::new() }
}

impl Driven {
    /// Waits until `n` application bytes in all were received; returns them.
    pub async fn take(&mut self, n: usize) -> Vec<u8> {
        while self.got.len() < n {
            let chunk = tokio::time::timeout(TIMEOUT, self.received.recv()).await.expect("server received too little").expect("server loop ended");
            self.got.extend_from_slice(&chunk);
        }
        self.got.drain(..n).collect()
    }

    pub async fn ended(self) -> End {
        tokio::time::timeout(TIMEOUT, self.end).await.expect("server loop did not end").unwrap()
    }
}

/// Bytes that look like an MQTT session: CONNECT, a few PUBLISHes, PINGREQ.
pub fn mqtt_bytes() -> Vec<u8> {
    let mut out = vec![0x10, 0x10, 0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02, 0x00, 0x3c, 0x00, 0x04, b't', b'e', b's', b't'];
    for i in 0..5u8 {
        out.extend_from_slice(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'x', i]);
    }
    out.extend_from_slice(&[0xC0, 0x00]);
    out
}

/// A deterministic pseudo-random payload.
pub fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// Writes through `try_write` without waiting until the stream refuses
/// (the socket and the stream's bounded buffer are full); returns what it
/// took. Panics if that takes more than `limit` bytes.
pub fn fill_until_blocked(stream: &mut Stream, data: &[u8], limit: usize) -> usize {
    let mut taken = 0;
    loop {
        let at = taken % data.len();
        match stream.try_write(&data[at..]) {
            Ok(0) => panic!("try_write returned 0"),
            Ok(n) => taken += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return taken,
            Err(e) => panic!("try_write failed: {e}"),
        }
        assert!(taken <= limit, "no backpressure after {taken} bytes");
    }
}
