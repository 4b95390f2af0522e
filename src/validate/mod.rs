//! Validation before the backend is called: the request message, however
//! it was built (REST path, query and body, Connect, MCP), checked against
//! the rules its descriptors carry.
//!
//! Three rule families, each switchable (`validation:`, globally and per
//! method): `buf.validate` (protovalidate, CEL included, evaluated by the
//! `prost-protovalidate` crate), protoc-gen-validate's `validate.rules`
//! (rewritten into their protovalidate twins once, see [`pgv`]), and
//! `google.api.field_behavior` ([`behavior`]). Which of them a method's
//! input reaches is decided when the gateway is built: a method without
//! rules costs nothing, one with rules decodes its message once.
//!
//! Every violation is reported, not only the first, each with the field
//! as the client wrote it (`items[1].quantity`).

pub mod behavior;
pub mod pgv;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor,
    MethodDescriptor,
};

use crate::config::validation::{OutputOnly, RuleSet, ValidationOptions};

/// One step of a violation's field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    /// The field's proto name (or a oneof's name).
    pub proto: String,
    /// The field's JSON name.
    pub json: String,
    /// `[3]` or `["key"]` after the name.
    pub subscript: Option<String>,
}

impl Element {
    /// The field itself.
    pub fn field(field: &FieldDescriptor) -> Self {
        Self {
            proto: field.name().to_owned(),
            json: field.json_name().to_owned(),
            subscript: None,
        }
    }

    /// Item `index` of a repeated field.
    pub fn index(field: &FieldDescriptor, index: usize) -> Self {
        Self {
            subscript: Some(format!("[{index}]")),
            ..Self::field(field)
        }
    }

    /// The value at `key` of a map field.
    pub fn key(field: &FieldDescriptor, key: &MapKey) -> Self {
        let subscript = match key {
            MapKey::String(s) => serde_json::to_string(s).unwrap_or_default(),
            MapKey::Bool(b) => b.to_string(),
            MapKey::I32(n) => n.to_string(),
            MapKey::I64(n) => n.to_string(),
            MapKey::U32(n) => n.to_string(),
            MapKey::U64(n) => n.to_string(),
        };
        Self {
            subscript: Some(format!("[{subscript}]")),
            ..Self::field(field)
        }
    }
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where, from the request message down.
    pub path: Vec<Element>,
    /// The rule's id (`string.min_len`, `field_behavior.required`, a CEL rule's id).
    pub rule: String,
    /// What is wrong, for people.
    pub message: String,
}

impl Violation {
    /// A violation of `rule` by `field` of the message at `path`.
    pub fn at(path: &[Element], field: &FieldDescriptor, rule: &str, message: &str) -> Self {
        let mut path = path.to_vec();
        path.push(Element::field(field));
        Self {
            path,
            rule: rule.to_owned(),
            message: message.to_owned(),
        }
    }
}

/// How a client named the fields of its request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Written<'a> {
    /// The JSON body as sent, when there is one, and the request field it
    /// fills (`None` for `body: "*"`, the whole message).
    pub body: Option<(&'a [u8], Option<&'a str>)>,
    /// The fields the URL path binds.
    pub path_fields: &'a [crate::http_rule::FieldPath],
    /// The query string.
    pub query: Option<&'a str>,
    /// The client speaks protobuf: fields are named by their proto names.
    pub proto_names: bool,
}

