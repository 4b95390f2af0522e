//! How a server stream is written over plain HTTP: the framing an
//! `Accept` header asks for (NDJSON, Server-Sent Events or one JSON array,
//! written incrementally), and each message, error and end in it.

use bytes::{Bytes, BytesMut};
use http::HeaderValue;

use crate::config::Framing;
use crate::error::GatewayError;

impl Framing {
    /// The framing for an `Accept` header: the acceptable type with the
    /// highest `q` (the first among equals); a wildcard or no header takes
    /// `default`.
    ///
    /// # Errors
    /// [`GatewayError::NotAcceptable`] when no framing is acceptable.
    pub fn negotiate(accept: Option<&HeaderValue>, default: Framing) -> Result<Self, GatewayError> {
        let Some(accept) = accept else {
            return Ok(default);
        };
        let text = accept.to_str().unwrap_or_default();
        let ranges: Vec<(String, f32)> = text
            .split(',')
            .map(|range| {
                let mut params = range.split(';');
                let media = params
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                let q = params
                    .map(|p| p.trim().to_ascii_lowercase())
                    .find_map(|p| {
                        p.strip_prefix("q=")
                            .and_then(|q| q.trim().parse::<f32>().ok())
                    })
                    .unwrap_or(1.0);
                (media, q)
            })
            .collect();
        let framing_of = |media: &str| match media {
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(Framing::Ndjson)
            }
            "text/event-stream" => Some(Framing::Sse),
            "application/json" => Some(Framing::Json),
            "*/*" => Some(default),
            "application/*" if default == Framing::Sse => Some(Framing::Ndjson),
            "application/*" => Some(default),
            "text/*" => Some(Framing::Sse),
            _ => None,
        };
        // A type refused by name (q=0) is not brought back by a wildcard.
        let refused: Vec<Framing> = ranges
            .iter()
            .filter(|(media, q)| *q <= 0.0 && !media.contains('*'))
            .filter_map(|(media, _)| framing_of(media))
            .collect();
        let mut best: Option<(f32, Framing)> = None;
        for (media, q) in &ranges {
            let Some(framing) = framing_of(media) else {
                continue;
            };
            if *q > 0.0 && !refused.contains(&framing) && best.is_none_or(|(b, _)| *q > b) {
                best = Some((*q, framing));
            }
        }
        match best {
            Some((_, framing)) => Ok(framing),
            None if text.trim().is_empty() => Ok(default),
            None => Err(GatewayError::NotAcceptable {
                accept: text.to_owned(),
            }),
        }
    }

    /// The response's `Content-Type`.
    pub fn content_type(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Framing::Ndjson => "application/x-ndjson",
            Framing::Sse => "text/event-stream",
            Framing::Json => "application/json",
        })
    }

    /// One message; `n` counts from 1.
    pub(super) fn message(self, n: u64, json: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(json.len() + 24);
        match self {
            Framing::Ndjson => {
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n");
            }
            Framing::Sse => {
                out.extend_from_slice(format!("id: {n}\ndata: ").as_bytes());
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
            }
            Framing::Json => {
                out.extend_from_slice(if n == 1 { b"[" } else { b"," });
                out.extend_from_slice(json);
            }
        }
        out.freeze()
    }

    /// The error that ends a stream, after `sent` messages.
    pub(super) fn error(self, sent: u64, json: &[u8]) -> Bytes {
        let mut out = BytesMut::with_capacity(json.len() + 24);
        match self {
            Framing::Ndjson => {
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n");
            }
            Framing::Sse => {
                out.extend_from_slice(b"event: error\ndata: ");
                out.extend_from_slice(json);
                out.extend_from_slice(b"\n\n");
            }
            Framing::Json => {
                out.extend_from_slice(if sent == 0 { b"[" } else { b"," });
                out.extend_from_slice(json);
                out.extend_from_slice(b"]");
            }
        }
        out.freeze()
    }

    /// What closes a stream that ended well, after `sent` messages.
    pub(super) fn end(self, sent: u64) -> &'static [u8] {
        match (self, sent) {
            (Framing::Json, 0) => b"[]",
            (Framing::Json, _) => b"]",
            _ => b"",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_picks_the_framing() {
        for (accept, default, want) in [
            (None, Framing::Ndjson, Some(Framing::Ndjson)),
            (Some("*/*"), Framing::Sse, Some(Framing::Sse)),
            (
                Some("text/event-stream"),
                Framing::Ndjson,
                Some(Framing::Sse),
            ),
            (
                Some("application/x-ndjson"),
                Framing::Json,
                Some(Framing::Ndjson),
            ),
            (
                Some("application/json"),
                Framing::Ndjson,
                Some(Framing::Json),
            ),
            (
                Some("application/json;q=0.5, text/event-stream"),
                Framing::Ndjson,
                Some(Framing::Sse),
            ),
            (
                Some("text/html,application/xhtml+xml,*/*;q=0.8"),
                Framing::Json,
                Some(Framing::Json),
            ),
            (Some("application/*"), Framing::Sse, Some(Framing::Ndjson)),
            (
                Some("text/event-stream;q=0, application/json"),
                Framing::Sse,
                Some(Framing::Json),
            ),
            (Some("text/html"), Framing::Ndjson, None),
            (Some("application/json;q=0"), Framing::Ndjson, None),
            (Some("application/json;q=0, */*"), Framing::Json, None),
            (Some("text/event-stream;Q=0, text/*"), Framing::Ndjson, None),
            (Some("application/x-ndjson;q=0, */*"), Framing::Ndjson, None),
        ] {
            let header = accept.map(HeaderValue::from_static);
            let got = Framing::negotiate(header.as_ref(), default).ok();
            assert_eq!(got, want, "{accept:?} (default {default:?})");
        }
    }

    #[test]
    fn framings_write_messages_errors_and_ends() {
        let json = br#"{"a":1}"#;
        let err = br#"{"code":5}"#;
        for (framing, first, second, error, end, empty) in [
            (
                Framing::Ndjson,
                "{\"a\":1}\n",
                "{\"a\":1}\n",
                "{\"code\":5}\n",
                "",
                "",
            ),
            (
                Framing::Sse,
                "id: 1\ndata: {\"a\":1}\n\n",
                "id: 2\ndata: {\"a\":1}\n\n",
                "event: error\ndata: {\"code\":5}\n\n",
                "",
                "",
            ),
            (
                Framing::Json,
                "[{\"a\":1}",
                ",{\"a\":1}",
                ",{\"code\":5}]",
                "]",
                "[]",
            ),
        ] {
            assert_eq!(framing.message(1, json), first.as_bytes(), "{framing:?}");
            assert_eq!(framing.message(2, json), second.as_bytes(), "{framing:?}");
            assert_eq!(framing.error(2, err), error.as_bytes(), "{framing:?}");
            assert_eq!(framing.end(2), end.as_bytes(), "{framing:?}");
            assert_eq!(framing.end(0), empty.as_bytes(), "{framing:?}");
        }
        assert_eq!(Framing::Json.error(0, err), &b"[{\"code\":5}]"[..]);
    }
}
