//! gRPC server reflection, `grpc.reflection.v1` and `grpc.reflection.v1alpha`,
//! answered from encoded `FileDescriptorSet`s with every file sent exactly as
//! it was encoded.
//!
//! Not `tonic_reflection::server::Builder`: it decodes each file into
//! `prost_types::FileDescriptorProto` and encodes it again for every answer,
//! and prost keeps no unknown fields, so extension options such as
//! `google.api.http` and `google.api.field_behavior` are missing from its
//! answers, even for sets given to `register_encoded_file_descriptor_set`.
//! Here `prost_types` only indexes the names; the servers and messages
//! generated in `tonic_reflection::pb` are reused.
//!
//! Answers follow grpc-go's reflection server: a file comes with those of
//! its transitive imports not yet sent on the stream, and a failed look-up is
//! an `ErrorResponse` in the stream, which stays open.

use anyhow::{Context as _, bail};
use prost::Message;
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Code, Request, Response, Status, Streaming};
use tonic_reflection::pb::{v1, v1alpha};
use v1::server_reflection_request::MessageRequest;
use v1::server_reflection_response::MessageResponse;

/// `google.protobuf.FileDescriptorSet` with its files left encoded.
#[derive(Clone, PartialEq, Message)]
struct EncodedFileSet {
    /// `repeated FileDescriptorProto file = 1`.
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

/// A reflection service over a fixed set of files; clones share them.
#[derive(Debug, Clone)]
pub(crate) struct Reflection {
    index: Arc<Index>,
}

impl Reflection {
    /// Indexes the files of `sets`, encoded `FileDescriptorSet`s (the first
    /// file of a name wins), and advertises `services`.
    ///
    /// Errors: a set or file does not decode, or an advertised service is
    /// defined in none of the files.
    pub(crate) fn new(sets: &[&[u8]], services: &[&str]) -> anyhow::Result<Self> {
        let mut index = Index::default();
        for set in sets {
            let set = EncodedFileSet::decode(*set).context("decoding a FileDescriptorSet")?;
            for file in set.file {
                index.add_file(file)?;
            }
        }
        for &service in services {
            if !index.symbols.contains_key(service) {
                bail!("service {service} is defined in none of the descriptor sets");
            }
            index.services.push(service.to_owned());
        }
        Ok(Reflection {
            index: Arc::new(index),
        })
    }

    /// The `grpc.reflection.v1.ServerReflection` server.
    pub(crate) fn v1(&self) -> v1::server_reflection_server::ServerReflectionServer<Self> {
        v1::server_reflection_server::ServerReflectionServer::new(self.clone())
    }

    /// The `grpc.reflection.v1alpha.ServerReflection` server.
    pub(crate) fn v1alpha(
        &self,
    ) -> v1alpha::server_reflection_server::ServerReflectionServer<Self> {
        v1alpha::server_reflection_server::ServerReflectionServer::new(self.clone())
    }
}

/// The stream of answers to one `ServerReflectionInfo` call.
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
        let answers = request.into_inner().map(move |request| {
            let answer = index.answer(recode(&request?)?, &mut sent);
            recode(&answer)
        });
        Ok(Response::new(Box::pin(answers)))
    }
}

/// Converts between the v1alpha and v1 messages: v1 declares the same
/// messages under a new package name, so their encodings are the same.
fn recode<From: Message, To: Message + Default>(message: &From) -> Result<To, Status> {
    To::decode(message.encode_to_vec().as_slice()).map_err(|err| {
        tracing::error!(%err, "converting a reflection message between v1 and v1alpha");
        Status::internal("reflection message conversion failed")
    })
}

/// One file of the index.
#[derive(Debug)]
struct File {
    /// The `FileDescriptorProto` as encoded in its set.
    encoded: Vec<u8>,
    /// Names of the files it imports.
    dependencies: Vec<String>,
}

/// The files and the names defined in them.
#[derive(Debug, Default)]
struct Index {
    /// By file name, e.g. "shop/user/v2/user.proto".
    files: HashMap<String, File>,
    /// Fully-qualified name without leading dot (message, field, oneof, enum,
    /// enum value, service, method, extension) -> file name.
    symbols: HashMap<String, String>,
    /// (extended message's full name, field number) -> file name.
    extensions: HashMap<(String, i32), String>,
    /// Advertised by ListServices, in the order given.
    services: Vec<String>,
}

impl Index {
    fn add_file(&mut self, encoded: Vec<u8>) -> anyhow::Result<()> {
        let file = FileDescriptorProto::decode(encoded.as_slice())
            .context("decoding a FileDescriptorProto")?;
        let name = file.name();
        if self.files.contains_key(name) {
            return Ok(());
        }
        let package = file.package();
        for message in &file.message_type {
            self.add_message(name, package, message);
        }
        for enumeration in &file.enum_type {
            self.add_enum(name, package, enumeration);
        }
        for extension in &file.extension {
            self.add_extension(name, package, extension);
        }
        for service in &file.service {
            let service_name = qualify(package, service.name());
            for method in &service.method {
                self.add_symbol(&qualify(&service_name, method.name()), name);
            }
            self.add_symbol(&service_name, name);
        }
        self.files.insert(
            name.to_owned(),
            File {
                encoded,
                dependencies: file.dependency.clone(),
            },
        );
        Ok(())
    }

