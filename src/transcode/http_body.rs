//! `google.api.HttpBody`: methods whose request body or reply is raw bytes
//! of any content type rather than JSON.
//!
//! A request whose body field (or whole message) is an `HttpBody` gets the
//! HTTP body's bytes and `Content-Type` as they are; a method whose reply is
//! an `HttpBody` answers with its `content_type` and `data`. Which routes do
//! is decided once, in the route table.

use bytes::{BufMut, Bytes};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint};

use crate::http_rule::FieldPath;

/// `google.api.HttpBody`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpBody {
    /// The body's `Content-Type`.
    #[prost(string, tag = "1")]
    pub content_type: String,
    /// The body's bytes.
    #[prost(bytes = "bytes", tag = "2")]
    pub data: Bytes,
    /// Application-specific metadata; not carried over HTTP.
    #[prost(message, repeated, tag = "3")]
    pub extensions: Vec<prost_types::Any>,
}

/// Appends `body` to the encoded request message `message`, as the field at
/// `path` (as the whole message when `path` is `None`). Protobuf merges
/// repeated occurrences, so the result is the message with the field set.
pub fn append(message: &mut Vec<u8>, path: Option<&FieldPath>, content_type: &str, data: Bytes) {
    let body = HttpBody {
        content_type: content_type.to_owned(),
        data,
        extensions: Vec::new(),
    };
    let mut encoded = body.encode_to_vec();
    if let Some(path) = path {
        // Innermost field first: each level wraps the one inside it.
        for field in path.fields().iter().rev() {
            let mut outer = Vec::with_capacity(encoded.len() + 10);
            encode_key(field.number(), WireType::LengthDelimited, &mut outer);
            encode_varint(encoded.len() as u64, &mut outer);
            outer.put_slice(&encoded);
            encoded = outer;
        }
    }
    message.extend_from_slice(&encoded);
}

/// Decodes a reply that is an `HttpBody`.
///
/// # Errors
/// The bytes are not an `HttpBody`.
pub fn decode(reply: &[u8]) -> Result<HttpBody, prost::DecodeError> {
    HttpBody::decode(reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::pool_from_source;
    use prost_reflect::DynamicMessage;

    #[test]
    fn appended_body_lands_in_its_field() {
        let pool = pool_from_source(
            "syntax = \"proto3\"; package t; import \"google/api/httpbody.proto\";\n\
             message Inner { google.api.HttpBody file = 3; }\n\
             message Req { string name = 1; Inner inner = 2; }\n",
        );
        let req = pool.get_message_by_name("t.Req").unwrap();
        let mut msg = DynamicMessage::new(req.clone());
        msg.set_field_by_name("name", prost_reflect::Value::String("a".into()));
        let mut wire = msg.encode_to_vec();
        let path = FieldPath::resolve(&req, "inner.file").unwrap();
        append(
            &mut wire,
            Some(&path),
            "text/csv",
            Bytes::from_static(b"x,y\n"),
        );
        let got = DynamicMessage::decode(req, wire.as_slice()).unwrap();
        assert_eq!(got.get_field_by_name("name").unwrap().as_str(), Some("a"));
        let inner = got.get_field_by_name("inner").unwrap();
        let file = inner
            .as_message()
            .unwrap()
            .get_field_by_name("file")
            .unwrap();
        let file = file.as_message().unwrap();
        assert_eq!(
            file.get_field_by_name("content_type").unwrap().as_str(),
            Some("text/csv")
        );
        assert_eq!(
            file.get_field_by_name("data")
                .unwrap()
                .as_bytes()
                .map(|b| b.to_vec()),
            Some(b"x,y\n".to_vec())
        );

        let mut whole = Vec::new();
        append(
            &mut whole,
            None,
            "image/png",
            Bytes::from_static(&[0x89, b'P']),
        );
        let body = decode(&whole).unwrap();
        assert_eq!(
            (body.content_type.as_str(), &body.data[..]),
            ("image/png", &[0x89, b'P'][..])
        );
    }
}
