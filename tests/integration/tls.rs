//! TLS on both sides: HTTPS termination (ALPN, client certificates,
//! certificate reload, bad handshakes) and TLS or mutual TLS to a backend,
//! with certificates made for each test run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use shop::pb::shop::user::v1::user_service_server::UserServiceServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::support::{TempDir, config_text, eventually, serve};

/// A certificate authority that issues leaf certificates.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Pki {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { ca }
    }

    fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    fn leaf(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.ca).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self) -> Leaf {
        self.leaf(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self) -> Leaf {
        self.leaf(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// Writes `pem` to `dir/name` the way a certificate manager does: a new
/// file renamed over the old one.
fn put(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// An HTTPS client trusting `ca`, offering `alpn`, with an optional client
/// certificate; `localhost` is `gateway`.
fn https_client(
    gateway: SocketAddr,
    ca: &str,
    alpn: &[&[u8]],
    identity: Option<&Leaf>,
) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .resolve("localhost", gateway)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

const H2: &[&[u8]] = &[b"h2", b"http/1.1"];
const H1: &[&[u8]] = &[b"http/1.1"];

/// The shop backends and an HTTPS gateway in front of them, with the
/// server certificate (and client CA, with `mutual`) in `dir`.
struct Https {
    _backends: shop::Backends,
    _stop: tokio::sync::oneshot::Sender<()>,
    addr: SocketAddr,
    dir: TempDir,
    pki: Pki,
}

impl Https {
    async fn start(tls_extra: &str) -> Self {
        let backends = shop::spawn_ephemeral().await.unwrap();
        let pki = Pki::new("gateway test CA");
        let dir = TempDir::new("tls");
        let leaf = pki.server();
        put(&dir.0, "server.pem", &leaf.cert);
        put(&dir.0, "server-key.pem", &leaf.key);
        put(&dir.0, "ca.pem", &pki.ca_pem());
        let text = config_text(
            &format!(
                "  users:\n    address: http://{}\n    services: [shop.user.v1.UserService]\n",
                backends.users
            ),
            &format!(
                "server:\n  header_read_timeout: 500ms\n  tls:\n    cert: server.pem\n    key: server-key.pem\n{tls_extra}reload:\n  debounce: 50ms\n"
            ),
        );
        let path = dir.write_config(&text);
        let config = protogate::config::load(&path).unwrap();
        let (addr, stop) = serve(config).await;
        Self {
            _backends: backends,
            _stop: stop,
            addr,
            dir,
            pki,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    fn client(&self, ca: &str, alpn: &[&[u8]], identity: Option<&Leaf>) -> reqwest::Client {
        https_client(self.addr, ca, alpn, identity)
    }

    /// GETs `path` over HTTP/2 trusting `ca`: the status, or the error
    /// when the handshake (or anything else) fails.
    async fn status(
        &self,
        ca: &str,
        identity: Option<&Leaf>,
        path: &str,
    ) -> Result<StatusCode, reqwest::Error> {
        let response = self
            .client(ca, H2, identity)
            .get(self.url(path))
            .send()
            .await?;
        Ok(response.status())
    }
}

#[tokio::test]
async fn https_speaks_http2_and_http1_by_alpn() {
    let gw = Https::start("").await;
    let ca = gw.pki.ca_pem();
    for (alpn, version) in [
        (H2, reqwest::Version::HTTP_2),
        (H1, reqwest::Version::HTTP_11),
    ] {
        let response = gw
            .client(&ca, alpn, None)
            .get(gw.url("/v1/users/1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.version(), version);
        let body: serde_json::Value =
            serde_json::from_str(&response.text().await.unwrap()).unwrap();
        assert_eq!(body["displayName"], "Ada Lovelace", "{body}");
    }

    // Plain HTTP on the HTTPS port gets no HTTP answer; the port keeps serving.
    let mut tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    let response = gw
        .client(&ca, H2, None)
        .get(gw.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn probe_checks_an_https_gateway() {
    let gw = Https::start("").await;
    let url = format!("https://127.0.0.1:{}/healthz", gw.addr.port());
    let probe = |insecure: bool| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_protogate"));
        command.args(["probe", "--url", &url]);
        if insecure {
            command.arg("--insecure");
        }
        // The gateway runs on this test's runtime: wait off it.
        tokio::task::spawn_blocking(move || command.output().unwrap())
    };
    let trusting = probe(true).await.unwrap();
    assert!(trusting.status.success(), "{trusting:?}");
    // Without --insecure the test CA is unknown: the probe fails.
    let strict = probe(false).await.unwrap();
    assert!(!strict.status.success(), "{strict:?}");
}

#[tokio::test]
async fn bad_handshakes_are_refused_and_counted() {
    let gw = Https::start("").await;
    let good = gw.client(&gw.pki.ca_pem(), H2, None);

    // A client that does not trust the gateway's issuer.
    let stranger = Pki::new("another CA");
    let err = gw
        .client(&stranger.ca_pem(), H2, None)
        .get(gw.url("/healthz"))
        .send()
        .await
        .unwrap_err();
    let chain = format!("{:?}", err);
    assert!(
        chain.contains("UnknownIssuer") || chain.contains("certificate"),
        "{chain}"
    );

    // A client that connects and never says hello: cut at the header read timeout.
    let mut idle = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut buf))
        .await
        .expect("the gateway closes a silent connection");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");

    // Garbage instead of a ClientHello.
    let mut junk = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    junk.write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3])
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), junk.read_to_end(&mut answer))
        .await
        .expect("the gateway closes a garbled handshake");

    let metrics = good
        .get(gw.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let failures: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("protogate_tls_handshake_failures_total "))
        .expect("the handshake failure counter")
        .parse()
        .unwrap();
    assert!(failures >= 3.0, "{failures}\n{metrics}");
    let response = good.get(gw.url("/v1/users/2")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn certificate_files_are_reloaded_when_they_change() {
    let gw = Https::start("").await;
    let old_ca = gw.pki.ca_pem();
    let renewed = Pki::new("renewed CA");
    let new_ca = renewed.ca_pem();

    assert_eq!(gw.status(&old_ca, None, "/healthz").await.unwrap(), 200);

    // A file that is not a certificate: logged, the old one keeps serving.
    put(&gw.dir.0, "server.pem", "not a certificate");
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(gw.status(&old_ca, None, "/healthz").await.unwrap(), 200);

    // A renewed certificate from another issuer: new connections get it.
    let leaf = renewed.server();
    put(&gw.dir.0, "server-key.pem", &leaf.key);
    put(&gw.dir.0, "server.pem", &leaf.cert);
    eventually(10, "the renewed certificate is served", || async {
        gw.status(&new_ca, None, "/healthz")
            .await
            .is_ok_and(|s| s == 200)
    })
    .await;
    assert!(
        gw.status(&old_ca, None, "/healthz").await.is_err(),
        "the old certificate is no longer served"
    );
}

#[tokio::test]
async fn client_certificates_are_required_with_a_client_ca() {
    let gw = Https::start("    client_ca: ca.pem\n").await;
    let ca = gw.pki.ca_pem();
    let leaf = gw.pki.client();
    let status = gw.status(&ca, Some(&leaf), "/v1/users/1").await;
    assert_eq!(status.unwrap(), 200);
    assert!(
        gw.status(&ca, None, "/v1/users/1").await.is_err(),
        "no client certificate, no answer"
    );
    let outsider = Pki::new("outsider CA").client();
    assert!(
        gw.status(&ca, Some(&outsider), "/v1/users/1")
            .await
            .is_err(),
        "a client certificate from another CA is refused"
    );
}

#[tokio::test]
async fn optional_client_certificates_let_anonymous_clients_in() {
    let gw = Https::start("    client_ca: ca.pem\n    client_cert_optional: true\n").await;
    let ca = gw.pki.ca_pem();
    for identity in [None, Some(gw.pki.client())] {
        let response = gw
            .client(&ca, H1, identity.as_ref())
            .get(gw.url("/v1/users/1"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

/// A `shop.user.v1.UserService` over TLS on 127.0.0.1, with client
/// certificates from `client_ca` required when given.
async fn tls_backend(server: &Leaf, client_ca: Option<&str>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(&server.cert, &server.key));
    if let Some(ca) = client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(ca));
    }
    let router = Server::builder()
        .tls_config(tls)
        .unwrap()
        .add_service(UserServiceServer::new(shop::users::Users::new()));
    tokio::spawn(router.serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)));
    addr
}

/// A gateway in front of `backend` with `tls` under the backend.
async fn gateway_to(dir: &TempDir, address: &str, tls: &str) -> crate::support::Stack {
    let text = config_text(
        &format!(
            "  users:\n    address: {address}\n    services: [shop.user.v1.UserService]\n    connect_timeout: 2s\n{tls}"
        ),
        "",
    );
    let path = dir.write_config(&text);
    let config = protogate::config::load(&path).unwrap();
    let (addr, stop) = serve(config).await;
    crate::support::Stack::for_gateway(addr, stop)
}

#[tokio::test]
async fn backends_over_tls_and_mutual_tls() {
    let pki = Pki::new("backend CA");
    let dir = TempDir::new("backend-tls");
    put(&dir.0, "ca.pem", &pki.ca_pem());
    let client = pki.client();
    put(&dir.0, "client.pem", &client.cert);
    put(&dir.0, "client-key.pem", &client.key);
    put(&dir.0, "other-ca.pem", &Pki::new("other CA").ca_pem());

    let plain_tls = tls_backend(&pki.server(), None).await;
    let mutual = tls_backend(&pki.server(), Some(&pki.ca_pem())).await;
    let mutual_tls =
        "    tls:\n      ca: ca.pem\n      cert: client.pem\n      key: client-key.pem\n";

    // TLS, the backend's IP checked against the certificate.
    let gw = gateway_to(
        &dir,
        &format!("https://{plain_tls}"),
        "    tls:\n      ca: ca.pem\n",
    )
    .await;
    let reply = gw.get("/v1/users/1").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["displayName"], "Ada Lovelace");

    // Mutual TLS, the certificate's name given explicitly.
    let gw = gateway_to(
        &dir,
        &format!("https://{mutual}"),
        &format!("{mutual_tls}      server_name: localhost\n"),
    )
    .await;
    let reply = gw.get("/v1/users/2").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);

    // Failures: 503 UNAVAILABLE, never the backend's answer.
    for (what, address, tls) in [
        (
            "untrusted backend certificate",
            plain_tls,
            "    tls:\n      ca: other-ca.pem\n".to_owned(),
        ),
        (
            "no client certificate",
            mutual,
            "    tls:\n      ca: ca.pem\n".to_owned(),
        ),
        (
            "a name the certificate does not carry",
            plain_tls,
            "    tls:\n      ca: ca.pem\n      server_name: wrong.example\n".to_owned(),
        ),
    ] {
        let gw = gateway_to(&dir, &format!("https://{address}"), &tls).await;
        let reply = gw.get("/v1/users/1").await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            reply.json
        );
        assert_eq!(reply.json["code"], 14, "{what}: {}", reply.json);
    }
}

#[tokio::test]
async fn tls_settings_are_checked_when_the_config_loads() {
    let dir = TempDir::new("tls-config");
    let pki = Pki::new("config CA");
    put(&dir.0, "ca.pem", &pki.ca_pem());
    put(&dir.0, "junk.pem", "junk");
    let leaf = pki.server();
    put(&dir.0, "server.pem", &leaf.cert);
    put(&dir.0, "server-key.pem", &leaf.key);
    put(&dir.0, "other-key.pem", &pki.server().key);
    let backend = |address: &str, tls: &str| {
        format!("  users:\n    address: {address}\n    services: [shop.user.v1.UserService]\n{tls}")
    };
    let cases = [
        (
            backend("http://127.0.0.1:1", "    tls:\n      ca: ca.pem\n"),
            "",
            "plain HTTP but `tls` is set",
        ),
        (
            backend("https://127.0.0.1:1", "    tls:\n      cert: server.pem\n"),
            "",
            "give `cert` and `key` together",
        ),
        (
            backend("https://127.0.0.1:1", "    tls:\n      ca: missing.pem\n"),
            "",
            "backends.users.tls.ca: cannot read",
        ),
        (
            backend("https://127.0.0.1:1", "    tls:\n      ca: junk.pem\n"),
            "",
            "holds no PEM certificate",
        ),
        (
            "  users:\n    endpoints: [http://127.0.0.1:1, https://127.0.0.1:2]\n    services: [shop.user.v1.UserService]\n".to_owned(),
            "",
            "mixes http:// and https://",
        ),
        (
            backend(
                "https://127.0.0.1:1",
                "    tls:\n      ca: ca.pem\n      cert: server.pem\n      key: other-key.pem\n",
            ),
            "",
            "backends.users.tls:",
        ),
        (
            backend(
                "https://127.0.0.1:1",
                "    tls:\n      server_name: \"not a name!\"\n",
            ),
            "",
            "backends.users.tls:",
        ),
        (
            backend("http://127.0.0.1:1", ""),
            "server:\n  tls:\n    cert: server.pem\n    key: server-key.pem\n    client_cert_optional: true\n",
            "needs `client_ca`",
        ),
    ];
    for (backends, extra, expected) in cases {
        let path = dir.write_config(&config_text(&backends, extra));
        let err = format!("{:#}", protogate::config::load(&path).unwrap_err());
        assert!(err.contains(expected), "want {expected:?} in {err}");
    }
    // And the good ones load.
    let path = dir.write_config(&config_text(
        &backend("https://127.0.0.1:1", "    tls:\n      ca: ca.pem\n"),
        "server:\n  tls:\n    cert: server.pem\n    key: server-key.pem\n    client_ca: ca.pem\n",
    ));
    let config = protogate::config::load(&path).unwrap();
    assert!(config.tls.is_some());
    assert!(config.backends[0].tls.as_ref().unwrap().ca.is_some());

    // The listener's files are checked at startup and by `protogate check`.
    let path = dir.write_config(&config_text(
        &backend("http://127.0.0.1:1", ""),
        "server:\n  tls:\n    cert: server.pem\n    key: junk.pem\n",
    ));
    let config = protogate::config::load(&path).unwrap();
    let err = protogate::tls::ServerTlsState::load(config.tls.as_ref().unwrap()).unwrap_err();
    assert!(format!("{err:#}").contains("junk.pem"), "{err:#}");
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_protogate"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!check.status.success());
    let stderr = String::from_utf8_lossy(&check.stderr);
    assert!(
        stderr.contains("server.tls") && stderr.contains("junk.pem"),
        "{stderr}"
    );
}

#[tokio::test]
async fn verified_client_certificates_reach_the_backend_forged_ones_do_not() {
    use sha2::Digest;
    let pki = Pki::new("client CA");
    let dir = TempDir::new("xfcc");
    let server = pki.server();
    put(&dir.0, "server.pem", &server.cert);
    put(&dir.0, "server-key.pem", &server.key);
    put(&dir.0, "ca.pem", &pki.ca_pem());
    let (probe_addr, _probe) = crate::probe::spawn().await;
    let path = dir.write_config(&format!(
        "descriptors:\n  include: [{}]\n  protos: [probe/v1/probe.proto]\nbackends:\n  probe:\n    address: http://{probe_addr}\n    services: [probe.v1.Probe]\nserver:\n  tls:\n    cert: server.pem\n    key: server-key.pem\n    client_ca: ca.pem\n    client_cert_optional: true\n",
        crate::support::root().join("tests/fixtures/protos").display()
    ));
    let (addr, _stop) = serve(protogate::config::load(&path).unwrap()).await;
    let leaf = pki.client();
    let der = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
        .next()
        .unwrap()
        .unwrap();
    let hash: String = sha2::Sha256::digest(der.as_ref())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let echo = |identity: Option<&Leaf>| {
        let client = https_client(addr, &pki.ca_pem(), H2, identity);
        async move {
            let text = client
                .post(format!("https://localhost:{}/v1/echo", addr.port()))
                .header("x-forwarded-client-cert", "Hash=forged")
                .header("grpc-metadata-x-forwarded-client-cert", "Hash=forged")
                .body(r#"{"text":"who"}"#)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            serde_json::from_str::<serde_json::Value>(&text).unwrap()["metadata"].clone()
        }
    };
    let with_cert = echo(Some(&leaf)).await;
    assert_eq!(
        with_cert["x-forwarded-client-cert"],
        format!(r#"Hash={hash};Subject="CN=client.test";DNS=client.test"#),
        "{with_cert}"
    );
    let without = echo(None).await;
    assert!(
        without.get("x-forwarded-client-cert").is_none(),
        "a client's own copy never reaches the backend: {without}"
    );
}
