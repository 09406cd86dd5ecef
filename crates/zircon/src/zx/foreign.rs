//! Handles of another zx binding: the FIDL bindings the glue uses hand out
//! the in-tree `zx` crate's handles, and the service gives the backend this
//! crate's. A handle moves between the two by its raw value, ownership and
//! all; nothing is duplicated or closed on the way.
//!
//! [`Foreign`] is what a binding's owned handle type provides. The in-tree
//! build (BUILD.gn: `--cfg zygote_in_tree`, dep `//sdk/rust/zx`) implements
//! it for `zx::Handle` below; the cargo build has no such crate.

use super::handle::{Handle, Status};
use super::sys;

/// An owned handle type of another binding.
///
/// # Safety
///
/// `into_raw` must give up ownership of the handle the value owned (the
/// value no longer closes it) and `from_raw` must take ownership of `raw`,
/// as the in-tree `zx::Handle::{into_raw, from_raw}` do.
pub unsafe trait Foreign: Sized {
    fn into_raw(self) -> sys::zx_handle_t;
    /// # Safety
    ///
    /// `raw` is a valid handle that nothing else owns.
    unsafe fn from_raw(raw: sys::zx_handle_t) -> Self;
}

impl Handle {
    /// Take over another binding's handle (`ZX_ERR_BAD_HANDLE` for an
    /// invalid one).
    pub fn adopt<F: Foreign>(handle: F) -> Result<Handle, Status> {
        Handle::from_raw(handle.into_raw())
    }

    /// Hand this handle over to another binding.
    pub fn release<F: Foreign>(self) -> F {
        let raw = self.into_raw();
        // SAFETY: `raw` is valid (a `Handle` never holds ZX_HANDLE_INVALID)
        // and owned by nothing since `into_raw` gave it up.
        unsafe { F::from_raw(raw) }
    }
}

// SAFETY: the in-tree `zx::Handle::into_raw` forgets the handle it returns,
// and `from_raw` takes ownership of the handle it is given.
#[cfg(zygote_in_tree)]
unsafe impl Foreign for ::zx::Handle {
    fn into_raw(self) -> sys::zx_handle_t {
        ::zx::Handle::into_raw(self)
    }
    unsafe fn from_raw(raw: sys::zx_handle_t) -> Self {
        // SAFETY: the caller passes a valid handle nothing else owns.
        unsafe { ::zx::Handle::from_raw(raw) }
    }
}
