//! Descriptors from a running backend by [gRPC server reflection]: [`fetch`]
//! lists the backend's services and collects the files that declare them
//! plus every file they import; [`add_to_pool`] merges those files into a
//! [`DescriptorPool`].
//!
//! Speaks `grpc.reflection.v1` and falls back to `grpc.reflection.v1alpha`
//! when the server answers UNIMPLEMENTED. Files are kept as the bytes the
//! server sent and reach the pool through prost-reflect's byte-level
//! decoding: a round trip through `prost_types` would drop extension options
//! such as `google.api.http`, and with them the routes.
//!
//! A server can only send what it has: tonic-reflection's
//! `server::Builder` (0.14) decodes every registered set into `prost_types`
//! and re-encodes it, so tonic backends answer without `google.api.http`.
//! Such backends need their rules from local protos or descriptor sets.
//!
//! Not here: deciding which services to route (`config`, `http_rule`) and
//! when to fetch again. Fetches run at startup or in a background task,
//! never per request.
//!
//! [gRPC server reflection]: https://github.com/grpc/grpc/blob/master/doc/server-reflection.md

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;
use prost_reflect::DescriptorPool;
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tracing::{debug, instrument};

/// Largest reflection answer accepted. tonic's default of 4 MiB is too small
/// for servers that send a file with all its imports, source info included,
/// in one answer.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// Package of the reflection services themselves, left out of the services.
const REFLECTION_PACKAGE: &str = "grpc.reflection.";

/// A version of the server reflection protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `grpc.reflection.v1`, tried first.
    V1,
    /// `grpc.reflection.v1alpha`, the same messages under their older name,
    /// still the only one some servers serve.
    V1Alpha,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "grpc.reflection.v1",
            Self::V1Alpha => "grpc.reflection.v1alpha",
        })
    }
}

/// What a backend disclosed by reflection.
#[derive(Debug, Clone)]
pub struct Reflected {
    /// Full names of the services the backend lists, in its order, without
    /// the `grpc.reflection.*` services.
    pub services: Vec<String>,
    /// Encoded `google.protobuf.FileDescriptorProto`s exactly as received
    /// (extension options included), one per file name, each after the files
    /// it imports: the closure of the files declaring [`Self::services`].
    pub files: Vec<Bytes>,
    /// The protocol version the backend answered.
    pub protocol: Protocol,
}

