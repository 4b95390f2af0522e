//! protoc-gen-validate's `validate.rules` as `buf.validate` rules.
//!
//! The two rule languages share their shape (protovalidate grew out of
//! PGV): the same rule messages by type (`string`, `int32`, `repeated`, ...)
//! with the same rule names, so a PGV rule set is copied into its
//! protovalidate twin name by name and one engine enforces both. What
//! differs is moved: `ignore_empty` and `message.skip` become the field's
//! `ignore`, `message.required` and the `required` of `any`, `duration` and
//! `timestamp` become the field's `required`, a oneof's `(validate.required)`
//! its `(buf.validate.oneof).required`; a message marked
//! `(validate.disabled)` or `(validate.ignored)` keeps no rules.
//!
//! The rewrite runs once, on a copy of the descriptors that only validation
//! reads: what reflection serves and OpenAPI documents is the proto as written.

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, Value};

/// `buf.validate.Ignore.IGNORE_IF_ZERO_VALUE`.
const IGNORE_IF_ZERO_VALUE: i32 = 1;
/// `buf.validate.Ignore.IGNORE_ALWAYS`.
const IGNORE_ALWAYS: i32 = 3;
const BUF_VALIDATE_FILE: &str = "buf/validate/validate.proto";

/// The descriptors with every PGV rule also written as its protovalidate
/// equivalent, and the PGV rules that have none (`map.no_sparse`), by
/// `field: rule`. With `keep_buf` false the `buf.validate` rules as written
/// are removed, leaving the PGV ones alone. `Ok(None)` when no file uses
/// PGV rules.
///
/// # Errors
/// The rewritten descriptors do not build (a bug, not bad input).
pub fn translate(
    pool: &DescriptorPool,
    keep_buf: bool,
) -> anyhow::Result<Option<(DescriptorPool, Vec<String>)>> {
    if pool.get_extension_by_name("validate.rules").is_none() {
        return Ok(None);
    }
    let meta = crate::descriptor::bundled_pool(&["validate/validate.proto", BUF_VALIDATE_FILE])?;
    let ext = |name: &str| {
        meta.get_extension_by_name(name)
            .ok_or_else(|| anyhow::anyhow!("bundled validate protos lack {name}"))
    };
    let names = Names {
        pgv_field: ext("validate.rules")?,
        pgv_oneof: ext("validate.required")?,
        pgv_disabled: ext("validate.disabled")?,
        pgv_ignored: ext("validate.ignored")?,
        buf_field: ext("buf.validate.field")?,
        buf_oneof: ext("buf.validate.oneof")?,
        buf_message: ext("buf.validate.message")?,
        keep_buf,
    };
    let set_desc = meta
        .get_message_by_name("google.protobuf.FileDescriptorSet")
        .ok_or_else(|| anyhow::anyhow!("no FileDescriptorSet in the bundled protos"))?;
    let mut set = DynamicMessage::decode(set_desc, pool.encode_to_vec().as_slice())?;
    let mut uncovered = Vec::new();
    let mut changed = false;
    let Some(Value::List(files)) = set.get_field_by_name_mut("file") else {
        return Ok(None);
    };
    for file in files.iter_mut().filter_map(Value::as_message_mut) {
        let package = file
            .get_field_by_name("package")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let mut touched = false;
        if let Some(Value::List(messages)) = file.get_field_by_name_mut("message_type") {
            for message in messages.iter_mut().filter_map(Value::as_message_mut) {
                touched |= rewrite_message(message, &package, &names, &mut uncovered);
            }
        }
        if touched {
            changed = true;
            add_dependency(file, BUF_VALIDATE_FILE);
        }
    }
    if !changed {
        return Ok(None);
    }
    // The rewritten files import buf/validate, which the set may not hold.
    let present: std::collections::HashSet<String> =
        pool.files().map(|f| f.name().to_owned()).collect();
    let mut missing: Vec<_> = meta
        .files()
        .filter(|f| !present.contains(f.name()) && f.name() != "validate/validate.proto")
        .map(|f| f.file_descriptor_proto().encode_to_vec())
        .collect();
    let mut bytes = Vec::new();
    for file in missing.drain(..) {
        prost::encoding::bytes::encode(1, &file, &mut bytes);
    }
    set.encode(&mut bytes)?;
    let translated = DescriptorPool::decode(bytes.as_slice())?;
    Ok(Some((translated, uncovered)))
}

struct Names {
    pgv_field: prost_reflect::ExtensionDescriptor,
    pgv_oneof: prost_reflect::ExtensionDescriptor,
    pgv_disabled: prost_reflect::ExtensionDescriptor,
    pgv_ignored: prost_reflect::ExtensionDescriptor,
    buf_field: prost_reflect::ExtensionDescriptor,
    buf_oneof: prost_reflect::ExtensionDescriptor,
    buf_message: prost_reflect::ExtensionDescriptor,
    keep_buf: bool,
}

fn add_dependency(file: &mut DynamicMessage, name: &str) {
    if let Some(Value::List(deps)) = file.get_field_by_name_mut("dependency")
        && !deps.iter().any(|d| d.as_str() == Some(name))
    {
        deps.push(Value::String(name.to_owned()));
    }
}

/// Whether the options message at `field` of `holder` has `ext` set true.
fn flag(holder: &DynamicMessage, ext: &prost_reflect::ExtensionDescriptor) -> bool {
    holder
        .get_field_by_name("options")
        .and_then(|o| o.as_message().map(|o| o.get_extension(ext).as_bool()))
        .flatten()
        .unwrap_or(false)
}

