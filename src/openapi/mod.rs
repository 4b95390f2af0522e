//! OpenAPI 3.1 generated from the route table and the descriptor pool.
//!
//! The document is built from the same routes the gateway serves, so docs
//! and behaviour cannot drift: one operation per HTTP binding, path and query
//! parameters from the fields each binding leaves to them, request and
//! response bodies from the body rules, and `google.rpc.Status` for errors.
//! It is built once at startup; serving it and the docs UI is `server`'s job.

pub mod annotations;
pub mod comments;
pub mod constraints;
pub mod schema;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MessageDescriptor};
use utoipa::openapi::path::{
    HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, Deprecated, InfoBuilder, OpenApi, OpenApiBuilder,
    PathsBuilder, RefOr, Required, ServerBuilder,
};

use self::comments::{Comments, summary_and_description};
use self::constraints::Rules;
use self::schema::Schemas;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::config::auth::{API_KEY, Location};
use crate::http_rule::route_table::is_bound;
use crate::http_rule::template::{Segment, Variable};
use crate::http_rule::{BodyRule, FieldPath, MethodMatch, Route, RoutePayload, RouteTable};
use crate::transcode::value::is_scalar_like;

/// How deep nested messages are expanded into dotted query parameters.
const MAX_QUERY_DEPTH: usize = 4;

/// Builds the combined document for every route in the table.
pub fn document<P: RoutePayload>(
    routes: &RouteTable<P>,
    pool: &DescriptorPool,
    config: &Config,
    auth: &Authenticator,
) -> OpenApi {
    let all: Vec<Arc<Route>> = routes.routes().iter().map(|p| p.route().clone()).collect();
    document_for(&all, pool, config, auth)
}

/// The API version of a service: the last package component when it looks
/// like one (`v1`, `v2beta1`, `v1alpha`), as in `shop.user.v1`.
pub fn api_version(service: &prost_reflect::ServiceDescriptor) -> Option<&str> {
    let last = service.package_name().rsplit('.').next()?;
    let rest = last.strip_prefix('v')?;
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (number, suffix) = rest.split_at(digits);
    let suffix_ok = suffix.is_empty()
        || ["alpha", "beta"].iter().any(|s| {
            suffix
                .strip_prefix(s)
                .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
        });
    (!number.is_empty() && suffix_ok).then_some(last)
}

/// Routes grouped by API version, for one document per version.
pub fn versions<P: RoutePayload>(routes: &RouteTable<P>) -> BTreeMap<String, Vec<Arc<Route>>> {
    let mut out: BTreeMap<String, Vec<Arc<Route>>> = BTreeMap::new();
    for route in routes.routes().iter().map(RoutePayload::route) {
        if let Some(v) = api_version(route.method.parent_service()) {
            out.entry(v.to_owned()).or_default().push(route.clone());
        }
    }
    out
}

