//! Starts the example backends on `127.0.0.1:0` for one test, and the
//! gateway in front of them on a socket ([`start`]) or in process
//! ([`start_in_process`]); [`Stack`] calls either the same way.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use protogate::Gateway;
use protogate::config::{self, Config};
use protogate::server::Live;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Where a backend of `gateway.yaml` that the tests do not start is sent: a
/// loopback port nothing listens on, so its routes exist and its calls get
/// 503.
pub const UNREACHABLE: &str = "127.0.0.1:9";

/// The address of the example backend called `name` in `gateway.yaml`.
fn example_backend(backends: &shop::Backends, name: &str) -> Option<SocketAddr> {
    match name {
        "users" => Some(backends.users),
        "orders" => Some(backends.orders),
        "inventory" => Some(backends.inventory),
        "users-v2" => Some(backends.users_v2),
        _ => None,
    }
}

/// The repository's `gateway.yaml`, with backend addresses pointing at `backends`.
pub fn default_config(backends: &shop::Backends) -> Config {
    example_config(&root().join("gateway.yaml"), backends)
}

/// The config at `path`, with the example backends pointing at `backends`.
/// Any other backend (one a user added beside them) points at
/// [`UNREACHABLE`], not required, or is left out when it uses reflection:
/// its descriptors would come from a server the tests do not start.
pub fn example_config(path: &Path, backends: &shop::Backends) -> Config {
    let mut config = config::load(path).expect("the example config loads");
    config.admin.listen = None;
    config.backends.retain_mut(|backend| {
        let addr = match example_backend(backends, &backend.name) {
            Some(addr) => addr.to_string(),
            None if backend.reflection => return false,
            None => {
                backend.required = false;
                backend.tls = None;
                UNREACHABLE.to_owned()
            }
        };
        backend.endpoints = vec![format!("http://{addr}").parse().unwrap()];
        true
    });
    config
}

/// An HTTP client for the tests (plain HTTP; TLS needs a process-wide provider).
pub fn client() -> reqwest::Client {
    protogate::auth::install_tls_provider();
    reqwest::Client::new()
}

/// The example API key (see gateway.yaml).
pub const API_KEY: &str = "dev-inventory-key";

/// A token for the example config's `shop-dev` provider with `scope`.
pub fn dev_token(scope: &str) -> String {
    use protogate::auth::token::{SigningKey, TokenSpec, mint};
    let pem = std::fs::read_to_string(root().join("examples/keys/dev-signing.pem")).unwrap();
    let spec = TokenSpec {
        algorithm: jsonwebtoken::Algorithm::ES256,
        issuer: "https://auth.shop.example".into(),
        audience: "shop-api".into(),
        subject: "1".into(),
        scope: Some(scope.into()),
        ttl: std::time::Duration::from_secs(600),
        key_id: None,
        claims: Default::default(),
    };
    mint(&spec, &SigningKey::Pem(pem)).unwrap()
}

/// Backends plus a gateway, stopped when dropped.
pub struct Stack {
    /// Kept so the backends live as long as the gateway in front of them.
    _backends: Option<shop::Backends>,
    transport: Transport,
    /// Headers sent with every call that does not set them itself.
    pub credentials: Vec<(String, String)>,
}

/// How a [`Stack`] reaches its gateway.
enum Transport {
    /// The real server on a loopback port, called over HTTP.
    Socket {
        addr: SocketAddr,
        client: reqwest::Client,
        stop: Option<oneshot::Sender<()>>,
    },
    /// The router alone, each request handed to it with `oneshot`: no
    /// socket, so no client address (`Peer`) and no shutdown token.
    InProcess(axum::Router),
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Transport::Socket { stop, .. } = &mut self.transport
            && let Some(stop) = stop.take()
        {
            let _ = stop.send(());
        }
    }
}

/// Starts everything with the default config, the gateway on a socket.
pub async fn start() -> Stack {
    start_with(|_| {}).await
}

/// Starts everything after `edit` adjusts the config, the gateway on a socket.
pub async fn start_with(edit: impl FnOnce(&mut Config)) -> Stack {
    let backends = shop::spawn_ephemeral().await.expect("backends start");
    let mut config = default_config(&backends);
    edit(&mut config);
    let (addr, stop) = serve(config).await;
    let mut stack = Stack::for_gateway(addr, stop);
    stack._backends = Some(backends);
    stack.with_credentials()
}

