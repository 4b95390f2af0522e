//! The route table: every HTTP binding compiled once into a segment trie.
//!
//! [`RouteTable::build`] reads each served method's `google.api.http` rule,
//! checks its template and fields against the descriptors and inserts it;
//! [`RouteTable::lookup`] matches a request. Precedence, segment by segment
//! from the left: a literal beats `*`, which beats `**`; a binding with a
//! custom verb beats one without; an exact HTTP method beats a `*` custom
//! kind. The table is immutable once built, so it can be swapped as a whole.
//!
//! A binding that breaks a rule of `http.proto` (a bad template, a field that
//! is missing or cannot be bound that way) is left out and reported as a
//! [`RouteProblem`]; the method's other bindings and all other methods are
//! still routed, since descriptors may come from other teams by reflection.
//! Bindings that answer the same requests (same shape, verb and HTTP method)
//! are given to the first in this order: `http.rules` from the config (in
//! file order), then annotations, then `fallback_routes`; within each, by
//! full method name, then main binding before additional ones. The others are
//! problems too, except an exact repeat of a binding of the same method,
//! which is routed once ([`ProblemKind::Duplicate`], a warning). Mistakes in
//! the config itself (unknown names, a config rule without or with two
//! patterns) are still [`RouteError`]s.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use http::{HeaderMap, Method};
use percent_encoding::percent_decode_str;
use prost_reflect::{DescriptorPool, FieldDescriptor, Kind, MethodDescriptor};

use super::api::deprecation_headers;
use super::field_path::{FieldPath, FieldPathError};
use super::rule::{Binding, HTTP_EXTENSION, HttpRule, RuleError, method_rule};

use super::template::{
    PathTemplate, Segment, TemplateError, decode, has_valid_escapes, is_dot_segment,
};
use crate::config::{BackendConfig, Config, UnknownFields};

/// `google.api.HttpBody`, the message of raw HTTP bodies.
const HTTP_BODY: &str = "google.api.HttpBody";

/// Which HTTP methods a route answers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MethodMatch {
    /// One method.
    Exact(Method),
    /// Any method (`custom { kind: "*" }`).
    Any,
}

impl std::fmt::Display for MethodMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(m) => f.write_str(m.as_str()),
            Self::Any => f.write_str("*"),
        }
    }
}

/// Where the request body goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRule {
    /// No body allowed.
    None,
    /// `body: "*"`: the whole request message.
    Whole,
    /// `body: "field"`: one field.
    Field(FieldPath),
}

impl BodyRule {
    /// The field the body goes to, for `body: "field"`.
    pub fn field(&self) -> Option<&FieldPath> {
        match self {
            Self::Field(path) => Some(path),
            _ => None,
        }
    }
}

/// One HTTP binding of a gRPC method, with everything a request needs precomputed.
#[derive(Debug, Clone)]
pub struct Route {
    /// The gRPC method.
    pub method: MethodDescriptor,
    /// The HTTP method(s).
    pub http_method: MethodMatch,
    /// The path template.
    pub template: PathTemplate,
    /// Resolved fields, one per `template.variables` entry.
    pub path_fields: Vec<FieldPath>,
    /// The body mapping.
    pub body: BodyRule,
    /// `response_body`, when set.
    pub response_body: Option<FieldPath>,
    /// The body (per `body`) is a `google.api.HttpBody`: raw bytes of any
    /// content type, not JSON.
    pub raw_request: bool,
    /// The reply is a `google.api.HttpBody`: its content type and bytes are
    /// the HTTP response.
    pub raw_response: bool,
    /// `/package.Service/Method`.
    pub grpc_path: PathAndQuery,
    /// The backends serving the method: one, or several sharing its traffic by weight.
    pub backends: Vec<RouteBackend>,
    /// Sum of the backends' weights.
    pub total_weight: u32,
    /// `Deprecation`, `Sunset` and `Link` headers for every reply of a deprecated API.
    pub deprecation: Option<Arc<HeaderMap>>,
    /// Policy for query parameters naming no field.
    pub unknown_query_parameters: UnknownFields,
    /// Policy for JSON fields naming no field.
    pub unknown_json_fields: UnknownFields,
    /// The method may run twice (`methods.<name>.idempotent`, else its
    /// `idempotency_level`): retried by a backend's `retry` policy.
    pub idempotent: bool,
    /// A PATCH whose input has a `google.protobuf.FieldMask update_mask`
    /// the URL does not bind, with a body field (AIP-134): the mask field,
    /// filled from the body's keys when the client sends no mask
    /// (`methods.<name>.patch_update_mask`, default on).
    pub fill_update_mask: Option<prost_reflect::FieldDescriptor>,
    /// The status of a successful REST answer: `methods.<name>.status`,
    /// else by convention (`transcoding.conventional_status`): 201 for a
    /// `Create*` method on POST, 204 for a `google.protobuf.Empty` reply,
    /// 202 for a `google.longrunning.Operation`; 200 otherwise and for
    /// streams and raw replies.
    pub success_status: http::StatusCode,
    /// 0 for the main rule, 1.. for additional bindings.
    pub binding: usize,
    /// Position in the table, for per-route state kept elsewhere (auth).
    pub index: usize,
}