/// Why descriptors could not be fetched by reflection or added to a pool.
#[derive(Debug, thiserror::Error)]
pub enum ReflectionError {
    /// No connection to the backend (refused, unresolvable, connect timeout).
    #[error("cannot connect to {endpoint} for reflection: {cause}")]
    Connect {
        /// The backend's address.
        endpoint: String,
        /// The transport error with its causes, e.g. `transport error: tcp
        /// connect error: Connection refused (os error 111)`. Rendered into
        /// the message because tonic's own message is just "transport error".
        cause: String,
    },
    /// The whole exchange took longer than allowed.
    #[error("reflection on {endpoint} did not finish within {timeout:?}")]
    Timeout {
        /// The backend's address.
        endpoint: String,
        /// The limit that passed.
        timeout: Duration,
    },
    /// The backend answers UNIMPLEMENTED to both protocol versions.
    #[error(
        "{endpoint} does not serve gRPC server reflection (neither grpc.reflection.v1 nor v1alpha)"
    )]
    Unsupported {
        /// The backend's address.
        endpoint: String,
    },
    /// The backend failed a request, with a gRPC status or an `error_response`.
    #[error("reflection on {endpoint} failed at {request}: {code:?}: {message}")]
    Status {
        /// The backend's address.
        endpoint: String,
        /// The request that failed, e.g. `file_containing_symbol a.B`.
        request: String,
        /// The gRPC code.
        code: Code,
        /// The backend's message.
        message: String,
    },
    /// An answer that does not fit its request: the stream ended early, an
    /// answer of the wrong kind, a missing or undecodable file, an import cycle.
    #[error("{endpoint} sent a malformed reflection answer: {reason}")]
    Malformed {
        /// The backend's address.
        endpoint: String,
        /// What was wrong.
        reason: String,
    },
    /// A file imports one the backend does not have.
    #[error("{endpoint} does not have {file}, imported by {importer}")]
    MissingDependency {
        /// The backend's address.
        endpoint: String,
        /// The missing file.
        file: String,
        /// A file that imports it.
        importer: String,
    },
    /// Bytes given to [`add_to_pool`] are not an encoded `FileDescriptorProto`.
    #[error("a reflected file is not an encoded FileDescriptorProto")]
    Undecodable(#[source] prost::DecodeError),
    /// The files do not fit the pool: a type defined twice (the same proto
    /// under another file name), an unresolved import or type.
    #[error("cannot add the reflected files to the descriptor pool")]
    Pool(#[source] prost_reflect::DescriptorError),
}

/// Fetches the services of the backend at `endpoint` (plain HTTP/2) and the
/// files that describe them, by server reflection.
///
/// One `ServerReflectionInfo` stream carries the whole exchange: the service
/// list, `file_containing_symbol` for each service, then `file_by_filename`
/// for every import not yet received, until none is missing. Requests go
/// out in waves and the answers are read in order. If the server answers
/// UNIMPLEMENTED to `grpc.reflection.v1`, the exchange runs again on
/// `grpc.reflection.v1alpha` over the same connection.
///
/// `endpoint` carries the connect timeout and TLS settings; `timeout`
/// bounds the whole call, connecting included.
///
/// # Errors
/// Any [`ReflectionError`] but `Undecodable` and `Pool`; each names `endpoint`.
#[instrument(level = "debug", skip_all, fields(endpoint = %endpoint.uri()))]
pub async fn fetch(endpoint: Endpoint, timeout: Duration) -> Result<Reflected, ReflectionError> {
    let name = endpoint.uri().to_string();
    match tokio::time::timeout(timeout, exchange(endpoint, &name)).await {
        Ok(result) => result,
        Err(_) => Err(ReflectionError::Timeout {
            endpoint: name,
            timeout,
        }),
    }
}

/// Adds the reflected `files` the pool does not have yet, by file name, to
/// `pool`, keeping their extension options.
///
/// A file whose name is already in the pool is skipped, the pool's copy wins
/// (prost-reflect would skip it too, silently). The other files are added as
/// one batch: on error the pool is left as it was.
///
/// # Errors
/// `Undecodable` for bytes that are not a `FileDescriptorProto`; `Pool` when
/// the files do not resolve or clash with the pool, e.g. the same proto
/// compiled locally under another file name defines the same types.
pub fn add_to_pool(pool: &mut DescriptorPool, files: &[Bytes]) -> Result<(), ReflectionError> {
    let mut set = FileSet::default();
    let mut names = HashSet::new();
    for file in files {
        let name = FileHeader::decode(file.clone())
            .map_err(ReflectionError::Undecodable)?
            .name
            .unwrap_or_default();
        if pool.get_file_by_name(&name).is_some() {
            debug!(file = %name, "already in the descriptor pool, keeping the pool's copy");
        } else if names.insert(name) {
            set.file.push(file.clone());
        }
    }
    // A set of encoded files, decoded by prost-reflect's own types, which
    // keep the options' bytes and resolve extensions against the pool.
    pool.decode_file_descriptor_set(set.encode_to_vec().as_slice())
        .map_err(ReflectionError::Pool)
}

/// Connects, picks the protocol version and collects the files.
async fn exchange(endpoint: Endpoint, name: &str) -> Result<Reflected, ReflectionError> {
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| ReflectionError::Connect {
            endpoint: name.to_owned(),
            cause: causes(&e),
        })?;
    for protocol in [Protocol::V1, Protocol::V1Alpha] {
        let Some((mut session, listed)) = list_services(channel.clone(), protocol, name).await?
        else {
            debug!(%protocol, "not served, answered UNIMPLEMENTED");
            continue;
        };
        let mut seen = HashSet::new();
        let services: Vec<String> = listed
            .into_iter()
            .filter(|s| !s.starts_with(REFLECTION_PACKAGE) && seen.insert(s.clone()))
            .collect();
        let received = collect(&mut session, name, &services).await?;
        let files = received.into_sorted(name)?;
        debug!(%protocol, services = services.len(), files = files.len(), "reflection done");
        return Ok(Reflected {
            services,
            files,
            protocol,
        });
    }
    Err(ReflectionError::Unsupported {
        endpoint: name.to_owned(),
    })
}

