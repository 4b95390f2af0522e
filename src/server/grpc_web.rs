//! gRPC-Web's framing ([PROTOCOL-WEB]): the status and trailers travel in
//! the body as a last frame flagged `0x80`, and `application/grpc-web-text`
//! carries the whole body base64-encoded. The call itself is the native
//! gRPC adapter's ([`super::grpc`]); this module only reframes.
//!
//! [PROTOCOL-WEB]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-WEB.md

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD};
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;

/// The flag of the frame that carries the trailers.
const TRAILER_FLAG: u8 = 0x80;

/// The trailers as gRPC-Web's last frame: `name: value\r\n` lines after a
/// prefix flagged `0x80`.
pub fn trailer_frame(trailers: &HeaderMap) -> Bytes {
    let mut block = BytesMut::new();
    for (name, value) in trailers {
        block.put_slice(name.as_str().as_bytes());
        block.put_slice(b": ");
        block.put_slice(value.as_bytes());
        block.put_slice(b"\r\n");
    }
    let mut frame = BytesMut::with_capacity(block.len() + 5);
    frame.put_u8(TRAILER_FLAG);
    frame.put_u32(u32::try_from(block.len()).unwrap_or(u32::MAX));
    frame.put(block);
    frame.freeze()
}

/// Decodes an `application/grpc-web-text` body: base64, possibly several
/// padded pieces one after another (a client may encode each message on
/// its own), whitespace ignored.
///
/// # Errors
/// A body that is not base64.
pub fn decode_text(body: &[u8]) -> Result<Vec<u8>, base64::DecodeError> {
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let clean: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    let mut start = 0;
    for (i, quantum) in clean.chunks(4).enumerate() {
        let end = i * 4 + quantum.len();
        // A padded quantum ends a piece.
        if quantum.contains(&b'=') || end == clean.len() {
            engine.decode_vec(&clean[start..end], &mut out)?;
            start = end;
        }
    }
    Ok(out)
}

/// Encodes a reply as one base64 text, chunk by chunk as the reply comes:
/// only whole 3-byte groups are encoded until the end, so no padding falls
/// in the middle of the text.
#[derive(Debug, Default)]
pub struct TextEncoder {
    carry: Vec<u8>,
}

impl TextEncoder {
    /// The text of `data` that can be written now.
    pub fn encode(&mut self, data: &[u8]) -> Bytes {
        self.carry.extend_from_slice(data);
        let whole = self.carry.len() / 3 * 3;
        let text = STANDARD.encode(&self.carry[..whole]);
        self.carry.drain(..whole);
        Bytes::from(text)
    }

    /// The text of what is left, padded: the end of the reply.
    pub fn finish(&mut self) -> Bytes {
        let text = STANDARD.encode(&self.carry);
        self.carry.clear();
        Bytes::from(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailers_become_the_last_frame() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        trailers.insert("x-done", "yes".parse().unwrap());
        let frame = trailer_frame(&trailers);
        let block = b"grpc-status: 0\r\nx-done: yes\r\n";
        assert_eq!(frame[0], 0x80);
        assert_eq!(&frame[1..5], (block.len() as u32).to_be_bytes());
        assert_eq!(&frame[5..], block);
    }

    #[test]
    fn text_bodies_decode_in_one_piece_or_several() {
        for (text, want) in [
            ("AAAAAAIIAQ==", &[0u8, 0, 0, 0, 2, 8, 1][..]),
            ("AAAAAAIIAQ", &[0, 0, 0, 0, 2, 8, 1]),
            // Two messages encoded one by one.
            (
                "AAAAAAEI\r\nAAAAAAIIAQ==",
                &[0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 2, 8, 1],
            ),
            ("AA==AA==", &[0, 0]),
            ("", &[]),
        ] {
            assert_eq!(decode_text(text.as_bytes()).unwrap(), want, "{text}");
        }
        assert!(decode_text(b"not base64!").is_err());
    }

    #[test]
    fn text_replies_have_no_padding_until_the_end() {
        let data: Vec<u8> = (0..=255).collect();
        for chunk in [1, 2, 3, 4, 7, 256] {
            let mut encoder = TextEncoder::default();
            let mut text = Vec::new();
            for piece in data.chunks(chunk) {
                let part = encoder.encode(piece);
                assert!(!part.contains(&b'='), "chunks of {chunk}");
                text.extend_from_slice(&part);
            }
            text.extend_from_slice(&encoder.finish());
            assert_eq!(STANDARD.decode(&text).unwrap(), data, "chunks of {chunk}");
        }
    }
}