/// One backend a route may call.
#[derive(Debug, Clone)]
pub struct RouteBackend {
    /// Index into the config's backends.
    pub index: usize,
    /// The backend's name.
    pub name: String,
    /// Share of the route's traffic (1 when it is the only backend).
    pub weight: u32,
    /// Default deadline: the method's, else the backend's.
    pub timeout: Duration,
    /// Largest reply message accepted from the backend.
    pub max_response_bytes: usize,
}

impl Route {
    /// Whether either side of the method streams.
    pub fn is_streaming(&self) -> bool {
        self.method.is_client_streaming() || self.method.is_server_streaming()
    }
}

/// See [`Route::success_status`].
fn success_status(
    method: &MethodDescriptor,
    http_method: &MethodMatch,
    partial_reply: bool,
    configured: Option<http::StatusCode>,
    conventional: bool,
) -> http::StatusCode {
    use http::StatusCode;
    if let Some(status) = configured {
        return status;
    }
    let streaming = method.is_client_streaming() || method.is_server_streaming();
    if !conventional || streaming || partial_reply {
        return StatusCode::OK;
    }
    let post = matches!(http_method, MethodMatch::Exact(m) if m == http::Method::POST);
    match method.output().full_name() {
        "google.protobuf.Empty" => StatusCode::NO_CONTENT,
        "google.longrunning.Operation" => StatusCode::ACCEPTED,
        _ if post && method.name().starts_with("Create") => StatusCode::CREATED,
        _ => StatusCode::OK,
    }
}

/// The `update_mask` a PATCH route fills from its body's keys; see
/// [`Route::fill_update_mask`].
fn update_mask_to_fill(
    method: &MethodDescriptor,
    http_method: &MethodMatch,
    body: &BodyRule,
    path_fields: &[FieldPath],
    enabled: bool,
) -> Option<prost_reflect::FieldDescriptor> {
    let patch = matches!(http_method, MethodMatch::Exact(m) if m == http::Method::PATCH);
    if !enabled || !patch || !matches!(body, BodyRule::Field(_)) {
        return None;
    }
    let mask = method.input().get_field_by_name("update_mask")?;
    let is_mask =
        matches!(mask.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask");
    let bound = path_fields.iter().any(|p| p.fields()[0] == mask);
    (is_mask && !mask.is_list() && !bound).then_some(mask)
}

/// A successful lookup.
#[derive(Debug)]
pub struct RouteMatch<'a, P = Arc<Route>> {
    /// The route's payload: the route itself, or what was compiled for it.
    pub route: &'a P,
    /// Captured values, parallel to `route.path_fields`.
    pub values: Vec<String>,
}

/// Why a request matched no route.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// No template matches the path.
    #[error("no route for {path}")]
    NotFound {
        /// The request path.
        path: String,
    },
    /// Some template matches, but not for this method.
    #[error("method {method} is not allowed for {path}")]
    MethodNotAllowed {
        /// The request's HTTP method.
        method: String,
        /// The request path.
        path: String,
        /// HTTP methods that the path does accept.
        allowed: Vec<String>,
    },
    /// The path has `.` or `..` segments.
    #[error("path {path} has '.' or '..' segments")]
    DotSegment {
        /// The request path.
        path: String,
    },
    /// A percent-encoding in the path does not decode to UTF-8.
    #[error("path {path} has percent-encoded bytes that are not UTF-8")]
    BadEncoding {
        /// The request path.
        path: String,
    },
    /// A `%` in the path does not start an escape of two hex digits.
    #[error("path {path} has a malformed percent-escape")]
    BadEscape {
        /// The request path.
        path: String,
    },
}

impl LookupError {
    /// The error without the request path, for logs: a path can carry
    /// identifiers or personal data.
    pub fn redacted(&self) -> String {
        match self {
            Self::NotFound { .. } => "no route for the path".to_owned(),
            Self::MethodNotAllowed {
                method, allowed, ..
            } => format!(
                "method {method} is not allowed here (allowed: {})",
                allowed.join(", ")
            ),
            Self::DotSegment { .. } => "path has '.' or '..' segments".to_owned(),
            Self::BadEncoding { .. } => {
                "path has percent-encoded bytes that are not UTF-8".to_owned()
            }
            Self::BadEscape { .. } => "path has a malformed percent-escape".to_owned(),
        }
    }
}