/// Opens a stream of `protocol` and lists the services; `None` when the
/// server answers UNIMPLEMENTED, as a status or as an `error_response`.
async fn list_services(
    channel: Channel,
    protocol: Protocol,
    endpoint: &str,
) -> Result<Option<(Session, Vec<String>)>, ReflectionError> {
    let ask = Ask::ListServices;
    let opened = match protocol {
        Protocol::V1 => v1::open(channel, ask.clone()).await,
        Protocol::V1Alpha => v1alpha::open(channel, ask.clone()).await,
    };
    let mut session = match opened {
        Ok(session) => session,
        Err(status) if status.code() == Code::Unimplemented => return Ok(None),
        Err(status) => return Err(failed(endpoint, &ask, Err(status))),
    };
    match session.next().await {
        Ok(Answer::Services(names)) => Ok(Some((session, names))),
        Err(status) if status.code() == Code::Unimplemented => Ok(None),
        Ok(Answer::Error {
            code: Code::Unimplemented,
            ..
        }) => Ok(None),
        other => Err(failed(endpoint, &ask, other)),
    }
}

/// Asks for the files declaring `services`, then, wave by wave, for every
/// import not received yet, until none is missing.
async fn collect(
    session: &mut Session,
    endpoint: &str,
    services: &[String],
) -> Result<Received, ReflectionError> {
    let mut received = Received::default();
    let mut asks: Vec<Ask> = services
        .iter()
        .cloned()
        .map(Ask::FileContainingSymbol)
        .collect();
    // Every wave asks only for files not received yet and fails unless each
    // answer holds its file, so the received set grows until it is closed.
    while !asks.is_empty() {
        for ask in &asks {
            session.send(ask.clone());
        }
        for ask in &asks {
            let files = match (ask, session.next().await) {
                (_, Ok(Answer::Files(files))) => files,
                (Ask::FileByFilename(file), Err(status)) if status.code() == Code::NotFound => {
                    return Err(received.missing(endpoint, file));
                }
                (
                    Ask::FileByFilename(file),
                    Ok(Answer::Error {
                        code: Code::NotFound,
                        ..
                    }),
                ) => return Err(received.missing(endpoint, file)),
                (_, other) => return Err(failed(endpoint, ask, other)),
            };
            received.accept(endpoint, ask, files)?;
        }
        asks = received
            .unresolved()
            .into_iter()
            .map(Ask::FileByFilename)
            .collect();
    }
    for service in services {
        if !received.files.iter().any(|f| f.services.contains(service)) {
            return Err(malformed(
                endpoint,
                format!("no file received declares the listed service {service}"),
            ));
        }
    }
    Ok(received)
}

/// The error for an answer that is neither the expected one nor handled.
fn failed(endpoint: &str, ask: &Ask, answer: Result<Answer, Status>) -> ReflectionError {
    let status = |code, message| ReflectionError::Status {
        endpoint: endpoint.to_owned(),
        request: ask.to_string(),
        code,
        message,
    };
    match answer {
        Err(s) => status(s.code(), s.message().to_owned()),
        Ok(Answer::Error { code, message }) => status(code, message),
        Ok(Answer::Ended) => malformed(
            endpoint,
            format!("the stream ended before the answer to {ask}"),
        ),
        Ok(Answer::Services(_) | Answer::Files(_) | Answer::Other) => {
            malformed(endpoint, format!("an answer of the wrong kind to {ask}"))
        }
    }
}

/// An error and its sources, joined by ": ". A source that repeats the
/// message before it is left out (hyper's connect errors do).
pub(crate) fn causes(error: &dyn std::error::Error) -> String {
    let mut last = error.to_string();
    let mut text = last.clone();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if message != last {
            text.push_str(": ");
            text.push_str(&message);
            last = message;
        }
        source = cause.source();
    }
    text
}

fn malformed(endpoint: &str, reason: String) -> ReflectionError {
    ReflectionError::Malformed {
        endpoint: endpoint.to_owned(),
        reason,
    }
}

/// One reflection request, whichever the protocol version.
#[derive(Debug, Clone)]
enum Ask {
    ListServices,
    FileContainingSymbol(String),
    FileByFilename(String),
}

impl fmt::Display for Ask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ListServices => f.write_str("list_services"),
            Self::FileContainingSymbol(symbol) => write!(f, "file_containing_symbol {symbol}"),
            Self::FileByFilename(file) => write!(f, "file_by_filename {file}"),
        }
    }
}

/// One reflection answer, whichever the protocol version.
#[derive(Debug)]
enum Answer {
    Services(Vec<String>),
    Files(Vec<Bytes>),
    Error {
        code: Code,
        message: String,
    },
    /// A kind this client never asks for, or none at all.
    Other,
    /// The stream ended without an answer.
    Ended,
}

/// One `ServerReflectionInfo` stream. Requests go through an unbounded
/// queue: they are small, and a bounded one could block on sending while
/// the server blocks on an answer not read yet.
struct Session {
    asks: mpsc::UnboundedSender<Ask>,
    answers: Pin<Box<dyn Stream<Item = Result<Answer, Status>> + Send>>,
}

