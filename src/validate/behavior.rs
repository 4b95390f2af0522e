//! `google.api.field_behavior` (AIP-203) enforced on request messages.
//!
//! `REQUIRED` fields must be set (for a field without presence: not its
//! zero value); `OUTPUT_ONLY` fields set by a client are cleared or refused;
//! an `update_mask` (AIP-134) may not name an `IMMUTABLE` field. Inside the
//! resource of an update request (one with an `update_mask`) `REQUIRED` is
//! not checked: a partial update sends only what changes. A field the
//! method's URL path binds (`PATCH /v1/users/{user.id}`) identifies the
//! resource: it is never cleared or refused as `OUTPUT_ONLY`.

use std::collections::{HashMap, HashSet};

use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};

use super::{Element, Violation};
use crate::config::validation::OutputOnly;

const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;
const INPUT_ONLY: i32 = 4;
const IMMUTABLE: i32 = 5;

/// The behaviours of one field.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Behaviors {
    /// `REQUIRED`.
    pub required: bool,
    /// `OUTPUT_ONLY`.
    pub output_only: bool,
    /// `INPUT_ONLY`.
    pub input_only: bool,
    /// `IMMUTABLE`.
    pub immutable: bool,
}

impl Behaviors {
    /// The behaviours `field` is annotated with.
    pub fn of(field: &FieldDescriptor) -> Self {
        let mut out = Self::default();
        let options = field.options();
        let Some(ext) = options
            .extensions()
            .find(|(e, _)| e.full_name() == "google.api.field_behavior")
            .map(|(_, v)| v.clone())
        else {
            return out;
        };
        for value in ext.as_list().unwrap_or_default() {
            match value.as_enum_number() {
                Some(REQUIRED) => out.required = true,
                Some(OUTPUT_ONLY) => out.output_only = true,
                Some(INPUT_ONLY) => out.input_only = true,
                Some(IMMUTABLE) => out.immutable = true,
                _ => {}
            }
        }
        out
    }
}

/// What one message type checks.
#[derive(Debug, Default)]
struct MessagePlan {
    required: Vec<FieldDescriptor>,
    output_only: Vec<FieldDescriptor>,
    /// Message fields (singular, repeated or map values) whose type checks something.
    nested: Vec<FieldDescriptor>,
}

/// The field-behaviour checks of every message reachable from some inputs,
/// compiled once.
#[derive(Debug, Default)]
pub struct Plan {
    messages: HashMap<String, MessagePlan>,
    /// Dotted proto paths of the fields the URL path binds.
    bound: Vec<String>,
}

fn message_of(field: &FieldDescriptor) -> Option<MessageDescriptor> {
    match field.kind() {
        Kind::Message(m) if field.is_map() => {
            m.map_entry_value_field().kind().as_message().cloned()
        }
        Kind::Message(m) => Some(m),
        _ => None,
    }
}

