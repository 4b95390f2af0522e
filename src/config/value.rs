//! Values of `gateway.yaml` that state their own rule: a duration above
//! zero, a ratio, an integer in a range, a header name.
//!
//! Each checks itself while it is read, inside the deserializer's visit of
//! the scalar, so serde_norway's message names the key path and the line of
//! the value (`backends.users.weight: must be between 1 and 10000 at line 7
//! column 13`). A check made after the scalar was read (serde's `try_from`)
//! would be reported at the enclosing mapping instead.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use http::HeaderName;
use serde::de::{self, Deserialize, Deserializer, Unexpected, Visitor};

/// A duration above zero, written like `30s` or `500ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NonZeroDuration(Duration);

impl NonZeroDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<NonZeroDuration> for Duration {
    fn from(d: NonZeroDuration) -> Self {
        d.0
    }
}

impl<'de> Deserialize<'de> for NonZeroDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NonZeroDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // humantime_serde's word, so messages stay as they were.
                f.write_str("a duration")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match humantime::parse_duration(v) {
                    Ok(d) if d.is_zero() => Err(E::custom("must be greater than 0")),
                    Ok(d) => Ok(NonZeroDuration(d)),
                    Err(_) => Err(E::invalid_value(Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A share between 0 and 1, both included.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ratio(f64);

impl Ratio {
    /// The share.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Ratio {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ratio;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number between 0 and 1")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // NaN fails too.
                if (0.0..=1.0).contains(&v) {
                    Ok(Ratio(v))
                } else {
                    Err(E::custom("must be between 0 and 1"))
                }
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                #[allow(clippy::cast_precision_loss)] // Only 0 and 1 pass.
                self.visit_f64(v as f64)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                #[allow(clippy::cast_precision_loss)] // Only 0 and 1 pass.
                self.visit_f64(v as f64)
            }
        }
        deserializer.deserialize_f64(V)
    }
}

/// An integer of type `T` from `MIN` to `MAX`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Between<T, const MIN: u64, const MAX: u64>(T);

/// An integer of type `T` above zero.
pub type Positive<T> = Between<T, 1, { u64::MAX }>;

/// `backends.<name>.weight`: 1 to [`MAX_WEIGHT`](super::MAX_WEIGHT).
pub type Weight = Between<u32, 1, { super::MAX_WEIGHT as u64 }>;

impl<T: Copy, const MIN: u64, const MAX: u64> Between<T, MIN, MAX> {
    /// The integer.
    pub fn get(self) -> T {
        self.0
    }
}

impl<'de, T, const MIN: u64, const MAX: u64> Deserialize<'de> for Between<T, MIN, MAX>
where
    T: TryFrom<u64>,
{
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T, const MIN: u64, const MAX: u64>(PhantomData<T>);
        impl<T: TryFrom<u64>, const MIN: u64, const MAX: u64> Visitor<'_> for V<T, MIN, MAX> {
            type Value = Between<T, MIN, MAX>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // serde's word for the type ("u32"), so messages stay as they were.
                f.write_str(std::any::type_name::<T>())
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                if !(MIN..=MAX).contains(&v) {
                    return Err(E::custom(range_message(MIN, MAX)));
                }
                T::try_from(v)
                    .map(Between)
                    .map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(range_message(MIN, MAX))),
                }
            }
        }
        deserializer.deserialize_u64(V(PhantomData))
    }
}

fn range_message(min: u64, max: u64) -> String {
    if max == u64::MAX {
        format!("must be greater than {}", min - 1)
    } else {
        format!("must be between {min} and {max}")
    }
}

/// A header name, any case in the file, lower-case once read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderNameText(HeaderName);

impl From<HeaderNameText> for HeaderName {
    fn from(h: HeaderNameText) -> Self {
        h.0
    }
}

