//! The validation rules the gateway enforces, as JSON Schema keywords.
//!
//! The rules are read from the pool validation checks against (see
//! `validate::rules_pool`: `buf.validate` as written, PGV rules rewritten
//! into it), so the document says what the gateway refuses, no more: a
//! rule with a JSON Schema keyword gets it (`minLength`, `pattern`,
//! `minimum`, `exclusiveMaximum`, `minItems`, `uniqueItems`, `enum`,
//! `format`, ...); one without (CEL expressions, `not_in`, `suffix`) is said
//! in the description. 64-bit integers are JSON strings, so their ranges
//! are said in words too.

use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, MessageDescriptor, ReflectMessage, Value,
};
use utoipa::openapi::schema::{Array, KnownFormat, Object, SchemaFormat};

/// The rules of a pool, looked up by the fields of the documented pool.
pub struct Rules {
    pool: DescriptorPool,
    field: Option<prost_reflect::ExtensionDescriptor>,
    message: Option<prost_reflect::ExtensionDescriptor>,
    oneof: Option<prost_reflect::ExtensionDescriptor>,
}

/// What one field's rules say, split by where it goes.
#[derive(Debug, Default)]
pub struct FieldRules {
    /// `(buf.validate.field).required`.
    pub required: bool,
    /// `ignore: IGNORE_IF_ZERO_VALUE` (PGV's `ignore_empty`): the zero
    /// value passes whatever the other rules say.
    pub ignore_zero: bool,
    /// The rules of the field's values (the items of a repeated field).
    pub rules: Option<DynamicMessage>,
    /// Words for what no keyword says.
    pub notes: Vec<String>,
}

impl Rules {
    /// The rules of `pool`; `None` when it has no `buf.validate` rules at all.
    pub fn new(pool: DescriptorPool) -> Option<Self> {
        let field = pool.get_extension_by_name("buf.validate.field");
        field.as_ref()?;
        Some(Self {
            message: pool.get_extension_by_name("buf.validate.message"),
            oneof: pool.get_extension_by_name("buf.validate.oneof"),
            field,
            pool,
        })
    }

    fn twin(&self, field: &FieldDescriptor) -> Option<FieldDescriptor> {
        self.pool
            .get_message_by_name(field.parent_message().full_name())?
            .get_field(field.number())
    }

    /// The rules of `field` (of the documented pool).
    pub fn field(&self, field: &FieldDescriptor) -> FieldRules {
        let mut out = FieldRules::default();
        let (Some(ext), Some(twin)) = (&self.field, self.twin(field)) else {
            return out;
        };
        let options = twin.options();
        if !options.has_extension(ext) {
            return out;
        }
        let Some(rules) = options.get_extension(ext).as_message().cloned() else {
            return out;
        };
        out.required = flag(&rules, "required");
        out.ignore_zero = set(&rules, "ignore").and_then(|v| v.as_enum_number()) == Some(1);
        out.notes.extend(cel_notes(&rules));
        out.rules = Some(rules);
        out
    }

    /// Words for the rules of `message` itself and its oneofs.
    pub fn message_notes(&self, message: &MessageDescriptor) -> Vec<String> {
        let mut notes = Vec::new();
        let Some(twin) = self.pool.get_message_by_name(message.full_name()) else {
            return notes;
        };
        if let Some(ext) = &self.message {
            let options = twin.options();
            if options.has_extension(ext)
                && let Some(rules) = options.get_extension(ext).as_message()
            {
                notes.extend(cel_notes(rules));
            }
        }
        if let Some(ext) = &self.oneof {
            for oneof in twin.oneofs().filter(|o| !o.is_synthetic()) {
                let options = oneof.options();
                if options.has_extension(ext)
                    && options
                        .get_extension(ext)
                        .as_message()
                        .is_some_and(|r| flag(r, "required"))
                {
                    notes.push(format!(
                        "Exactly one field of oneof `{}` must be set.",
                        oneof.name()
                    ));
                }
            }
        }
        notes
    }
}

fn flag(message: &DynamicMessage, name: &str) -> bool {
    message
        .get_field_by_name(name)
        .and_then(|v| v.as_bool())
        .unwrap_or(false)
        && message
            .descriptor()
            .get_field_by_name(name)
            .is_some_and(|f| message.has_field(&f))
}

/// A set count rule (`min_items`, `max_len`, ...) of `rules`.
fn size(rules: &DynamicMessage, name: &str) -> Option<usize> {
    set(rules, name)
        .and_then(|v| v.as_u64())
        .and_then(|n| usize::try_from(n).ok())
}

/// The set rule `name` of `rules`, if any.
fn set<'a>(rules: &'a DynamicMessage, name: &str) -> Option<std::borrow::Cow<'a, Value>> {
    let field = rules.descriptor().get_field_by_name(name)?;
    rules.has_field(&field).then(|| rules.get_field(&field))
}