/// [`start_with`], also returning the live handle (for an admin API).
pub async fn start_live_with(edit: impl FnOnce(&mut Config)) -> (Stack, Arc<Live>) {
    let backends = shop::spawn_ephemeral().await.expect("backends start");
    let mut config = default_config(&backends);
    edit(&mut config);
    let (addr, stop, live) = serve_live(config).await;
    let mut stack = Stack::for_gateway(addr, stop);
    stack._backends = Some(backends);
    (stack.with_credentials(), live)
}

/// [`start`], the gateway in process: for tests where no socket behaviour
/// is under test.
pub async fn start_in_process() -> Stack {
    start_in_process_with(|_| {}).await
}

/// [`start_with`], the gateway in process.
pub async fn start_in_process_with(edit: impl FnOnce(&mut Config)) -> Stack {
    let backends = shop::spawn_ephemeral().await.expect("backends start");
    let mut config = default_config(&backends);
    edit(&mut config);
    let mut stack = Stack::in_process(config).await;
    stack._backends = Some(backends);
    stack.with_credentials()
}

/// Serves a gateway for `config` on an ephemeral port.
pub async fn serve(config: Config) -> (SocketAddr, oneshot::Sender<()>) {
    let (addr, stop, _) = serve_live(config).await;
    (addr, stop)
}

/// [`serve`], also returning the live handle for reloads.
pub async fn serve_live(config: Config) -> (SocketAddr, oneshot::Sender<()>, Arc<Live>) {
    let gateway = Gateway::load(config).await.expect("gateway loads");
    let live = Live::new(gateway);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(protogate::server::serve(listener, live.clone(), async {
        let _ = stopped.await;
    }));
    (addr, stop, live)
}

