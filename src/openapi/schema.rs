//! Protobuf types as JSON Schema, in their proto3 JSON form.
//!
//! Messages and enums become `$ref`-linked entries of `components/schemas`
//! named by their full proto names; recursion is safe because a message is
//! registered before its fields are walked. Well-known types are written
//! inline in their JSON forms (Timestamp is a `date-time` string, wrappers
//! are their scalar, ...). Field names follow the gateway's JSON options.

use std::collections::BTreeMap;

use prost_reflect::{
    DescriptorPool, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, KnownFormat, ObjectBuilder, Ref, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{Deprecated, RefOr};

use super::comments::Comments;
use super::constraints::{self, Rules};
use crate::config::JsonOptions;

const FIELD_BEHAVIOR: &str = "google.api.field_behavior";
const REQUIRED: i32 = 2;
const OUTPUT_ONLY: i32 = 3;
const INPUT_ONLY: i32 = 4;

/// Collects component schemas while operations refer to them.
pub struct Schemas<'a> {
    pool: &'a DescriptorPool,
    comments: &'a Comments,
    json: JsonOptions,
    components: BTreeMap<String, RefOr<Schema>>,
    rules: Option<&'a Rules>,
    annotations: Option<&'a super::annotations::Annotations>,
}

impl<'a> Schemas<'a> {
    /// An empty collection.
    pub fn new(pool: &'a DescriptorPool, comments: &'a Comments, json: JsonOptions) -> Self {
        Self {
            pool,
            comments,
            json,
            components: BTreeMap::new(),
            rules: None,
            annotations: None,
        }
    }

    /// Applies grpc-gateway's `openapiv2_schema` and `openapiv2_field` options too.
    pub fn with_annotations(
        mut self,
        annotations: Option<&'a super::annotations::Annotations>,
    ) -> Self {
        self.annotations = annotations;
        self
    }

    /// Documents the validation rules of `rules` too.
    pub fn with_rules(mut self, rules: Option<&'a Rules>) -> Self {
        self.rules = rules;
        self
    }

    fn rules_of(&self, field: &FieldDescriptor) -> constraints::FieldRules {
        self.rules.map(|r| r.field(field)).unwrap_or_default()
    }

    /// The collected `components/schemas`.
    pub fn into_components(self) -> BTreeMap<String, RefOr<Schema>> {
        self.components
    }

    /// The JSON name of a field under the gateway's output options.
    pub fn field_name(&self, field: &FieldDescriptor) -> String {
        if self.json.use_proto_names {
            field.name().to_owned()
        } else {
            field.json_name().to_owned()
        }
    }

    /// The comment of a field, message, enum or value, by its file and path.
    pub fn comment(&self, file: &str, path: &[i32]) -> Option<String> {
        self.comments.get(file, path).map(str::to_owned)
    }

    /// A schema for a message: inline for well-known types, else a `$ref`.
    pub fn message(&mut self, message: &MessageDescriptor) -> RefOr<Schema> {
        if let Some(schema) = well_known(message) {
            return RefOr::T(schema);
        }
        let name = message.full_name().to_owned();
        if !self.components.contains_key(&name) {
            // Placeholder first: recursive messages refer to themselves while being built.
            self.components
                .insert(name.clone(), RefOr::T(Schema::default()));
            let schema = self.build_message(message);
            self.components.insert(name.clone(), RefOr::T(schema));
        }
        RefOr::Ref(Ref::from_schema_name(name))
    }

    /// The `google.rpc.Status` error body, registered under its proto name.
    pub fn status(&mut self) -> RefOr<Schema> {
        match self.pool.get_message_by_name("google.rpc.Status") {
            Some(status) => self.message(&status),
            None => RefOr::T(Schema::default()),
        }
    }