/// Why the table could not be built: a mistake in the config itself.
/// Problems of single bindings are [`RouteProblem`]s instead.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// A rule of `http.rules` is malformed.
    #[error("{method}: {source}")]
    Rule {
        /// Full name of the gRPC method.
        method: String,
        /// What is wrong with the rule.
        source: RuleError,
    },
    /// A configured service or method is not in the descriptors.
    #[error("{key}: {name} is not in the loaded descriptors")]
    Unknown {
        /// The configuration key that names it.
        key: String,
        /// The service or method name as configured.
        name: String,
    },
    /// A service is claimed by two backends that do not both set a weight.
    #[error(
        "service {service} is matched by backends {first} and {second}; set `weight` on each to split its traffic"
    )]
    TwoBackends {
        /// Full name of the service.
        service: String,
        /// Name of the first backend.
        first: String,
        /// Name of the second backend.
        second: String,
    },
    /// A service is in two API groups.
    #[error("service {service} is in apis[{first}] and apis[{second}]")]
    TwoApis {
        /// Full name of the service.
        service: String,
        /// Index of the first group.
        first: usize,
        /// Index of the second group.
        second: usize,
    },
    /// A configured HTTP rule names a method that no backend serves.
    #[error("http.rules[{index}].selector: no backend serves {selector}")]
    UnservedRule {
        /// Index of the rule.
        index: usize,
        /// The rule's selector.
        selector: String,
    },
}

/// What is wrong with a binding; the label of the `route_problems` metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The rule is malformed: no pattern, nested additional bindings, an
    /// HTTP method that is empty or not a token, an unreadable option.
    Rule,
    /// The path template does not parse.
    Template,
    /// A path variable, `body` or `response_body` names a field that does
    /// not exist or cannot be bound that way (e.g. a repeated field in the path).
    Field,
    /// Another binding, earlier in the order of precedence, answers the same requests.
    Conflict,
    /// An exact repeat of an earlier binding of the same method (same HTTP
    /// method, pattern, body and response body): routed once. A warning.
    Duplicate,
}

impl ProblemKind {
    /// The kinds that leave a binding unrouted (all but [`ProblemKind::Duplicate`]).
    pub const LEFT_OUT: [Self; 4] = [Self::Rule, Self::Template, Self::Field, Self::Conflict];

    /// The lower-case name, as in logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rule => "rule",
            Self::Template => "template",
            Self::Field => "field",
            Self::Conflict => "conflict",
            Self::Duplicate => "duplicate",
        }
    }

    /// Whether the binding is left out: an error, not a warning.
    pub fn is_error(self) -> bool {
        self != Self::Duplicate
    }
}

impl std::fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A binding left out of the table (or, for a duplicate, routed once), and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteProblem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// Full name of the gRPC method.
    pub method: String,
    /// The binding's HTTP method and pattern as written (`GET /v1/{id}`),
    /// or `google.api.http` when the binding has no usable pattern.
    pub rule: String,
    /// Why, naming the field or the binding that keeps the route.
    pub reason: String,
}

impl std::fmt::Display for RouteProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}: {}", self.method, self.rule, self.reason)
    }
}

#[derive(Debug, Default)]
struct Node {
    literal: HashMap<String, Node>,
    wildcard: Option<Box<Node>>,
    deep: Option<Box<Node>>,
    ends: Vec<End>,
}

#[derive(Debug)]
struct End {
    verb: Option<String>,
    method: MethodMatch,
    route: usize,
}

/// The compiled, immutable set of routes, each carrying a payload `P`:
/// the [`Route`] itself as built here, or whatever a caller compiles for
/// each route once ([`RouteTable::map`]), so a lookup hands back everything a
/// request on that route needs.
#[derive(Debug)]
pub struct RouteTable<P = Arc<Route>> {
    routes: Vec<P>,
    match_encoded_slashes: bool,
    root: Node,
    verbs: Vec<String>,
    methods: Vec<Method>,
    problems: Vec<RouteProblem>,
}