impl Written<'_> {
    /// The field path of `v` as the client wrote it: JSON names unless the
    /// client used the proto name at that point (in the body, the query or
    /// the URL template), `[i]` and `["key"]` subscripts.
    pub fn name(&self, path: &[Element]) -> String {
        let proto_dotted = path
            .iter()
            .map(|e| e.proto.as_str())
            .collect::<Vec<_>>()
            .join(".");
        let proto = self.proto_names
            || self.path_fields.iter().any(|p| p.dotted() == proto_dotted)
            || self.query.is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv.split('=').next() == Some(proto_dotted.as_str()))
            });
        let mut uses_proto = vec![proto; path.len()];
        if !proto && let Some((body, field)) = self.body {
            let skip = match field {
                None => Some(0),
                Some(f) => {
                    let parts: Vec<&str> = f.split('.').collect();
                    let matches = parts.len() <= path.len()
                        && parts.iter().zip(path).all(|(p, e)| *p == e.proto);
                    matches.then_some(parts.len())
                }
            };
            if let Some(skip) = skip
                && let Ok(mut at) = serde_json::from_slice::<serde_json::Value>(body)
            {
                for (i, element) in path.iter().enumerate().skip(skip) {
                    let Some(object) = at.as_object_mut() else {
                        break;
                    };
                    let next = if let Some(v) = object.remove(&element.proto) {
                        uses_proto[i] = element.proto != element.json;
                        v
                    } else if let Some(v) = object.remove(&element.json) {
                        v
                    } else {
                        break;
                    };
                    at = match (&element.subscript, next) {
                        (None, v) => v,
                        (Some(s), serde_json::Value::Array(mut items)) => {
                            let index = s
                                .trim_matches(['[', ']'])
                                .parse::<usize>()
                                .unwrap_or(usize::MAX);
                            if index >= items.len() {
                                break;
                            }
                            items.swap_remove(index)
                        }
                        (Some(s), serde_json::Value::Object(mut entries)) => {
                            let inner = s.trim_start_matches('[').trim_end_matches(']');
                            let key: String =
                                serde_json::from_str(inner).unwrap_or_else(|_| inner.to_owned());
                            match entries.remove(&key) {
                                Some(v) => v,
                                None => break,
                            }
                        }
                        _ => break,
                    };
                }
            }
        }
        let mut out = String::new();
        for (element, proto) in path.iter().zip(uses_proto) {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(if proto { &element.proto } else { &element.json });
            if let Some(s) = &element.subscript {
                out.push_str(s);
            }
        }
        out
    }
}

/// The violations of one request, for the error answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", summary(.message, .violations))]
pub struct Invalid {
    /// The request message's full name.
    pub message: String,
    /// `(field as written, description)`, in the order found.
    pub violations: Vec<(String, String)>,
}

fn summary(message: &str, violations: &[(String, String)]) -> String {
    let mut text = format!("invalid {message}: ");
    for (i, (field, description)) in violations.iter().enumerate() {
        if i > 0 {
            text.push_str("; ");
        }
        if field.is_empty() {
            text.push_str(description);
        } else {
            text.push_str(&format!("{field}: {description}"));
        }
    }
    text
}

/// A method input's rules, ready to check requests with.
#[derive(Clone)]
pub struct MethodRules {
    /// The input type, from the pool whose rules apply.
    input: MessageDescriptor,
    validator: Option<Arc<prost_protovalidate::Validator>>,
    cel: Arc<HashMap<String, String>>,
    behavior: Option<Arc<behavior::Plan>>,
    output_only: OutputOnly,
    update: Option<Update>,
}

impl std::fmt::Debug for MethodRules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MethodRules")
            .field("input", &self.input.full_name())
            .field("protovalidate", &self.validator.is_some())
            .field("field_behavior", &self.behavior.is_some())
            .finish_non_exhaustive()
    }
}

/// An update request (AIP-134): its mask and the resource the mask's paths name.
#[derive(Debug, Clone)]
struct Update {
    mask: FieldDescriptor,
    resource: FieldDescriptor,
    /// The resource reaches an `IMMUTABLE` field.
    immutable: bool,
}