/// `Rule {id, message, expression}`s as words.
fn cel_notes(rules: &DynamicMessage) -> Vec<String> {
    let Some(list) = set(rules, "cel") else {
        return Vec::new();
    };
    list.as_list()
        .unwrap_or_default()
        .iter()
        .filter_map(Value::as_message)
        .map(|rule| {
            let text = |name: &str| {
                rule.get_field_by_name(name)
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            };
            let (message, expression) = (text("message"), text("expression"));
            if message.is_empty() {
                format!("Must satisfy `{expression}`.")
            } else {
                format!("{message} (`{expression}`).")
            }
        })
        .collect()
}

fn number(value: &Value) -> Option<utoipa::Number> {
    Some(match value {
        Value::I32(n) => utoipa::Number::Int(isize::try_from(*n).ok()?),
        Value::U32(n) => utoipa::Number::UInt(usize::try_from(*n).ok()?),
        Value::F32(n) => utoipa::Number::Float(f64::from(*n)),
        Value::F64(n) => utoipa::Number::Float(*n),
        _ => return None,
    })
}

fn json(value: &Value) -> serde_json::Value {
    match value {
        Value::I32(n) => (*n).into(),
        Value::U32(n) => (*n).into(),
        Value::I64(n) => n.to_string().into(),
        Value::U64(n) => n.to_string().into(),
        Value::F32(n) => f64::from(*n).into(),
        Value::F64(n) => (*n).into(),
        Value::Bool(b) => (*b).into(),
        Value::String(s) => s.clone().into(),
        other => format!("{other:?}").into(),
    }
}

fn list(value: &Value) -> Vec<serde_json::Value> {
    value
        .as_list()
        .unwrap_or_default()
        .iter()
        .map(json)
        .collect()
}