impl<P> Default for RouteTable<P> {
    fn default() -> Self {
        Self {
            routes: Vec::new(),
            match_encoded_slashes: false,
            root: Node::default(),
            verbs: Vec::new(),
            methods: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// Where a binding comes from; earlier origins win conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Origin {
    /// `http.rules[i]` of the config: the operator's explicit choice.
    Config(usize),
    /// The method's `google.api.http` annotation.
    Annotation,
    /// `transcoding.fallback_routes`.
    Fallback,
}

/// A compiled binding that has yet to claim its requests.
struct Candidate {
    route: Route,
    /// `GET /v1/{id}` as written, for problems.
    rule: String,
    origin: Origin,
}

impl Candidate {
    /// Lowest first claims a route: see the module docs.
    fn precedence(&self) -> (Origin, &str, usize) {
        (
            self.origin,
            self.route.method.full_name(),
            self.route.binding,
        )
    }
}

impl RouteTable {
    /// Builds the table for every service that a backend serves. Bindings
    /// that cannot be routed are left out and listed by [`RouteTable::problems`].
    ///
    /// # Errors
    /// A [`RouteError`] for a mistake in the config: a service, method or
    /// rule selector that is not in the descriptors, a malformed `http.rules`
    /// entry, a service claimed by two backends or two API groups.
    pub fn build(pool: &DescriptorPool, config: &Config) -> Result<Self, RouteError> {
        for (i, backend) in config.backends.iter().enumerate() {
            for pattern in &backend.services {
                if let crate::config::ServicePattern::Exact(name) = pattern
                    && pool.get_service_by_name(name).is_none()
                {
                    return Err(RouteError::Unknown {
                        key: format!("backends.{}.services", config.backends[i].name),
                        name: name.clone(),
                    });
                }
            }
        }
        let method_exists = |name: &str| {
            name.rsplit_once('.')
                .and_then(|(svc, m)| pool.get_service_by_name(svc).map(|s| (s, m)))
                .is_some_and(|(s, m)| s.methods().any(|x| x.name() == m))
        };
        for name in config.methods.keys() {
            if !method_exists(name) {
                return Err(RouteError::Unknown {
                    key: format!("methods.{name}"),
                    name: name.clone(),
                });
            }
        }
        let mut configured: HashMap<&str, (usize, Vec<Binding>)> = HashMap::new();
        for (i, section) in config.http_rules.iter().enumerate() {
            if !method_exists(&section.selector) {
                return Err(RouteError::Unknown {
                    key: format!("http.rules[{i}].selector"),
                    name: section.selector.clone(),
                });
            }
            let rule_err = |source| RouteError::Rule {
                method: section.selector.clone(),
                source,
            };
            let bindings = HttpRule::from_config(section)
                .map_err(rule_err)?
                .bindings()
                .into_iter()
                .collect::<Result<_, _>>()
                .map_err(rule_err)?;
            configured.insert(section.selector.as_str(), (i, bindings));
        }

        let mut candidates = Vec::new();
        let mut problems = Vec::new();
        for service in pool.services() {
            let serving: Vec<(usize, &BackendConfig)> = config
                .backends
                .iter()
                .enumerate()
                .filter(|(_, b)| b.services.iter().any(|p| p.matches(service.full_name())))
                .collect();
            let Some(&(_, first)) = serving.first() else {
                tracing::debug!(
                    service = service.full_name(),
                    "no backend serves this service"
                );
                continue;
            };
            // A split must be asked for: a second backend matching by accident fails closed.
            if let Some(&(_, second)) = serving.get(1)
                && serving.iter().any(|(_, b)| b.weight.is_none())
            {
                return Err(RouteError::TwoBackends {
                    service: service.full_name().to_owned(),
                    first: first.name.clone(),
                    second: second.name.clone(),
                });
            }
            let mut groups = config
                .apis
                .iter()
                .enumerate()
                .filter(|(_, a)| a.services.iter().any(|p| p.matches(service.full_name())));
            let group = groups.next();
            if let (Some((first, _)), Some((second, _))) = (group, groups.next()) {
                return Err(RouteError::TwoApis {
                    service: service.full_name().to_owned(),
                    first,
                    second,
                });
            }
            let api = group.map(|(_, a)| a);
            let prefix = api.and_then(|a| a.prefix.as_deref()).unwrap_or_default();
            let deprecation = api
                .and_then(|a| a.deprecation.as_ref())
                .map(|d| Arc::new(deprecation_headers(d)));
            for method in service.methods() {
                let name = method.full_name();
                let unreadable = |source: RuleError| RouteProblem {
                    kind: ProblemKind::Rule,
                    method: name.to_owned(),
                    rule: HTTP_EXTENSION.to_owned(),
                    reason: source.to_string(),
                };
                let (origin, bindings) = match configured.remove(name) {
                    Some((i, bindings)) => {
                        (Origin::Config(i), bindings.into_iter().map(Ok).collect())
                    }
                    None => match method_rule(pool, &method) {
                        Ok(Some(rule)) => (Origin::Annotation, rule.bindings()),
                        Ok(None) if config.transcode.fallback_routes => {
                            (Origin::Fallback, vec![Ok(Binding::fallback(&method))])
                        }
                        Ok(None) => {
                            tracing::debug!(method = %name, "no google.api.http rule");
                            continue;
                        }
                        Err(source) => {
                            problems.push(unreadable(source));
                            continue;
                        }
                    },
                };
                let overrides = config.methods.get(name);
                let backends: Vec<RouteBackend> = serving
                    .iter()
                    .map(|&(index, b)| RouteBackend {
                        index,
                        name: b.name.clone(),
                        weight: b.weight.unwrap_or(1),
                        timeout: overrides.and_then(|o| o.timeout).unwrap_or(b.timeout),
                        max_response_bytes: b.max_response_bytes,
                    })
                    .collect();
                for binding in bindings {
                    let binding = match binding {
                        Ok(binding) => binding,
                        Err(source) => {
                            problems.push(unreadable(source));
                            continue;
                        }
                    };
                    let rule = format!("{} {}", binding.http_method, binding.path);
                    let target = Target {
                        backends: backends.clone(),
                        prefix,
                        deprecation: deprecation.clone(),
                    };
                    match compile(&method, &binding, target, config, overrides) {
                        Ok(route) => candidates.push(Candidate {
                            route,
                            rule,
                            origin,
                        }),
                        Err(Unroutable { kind, reason }) => problems.push(RouteProblem {
                            kind,
                            method: name.to_owned(),
                            rule,
                            reason,
                        }),
                    }
                }
            }
        }
        // A rule for a method no backend serves would silently do nothing.
        if let Some((selector, (index, _))) = configured.iter().min_by_key(|(_, (i, _))| *i) {
            return Err(RouteError::UnservedRule {
                index: *index,
                selector: (*selector).to_owned(),
            });
        }

        let claimed = claim(&candidates, &mut problems);
        // Stable: a method's problems stay in binding order.
        problems.sort_by(|a, b| a.method.cmp(&b.method));
        let mut table = Self {
            match_encoded_slashes: config.transcode.match_encoded_slashes,
            problems,
            ..Self::default()
        };
        // Inserted in descriptor order, not precedence order: `check`, the
        // OpenAPI document and route indexes keep the order of the protos.
        for (candidate, claimed) in candidates.into_iter().zip(claimed) {
            if claimed {
                table.insert(candidate.route);
            }
        }
        Ok(table)
    }

    /// Adds a route whose requests no other route answers (see [`claim`]).
    fn insert(&mut self, mut route: Route) {
        route.index = self.routes.len();
        let mut node = &mut self.root;
        for segment in &route.template.segments {
            node = match segment {
                Segment::Literal(lit) => node.literal.entry(lit.clone()).or_default(),
                Segment::Wildcard => node.wildcard.get_or_insert_with(Default::default),
                Segment::DeepWildcard => node.deep.get_or_insert_with(Default::default),
            };
        }
        node.ends.push(End {
            verb: route.template.verb.clone(),
            method: route.http_method.clone(),
            route: self.routes.len(),
        });
        if let Some(v) = &route.template.verb
            && !self.verbs.contains(v)
        {
            self.verbs.push(v.clone());
        }
        if let MethodMatch::Exact(m) = &route.http_method
            && !self.methods.contains(m)
        {
            self.methods.push(m.clone());
        }
        self.routes.push(Arc::new(route));
    }
}

impl<P> RouteTable<P> {
    /// The same table with each route's payload compiled by `plan`, once.
    ///
    /// # Errors
    /// The first error `plan` returns.
    pub fn map<Q, E>(self, plan: impl FnMut(P) -> Result<Q, E>) -> Result<RouteTable<Q>, E> {
        Ok(RouteTable {
            routes: self
                .routes
                .into_iter()
                .map(plan)
                .collect::<Result<_, _>>()?,
            match_encoded_slashes: self.match_encoded_slashes,
            root: self.root,
            verbs: self.verbs,
            methods: self.methods,
            problems: self.problems,
        })
    }

    /// The bindings left out of the table and the duplicates routed once,
    /// by method name: the one list that logs, metrics, `check` and
    /// `descriptors.strict` use.
    pub fn problems(&self) -> &[RouteProblem] {
        &self.problems
    }

    /// All routes' payloads in insertion order.
    pub fn routes(&self) -> &[P] {
        &self.routes
    }
}

/// What a [`RouteTable`] carries per route: anything that knows its route.
pub trait RoutePayload {
    /// The route this payload was compiled for.
    fn route(&self) -> &Arc<Route>;
}

impl RoutePayload for Arc<Route> {
    fn route(&self) -> &Arc<Route> {
        self
    }
}

impl<P: RoutePayload> RouteTable<P> {
    /// Matches a request's method and raw (percent-encoded) path.
    ///
    /// # Errors
    /// [`LookupError::NotFound`] when no template matches,
    /// [`LookupError::MethodNotAllowed`] with the allowed methods when only
    /// the method is wrong, [`LookupError::DotSegment`] for `.`/`..` segments,
    /// [`LookupError::BadEscape`] and [`LookupError::BadEncoding`] for
    /// percent-escapes that are malformed or not UTF-8.
    pub fn lookup(&self, method: &Method, path: &str) -> Result<RouteMatch<'_, P>, LookupError> {
        let segments = split_segments(path)?;
        if let Some(found) = self.find(method, &segments) {
            return Ok(found);
        }
        // OpenAPI clients encode the slashes of multi-segment path parameters.
        let unescaped = (self.match_encoded_slashes
            && (path.contains("%2F") || path.contains("%2f")))
        .then(|| path.replace("%2F", "/").replace("%2f", "/"));
        let unescaped_segments = unescaped.as_deref().map(split_segments).transpose()?;
        if let Some(u) = &unescaped_segments
            && let Some(found) = self.find(method, u)
        {
            return Ok(found);
        }
        let allowed: BTreeSet<String> = self
            .methods
            .iter()
            .filter(|m| *m != method)
            .filter(|m| {
                self.find(m, &segments).is_some()
                    || unescaped_segments
                        .as_deref()
                        .is_some_and(|u| self.find(m, u).is_some())
            })
            .map(|m| m.as_str().to_owned())
            .collect();
        if allowed.is_empty() {
            Err(LookupError::NotFound {
                path: path.to_owned(),
            })
        } else {
            Err(LookupError::MethodNotAllowed {
                method: method.as_str().to_owned(),
                path: path.to_owned(),
                allowed: allowed.into_iter().collect(),
            })
        }
    }

    /// Matches split segments: first as `...:verb` when the last segment ends
    /// in a known verb (so "/v1/x:cancel" is the verb, not part of `{id}`),
    /// then as written.
    fn find(&self, method: &Method, segments: &[&str]) -> Option<RouteMatch<'_, P>> {
        if let Some((last, init)) = segments.split_last()
            && let Some((head, verb)) = last.rsplit_once(':')
            && self.verbs.iter().any(|v| v == verb)
            && (!head.is_empty() || init.is_empty())
        {
            let mut stripped = init.to_vec();
            if !head.is_empty() {
                stripped.push(head);
            }
            if let Some(found) = self.capture(method, &stripped, Some(verb)) {
                return Some(found);
            }
        }
        self.capture(method, segments, None)
    }