    fn add_message(&mut self, file: &str, scope: &str, message: &DescriptorProto) {
        let name = qualify(scope, message.name());
        for field in &message.field {
            self.add_symbol(&qualify(&name, field.name()), file);
        }
        for oneof in &message.oneof_decl {
            self.add_symbol(&qualify(&name, oneof.name()), file);
        }
        for nested in &message.nested_type {
            self.add_message(file, &name, nested);
        }
        for enumeration in &message.enum_type {
            self.add_enum(file, &name, enumeration);
        }
        for extension in &message.extension {
            self.add_extension(file, &name, extension);
        }
        self.add_symbol(&name, file);
    }

    fn add_enum(&mut self, file: &str, scope: &str, enumeration: &EnumDescriptorProto) {
        // Enum values are siblings of their enum, not children (C++ scoping).
        for value in &enumeration.value {
            self.add_symbol(&qualify(scope, value.name()), file);
        }
        self.add_symbol(&qualify(scope, enumeration.name()), file);
    }

    fn add_extension(&mut self, file: &str, scope: &str, extension: &FieldDescriptorProto) {
        self.add_symbol(&qualify(scope, extension.name()), file);
        let extended = extension.extendee().trim_start_matches('.').to_owned();
        self.extensions
            .entry((extended, extension.number()))
            .or_insert_with(|| file.to_owned());
    }

    fn add_symbol(&mut self, symbol: &str, file: &str) {
        self.symbols
            .entry(symbol.to_owned())
            .or_insert_with(|| file.to_owned());
    }

    /// Answers one request of a stream; `sent` holds the files already sent
    /// on it.
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
                let key = (extended.to_owned(), request.extension_number);
                match self.extensions.get(&key) {
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

    /// The file `name`, then its transitive imports that were not sent yet,
    /// breadth first. The file itself is sent even if it was sent before:
    /// the client asked for it.
    fn file_with_imports(&self, name: &str, sent: &mut HashSet<String>) -> MessageResponse {
        let Some(file) = self.files.get(name) else {
            return error(Code::NotFound, format!("file {name} not found"));
        };
        sent.insert(name.to_owned());
        let mut encoded = vec![file.encoded.clone()];
        let mut imports: VecDeque<&str> = file.dependencies.iter().map(String::as_str).collect();
        while let Some(import) = imports.pop_front() {
            // A file sent before went out with its imports.
            if !sent.insert(import.to_owned()) {
                continue;
            }
            if let Some(file) = self.files.get(import) {
                encoded.push(file.encoded.clone());
                imports.extend(file.dependencies.iter().map(String::as_str));
            }
        }
        MessageResponse::FileDescriptorResponse(v1::FileDescriptorResponse {
            file_descriptor_proto: encoded,
        })
    }
}

/// `scope.name`, or `name` in the root scope.
fn qualify(scope: &str, name: &str) -> String {
    if scope.is_empty() {
        name.to_owned()
    } else {
        format!("{scope}.{name}")
    }
}

fn error(code: Code, error_message: String) -> MessageResponse {
    MessageResponse::ErrorResponse(v1::ErrorResponse {
        error_code: code as i32,
        error_message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FILE_DESCRIPTOR_SET;

    fn index() -> Arc<Index> {
        Reflection::new(&[FILE_DESCRIPTOR_SET], &["shop.user.v2.UserService"])
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
                    FileDescriptorProto::decode(f.as_slice())
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
            ("shop.user.v1.User.display_name", "shop/user/v1/user.proto"),
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

        let second =
            file_names(index.file_with_imports("shop/user/v1/user.proto", &mut sent)).unwrap();
        // Only v1's file and what v2's did not import (empty, field_mask).
        assert_eq!(
            second,
            [
                "shop/user/v1/user.proto",
                "google/protobuf/empty.proto",
                "google/protobuf/field_mask.proto"
            ]
        );
        assert_eq!(
            file_names(index.file_with_imports("nope.proto", &mut sent)),
            Err("file nope.proto not found".into())
        );
    }

    #[test]
    fn files_keep_extension_options() {
        let index = index();
        let mut sent = HashSet::new();
        let MessageResponse::FileDescriptorResponse(files) =
            index.file_with_imports("shop/user/v2/user.proto", &mut sent)
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
        assert_eq!(numbers.extension_number, [72295728]);

        let answer = index.answer_message(
            &MessageRequest::FileContainingExtension(v1::ExtensionRequest {
                containing_type: "google.protobuf.MethodOptions".into(),
                extension_number: 72295728,
            }),
            &mut HashSet::new(),
        );
        assert_eq!(
            file_names(answer).unwrap()[0],
            "google/api/annotations.proto"
        );
    }

    #[test]
    fn new_rejects_unknown_services() {
        let err =
            Reflection::new(&[FILE_DESCRIPTOR_SET], &["shop.user.v3.UserService"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "service shop.user.v3.UserService is defined in none of the descriptor sets"
        );
    }
}