impl Update {
    fn of(input: &MessageDescriptor) -> Option<Self> {
        let mask = input.get_field_by_name("update_mask")?;
        let is_mask = |f: &FieldDescriptor| matches!(f.kind(), Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask");
        if !is_mask(&mask) || mask.is_list() {
            return None;
        }
        let resource = input.fields().find(|f| {
            !f.is_list() && !f.is_map() && !is_mask(f) && matches!(f.kind(), Kind::Message(_))
        })?;
        let immutable = resource.kind().as_message().is_some_and(|m| {
            let mut seen = HashSet::new();
            let mut stack = vec![m.clone()];
            while let Some(m) = stack.pop() {
                if !seen.insert(m.full_name().to_owned()) {
                    continue;
                }
                for f in m.fields() {
                    if behavior::Behaviors::of(&f).immutable {
                        return true;
                    }
                    if let Kind::Message(t) = f.kind() {
                        stack.push(t);
                    }
                }
            }
            false
        });
        Some(Self {
            mask,
            resource,
            immutable,
        })
    }

    /// The mask's paths that name an `IMMUTABLE` field of the resource.
    fn immutable(&self, message: &DynamicMessage, out: &mut Vec<Violation>) {
        let Some(mask) = message.get_field(&self.mask).as_message().cloned() else {
            return;
        };
        let Some(paths) = mask.get_field_by_name("paths") else {
            return;
        };
        let Kind::Message(resource) = self.resource.kind() else {
            return;
        };
        for path in paths.as_list().unwrap_or_default() {
            let Some(path) = path.as_str() else { continue };
            let mut at = Some(resource.clone());
            for segment in path.split('.') {
                let Some(field) = at.as_ref().and_then(|m| m.get_field_by_name(segment)) else {
                    break;
                };
                if behavior::Behaviors::of(&field).immutable {
                    out.push(Violation {
                        path: vec![Element::field(&self.mask)],
                        rule: "field_behavior.immutable".to_owned(),
                        message: format!("field {path:?} is immutable and may not be updated"),
                    });
                    break;
                }
                at = field.kind().as_message().cloned();
            }
        }
    }
}

impl MethodRules {
    /// Checks one encoded request: `Ok(None)` when it passes as it is,
    /// `Ok(Some(bytes))` when it passes once the `OUTPUT_ONLY` fields a
    /// client set are cleared, or every violation.
    ///
    /// # Errors
    /// [`Invalid`], listing every violation.
    pub fn check(&self, wire: &[u8], written: &Written<'_>) -> Result<Option<Vec<u8>>, Invalid> {
        // Fail closed: what cannot be checked does not pass.
        let mut message =
            DynamicMessage::decode(self.input.clone(), wire).map_err(|e| Invalid {
                message: self.input.full_name().to_owned(),
                violations: vec![(String::new(), format!("not a valid message: {e}"))],
            })?;
        let mut found = Vec::new();
        let mut cleared = false;
        if let Some(plan) = &self.behavior {
            let resource = self.update.as_ref().map(|u| &u.resource);
            cleared = plan.check(
                &mut message,
                self.output_only,
                resource,
                &mut Vec::new(),
                &mut found,
            );
            if let Some(update) = self.update.as_ref().filter(|u| u.immutable) {
                update.immutable(&message, &mut found);
            }
        }
        if let Some(validator) = &self.validator {
            match validator.validate(&message) {
                Ok(()) => {}
                Err(prost_protovalidate::Error::Validation(e)) => {
                    let ruled: Vec<Violation> = e
                        .violations()
                        .iter()
                        .map(|v| from_protovalidate(&self.input, v, &self.cel))
                        .collect();
                    // A zero value breaks REQUIRED and the value's own rules:
                    // the rule says more than "required".
                    found.retain(|v| {
                        v.rule != "field_behavior.required"
                            || !ruled.iter().any(|r| r.path == v.path)
                    });
                    found.extend(ruled);
                }
                Err(e) => {
                    // Compiled at startup, so only a CEL evaluation can fail here.
                    found.push(Violation {
                        path: Vec::new(),
                        rule: "cel".to_owned(),
                        message: format!("cannot evaluate the rules: {e}"),
                    });
                }
            }
        }
        if !found.is_empty() {
            return Err(Invalid {
                message: self.input.full_name().to_owned(),
                violations: found
                    .into_iter()
                    .map(|v| (written.name(&v.path), v.message))
                    .collect(),
            });
        }
        Ok(cleared.then(|| prost::Message::encode_to_vec(&message)))
    }
}

/// A protovalidate violation with its path resolved against `root`.
fn from_protovalidate(
    root: &MessageDescriptor,
    v: &prost_protovalidate::Violation,
    cel: &HashMap<String, String>,
) -> Violation {
    let proto = v.to_proto();
    let mut path = Vec::new();
    let mut at = Some(root.clone());
    for element in proto.field.iter().flat_map(|f| &f.elements) {
        let field = at.as_ref().and_then(|m| {
            element
                .field_number
                .and_then(|n| m.get_field(u32::try_from(n).ok()?))
                .or_else(|| m.get_field_by_name(element.field_name()))
        });
        use prost_protovalidate::types::field_path_element::Subscript;
        let subscript = element.subscript.as_ref().map(|s| match s {
            Subscript::Index(i) => format!("[{i}]"),
            Subscript::BoolKey(b) => format!("[{b}]"),
            Subscript::IntKey(n) => format!("[{n}]"),
            Subscript::UintKey(n) => format!("[{n}]"),
            Subscript::StringKey(k) => {
                format!("[{}]", serde_json::to_string(k).unwrap_or_default())
            }
        });
        match &field {
            Some(f) => {
                path.push(Element {
                    subscript,
                    ..Element::field(f)
                });
                at = match f.kind() {
                    Kind::Message(m) if f.is_map() => {
                        m.map_entry_value_field().kind().as_message().cloned()
                    }
                    Kind::Message(m) => Some(m),
                    _ => None,
                };
            }
            None => {
                path.push(Element {
                    proto: element.field_name().to_owned(),
                    json: element.field_name().to_owned(),
                    subscript,
                });
                at = None;
            }
        }
    }
    let message = if v.message().is_empty() {
        cel.get(v.rule_id())
            .cloned()
            .unwrap_or_else(|| format_message(v.rule_id()))
    } else {
        v.message().to_owned()
    };
    Violation {
        path,
        rule: v.rule_id().to_owned(),
        message,
    }
}

/// The words of a well-known format rule, whose violations carry none.
fn format_message(rule: &str) -> String {
    if rule == "required" {
        // The only rule without words of its own: a oneof's.
        return "exactly one field is required in oneof".to_owned();
    }
    let (format, empty) = match rule.rsplit_once('.') {
        Some((_, f)) => match f.strip_suffix("_empty") {
            Some(f) => (f, true),
            None => (f, false),
        },
        None => (rule, false),
    };
    let what = match format {
        "email" => "an email address",
        "hostname" => "a hostname",
        "ip" => "an IP address",
        "ipv4" => "an IPv4 address",
        "ipv6" => "an IPv6 address",
        "uri" => "a URI",
        "uri_ref" => "a URI reference",
        "address" => "a hostname or IP address",
        "uuid" => "a UUID",
        "tuuid" => "a trimmed UUID",
        "ulid" => "a ULID",
        "host_and_port" => "a host and port",
        "ip_with_prefixlen" | "ip_prefix" => "an IP prefix",
        "ipv4_with_prefixlen" | "ipv4_prefix" => "an IPv4 prefix",
        "ipv6_with_prefixlen" | "ipv6_prefix" => "an IPv6 prefix",
        "well_known_regex" | "header_name" | "header_value" => "an HTTP header",
        _ => return format!("value violates rule {rule}"),
    };
    if empty {
        format!("value is empty, which is not {what}")
    } else {
        format!("value must be {what}")
    }
}

/// The descriptors whose `buf.validate` rules are what `options` enforces,
/// for documents that show them: the pool as written, with PGV rules
/// rewritten in or alone as `options` asks; `None` when neither family is
/// on. A rewrite that fails documents the pool as written.
pub fn rules_pool(pool: &DescriptorPool, options: &ValidationOptions) -> Option<DescriptorPool> {
    let (protovalidate, pgv) = (options.on(RuleSet::Protovalidate), options.on(RuleSet::Pgv));
    if !pgv {
        return protovalidate.then(|| pool.clone());
    }
    match pgv::translate(pool, protovalidate) {
        Ok(Some((translated, _))) => Some(translated),
        _ => protovalidate.then(|| pool.clone()),
    }
}

/// The rules of a gateway's methods, compiled once when it is built.
pub struct Validation {
    /// By pool variant: the descriptors as written (protovalidate only), with
    /// PGV rules added (both), with PGV rules only.
    written: Option<Arc<Variant>>,
    both: Option<Arc<Variant>>,
    pgv_only: Option<Arc<Variant>>,
    /// PGV rules without a protovalidate equivalent, as `field: rule`.
    pub uncovered: Vec<String>,
}

impl std::fmt::Debug for Validation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validation")
            .field("uncovered", &self.uncovered)
            .finish_non_exhaustive()
    }
}