    fn capture(
        &self,
        method: &Method,
        segments: &[&str],
        verb: Option<&str>,
    ) -> Option<RouteMatch<'_, P>> {
        let idx = search(&self.root, segments, 0, verb, method)?;
        let payload = self.routes.get(idx)?;
        let route = payload.route();
        let values = route
            .template
            .variables
            .iter()
            .map(|v| route.template.capture_value(v, segments))
            .collect();
        Some(RouteMatch {
            route: payload,
            values,
        })
    }

    /// Matches a WebSocket handshake (a GET): a streaming route bound to GET,
    /// else, as streams usually are, to POST.
    ///
    /// # Errors
    /// As [`RouteTable::lookup`] for the GET.
    pub fn lookup_websocket(
        &self,
        method: &Method,
        path: &str,
    ) -> Result<RouteMatch<'_, P>, LookupError> {
        match self.lookup(method, path) {
            Ok(found) if found.route.route().is_streaming() => Ok(found),
            other => self
                .lookup(&Method::POST, path)
                .ok()
                .filter(|f| f.route.route().is_streaming())
                .map_or(other, Ok),
        }
    }
}

/// Gives the requests of each shape (segments, verb, HTTP method) to the
/// first candidate in precedence order; the others become problems. Returns
/// which candidates are routed.
fn claim(candidates: &[Candidate], problems: &mut Vec<RouteProblem>) -> Vec<bool> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by_key(|&i| candidates[i].precedence());
    let mut owners: HashMap<(&[Segment], Option<&str>, &MethodMatch), usize> = HashMap::new();
    let mut claimed = vec![false; candidates.len()];
    for i in order {
        let candidate = &candidates[i];
        let route = &candidate.route;
        let shape = (
            route.template.segments.as_slice(),
            route.template.verb.as_deref(),
            &route.http_method,
        );
        let first = match owners.entry(shape) {
            Entry::Vacant(slot) => {
                slot.insert(i);
                claimed[i] = true;
                continue;
            }
            Entry::Occupied(owner) => &candidates[*owner.get()],
        };
        let (kind, reason) = if is_repeat(&first.route, route) {
            (
                ProblemKind::Duplicate,
                "repeats an earlier binding of the method exactly; routed once".to_owned(),
            )
        } else {
            (
                ProblemKind::Conflict,
                format!(
                    "answers the same requests as {} of {}, which keeps them",
                    first.rule,
                    first.route.method.full_name()
                ),
            )
        };
        problems.push(RouteProblem {
            kind,
            method: route.method.full_name().to_owned(),
            rule: candidate.rule.clone(),
            reason,
        });
    }
    claimed
}

