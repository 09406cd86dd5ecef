//! Object information (`zx_object_get_info`), koids, rights, the page size.

use super::handle::Status;
use super::sys;

/// A kernel object id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Koid(pub u64);

/// Handle rights (`ZX_RIGHT_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rights(sys::zx_rights_t);

impl Rights {
    pub const NONE: Rights = Rights(sys::ZX_RIGHT_NONE);
    pub const DUPLICATE: Rights = Rights(sys::ZX_RIGHT_DUPLICATE);
    pub const TRANSFER: Rights = Rights(sys::ZX_RIGHT_TRANSFER);
    pub const READ: Rights = Rights(sys::ZX_RIGHT_READ);
    pub const WRITE: Rights = Rights(sys::ZX_RIGHT_WRITE);
    pub const EXECUTE: Rights = Rights(sys::ZX_RIGHT_EXECUTE);
    pub const MAP: Rights = Rights(sys::ZX_RIGHT_MAP);
    pub const GET_PROPERTY: Rights = Rights(sys::ZX_RIGHT_GET_PROPERTY);
    pub const SET_PROPERTY: Rights = Rights(sys::ZX_RIGHT_SET_PROPERTY);
    pub const WAIT: Rights = Rights(sys::ZX_RIGHT_WAIT);
    pub const INSPECT: Rights = Rights(sys::ZX_RIGHT_INSPECT);
    pub const SAME_RIGHTS: Rights = Rights(sys::ZX_RIGHT_SAME_RIGHTS);
    /// `ZX_RIGHTS_BASIC`: transfer, duplicate, wait, inspect.
    pub const BASIC: Rights =
        Rights(sys::ZX_RIGHT_TRANSFER | sys::ZX_RIGHT_DUPLICATE | sys::ZX_RIGHT_WAIT | sys::ZX_RIGHT_INSPECT);
    /// `ZX_RIGHTS_PROPERTY`: get and set properties (the name).
    pub const PROPERTY: Rights = Rights(sys::ZX_RIGHT_GET_PROPERTY | sys::ZX_RIGHT_SET_PROPERTY);

    pub const fn from_bits(bits: sys::zx_rights_t) -> Self {
        Rights(bits)
    }
    pub const fn bits(self) -> sys::zx_rights_t {
        self.0
    }
    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }
}

impl std::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, o: Rights) -> Rights {
        self.union(o)
    }
}

/// The system page size.
pub fn page_size() -> u64 {
    // SAFETY: no arguments, no memory; always succeeds.
    u64::from(unsafe { sys::zx_system_get_page_size() })
}

/// One record of `topic` into `out`.
pub(crate) fn get_info_one<T: Copy>(handle: sys::zx_handle_t, topic: u32, out: &mut T) -> Result<(), Status> {
    let (mut actual, mut avail) = (0usize, 0usize);
    // SAFETY: `out` is valid for writes of size_of::<T>() bytes, and T is the
    // plain C record the topic writes (callers pair them).
    let s = unsafe {
        sys::zx_object_get_info(handle, topic, (out as *mut T).cast::<u8>(), size_of::<T>(), &mut actual, &mut avail)
    };
    Status::ok(s)
}

/// Every record of `topic` (asks again with a larger buffer while the
/// kernel has more, as the records can grow between calls).
pub(crate) fn get_info_vec<T: Copy>(handle: sys::zx_handle_t, topic: u32, zero: T) -> Result<Vec<T>, Status> {
    let mut buf = vec![zero; 64];
    loop {
        let (mut actual, mut avail) = (0usize, 0usize);
        // SAFETY: `buf` is valid for writes of its length in records of T, the
        // C record the topic writes.
        let s = unsafe {
            sys::zx_object_get_info(
                handle,
                topic,
                buf.as_mut_ptr().cast::<u8>(),
                buf.len() * size_of::<T>(),
                &mut actual,
                &mut avail,
            )
        };
        Status::ok(s)?;
        if avail <= buf.len() {
            buf.truncate(actual);
            return Ok(buf);
        }
        buf = vec![zero; avail + avail / 4];
    }
}

/// What `ZX_INFO_VMO` / `ZX_INFO_PROCESS_VMOS` say about a VMO.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmoInfo {
    pub koid: Koid,
    pub parent_koid: Koid,
    pub size_bytes: u64,
    pub committed_bytes: u64,
    pub num_children: u64,
    pub num_mappings: u64,
    pub share_count: u64,
}

impl From<&sys::zx_info_vmo_t> for VmoInfo {
    fn from(v: &sys::zx_info_vmo_t) -> Self {
        VmoInfo {
            koid: Koid(v.koid),
            parent_koid: Koid(v.parent_koid),
            size_bytes: v.size_bytes,
            committed_bytes: v.committed_bytes,
            num_children: v.num_children as u64,
            num_mappings: v.num_mappings as u64,
            share_count: v.share_count as u64,
        }
    }
}

/// A mapping from `ZX_INFO_PROCESS_MAPS` (VMAR and address-space entries are
/// left out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapsEntry {
    pub base: u64,
    pub size: u64,
    pub vmo_koid: Koid,
    pub vmo_offset: u64,
    pub committed_bytes: u64,
}

pub(crate) fn maps_entry(m: &sys::zx_info_maps_t, page: u64) -> Option<MapsEntry> {
    if m.r#type != sys::ZX_INFO_MAPS_TYPE_MAPPING {
        return None;
    }
    // SAFETY: the kernel wrote the `mapping` variant: the type says so.
    let mapping = unsafe { m.u.mapping };
    Some(MapsEntry {
        base: m.base as u64,
        size: m.size as u64,
        vmo_koid: Koid(mapping.vmo_koid),
        vmo_offset: mapping.vmo_offset,
        committed_bytes: mapping.committed_pages as u64 * page,
    })
}