struct Variant {
    pool: DescriptorPool,
    validator: Arc<prost_protovalidate::Validator>,
    /// The messages of the CEL rules by id: a message rule's violation
    /// comes without its words.
    cel: Arc<HashMap<String, String>>,
    /// Messages that carry `buf.validate` rules, or reach one that does.
    ruled: HashSet<String>,
}

impl Variant {
    fn new(pool: DescriptorPool) -> Arc<Self> {
        let ruled = ruled_messages(&pool);
        Arc::new(Self {
            cel: Arc::new(cel_messages(&pool)),
            pool,
            validator: Arc::new(prost_protovalidate::Validator::new()),
            ruled,
        })
    }
}

/// The `message` of every CEL rule of `pool` (message, field and oneof
/// rules), by the rule's `id`.
fn cel_messages(pool: &DescriptorPool) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let exts: Vec<_> = ["buf.validate.field", "buf.validate.message"]
        .iter()
        .filter_map(|n| pool.get_extension_by_name(n))
        .collect();
    let mut collect = |options: &DynamicMessage| {
        for ext in &exts {
            if !options.has_extension(ext) {
                continue;
            }
            let rules = options.get_extension(ext);
            let Some(rules) = rules.as_message() else {
                continue;
            };
            for rule in rules
                .get_field_by_name("cel")
                .and_then(|v| v.as_list().map(<[_]>::to_vec))
                .unwrap_or_default()
            {
                let Some(rule) = rule.as_message() else {
                    continue;
                };
                let text = |name: &str| {
                    rule.get_field_by_name(name)
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                };
                let (id, message) = (text("id"), text("message"));
                if !id.is_empty() && !message.is_empty() {
                    out.insert(id, message);
                }
            }
        }
    };
    for message in pool.all_messages() {
        collect(&message.options());
        for field in message.fields() {
            collect(&field.options());
        }
    }
    out
}