/// Builds a document for some routes (one version, or all of them).
pub fn document_for(
    routes: &[Arc<Route>],
    pool: &DescriptorPool,
    config: &Config,
    auth: &Authenticator,
) -> OpenApi {
    let comments = Comments::index(pool);
    let rules = crate::validate::rules_pool(pool, &config.validation).and_then(Rules::new);
    let notes = annotations::Annotations::new(pool);
    let mut schemas = Schemas::new(pool, &comments, config.transcode.json)
        .with_rules(rules.as_ref())
        .with_annotations(notes.as_ref());
    let tags = TagNames::new(routes);
    let mut paths: Vec<(String, HttpMethod, utoipa::openapi::path::Operation)> = Vec::new();
    let mut taken: HashSet<(String, String)> = HashSet::new();

    for route in routes {
        let Some(method) = http_method(&route.http_method) else {
            tracing::debug!(method = route.method.full_name(), kind = %route.http_method, "HTTP method has no OpenAPI operation; left out of the document");
            continue;
        };
        // Without the encoded-slash fallback, `{name}` filled with "users/1"
        // would be sent as users%2F1 and miss, so variables are spelled out
        // as literals and one parameter per wildcard.
        let spelled = !config.transcode.match_encoded_slashes;
        let mut shape = openapi_path(route, spelled);
        // OpenAPI treats paths that differ only in parameter names as one; spell the variables out.
        if !taken.insert((normalized(&shape.path), route.http_method.to_string())) && !spelled {
            shape = openapi_path(route, true);
            taken.insert((normalized(&shape.path), route.http_method.to_string()));
        }
        let mut operation = operation(route, &shape.params, &tags, &mut schemas, &comments);
        if let Some(option) = notes.as_ref().and_then(|n| n.operation(&route.method)) {
            annotate_operation(&mut operation, &option, &mut schemas);
        }
        if let Some(requirement) = Some(auth.requirement(route)).filter(|r| !r.public) {
            // Alternatives: any one accepted credential with the scopes satisfies the route.
            let alternatives = auth.accepted(&requirement).map(|c| {
                let name = match c {
                    Ok(provider) => provider.name.to_string(),
                    Err(_) => API_KEY.to_owned(),
                };
                SecurityRequirement::new(name, requirement.scopes.clone())
            });
            operation.security = Some(alternatives.collect());
        }
        paths.push((shape.path, method, operation));
    }

    let mut builder = PathsBuilder::new();
    let mut items: Vec<(String, PathItem)> = Vec::new();
    for (path, method, op) in paths {
        match items.iter_mut().find(|(p, _)| *p == path) {
            Some((_, item)) => item.merge_operations(PathItem::new(method, op)),
            None => items.push((path, PathItem::new(method, op))),
        }
    }
    for (path, item) in items {
        builder = builder.path(path, item);
    }

    // Registered even when no route refers to it, so error responses always resolve.
    schemas.status();
    let mut components = schemas
        .into_components()
        .into_iter()
        .fold(ComponentsBuilder::new(), |b, (name, schema)| {
            b.schema(name, schema)
        });
    for (name, scheme) in security_schemes(auth) {
        components = components.security_scheme(name, scheme);
    }
    let components = components.build();
    let options = &config.openapi;
    let mut document = OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title(options.title.clone())
                .version(options.version.clone())
                .description(options.description.clone())
                .build(),
        )
        .servers((!options.servers.is_empty()).then(|| {
            options
                .servers
                .iter()
                .map(|s| ServerBuilder::new().url(s.clone()).build())
        }))
        .tags(Some(tags.tags(routes, &comments, notes.as_ref())))
        .paths(builder.build())
        .components(Some(components))
        .build();
    if let Some(notes) = &notes {
        annotate_document(&mut document, notes, routes, config);
    }
    document
}