/// A response with its JSON body parsed.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Stack {
    /// Wraps a gateway started by [`serve`] in front of other backends.
    pub fn for_gateway(addr: SocketAddr, stop: oneshot::Sender<()>) -> Self {
        Stack {
            _backends: None,
            transport: Transport::Socket {
                addr,
                client: client(),
                stop: Some(stop),
            },
            credentials: Vec::new(),
        }
    }

    /// A gateway for `config`, in process, in front of backends started elsewhere.
    pub async fn in_process(config: Config) -> Self {
        let gateway = Gateway::load(config).await.expect("gateway loads");
        Stack {
            _backends: None,
            transport: Transport::InProcess(protogate::app(gateway)),
            credentials: Vec::new(),
        }
    }

    /// A gateway for `config` in process behind [`Live`]'s service, as the
    /// real server has it (so reloads of the returned handle take effect),
    /// in front of backends started elsewhere.
    pub async fn in_process_live(config: Config) -> (Self, Arc<Live>) {
        let gateway = Gateway::load(config).await.expect("gateway loads");
        let live = Live::new(gateway);
        let router = axum::Router::new().fallback_service(live.clone().service());
        let stack = Stack {
            _backends: None,
            transport: Transport::InProcess(router),
            credentials: Vec::new(),
        };
        (stack, live)
    }

    /// Sends the example config's credentials (a token with every scope, the API key).
    pub fn with_credentials(mut self) -> Self {
        self.credentials = vec![
            (
                "authorization".into(),
                format!("Bearer {}", dev_token("orders")),
            ),
            ("x-api-key".into(), API_KEY.into()),
        ];
        self
    }

    /// Sends no credentials.
    pub fn anonymous(mut self) -> Self {
        self.credentials.clear();
        self
    }

    /// The gateway's address; a stack in process has none.
    pub fn addr(&self) -> SocketAddr {
        self.socket().0
    }

    /// The HTTP client the calls use; a stack in process has none.
    pub fn client(&self) -> &reqwest::Client {
        self.socket().1
    }

    fn socket(&self) -> (SocketAddr, &reqwest::Client) {
        match &self.transport {
            Transport::Socket { addr, client, .. } => (*addr, client),
            Transport::InProcess(_) => {
                panic!("this test needs a socket: start its gateway with start(), not in process")
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        self.call_with(method, path, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let mut all: Vec<(&str, &str)> = Vec::new();
        if body.is_some() {
            all.push(("content-type", "application/json"));
        }
        all.extend_from_slice(headers);
        for (k, v) in &self.credentials {
            if !headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)) {
                all.push((k, v));
            }
        }
        let (status, headers, bytes) = self.send(method, path, &all, body).await;
        // 204 No Content, 304 Not Modified: no body at all.
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{status}: body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Reply {
            status,
            headers,
            json,
        }
    }

    /// `GET path` returning the status, headers and body text (for non-JSON
    /// bodies); sends no credentials.
    pub async fn get_text(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, String) {
        let (status, headers, bytes) = self.send(Method::GET, path, &[], None).await;
        (status, headers, String::from_utf8(bytes.to_vec()).unwrap())
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None).await
    }

    /// Sends `GET path` exactly as written (no client-side normalization) and
    /// returns the status and body, as [`raw_get`] does on a socket.
    pub async fn raw_get(&self, path: &str) -> (u16, String) {
        match &self.transport {
            Transport::Socket { addr, .. } => raw_get(*addr, path).await,
            Transport::InProcess(_) => {
                let (status, _, bytes) = self.send(Method::GET, path, &[], None).await;
                (status.as_u16(), String::from_utf8(bytes.to_vec()).unwrap())
            }
        }
    }

    /// Sends one request with exactly `headers` (and, with a body, its
    /// `Content-Length`, as an HTTP client sets it) and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> (StatusCode, reqwest::header::HeaderMap, bytes::Bytes) {
        match &self.transport {
            Transport::Socket { addr, client, .. } => {
                let mut req = client.request(method, format!("http://{addr}{path}"));
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                if let Some(body) = body {
                    req = req.body(body.to_owned());
                }
                let resp = req.send().await.expect("request sent");
                let (status, headers) = (resp.status(), resp.headers().clone());
                (status, headers, resp.bytes().await.unwrap())
            }
            Transport::InProcess(router) => {
                use tower::ServiceExt;
                let mut req = http::Request::builder().method(method).uri(path);
                // What reqwest sends unless told otherwise.
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("accept"))
                {
                    req = req.header("accept", "*/*");
                }
                for (k, v) in headers {
                    req = req.header(*k, *v);
                }
                let body = match body {
                    Some(body) => {
                        req = req.header("content-length", body.len());
                        axum::body::Body::from(body.to_owned())
                    }
                    None => axum::body::Body::empty(),
                };
                let resp = router
                    .clone()
                    .oneshot(req.body(body).expect("a valid request"))
                    .await
                    .expect("the router is infallible");
                let (parts, body) = resp.into_parts();
                let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                (parts.status, parts.headers, bytes)
            }
        }
    }
}

