//! Virtual memory: VMOs (create, read, write, children, executable
//! replacement, info) and VMARs (allocate, map, info).

use super::handle::{AsHandleRef, Handle, Resource, Status, handle_type};
use super::object::{VmoInfo, get_info_one};
use super::sys;

handle_type!(
    /// A virtual memory object.
    Vmo
);
handle_type!(
    /// A virtual memory address region.
    Vmar
);

/// `zx_vmo_create_child` options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VmoChildOptions(u32);

impl VmoChildOptions {
    pub const SNAPSHOT: Self = Self(sys::ZX_VMO_CHILD_SNAPSHOT);
    pub const SNAPSHOT_AT_LEAST_ON_WRITE: Self = Self(sys::ZX_VMO_CHILD_SNAPSHOT_AT_LEAST_ON_WRITE);
    pub const NO_WRITE: Self = Self(sys::ZX_VMO_CHILD_NO_WRITE);
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl std::ops::BitOr for VmoChildOptions {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

/// `zx_vm_option_t` flags for `zx_vmar_allocate` and `zx_vmar_map`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmarFlags(sys::zx_vm_option_t);

impl VmarFlags {
    pub const PERM_READ: Self = Self(sys::ZX_VM_PERM_READ);
    pub const PERM_WRITE: Self = Self(sys::ZX_VM_PERM_WRITE);
    pub const PERM_EXECUTE: Self = Self(sys::ZX_VM_PERM_EXECUTE);
    pub const SPECIFIC: Self = Self(sys::ZX_VM_SPECIFIC);
    pub const CAN_MAP_SPECIFIC: Self = Self(sys::ZX_VM_CAN_MAP_SPECIFIC);
    pub const CAN_MAP_READ: Self = Self(sys::ZX_VM_CAN_MAP_READ);
    pub const CAN_MAP_WRITE: Self = Self(sys::ZX_VM_CAN_MAP_WRITE);
    pub const CAN_MAP_EXECUTE: Self = Self(sys::ZX_VM_CAN_MAP_EXECUTE);
    pub const fn empty() -> Self {
        Self(0)
    }
    pub const fn bits(self) -> sys::zx_vm_option_t {
        self.0
    }
}

impl std::ops::BitOr for VmarFlags {
    type Output = Self;
    fn bitor(self, o: Self) -> Self {
        Self(self.0 | o.0)
    }
}

impl std::ops::BitOrAssign for VmarFlags {
    fn bitor_assign(&mut self, o: Self) {
        self.0 |= o.0;
    }
}

fn len(v: u64) -> Result<usize, Status> {
    usize::try_from(v).map_err(|_| Status::OUT_OF_RANGE)
}

impl Vmo {
    pub fn create(size: u64) -> Result<Vmo, Status> {
        let mut out = sys::ZX_HANDLE_INVALID;
        // SAFETY: `out` is a valid out-pointer.
        let s = unsafe { sys::zx_vmo_create(size, 0, &mut out) };
        Status::ok(s)?;
        Handle::from_raw(out).map(Vmo)
    }
    pub fn write(&self, data: &[u8], offset: u64) -> Result<(), Status> {
        // SAFETY: `data` is valid for reads of its length.
        let s = unsafe { sys::zx_vmo_write(self.raw_handle(), data.as_ptr(), offset, data.len()) };
        Status::ok(s)
    }
    pub fn read(&self, data: &mut [u8], offset: u64) -> Result<(), Status> {
        // SAFETY: `data` is valid for writes of its length.
        let s = unsafe { sys::zx_vmo_read(self.raw_handle(), data.as_mut_ptr(), offset, data.len()) };
        Status::ok(s)
    }
    pub fn get_size(&self) -> Result<u64, Status> {
        let mut size = 0;
        // SAFETY: `size` is a valid out-pointer.
        let s = unsafe { sys::zx_vmo_get_size(self.raw_handle(), &mut size) };
        Status::ok(s).map(|()| size)
    }
    /// `ZX_PROP_VMO_CONTENT_SIZE`: the file size of a file's VMO.
    pub fn get_content_size(&self) -> Result<u64, Status> {
        let mut size = 0u64;
        // SAFETY: `size` is valid for writes of the 8 bytes the property is.
        let s = unsafe {
            sys::zx_object_get_property(
                self.raw_handle(),
                sys::ZX_PROP_VMO_CONTENT_SIZE,
                (&mut size as *mut u64).cast::<u8>(),
                size_of::<u64>(),
            )
        };
        Status::ok(s).map(|()| size)
    }
    pub fn create_child(&self, opts: VmoChildOptions, offset: u64, size: u64) -> Result<Vmo, Status> {
        let mut out = sys::ZX_HANDLE_INVALID;
        // SAFETY: `out` is a valid out-pointer.
        let s = unsafe { sys::zx_vmo_create_child(self.raw_handle(), opts.bits(), offset, size, &mut out) };
        Status::ok(s)?;
        Handle::from_raw(out).map(Vmo)
    }
    /// This handle replaced by one that also has `ZX_RIGHT_EXECUTE`.
    pub fn replace_as_executable(self, vmex: &Resource) -> Result<Vmo, Status> {
        let raw = Handle::from(self).into_raw();
        let mut out = sys::ZX_HANDLE_INVALID;
        // SAFETY: `raw` is ours and consumed by the call, even on failure.
        let s = unsafe { sys::zx_vmo_replace_as_executable(raw, vmex.raw_handle(), &mut out) };
        Status::ok(s)?;
        Handle::from_raw(out).map(Vmo)
    }
    /// `ZX_INFO_VMO`.
    pub fn info(&self) -> Result<VmoInfo, Status> {
        let mut info = sys::zx_info_vmo_t::default();
        get_info_one(self.raw_handle(), sys::ZX_INFO_VMO, &mut info)?;
        Ok(VmoInfo::from(&info))
    }
}

/// `ZX_INFO_VMAR`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct InfoVmar {
    base: usize,
    len: usize,
}

impl Vmar {
    /// A child VMAR of `size` bytes at `offset` (with `SPECIFIC`) or where
    /// the kernel chooses; its handle and absolute base address.
    pub fn allocate(&self, offset: u64, size: u64, flags: VmarFlags) -> Result<(Vmar, u64), Status> {
        let (mut out, mut addr) = (sys::ZX_HANDLE_INVALID, 0usize);
        // SAFETY: `out` and `addr` are valid out-pointers.
        let s = unsafe {
            sys::zx_vmar_allocate(self.raw_handle(), flags.bits(), len(offset)?, len(size)?, &mut out, &mut addr)
        };
        Status::ok(s)?;
        Ok((Vmar(Handle::from_raw(out)?), addr as u64))
    }
    /// Map `vmo` (`vmo_offset..+len`) at `vmar_offset` (with `SPECIFIC`) or
    /// where the kernel chooses; the address.
    pub fn map(
        &self,
        vmar_offset: u64,
        vmo: &Vmo,
        vmo_offset: u64,
        size: u64,
        flags: VmarFlags,
    ) -> Result<u64, Status> {
        let mut addr = 0usize;
        // SAFETY: `addr` is a valid out-pointer; mapping into another process's
        // VMAR cannot alias memory of this one.
        let s = unsafe {
            sys::zx_vmar_map(
                self.raw_handle(),
                flags.bits(),
                len(vmar_offset)?,
                vmo.raw_handle(),
                vmo_offset,
                len(size)?,
                &mut addr,
            )
        };
        Status::ok(s).map(|()| addr as u64)
    }
    /// Its base address and size (`ZX_INFO_VMAR`).
    pub fn info(&self) -> Result<(u64, u64), Status> {
        let mut info = InfoVmar::default();
        get_info_one(self.raw_handle(), sys::ZX_INFO_VMAR, &mut info)?;
        Ok((info.base as u64, info.len as u64))
    }
}