/// Names of the messages of `pool` with `buf.validate` rules on them, their
/// fields or oneofs, or on a message they reach.
fn ruled_messages(pool: &DescriptorPool) -> HashSet<String> {
    let names = [
        "buf.validate.field",
        "buf.validate.oneof",
        "buf.validate.message",
    ];
    let exts: Vec<_> = names
        .iter()
        .filter_map(|n| pool.get_extension_by_name(n))
        .collect();
    if exts.is_empty() {
        return HashSet::new();
    }
    let has = |options: &DynamicMessage| exts.iter().any(|e| options.has_extension(e));
    let mut ruled: HashSet<String> = pool
        .all_messages()
        .filter(|m| {
            has(&m.options())
                || m.fields().any(|f| has(&f.options()))
                || m.oneofs().any(|o| has(&o.options()))
        })
        .map(|m| m.full_name().to_owned())
        .collect();
    loop {
        let more: Vec<String> = pool
            .all_messages()
            .filter(|m| !ruled.contains(m.full_name()))
            .filter(|m| {
                m.fields().any(|f| {
                    let t = match f.kind() {
                        Kind::Message(t) if f.is_map() => {
                            t.map_entry_value_field().kind().as_message().cloned()
                        }
                        Kind::Message(t) => Some(t),
                        _ => None,
                    };
                    t.is_some_and(|t| ruled.contains(t.full_name()))
                })
            })
            .map(|m| m.full_name().to_owned())
            .collect();
        if more.is_empty() {
            return ruled;
        }
        ruled.extend(more);
    }
}

