//! The schema the gateway serves, and what a swap of it changes for clients.
//!
//! Every swap (a reload, a reflection refresh, a reflection backend answering
//! after startup) compares the [`Surface`] the gateway served with the one it
//! is about to serve. Each change is `compatible` or `breaking`:
//!
//! * messages and enums reachable from routed methods follow the field and
//!   enum-value rules of `buf breaking`'s **WIRE_JSON** category (changes that
//!   break the binary or the JSON encoding), the category that fits a gateway
//!   whose clients speak JSON and whose backends speak protobuf:
//!   `FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED`, `FIELD_NO_DELETE_UNLESS_NAME_RESERVED`,
//!   `FIELD_SAME_NAME`, `FIELD_SAME_JSON_NAME`, `FIELD_WIRE_JSON_COMPATIBLE_TYPE`,
//!   `FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY`, `FIELD_SAME_ONEOF`,
//!   `ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED`,
//!   `ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED`, `ENUM_VALUE_SAME_NAME`;
//! * methods follow buf's RPC rules, which its stricter categories hold, because
//!   for the gateway's clients a method is the API: `RPC_NO_DELETE`,
//!   `RPC_SAME_REQUEST_TYPE`, `RPC_SAME_RESPONSE_TYPE`,
//!   `RPC_SAME_CLIENT_STREAMING`, `RPC_SAME_SERVER_STREAMING`;
//! * HTTP routes have rules of the gateway's own: a route removed
//!   (`ROUTE_NO_DELETE`), bound to another method (`ROUTE_SAME_RPC`), or with
//!   another `body` or `response_body` (`ROUTE_SAME_BODY`) is breaking.
//!
//! Additions (routes, methods, fields, enum values) are compatible, and so is a
//! field type changed within a wire- and JSON-compatible group (`int32` and
//! `uint32`, `int64` and `uint64`, `fixed32` and `sfixed32`, `fixed64` and
//! `sfixed64`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use prost_reflect::{Cardinality, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor};
use serde::Serialize;

use crate::http_rule::{RoutePayload, RouteTable};

/// Whether a change can break a client that worked before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Old clients keep working.
    Compatible,
    /// Some old client may fail or misread a reply.
    Breaking,
}

impl Severity {
    /// `compatible` or `breaking`, the metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Compatible => "compatible",
            Self::Breaking => "breaking",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change between two schemas.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// Compatible or breaking.
    pub severity: Severity,
    /// The rule that classified it (buf's rule id, or the gateway's own).
    pub rule: &'static str,
    /// The backend whose services the change is in.
    pub backend: String,
    /// What changed: a route, a method, a message field, an enum value.
    pub subject: String,
    /// How it changed, in a sentence.
    pub message: String,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.severity, self.subject, self.rule, self.message
        )
    }
}

/// Every change between two schemas, routes first, then methods, then types.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// The changes, in a stable order.
    pub changes: Vec<Change>,
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether any change is breaking.
    pub fn is_breaking(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.severity == Severity::Breaking)
    }

    /// How many changes have `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.changes
            .iter()
            .filter(|c| c.severity == severity)
            .count()
    }
}

/// What a gateway serves, as far as a diff is concerned: its HTTP routes and
/// the methods they call, with their descriptors.
#[derive(Debug, Clone, Default)]
pub struct Surface {
    routes: BTreeMap<(String, String), RouteShape>,
    methods: BTreeMap<String, Method>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct RouteShape {
    rpc: String,
    body: String,
    response_body: String,
    backend: String,
}

#[derive(Debug, Clone)]
struct Method {
    descriptor: prost_reflect::MethodDescriptor,
    backend: String,
}

impl Surface {
    /// The surface of a route table.
    pub fn of<P: RoutePayload>(routes: &RouteTable<P>) -> Self {
        let mut surface = Self::default();
        for payload in routes.routes() {
            let route = payload.route();
            let backend = route
                .backends
                .iter()
                .map(|b| b.name.as_str())
                .collect::<Vec<_>>()
                .join("+");
            let rpc = route.method.full_name().to_owned();
            let body = match &route.body {
                crate::http_rule::BodyRule::None => String::new(),
                crate::http_rule::BodyRule::Whole => "*".to_owned(),
                crate::http_rule::BodyRule::Field(field) => field.to_string(),
            };
            let response_body = route
                .response_body
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            surface.routes.insert(
                (route.http_method.to_string(), route.template.source.clone()),
                RouteShape {
                    rpc: rpc.clone(),
                    body,
                    response_body,
                    backend: backend.clone(),
                },
            );
            surface.methods.entry(rpc).or_insert(Method {
                descriptor: route.method.clone(),
                backend,
            });
        }
        surface
    }

