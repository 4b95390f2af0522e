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
            cause: crate::cause::chain(&e),
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
mod tests;
