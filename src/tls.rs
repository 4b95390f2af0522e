//! TLS on both sides of the gateway: HTTPS termination for clients (rustls,
//! ALPN `h2` and `http/1.1`, optional client certificates, files reloaded
//! when they change) and TLS or mutual TLS to backends (tonic's rustls
//! connector).
//!
//! PEM files are parsed when the configuration is loaded, so `protogate
//! check` and a reload reject a bad certificate before it is used.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use rustls::server::WebPkiClientVerifier;
use tokio::sync::Notify;

use crate::config::{BackendTls, ServerTls, parse_certs, parse_key};

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
        let watcher = crate::watch::watch_paths(&paths, changed.clone())?;
        let state = self.clone();
        let mut hangups = crate::watch::Hangups::listen();
        let task = tokio::spawn(async move {
            loop {
                crate::watch::next_trigger(&changed, &mut hangups, debounce).await;
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

/// tonic's client TLS settings for a backend (see
/// [`BackendTls::client_config`], which the configuration checks at load).
pub fn client_config(tls: &BackendTls, host: &str) -> tonic::transport::ClientTlsConfig {
    tls.client_config(host)
}

/// The rustls connector for TLS to a backend whose address has host
/// `host`, and the name its certificate must carry (the configured
/// `server_name`, else `host`): the CA bundle or the system's roots, a
/// client certificate for mutual TLS, ALPN `h2`.
///
/// # Errors
/// A certificate or key rustls refuses, or a server name that is not a
/// DNS name or an IP address.
pub fn backend_connector(
    tls: &BackendTls,
    host: &str,
) -> anyhow::Result<(
    tokio_rustls::TlsConnector,
    rustls::pki_types::ServerName<'static>,
)> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            for cert in parse_certs(&ca.pem).with_context(|| ca.path.display().to_string())? {
                roots.add(cert).with_context(|| {
                    format!("{}: cannot be used as a CA certificate", ca.path.display())
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A system store holds certificates rustls cannot use; the rest still count.
                let _ = roots.add(cert);
            }
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let mut config = match &tls.identity {
        Some(identity) => builder
            .with_client_auth_cert(
                parse_certs(&identity.cert.pem)
                    .with_context(|| identity.cert.path.display().to_string())?,
                parse_key(&identity.key.pem)
                    .with_context(|| identity.key.path.display().to_string())?,
            )
            .with_context(|| {
                format!(
                    "{} and {}",
                    identity.cert.path.display(),
                    identity.key.path.display()
                )
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = tls.server_name.as_deref().unwrap_or(host).to_owned();
    let name = rustls::pki_types::ServerName::try_from(name.clone())
        .map_err(|_| anyhow::anyhow!("{name:?} is not a valid server name"))?;
    Ok((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
}

/// The verified client certificate of a mutual TLS connection, as the
/// `X-Forwarded-Client-Cert` value backends get (Envoy's format): made once
/// per connection, added to each of its requests.
#[derive(Debug, Clone)]
pub struct ClientCert(pub http::HeaderValue);

impl ClientCert {
    /// `Hash=<SHA-256 of the DER, hex>;Subject="<subject>"` and a `URI=` or
    /// `DNS=` for each such subject alternative name. A certificate that does
    /// not parse (rustls verified it, so this is unlikely) gives the hash alone.
    pub fn from_der(leaf: &[u8]) -> Option<Self> {
        use sha2::Digest;
        use std::fmt::Write;
        let mut value = String::from("Hash=");
        for byte in sha2::Sha256::digest(leaf) {
            let _ = write!(value, "{byte:02x}");
        }
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf) {
            push_field(&mut value, "Subject", &cert.subject().to_string(), true);
            if let Ok(Some(names)) = cert.subject_alternative_name() {
                for name in &names.value.general_names {
                    match name {
                        x509_parser::extensions::GeneralName::URI(uri) => {
                            push_field(&mut value, "URI", uri, false);
                        }
                        x509_parser::extensions::GeneralName::DNSName(dns) => {
                            push_field(&mut value, "DNS", dns, false);
                        }
                        _ => {}
                    }
                }
            }
        }
        http::HeaderValue::from_str(&value)
            .ok()
            .or_else(|| value.split(';').next().and_then(|hash| hash.parse().ok()))
            .map(Self)
    }
}

/// `;key=value`, the value quoted when asked or when it holds `,`, `;`,
/// `=` or `"`.
fn push_field(out: &mut String, key: &str, value: &str, quote: bool) {
    out.push(';');
    out.push_str(key);
    out.push('=');
    if quote || value.contains([',', ';', '=', '"']) {
        out.push('"');
        out.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

#[cfg(test)]
mod client_cert_tests {
    use super::*;
    use sha2::Digest;

    fn cert(common_name: &str, sans: Vec<rcgen::SanType>) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.subject_alt_names = sans;
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn ia5(s: &str) -> rcgen::string::Ia5String {
        s.try_into().unwrap()
    }

    #[test]
    fn forwarded_client_cert_names_hash_subject_and_names() {
        let der = cert(
            "client.test",
            vec![
                rcgen::SanType::DnsName(ia5("client.test")),
                rcgen::SanType::URI(ia5("spiffe://shop/web")),
                rcgen::SanType::URI(ia5("urn:x;y=z")),
            ],
        );
        let hash: String = sha2::Sha256::digest(&der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let value = ClientCert::from_der(&der).unwrap().0;
        assert_eq!(
            value.to_str().unwrap(),
            format!(
                r#"Hash={hash};Subject="CN=client.test";DNS=client.test;URI=spiffe://shop/web;URI="urn:x;y=z""#
            )
        );
    }

    #[test]
    fn quotes_in_the_subject_are_escaped() {
        let der = cert(r#"a "b" \c"#, Vec::new());
        let value = ClientCert::from_der(&der).unwrap().0;
        assert!(
            value
                .to_str()
                .unwrap()
                .ends_with(r#";Subject="CN=a \"b\" \\c""#),
            "{value:?}"
        );
    }

    #[test]
    fn not_a_certificate_gives_the_hash_alone() {
        let value = ClientCert::from_der(b"not DER").unwrap().0;
        let text = value.to_str().unwrap();
        assert!(text.starts_with("Hash=") && !text.contains(';'), "{text}");
    }
}
