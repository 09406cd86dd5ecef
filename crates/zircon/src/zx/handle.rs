//! Handles: ownership (closed on drop), duplication and replacement with
//! fewer rights, names, waiting; `Status`; channels; resources; the CPRNG.

use std::fmt;

use super::object::{Koid, Rights};
use super::sys;

/// A Zircon status that is not `ZX_OK`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Status(sys::zx_status_t);

impl Status {
    pub const OK: Status = Status(sys::ZX_OK);
    pub const NOT_SUPPORTED: Status = Status(sys::ZX_ERR_NOT_SUPPORTED);
    pub const INVALID_ARGS: Status = Status(sys::ZX_ERR_INVALID_ARGS);
    pub const BAD_STATE: Status = Status(sys::ZX_ERR_BAD_STATE);
    pub const OUT_OF_RANGE: Status = Status(sys::ZX_ERR_OUT_OF_RANGE);

    /// `Ok` for `ZX_OK`, else the status as an error.
    pub fn ok(raw: sys::zx_status_t) -> Result<(), Status> {
        if raw == sys::ZX_OK { Ok(()) } else { Err(Status(raw)) }
    }
    pub fn from_raw(raw: sys::zx_status_t) -> Self {
        Status(raw)
    }
    pub fn into_raw(self) -> sys::zx_status_t {
        self.0
    }
    fn name(self) -> &'static str {
        match self.0 {
            sys::ZX_OK => "ZX_OK",
            sys::ZX_ERR_INTERNAL => "ZX_ERR_INTERNAL",
            sys::ZX_ERR_NOT_SUPPORTED => "ZX_ERR_NOT_SUPPORTED",
            sys::ZX_ERR_NO_RESOURCES => "ZX_ERR_NO_RESOURCES",
            sys::ZX_ERR_NO_MEMORY => "ZX_ERR_NO_MEMORY",
            sys::ZX_ERR_INVALID_ARGS => "ZX_ERR_INVALID_ARGS",
            sys::ZX_ERR_BAD_HANDLE => "ZX_ERR_BAD_HANDLE",
            sys::ZX_ERR_WRONG_TYPE => "ZX_ERR_WRONG_TYPE",
            sys::ZX_ERR_OUT_OF_RANGE => "ZX_ERR_OUT_OF_RANGE",
            sys::ZX_ERR_BUFFER_TOO_SMALL => "ZX_ERR_BUFFER_TOO_SMALL",
            sys::ZX_ERR_BAD_STATE => "ZX_ERR_BAD_STATE",
            sys::ZX_ERR_TIMED_OUT => "ZX_ERR_TIMED_OUT",
            sys::ZX_ERR_PEER_CLOSED => "ZX_ERR_PEER_CLOSED",
            sys::ZX_ERR_NOT_FOUND => "ZX_ERR_NOT_FOUND",
            sys::ZX_ERR_ALREADY_EXISTS => "ZX_ERR_ALREADY_EXISTS",
            sys::ZX_ERR_ACCESS_DENIED => "ZX_ERR_ACCESS_DENIED",
            sys::ZX_ERR_NO_SPACE => "ZX_ERR_NO_SPACE",
            _ => "ZX_ERR_?",
        }
    }
}

impl fmt::Debug for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::error::Error for Status {}

impl From<Status> for std::io::Error {
    fn from(s: Status) -> Self {
        use std::io::ErrorKind as K;
        let kind = match s.0 {
            sys::ZX_ERR_NOT_FOUND => K::NotFound,
            sys::ZX_ERR_ACCESS_DENIED => K::PermissionDenied,
            sys::ZX_ERR_NO_MEMORY | sys::ZX_ERR_NO_RESOURCES => K::OutOfMemory,
            sys::ZX_ERR_INVALID_ARGS | sys::ZX_ERR_OUT_OF_RANGE => K::InvalidInput,
            sys::ZX_ERR_NOT_SUPPORTED => K::Unsupported,
            sys::ZX_ERR_TIMED_OUT => K::TimedOut,
            _ => K::Other,
        };
        std::io::Error::new(kind, s)
    }
}

/// An owned handle, closed when dropped. Never `ZX_HANDLE_INVALID`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Handle(sys::zx_handle_t);

impl Handle {
    /// Take ownership of `raw`, which a system call just returned.
    pub(crate) fn from_raw(raw: sys::zx_handle_t) -> Result<Self, Status> {
        if raw == sys::ZX_HANDLE_INVALID { Err(Status(sys::ZX_ERR_BAD_HANDLE)) } else { Ok(Handle(raw)) }
    }
    pub fn raw_handle(&self) -> sys::zx_handle_t {
        self.0
    }
    /// Give up ownership (the raw handle moves into a message or a call that
    /// consumes it).
    pub fn into_raw(self) -> sys::zx_handle_t {
        let raw = self.0;
        std::mem::forget(self);
        raw
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: `self.0` is a handle this value owns; nothing uses it after.
        let _ = unsafe { sys::zx_handle_close(self.0) };
    }
}

/// Object operations on anything that holds a handle.
pub trait AsHandleRef {
    fn raw_handle(&self) -> sys::zx_handle_t;