/// An `openapiv2_operation` applied to an operation: what it sets wins.
fn annotate_operation(
    op: &mut utoipa::openapi::path::Operation,
    option: &prost_reflect::DynamicMessage,
    schemas: &mut Schemas<'_>,
) {
    use annotations::text;
    if let Some(summary) = text(option, "summary") {
        op.summary = Some(summary);
    }
    if let Some(description) = text(option, "description") {
        op.description = Some(description);
    }
    if let Some(id) = text(option, "operation_id") {
        op.operation_id = Some(id);
    }
    let tags: Vec<String> = option
        .get_field_by_name("tags")
        .and_then(|v| {
            v.as_list().map(|l| {
                l.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default();
    if !tags.is_empty() {
        op.tags = Some(tags);
    }
    if option
        .get_field_by_name("deprecated")
        .and_then(|v| v.as_bool())
        == Some(true)
    {
        op.deprecated = Some(Deprecated::True);
    }
    if let Some(docs) = annotations::external_docs(option) {
        op.external_docs = Some(docs);
    }
    if let Some(security) = annotations::security(option) {
        op.security = Some(security);
    }
    for (code, description, example) in annotations::responses(option) {
        match op.responses.responses.get_mut(&code) {
            Some(RefOr::T(response)) => {
                if !description.is_empty() {
                    response.description = description;
                }
                if let Some(example) = example
                    && let Some(RefOr::T(content)) = response.content.get_mut("application/json")
                {
                    content.example = Some(example);
                }
            }
            Some(RefOr::Ref(_)) => {}
            None => {
                let mut response = ResponseBuilder::new().description(description);
                if code != "204" {
                    response = response.content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(schemas.status()))
                            .example(example)
                            .build(),
                    );
                }
                op.responses
                    .responses
                    .insert(code, RefOr::T(response.build()));
            }
        }
    }
}

/// The `openapiv2_swagger` of the routed files applied to the document:
/// info, tags, external docs, servers, security.
fn annotate_document(
    document: &mut OpenApi,
    notes: &annotations::Annotations,
    routes: &[Arc<Route>],
    config: &Config,
) {
    use annotations::text;
    let mut seen = HashSet::new();
    let swaggers = routes
        .iter()
        .filter(|r| seen.insert(r.method.parent_file().name().to_owned()))
        .filter_map(|r| notes.swagger(&r.method));
    for swagger in swaggers {
        if let Some(info) = swagger
            .get_field_by_name("info")
            .and_then(|v| v.as_message().cloned())
            && swagger.has_field_by_name("info")
        {
            // The config's title and version, when set, stay the config's.
            let defaults = crate::config::OpenApiOptions::default();
            if config.openapi.title == defaults.title
                && let Some(title) = text(&info, "title")
            {
                document.info.title = title;
            }
            if config.openapi.version == defaults.version
                && let Some(version) = text(&info, "version")
            {
                document.info.version = version;
            }
            if config.openapi.description.is_none()
                && let Some(description) = text(&info, "description")
            {
                document.info.description = Some(description);
            }
            if let Some(terms) = text(&info, "terms_of_service") {
                document.info.terms_of_service = Some(terms);
            }
            if let Some(contact) = info
                .get_field_by_name("contact")
                .and_then(|v| v.as_message().cloned())
            {
                let mut c = utoipa::openapi::info::Contact::new();
                c.name = text(&contact, "name");
                c.url = text(&contact, "url");
                c.email = text(&contact, "email");
                document.info.contact = Some(c);
            }
            if let Some(license) = info
                .get_field_by_name("license")
                .and_then(|v| v.as_message().cloned())
                && let Some(name) = text(&license, "name")
            {
                let mut l = utoipa::openapi::info::License::new(name);
                l.url = text(&license, "url");
                document.info.license = Some(l);
            }
        }
        if let Some(docs) = annotations::external_docs(&swagger) {
            document.external_docs = Some(docs);
        }
        if config.openapi.servers.is_empty() {
            let urls = annotations::servers(&swagger);
            if !urls.is_empty() {
                document.servers = Some(
                    urls.into_iter()
                        .map(|u| ServerBuilder::new().url(u).build())
                        .collect(),
                );
            }
        }
        if let Some(security) = annotations::security(&swagger) {
            document.security = Some(security);
        }
        if let Some(prost_reflect::Value::List(tags)) = swagger.get_field_by_name("tags").as_deref()
        {
            let list = document.tags.get_or_insert_with(Vec::new);
            for tag in tags.iter().filter_map(|t| t.as_message()) {
                let Some(name) = text(tag, "name") else {
                    continue;
                };
                let docs = annotations::external_docs(tag);
                let description = text(tag, "description");
                match list.iter_mut().find(|t| t.name == name) {
                    Some(known) => {
                        if description.is_some() {
                            known.description = description;
                        }
                        if docs.is_some() {
                            known.external_docs = docs;
                        }
                    }
                    None => {
                        let mut t = TagBuilder::new()
                            .name(name)
                            .description(description)
                            .build();
                        t.external_docs = docs;
                        list.push(t);
                    }
                }
            }
        }
    }
}

/// One security scheme per JWT provider (bearer, or an API-key-shaped scheme
/// for tokens in another header, a cookie or the query) and one for API keys.
fn security_schemes(auth: &Authenticator) -> Vec<(String, SecurityScheme)> {
    let api_key = |location: &Location, description: String| {
        let value =
            |name: &str| ApiKeyValue::with_description(name.to_owned(), description.clone());
        SecurityScheme::ApiKey(match location {
            Location::Bearer => ApiKey::Header(value("Authorization")),
            Location::Header(h) => ApiKey::Header(value(h)),
            Location::Cookie(c) => ApiKey::Cookie(value(c)),
            Location::Query(q) => ApiKey::Query(value(q)),
        })
    };
    let mut out = Vec::new();
    for p in auth.providers() {
        let description = format!("JWT issued by {}", p.issuer);
        let scheme = if p.location == Location::Bearer {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.bearer_format = Some("JWT".to_owned());
            http.description = Some(description);
            SecurityScheme::Http(http)
        } else {
            api_key(&p.location, description)
        };
        out.push((p.name.to_string(), scheme));
    }
    if let Some(keys) = auth.api_keys() {
        out.push((
            API_KEY.to_owned(),
            api_key(&keys.location, "API key".to_owned()),
        ));
    }
    out
}

/// Renders the document as JSON or YAML text.
///
/// # Errors
/// Serialization errors, which a well-formed document does not produce.
pub fn render(document: &OpenApi, format: Format) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(document)?,
        Format::Yaml => serde_norway::to_string(document)?,
    })
}

