//! Messages of a gRPC-framed stream in another codec: a client that speaks
//! JSON (`application/grpc+json`, `application/connect+json`,
//! `application/grpc-web+json`) to a backend that speaks protobuf. Frames
//! are gathered whole (each within the size limit), converted, and framed
//! again; every other stream passes as it is.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use prost_reflect::MessageDescriptor;

use crate::config::{JsonOptions, UnknownFields};
use crate::error::GatewayError;

/// Bytes of a message's prefix: the flags and the length.
const PREFIX: usize = 5;

/// Which way messages are converted.
#[derive(Debug, Clone)]
pub enum Convert {
    /// The client's JSON into the backend's protobuf.
    ToProto(MessageDescriptor, UnknownFields),
    /// The backend's protobuf into the client's JSON.
    ToJson(MessageDescriptor, JsonOptions),
}

/// Converts the messages of one direction of a call.
#[derive(Debug)]
pub struct Reframer {
    convert: Convert,
    limit: usize,
    pending: BytesMut,
}

impl Reframer {
    /// A converter for messages of at most `limit` bytes.
    pub fn new(convert: Convert, limit: usize) -> Self {
        Self {
            convert,
            limit,
            pending: BytesMut::new(),
        }
    }

    /// The converted frames of every message `chunk` completes.
    ///
    /// # Errors
    /// A message over the limit, compressed, or not of the method's type.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Bytes, GatewayError> {
        self.pending.extend_from_slice(chunk);
        let mut out = BytesMut::new();
        while self.pending.len() >= PREFIX {
            let flags = self.pending[0];
            let len = u32::from_be_bytes([
                self.pending[1],
                self.pending[2],
                self.pending[3],
                self.pending[4],
            ]) as usize;
            if len > self.limit {
                return Err(GatewayError::BodyTooLarge { limit: self.limit });
            }
            if self.pending.len() < PREFIX + len {
                break;
            }
            if flags & 1 != 0 {
                return Err(GatewayError::BadGrpcRequest(
                    "compressed messages are not taken with the JSON codec",
                ));
            }
            self.pending.advance(PREFIX);
            let message = self.pending.split_to(len);
            let converted = self.message(&message)?;
            out.put_u8(flags);
            out.put_u32(u32::try_from(converted.len()).unwrap_or(u32::MAX));
            out.put_slice(&converted);
        }
        Ok(out.freeze())
    }

    /// Whether a message was cut short: bytes left over at the end.
    pub fn unfinished(&self) -> bool {
        !self.pending.is_empty()
    }

    fn message(&self, message: &[u8]) -> Result<Vec<u8>, GatewayError> {
        match &self.convert {
            Convert::ToProto(desc, unknown) => Ok(crate::transcode::message_from_json(
                desc.clone(),
                message,
                *unknown,
            )?),
            Convert::ToJson(desc, json) => {
                crate::transcode::message_to_json(desc.clone(), message, json).map_err(|e| {
                    GatewayError::BadBackend {
                        backend: "the backend".to_owned(),
                        cause: e.to_string(),
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flags: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flags];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    fn duration() -> MessageDescriptor {
        prost_reflect::DescriptorPool::global()
            .get_message_by_name("google.protobuf.Duration")
            .unwrap()
    }

    #[test]
    fn messages_convert_both_ways_across_chunks() {
        let json = [frame(0, br#""1.5s""#), frame(0, br#""0s""#)].concat();
        for chunk in [1, 2, 5, 6, json.len()] {
            let mut to_proto =
                Reframer::new(Convert::ToProto(duration(), UnknownFields::Reject), 64);
            let mut proto = Vec::new();
            for piece in json.chunks(chunk) {
                proto.extend_from_slice(&to_proto.push(piece).unwrap());
            }
            assert!(!to_proto.unfinished());
            // 1.5s: seconds 1, nanos 500000000; 0s: an empty message.
            let want = [
                frame(0, &[0x08, 0x01, 0x10, 0x80, 0xca, 0xb5, 0xee, 0x01]),
                frame(0, &[]),
            ]
            .concat();
            assert_eq!(proto, want, "chunks of {chunk}");
            let mut to_json =
                Reframer::new(Convert::ToJson(duration(), JsonOptions::default()), 64);
            let back = to_json.push(&proto).unwrap();
            // proto3 JSON writes 3, 6 or 9 fractional digits.
            let want = [frame(0, br#""1.500s""#), frame(0, br#""0s""#)].concat();
            assert_eq!(&back[..], want.as_slice());
        }
    }

    #[test]
    fn bad_messages_are_refused() {
        let mut reframer = Reframer::new(Convert::ToProto(duration(), UnknownFields::Reject), 8);
        assert!(matches!(
            reframer.push(&frame(0, b"\"123456789s\"")),
            Err(GatewayError::BodyTooLarge { limit: 8 })
        ));
        let mut reframer = Reframer::new(Convert::ToProto(duration(), UnknownFields::Reject), 64);
        assert!(reframer.push(&frame(1, b"\"1s\"")).is_err());
        let mut reframer = Reframer::new(Convert::ToProto(duration(), UnknownFields::Reject), 64);
        assert!(matches!(
            reframer.push(&frame(0, b"{]")),
            Err(GatewayError::Transcode(_))
        ));
        let mut reframer = Reframer::new(Convert::ToProto(duration(), UnknownFields::Reject), 64);
        reframer.push(&frame(0, b"\"1s\"")[..4]).unwrap();
        assert!(reframer.unfinished());
    }
}