    /// `ZX_INFO_HANDLE_BASIC`: the object's koid and this handle's rights.
    fn basic_info(&self) -> Result<(Koid, Rights), Status> {
        let mut info = sys::zx_info_handle_basic_t::default();
        super::object::get_info_one(self.raw_handle(), sys::ZX_INFO_HANDLE_BASIC, &mut info)?;
        Ok((Koid(info.koid), Rights::from_bits(info.rights)))
    }
    fn get_koid(&self) -> Result<Koid, Status> {
        self.basic_info().map(|(k, _)| k)
    }
    /// `ZX_PROP_NAME`, cut to `ZX_MAX_NAME_LEN - 1` bytes.
    fn set_name(&self, name: &str) -> Result<(), Status> {
        let bytes = &name.as_bytes()[..name.len().min(sys::ZX_MAX_NAME_LEN - 1)];
        // SAFETY: `bytes` is valid for reads of its length during the call.
        let s =
            unsafe { sys::zx_object_set_property(self.raw_handle(), sys::ZX_PROP_NAME, bytes.as_ptr(), bytes.len()) };
        Status::ok(s)
    }
    /// A second handle to the object with `rights` (`SAME_RIGHTS` for all).
    fn duplicate(&self, rights: Rights) -> Result<Handle, Status> {
        let mut out = sys::ZX_HANDLE_INVALID;
        // SAFETY: `out` is a valid out-pointer; the source handle stays ours.
        let s = unsafe { sys::zx_handle_duplicate(self.raw_handle(), rights.bits(), &mut out) };
        Status::ok(s)?;
        Handle::from_raw(out)
    }
    /// Wait until one of `signals` is asserted (no deadline).
    fn wait_one(&self, signals: sys::zx_signals_t) -> Result<sys::zx_signals_t, Status> {
        let mut observed = 0;
        // SAFETY: `observed` is a valid out-pointer for the call.
        let s = unsafe { sys::zx_object_wait_one(self.raw_handle(), signals, sys::ZX_TIME_INFINITE, &mut observed) };
        Status::ok(s).map(|()| observed)
    }
}

impl AsHandleRef for Handle {
    fn raw_handle(&self) -> sys::zx_handle_t {
        self.0
    }
}

/// A typed handle that converts to and from [`Handle`].
pub trait HandleBased: AsHandleRef + From<Handle> + Into<Handle> {
    /// A second handle to the object with `rights` (`SAME_RIGHTS` for all).
    fn duplicate_handle(&self, rights: Rights) -> Result<Self, Status> {
        self.duplicate(rights).map(Self::from)
    }
    /// This handle replaced by one with `rights` (fewer, never more).
    fn replace_handle(self, rights: Rights) -> Result<Self, Status> {
        let raw = self.into().into_raw();
        let mut out = sys::ZX_HANDLE_INVALID;
        // SAFETY: `raw` is ours and the call consumes it, even on failure.
        let s = unsafe { sys::zx_handle_replace(raw, rights.bits(), &mut out) };
        Status::ok(s)?;
        Handle::from_raw(out).map(Self::from)
    }
}

macro_rules! handle_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, PartialEq, Eq, Hash)]
        pub struct $name($crate::zx::Handle);
        impl From<$crate::zx::Handle> for $name {
            fn from(h: $crate::zx::Handle) -> Self {
                $name(h)
            }
        }
        impl From<$name> for $crate::zx::Handle {
            fn from(h: $name) -> $crate::zx::Handle {
                h.0
            }
        }
        impl $crate::zx::AsHandleRef for $name {
            fn raw_handle(&self) -> $crate::zx::sys::zx_handle_t {
                self.0.raw_handle()
            }
        }
        impl $crate::zx::HandleBased for $name {}
    };
}
pub(crate) use handle_type;

handle_type!(
    /// A channel end.
    Channel
);
handle_type!(
    /// A kernel resource (here: the VMEX resource that makes VMOs executable).
    Resource
);

impl Channel {
    pub fn create() -> Result<(Channel, Channel), Status> {
        let (mut a, mut b) = (sys::ZX_HANDLE_INVALID, sys::ZX_HANDLE_INVALID);
        // SAFETY: `a` and `b` are valid out-pointers.
        let s = unsafe { sys::zx_channel_create(0, &mut a, &mut b) };
        Status::ok(s)?;
        Ok((Channel(Handle::from_raw(a)?), Channel(Handle::from_raw(b)?)))
    }

    /// Write a message; the handles move into it (the kernel closes them
    /// if the write fails).
    pub fn write(&self, bytes: &[u8], handles: Vec<Handle>) -> Result<(), Status> {
        let raw: Vec<sys::zx_handle_t> = handles.into_iter().map(Handle::into_raw).collect();
        let (nb, nh) = (u32::try_from(bytes.len()), u32::try_from(raw.len()));
        let (Ok(nb), Ok(nh)) = (nb, nh) else {
            // SAFETY: the raw handles are ours; close them as a failed write would.
            let _ = unsafe { sys::zx_handle_close_many(raw.as_ptr(), raw.len()) };
            return Err(Status::OUT_OF_RANGE);
        };
        // SAFETY: both buffers are valid for their lengths; the call consumes the handles.
        let s = unsafe { sys::zx_channel_write(self.raw_handle(), 0, bytes.as_ptr(), nb, raw.as_ptr(), nh) };
        Status::ok(s)
    }
}

/// Fill `buf` from the kernel's CPRNG.
pub fn cprng_draw(buf: &mut [u8]) {
    // SAFETY: `buf` is valid for writes of its length.
    unsafe { sys::zx_cprng_draw(buf.as_mut_ptr(), buf.len()) }
}
