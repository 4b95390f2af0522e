//! An attachment being uploaded: its size, chunk count and SHA-256, updated
//! chunk by chunk so the file is never held whole, and its size limit.
//! Checking which order the chunks name and storing the result is the order
//! book's job.

use crate::pb::google::api::HttpBody;
use crate::pb::shop::order::v1::Attachment;
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;
use tonic::Status;

/// Largest attachment accepted: 16 MiB.
pub(super) const MAX_BYTES: u64 = 16 * 1024 * 1024;

/// Content type of an attachment whose first chunk names none.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// The running digest of one upload.
#[derive(Debug, Default)]
pub(super) struct Upload {
    content_type: String,
    size: u64,
    chunks: i32,
    sha256: Sha256,
}

impl Upload {
    /// Chunks added so far.
    pub(super) fn chunks(&self) -> i32 {
        self.chunks
    }

    /// Adds the next chunk; the first one's content type is the file's.
    ///
    /// Errors: RESOURCE_EXHAUSTED once the file exceeds [`MAX_BYTES`].
    pub(super) fn add(&mut self, chunk: Option<HttpBody>) -> Result<(), Status> {
        self.chunks = self.chunks.saturating_add(1);
        let Some(chunk) = chunk else {
            return Ok(());
        };
        if self.chunks == 1 {
            self.content_type = chunk.content_type;
        }
        let len = u64::try_from(chunk.data.len()).unwrap_or(u64::MAX);
        self.size = self.size.saturating_add(len);
        if self.size > MAX_BYTES {
            return Err(Status::resource_exhausted(format!(
                "attachment exceeds the limit of {MAX_BYTES} bytes"
            )));
        }
        self.sha256.update(&chunk.data);
        Ok(())
    }

    /// The metadata of the complete file, to be stored under `name`.
    pub(super) fn finish(self, name: String) -> Attachment {
        let mut sha256 = String::with_capacity(64);
        for byte in self.sha256.finalize() {
            // Writing to a String cannot fail.
            let _ = write!(sha256, "{byte:02x}");
        }
        let content_type = if self.content_type.is_empty() {
            DEFAULT_CONTENT_TYPE.to_string()
        } else {
            self.content_type
        };
        Attachment {
            name,
            content_type,
            size_bytes: i64::try_from(self.size).unwrap_or(i64::MAX),
            sha256,
            chunks: self.chunks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(content_type: &str, data: &[u8]) -> Option<HttpBody> {
        Some(HttpBody {
            content_type: content_type.into(),
            data: data.to_vec(),
            extensions: vec![],
        })
    }

    #[test]
    fn digest_of_chunks_equals_digest_of_whole_file() {
        let mut upload = Upload::default();
        upload.add(chunk("text/plain", b"hello ")).unwrap();
        upload.add(chunk("", b"world")).unwrap();
        upload.add(None).unwrap();
        let attachment = upload.finish("a".into());
        assert_eq!(attachment.content_type, "text/plain");
        assert_eq!((attachment.size_bytes, attachment.chunks), (11, 3));
        // sha256("hello world")
        assert_eq!(
            attachment.sha256,
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
    }

    #[test]
    fn empty_file_without_content_type_is_octet_stream() {
        let mut upload = Upload::default();
        upload.add(chunk("", b"")).unwrap();
        let attachment = upload.finish("a".into());
        assert_eq!(attachment.content_type, "application/octet-stream");
        assert_eq!(
            attachment.sha256,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn limit_is_inclusive() {
        let mut upload = Upload::default();
        let half = vec![0; 8 * 1024 * 1024];
        upload.add(chunk("", &half)).unwrap();
        upload.add(chunk("", &half)).unwrap();
        let err = upload.add(chunk("", b"x")).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    }
}
