//! PEM files named by `gateway.yaml`: read and checked when the
//! configuration loads, so `protogate check` and a reload reject a bad
//! certificate before it is used. Building TLS configurations from them is
//! `crate::tls`'s job.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// The certificates of PEM text, in order.
///
/// # Errors
/// The text is not PEM or holds no certificate.
pub fn parse_certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("not a PEM certificate file ({e})"))?;
    anyhow::ensure!(!certs.is_empty(), "holds no PEM certificate");
    Ok(certs)
}

/// The private key of PEM text.
///
/// # Errors
/// The text holds no private key.
pub fn parse_key(pem: &[u8]) -> anyhow::Result<PrivateKeyDer<'static>> {
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