/// Whether two bindings of one method are the same binding written twice.
fn is_repeat(a: &Route, b: &Route) -> bool {
    a.method == b.method
        && a.http_method == b.http_method
        && a.template.source == b.template.source
        && a.body == b.body
        && a.response_body == b.response_body
}

/// Splits a raw path into segments, refusing `.`/`..` segments (also as the
/// part before a `:verb`) and percent-escapes that are malformed or not UTF-8.
fn split_segments(path: &str) -> Result<Vec<&str>, LookupError> {
    let Some(rest) = path.strip_prefix('/') else {
        return Err(LookupError::NotFound {
            path: path.to_owned(),
        });
    };
    // Decoding would keep `%zz` as text and match it; grpc-gateway's matcher
    // refuses it instead. One scan of the whole path covers the verb too.
    if path.contains('%') && !has_valid_escapes(path) {
        return Err(LookupError::BadEscape {
            path: path.to_owned(),
        });
    }
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    let before_verb = segments
        .last()
        .and_then(|l| l.rsplit_once(':'))
        .map(|(head, _)| head);
    if segments
        .iter()
        .copied()
        .chain(before_verb)
        .any(is_dot_segment)
    {
        return Err(LookupError::DotSegment {
            path: path.to_owned(),
        });
    }
    if segments
        .iter()
        .any(|s| s.contains('%') && percent_decode_str(s).decode_utf8().is_err())
    {
        return Err(LookupError::BadEncoding {
            path: path.to_owned(),
        });
    }
    Ok(segments)
}