/// Sends `GET path` exactly as written (no client-side normalization) and
/// returns the status and body. Uses `Connection: close` to read to the end.
pub async fn raw_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A fresh directory under the system temp dir, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "protogate-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// Writes `gateway.yaml` (atomically, as editors do) and returns its path.
    pub fn write_config(&self, yaml: &str) -> PathBuf {
        let path = self.0.join("gateway.yaml");
        let tmp = self.0.join(".gateway.yaml.tmp");
        std::fs::write(&tmp, yaml).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A config file's text: the repository's protos, `backends` as written,
/// then `extra` top-level sections. Auth stays off (every route public).
pub fn config_text(backends: &str, extra: &str) -> String {
    format!(
        "descriptors:\n  include: [{}]\n  protos: [shop/user/v1/user.proto]\nbackends:\n{backends}{extra}",
        root().join("protos").display()
    )
}

/// Polls `check` every 50 ms until it holds or `seconds` pass.
pub async fn eventually<F, Fut>(seconds: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while tokio::time::Instant::now() < until {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("{what}: not within {seconds}s");
}

/// Polls `read` every 100 ms until it returns the same value `checks` times
/// in a row, and returns that value; panics if it passes `limit` first or has
/// not settled within `seconds`. For "the producer stopped": progress, not a
/// guessed sleep, decides when to look.
pub async fn settled(
    seconds: u64,
    what: &str,
    checks: usize,
    limit: usize,
    read: impl Fn() -> usize,
) -> usize {
    let until = tokio::time::Instant::now() + std::time::Duration::from_secs(seconds);
    let (mut last, mut same) = (read(), 0);
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let now = read();
        assert!(now < limit, "{what}: {now}, past {limit}");
        same = if now == last { same + 1 } else { 0 };
        last = now;
        if same >= checks {
            return now;
        }
    }
    panic!("{what}: still changing after {seconds}s, at {last}");
}

/// The repository's `gateway.yaml` as a file in a temp dir, with backend
/// addresses pointing at `backends` as [`example_config`] does and relative
/// paths made absolute: for commands that read a config file (reflection
/// needs the backends up).
pub fn example_config_file(backends: &shop::Backends) -> (TempDir, PathBuf) {
    use serde_norway::Value;
    let root = root();
    let text = std::fs::read_to_string(root.join("gateway.yaml")).unwrap();
    let mut yaml: Value = serde_norway::from_str(&text).unwrap();
    if let Some(list) = yaml.get_mut("backends").and_then(Value::as_mapping_mut) {
        list.retain(|name, backend| {
            let addr = match name.as_str().and_then(|n| example_backend(backends, n)) {
                Some(addr) => addr.to_string(),
                None if backend.get("reflection").and_then(Value::as_bool) == Some(true) => {
                    return false;
                }
                None => UNREACHABLE.to_owned(),
            };
            let backend = backend.as_mapping_mut().expect("a backend is a mapping");
            for key in ["endpoints", "tls", "required"] {
                backend.remove(key);
            }
            backend.insert("address".into(), format!("http://{addr}").into());
            true
        });
    }
    // Gateways started from the copy listen on ephemeral ports only.
    if let Some(top) = yaml.as_mapping_mut() {
        top.remove("admin");
    }
    absolute_paths(&mut yaml, &root);
    let dir = TempDir::new("example");
    let path = dir.write_config(&serde_norway::to_string(&yaml).unwrap());
    (dir, path)
}

/// Makes every string in `yaml` that names a file or directory relative to
/// `root` (include directories, key files, descriptor sets) absolute, so a
/// copy of the config works from another directory. Proto names, relative to
/// an include directory, name nothing under `root` and stay.
pub fn absolute_paths(yaml: &mut serde_norway::Value, root: &Path) {
    use serde_norway::Value;
    match yaml {
        Value::String(s) if !s.is_empty() && !s.starts_with('/') && root.join(&*s).exists() => {
            *s = root.join(&*s).display().to_string();
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| absolute_paths(v, root)),
        Value::Mapping(map) => map.iter_mut().for_each(|(_, v)| absolute_paths(v, root)),
        _ => {}
    }
}

/// A `protogate serve` process, killed when dropped.
pub struct GatewayProcess {
    pub process: std::process::Child,
    pub url: String,
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// Starts the built binary on `config` on a free loopback port and waits
/// until it answers `/healthz`.
pub async fn spawn_gateway(config: &std::path::Path) -> GatewayProcess {
    spawn_gateway_with_env(config, &[]).await
}

/// [`spawn_gateway`] with extra environment variables.
pub async fn spawn_gateway_with_env(
    config: &std::path::Path,
    env: &[(&str, &str)],
) -> GatewayProcess {
    spawn_gateway_logging(config, env, std::process::Stdio::null()).await
}

/// [`spawn_gateway_with_env`], with the gateway's log going to `stderr`.
pub async fn spawn_gateway_logging(
    config: &std::path::Path,
    env: &[(&str, &str)],
    stderr: std::process::Stdio,
) -> GatewayProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let process = std::process::Command::new(env!("CARGO_BIN_EXE_protogate"))
        .args(["serve", "--config"])
        .arg(config)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .envs(env.iter().copied())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let gateway = GatewayProcess {
        process,
        url: format!("http://127.0.0.1:{port}"),
    };
    let http = client();
    eventually(20, "the gateway binary serves", || async {
        http.get(format!("{}/healthz", gateway.url))
            .send()
            .await
            .is_ok()
    })
    .await;
    gateway
}
