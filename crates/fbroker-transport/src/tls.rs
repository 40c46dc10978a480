//! TLS settings: the server certificate and key, optional client
//! certificate verification, loaded from PEM files into a rustls
//! `ServerConfig` that [`TlsSettings::reload`] can swap while the broker
//! runs (new handshakes take the new one; established connections keep
//! theirs).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Where the TLS material is and how clients are checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM: the server certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
    /// PEM: the CA certificates client certificates are verified against.
    pub ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate (needs `ca_file`). When false
    /// but `ca_file` is set, a certificate is verified when offered.
    pub require_certificate: bool,
    /// The broker takes the verified client certificate's subject CN as
    /// the MQTT username (see `Stream::peer_identity`). Needs `ca_file`.
    pub use_identity_as_username: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsConfigError {
    #[error("cannot read {field} {}: {source}", path.display())]
    Read { field: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{field} {} {problem}", path.display())]
    Content { field: &'static str, path: PathBuf, problem: String },
    #[error("{0}")]
    Invalid(String),
}

/// Loaded TLS settings, shared by a listener's connections.
pub struct TlsSettings {
    options: TlsOptions,
    config: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for TlsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSettings").field("options", &self.options).finish_non_exhaustive()
    }
}

impl TlsSettings {
    /// Reads and checks the files.
    pub fn load(options: TlsOptions) -> Result<Self, TlsConfigError> {
        let config = build_config(&options)?;
        Ok(TlsSettings { options, config: RwLock::new(Arc::new(config)) })
    }

    /// Re-reads the files. On success new handshakes use the new material;
    /// on failure the previous configuration stays in force.
    pub fn reload(&self) -> Result<(), TlsConfigError> {
        let config = build_config(&self.options)?;
        *self.config.write() = Arc::new(config);
        Ok(())
    }

    /// The configuration a new handshake uses.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config.read().clone()
    }

    pub fn options(&self) -> &TlsOptions {
        &self.options
    }

    pub fn use_identity_as_username(&self) -> bool {
        self.options.use_identity_as_username
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(field: &'static str, path: &Path) -> Result<Vec<u8>, TlsConfigError> {
    std::fs::read(path).map_err(|source| TlsConfigError::Read { field, path: path.to_owned(), source })
}

fn content_error(field: &'static str, path: &Path, problem: impl Into<String>) -> TlsConfigError {
    TlsConfigError::Content { field, path: path.to_owned(), problem: problem.into() }
}

fn load_certs(field: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsConfigError> {
    let pem = read_file(field, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content_error(field, path, format!("is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(content_error(field, path, "contains no certificate"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsConfigError> {
    let pem = read_file("key_file", path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => content_error("key_file", path, "contains no private key"),
        e => content_error("key_file", path, format!("is not valid PEM: {e}")),
    })
}

fn build_config(options: &TlsOptions) -> Result<ServerConfig, TlsConfigError> {
    let provider = provider();
    if options.ca_file.is_none() {
        if options.require_certificate {
            return Err(TlsConfigError::Invalid("require_certificate needs ca_file".into()));
        }
        if options.use_identity_as_username {
            return Err(TlsConfigError::Invalid("use_identity_as_username needs ca_file".into()));
        }
    }
    let chain = load_certs("cert_file", &options.cert_file)?;
    let key = load_key(&options.key_file)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsConfigError::Invalid(format!("TLS setup failed: {e}")))?;
    let builder = match &options.ca_file {
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            for cert in load_certs("ca_file", ca_file)? {
                roots
                    .add(cert)
                    .map_err(|e| content_error("ca_file", ca_file, format!("has an unusable CA certificate: {e}")))?;
            }
            let mut verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if !options.require_certificate {
                verifier = verifier.allow_unauthenticated();
            }
            let verifier = verifier
                .build()
                .map_err(|e| content_error("ca_file", ca_file, format!("cannot be used to verify clients: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(chain, key).map_err(|e| {
        TlsConfigError::Invalid(format!(
            "cert_file {} and key_file {} cannot be used together: {e}",
            options.cert_file.display(),
            options.key_file.display()
        ))
    })
}

// ---------------------------------------------------------------------------
// The client certificate's subject common name
// ---------------------------------------------------------------------------

/// One DER element: (tag, contents, what follows it).
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1F == 0x1F {
        return None; // High tag numbers do not occur where we look.
    }
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7F) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OID_COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];

/// The first common name (2.5.4.3) in a DER certificate's subject.
pub fn subject_common_name(cert_der: &[u8]) -> Option<String> {
    let (tag, cert, _) = der_element(cert_der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = der_element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // version [0] EXPLICIT, optional.
    if rest.first() == Some(&0xA0) {
        rest = der_element(rest)?.2;
    }
    // serialNumber, signature, issuer, validity: skipped.
    for _ in 0..4 {
        rest = der_element(rest)?.2;
    }
    let (tag, subject, _) = der_element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rdns = subject;
    while !rdns.is_empty() {
        let (tag, set, next) = der_element(rdns)?;
        rdns = next;
        if tag != SET {
            return None;
        }
        let mut attrs = set;
        while !attrs.is_empty() {
            let (tag, attr, next) = der_element(attrs)?;
            attrs = next;
            if tag != SEQUENCE {
                return None;
            }
            let (tag, oid, value) = der_element(attr)?;
            if tag == OID && oid == OID_COMMON_NAME {
                let (tag, text, _) = der_element(value)?;
                return directory_string(tag, text);
            }
        }
    }
    None
}

fn directory_string(tag: u8, bytes: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, VisibleString
        0x0C | 0x13 | 0x16 | 0x1A => String::from_utf8(bytes.to_vec()).ok(),
        // TeletexString: taken as Latin-1.
        0x14 => Some(bytes.iter().map(|&b| b as char).collect()),
        // BMPString: UTF-16BE.
        0x1E => {
            if !bytes.len().is_multiple_of(2) {
                return None;
            }
            let units: Vec<u16> = bytes.chunks_exact(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        0x1C => {
            if !bytes.len().is_multiple_of(4) {
                return None;
            }
            bytes.chunks_exact(4).map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_name_from_generated_certificates() {
        for cn in ["client-7", "ünïcode ☃", ""] {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
            params.distinguished_name = rcgen::DistinguishedName::new();
            params.distinguished_name.push(rcgen::DnType::OrganizationName, "Org");
            params.distinguished_name.push(rcgen::DnType::CommonName, cn);
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(subject_common_name(cert.der()).as_deref(), Some(cn));
        }
    }

    #[test]
    fn no_common_name() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Org");
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_common_name(cert.der()), None);
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(subject_common_name(&[]), None);
        assert_eq!(subject_common_name(&[0x30, 0x82, 0xFF]), None);
        assert_eq!(subject_common_name(&[0x30, 0x03, 0x30, 0x01, 0x02]), None);
    }

    #[test]
    fn directory_strings() {
        assert_eq!(directory_string(0x1E, &[0, b'h', 0, b'i']).as_deref(), Some("hi"));
        assert_eq!(directory_string(0x1C, &[0, 0, 0, b'x']).as_deref(), Some("x"));
        assert_eq!(directory_string(0x14, &[0xE9]).as_deref(), Some("é"));
        assert_eq!(directory_string(0x04, b"x"), None);
    }

    fn write_temp(dir: &Path, name: &str, contents: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn load_errors_name_the_file() {
        let dir = std::env::temp_dir().join(format!("fbroker-transport-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap().self_signed(&key).unwrap();
        let cert_file = write_temp(&dir, "cert.pem", &cert.pem());
        let key_file = write_temp(&dir, "key.pem", &key.serialize_pem());
        let empty = write_temp(&dir, "empty.pem", "nothing here\n");
        let missing = dir.join("missing.pem");

        let options = TlsOptions { cert_file: cert_file.clone(), key_file: key_file.clone(), ..Default::default() };
        assert!(TlsSettings::load(options.clone()).is_ok());

        let e = TlsSettings::load(TlsOptions { cert_file: missing.clone(), ..options.clone() }).unwrap_err().to_string();
        assert!(e.starts_with(&format!("cannot read cert_file {}: ", missing.display())), "{e}");
        let e = TlsSettings::load(TlsOptions { key_file: empty.clone(), ..options.clone() }).unwrap_err().to_string();
        assert_eq!(e, format!("key_file {} contains no private key", empty.display()));
        let e = TlsSettings::load(TlsOptions { cert_file: empty.clone(), ..options.clone() }).unwrap_err().to_string();
        assert_eq!(e, format!("cert_file {} contains no certificate", empty.display()));
        // A key that is not the certificate's.
        let other = rcgen::KeyPair::generate().unwrap();
        let other_key = write_temp(&dir, "other.pem", &other.serialize_pem());
        let e = TlsSettings::load(TlsOptions { key_file: other_key, ..options.clone() }).unwrap_err().to_string();
        assert!(e.contains("cannot be used together"), "{e}");
        let e = TlsSettings::load(TlsOptions { require_certificate: true, ..options.clone() }).unwrap_err().to_string();
        assert_eq!(e, "require_certificate needs ca_file");
        let e = TlsSettings::load(TlsOptions { ca_file: Some(missing.clone()), ..options.clone() }).unwrap_err().to_string();
        assert!(e.starts_with("cannot read ca_file"), "{e}");
        let e = TlsSettings::load(TlsOptions { ca_file: Some(empty.clone()), ..options }).unwrap_err().to_string();
        assert!(e.starts_with("ca_file") && e.ends_with("contains no certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
