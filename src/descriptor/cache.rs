//! The last good descriptors of each reflection backend, kept on disk
//! (`descriptors.cache_dir`), so a gateway that restarts while a backend is
//! down still serves its routes.
//!
//! One file per backend, `<backend>.reflection.binpb`: a protobuf message
//! holding the backend's name, the fetch time, its service list and the file
//! descriptors exactly as it sent them. Written to a temporary file and
//! renamed, so a reader never sees half a file. A file that cannot be read
//! or decoded is reported and ignored, never fatal.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prost::Message;

use super::reflection::{Protocol, Reflected};

/// What is kept of one fetch.
#[derive(Clone, PartialEq, prost::Message)]
struct CachedReflection {
    #[prost(string, tag = "1")]
    backend: String,
    /// Seconds since the Unix epoch.
    #[prost(uint64, tag = "2")]
    fetched_at: u64,
    #[prost(string, repeated, tag = "3")]
    services: Vec<String>,
    #[prost(bytes = "bytes", repeated, tag = "4")]
    files: Vec<Bytes>,
}

/// Descriptors read back from the cache.
#[derive(Debug)]
pub struct Cached {
    /// The answer as it was fetched.
    pub reflected: Reflected,
    /// When it was fetched.
    pub fetched_at: SystemTime,
}

/// The cache file of `backend` in `dir`. Characters other than letters,
/// digits, `-`, `_` and `.` become `_`.
fn path(dir: &Path, backend: &str) -> PathBuf {
    let name: String = backend
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir.join(format!("{name}.reflection.binpb"))
}

/// Keeps `reflected` as `backend`'s last good descriptors.
///
/// # Errors
/// The directory cannot be created or written.
pub fn store(dir: &Path, backend: &str, reflected: &Reflected) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let fetched_at = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let bytes = CachedReflection {
        backend: backend.to_owned(),
        fetched_at,
        services: reflected.services.clone(),
        files: reflected.files.clone(),
    }
    .encode_to_vec();
    let target = path(dir, backend);
    let partial = target.with_extension(format!("partial.{}", std::process::id()));
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&partial);
    })
}

/// `backend`'s last good descriptors, if any.
///
/// # Errors
/// A message for a file that exists but cannot be read, does not decode or
/// belongs to another backend; no file at all is `Ok(None)`.
pub fn load(dir: &Path, backend: &str) -> Result<Option<Cached>, String> {
    let file = path(dir, backend);
    let bytes = match std::fs::read(&file) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    };
    let cached = CachedReflection::decode(bytes.as_slice())
        .map_err(|e| format!("{} is not a descriptor cache file: {e}", file.display()))?;
    if cached.backend != backend {
        return Err(format!(
            "{} holds the descriptors of backend {:?}",
            file.display(),
            cached.backend
        ));
    }
    Ok(Some(Cached {
        reflected: Reflected {
            services: cached.services,
            files: cached.files,
            protocol: Protocol::V1,
        },
        fetched_at: SystemTime::UNIX_EPOCH + Duration::from_secs(cached.fetched_at),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("protogate-cache-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn stored_descriptors_read_back_as_sent() {
        let dir = dir("roundtrip");
        let reflected = Reflected {
            services: vec!["a.v1.A".into()],
            files: vec![Bytes::from_static(b"\x0a\x05a.proto")],
            protocol: Protocol::V1,
        };
        assert!(load(&dir, "users/v2").unwrap().is_none(), "nothing yet");
        store(&dir, "users/v2", &reflected).unwrap();
        let back = load(&dir, "users/v2").unwrap().unwrap();
        assert_eq!(back.reflected.services, reflected.services);
        assert_eq!(back.reflected.files, reflected.files);
        assert!(back.fetched_at <= SystemTime::now());
        assert!(dir.join("users_v2.reflection.binpb").exists());
        // No partial file is left behind.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn corrupt_or_foreign_files_are_errors_not_panics() {
        let dir = dir("corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("b.reflection.binpb"), b"\xff\xff\xff").unwrap();
        let err = load(&dir, "b").unwrap_err();
        assert!(err.contains("is not a descriptor cache file"), "{err}");
        let reflected = Reflected {
            services: vec![],
            files: vec![],
            protocol: Protocol::V1,
        };
        store(&dir, "c", &reflected).unwrap();
        std::fs::rename(
            dir.join("c.reflection.binpb"),
            dir.join("d.reflection.binpb"),
        )
        .unwrap();
        let err = load(&dir, "d").unwrap_err();
        assert!(
            err.contains("holds the descriptors of backend \"c\""),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