    /// How many routes.
    pub fn route_count(&self) -> usize {
        self.routes.len()
    }
}

/// The changes from `old` to `new`.
pub fn diff(old: &Surface, new: &Surface) -> Diff {
    let mut changes = Vec::new();
    diff_routes(old, new, &mut changes);
    diff_methods(old, new, &mut changes);
    diff_types(old, new, &mut changes);
    Diff { changes }
}

fn change(
    changes: &mut Vec<Change>,
    severity: Severity,
    rule: &'static str,
    backend: &str,
    subject: impl Into<String>,
    message: impl Into<String>,
) {
    changes.push(Change {
        severity,
        rule,
        backend: backend.to_owned(),
        subject: subject.into(),
        message: message.into(),
    });
}

fn diff_routes(old: &Surface, new: &Surface, changes: &mut Vec<Change>) {
    for ((verb, template), was) in &old.routes {
        let subject = format!("{verb} {template}");
        let Some(now) = new.routes.get(&(verb.clone(), template.clone())) else {
            change(
                changes,
                Severity::Breaking,
                "ROUTE_NO_DELETE",
                &was.backend,
                subject,
                format!("route removed (it called {})", was.rpc),
            );
            continue;
        };
        if was.rpc != now.rpc {
            change(
                changes,
                Severity::Breaking,
                "ROUTE_SAME_RPC",
                &now.backend,
                subject.clone(),
                format!("route now calls {} instead of {}", now.rpc, was.rpc),
            );
        }
        if was.body != now.body || was.response_body != now.response_body {
            let shown = |s: &str| {
                if s.is_empty() {
                    "none".to_owned()
                } else {
                    format!("\"{s}\"")
                }
            };
            change(
                changes,
                Severity::Breaking,
                "ROUTE_SAME_BODY",
                &now.backend,
                subject,
                format!(
                    "body {} and response_body {} were {} and {}",
                    shown(&now.body),
                    shown(&now.response_body),
                    shown(&was.body),
                    shown(&was.response_body)
                ),
            );
        }
    }
    for ((verb, template), now) in &new.routes {
        if !old.routes.contains_key(&(verb.clone(), template.clone())) {
            change(
                changes,
                Severity::Compatible,
                "ROUTE_ADDED",
                &now.backend,
                format!("{verb} {template}"),
                format!("route added (calls {})", now.rpc),
            );
        }
    }
}

fn diff_methods(old: &Surface, new: &Surface, changes: &mut Vec<Change>) {
    for (name, was) in &old.methods {
        let Some(now) = new.methods.get(name) else {
            change(
                changes,
                Severity::Breaking,
                "RPC_NO_DELETE",
                &was.backend,
                name.clone(),
                "method no longer routed",
            );
            continue;
        };
        let (w, n) = (&was.descriptor, &now.descriptor);
        if w.input().full_name() != n.input().full_name() {
            change(
                changes,
                Severity::Breaking,
                "RPC_SAME_REQUEST_TYPE",
                &now.backend,
                name.clone(),
                format!(
                    "request type changed from {} to {}",
                    w.input().full_name(),
                    n.input().full_name()
                ),
            );
        }
        if w.output().full_name() != n.output().full_name() {
            change(
                changes,
                Severity::Breaking,
                "RPC_SAME_RESPONSE_TYPE",
                &now.backend,
                name.clone(),
                format!(
                    "response type changed from {} to {}",
                    w.output().full_name(),
                    n.output().full_name()
                ),
            );
        }
        if w.is_client_streaming() != n.is_client_streaming() {
            change(
                changes,
                Severity::Breaking,
                "RPC_SAME_CLIENT_STREAMING",
                &now.backend,
                name.clone(),
                streaming_message("client", n.is_client_streaming()),
            );
        }
        if w.is_server_streaming() != n.is_server_streaming() {
            change(
                changes,
                Severity::Breaking,
                "RPC_SAME_SERVER_STREAMING",
                &now.backend,
                name.clone(),
                streaming_message("server", n.is_server_streaming()),
            );
        }
    }
    for (name, now) in &new.methods {
        if !old.methods.contains_key(name) {
            change(
                changes,
                Severity::Compatible,
                "RPC_ADDED",
                &now.backend,
                name.clone(),
                "method routed",
            );
        }
    }
}

fn streaming_message(side: &str, now: bool) -> String {
    if now {
        format!("{side} streaming now")
    } else {
        format!("no longer {side} streaming")
    }
}

/// Compares every message (and enum) reachable from a method routed before
/// and after, by full name, each once.
fn diff_types(old: &Surface, new: &Surface, changes: &mut Vec<Change>) {
    let mut seen = BTreeSet::new();
    for (name, was) in &old.methods {
        let Some(now) = new.methods.get(name) else {
            continue;
        };
        let pool = now.descriptor.parent_pool();
        let mut todo = vec![was.descriptor.input(), was.descriptor.output()];
        while let Some(message) = todo.pop() {
            if !seen.insert(message.full_name().to_owned()) {
                continue;
            }
            // Well-known types do not change; their JSON forms are fixed.
            if message.package_name() == "google.protobuf" {
                continue;
            }
            let Some(current) = pool.get_message_by_name(message.full_name()) else {
                continue;
            };
            diff_message(&message, &current, &now.backend, changes, &mut seen);
            for field in message.fields() {
                if let Kind::Message(inner) = field.kind() {
                    todo.push(inner);
                }
            }
        }
    }
}

fn diff_message(
    was: &MessageDescriptor,
    now: &MessageDescriptor,
    backend: &str,
    changes: &mut Vec<Change>,
    seen: &mut BTreeSet<String>,
) {
    let subject = |field: &FieldDescriptor| format!("{}.{}", was.full_name(), field.name());
    for old_field in was.fields() {
        let Some(new_field) = now.get_field(old_field.number()) else {
            let number_reserved = now
                .reserved_ranges()
                .any(|r| r.contains(&old_field.number()));
            let name_reserved = now.reserved_names().any(|n| n == old_field.name());
            // WIRE_JSON needs both: the number for the binary form, the name for JSON.
            let (severity, rule, why) = match (number_reserved, name_reserved) {
                (true, true) => (
                    Severity::Compatible,
                    "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
                    "field removed, its number and name reserved",
                ),
                (false, _) => (
                    Severity::Breaking,
                    "FIELD_NO_DELETE_UNLESS_NUMBER_RESERVED",
                    "field removed without reserving its number",
                ),
                (true, false) => (
                    Severity::Breaking,
                    "FIELD_NO_DELETE_UNLESS_NAME_RESERVED",
                    "field removed without reserving its name",
                ),
            };
            change(
                changes,
                severity,
                rule,
                backend,
                subject(&old_field),
                format!("{why} ({})", old_field.number()),
            );
            continue;
        };
        let name = subject(&old_field);
        if old_field.name() != new_field.name() {
            change(
                changes,
                Severity::Breaking,
                "FIELD_SAME_NAME",
                backend,
                name.clone(),
                format!(
                    "field {} renamed to {}",
                    old_field.number(),
                    new_field.name()
                ),
            );
        } else if old_field.json_name() != new_field.json_name() {
            change(
                changes,
                Severity::Breaking,
                "FIELD_SAME_JSON_NAME",
                backend,
                name.clone(),
                format!(
                    "JSON name changed from {} to {}",
                    old_field.json_name(),
                    new_field.json_name()
                ),
            );
        }
        let (old_kind, new_kind) = (old_field.kind(), new_field.kind());
        let (old_group, new_group) = (wire_json_group(&old_kind), wire_json_group(&new_kind));
        if old_group != new_group || type_name(&old_kind) != type_name(&new_kind) {
            change(
                changes,
                Severity::Breaking,
                "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
                backend,
                name.clone(),
                format!(
                    "type changed from {} to {}",
                    kind_name(&old_kind),
                    kind_name(&new_kind)
                ),
            );
        } else if kind_name(&old_kind) != kind_name(&new_kind) {
            change(
                changes,
                Severity::Compatible,
                "FIELD_WIRE_JSON_COMPATIBLE_TYPE",
                backend,
                name.clone(),
                format!(
                    "type changed from {} to {}, which reads the same",
                    kind_name(&old_kind),
                    kind_name(&new_kind)
                ),
            );
        } else if let (Kind::Enum(old_enum), Kind::Enum(new_enum)) = (&old_kind, &new_kind)
            && seen.insert(old_enum.full_name().to_owned())
        {
            diff_enum(old_enum, new_enum, backend, changes);
        }
        let (old_card, new_card) = (cardinality(&old_field), cardinality(&new_field));
        if old_card != new_card {
            change(
                changes,
                Severity::Breaking,
                "FIELD_WIRE_JSON_COMPATIBLE_CARDINALITY",
                backend,
                name.clone(),
                format!("cardinality changed from {old_card} to {new_card}"),
            );
        }
        let oneof = |f: &FieldDescriptor| {
            f.containing_oneof()
                .filter(|o| !o.is_synthetic())
                .map(|o| o.name().to_owned())
        };
        if oneof(&old_field) != oneof(&new_field) {
            change(
                changes,
                Severity::Breaking,
                "FIELD_SAME_ONEOF",
                backend,
                name,
                format!(
                    "oneof changed from {} to {}",
                    oneof(&old_field).as_deref().unwrap_or("none"),
                    oneof(&new_field).as_deref().unwrap_or("none")
                ),
            );
        }
    }
    for new_field in now.fields() {
        if was.get_field(new_field.number()).is_none() {
            change(
                changes,
                Severity::Compatible,
                "FIELD_ADDED",
                backend,
                format!("{}.{}", now.full_name(), new_field.name()),
                format!("field added ({})", new_field.number()),
            );
        }
    }
}

fn diff_enum(was: &EnumDescriptor, now: &EnumDescriptor, backend: &str, changes: &mut Vec<Change>) {
    for old_value in was.values() {
        let subject = format!("{}.{}", was.full_name(), old_value.name());
        match now.get_value(old_value.number()) {
            None => {
                let number_reserved = now
                    .reserved_ranges()
                    .any(|r| r.contains(&old_value.number()));
                let name_reserved = now.reserved_names().any(|n| n == old_value.name());
                let (severity, rule, why) = match (number_reserved, name_reserved) {
                    (true, true) => (
                        Severity::Compatible,
                        "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
                        "enum value removed, its number and name reserved",
                    ),
                    (false, _) => (
                        Severity::Breaking,
                        "ENUM_VALUE_NO_DELETE_UNLESS_NUMBER_RESERVED",
                        "enum value removed without reserving its number",
                    ),
                    (true, false) => (
                        Severity::Breaking,
                        "ENUM_VALUE_NO_DELETE_UNLESS_NAME_RESERVED",
                        "enum value removed without reserving its name",
                    ),
                };
                change(
                    changes,
                    severity,
                    rule,
                    backend,
                    subject,
                    format!("{why} ({})", old_value.number()),
                );
            }
            Some(new_value) if new_value.name() != old_value.name() => change(
                changes,
                Severity::Breaking,
                "ENUM_VALUE_SAME_NAME",
                backend,
                subject,
                format!(
                    "value {} renamed to {}",
                    old_value.number(),
                    new_value.name()
                ),
            ),
            Some(_) => {}
        }
    }
    for new_value in now.values() {
        if was.get_value(new_value.number()).is_none() {
            change(
                changes,
                Severity::Compatible,
                "ENUM_VALUE_ADDED",
                backend,
                format!("{}.{}", now.full_name(), new_value.name()),
                format!("enum value added ({})", new_value.number()),
            );
        }
    }
}

/// buf's wire-and-JSON compatibility groups: kinds in one group read each
/// other's values in both encodings.
fn wire_json_group(kind: &Kind) -> u8 {
    match kind {
        Kind::Int32 | Kind::Uint32 => 1,
        Kind::Int64 | Kind::Uint64 => 2,
        Kind::Fixed32 | Kind::Sfixed32 => 3,
        Kind::Fixed64 | Kind::Sfixed64 => 4,
        Kind::Bool => 5,
        Kind::Sint32 => 6,
        Kind::Sint64 => 7,
        Kind::String => 8,
        Kind::Bytes => 9,
        Kind::Double => 10,
        Kind::Float => 11,
        Kind::Message(_) => 13,
        Kind::Enum(_) => 14,
    }
}

/// The message or enum a field holds, which must stay the same type.
fn type_name(kind: &Kind) -> Option<&str> {
    match kind {
        Kind::Message(m) => Some(m.full_name()),
        Kind::Enum(e) => Some(e.full_name()),
        _ => None,
    }
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
        Kind::Double => "double".to_owned(),
        Kind::Float => "float".to_owned(),
        Kind::Int32 => "int32".to_owned(),
        Kind::Int64 => "int64".to_owned(),
        Kind::Uint32 => "uint32".to_owned(),
        Kind::Uint64 => "uint64".to_owned(),
        Kind::Sint32 => "sint32".to_owned(),
        Kind::Sint64 => "sint64".to_owned(),
        Kind::Fixed32 => "fixed32".to_owned(),
        Kind::Fixed64 => "fixed64".to_owned(),
        Kind::Sfixed32 => "sfixed32".to_owned(),
        Kind::Sfixed64 => "sfixed64".to_owned(),
        Kind::Bool => "bool".to_owned(),
        Kind::String => "string".to_owned(),
        Kind::Bytes => "bytes".to_owned(),
    }
}