/// Document text formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

fn http_method(m: &MethodMatch) -> Option<HttpMethod> {
    let MethodMatch::Exact(m) = m else {
        return None;
    };
    Some(match m.as_str() {
        "GET" => HttpMethod::Get,
        "PUT" => HttpMethod::Put,
        "POST" => HttpMethod::Post,
        "DELETE" => HttpMethod::Delete,
        "PATCH" => HttpMethod::Patch,
        "HEAD" => HttpMethod::Head,
        "OPTIONS" => HttpMethod::Options,
        "TRACE" => HttpMethod::Trace,
        _ => return None,
    })
}

/// A route's OpenAPI path and the parameters named in it, from one walk
/// over the template, so the names in `{…}` and the parameters agree.
struct PathShape<'r> {
    path: String,
    /// The variables' parameters in template order, then the anonymous
    /// wildcards'.
    params: Vec<PathParam<'r>>,
}

/// One `{…}` of an OpenAPI path.
enum PathParam<'r> {
    /// A whole variable, `{field_path}`, setting `field`.
    Variable {
        name: String,
        var: &'r Variable,
        field: &'r FieldPath,
    },
    /// Wildcard segment `n` of a spelled-out variable, `{field_path_n}`.
    Segment {
        name: String,
        n: usize,
        var: &'r Variable,
    },
    /// A wildcard outside any variable, `{segmentN}`.
    Anonymous { name: String },
}

/// The OpenAPI path of a route: `{field.path}` per variable (or, when
/// `spelled`, the variable's literals with one parameter per wildcard).
fn openapi_path(route: &Route, spelled: bool) -> PathShape<'_> {
    let t = &route.template;
    let mut parts = Vec::new();
    let mut params = Vec::new();
    let mut anonymous = Vec::new();
    let mut i = 0;
    while i < t.segments.len() {
        // `path_fields` has one field per variable.
        if let Some((var, field)) = t
            .variables
            .iter()
            .zip(&route.path_fields)
            .find(|(v, _)| v.start == i)
        {
            let name = param_name(var);
            if spelled && t.is_multi_segment(var) {
                for (n, seg) in t.segments[var.start..var.end].iter().enumerate() {
                    match seg {
                        Segment::Literal(l) => parts.push(l.clone()),
                        _ => {
                            let name = format!("{name}_{n}");
                            parts.push(format!("{{{name}}}"));
                            params.push(PathParam::Segment { name, n, var });
                        }
                    }
                }
            } else {
                parts.push(format!("{{{name}}}"));
                params.push(PathParam::Variable { name, var, field });
            }
            i = var.end;
            continue;
        }
        match &t.segments[i] {
            Segment::Literal(l) => parts.push(l.clone()),
            Segment::Wildcard | Segment::DeepWildcard => {
                let name = format!("segment{}", anonymous.len() + 1);
                parts.push(format!("{{{name}}}"));
                anonymous.push(PathParam::Anonymous { name });
            }
        }
        i += 1;
    }
    params.extend(anonymous);
    let mut path = format!("/{}", parts.join("/"));
    if let Some(verb) = &t.verb {
        path.push(':');
        path.push_str(verb);
    }
    PathShape { path, params }
}

/// A path with parameter names blanked, to find paths OpenAPI considers equal.
fn normalized(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                depth += 1;
                out.push_str("{}");
            }
            '}' => depth -= 1,
            _ if depth > 0 => {}
            c => out.push(c),
        }
    }
    out
}