/// A regex matching exactly the literal `text` at the start.
fn literal(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        if "\\^$.|?*+()[]{}/-".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Applies the rules of one value (`rules` is a `FieldRules`) to its
/// scalar schema; `notes` gets what no keyword says.
pub fn scalar(rules: &DynamicMessage, object: &mut Object, notes: &mut Vec<String>) {
    for (field, typed) in rules.fields() {
        let Some(typed) = typed.as_message() else {
            continue;
        };
        match field.name() {
            "string" => string(typed, object, notes),
            "bytes" => bytes(typed, object, notes),
            "enum" => {
                if let Some(values) = set(typed, "in") {
                    notes.push(format!("One of the values numbered {:?}.", list(&values)));
                }
                if let Some(values) = set(typed, "not_in") {
                    notes.push(format!("None of the values numbered {:?}.", list(&values)));
                }
            }
            "bool" => {
                if let Some(v) = set(typed, "const") {
                    object.enum_values = Some(vec![json(&v)]);
                }
            }
            "int64" | "uint64" | "sint64" | "fixed64" | "sfixed64" => numeric_words(typed, notes),
            "float" | "double" | "int32" | "uint32" | "sint32" | "fixed32" | "sfixed32" => {
                numeric(typed, object, notes);
            }
            other => notes.extend(
                typed
                    .fields()
                    .map(|(f, v)| format!("Rule `{other}.{}`: {:?}.", f.name(), json(v))),
            ),
        }
    }
}

fn string(rules: &DynamicMessage, object: &mut Object, notes: &mut Vec<String>) {
    if let Some(n) = size(rules, "len") {
        object.min_length = Some(n);
        object.max_length = Some(n);
    }
    if let Some(n) = size(rules, "min_len") {
        object.min_length = Some(n);
    }
    if let Some(n) = size(rules, "max_len") {
        object.max_length = Some(n);
    }
    for (name, words) in [
        ("min_bytes", "at least"),
        ("max_bytes", "at most"),
        ("len_bytes", "exactly"),
    ] {
        if let Some(n) = size(rules, name) {
            notes.push(format!("UTF-8 encoded, {words} {n} bytes."));
        }
    }
    let text = |name: &str| set(rules, name).and_then(|v| v.as_str().map(str::to_owned));
    if let Some(p) = text("pattern") {
        object.pattern = Some(p);
    }
    if let Some(prefix) = text("prefix") {
        match object.pattern {
            None => object.pattern = Some(format!("^{}", literal(&prefix))),
            Some(_) => notes.push(format!("Starts with `{prefix}`.")),
        }
    }
    for (name, words) in [
        ("suffix", "Ends with"),
        ("contains", "Contains"),
        ("not_contains", "Does not contain"),
    ] {
        if let Some(t) = text(name) {
            notes.push(format!("{words} `{t}`."));
        }
    }
    if let Some(v) = set(rules, "in") {
        object.enum_values = Some(list(&v));
    }
    if let Some(v) = set(rules, "const") {
        object.enum_values = Some(vec![json(&v)]);
    }
    if let Some(v) = set(rules, "not_in") {
        notes.push(format!("Not one of {:?}.", list(&v)));
    }
    let format = |f: KnownFormat| Some(SchemaFormat::KnownFormat(f));
    let custom = |f: &str| Some(SchemaFormat::Custom(f.to_owned()));
    for (name, value) in rules.fields() {
        if value.as_bool() != Some(true) {
            continue;
        }
        let known = match name.name() {
            "email" => format(KnownFormat::Email),
            "hostname" => format(KnownFormat::Hostname),
            "ipv4" => format(KnownFormat::Ipv4),
            "ipv6" => format(KnownFormat::Ipv6),
            "uri" => custom("uri"),
            "uri_ref" => custom("uri-reference"),
            "uuid" => custom("uuid"),
            "ip" => custom("ip"),
            "address" => custom("hostname-or-ip"),
            "tuuid" => custom("uuid-without-dashes"),
            "ulid" => custom("ulid"),
            "host_and_port" => custom("host-and-port"),
            _ => continue,
        };
        object.format = known;
    }
}

fn bytes(rules: &DynamicMessage, _object: &mut Object, notes: &mut Vec<String>) {
    for (field, value) in rules.fields() {
        notes.push(format!("Bytes rule `{}`: {:?}.", field.name(), json(value)));
    }
}

fn numeric(rules: &DynamicMessage, object: &mut Object, notes: &mut Vec<String>) {
    let bound = |name: &str| set(rules, name).and_then(|v| number(&v));
    let (gt, gte, lt, lte) = (bound("gt"), bound("gte"), bound("lt"), bound("lte"));
    let lower = gt.as_ref().or(gte.as_ref()).map(as_f64);
    let upper = lt.as_ref().or(lte.as_ref()).map(as_f64);
    // A lower bound above the upper one means "outside the range": no keyword says that.
    if let (Some(lower), Some(upper)) = (lower, upper)
        && lower > upper
    {
        numeric_words(rules, notes);
    } else {
        object.exclusive_minimum = gt;
        object.minimum = gte;
        object.exclusive_maximum = lt;
        object.maximum = lte;
    }
    if let Some(v) = set(rules, "in") {
        object.enum_values = Some(list(&v));
    }
    if let Some(v) = set(rules, "const") {
        object.enum_values = Some(vec![json(&v)]);
    }
    if let Some(v) = set(rules, "not_in") {
        notes.push(format!("Not one of {:?}.", list(&v)));
    }
    if flag(rules, "finite") {
        notes.push("Finite: not NaN or infinity.".to_owned());
    }
}

fn as_f64(n: &utoipa::Number) -> f64 {
    match n {
        utoipa::Number::Int(i) => *i as f64,
        utoipa::Number::UInt(u) => *u as f64,
        utoipa::Number::Float(f) => *f,
    }
}

/// A numeric rule set in words, for values JSON carries as strings.
fn numeric_words(rules: &DynamicMessage, notes: &mut Vec<String>) {
    for (name, words) in [
        ("gt", "greater than"),
        ("gte", "at least"),
        ("lt", "less than"),
        ("lte", "at most"),
        ("const", "exactly"),
    ] {
        if let Some(v) = set(rules, name) {
            notes.push(format!("Must be {words} {}.", json(&v)));
        }
    }
    for (name, words) in [("in", "One of"), ("not_in", "Not one of")] {
        if let Some(v) = set(rules, name) {
            notes.push(format!("{words} {:?}.", list(&v)));
        }
    }
}

/// The `repeated` rules of `rules` applied to an array schema; the items'
/// own rules, when there are some.
pub fn array(
    rules: &DynamicMessage,
    array: &mut Array,
    notes: &mut Vec<String>,
) -> Option<DynamicMessage> {
    let repeated = set(rules, "repeated")?;
    let repeated = repeated.as_message()?;
    array.min_items = size(repeated, "min_items");
    array.max_items = size(repeated, "max_items");
    array.unique_items = flag(repeated, "unique");
    let items = set(repeated, "items").and_then(|v| v.as_message().cloned());
    if let Some(items) = &items {
        notes.extend(cel_notes(items));
    }
    items
}

/// The `map` rules of `rules` applied to an object schema; the values'
/// own rules, when there are some.
pub fn map(
    rules: &DynamicMessage,
    object: &mut Object,
    notes: &mut Vec<String>,
) -> Option<DynamicMessage> {
    let map = set(rules, "map")?;
    let map = map.as_message()?;
    object.min_properties = size(map, "min_pairs");
    object.max_properties = size(map, "max_pairs");
    if set(map, "keys").is_some() {
        notes.push("Keys have rules of their own.".to_owned());
    }
    set(map, "values").and_then(|v| v.as_message().cloned())
}
