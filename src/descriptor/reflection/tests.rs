use http::Uri;
use std::net::SocketAddr;
use std::sync::Arc;

use prost_reflect::Value;
use tokio::net::TcpListener;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::{Router, TcpIncoming};
use tonic::{Request, Response, Streaming};
use tonic_reflection::pb::v1 as pb;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use super::*;

/// Services every shop build has; the shop may grow more.
const SHOP_SERVICES: [&str; 3] = [
    "shop.inventory.v1.InventoryService",
    "shop.order.v1.OrderService",
    "shop.user.v1.UserService",
];

/// All services declared in the shop's descriptor set, sorted.
fn shop_services() -> Vec<String> {
    let services = shop_files()
        .into_iter()
        .flat_map(|b| File::decode(b).unwrap().services)
        .collect();
    let services = sorted(services);
    for known in SHOP_SERVICES {
        assert!(
            services.iter().any(|s| s == known),
            "{known} not in the shop"
        );
    }
    services
}

/// A server on a free port of 127.0.0.1, stopped when dropped.
struct Backend {
    uri: Uri,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(router: Router) -> Backend {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let incoming = TcpIncoming::from(listener);
    let task = tokio::spawn(async move {
        router.serve_with_incoming(incoming).await.unwrap();
    });
    Backend { uri, task }
}

async fn fetch_from(backend: &Backend) -> Result<Reflected, ReflectionError> {
    fetch(
        Endpoint::from(backend.uri.clone()).connect_timeout(Duration::from_secs(2)),
        Duration::from_secs(10),
    )
    .await
}

/// The shop's files as encoded by protox, extension options included.
fn shop_files() -> Vec<Bytes> {
    FileSet::decode(shop::FILE_DESCRIPTOR_SET).unwrap().file
}

fn sorted(mut names: Vec<String>) -> Vec<String> {
    names.sort();
    names
}

/// The `get` template of a method's `google.api.http` rule, if it has one.
fn http_get(pool: &DescriptorPool, method: &str) -> Option<String> {
    let (service, method) = method.rsplit_once('.').unwrap();
    let method = pool
        .get_service_by_name(service)
        .unwrap()
        .methods()
        .find(|m| m.name() == method)
        .unwrap();
    let http = pool.get_extension_by_name("google.api.http").unwrap();
    let options = method.options();
    if !options.has_extension(&http) {
        return None;
    }
    match options.get_extension(&http).as_ref() {
        Value::Message(rule) => rule.get_field_by_name("get")?.as_str().map(str::to_owned),
        other => panic!("google.api.http is {other:?}"),
    }
}

fn assert_dependencies_first(files: &[Bytes]) {
    let mut seen = HashSet::new();
    for bytes in files {
        let file = File::decode(bytes.clone()).unwrap();
        for dependency in &file.dependencies {
            assert!(
                seen.contains(dependency),
                "{} before its import {dependency}",
                file.name
            );
        }
        assert!(seen.insert(file.name.clone()), "{} twice", file.name);
    }
}

/// A v1 reflection server that sends the files exactly as stored and
/// behaves like grpc-go: a symbol's file comes with all its imports (also
/// those sent before), failures are `error_response`s.
#[derive(Clone)]
struct RawServer {
    files: Arc<Vec<File>>,
}

impl RawServer {
    fn router(files: Vec<Bytes>) -> Router {
        let files = files
            .into_iter()
            .map(|b| File::decode(b).unwrap())
            .collect();
        let server = Self {
            files: Arc::new(files),
        };
        Server::builder().add_service(pb::server_reflection_server::ServerReflectionServer::new(
            server,
        ))
    }

    fn find(&self, name: &str) -> Option<&File> {
        self.files.iter().find(|f| f.name == name)
    }

    fn with_imports(&self, file: &File) -> Vec<Vec<u8>> {
        let mut queue = vec![file];
        let mut out = Vec::new();
        while let Some(file) = queue.pop() {
            out.push(file.bytes.to_vec());
            queue.extend(file.dependencies.iter().filter_map(|d| self.find(d)));
        }
        out
    }

