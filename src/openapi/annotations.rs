//! grpc-gateway's OpenAPI options (`grpc.gateway.protoc_gen_openapiv2.options`)
//! read from the descriptors and applied to the OpenAPI 3.1 document.
//!
//! Protos migrated from grpc-gateway carry them: `openapiv2_swagger` on a
//! file (info, tags, external docs, security, servers from `schemes`, `host`
//! and `base_path`), `openapiv2_operation` on a method (summary,
//! description, tags, `deprecated`, `operation_id`, external docs, response
//! descriptions, security), `openapiv2_tag` on a service, `openapiv2_schema`
//! on a message and `openapiv2_field` on a field (title, description,
//! examples, `format`, `pattern`, `required`, `read_only`, bounds, external
//! docs). Swagger 2.0 shapes are translated: an `example` becomes 3.1's
//! `examples`, `exclusive_maximum: true` the numeric `exclusiveMaximum`,
//! `schemes`/`host`/`base_path` a server URL. A proto without them
//! documents as it did.

use prost_reflect::{
    DescriptorPool, DynamicMessage, ExtensionDescriptor, FieldDescriptor, MessageDescriptor,
    MethodDescriptor, ReflectMessage, ServiceDescriptor, Value,
};
use utoipa::openapi::external_docs::ExternalDocs;
use utoipa::openapi::schema::{KnownFormat, Object, SchemaFormat};

const PACKAGE: &str = "grpc.gateway.protoc_gen_openapiv2.options";

/// The option extensions of a pool that has them.
pub struct Annotations {
    swagger: ExtensionDescriptor,
    operation: ExtensionDescriptor,
    schema: ExtensionDescriptor,
    field: ExtensionDescriptor,
    tag: ExtensionDescriptor,
}

/// A set option's message, if `options` has `ext`.
fn option(options: &DynamicMessage, ext: &ExtensionDescriptor) -> Option<DynamicMessage> {
    if !options.has_extension(ext) {
        return None;
    }
    options.get_extension(ext).as_message().cloned()
}

/// The set field `name` of `message`.
fn get<'a>(message: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, Value>> {
    let field = message.descriptor().get_field_by_name(name)?;
    message.has_field(&field).then(|| message.get_field(&field))
}

/// A set, non-empty string field.
pub fn text(message: &DynamicMessage, name: &str) -> Option<String> {
    get(message, name)
        .and_then(|v| v.as_str().map(str::to_owned))
        .filter(|s| !s.is_empty())
}

fn flag(message: &DynamicMessage, name: &str) -> bool {
    get(message, name).and_then(|v| v.as_bool()) == Some(true)
}

