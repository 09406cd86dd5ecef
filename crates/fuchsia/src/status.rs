//! `zx_status_t` values the service answers with. `fuchsia.process.Launcher`
//! replies with a raw status (Launch, CreateWithoutStarting); the values are
//! the kernel ABI (`zircon/errors.h`), so they are plain constants here and the
//! glue turns them into `zx::Status` with `from_raw`.

use std::fmt;
use std::io;

/// A `zx_status_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub i32);

impl Status {
    pub const OK: Status = Status(0);
    pub const INTERNAL: Status = Status(-1);
    pub const NOT_SUPPORTED: Status = Status(-2);
    pub const NO_RESOURCES: Status = Status(-3);
    pub const NO_MEMORY: Status = Status(-4);
    pub const INVALID_ARGS: Status = Status(-10);
    pub const BAD_HANDLE: Status = Status(-11);
    pub const WRONG_TYPE: Status = Status(-12);
    pub const OUT_OF_RANGE: Status = Status(-14);
    pub const BAD_STATE: Status = Status(-20);
    pub const NOT_FOUND: Status = Status(-25);
    pub const ACCESS_DENIED: Status = Status(-30);
    pub const IO: Status = Status(-40);
    pub const FILE_BIG: Status = Status(-53);

    pub fn into_raw(self) -> i32 {
        self.0
    }

    /// The status for an I/O error from a kernel call (the Zircon backend
    /// builds its `io::Error`s from statuses, so the common kinds map back).
    pub fn of_io(e: &io::Error) -> Status {
        match e.kind() {
            io::ErrorKind::PermissionDenied => Status::ACCESS_DENIED,
            io::ErrorKind::NotFound => Status::NOT_FOUND,
            io::ErrorKind::OutOfMemory => Status::NO_MEMORY,
            io::ErrorKind::InvalidInput => Status::INVALID_ARGS,
            io::ErrorKind::Unsupported => Status::NOT_SUPPORTED,
            _ => Status::IO,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match *self {
            Status::OK => "ZX_OK",
            Status::INTERNAL => "ZX_ERR_INTERNAL",
            Status::NOT_SUPPORTED => "ZX_ERR_NOT_SUPPORTED",
            Status::NO_RESOURCES => "ZX_ERR_NO_RESOURCES",
            Status::NO_MEMORY => "ZX_ERR_NO_MEMORY",
            Status::INVALID_ARGS => "ZX_ERR_INVALID_ARGS",
            Status::BAD_HANDLE => "ZX_ERR_BAD_HANDLE",
            Status::WRONG_TYPE => "ZX_ERR_WRONG_TYPE",
            Status::OUT_OF_RANGE => "ZX_ERR_OUT_OF_RANGE",
            Status::BAD_STATE => "ZX_ERR_BAD_STATE",
            Status::NOT_FOUND => "ZX_ERR_NOT_FOUND",
            Status::ACCESS_DENIED => "ZX_ERR_ACCESS_DENIED",
            Status::IO => "ZX_ERR_IO",
            Status::FILE_BIG => "ZX_ERR_FILE_BIG",
            Status(n) => return write!(f, "zx_status_t {n}"),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_kinds_map_to_statuses() {
        let s = |k: io::ErrorKind| Status::of_io(&io::Error::from(k));
        assert_eq!(s(io::ErrorKind::PermissionDenied), Status::ACCESS_DENIED);
        assert_eq!(s(io::ErrorKind::OutOfMemory), Status::NO_MEMORY);
        assert_eq!(s(io::ErrorKind::UnexpectedEof), Status::IO);
        assert_eq!(Status::INVALID_ARGS.to_string(), "ZX_ERR_INVALID_ARGS");
        assert_eq!(Status(-99).to_string(), "zx_status_t -99");
    }
}