    fn answer(&self, request: Option<MessageRequest>) -> MessageResponse {
        let files = |files| {
            MessageResponse::FileDescriptorResponse(pb::FileDescriptorResponse {
                file_descriptor_proto: files,
            })
        };
        let not_found = MessageResponse::ErrorResponse(pb::ErrorResponse {
            error_code: Code::NotFound as i32,
            error_message: "not found".into(),
        });
        match request {
            Some(MessageRequest::ListServices(_)) => {
                MessageResponse::ListServicesResponse(pb::ListServiceResponse {
                    service: (self.files.iter().flat_map(|f| &f.services))
                        .map(|name| pb::ServiceResponse { name: name.clone() })
                        .collect(),
                })
            }
            Some(MessageRequest::FileContainingSymbol(symbol)) => {
                match self.files.iter().find(|f| f.services.contains(&symbol)) {
                    Some(file) => files(self.with_imports(file)),
                    None => not_found,
                }
            }
            Some(MessageRequest::FileByFilename(name)) => match self.find(&name) {
                Some(file) => files(vec![file.bytes.to_vec()]),
                None => not_found,
            },
            _ => MessageResponse::ErrorResponse(pb::ErrorResponse {
                error_code: Code::Unimplemented as i32,
                error_message: "not supported".into(),
            }),
        }
    }
}

#[tonic::async_trait]
impl pb::server_reflection_server::ServerReflection for RawServer {
    type ServerReflectionInfoStream =
        UnboundedReceiverStream<Result<pb::ServerReflectionResponse, Status>>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<pb::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        let mut requests = request.into_inner();
        let (answers, stream) = mpsc::unbounded_channel();
        let server = self.clone();
        tokio::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                let answer = pb::ServerReflectionResponse {
                    valid_host: String::new(),
                    original_request: Some(request.clone()),
                    message_response: Some(server.answer(request.message_request)),
                };
                if answers.send(Ok(answer)).is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(stream)))
    }
}

fn tonic_v1(set: prost_types::FileDescriptorSet) -> Router {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_file_descriptor_set(set)
        .build_v1()
        .unwrap();
    Server::builder().add_service(reflection)
}

fn shop_set() -> prost_types::FileDescriptorSet {
    prost_types::FileDescriptorSet::decode(shop::FILE_DESCRIPTOR_SET).unwrap()
}

#[tokio::test]
async fn tonic_v1_server_yields_services_and_closed_sorted_files() {
    let backend = serve(tonic_v1(shop_set())).await;
    let got = fetch_from(&backend).await.unwrap();
    assert_eq!(got.protocol, Protocol::V1);
    assert_eq!(sorted(got.services.clone()), shop_services());
    assert_dependencies_first(&got.files);

    let google = crate::descriptor::pool_from_files(&[]);
    for (case, mut pool) in [
        ("empty pool", DescriptorPool::new()),
        ("google files", google),
    ] {
        add_to_pool(&mut pool, &got.files).unwrap_or_else(|e| panic!("{case}: {e:?}"));
        for service in shop_services() {
            assert!(
                pool.get_service_by_name(&service).is_some(),
                "{case}: {service}"
            );
        }
    }
}

/// tonic-reflection 0.14 decodes registered sets, encoded ones too, into
/// `prost_types` and re-encodes them, which drops extension options. If
/// this starts failing, tonic backends can serve their http rules.
#[tokio::test]
async fn tonic_reflection_server_drops_http_options() {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shop::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    let backend = serve(Server::builder().add_service(reflection)).await;
    let got = fetch_from(&backend).await.unwrap();
    let mut pool = DescriptorPool::new();
    add_to_pool(&mut pool, &got.files).unwrap();
    assert_eq!(http_get(&pool, "shop.user.v1.UserService.GetUser"), None);
}

#[tokio::test]
async fn files_keep_their_bytes_and_http_options() {
    let originals = shop_files();
    let backend = serve(RawServer::router(originals.clone())).await;
    let got = fetch_from(&backend).await.unwrap();
    assert_eq!(sorted(got.services.clone()), shop_services());
    assert_dependencies_first(&got.files);
    for file in &got.files {
        assert!(
            originals.contains(file),
            "{:?} changed",
            File::decode(file.clone()).unwrap().name
        );
    }

    let google = crate::descriptor::pool_from_files(&[]);
    for (case, mut pool) in [
        ("empty pool", DescriptorPool::new()),
        ("google files", google),
    ] {
        add_to_pool(&mut pool, &got.files).unwrap_or_else(|e| panic!("{case}: {e:?}"));
        assert_eq!(
            http_get(&pool, "shop.user.v1.UserService.GetUser").as_deref(),
            Some("/v1/users/{id}"),
            "{case}"
        );
    }
}