/// Rewrites the rules of one `DescriptorProto` and its nested types.
fn rewrite_message(
    message: &mut DynamicMessage,
    scope: &str,
    names: &Names,
    uncovered: &mut Vec<String>,
) -> bool {
    let name = message
        .get_field_by_name("name")
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    let full = if scope.is_empty() {
        name
    } else {
        format!("{scope}.{name}")
    };
    let mut touched = false;
    if let Some(Value::List(nested)) = message.get_field_by_name_mut("nested_type") {
        for inner in nested.iter_mut().filter_map(Value::as_message_mut) {
            touched |= rewrite_message(inner, &full, names, uncovered);
        }
    }
    if !names.keep_buf
        && let Some(Value::Message(options)) = message.get_field_by_name_mut("options")
        && options.has_extension(&names.buf_message)
    {
        options.clear_extension(&names.buf_message);
        touched = true;
    }
    let disabled = flag(message, &names.pgv_disabled) || flag(message, &names.pgv_ignored);
    if let Some(Value::List(fields)) = message.get_field_by_name_mut("field") {
        for field in fields.iter_mut().filter_map(Value::as_message_mut) {
            let field_name = field
                .get_field_by_name("name")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let Some(Value::Message(options)) = field.get_field_by_name_mut("options") else {
                continue;
            };
            if !names.keep_buf && options.has_extension(&names.buf_field) {
                options.clear_extension(&names.buf_field);
                touched = true;
            }
            if disabled
                || !options.has_extension(&names.pgv_field)
                || options.has_extension(&names.buf_field)
            {
                continue;
            }
            let Some(pgv) = options
                .get_extension(&names.pgv_field)
                .as_message()
                .cloned()
            else {
                continue;
            };
            let Some(rules) = names.buf_field.kind().as_message().cloned() else {
                continue;
            };
            let at = format!("{full}.{field_name}");
            let buf = field_rules(&pgv, &rules, &at, uncovered);
            options.set_extension(&names.buf_field, Value::Message(buf));
            touched = true;
        }
    }
    if let Some(Value::List(oneofs)) = message.get_field_by_name_mut("oneof_decl") {
        for oneof in oneofs.iter_mut().filter_map(Value::as_message_mut) {
            let Some(Value::Message(options)) = oneof.get_field_by_name_mut("options") else {
                continue;
            };
            if !names.keep_buf && options.has_extension(&names.buf_oneof) {
                options.clear_extension(&names.buf_oneof);
                touched = true;
            }
            if disabled || options.get_extension(&names.pgv_oneof).as_bool() != Some(true) {
                continue;
            }
            let Some(rules) = names.buf_oneof.kind().as_message().cloned() else {
                continue;
            };
            let mut buf = DynamicMessage::new(rules);
            if buf
                .try_set_field_by_name("required", Value::Bool(true))
                .is_ok()
            {
                options.set_extension(&names.buf_oneof, Value::Message(buf));
                touched = true;
            }
        }
    }
    touched
}

/// A PGV `FieldRules` as a `buf.validate.FieldRules`.
fn field_rules(
    pgv: &DynamicMessage,
    rules: &MessageDescriptor,
    at: &str,
    uncovered: &mut Vec<String>,
) -> DynamicMessage {
    let mut out = DynamicMessage::new(rules.clone());
    for (field, value) in pgv.fields() {
        let Some(kind) = value.as_message() else {
            continue;
        };
        if field.name() == "message" {
            if kind.get_field_by_name("skip").and_then(|v| v.as_bool()) == Some(true) {
                let _ = out.try_set_field_by_name("ignore", Value::EnumNumber(IGNORE_ALWAYS));
            }
            if kind.get_field_by_name("required").and_then(|v| v.as_bool()) == Some(true) {
                let _ = out.try_set_field_by_name("required", Value::Bool(true));
            }
            continue;
        }
        let Some(target) = rules.get_field_by_name(field.name()) else {
            uncovered.push(format!("{at}: {}", field.name()));
            continue;
        };
        let Some(target_desc) = target.kind().as_message().cloned() else {
            continue;
        };
        let mut typed = DynamicMessage::new(target_desc.clone());
        for (rule, value) in kind.fields() {
            match rule.name() {
                "ignore_empty" => {
                    if value.as_bool() == Some(true) {
                        let _ = out.try_set_field_by_name(
                            "ignore",
                            Value::EnumNumber(IGNORE_IF_ZERO_VALUE),
                        );
                    }
                }
                "required" => {
                    if value.as_bool() == Some(true) {
                        let _ = out.try_set_field_by_name("required", Value::Bool(true));
                    }
                }
                "items" | "keys" | "values" => {
                    if let (Some(inner), Some(inner_field)) = (
                        value.as_message(),
                        target_desc.get_field_by_name(rule.name()),
                    ) {
                        let nested = field_rules(inner, rules, at, uncovered);
                        let _ = typed.try_set_field(&inner_field, Value::Message(nested));
                    }
                }
                name => {
                    let copied = target_desc
                        .get_field_by_name(name)
                        .is_some_and(|t| typed.try_set_field(&t, value.clone()).is_ok());
                    if !copied {
                        uncovered.push(format!("{at}: {}.{name}", field.name()));
                    }
                }
            }
        }
        let _ = out.try_set_field(&target, Value::Message(typed));
    }
    out
}
