//! gRPC server reflection served by the gateway itself
//! (`grpc.reflection.v1` and `v1alpha`, on the main listener), merged from
//! every descriptor source: the services it routes, whichever backend and
//! whichever source (proto files, descriptor sets, a backend's reflection)
//! they came from. grpcurl, Postman, Evans and `buf curl` can list and
//! describe the edge's API. Services that are not routed (backends' health
//! and reflection services, protos loaded but not served) do not appear.
//!
//! Files are sent as the pool holds them, extension options
//! (`google.api.http`, `field_behavior`) included. A file comes with those
//! of its transitive imports not yet sent on the stream, and a failed
//! look-up is an `ErrorResponse` on the stream, which stays open, as
//! grpc-go's reflection server does.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;

use prost::Message;
use prost_reflect::{DescriptorPool, FileDescriptor, MessageDescriptor, ServiceDescriptor};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_reflection::pb::{v1, v1alpha};
use v1::server_reflection_request::MessageRequest;
use v1::server_reflection_response::MessageResponse;

use crate::gateway::Gateway;

/// The reflection service of one loaded gateway; clones share its index.
#[derive(Debug, Clone)]
pub struct Reflection {
    index: Arc<Index>,
}

impl Reflection {
    /// Indexes the files of the services `gateway` routes and their imports.
    pub fn new(gateway: &Gateway) -> Self {
        let mut services: Vec<ServiceDescriptor> = Vec::new();
        for plan in gateway.routes().routes() {
            let service = plan.route.method.parent_service();
            if !services
                .iter()
                .any(|s| s.full_name() == service.full_name())
            {
                services.push(service.clone());
            }
        }
        services.sort_by(|a, b| a.full_name().cmp(b.full_name()));
        Self::of(services)
    }

    /// Serves `services`, full names in `pool`, listed in that order, and
    /// the files they need: for a backend describing itself from its
    /// descriptor sets.
    ///
    /// # Errors
    /// A service `pool` does not define.
    pub fn for_services(pool: &DescriptorPool, services: &[&str]) -> Result<Self, String> {
        let found = services
            .iter()
            .map(|name| {
                pool.get_service_by_name(name)
                    .ok_or_else(|| format!("service {name} is defined in no descriptor"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::of(found))
    }

    fn of(services: Vec<ServiceDescriptor>) -> Self {
        let mut index = Index::default();
        for service in &services {
            index.add_file(&service.parent_file());
        }
        index.services = services.iter().map(|s| s.full_name().to_owned()).collect();
        Self {
            index: Arc::new(index),
        }
    }

    /// The `grpc.reflection.v1.ServerReflection` server.
    pub fn v1(&self) -> v1::server_reflection_server::ServerReflectionServer<Self> {
        v1::server_reflection_server::ServerReflectionServer::new(self.clone())
    }

    /// The `grpc.reflection.v1alpha.ServerReflection` server.
    pub fn v1alpha(&self) -> v1alpha::server_reflection_server::ServerReflectionServer<Self> {
        v1alpha::server_reflection_server::ServerReflectionServer::new(self.clone())
    }
}

/// Paths of the two services' one method.
pub const PATHS: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];

/// Requests a client may send on one stream: reflection clients send a
/// handful; a client looping forever is cut off.
const MAX_REQUESTS_PER_STREAM: usize = 10_000;

type Answers<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl v1::server_reflection_server::ServerReflection for Reflection {
    type ServerReflectionInfoStream = Answers<v1::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<v1::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        let index = Arc::clone(&self.index);
        let mut sent = HashSet::new();
        let answers = request
            .into_inner()
            .take(MAX_REQUESTS_PER_STREAM)
            .map(move |request| Ok(index.answer(request?, &mut sent)));
        Ok(Response::new(Box::pin(answers)))
    }
}

#[tonic::async_trait]
impl v1alpha::server_reflection_server::ServerReflection for Reflection {
    type ServerReflectionInfoStream = Answers<v1alpha::ServerReflectionResponse>;