#[tokio::test]
async fn falls_back_to_v1alpha() {
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(shop::FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .unwrap();
    let backend = serve(Server::builder().add_service(reflection)).await;
    let got = fetch_from(&backend).await.unwrap();
    assert_eq!(got.protocol, Protocol::V1Alpha);
    assert_eq!(sorted(got.services), shop_services());
    assert_dependencies_first(&got.files);
}

#[tokio::test]
async fn server_without_reflection_is_unsupported() {
    let users = shop::pb::shop::user::v1::user_service_server::UserServiceServer::new(
        shop::users::Users::new(),
    );
    let backend = serve(Server::builder().add_service(users)).await;
    let err = fetch_from(&backend).await.unwrap_err();
    assert!(
        matches!(err, ReflectionError::Unsupported { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains(&backend.uri.to_string()), "{message}");
}

#[tokio::test]
async fn missing_dependency_names_file_and_importer() {
    let without = |name: &str| {
        let mut set = shop_set();
        set.file.retain(|f| f.name() != name);
        set
    };
    let raw = shop_files()
        .into_iter()
        .filter(|b| File::decode(b.clone()).unwrap().name != "google/api/http.proto")
        .collect();
    // grpc-go style (error_response) and tonic style (NOT_FOUND status).
    for (case, router) in [
        ("error_response", RawServer::router(raw)),
        ("status", tonic_v1(without("google/api/http.proto"))),
    ] {
        let backend = serve(router).await;
        let err = fetch_from(&backend).await.unwrap_err();
        match &err {
            ReflectionError::MissingDependency {
                endpoint,
                file,
                importer,
            } => {
                assert_eq!(endpoint, &backend.uri.to_string(), "{case}");
                assert_eq!(file, "google/api/http.proto", "{case}");
                assert_eq!(importer, "google/api/annotations.proto", "{case}");
            }
            other => panic!("{case}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn closed_port_fails_to_connect_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    drop(listener);
    let uri: Uri = format!("http://{addr}").parse().unwrap();
    let endpoint = Endpoint::from(uri).connect_timeout(Duration::from_secs(1));
    // Connect, not Timeout: refused long before the fetch's own limit.
    let err = fetch(endpoint, Duration::from_secs(30)).await.unwrap_err();
    assert!(matches!(err, ReflectionError::Connect { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(&addr.to_string()), "{message}");
    assert!(message.contains("refused"), "{message}");
}

#[tokio::test]
async fn silent_server_times_out() {
    // Bound but never accepted: the kernel completes the TCP handshake,
    // nobody speaks HTTP/2.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let uri: Uri = format!("http://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let endpoint = Endpoint::from(uri).connect_timeout(Duration::from_secs(5));
    // Timeout, not Connect: the fetch's 300ms ended it, not the 5s connect timeout.
    let err = fetch(endpoint, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(err, ReflectionError::Timeout { .. }), "{err:?}");
    drop(listener);
}

#[test]
fn add_to_pool_skips_files_the_pool_has() {
    let mut pool = DescriptorPool::decode(shop::FILE_DESCRIPTOR_SET).unwrap();
    let before = pool.files().len();
    add_to_pool(&mut pool, &shop_files()).unwrap();
    assert_eq!(pool.files().len(), before);
}

#[test]
fn add_to_pool_rejects_types_defined_under_another_file_name() {
    let mut pool = crate::descriptor::pool_from_files(&[(
        "user.proto",
        "syntax = \"proto3\"; package shop.user.v1; message User { string id = 1; }",
    )]);
    let before = pool.files().len();
    let err = add_to_pool(&mut pool, &shop_files()).unwrap_err();
    assert!(matches!(err, ReflectionError::Pool(_)), "{err:?}");
    assert_eq!(pool.files().len(), before, "the pool changed");
}

#[test]
fn add_to_pool_rejects_bytes_that_are_not_a_file() {
    let err = add_to_pool(
        &mut DescriptorPool::new(),
        &[Bytes::from_static(b"\x0a\xff")],
    )
    .unwrap_err();
    assert!(matches!(err, ReflectionError::Undecodable(_)), "{err:?}");
}

fn file(name: &str, dependencies: &[&str]) -> File {
    File {
        name: name.to_owned(),
        dependencies: dependencies.iter().map(|d| (*d).to_owned()).collect(),
        services: vec![],
        bytes: Bytes::new(),
    }
}

#[test]
fn dependency_order_puts_imports_first() {
    for (files, want) in [
        (
            vec![file("a", &["b"]), file("b", &["c"]), file("c", &[])],
            Ok(vec![2, 1, 0]),
        ),
        (vec![file("a", &[]), file("b", &[])], Ok(vec![0, 1])),
        (vec![file("a", &["x"]), file("b", &["a"])], Ok(vec![0, 1])),
        (
            vec![file("a", &["b", "c"]), file("b", &["c"]), file("c", &[])],
            Ok(vec![2, 1, 0]),
        ),
        (
            vec![file("a", &["b"]), file("b", &["a"])],
            Err("a".to_owned()),
        ),
    ] {
        let names: Vec<_> = files
            .iter()
            .map(|f| (f.name.clone(), f.dependencies.clone()))
            .collect();
        assert_eq!(dependency_order(&files), want, "{names:?}");
    }
}