fn operation(
    route: &Route,
    path_params: &[PathParam<'_>],
    tags: &TagNames,
    schemas: &mut Schemas<'_>,
    comments: &Comments,
) -> utoipa::openapi::path::Operation {
    let method = &route.method;
    let service = method.parent_service();
    let (summary, description) =
        summary_and_description(comments.get(method.parent_file().name(), method.path()));
    // Deprecated in the proto, or its whole API deprecated in the config.
    let deprecated = route.deprecation.is_some()
        || method
            .method_descriptor_proto()
            .options
            .as_ref()
            .and_then(|o| o.deprecated)
            == Some(true);
    let short = tags.name(service.full_name());
    let operation_id = match route.binding {
        0 => format!("{short}_{}", method.name()),
        n => format!("{short}_{}{}", method.name(), n + 1),
    };

    let mut op = OperationBuilder::new()
        .operation_id(Some(operation_id))
        .tag(short)
        .summary(summary)
        .description(description)
        .deprecated(deprecated.then_some(Deprecated::True));

    for param in path_parameters(route, path_params, schemas) {
        op = op.parameter(param);
    }
    let mut query = Vec::new();
    query_parameters(
        route,
        &method.input(),
        &mut Vec::new(),
        "",
        schemas,
        &mut query,
    );
    for param in query {
        op = op.parameter(param);
    }

    let content_type = if route.raw_request {
        "*/*"
    } else if method.is_client_streaming() {
        "application/x-ndjson"
    } else {
        "application/json"
    };
    let body_schema = match &route.body {
        BodyRule::None => None,
        _ if route.raw_request => Some(binary()),
        BodyRule::Whole => Some(whole_body_schema(route, schemas)),
        BodyRule::Field(path) => Some(schemas.field(path.leaf())),
    };
    // The binary body message, for a body that is a (singular) message.
    let binary_body = !route.raw_request
        && !method.is_client_streaming()
        && match &route.body {
            BodyRule::None => false,
            BodyRule::Whole => true,
            BodyRule::Field(path) => {
                let leaf = path.leaf();
                matches!(leaf.kind(), prost_reflect::Kind::Message(_))
                    && !leaf.is_list()
                    && !leaf.is_map()
            }
        };
    if let Some(schema) = body_schema {
        let mut body = RequestBodyBuilder::new().content(
            content_type,
            ContentBuilder::new().schema(Some(schema)).build(),
        );
        if binary_body {
            body = body.content(
                PROTOBUF,
                ContentBuilder::new().schema(Some(binary())).build(),
            );
        }
        body = match (route.raw_request, method.is_client_streaming()) {
            (true, true) => body.description(Some(
                "The raw body, of any content type (google.api.HttpBody), streamed to the backend in chunks as it arrives.",
            )),
            (true, false) => body
                .required(Some(Required::True))
                .description(Some("The raw body, of any content type (google.api.HttpBody).")),
            (false, true) => body.description(Some(
                "One JSON message per line (NDJSON), each sent as it arrives. Over a WebSocket: one message per text frame.",
            )),
            (false, false) => body.required(Some(Required::True)),
        };
        op = op.request_body(Some(body.build()));
    }

    let reply = match &route.response_body {
        None => schemas.message(&method.output()),
        Some(path) => schemas.field(path.leaf()),
    };
    let ok = match (route.raw_response, method.is_server_streaming()) {
        (true, streaming) => ResponseBuilder::new()
            .description(if streaming {
                "The raw reply (google.api.HttpBody), as a chunked download; its content type is the first message's."
            } else {
                "The raw reply (google.api.HttpBody), with its own content type."
            })
            .content("*/*", ContentBuilder::new().schema(Some(binary())).build()),
        (false, true) => {
            let array: RefOr<Schema> = ArrayBuilder::new().items(reply.clone()).into();
            ResponseBuilder::new()
                .description("A stream of messages, framed by `Accept`: one JSON object per line (NDJSON, the default), Server-Sent Events, or one JSON array written as messages arrive. An error after the first message is the last line, an `error` event or the last element. Also served over a WebSocket, one message per text frame.")
                .content("application/x-ndjson", ContentBuilder::new().schema(Some(reply.clone())).build())
                .content("text/event-stream", ContentBuilder::new().schema(Some(reply)).build())
                .content("application/json", ContentBuilder::new().schema(Some(array)).build())
        }
        (false, false) if route.success_status == http::StatusCode::NO_CONTENT => {
            ResponseBuilder::new().description("No Content: the reply is empty (google.protobuf.Empty).")
        }
        (false, false) => {
            let what = match route.success_status {
                http::StatusCode::CREATED => "Created (its `Location` names it)",
                http::StatusCode::ACCEPTED => "Accepted: a long-running operation",
                _ => "OK",
            };
            let mut ok = ResponseBuilder::new()
                .description(format!("{what}: proto3 JSON, or with `Accept: application/x-protobuf` the binary message."));
            if route.success_status == http::StatusCode::CREATED {
                ok = ok.header(
                    "Location",
                    utoipa::openapi::header::HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .description(Some("Where the created resource is read back."))
                        .build(),
                );
            }
            let ok = ok
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(reply)).build(),
                );
            let binary_reply = match &route.response_body {
                None => true,
                Some(path) => {
                    let leaf = path.leaf();
                    matches!(leaf.kind(), prost_reflect::Kind::Message(_))
                        && !leaf.is_list()
                        && !leaf.is_map()
                }
            };
            if binary_reply {
                ok.content(PROTOBUF, ContentBuilder::new().schema(Some(binary())).build())
            } else {
                ok
            }
        }
    };
    let error = ResponseBuilder::new()
        .description(
            "An error, in the google.rpc.Status shape; the HTTP status follows the gRPC code.",
        )
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(schemas.status())).build(),
        );
    op.response(route.success_status.as_str(), ok.build())
        .response("default", error.build())
        .build()
}