/// buf's WIRE_JSON cardinality groups: singular fields (with or without
/// presence) read each other; required, repeated and map do not, and a map's
/// JSON object is not a repeated field's array.
fn cardinality(field: &FieldDescriptor) -> &'static str {
    if field.is_map() {
        "map"
    } else {
        match field.cardinality() {
            Cardinality::Repeated => "repeated",
            Cardinality::Required => "required",
            Cardinality::Optional => "singular",
        }
    }
}

/// Lines a diff logs before it only counts the rest.
const LOGGED_CHANGES: usize = 20;

impl Diff {
    /// Logs the diff: a summary, then one line per change (breaking ones as
    /// warnings), at most [`LOGGED_CHANGES`] of them and a count of the rest.
    pub fn log(&self, cause: &str, applied: bool) {
        if self.is_empty() {
            return;
        }
        tracing::info!(
            cause,
            applied,
            compatible = self.count(Severity::Compatible),
            breaking = self.count(Severity::Breaking),
            "schema changed"
        );
        for change in self.changes.iter().take(LOGGED_CHANGES) {
            match change.severity {
                Severity::Breaking => tracing::warn!(
                    backend = %change.backend,
                    rule = change.rule,
                    subject = %change.subject,
                    "breaking schema change: {}",
                    change.message
                ),
                Severity::Compatible => tracing::info!(
                    backend = %change.backend,
                    rule = change.rule,
                    subject = %change.subject,
                    "compatible schema change: {}",
                    change.message
                ),
            }
        }
        if self.changes.len() > LOGGED_CHANGES {
            tracing::info!(
                more = self.changes.len() - LOGGED_CHANGES,
                "more schema changes not logged"
            );
        }
    }
}