fn search(
    node: &Node,
    segments: &[&str],
    i: usize,
    verb: Option<&str>,
    method: &Method,
) -> Option<usize> {
    if i == segments.len() {
        if let Some(found) = end_for(node, verb, method) {
            return Some(found);
        }
    } else {
        let seg = segments[i];
        if let Some(child) = node.literal.get(decode(seg).as_ref())
            && let Some(found) = search(child, segments, i + 1, verb, method)
        {
            return Some(found);
        }
        if !seg.is_empty()
            && let Some(child) = &node.wildcard
            && let Some(found) = search(child, segments, i + 1, verb, method)
        {
            return Some(found);
        }
    }
    // `**` takes whatever is left, including nothing.
    node.deep
        .as_deref()
        .and_then(|deep| end_for(deep, verb, method))
}

fn end_for(node: &Node, verb: Option<&str>, method: &Method) -> Option<usize> {
    let mut any = None;
    for end in node.ends.iter().filter(|e| e.verb.as_deref() == verb) {
        match &end.method {
            MethodMatch::Exact(m) if m == method => return Some(end.route),
            MethodMatch::Any => any = Some(end.route),
            MethodMatch::Exact(_) => {}
        }
    }
    any
}

/// Where a method's routes lead and how they are mounted: the same for all its bindings.
struct Target<'a> {
    backends: Vec<RouteBackend>,
    prefix: &'a str,
    deprecation: Option<Arc<HeaderMap>>,
}

/// Why one binding cannot be compiled.
struct Unroutable {
    kind: ProblemKind,
    reason: String,
}

impl From<TemplateError> for Unroutable {
    fn from(source: TemplateError) -> Self {
        Self {
            kind: ProblemKind::Template,
            reason: source.to_string(),
        }
    }
}