impl Session {
    /// Queues a request; its answer comes after those of earlier requests.
    fn send(&self, ask: Ask) {
        // Fails only once the call is over; reading the answer tells why.
        let _ = self.asks.send(ask);
    }

    /// The next answer; [`Answer::Ended`] once the stream is over.
    async fn next(&mut self) -> Result<Answer, Status> {
        self.answers.next().await.unwrap_or(Ok(Answer::Ended))
    }
}

/// The two protocol versions are the same messages under two package names;
/// this writes the glue to [`Ask`] and [`Answer`] once for both.
macro_rules! protocol_version {
    ($version:ident) => {
        #[doc = concat!("Glue to `grpc.reflection.", stringify!($version), "`.")]
        mod $version {
            use bytes::Bytes;
            use tokio_stream::StreamExt;
            use tokio_stream::wrappers::UnboundedReceiverStream;
            use tonic::transport::Channel;
            use tonic::{Code, Status};
            use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
            use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
            use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, ServerReflectionResponse,
            };

            use super::{Answer, Ask, MAX_ANSWER_BYTES, Session};

            /// Opens a stream with `first` already queued: a server may hold
            /// back its response headers until the first request arrives.
            pub(super) async fn open(channel: Channel, first: Ask) -> Result<Session, Status> {
                let (asks, queue) = tokio::sync::mpsc::unbounded_channel();
                let requests = tokio_stream::once(first)
                    .chain(UnboundedReceiverStream::new(queue))
                    .map(request);
                let answers = ServerReflectionClient::new(channel)
                    .max_decoding_message_size(MAX_ANSWER_BYTES)
                    .server_reflection_info(requests)
                    .await?
                    .into_inner()
                    .map(|answer| answer.map(self::answer));
                Ok(Session {
                    asks,
                    answers: Box::pin(answers),
                })
            }

            fn request(ask: Ask) -> ServerReflectionRequest {
                let message = match ask {
                    // Servers ignore the content; "*" is what grpcurl's client sends.
                    Ask::ListServices => MessageRequest::ListServices("*".to_owned()),
                    Ask::FileContainingSymbol(symbol) => {
                        MessageRequest::FileContainingSymbol(symbol)
                    }
                    Ask::FileByFilename(file) => MessageRequest::FileByFilename(file),
                };
                ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(message),
                }
            }

            fn answer(response: ServerReflectionResponse) -> Answer {
                match response.message_response {
                    Some(MessageResponse::ListServicesResponse(list)) => {
                        Answer::Services(list.service.into_iter().map(|s| s.name).collect())
                    }
                    Some(MessageResponse::FileDescriptorResponse(files)) => Answer::Files(
                        files
                            .file_descriptor_proto
                            .into_iter()
                            .map(Bytes::from)
                            .collect(),
                    ),
                    Some(MessageResponse::ErrorResponse(error)) => Answer::Error {
                        code: Code::from(error.error_code),
                        message: error.error_message,
                    },
                    Some(MessageResponse::AllExtensionNumbersResponse(_)) | None => Answer::Other,
                }
            }
        }
    };
}

protocol_version!(v1);
protocol_version!(v1alpha);

/// The few fields of a `FileDescriptorProto` the closure reads; decoding
/// into this view leaves the bytes alone.
#[derive(Clone, PartialEq, Message)]
struct FileHeader {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
    #[prost(string, optional, tag = "2")]
    package: Option<String>,
    #[prost(string, repeated, tag = "3")]
    dependency: Vec<String>,
    #[prost(message, repeated, tag = "6")]
    service: Vec<ServiceHeader>,
}

/// The name of a `ServiceDescriptorProto`.
#[derive(Clone, PartialEq, Message)]
struct ServiceHeader {
    #[prost(string, optional, tag = "1")]
    name: Option<String>,
}

/// A `FileDescriptorSet` of files kept encoded.
#[derive(Clone, PartialEq, Message)]
struct FileSet {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    file: Vec<Bytes>,
}

/// A received file: its bytes as sent and what the closure needs.
#[derive(Debug)]
struct File {
    name: String,
    dependencies: Vec<String>,
    /// Full names of the services it declares.
    services: Vec<String>,
    bytes: Bytes,
}