    /// A schema for a field: its kind, wrapped in an array for repeated
    /// fields or an object for maps, with the field's comment and behaviour.
    pub fn field(&mut self, field: &FieldDescriptor) -> RefOr<Schema> {
        let description = self.comment(field.parent_file().name(), field.path());
        let behavior = field_behavior(self.pool, field);
        let deprecated = field
            .field_descriptor_proto()
            .options
            .as_ref()
            .and_then(|o| o.deprecated)
            == Some(true);
        let read_only = behavior.contains(&OUTPUT_ONLY);
        let write_only = behavior.contains(&INPUT_ONLY);
        let rules = self.rules_of(field);
        let rules_ignore_zero = rules.ignore_zero;
        let mut notes = rules.notes;
        let description = with_notes(description, &mut notes);

        if field.is_map() {
            let mut value = match field.kind() {
                Kind::Message(entry) => self.kind(&entry.map_entry_value_field().kind()),
                _ => RefOr::T(Schema::default()),
            };
            let mut object = ObjectBuilder::new()
                .schema_type(Type::Object)
                .deprecated(deprecated.then_some(Deprecated::True))
                .build();
            if let Some(rules) = &rules.rules
                && let Some(values) = constraints::map(rules, &mut object, &mut notes)
                && let RefOr::T(Schema::Object(value)) = &mut value
            {
                constraints::scalar(&values, value, &mut notes);
            }
            object.additional_properties = Some(Box::new(AdditionalProperties::RefOr(value)));
            object.description = with_notes(description, &mut notes);
            object.read_only = read_only.then_some(true);
            object.write_only = write_only.then_some(true);
            if let Some(js) = self.annotations.and_then(|a| a.field(field)) {
                super::annotations::json_schema(&js, &mut object);
            }
            return RefOr::T(Schema::Object(object));
        }
        let mut single = self.kind(&field.kind());
        let required_scalar = self.is_required(field) && !matches!(field.kind(), Kind::Message(_));
        if field.is_list() {
            // utoipa's Array has no readOnly/writeOnly; say it in words instead.
            let note = match (read_only, write_only) {
                (true, _) => "Output only. ",
                (_, true) => "Input only. ",
                _ => "",
            };
            let description = match description {
                Some(d) => Some(format!("{note}{d}")),
                None if !note.is_empty() => Some(note.trim_end().to_owned()),
                None => None,
            };
            let mut array = ArrayBuilder::new().build();
            if let Some(rules) = &rules.rules
                && let Some(items) = constraints::array(rules, &mut array, &mut notes)
                && let RefOr::T(Schema::Object(item)) = &mut single
            {
                constraints::scalar(&items, item, &mut notes);
            }
            // A REQUIRED list without presence is missing when empty.
            if self.is_required(field) && array.min_items.is_none() {
                array.min_items = Some(1);
            }
            array.items = utoipa::openapi::schema::ArrayItems::RefOrSchema(Box::new(single));
            array.description = with_notes(description, &mut notes);
            if deprecated {
                array.deprecated = Some(Deprecated::True);
            }
            if let Some(js) = self.annotations.and_then(|a| a.field(field)) {
                super::annotations::array(&js, &mut array);
            }
            return RefOr::T(Schema::Array(array));
        }
        if let Some(rules) = &rules.rules
            && let RefOr::T(Schema::Object(object)) = &mut single
        {
            let plain = object.clone();
            constraints::scalar(rules, object, &mut notes);
            if rules_ignore_zero && *object != plain {
                // The zero value passes unchecked: either it, or a value the rules accept.
                let mut zero = plain;
                zero.enum_values = Some(vec![zero_value(&field.kind())]);
                let constrained = std::mem::take(object);
                let mut either = utoipa::openapi::schema::AnyOf::new();
                either.items = vec![
                    RefOr::T(Schema::Object(zero)),
                    RefOr::T(Schema::Object(constrained)),
                ];
                either.description = with_notes(description, &mut notes);
                return RefOr::T(Schema::AnyOf(either));
            }
        }
        let description = with_notes(description, &mut notes);
        match single {
            RefOr::Ref(mut r) => {
                // OpenAPI 3.1 allows description and readOnly beside a $ref.
                let mut text = description.unwrap_or_default();
                if deprecated {
                    text = format!("Deprecated. {text}").trim_end().to_owned();
                }
                r.description = text;
                r.read_only = read_only.then_some(true);
                r.write_only = write_only.then_some(true);
                if let Some(js) = self.annotations.and_then(|a| a.field(field)) {
                    if let Some(d) = super::annotations::text(&js, "description") {
                        r.description = d;
                    }
                    if js.get_field_by_name("read_only").and_then(|v| v.as_bool()) == Some(true) {
                        r.read_only = Some(true);
                    }
                }
                RefOr::Ref(r)
            }
            RefOr::T(Schema::Object(mut object)) => {
                if description.is_some() {
                    object.description = description;
                }
                // A REQUIRED string without presence is missing when empty.
                if required_scalar
                    && object.min_length.is_none()
                    && object.enum_values.is_none()
                    && matches!(field.kind(), Kind::String)
                {
                    object.min_length = Some(1);
                }
                object.read_only = read_only.then_some(true);
                object.write_only = write_only.then_some(true);
                if deprecated {
                    object.deprecated = Some(Deprecated::True);
                }
                if let Some(js) = self.annotations.and_then(|a| a.field(field)) {
                    super::annotations::json_schema(&js, &mut object);
                }
                RefOr::T(Schema::Object(object))
            }
            other => other,
        }
    }