/// Changes kept per swap in the [`History`].
const KEPT_CHANGES: usize = 200;
/// Swaps kept in the [`History`].
const KEPT_SWAPS: usize = 32;

/// One swap of the schema with its diff, applied or refused.
#[derive(Debug, Clone, Serialize)]
pub struct Swap {
    /// When, RFC 3339.
    pub at: String,
    /// What asked for it: `reload`, `sighup`, `file`, `reflection answered`,
    /// `reflection refresh`.
    pub cause: String,
    /// The generation serving before the swap.
    pub from_generation: u64,
    /// The generation serving after it (the same when refused).
    pub to_generation: u64,
    /// Whether the new schema serves; false when refused as breaking.
    pub applied: bool,
    /// How many changes are compatible.
    pub compatible: usize,
    /// How many are breaking.
    pub breaking: usize,
    /// The changes, the first [`KEPT_CHANGES`] of them.
    pub changes: Vec<Change>,
    /// Changes not kept.
    pub more: usize,
}

impl Swap {
    /// The record of a swap with `diff`.
    pub fn new(cause: &str, from: u64, to: u64, applied: bool, diff: &Diff) -> Self {
        Self {
            at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
            cause: cause.to_owned(),
            from_generation: from,
            to_generation: to,
            applied,
            compatible: diff.count(Severity::Compatible),
            breaking: diff.count(Severity::Breaking),
            changes: diff.changes.iter().take(KEPT_CHANGES).cloned().collect(),
            more: diff.changes.len().saturating_sub(KEPT_CHANGES),
        }
    }
}

/// The last swaps that changed the schema, newest last, and the swap
/// refused since the last one applied.
#[derive(Debug, Default)]
pub struct History {
    inner: std::sync::Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    swaps: std::collections::VecDeque<Swap>,
    refused: Option<Swap>,
}

impl History {
    /// Keeps `swap`; an applied one clears the refused one.
    pub fn record(&self, swap: Swap) {
        let mut kept = self.lock();
        kept.refused = (!swap.applied).then(|| swap.clone());
        if kept.swaps.len() == KEPT_SWAPS {
            kept.swaps.pop_front();
        }
        kept.swaps.push_back(swap);
    }

    /// Forgets the refused swap: a later swap changed nothing, so the
    /// schema served is the one asked for.
    pub fn settled(&self) {
        self.lock().refused = None;
    }

    /// The kept swaps, oldest first.
    pub fn swaps(&self) -> Vec<Swap> {
        self.lock().swaps.iter().cloned().collect()
    }

    /// The swap refused since the last applied one, if any.
    pub fn refused(&self) -> Option<Swap> {
        self.lock().refused.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        // Holders only push and clone: a poisoned lock's data is whole.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