impl File {
    fn decode(bytes: Bytes) -> Result<Self, String> {
        let header = FileHeader::decode(bytes.clone()).map_err(|e| e.to_string())?;
        let name = header
            .name
            .filter(|n| !n.is_empty())
            .ok_or("a file without a name")?;
        let package = header.package.unwrap_or_default();
        let services = header
            .service
            .into_iter()
            .map(|s| {
                let service = s.name.unwrap_or_default();
                if package.is_empty() {
                    service
                } else {
                    format!("{package}.{service}")
                }
            })
            .collect();
        Ok(Self {
            name,
            dependencies: header.dependency,
            services,
            bytes,
        })
    }
}

/// The files received on one stream, each name once, in arrival order.
#[derive(Debug, Default)]
struct Received {
    files: Vec<File>,
    by_name: HashMap<String, usize>,
}

impl Received {
    /// Keeps the new files of an answer to `ask`; checks the answer holds
    /// what was asked for.
    fn accept(
        &mut self,
        endpoint: &str,
        ask: &Ask,
        files: Vec<Bytes>,
    ) -> Result<(), ReflectionError> {
        if files.is_empty() {
            return Err(malformed(
                endpoint,
                format!("no file in the answer to {ask}"),
            ));
        }
        let mut names = Vec::with_capacity(files.len());
        for bytes in files {
            let file = File::decode(bytes).map_err(|e| {
                malformed(
                    endpoint,
                    format!("undecodable file in the answer to {ask}: {e}"),
                )
            })?;
            names.push(file.name.clone());
            match self.by_name.get(&file.name) {
                // Servers resend files already sent (grpc-go sends the asked
                // file even when it went out before); the first copy stays.
                Some(&i) if self.files[i].bytes != file.bytes => {
                    debug!(file = %file.name, "received twice with different contents, keeping the first");
                }
                Some(_) => {}
                None => {
                    self.by_name.insert(file.name.clone(), self.files.len());
                    self.files.push(file);
                }
            }
        }
        if let Ask::FileByFilename(asked) = ask
            && !names.contains(asked)
        {
            return Err(malformed(
                endpoint,
                format!("the answer to {ask} does not hold that file"),
            ));
        }
        Ok(())
    }

    /// Imports not received yet, each once, in the order first seen.
    fn unresolved(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.files
            .iter()
            .flat_map(|f| &f.dependencies)
            .filter(|d| !self.by_name.contains_key(*d) && seen.insert(*d))
            .cloned()
            .collect()
    }

    /// The error for an import the server does not have.
    fn missing(&self, endpoint: &str, file: &str) -> ReflectionError {
        let importer = self
            .files
            .iter()
            .find(|f| f.dependencies.iter().any(|d| d == file))
            .map_or_else(String::new, |f| f.name.clone());
        ReflectionError::MissingDependency {
            endpoint: endpoint.to_owned(),
            file: file.to_owned(),
            importer,
        }
    }

    /// The files' bytes, each after the files it imports.
    fn into_sorted(self, endpoint: &str) -> Result<Vec<Bytes>, ReflectionError> {
        let order = dependency_order(&self.files).map_err(|file| {
            malformed(endpoint, format!("{file} imports itself through a cycle"))
        })?;
        let mut files: Vec<Option<File>> = self.files.into_iter().map(Some).collect();
        Ok(order
            .into_iter()
            .filter_map(|i| files[i].take())
            .map(|f| f.bytes)
            .collect())
    }
}

/// Indices of `files` such that each comes after the files it imports;
/// arrival order decides among independent files. Imports not in `files`
/// are ignored.
///
/// Errors with the name of a file on an import cycle.
fn dependency_order(files: &[File]) -> Result<Vec<usize>, String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Visiting,
        Done,
    }
    fn visit(
        i: usize,
        files: &[File],
        by_name: &HashMap<&str, usize>,
        marks: &mut [Mark],
        order: &mut Vec<usize>,
    ) -> Result<(), String> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Visiting => return Err(files[i].name.clone()),
            Mark::New => marks[i] = Mark::Visiting,
        }
        for dependency in &files[i].dependencies {
            if let Some(&d) = by_name.get(dependency.as_str()) {
                visit(d, files, by_name, marks, order)?;
            }
        }
        marks[i] = Mark::Done;
        order.push(i);
        Ok(())
    }

    let by_name: HashMap<&str, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.name.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; files.len()];
    let mut order = Vec::with_capacity(files.len());
    for i in 0..files.len() {
        visit(i, files, &by_name, &mut marks, &mut order)?;
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
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
            Server::builder().add_service(
                pb::server_reflection_server::ServerReflectionServer::new(server),
            )
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
}