/// The media type of binary protobuf bodies and replies in the document
/// (the gateway also takes `application/protobuf` and `application/proto`).
const PROTOBUF: &str = "application/x-protobuf";

/// Raw bytes of any content type.
fn binary() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(utoipa::openapi::schema::SchemaFormat::KnownFormat(
            utoipa::openapi::schema::KnownFormat::Binary,
        )))
        .into()
}

/// The body schema for `body: "*"`: the input message, without top-level fields the path binds.
fn whole_body_schema(route: &Route, schemas: &mut Schemas<'_>) -> RefOr<Schema> {
    let input = route.method.input();
    let bound: Vec<&FieldDescriptor> = route
        .path_fields
        .iter()
        .filter(|p| p.fields().len() == 1)
        .map(|p| p.leaf())
        .collect();
    if bound.is_empty() {
        return schemas.message(&input);
    }
    let mut object = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(schemas.comment(input.parent_file().name(), input.path()));
    for field in input.fields().filter(|f| !bound.contains(&f)) {
        let name = schemas.field_name(&field);
        let schema = schemas.field(&field);
        object = object.property(name.clone(), schema);
        if schemas.is_required(&field) {
            object = object.required(name);
        }
    }
    RefOr::T(Schema::Object(object.build()))
}

/// The OpenAPI parameters of the `{…}` [`openapi_path`] named.
fn path_parameters(
    route: &Route,
    params: &[PathParam<'_>],
    schemas: &mut Schemas<'_>,
) -> Vec<utoipa::openapi::path::Parameter> {
    let t = &route.template;
    let mut out = Vec::new();
    for entry in params {
        match *entry {
            PathParam::Variable {
                ref name,
                var,
                field,
            } => {
                let leaf = field.leaf();
                let mut description = schemas.comment(leaf.parent_file().name(), leaf.path());
                if var.field_path.len() > 1 {
                    let note = format!("Sets `{}`.", var.field_path_string());
                    description = Some(match description {
                        Some(d) => format!("{d}\n\n{note}"),
                        None => note,
                    });
                }
                if t.is_multi_segment(var) {
                    let segments = &t.segments[var.start..var.end];
                    let pattern = format!(
                        "^{}$",
                        segments
                            .iter()
                            .map(segment_regex)
                            .collect::<Vec<_>>()
                            .join("/")
                    );
                    let shape = segments
                        .iter()
                        .map(|s| match s {
                            Segment::Literal(l) => l.as_str(),
                            Segment::Wildcard => "*",
                            Segment::DeepWildcard => "**",
                        })
                        .collect::<Vec<_>>()
                        .join("/");
                    let text = format!(
                        "{}\n\nA resource name of the form `{shape}`.",
                        description.unwrap_or_default()
                    );
                    // One name of the form, so clients and test generators
                    // have a value the pattern accepts.
                    let example = segments
                        .iter()
                        .map(|s| match s {
                            Segment::Literal(l) => l.as_str(),
                            Segment::Wildcard => "1",
                            Segment::DeepWildcard => "a/b",
                        })
                        .collect::<Vec<_>>()
                        .join("/");
                    let mut schema = ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(pattern))
                        .build();
                    schema.examples = vec![serde_json::Value::String(example)];
                    out.push(param(
                        name,
                        ParameterIn::Path,
                        text.trim().to_owned(),
                        RefOr::T(Schema::Object(schema)),
                    ));
                } else {
                    out.push(param(
                        name,
                        ParameterIn::Path,
                        description.unwrap_or_default(),
                        schemas.kind(&leaf.kind()),
                    ));
                }
            }
            PathParam::Segment { ref name, n, var } => {
                let schema = ObjectBuilder::new().schema_type(Type::String).build();
                let text = format!("Segment {n} of `{}`.", var.field_path_string());
                out.push(param(
                    name,
                    ParameterIn::Path,
                    text,
                    RefOr::T(Schema::Object(schema)),
                ));
            }
            PathParam::Anonymous { ref name } => {
                let schema = ObjectBuilder::new().schema_type(Type::String).build();
                out.push(param(
                    name,
                    ParameterIn::Path,
                    "Any path segment.".to_owned(),
                    RefOr::T(Schema::Object(schema)),
                ));
            }
        }
    }
    out
}