impl<'de> Deserialize<'de> for HeaderNameText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = HeaderNameText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                HeaderName::try_from(v.to_ascii_lowercase())
                    .map(HeaderNameText)
                    .map_err(|_| E::custom(format!("{v:?} is not a valid header name")))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// The JSON Schema of a duration as humantime writes it (`500ms`, `30s`,
/// `1m 30s`), for fields read with `humantime_serde`.
#[derive(Debug)]
pub struct DurationText;

/// `"30s"`-style text: digits then a unit, one or more times.
const DURATION_PATTERN: &str = r"^\s*([0-9]+(\.[0-9]+)?\s*[a-zµ]+\s*)+$";

impl schemars::JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number and a unit (ns, us, ms, s, m, h, d), e.g. 500ms, 30s, 1m 30s.",
        })
    }
}

impl schemars::JsonSchema for NonZeroDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NonZeroDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "not": { "pattern": r"^[\s0.]*[a-zµ]+\s*$" },
            "description": "A duration greater than 0: a number and a unit (ns, us, ms, s, m, h, d), e.g. 500ms, 30s, 1m 30s.",
        })
    }
}

impl schemars::JsonSchema for Ratio {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Ratio".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "number", "minimum": 0, "maximum": 1 })
    }
}

impl<T, const MIN: u64, const MAX: u64> schemars::JsonSchema for Between<T, MIN, MAX> {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("Integer_{MIN}_{MAX}").into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        if MAX == u64::MAX {
            schemars::json_schema!({ "type": "integer", "minimum": MIN })
        } else {
            schemars::json_schema!({ "type": "integer", "minimum": MIN, "maximum": MAX })
        }
    }
}

impl schemars::JsonSchema for HeaderNameText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HeaderName".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$",
            "description": "An HTTP header name.",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `key: <value>` reads as, or its error message.
    fn read<T: for<'de> Deserialize<'de>>(value: &str) -> Result<T, String> {
        #[derive(serde::Deserialize)]
        struct Doc<T> {
            key: T,
        }
        serde_norway::from_str::<Doc<T>>(&format!("a: 1\nkey: {value}\n"))
            .map(|d| d.key)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn errors_name_the_key_and_the_line_of_the_value() {
        for (got, want) in [
            (
                read::<NonZeroDuration>("0s").map(drop),
                "key: must be greater than 0 at line 2 column 6",
            ),
            (
                read::<NonZeroDuration>("soon").map(drop),
                "key: invalid value: string \"soon\", expected a duration at line 2 column 6",
            ),
            (
                read::<Ratio>("1.5").map(drop),
                "key: must be between 0 and 1 at line 2 column 6",
            ),
            (
                read::<Weight>("0").map(drop),
                "key: must be between 1 and 10000 at line 2 column 6",
            ),
            (
                read::<Positive<u32>>("-1").map(drop),
                "key: invalid type: integer `-1`, expected u32 at line 2 column 6",
            ),
            (
                read::<Positive<u32>>("4294967296").map(drop),
                "key: invalid value: integer `4294967296`, expected u32 at line 2 column 6",
            ),
            (
                read::<HeaderNameText>("\"a b\"").map(drop),
                "key: \"a b\" is not a valid header name at line 2 column 6",
            ),
        ] {
            assert_eq!(got.unwrap_err(), want);
        }
    }

    #[test]
    fn valid_values_read() {
        assert_eq!(
            read::<NonZeroDuration>("250ms").unwrap().get(),
            Duration::from_millis(250)
        );
        for (text, want) in [("0", 0.0), ("1", 1.0), ("0.25", 0.25)] {
            assert_eq!(read::<Ratio>(text).unwrap().get(), want, "{text}");
        }
        assert_eq!(read::<Weight>("10000").unwrap().get(), 10_000);
        assert_eq!(read::<Positive<usize>>("8192").unwrap().get(), 8192);
        assert_eq!(
            HeaderName::from(read::<HeaderNameText>("X-Backend").unwrap()),
            "x-backend"
        );
    }
}
