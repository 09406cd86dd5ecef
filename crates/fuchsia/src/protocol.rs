//! The `fuchsia.process.zygote.Cache` protocol (fidl/fuchsia.process.zygote.fidl)
//! as Rust: its error codes, its replies, and the mapping of Preload and Evict
//! onto [`Images`]. glue/cache.rs only decodes requests and encodes these.
//! tests/fuchsia_files checks the FIDL's `Error` members and reply fields
//! against [`ErrorCode::ALL`] and the `FIELDS` lists here.

use std::path::Path;

use zygote_core::image::ReadError;
use zygote_core::kernel::Kernel;

use crate::images::{Images, ImagesError, Preparer};
use crate::interp::InterpError;

/// `fuchsia.process.zygote/Error`, numbered from 1 in this order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// A malformed request: a key that is not 64 hex digits, a missing field.
    InvalidArgs,
    /// The executable is larger than the zygote reads, or not a regular file.
    BadExecutable,
    /// Reading the executable failed.
    Io,
    /// The zygote lacks a resource (memory, handles) to build the image.
    NoResources,
    /// The zygote itself failed.
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 5] =
        [ErrorCode::InvalidArgs, ErrorCode::BadExecutable, ErrorCode::Io, ErrorCode::NoResources, ErrorCode::Internal];

    /// The member's name in the FIDL enum.
    pub fn fidl_name(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgs => "INVALID_ARGS",
            ErrorCode::BadExecutable => "BAD_EXECUTABLE",
            ErrorCode::Io => "IO",
            ErrorCode::NoResources => "NO_RESOURCES",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    /// The member's value in the FIDL enum.
    pub fn into_raw(self) -> u32 {
        ErrorCode::ALL.iter().position(|&c| c == self).map_or(0, |i| i as u32 + 1)
    }

    /// The code an [`ImagesError`] is reported with.
    pub fn of(e: &ImagesError) -> ErrorCode {
        let io_code = |e: &std::io::Error| match e.kind() {
            std::io::ErrorKind::OutOfMemory => ErrorCode::NoResources,
            _ => ErrorCode::Io,
        };
        match e {
            ImagesError::BadKey { .. } => ErrorCode::InvalidArgs,
            ImagesError::Read { source: ReadError::NotRegular | ReadError::TooLarge { .. }, .. } => {
                ErrorCode::BadExecutable
            }
            ImagesError::Read { source: ReadError::Io(e), .. } | ImagesError::Identify { source: e, .. } => io_code(e),
            ImagesError::Duplicate { source: e, .. } => io_code(e),
            ImagesError::Build(_) | ImagesError::Interp(InterpError::Image(_)) => ErrorCode::Internal,
            ImagesError::Interp(InterpError::Headers { .. } | InterpError::Name { .. }) => ErrorCode::BadExecutable,
            ImagesError::Loader { .. } => ErrorCode::Io,
            ImagesError::NoLoader { .. } => ErrorCode::InvalidArgs,
        }
    }
}

/// A failed Cache request: the code the client gets and the message logged.
#[derive(Debug, thiserror::Error)]
#[error("{source}")]
pub struct CacheError {
    pub code: ErrorCode,
    pub source: ImagesError,
}

impl From<ImagesError> for CacheError {
    fn from(source: ImagesError) -> Self {
        CacheError { code: ErrorCode::of(&source), source }
    }
}

/// Preload's reply (a FIDL table).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreloadReply {
    /// The image key, 64 hex digits.
    pub key: String,
    /// Bytes of sealed VMOs the image holds.
    pub sealed_bytes: u64,
    /// Why the program will be launched plainly instead, if it will.
    pub fallback: Option<String>,
}

impl PreloadReply {
    /// The table's fields, as the FIDL names them.
    pub const FIELDS: [&'static str; 3] = ["key", "sealed_bytes", "fallback"];
}

/// Evict's target (a FIDL union).
#[derive(Debug)]
pub enum EvictTarget<F> {
    Key(String),
    Executable(F),
}

/// Evict's reply (a FIDL table).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EvictReply {
    /// Cache entries dropped.
    pub count: u64,
}