impl Validation {
    /// Compiles the rules of `methods` under each one's policy: the
    /// descriptors rewritten for PGV only when a method enforces PGV and
    /// some file uses it, every input's protovalidate rules compiled (a
    /// CEL expression that does not compile fails here, not on a request).
    ///
    /// # Errors
    /// A rule that does not compile, naming the message.
    pub fn build<'a>(
        pool: &DescriptorPool,
        methods: impl IntoIterator<Item = (&'a MethodDescriptor, ValidationOptions)>,
    ) -> anyhow::Result<Self> {
        let methods: Vec<_> = methods.into_iter().collect();
        let needs = |f: &dyn Fn(&ValidationOptions) -> bool| methods.iter().any(|(_, o)| f(o));
        let written = needs(&|o| o.on(RuleSet::Protovalidate) && !o.on(RuleSet::Pgv))
            .then(|| Variant::new(pool.clone()));
        let mut uncovered = Vec::new();
        let mut both = None;
        let mut pgv_only = None;
        if needs(&|o| o.on(RuleSet::Protovalidate) && o.on(RuleSet::Pgv)) {
            both = Some(match pgv::translate(pool, true)? {
                Some((translated, missing)) => {
                    uncovered = missing;
                    Variant::new(translated)
                }
                None => written
                    .clone()
                    .unwrap_or_else(|| Variant::new(pool.clone())),
            });
        }
        if needs(&|o| !o.on(RuleSet::Protovalidate) && o.on(RuleSet::Pgv))
            && let Some((translated, missing)) = pgv::translate(pool, false)?
        {
            uncovered = missing;
            pgv_only = Some(Variant::new(translated));
        }
        let validation = Self {
            written,
            both,
            pgv_only,
            uncovered,
        };
        let mut compiled = HashMap::new();
        for (method, options) in &methods {
            if let Some(variant) = validation.variant(options)
                && let Some(input) = variant.pool.get_message_by_name(method.input().full_name())
                && variant.ruled.contains(input.full_name())
                && compiled
                    .insert((Arc::as_ptr(variant), input.full_name().to_owned()), ())
                    .is_none()
            {
                // Validating the empty message compiles every rule it reaches;
                // an expression that fails only on some values is a request's
                // problem, not the schema's.
                if let Err(e @ prost_protovalidate::Error::Compilation(_)) = variant
                    .validator
                    .validate(&DynamicMessage::new(input.clone()))
                {
                    anyhow::bail!(
                        "the validation rules of {} do not compile: {e}",
                        input.full_name()
                    );
                }
            }
        }
        Ok(validation)
    }

    fn variant(&self, options: &ValidationOptions) -> Option<&Arc<Variant>> {
        match (options.on(RuleSet::Protovalidate), options.on(RuleSet::Pgv)) {
            (true, true) => self.both.as_ref(),
            (true, false) => self.written.as_ref(),
            (false, true) => self.pgv_only.as_ref(),
            (false, false) => None,
        }
    }

    /// The rules `method` enforces under `options`; `None` when its input
    /// reaches none, so its requests are not decoded at all.
    ///
    /// `bound` are the fields the route's URL path binds: they identify
    /// the resource and are never dropped as `OUTPUT_ONLY`.
    pub fn method(
        &self,
        method: &MethodDescriptor,
        options: &ValidationOptions,
        bound: &[crate::http_rule::FieldPath],
    ) -> Option<Arc<MethodRules>> {
        let variant = self
            .variant(options)
            .and_then(|v| Some((v, v.pool.get_message_by_name(method.input().full_name())?)))
            .filter(|(v, input)| v.ruled.contains(input.full_name()));
        // One pool per method: its rules' if it has any, else the one it was built from.
        let (input, validator, cel) = match variant {
            Some((v, input)) => (input, Some(v.validator.clone()), v.cel.clone()),
            None => (method.input(), None, Arc::default()),
        };
        let behaviors = options.on(RuleSet::FieldBehavior);
        let behavior = behaviors
            .then(|| {
                let bound = bound.iter().map(|p| p.dotted().to_owned()).collect();
                behavior::Plan::build([&input], bound)
            })
            .filter(|p| p.checks(&input))
            .map(Arc::new);
        let update = behaviors.then(|| Update::of(&input)).flatten();
        if validator.is_none()
            && behavior.is_none()
            && !update.as_ref().is_some_and(|u| u.immutable)
        {
            return None;
        }
        Some(Arc::new(MethodRules {
            input,
            validator,
            cel,
            behavior,
            output_only: options.output_only,
            update,
        }))
    }
}

#[cfg(test)]
mod tests;