    async fn server_reflection_info(
        &self,
        request: Request<Streaming<v1alpha::ServerReflectionRequest>>,
    ) -> Result<Response<Self::ServerReflectionInfoStream>, Status> {
        let index = Arc::clone(&self.index);
        let mut sent = HashSet::new();
        let answers = request
            .into_inner()
            .take(MAX_REQUESTS_PER_STREAM)
            .map(move |request| {
                // v1 declares the same messages under a new package: the
                // encodings are the same.
                let request = recode(&request?)?;
                recode(&index.answer(request, &mut sent))
            });
        Ok(Response::new(Box::pin(answers)))
    }
}

fn recode<From: Message, To: Message + Default>(message: &From) -> Result<To, Status> {
    To::decode(message.encode_to_vec().as_slice())
        .map_err(|e| Status::internal(format!("reflection message conversion failed: {e}")))
}

#[derive(Debug)]
struct File {
    /// The `FileDescriptorProto`, extension options included.
    encoded: Vec<u8>,
    imports: Vec<String>,
}

#[derive(Debug, Default)]
struct Index {
    /// By file name.
    files: HashMap<String, File>,
    /// Full name (message, field, oneof, enum, enum value, service, method,
    /// extension) → file name.
    symbols: HashMap<String, String>,
    /// (extended message, field number) → file name.
    extensions: HashMap<(String, i32), String>,
    /// Listed by `ListServices`.
    services: Vec<String>,
}

impl Index {
    /// Adds `file` and, first, its imports.
    fn add_file(&mut self, file: &FileDescriptor) {
        if self.files.contains_key(file.name()) {
            return;
        }
        let name = file.name().to_owned();
        self.files.insert(
            name.clone(),
            File {
                encoded: file.encode_to_vec(),
                imports: file.dependencies().map(|d| d.name().to_owned()).collect(),
            },
        );
        for import in file.dependencies() {
            self.add_file(&import);
        }
        for message in file.messages() {
            self.add_message(&name, &message);
        }
        for enumeration in file.enums() {
            self.add_enum(&name, &enumeration);
        }
        for extension in file.extensions() {
            self.add_symbol(extension.full_name(), &name);
            self.extensions.insert(
                (
                    extension.containing_message().full_name().to_owned(),
                    i32::try_from(extension.number()).unwrap_or(i32::MAX),
                ),
                name.clone(),
            );
        }
        for service in file.services() {
            self.add_symbol(service.full_name(), &name);
            for method in service.methods() {
                self.add_symbol(method.full_name(), &name);
            }
        }
    }

    fn add_message(&mut self, file: &str, message: &MessageDescriptor) {
        self.add_symbol(message.full_name(), file);
        for field in message.fields() {
            self.add_symbol(field.full_name(), file);
        }
        for oneof in message.oneofs() {
            self.add_symbol(oneof.full_name(), file);
        }
        for nested in message.child_messages() {
            self.add_message(file, &nested);
        }
        for enumeration in message.child_enums() {
            self.add_enum(file, &enumeration);
        }
        for extension in message.child_extensions() {
            self.add_symbol(extension.full_name(), file);
            self.extensions.insert(
                (
                    extension.containing_message().full_name().to_owned(),
                    i32::try_from(extension.number()).unwrap_or(i32::MAX),
                ),
                file.to_owned(),
            );
        }
    }

    fn add_enum(&mut self, file: &str, enumeration: &prost_reflect::EnumDescriptor) {
        self.add_symbol(enumeration.full_name(), file);
        for value in enumeration.values() {
            self.add_symbol(value.full_name(), file);
        }
    }

    fn add_symbol(&mut self, symbol: &str, file: &str) {
        self.symbols
            .entry(symbol.to_owned())
            .or_insert_with(|| file.to_owned());
    }