fn strings(message: &DynamicMessage, name: &str) -> Vec<String> {
    get(message, name)
        .and_then(|v| {
            v.as_list().map(|l| {
                l.iter()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

fn message_field(message: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    get(message, name).and_then(|v| v.as_message().cloned())
}

/// `ExternalDocumentation` as OpenAPI's.
pub fn external_docs(message: &DynamicMessage) -> Option<ExternalDocs> {
    let docs = message_field(message, "external_docs")?;
    let mut out = ExternalDocs::new(text(&docs, "url")?);
    out.description = text(&docs, "description");
    Some(out)
}

/// An `example` string: JSON text, else the text itself.
fn example(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|_| serde_json::Value::String(text.to_owned()))
}

impl Annotations {
    /// The options of `pool`; `None` when no file imports them.
    pub fn new(pool: &DescriptorPool) -> Option<Self> {
        let ext = |name: &str| pool.get_extension_by_name(&format!("{PACKAGE}.{name}"));
        Some(Self {
            swagger: ext("openapiv2_swagger")?,
            operation: ext("openapiv2_operation")?,
            schema: ext("openapiv2_schema")?,
            field: ext("openapiv2_field")?,
            tag: ext("openapiv2_tag")?,
        })
    }

    /// The `Swagger` option of `method`'s file.
    pub fn swagger(&self, method: &MethodDescriptor) -> Option<DynamicMessage> {
        option(&method.parent_file().options(), &self.swagger)
    }

    /// The `Operation` option of `method`.
    pub fn operation(&self, method: &MethodDescriptor) -> Option<DynamicMessage> {
        option(&method.options(), &self.operation)
    }

    /// The `Tag` option of `service`.
    pub fn tag(&self, service: &ServiceDescriptor) -> Option<DynamicMessage> {
        option(&service.options(), &self.tag)
    }

    /// The `Schema` option of `message`.
    pub fn schema(&self, message: &MessageDescriptor) -> Option<DynamicMessage> {
        option(&message.options(), &self.schema)
    }

    /// The `JSONSchema` option of `field`.
    pub fn field(&self, field: &FieldDescriptor) -> Option<DynamicMessage> {
        option(&field.options(), &self.field)
    }
}

/// A `JSONSchema` applied to a schema object: what it sets replaces what
/// the descriptors said.
pub fn json_schema(js: &DynamicMessage, object: &mut Object) {
    if let Some(title) = text(js, "title") {
        object.title = Some(title);
    }
    if let Some(description) = text(js, "description") {
        object.description = Some(description);
    }
    if let Some(e) = text(js, "example") {
        object.examples = vec![example(&e)];
    }
    if let Some(d) = text(js, "default") {
        object.default = Some(example(&d));
    }
    if flag(js, "read_only") {
        object.read_only = Some(true);
    }
    if let Some(f) = text(js, "format") {
        object.format = Some(match f.as_str() {
            "int32" => SchemaFormat::KnownFormat(KnownFormat::Int32),
            "int64" => SchemaFormat::KnownFormat(KnownFormat::Int64),
            "date-time" => SchemaFormat::KnownFormat(KnownFormat::DateTime),
            "email" => SchemaFormat::KnownFormat(KnownFormat::Email),
            _ => SchemaFormat::Custom(f),
        });
    }
    if let Some(p) = text(js, "pattern") {
        object.pattern = Some(p);
    }
    let size = |name: &str| {
        get(js, name)
            .and_then(|v| v.as_u64())
            .filter(|n| *n > 0)
            .and_then(|n| usize::try_from(n).ok())
    };
    if let Some(n) = size("max_length") {
        object.max_length = Some(n);
    }
    if let Some(n) = size("min_length") {
        object.min_length = Some(n);
    }
    if let Some(n) = size("max_properties") {
        object.max_properties = Some(n);
    }
    if let Some(n) = size("min_properties") {
        object.min_properties = Some(n);
    }
    let number = |name: &str| get(js, name).and_then(|v| v.as_f64());
    // Swagger 2.0's exclusive flags are 3.1's exclusive bounds.
    if let Some(max) = number("maximum") {
        let bound = Some(utoipa::Number::Float(max));
        if flag(js, "exclusive_maximum") {
            object.exclusive_maximum = bound;
        } else {
            object.maximum = bound;
        }
    }
    if let Some(min) = number("minimum") {
        let bound = Some(utoipa::Number::Float(min));
        if flag(js, "exclusive_minimum") {
            object.exclusive_minimum = bound;
        } else {
            object.minimum = bound;
        }
    }
    if let Some(m) = number("multiple_of").filter(|m| *m > 0.0) {
        object.multiple_of = Some(utoipa::Number::Float(m));
    }
    let values = strings(js, "enum");
    if !values.is_empty() {
        object.enum_values = Some(values.into_iter().map(serde_json::Value::String).collect());
    }
    if let Some(config) = message_field(js, "field_configuration")
        && flag(&config, "deprecated")
    {
        object.deprecated = Some(utoipa::openapi::Deprecated::True);
    }
}

/// The `required` names of a message's `JSONSchema`, as proto names.
pub fn required(schema: &DynamicMessage) -> Vec<String> {
    message_field(schema, "json_schema")
        .map(|js| strings(&js, "required"))
        .unwrap_or_default()
}

/// The `Schema` option of a message applied to its object schema.
pub fn schema(schema: &DynamicMessage, object: &mut Object) {
    if let Some(js) = message_field(schema, "json_schema") {
        json_schema(&js, object);
    }
    if let Some(e) = text(schema, "example") {
        object.examples = vec![example(&e)];
    }
    if flag(schema, "read_only") {
        object.read_only = Some(true);
    }
}

/// The array and size rules of a field's `JSONSchema` for a repeated field.
pub fn array(js: &DynamicMessage, array: &mut utoipa::openapi::schema::Array) {
    let size = |name: &str| {
        get(js, name)
            .and_then(|v| v.as_u64())
            .filter(|n| *n > 0)
            .and_then(|n| usize::try_from(n).ok())
    };
    if let Some(n) = size("max_items") {
        array.max_items = Some(n);
    }
    if let Some(n) = size("min_items") {
        array.min_items = Some(n);
    }
    if flag(js, "unique_items") {
        array.unique_items = true;
    }
    if let Some(title) = text(js, "title") {
        array.title = Some(title);
    }
    if let Some(description) = text(js, "description") {
        array.description = Some(description);
    }
    if let Some(e) = text(js, "example") {
        array.examples = vec![example(&e)];
    }
}

/// `SecurityRequirement`s as OpenAPI's: name → scopes.
pub fn security(
    message: &DynamicMessage,
) -> Option<Vec<utoipa::openapi::security::SecurityRequirement>> {
    let list = get(message, "security")?;
    let list = list.as_list()?;
    Some(
        list.iter()
            .filter_map(Value::as_message)
            .map(|requirement| {
                let mut out = utoipa::openapi::security::SecurityRequirement::default();
                if let Some(Value::Map(map)) = get(requirement, "security_requirement").as_deref() {
                    for (name, value) in map {
                        let Some(name) = name.as_str() else { continue };
                        let scopes = value
                            .as_message()
                            .map(|v| strings(v, "scope"))
                            .unwrap_or_default();
                        out = out.add(name, scopes);
                    }
                }
                out
            })
            .collect(),
    )
}

/// The `responses` of an `Operation` or `Swagger`: code → description.
pub fn responses(message: &DynamicMessage) -> Vec<(String, String, Option<serde_json::Value>)> {
    let Some(Value::Map(map)) = get(message, "responses").as_deref().cloned() else {
        return Vec::new();
    };
    let mut out: Vec<_> = map
        .iter()
        .filter_map(|(code, response)| {
            let code = code.as_str()?.to_owned();
            let response = response.as_message()?;
            let description = text(response, "description").unwrap_or_default();
            let example = match get(response, "examples").as_deref() {
                Some(Value::Map(examples)) => examples
                    .iter()
                    .find(|(k, _)| k.as_str() == Some("application/json"))
                    .and_then(|(_, v)| v.as_str().map(example)),
                _ => None,
            };
            Some((code, description, example))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The server URLs a `Swagger`'s `schemes`, `host` and `base_path` name.
pub fn servers(swagger: &DynamicMessage) -> Vec<String> {
    let Some(host) = text(swagger, "host") else {
        return Vec::new();
    };
    let base = text(swagger, "base_path").unwrap_or_default();
    let schemes: Vec<&str> = get(swagger, "schemes")
        .and_then(|v| {
            v.as_list().map(|l| {
                l.iter()
                    .filter_map(|s| match s.as_enum_number() {
                        Some(1) => Some("http"),
                        Some(2) => Some("https"),
                        Some(3) => Some("ws"),
                        Some(4) => Some("wss"),
                        _ => None,
                    })
                    .collect()
            })
        })
        .unwrap_or_default();
    let schemes = if schemes.is_empty() {
        vec!["https"]
    } else {
        schemes
    };
    schemes
        .into_iter()
        .filter(|s| matches!(*s, "http" | "https"))
        .map(|s| format!("{s}://{host}{base}"))
        .collect()
}