impl Plan {
    /// Compiles the checks of `inputs` and every message they reach;
    /// `bound` (dotted proto paths) are the fields the URL path binds.
    pub fn build<'a>(
        inputs: impl IntoIterator<Item = &'a MessageDescriptor>,
        bound: Vec<String>,
    ) -> Self {
        let mut reach: Vec<MessageDescriptor> = Vec::new();
        let mut seen = HashSet::new();
        let mut stack: Vec<MessageDescriptor> = inputs.into_iter().cloned().collect();
        while let Some(m) = stack.pop() {
            if !seen.insert(m.full_name().to_owned()) {
                continue;
            }
            stack.extend(m.fields().filter_map(|f| message_of(&f)));
            reach.push(m);
        }
        let mut messages: HashMap<String, MessagePlan> = HashMap::new();
        for m in &reach {
            let mut plan = MessagePlan::default();
            for f in m.fields() {
                let b = Behaviors::of(&f);
                if b.required {
                    plan.required.push(f.clone());
                }
                if b.output_only {
                    plan.output_only.push(f);
                }
            }
            if !plan.required.is_empty() || !plan.output_only.is_empty() {
                messages.insert(m.full_name().to_owned(), plan);
            }
        }
        // A message checks something when a field's type does: to a fixed point, for cycles.
        loop {
            let mut grew = false;
            for m in &reach {
                let nested: Vec<FieldDescriptor> = m
                    .fields()
                    .filter(|f| message_of(f).is_some_and(|t| messages.contains_key(t.full_name())))
                    .collect();
                let known = messages.get(m.full_name()).map_or(0, |p| p.nested.len());
                if nested.len() > known {
                    messages.entry(m.full_name().to_owned()).or_default().nested = nested;
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        Self { messages, bound }
    }

    fn is_bound(&self, path: &[Element], field: &FieldDescriptor) -> bool {
        self.bound.iter().any(|b| {
            let mut parts = b.split('.');
            path.iter().all(|e| parts.next() == Some(e.proto.as_str()))
                && parts.next() == Some(field.name())
                && parts.next().is_none()
        })
    }

    /// Whether messages of `message` have anything to check.
    pub fn checks(&self, message: &MessageDescriptor) -> bool {
        self.messages.contains_key(message.full_name())
    }

    /// Checks `message`, clearing the `OUTPUT_ONLY` fields a client set
    /// under [`OutputOnly::Drop`]. Below `resource` (an update's resource
    /// field) `REQUIRED` is not checked. Returns whether anything was cleared.
    pub fn check(
        &self,
        message: &mut DynamicMessage,
        output_only: OutputOnly,
        resource: Option<&FieldDescriptor>,
        path: &mut Vec<Element>,
        out: &mut Vec<Violation>,
    ) -> bool {
        self.walk(message, output_only, resource, false, path, out)
    }

    fn walk(
        &self,
        message: &mut DynamicMessage,
        output_only: OutputOnly,
        resource: Option<&FieldDescriptor>,
        partial: bool,
        path: &mut Vec<Element>,
        out: &mut Vec<Violation>,
    ) -> bool {
        let desc = message.descriptor();
        let Some(plan) = self.messages.get(desc.full_name()) else {
            return false;
        };
        let mut cleared = false;
        for field in &plan.output_only {
            if !message.has_field(field) || self.is_bound(path, field) {
                continue;
            }
            match output_only {
                OutputOnly::Drop => {
                    message.clear_field(field);
                    cleared = true;
                }
                OutputOnly::Reject => out.push(Violation::at(
                    path,
                    field,
                    "field_behavior.output_only",
                    "field is output only and may not be set",
                )),
            }
        }
        if !partial {
            for field in &plan.required {
                if !message.has_field(field) {
                    out.push(Violation::at(
                        path,
                        field,
                        "field_behavior.required",
                        "field is required",
                    ));
                }
            }
        }
        for field in &plan.nested {
            if !message.has_field(field) {
                continue;
            }
            let partial = partial || resource == Some(field);
            let value = message.get_field_mut(field);
            cleared |= self.nested(value, field, output_only, partial, path, out);
        }
        cleared
    }

    fn nested(
        &self,
        value: &mut Value,
        field: &FieldDescriptor,
        output_only: OutputOnly,
        partial: bool,
        path: &mut Vec<Element>,
        out: &mut Vec<Violation>,
    ) -> bool {
        let mut cleared = false;
        match value {
            Value::Message(m) => {
                path.push(Element::field(field));
                cleared |= self.walk(m, output_only, None, partial, path, out);
                path.pop();
            }
            Value::List(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let Value::Message(m) = item {
                        path.push(Element::index(field, i));
                        cleared |= self.walk(m, output_only, None, partial, path, out);
                        path.pop();
                    }
                }
            }
            Value::Map(entries) => {
                for (key, item) in entries.iter_mut() {
                    if let Value::Message(m) = item {
                        path.push(Element::key(field, key));
                        cleared |= self.walk(m, output_only, None, partial, path, out);
                        path.pop();
                    }
                }
            }
            _ => {}
        }
        cleared
    }
}