    fn answer(
        &self,
        request: v1::ServerReflectionRequest,
        sent: &mut HashSet<String>,
    ) -> v1::ServerReflectionResponse {
        let message_response = match &request.message_request {
            Some(message) => self.answer_message(message, sent),
            None => error(Code::InvalidArgument, "message_request is required".into()),
        };
        v1::ServerReflectionResponse {
            valid_host: request.host.clone(),
            original_request: Some(request),
            message_response: Some(message_response),
        }
    }

    fn answer_message(
        &self,
        message: &MessageRequest,
        sent: &mut HashSet<String>,
    ) -> MessageResponse {
        match message {
            MessageRequest::FileByFilename(name) => self.file_with_imports(name, sent),
            MessageRequest::FileContainingSymbol(symbol) => {
                let symbol = symbol.trim_start_matches('.');
                match self.symbols.get(symbol) {
                    Some(file) => self.file_with_imports(file, sent),
                    None => error(Code::NotFound, format!("symbol {symbol} not found")),
                }
            }
            MessageRequest::FileContainingExtension(request) => {
                let extended = request.containing_type.trim_start_matches('.');
                match self
                    .extensions
                    .get(&(extended.to_owned(), request.extension_number))
                {
                    Some(file) => self.file_with_imports(file, sent),
                    None => error(
                        Code::NotFound,
                        format!(
                            "extension {} of {extended} not found",
                            request.extension_number
                        ),
                    ),
                }
            }
            MessageRequest::AllExtensionNumbersOfType(extended) => {
                let extended = extended.trim_start_matches('.');
                if !self.symbols.contains_key(extended) {
                    return error(Code::NotFound, format!("type {extended} not found"));
                }
                let mut extension_number: Vec<i32> = self
                    .extensions
                    .keys()
                    .filter(|(message, _)| message == extended)
                    .map(|&(_, number)| number)
                    .collect();
                extension_number.sort_unstable();
                MessageResponse::AllExtensionNumbersResponse(v1::ExtensionNumberResponse {
                    base_type_name: extended.to_owned(),
                    extension_number,
                })
            }
            MessageRequest::ListServices(_) => {
                MessageResponse::ListServicesResponse(v1::ListServiceResponse {
                    service: self
                        .services
                        .iter()
                        .map(|name| v1::ServiceResponse { name: name.clone() })
                        .collect(),
                })
            }
        }
    }

