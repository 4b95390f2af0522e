//! `backends.<name>.tls:`: TLS and mutual TLS to a backend. The PEM files
//! are read at load, and tonic's connector is set up once then, so what a
//! call would refuse fails the load instead.

use std::path::{Path, PathBuf};

use anyhow::bail;
use serde::Deserialize;

use super::pem::{PemFile, read_certs_pem, read_key_pem};

/// `backends.<name>.tls:` as written.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackendTlsSection {
    /// PEM CA certificates to trust instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS.
    pub cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub key: Option<PathBuf>,
    /// The name the backend's certificate must carry, when not the address's host.
    pub server_name: Option<String>,
}

/// TLS to a backend (its addresses are `https://`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendTls {
    /// CA certificates to trust. Default: the system's roots.
    pub ca: Option<PemFile>,
    /// Client certificate and key for mutual TLS. Default none.
    pub identity: Option<ClientIdentity>,
    /// The name the backend's certificate must carry. Default: the host of
    /// the configured address.
    pub server_name: Option<String>,
}

/// A client certificate and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// PEM certificate chain.
    pub cert: PemFile,
    /// PEM private key.
    pub key: PemFile,
}

impl BackendTls {
    /// tonic's client TLS settings: the CA bundle (else the system's
    /// roots), a client identity for mutual TLS, and the name to verify
    /// (else `host`).
    pub fn client_config(&self, host: &str) -> tonic::transport::ClientTlsConfig {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .domain_name(self.server_name.as_deref().unwrap_or(host));
        config = match &self.ca {
            Some(ca) => config.ca_certificate(tonic::transport::Certificate::from_pem(&ca.pem)),
            None => config.with_native_roots(),
        };
        if let Some(identity) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(
                &identity.cert.pem,
                &identity.key.pem,
            ));
        }
        config
    }

    /// Sets up tonic's TLS connector as a call would, to report what it
    /// refuses (a bad server name, a key that does not fit its
    /// certificate) when the configuration loads.
    fn check(&self, host: &str) -> anyhow::Result<()> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        tonic::transport::Endpoint::from_static("https://localhost")
            .tls_config(self.client_config(host))
            .map(drop)
            .map_err(|e| anyhow::anyhow!("{}", crate::cause::chain(&e)))
    }
}

impl BackendTlsSection {
    /// The files read and checked, tonic's connector set up for `host`;
    /// `key` is the backend's (`backends.<name>`).
    pub(super) fn validate(
        self,
        key: &str,
        host: &str,
        anchor: &impl Fn(&PathBuf) -> PathBuf,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<BackendTls> {
        let pem = |path: &PathBuf, field: &str, read: fn(&Path) -> anyhow::Result<Vec<u8>>| {
            let path = anchor(path);
            read(&path)
                .map(|pem| PemFile {
                    path: path.clone(),
                    pem,
                })
                .map_err(|e| err(&format!("{key}.tls.{field}"), format!("{e:#}")))
        };
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(k)) => Some(ClientIdentity {
                cert: pem(cert, "cert", read_certs_pem)?,
                key: pem(k, "key", read_key_pem)?,
            }),
            (None, None) => None,
            _ => bail!(err(
                &format!("{key}.tls"),
                "give `cert` and `key` together".into()
            )),
        };
        let tls = BackendTls {
            ca: self
                .ca
                .as_ref()
                .map(|ca| pem(ca, "ca", read_certs_pem))
                .transpose()?,
            identity,
            server_name: self.server_name,
        };
        tls.check(host)
            .map_err(|e| err(&format!("{key}.tls"), format!("{e:#}")))?;
        Ok(tls)
    }
}
