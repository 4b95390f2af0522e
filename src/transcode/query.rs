//! Query parameters into message fields.
//!
//! `a.b.c=value` sets the nested field by proto or JSON names; a repeated
//! scalar takes one element per occurrence (`?tag=a&tag=b`). Maps, repeated
//! messages and plain messages cannot be set from the query. Names of fields
//! bound by the path or the body, and names of no field, follow the route's
//! `unknown_query_parameters` policy: an error, or dropped.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, ReflectMessage, Value,
};

use super::request::slot;
use super::{TranscodeError, value};
use crate::config::UnknownFields;
use crate::http_rule::Route;
use crate::http_rule::route_table::is_bound;

/// Applies a raw query string to `message`.
///
/// # Errors
/// A [`TranscodeError`] naming the first parameter at fault.
pub fn apply(
    message: &mut DynamicMessage,
    route: &Route,
    query: &str,
) -> Result<(), TranscodeError> {
    let input = message.descriptor();
    let mut set_once: Vec<Vec<FieldDescriptor>> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (raw_param, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let bad_encoding = || TranscodeError::QueryEncoding {
            param: raw_param.to_owned(),
        };
        let param = decode_component(raw_param).ok_or_else(bad_encoding)?;
        let raw = decode_component(raw_value).ok_or_else(bad_encoding)?;
        let Some(fields) = resolve(&input, &param)? else {
            if route.unknown_query_parameters == UnknownFields::Reject {
                return Err(TranscodeError::UnknownQueryParameter {
                    param: param.into_owned(),
                });
            }
            continue;
        };
        if is_bound(route, &fields) {
            // http.proto maps only unbound fields to the query; `ignore`
            // drops the rest unparsed, so the path or body value stands.
            if route.unknown_query_parameters == UnknownFields::Ignore {
                continue;
            }
            let by = if route.path_fields.iter().any(|p| p.contains(&fields)) {
                "path"
            } else {
                "body"
            };
            return Err(TranscodeError::BoundQueryParameter {
                param: param.into_owned(),
                by,
            });
        }
        let (parents, leaf) = fields.split_at(fields.len() - 1);
        let leaf = &leaf[0];
        let unsupported = |reason: &str| TranscodeError::UnsupportedQueryParameter {
            param: param.to_string(),
            reason: reason.to_owned(),
        };
        if leaf.is_map() {
            return Err(unsupported("map fields cannot be set from the query"));
        }
        if let Kind::Message(m) = leaf.kind()
            && !value::is_scalar_like(&m)
        {
            return Err(unsupported(if leaf.is_list() {
                "repeated message fields cannot be set from the query"
            } else {
                "message fields cannot be set from the query; set their fields with dotted names"
            }));
        }
        let parsed =
            value::parse(leaf, &raw).map_err(|reason| TranscodeError::InvalidQueryValue {
                param: param.to_string(),
                value: raw.to_string(),
                reason,
            })?;
        let target = slot(message, parents)?;
        if leaf.is_list() {
            if let Value::List(items) = target.get_field_mut(leaf) {
                items.push(parsed);
            }
            continue;
        }
        if set_once.contains(&fields) {
            return Err(unsupported("given more than once for a non-repeated field"));
        }
        if let Some(oneof) = leaf.containing_oneof()
            && let Some(other) = oneof.fields().find(|f| f != leaf && target.has_field(f))
        {
            return Err(unsupported(&format!(
                "conflicts with {:?}: both are in oneof {:?}",
                other.name(),
                oneof.name()
            )));
        }
        target.set_field(leaf, parsed);
        set_once.push(fields);
    }
    Ok(())
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a
/// space, and percent-encodings must decode to UTF-8 (`None` otherwise), so
/// no value is silently altered on the way to the backend.
fn decode_component(raw: &str) -> Option<Cow<'_, str>> {
    let spaced = if raw.contains('+') {
        Cow::Owned(raw.replace('+', " "))
    } else {
        Cow::Borrowed(raw)
    };
    if !spaced.contains('%') {
        return Some(spaced);
    }
    let decoded = percent_decode_str(&spaced).decode_utf8().ok()?;
    Some(Cow::Owned(decoded.into_owned()))
}

/// Resolves `a.b.c` by proto or JSON names; `None` when some part names no field.
fn resolve(
    input: &MessageDescriptor,
    param: &str,
) -> Result<Option<Vec<FieldDescriptor>>, TranscodeError> {
    let mut fields = Vec::new();
    let mut current = input.clone();
    let parts: Vec<&str> = param.split('.').collect();
    for (i, name) in parts.iter().enumerate() {
        let Some(field) = current
            .get_field_by_name(name)
            .or_else(|| current.get_field_by_json_name(name))
        else {
            return Ok(None);
        };
        if i + 1 < parts.len() {
            match field.kind() {
                Kind::Message(m)
                    if !field.is_list() && !field.is_map() && !value::is_scalar_like(&m) =>
                {
                    current = m;
                }
                _ => {
                    return Err(TranscodeError::UnsupportedQueryParameter {
                        param: param.to_owned(),
                        reason: format!("{:?} is not a singular message field", field.name()),
                    });
                }
            }
        }
        fields.push(field);
    }
    Ok(Some(fields))
}