    /// The file `name` and its transitive imports not sent yet on this
    /// stream, breadth first; the file itself always, as it was asked for.
    fn file_with_imports(&self, name: &str, sent: &mut HashSet<String>) -> MessageResponse {
        let Some(file) = self.files.get(name) else {
            return error(Code::NotFound, format!("file {name} not found"));
        };
        sent.insert(name.to_owned());
        let mut encoded = vec![file.encoded.clone()];
        let mut imports: VecDeque<&str> = file.imports.iter().map(String::as_str).collect();
        while let Some(import) = imports.pop_front() {
            if !sent.insert(import.to_owned()) {
                continue;
            }
            if let Some(file) = self.files.get(import) {
                encoded.push(file.encoded.clone());
                imports.extend(file.imports.iter().map(String::as_str));
            }
        }
        MessageResponse::FileDescriptorResponse(v1::FileDescriptorResponse {
            file_descriptor_proto: encoded,
        })
    }
}

fn error(code: Code, message: String) -> MessageResponse {
    MessageResponse::ErrorResponse(v1::ErrorResponse {
        error_code: code as i32,
        error_message: message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> Arc<Index> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let pool = crate::descriptor::load(&crate::config::DescriptorSources {
            include: vec![root.join("protos")],
            protos: vec!["shop/user/v2/user.proto".into()],
            descriptor_sets: Vec::new(),
        })
        .unwrap();
        Reflection::for_services(&pool, &["shop.user.v2.UserService"])
            .unwrap()
            .index
    }

    /// The names of the files in a FileDescriptorResponse, or the error.
    fn file_names(response: MessageResponse) -> Result<Vec<String>, String> {
        match response {
            MessageResponse::FileDescriptorResponse(files) => Ok(files
                .file_descriptor_proto
                .iter()
                .map(|f| {
                    prost_types::FileDescriptorProto::decode(f.as_slice())
                        .unwrap()
                        .name()
                        .to_owned()
                })
                .collect()),
            MessageResponse::ErrorResponse(err) => Err(err.error_message),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn symbols_resolve_to_their_files() {
        let index = index();
        for (symbol, file) in [
            ("shop.user.v2.UserService", "shop/user/v2/user.proto"),
            (
                "shop.user.v2.UserService.DeactivateUser",
                "shop/user/v2/user.proto",
            ),
            ("shop.user.v2.User.LabelsEntry", "shop/user/v2/user.proto"),
            ("shop.user.v2.User.contact", "shop/user/v2/user.proto"),
            ("shop.user.v2.USER_STATUS_ACTIVE", "shop/user/v2/user.proto"),
            ("google.api.http", "google/api/annotations.proto"),
            (
                "google.protobuf.Timestamp",
                "google/protobuf/timestamp.proto",
            ),
        ] {
            assert_eq!(
                index.symbols.get(symbol).map(String::as_str),
                Some(file),
                "{symbol}"
            );
        }
        assert_eq!(index.services, ["shop.user.v2.UserService"]);
    }

    #[test]
    fn a_file_comes_with_its_imports_once_per_stream() {
        let index = index();
        let mut sent = HashSet::new();
        let first =
            file_names(index.file_with_imports("shop/user/v2/user.proto", &mut sent)).unwrap();
        assert_eq!(first[0], "shop/user/v2/user.proto");
        for import in [
            "google/api/annotations.proto",
            "google/api/http.proto",
            "google/protobuf/descriptor.proto",
            "google/protobuf/timestamp.proto",
        ] {
            assert!(
                first.iter().any(|f| f == import),
                "{import} missing: {first:?}"
            );
        }
        // Asked again: the file alone, its imports went out already.
        let again =
            file_names(index.file_with_imports("shop/user/v2/user.proto", &mut sent)).unwrap();
        assert_eq!(again, ["shop/user/v2/user.proto"]);
        assert_eq!(
            file_names(index.file_with_imports("nope.proto", &mut sent)),
            Err("file nope.proto not found".into())
        );
    }

    #[test]
    fn files_keep_extension_options() {
        let index = index();
        let MessageResponse::FileDescriptorResponse(files) =
            index.file_with_imports("shop/user/v2/user.proto", &mut HashSet::new())
        else {
            panic!("no file");
        };
        let template = b"/v2/users/{id}";
        assert!(
            files.file_descriptor_proto[0]
                .windows(template.len())
                .any(|w| w == template)
        );
    }

    #[test]
    fn extensions_are_found_by_extended_type_and_number() {
        let index = index();
        // google.api.http is field 72295728 of google.protobuf.MethodOptions.
        let answer = index.answer_message(
            &MessageRequest::AllExtensionNumbersOfType("google.protobuf.MethodOptions".into()),
            &mut HashSet::new(),
        );
        let MessageResponse::AllExtensionNumbersResponse(numbers) = answer else {
            panic!("unexpected {answer:?}");
        };
        assert!(
            numbers.extension_number.contains(&72_295_728),
            "{numbers:?}"
        );
        let answer = index.answer_message(
            &MessageRequest::FileContainingExtension(v1::ExtensionRequest {
                containing_type: "google.protobuf.MethodOptions".into(),
                extension_number: 72_295_728,
            }),
            &mut HashSet::new(),
        );
        assert_eq!(
            file_names(answer).unwrap()[0],
            "google/api/annotations.proto"
        );
    }

    #[test]
    fn unknown_services_are_refused() {
        let pool = DescriptorPool::new();
        let err = Reflection::for_services(&pool, &["shop.user.v3.UserService"]).unwrap_err();
        assert_eq!(
            err,
            "service shop.user.v3.UserService is defined in no descriptor"
        );
    }
}
