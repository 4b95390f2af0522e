//! `backends.<name>.discovery:`: a backend's endpoints read from a registry
//! (etcd) instead of listed in the file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

use super::backend_tls::{BackendTls, BackendTlsSection};
use super::value::NonZeroDuration;

/// Default deadline of one etcd request (connect, list) and of the first
/// listing a starting gateway waits for.
pub const DEFAULT_ETCD_TIMEOUT: Duration = Duration::from_secs(3);

/// `backends.<name>.discovery:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySection {
    /// Endpoints registered in etcd under a key prefix.
    pub etcd: EtcdSection,
}

/// `backends.<name>.discovery.etcd:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    /// The etcd cluster's client URLs (`http://host:2379`).
    pub endpoints: Vec<String>,
    /// Key prefix the backend's instances register under, e.g. `/services/orders/`.
    pub prefix: String,
    /// Only instances whose registered metadata has these values (e.g.
    /// `version: v2`), so two backends on one prefix split its instances.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// TLS to etcd.
    pub tls: Option<BackendTlsSection>,
    /// etcd user and password.
    pub auth: Option<EtcdAuthSection>,
    /// Deadline of one etcd request, and of the first listing at startup.
    #[schemars(extend("default" = "3s"))]
    pub timeout: Option<NonZeroDuration>,
}

/// `backends.<name>.discovery.etcd.auth:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EtcdAuthSection {
    /// The etcd user.
    pub username: String,
    /// Environment variable holding the password.
    pub password_env: String,
}

/// Endpoints from etcd: the prefix is listed at start, then watched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdDiscovery {
    /// Client URLs of the etcd cluster.
    pub endpoints: Vec<String>,
    /// The key prefix.
    pub prefix: String,
    /// Metadata an instance must have to be an endpoint of this backend.
    pub metadata: BTreeMap<String, String>,
    /// TLS to etcd. Default none.
    pub tls: Option<BackendTls>,
    /// User and password (read from the environment at load). Default none.
    pub auth: Option<(String, String)>,
    /// Deadline of one request, and of the first listing. Default 3s.
    pub timeout: Duration,
}

impl DiscoverySection {
    /// Checks the section of `backends.<name>` (`key`).
    pub(super) fn validate(
        self,
        key: &str,
        anchor: &impl Fn(&PathBuf) -> PathBuf,
        err: &impl Fn(&str, String) -> anyhow::Error,
    ) -> anyhow::Result<EtcdDiscovery> {
        let key = format!("{key}.discovery.etcd");
        let etcd = self.etcd;
        if etcd.endpoints.is_empty() {
            bail!(err(
                &format!("{key}.endpoints"),
                "list the etcd cluster's client URLs".into()
            ));
        }
        let mut hosts = Vec::new();
        for url in &etcd.endpoints {
            let uri: http::Uri = url.parse().map_err(|e| {
                err(
                    &format!("{key}.endpoints"),
                    format!("{url:?} is not a URL ({e})"),
                )
            })?;
            let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
            if !scheme_ok || uri.port_u16().is_none() {
                bail!(err(
                    &format!("{key}.endpoints"),
                    format!("{url:?} must look like http://host:port or https://host:port")
                ));
            }
            hosts.push(uri.host().unwrap_or_default().to_owned());
        }
        if etcd.prefix.is_empty() {
            bail!(err(
                &format!("{key}.prefix"),
                "give the key prefix the instances register under".into()
            ));
        }
        let tls = etcd
            .tls
            .map(|t| t.validate(&key, hosts.first().map_or("", String::as_str), anchor, err))
            .transpose()?;
        let auth = match etcd.auth {
            Some(a) => {
                let password = std::env::var(&a.password_env).map_err(|_| {
                    err(
                        &format!("{key}.auth.password_env"),
                        format!("environment variable {} is not set", a.password_env),
                    )
                })?;
                Some((a.username, password))
            }
            None => None,
        };
        Ok(EtcdDiscovery {
            endpoints: etcd.endpoints,
            prefix: etcd.prefix,
            metadata: etcd.metadata,
            tls,
            auth,
            timeout: etcd
                .timeout
                .map_or(DEFAULT_ETCD_TIMEOUT, NonZeroDuration::get),
        })
    }
}