    /// Whether `google.api.field_behavior` marks the field REQUIRED, or
    /// `(buf.validate.field).required` does (when rules are documented).
    pub fn is_required(&self, field: &FieldDescriptor) -> bool {
        field_behavior(self.pool, field).contains(&REQUIRED) || self.rules_of(field).required
    }

    /// A schema for one value of a kind.
    pub fn kind(&mut self, kind: &Kind) -> RefOr<Schema> {
        let scalar = |ty: Type, format: Option<KnownFormat>| {
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(ty)
                    .format(format.map(SchemaFormat::KnownFormat))
                    .build(),
            ))
        };
        let custom = |ty: Type, format: &str| {
            RefOr::T(Schema::Object(
                ObjectBuilder::new()
                    .schema_type(ty)
                    .format(Some(SchemaFormat::Custom(format.to_owned())))
                    .build(),
            ))
        };
        match kind {
            Kind::Double => scalar(Type::Number, Some(KnownFormat::Double)),
            Kind::Float => scalar(Type::Number, Some(KnownFormat::Float)),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
                scalar(Type::Integer, Some(KnownFormat::Int32))
            }
            Kind::Uint32 | Kind::Fixed32 => custom(Type::Integer, "uint32"),
            // proto3 JSON writes 64-bit integers as decimal strings.
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
                scalar(Type::String, Some(KnownFormat::Int64))
            }
            Kind::Uint64 | Kind::Fixed64 => custom(Type::String, "uint64"),
            Kind::Bool => scalar(Type::Boolean, None),
            Kind::String => scalar(Type::String, None),
            Kind::Bytes => scalar(Type::String, Some(KnownFormat::Byte)),
            Kind::Message(m) => self.message(m),
            Kind::Enum(e) => self.enumeration(e),
        }
    }

    fn enumeration(&mut self, e: &EnumDescriptor) -> RefOr<Schema> {
        if e.full_name() == "google.protobuf.NullValue" {
            return RefOr::T(Schema::Object(
                ObjectBuilder::new().schema_type(Type::Null).build(),
            ));
        }
        let name = e.full_name().to_owned();
        if !self.components.contains_key(&name) {
            let file = e.parent_file();
            let mut lines = Vec::new();
            if let Some(c) = self.comment(file.name(), e.path()) {
                lines.push(c);
            }
            for value in e.values() {
                let note = self
                    .comment(file.name(), value.path())
                    .map(|c| c.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_default();
                let deprecated = value
                    .enum_value_descriptor_proto()
                    .options
                    .as_ref()
                    .and_then(|o| o.deprecated)
                    == Some(true);
                let note = match (deprecated, note.is_empty()) {
                    (true, true) => " (deprecated)".to_owned(),
                    (true, false) => format!(": (deprecated) {note}"),
                    (false, true) => String::new(),
                    (false, false) => format!(": {note}"),
                };
                lines.push(format!("- `{}`{note}", value.name()));
            }
            let builder = if self.json.enums_as_ints {
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                    .enum_values(Some(e.values().map(|v| v.number())))
            } else {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(e.values().map(|v| v.name().to_owned())))
            };
            let schema = builder.description(Some(lines.join("\n"))).build();
            self.components
                .insert(name.clone(), RefOr::T(Schema::Object(schema)));
        }
        RefOr::Ref(Ref::from_schema_name(name))
    }

    fn build_message(&mut self, message: &MessageDescriptor) -> Schema {
        let file = message.parent_file();
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(self.comment(file.name(), message.path()));
        if message
            .descriptor_proto()
            .options
            .as_ref()
            .and_then(|o| o.deprecated)
            == Some(true)
        {
            object = object.deprecated(Some(Deprecated::True));
        }
        let mut oneof_notes = Vec::new();
        for oneof in message.oneofs().filter(|o| !o.is_synthetic()) {
            let members: Vec<String> = oneof
                .fields()
                .map(|f| format!("`{}`", self.field_name(&f)))
                .collect();
            oneof_notes.push(format!(
                "At most one of {} is set (oneof `{}`).",
                members.join(", "),
                oneof.name()
            ));
        }
        let option = self.annotations.and_then(|a| a.schema(message));
        let named_required = option
            .as_ref()
            .map(super::annotations::required)
            .unwrap_or_default();
        for field in message.fields() {
            let name = self.field_name(&field);
            let schema = self.field(&field);
            object = object.property(name.clone(), schema);
            let named = named_required
                .iter()
                .any(|n| n == field.name() || *n == name);
            if self.is_required(&field) || named {
                object = object.required(name);
            }
        }
        if let Some(rules) = self.rules {
            oneof_notes.extend(rules.message_notes(message));
        }
        let mut schema = object.build();
        if let Some(option) = &option {
            super::annotations::schema(option, &mut schema);
        }
        if !oneof_notes.is_empty() {
            let mut text = schema.description.take().unwrap_or_default();
            for note in oneof_notes {
                if !text.is_empty() {
                    text.push_str("\n\n");
                }
                text.push_str(&note);
            }
            schema.description = Some(text);
        }
        Schema::Object(schema)
    }
}

