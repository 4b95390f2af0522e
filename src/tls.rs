//! TLS on both sides of the gateway: HTTPS termination for clients (rustls,
//! ALPN `h2` and `http/1.1`, optional client certificates, files reloaded
//! when they change) and TLS or mutual TLS to backends (tonic's rustls
//! connector).
//!
//! PEM files are parsed when the configuration is loaded, so `protogate
//! check` and a reload reject a bad certificate before it is used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::Notify;

use crate::config::{BackendTls, ServerTls};

fn parse_certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("not a PEM certificate file ({e})"))?;
    anyhow::ensure!(!certs.is_empty(), "holds no PEM certificate");
    Ok(certs)
}

fn parse_key(pem: &[u8]) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| anyhow::anyhow!("holds no PEM private key ({e})"))
}

/// The bytes of a PEM file that holds a private key.
///
/// # Errors
/// The file cannot be read or holds no private key.
pub fn read_key_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_checked(path, |pem| parse_key(pem).map(drop))
}

/// The bytes of a PEM file that holds at least one certificate.
///
/// # Errors
/// The file cannot be read or holds no certificate.
pub fn read_certs_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_checked(path, |pem| parse_certs(pem).map(drop))
}

fn read_checked(
    path: &Path,
    check: impl Fn(&[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    check(&pem).with_context(|| path.display().to_string())?;
    Ok(pem)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The files of a server TLS setup, read together so a reload sees one
/// consistent state.
#[derive(PartialEq, Eq)]
struct ServerFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl ServerFiles {
    fn read(options: &ServerTls) -> anyhow::Result<Self> {
        let read = |path: &Path| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        Ok(Self {
            cert: read(&options.cert)?,
            key: read(&options.key)?,
            client_ca: options.client_ca.as_deref().map(read).transpose()?,
        })
    }

    fn server_config(&self, options: &ServerTls) -> anyhow::Result<rustls::ServerConfig> {
        let certs = parse_certs(&self.cert).with_context(|| options.cert.display().to_string())?;
        let key = parse_key(&self.key).with_context(|| options.key.display().to_string())?;
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?;
        let builder = match (&self.client_ca, &options.client_ca) {
            (Some(pem), Some(path)) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in parse_certs(pem).with_context(|| path.display().to_string())? {
                    roots.add(cert).with_context(|| {
                        format!("{}: cannot be used as a CA certificate", path.display())
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
                let verifier = if options.client_cert_optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(
                    verifier
                        .build()
                        .with_context(|| format!("{}: client CA", path.display()))?,
                )
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .with_context(|| format!("{} and {}", options.cert.display(), options.key.display()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// The listener's TLS state: the rustls configuration in use, replaced
/// whole when the certificate, key or client CA files change. Handshakes
/// in progress keep the configuration they started with.
pub struct ServerTlsState {
    options: ServerTls,
    current: ArcSwap<rustls::ServerConfig>,
    files: std::sync::Mutex<ServerFiles>,
}

impl std::fmt::Debug for ServerTlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsState")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ServerTlsState {
    /// Reads the files and builds the first configuration.
    ///
    /// # Errors
    /// A file cannot be read or does not hold what it should.
    pub fn load(options: &ServerTls) -> anyhow::Result<Arc<Self>> {
        let files = ServerFiles::read(options)?;
        let config = files.server_config(options)?;
        Ok(Arc::new(Self {
            options: options.clone(),
            current: ArcSwap::from_pointee(config),
            files: std::sync::Mutex::new(files),
        }))
    }

    /// An acceptor with the configuration in use now.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }

    /// Reads the files again and, when their bytes changed and they still
    /// make a valid setup, starts using them. True when it did.
    ///
    /// # Errors
    /// The new files cannot be read or are invalid; the old ones stay in use.
    pub fn reload(&self) -> anyhow::Result<bool> {
        let files = ServerFiles::read(&self.options)?;
        let mut current = self
            .files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *current == files {
            return Ok(false);
        }
        let config = files.server_config(&self.options)?;
        self.current.store(Arc::new(config));
        *current = files;
        Ok(true)
    }

    /// Reloads on SIGHUP and when a file's directory changes, after
    /// `debounce` of quiet; a bad new file is logged and the old
    /// certificate keeps serving. Stops when the returned handle is dropped.
    ///
    /// # Errors
    /// The file watcher cannot be started.
    pub fn watch(self: &Arc<Self>, debounce: std::time::Duration) -> anyhow::Result<TlsWatch> {
        let changed = Arc::new(Notify::new());
        let mut paths: Vec<&Path> = vec![&self.options.cert, &self.options.key];
        paths.extend(self.options.client_ca.as_deref());
        let watcher = crate::server::reload::watch_paths(&paths, changed.clone())?;
        let state = self.clone();
        let mut hangups = crate::server::reload::Hangups::listen();
        let task = tokio::spawn(async move {
            loop {
                crate::server::reload::next_trigger(&changed, &mut hangups, debounce).await;
                match state.reload() {
                    Ok(true) => {
                        tracing::info!(cert = %state.options.cert.display(), "TLS certificate reloaded")
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(
                        "TLS files changed but cannot be used; keeping the previous certificate: {e:#}"
                    ),
                }
            }
        });
        Ok(TlsWatch {
            _watcher: watcher,
            task: task.abort_handle(),
        })
    }
}

/// Keeps the certificate watcher running; stops it when dropped.
pub struct TlsWatch {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::AbortHandle,
}

impl Drop for TlsWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// tonic's client TLS settings for a backend: the CA bundle (else the
/// system's roots), a client identity for mutual TLS, and the name to
/// verify (else the configured host).
pub fn client_config(tls: &BackendTls, host: &str) -> tonic::transport::ClientTlsConfig {
    let mut config = tonic::transport::ClientTlsConfig::new()
        .domain_name(tls.server_name.as_deref().unwrap_or(host));
    config = match &tls.ca {
        Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem)),
        None => config.with_native_roots(),
    };
    if let Some(identity) = &tls.identity {
        config = config.identity(tonic::transport::Identity::from_pem(
            &identity.cert.pem,
            &identity.key.pem,
        ));
    }
    config
}

/// Sets up tonic's TLS connector for `tls` as a call would, to report
/// what it refuses (a bad server name, a key that does not fit its
/// certificate) when the configuration loads.
///
/// # Errors
/// What tonic refuses.
pub fn check_client(tls: &BackendTls, host: &str) -> anyhow::Result<()> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    tonic::transport::Endpoint::from_static("https://localhost")
        .tls_config(client_config(tls, host))
        .map(drop)
        .map_err(|e| anyhow::anyhow!("{}", crate::descriptor::reflection::causes(&e)))
}

/// A PEM file's path and its bytes, read when the configuration loads.
#[derive(Clone, PartialEq, Eq)]
pub struct PemFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its bytes.
    pub pem: Vec<u8>,
}

impl std::fmt::Debug for PemFile {
    // Never the bytes: a key must not reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_parsing_names_what_is_missing() {
        let cases: &[(&[u8], bool)] = &[
            (b"", false),
            (b"not pem at all", false),
            (
                b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                true,
            ),
            (
                b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
                false,
            ),
        ];
        for (pem, ok) in cases {
            assert_eq!(
                parse_certs(pem).is_ok(),
                *ok,
                "{:?}",
                String::from_utf8_lossy(pem)
            );
        }
        assert!(
            parse_key(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").is_err()
        );
        assert!(
            parse_key(b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n").is_ok()
        );
    }
}