impl EvictReply {
    pub const FIELDS: [&'static str; 1] = ["count"];
}

/// Longest Preload name (`MAX_NAME_LENGTH` in the FIDL).
pub const MAX_NAME_LENGTH: usize = 4096;

/// Preload: build `executable`'s image into the cache, launching nothing.
pub fn preload<K: Kernel, P: Preparer<K>>(
    images: &Images<K, P>,
    name: &str,
    executable: &K::File,
) -> Result<PreloadReply, CacheError> {
    let img = images.image(Path::new(name), executable)?;
    Ok(PreloadReply {
        key: img.key().to_string(),
        sealed_bytes: img.sealed_bytes(),
        fallback: img.fallback().map(|why| bounded(why, MAX_NAME_LENGTH)),
    })
}

/// `s` cut to at most `max` bytes at a character boundary (a FIDL string
/// longer than its bound would fail to encode and close the channel).
pub fn bounded(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// Evict: drop cache entries. Processes already launched keep their
/// mappings, and a launch in flight keeps the image it holds.
pub fn evict<K: Kernel, P: Preparer<K>>(
    images: &Images<K, P>,
    target: &EvictTarget<K::File>,
) -> Result<EvictReply, CacheError> {
    let count = match target {
        EvictTarget::Key(key) => images.evict_key(key)?,
        EvictTarget::Executable(file) => images.evict_file(Path::new("evict"), file)?,
    };
    Ok(EvictReply { count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::tests::{file, images, static_exec};

    #[test]
    fn codes_are_numbered_from_one_in_order() {
        let raw: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.into_raw()).collect();
        assert_eq!(raw, [1, 2, 3, 4, 5]);
    }

    #[test]
    fn reply_fields_are_the_structs() {
        // Destructured whole, so a new field fails to compile until FIELDS
        // (and the FIDL table, through tests/fuchsia_files) has it too.
        let PreloadReply { key: _, sealed_bytes: _, fallback: _ } = PreloadReply::default();
        let EvictReply { count: _ } = EvictReply::default();
        assert_eq!(PreloadReply::FIELDS.len(), 3);
    }

    #[test]
    fn preload_then_evict() {
        let im = images();
        let exe = file(&static_exec(7), 1);
        let r = preload(&im, "/pkg/bin/seven", &exe).expect("preload");
        assert_eq!((r.key.len(), r.sealed_bytes, r.fallback.as_deref()), (64, 0x1000, None));
        assert_eq!(im.stats().entries, 1);
        let again = preload(&im, "/pkg/bin/seven", &exe).expect("preload");
        assert_eq!(again, r, "a second Preload is a hit");
        assert_eq!(im.stats().builds, 1);

        let refused = preload(&im, "text", &file(b"plain text", 2)).expect("a refusal is not an error");
        assert!(refused.fallback.is_some_and(|why| why.contains("not an ELF")));

        assert_eq!(evict(&im, &EvictTarget::Key(r.key.clone())).expect("evict").count, 1);
        assert_eq!(evict(&im, &EvictTarget::Executable(file(b"plain text", 3))).expect("evict").count, 1);
        assert_eq!(im.stats().entries, 0);
    }

    #[test]
    fn a_long_fallback_reason_is_cut_to_the_fidl_bound() {
        let im = images();
        let name = format!("/{}é", "n".repeat(MAX_NAME_LENGTH - 2));
        let r = preload(&im, &name, &file(b"plain text", 5)).expect("a refusal");
        let why = r.fallback.expect("refused");
        assert!(why.len() <= MAX_NAME_LENGTH && why.len() >= MAX_NAME_LENGTH - 1, "{}", why.len());
        assert_eq!(bounded("aé", 2), "a", "never inside a character");
        assert_eq!(bounded("abc", 10), "abc");
    }

    #[test]
    fn errors_carry_their_code() {
        let im = images();
        let e = evict(&im, &EvictTarget::Key("xyz".into())).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidArgs);
        let mut dir = file(b"", 4);
        dir.identity.mode = 0o040755;
        let e = preload(&im, "dir", &dir).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadExecutable);
        assert!(e.to_string().contains("dir: reading the executable"), "{e}");
    }
}
