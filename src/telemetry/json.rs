//! JSON log lines: the shape of `tracing-subscriber`'s JSON format
//! (`timestamp`, `level`, `fields`, `target`, `span`, `spans`), except that
//! a field whose value is a list is a JSON array, not the list's `Debug`
//! text in a string, so log pipelines can filter on its items.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The event format of `--log-format json`.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut fields = FieldMap::default();
        event.record(&mut fields);

        let spans: Vec<Value> = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current())
            .map(|current| current.scope().from_root().map(|s| span(&s)).collect())
            .unwrap_or_default();
        let line = Line {
            timestamp: &timestamp,
            level: meta.level().as_str(),
            fields: fields.0,
            target: meta.target(),
            span: spans.last(),
            spans: (!spans.is_empty()).then_some(&spans),
        };
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(writer, "{text}")
    }
}

/// One log line, its keys in the order of `tracing-subscriber`'s format.
#[derive(serde::Serialize)]
struct Line<'a> {
    timestamp: &'a str,
    level: &'a str,
    fields: Map<String, Value>,
    target: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    span: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    spans: Option<&'a Vec<Value>>,
}

/// A span's recorded fields and its name.
fn span<S>(span: &tracing_subscriber::registry::SpanRef<'_, S>) -> Value
where
    S: for<'a> LookupSpan<'a>,
{
    let mut fields = span
        .extensions()
        .get::<FormattedFields<JsonFields>>()
        .and_then(|f| serde_json::from_str::<Map<String, Value>>(f).ok())
        .unwrap_or_default();
    fields.insert("name".into(), span.metadata().name().into());
    Value::Object(fields)
}

/// An event's fields as JSON values.
#[derive(Default)]
struct FieldMap(Map<String, Value>);

impl FieldMap {
    fn put(&mut self, field: &Field, value: Value) {
        self.0.insert(field.name().to_owned(), value);
    }
}

impl Visit for FieldMap {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.into());
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, value.to_string().into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.put(field, debug_value(field.name(), text));
    }
}

/// A `Debug` rendering as a JSON value: the `Debug` text of a list of
/// strings or numbers (`["a", "b"]`, `[1, 2]`) is already a JSON array, so
/// it becomes one; anything else stays a string. The message is always text.
fn debug_value(name: &str, text: String) -> Value {
    if name != "message"
        && text.starts_with('[')
        && let Ok(list @ Value::Array(_)) = serde_json::from_str::<Value>(&text)
    {
        return list;
    }
    Value::String(text)
}

#[cfg(test)]
mod tests {
    use super::debug_value;
    use serde_json::json;

    #[test]
    fn lists_become_arrays_and_everything_else_stays_text() {
        let cases = [
            (
                "services",
                format!("{:?}", vec!["a.v1.A", "b.v1.B"]),
                json!(["a.v1.A", "b.v1.B"]),
            ),
            ("ports", format!("{:?}", vec![1, 2]), json!([1, 2])),
            ("empty", format!("{:?}", Vec::<String>::new()), json!([])),
            (
                "quoted",
                format!("{:?}", vec!["say \"hi\""]),
                json!(["say \"hi\""]),
            ),
            ("message", "[1, 2]".to_owned(), json!("[1, 2]")),
            (
                "timeout",
                format!("{:?}", std::time::Duration::from_millis(5)),
                json!("5ms"),
            ),
            ("option", format!("{:?}", Some("x")), json!("Some(\"x\")")),
            // Debug escapes that JSON does not read stay text.
            (
                "odd",
                format!("{:?}", vec!["\u{7f}"]),
                json!("[\"\\u{7f}\"]"),
            ),
            ("not_a_list", "[not json".to_owned(), json!("[not json")),
        ];
        for (name, text, want) in cases {
            assert_eq!(debug_value(name, text.clone()), want, "{name}: {text}");
        }
    }
}