/// A variable's parameter name: its field path with `_` for `.`, since
/// tools that fill templates with Python's `str.format` read `.` as attribute access.
fn param_name(var: &Variable) -> String {
    var.field_path.join("_")
}

fn segment_regex(segment: &Segment) -> String {
    match segment {
        Segment::Literal(l) => l
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c.to_string()
                } else {
                    format!("\\{c}")
                }
            })
            .collect(),
        Segment::Wildcard => "[^/]+".to_owned(),
        Segment::DeepWildcard => ".*".to_owned(),
    }
}

fn param(
    name: &str,
    location: ParameterIn,
    description: String,
    schema: RefOr<Schema>,
) -> utoipa::openapi::path::Parameter {
    let required = if location == ParameterIn::Path {
        Required::True
    } else {
        Required::False
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(location)
        .required(required)
        .description((!description.is_empty()).then_some(description))
        .schema(Some(schema))
        .build()
}

/// Every field the query may set: scalars, enums, repeated scalars and
/// scalar-like well-known types, nested singular messages by dotted names.
fn query_parameters(
    route: &Route,
    message: &MessageDescriptor,
    prefix: &mut Vec<FieldDescriptor>,
    prefix_name: &str,
    schemas: &mut Schemas<'_>,
    out: &mut Vec<utoipa::openapi::path::Parameter>,
) {
    for field in message.fields() {
        prefix.push(field.clone());
        let bound = is_bound(route, prefix);
        let name = format!("{prefix_name}{}", schemas.field_name(&field));
        if !bound && !field.is_map() {
            match field.kind() {
                Kind::Message(m) if !is_scalar_like(&m) => {
                    // Stop at cycles, and at well-known types the query cannot spell (Struct, Any, ...).
                    let cycle = prefix[..prefix.len() - 1]
                        .iter()
                        .any(|f| f.kind() == field.kind())
                        || m == *message;
                    let well_known = m.package_name() == "google.protobuf";
                    if !field.is_list() && !cycle && !well_known && prefix.len() < MAX_QUERY_DEPTH {
                        query_parameters(route, &m, prefix, &format!("{name}."), schemas, out);
                    }
                }
                kind => {
                    let description = schemas
                        .comment(field.parent_file().name(), field.path())
                        .unwrap_or_default();
                    let single = schemas.kind(&kind);
                    let schema = if field.is_list() {
                        RefOr::T(Schema::Array(ArrayBuilder::new().items(single).build()))
                    } else {
                        single
                    };
                    out.push(param(&name, ParameterIn::Query, description, schema));
                }
            }
        }
        prefix.pop();
    }
}

/// Tag (and operationId prefix) per service: the short name, or the full
/// name where two served services share a short name.
struct TagNames {
    names: HashMap<String, String>,
}

impl TagNames {
    /// The service's short name; where two services share it, the short name
    /// and API version (`UserService_v1`), and where that clashes too, the full name.
    fn new(routes: &[Arc<Route>]) -> Self {
        let mut services: Vec<prost_reflect::ServiceDescriptor> = routes
            .iter()
            .map(|r| r.method.parent_service().clone())
            .collect();
        services.sort_by(|a, b| a.full_name().cmp(b.full_name()));
        services.dedup_by(|a, b| a.full_name() == b.full_name());
        let short = |s: &prost_reflect::ServiceDescriptor| s.name().to_owned();
        let versioned = |s: &prost_reflect::ServiceDescriptor| {
            api_version(s).map(|v| format!("{}_{v}", s.name()))
        };
        let mut counts: HashMap<String, usize> = HashMap::new();
        for s in &services {
            *counts.entry(short(s)).or_default() += 1;
            if let Some(v) = versioned(s) {
                *counts.entry(v).or_default() += 1;
            }
        }
        let names = services
            .iter()
            .map(|s| {
                let name = if counts[&short(s)] == 1 {
                    short(s)
                } else {
                    match versioned(s) {
                        Some(v) if counts[&v] == 1 => v,
                        _ => s.full_name().replace('.', "_"),
                    }
                };
                (s.full_name().to_owned(), name)
            })
            .collect();
        Self { names }
    }

    fn name(&self, service: &str) -> String {
        self.names
            .get(service)
            .cloned()
            .unwrap_or_else(|| service.replace('.', "_"))
    }

    fn tags(
        &self,
        routes: &[Arc<Route>],
        comments: &Comments,
        notes: Option<&annotations::Annotations>,
    ) -> Vec<utoipa::openapi::tag::Tag> {
        let mut seen = HashSet::new();
        routes
            .iter()
            .map(|r| r.method.parent_service())
            .filter(|s| seen.insert(s.full_name().to_owned()))
            .map(|s| {
                let description = comments
                    .get(s.parent_file().name(), s.path())
                    .map(str::to_owned);
                let option = notes.and_then(|n| n.tag(s));
                let mut tag = TagBuilder::new()
                    .name(self.name(s.full_name()))
                    .description(
                        option
                            .as_ref()
                            .and_then(|o| annotations::text(o, "description"))
                            .or(description),
                    )
                    .build();
                tag.external_docs = option.as_ref().and_then(annotations::external_docs);
                tag
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;

/// The JSON Schema (2020-12) of one message, self-contained: the message
/// at the root, every message it refers to under `$defs`. The schemas are
/// the OpenAPI document's, from the same generator, so the two cannot
/// drift (MCP tools describe their input and output with these).
pub fn message_schema(
    pool: &DescriptorPool,
    comments: &Comments,
    json: crate::config::JsonOptions,
    message: &MessageDescriptor,
) -> serde_json::Value {
    let mut schemas = Schemas::new(pool, comments, json);
    let root = schemas.message(message);
    let mut defs = serde_json::Map::new();
    for (name, schema) in schemas.into_components() {
        defs.insert(name, serde_json::to_value(schema).unwrap_or_default());
    }
    let mut root = match root {
        RefOr::Ref(_) => defs.get(message.full_name()).cloned().unwrap_or_default(),
        RefOr::T(schema) => serde_json::to_value(schema).unwrap_or_default(),
    };
    let mut defs = serde_json::Value::Object(defs);
    local_refs(&mut root);
    local_refs(&mut defs);
    if let serde_json::Value::Object(map) = &mut root
        && defs.as_object().is_some_and(|d| !d.is_empty())
    {
        map.insert("$defs".to_owned(), defs);
    }
    root
}

/// `#/components/schemas/X` references as `#/$defs/X`.
fn local_refs(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if key == "$ref"
                    && let serde_json::Value::String(target) = v
                    && let Some(name) = target.strip_prefix("#/components/schemas/")
                {
                    *target = format!("#/$defs/{name}");
                } else {
                    local_refs(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(local_refs),
        _ => {}
    }
}