fn compile(
    method: &MethodDescriptor,
    binding: &Binding,
    target: Target<'_>,
    config: &Config,
    overrides: Option<&crate::config::MethodOverrides>,
) -> Result<Route, Unroutable> {
    let name = method.full_name();
    let template = PathTemplate::parse(&format!("{}{}", target.prefix, binding.path))?;
    let rule_err = |reason: String| Unroutable {
        kind: ProblemKind::Rule,
        reason,
    };
    let http_method = if binding.http_method == "*" {
        MethodMatch::Any
    } else {
        MethodMatch::Exact(
            Method::from_bytes(binding.http_method.as_bytes())
                .map_err(|_| rule_err(format!("invalid HTTP method {:?}", binding.http_method)))?,
        )
    };
    let input = method.input();
    let binding_err = |reason: String| Unroutable {
        kind: ProblemKind::Field,
        reason,
    };
    let field_err = |what: String, source: FieldPathError| binding_err(format!("{what}: {source}"));

    let mut path_fields = Vec::new();
    for var in &template.variables {
        let dotted = var.field_path_string();
        let path = FieldPath::resolve(&input, &dotted)
            .map_err(|e| field_err(format!("path variable {dotted:?}"), e))?;
        let leaf = path.leaf();
        if leaf.is_list() || leaf.is_map() || matches!(leaf.kind(), Kind::Message(_)) {
            return Err(binding_err(format!(
                "path variable {dotted:?} must name a singular scalar or enum field"
            )));
        }
        path_fields.push(path);
    }

    let body = match binding.body.as_str() {
        "" => BodyRule::None,
        "*" => BodyRule::Whole,
        field => BodyRule::Field(
            FieldPath::resolve(&input, field)
                .map_err(|e| field_err(format!("body {field:?}"), e))?,
        ),
    };
    if !binding.body.is_empty()
        && matches!(
            http_method,
            MethodMatch::Exact(ref m) if *m == Method::GET || *m == Method::DELETE
        )
    {
        tracing::warn!(method = %name, template = %template, "a request body on GET or DELETE is unusual; some clients cannot send one");
    }

    let response_body = match binding.response_body.as_str() {
        "" => None,
        field => Some(
            FieldPath::resolve(&method.output(), field)
                .map_err(|e| field_err(format!("response_body {field:?}"), e))?,
        ),
    };

    let is_http_body = |kind: Kind| matches!(kind, Kind::Message(m) if m.full_name() == HTTP_BODY);
    let raw_request = match &body {
        BodyRule::None => false,
        BodyRule::Whole => input.full_name() == HTTP_BODY,
        BodyRule::Field(path) => !path.leaf().is_list() && is_http_body(path.leaf().kind()),
    };
    let raw_response = response_body.is_none() && method.output().full_name() == HTTP_BODY;

    let grpc_path = PathAndQuery::try_from(format!(
        "/{}/{}",
        method.parent_service().full_name(),
        method.name()
    ))
    .map_err(|e| rule_err(format!("cannot form the gRPC path: {e}")))?;
    let fill_update_mask = update_mask_to_fill(
        method,
        &http_method,
        &body,
        &path_fields,
        overrides.and_then(|o| o.patch_update_mask).unwrap_or(true),
    );
    let success_status = success_status(
        method,
        &http_method,
        response_body.is_some() || raw_response,
        overrides.and_then(|o| o.status),
        config.transcode.conventional_status,
    );
    Ok(Route {
        method: method.clone(),
        http_method,
        template,
        path_fields,
        body,
        response_body,
        raw_request,
        raw_response,
        grpc_path,
        total_weight: target.backends.iter().map(|b| b.weight).sum(),
        backends: target.backends,
        deprecation: target.deprecation,
        unknown_query_parameters: overrides
            .and_then(|o| o.unknown_query_parameters)
            .unwrap_or(config.transcode.unknown_query_parameters),
        unknown_json_fields: overrides
            .and_then(|o| o.unknown_json_fields)
            .unwrap_or(config.transcode.unknown_json_fields),
        idempotent: overrides
            .and_then(|o| o.idempotent)
            .unwrap_or_else(|| may_run_twice(method)),
        fill_update_mask,
        success_status,
        binding: binding.index,
        index: 0,
    })
}

/// Whether the proto declares `method` safe to run twice: an
/// `idempotency_level` of `IDEMPOTENT` or `NO_SIDE_EFFECTS`.
fn may_run_twice(method: &MethodDescriptor) -> bool {
    use prost_types::method_options::IdempotencyLevel;
    let level = method
        .method_descriptor_proto()
        .options
        .as_ref()
        .map_or(IdempotencyLevel::IdempotencyUnknown, |o| {
            o.idempotency_level()
        });
    matches!(
        level,
        IdempotencyLevel::Idempotent | IdempotencyLevel::NoSideEffects
    )
}

/// Whether `field` is bound by the route's path or body, so the query may not set it.
pub fn is_bound(route: &Route, fields: &[FieldDescriptor]) -> bool {
    let by_body = match &route.body {
        BodyRule::None => false,
        BodyRule::Whole => true,
        BodyRule::Field(path) => path.contains(fields),
    };
    by_body || route.path_fields.iter().any(|p| p.contains(fields))
}

#[cfg(test)]
mod tests;