/// The JSON form of a well-known type, or `None` for ordinary messages.
fn well_known(message: &MessageDescriptor) -> Option<Schema> {
    let string = |format: Option<SchemaFormat>, description: &str| {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(format)
            .description(Some(description))
            .build()
    };
    let wrapper = |ty: Type, format: Option<KnownFormat>| {
        ObjectBuilder::new()
            .schema_type(ty)
            .format(format.map(SchemaFormat::KnownFormat))
            .build()
    };
    let object = match message.full_name() {
        "google.protobuf.Timestamp" => string(
            Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)),
            "RFC 3339 timestamp, e.g. 2026-01-15T09:30:00Z",
        ),
        "google.protobuf.Duration" => ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("duration".into())))
            .pattern(Some(r"^-?[0-9]+(\.[0-9]{1,9})?s$"))
            .description(Some("Seconds with up to 9 fractional digits and an `s` suffix, e.g. 1.5s"))
            .build(),
        "google.protobuf.FieldMask" => string(None, "Comma-separated field paths, e.g. displayName,address.city"),
        "google.protobuf.Struct" => ObjectBuilder::new()
            .schema_type(Type::Object)
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .build(),
        "google.protobuf.Value" => ObjectBuilder::new().schema_type(SchemaType::AnyValue).build(),
        "google.protobuf.ListValue" => {
            return Some(Schema::Array(
                ArrayBuilder::new()
                    .items(RefOr::T(Schema::Object(
                        ObjectBuilder::new().schema_type(SchemaType::AnyValue).build(),
                    )))
                    .build(),
            ));
        }
        "google.protobuf.Any" => ObjectBuilder::new()
            .schema_type(Type::Object)
            .property(
                "@type",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some("Type URL of the embedded message, e.g. type.googleapis.com/google.rpc.BadRequest")),
            )
            .required("@type")
            .additional_properties(Some(AdditionalProperties::FreeForm(true)))
            .build(),
        "google.protobuf.Empty" => ObjectBuilder::new().schema_type(Type::Object).build(),
        "google.protobuf.DoubleValue" => wrapper(Type::Number, Some(KnownFormat::Double)),
        "google.protobuf.FloatValue" => wrapper(Type::Number, Some(KnownFormat::Float)),
        "google.protobuf.Int64Value" => wrapper(Type::String, Some(KnownFormat::Int64)),
        "google.protobuf.UInt64Value" => ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::Custom("uint64".into())))
            .build(),
        "google.protobuf.Int32Value" => wrapper(Type::Integer, Some(KnownFormat::Int32)),
        "google.protobuf.UInt32Value" => ObjectBuilder::new()
            .schema_type(Type::Integer)
            .format(Some(SchemaFormat::Custom("uint32".into())))
            .build(),
        "google.protobuf.BoolValue" => wrapper(Type::Boolean, None),
        "google.protobuf.StringValue" => wrapper(Type::String, None),
        "google.protobuf.BytesValue" => wrapper(Type::String, Some(KnownFormat::Byte)),
        _ => return None,
    };
    Some(Schema::Object(object))
}

/// The proto3 JSON of a scalar kind's zero value.
fn zero_value(kind: &Kind) -> serde_json::Value {
    match kind {
        Kind::String | Kind::Bytes => "".into(),
        Kind::Bool => false.into(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 | Kind::Uint64 | Kind::Fixed64 => "0".into(),
        _ => 0.into(),
    }
}

/// `description` with `notes` (drained) after it, a paragraph.
fn with_notes(description: Option<String>, notes: &mut Vec<String>) -> Option<String> {
    if notes.is_empty() {
        return description;
    }
    let words = std::mem::take(notes).join(" ");
    Some(match description {
        Some(d) if !d.is_empty() => format!("{d}\n\n{words}"),
        _ => words,
    })
}

/// The field's `google.api.field_behavior` values.
fn field_behavior(pool: &DescriptorPool, field: &FieldDescriptor) -> Vec<i32> {
    let Some(ext) = pool.get_extension_by_name(FIELD_BEHAVIOR) else {
        return Vec::new();
    };
    let options = field.options();
    if !options.has_extension(&ext) {
        return Vec::new();
    }
    match options.get_extension(&ext).as_ref() {
        Value::List(values) => values.iter().filter_map(Value::as_enum_number).collect(),
        Value::EnumNumber(n) => vec![*n],
        _ => Vec::new(),
    }
}
