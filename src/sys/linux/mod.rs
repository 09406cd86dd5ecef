//! The Linux kernel layer: sealed memfds, the embedded stub, clone+exec,
//! pidfds, randomness. Everything above `sys` is kernel-neutral; this module and
//! the stub are the only places with `unsafe`.

pub mod baseline;
pub mod memfd;
pub mod process;

use std::os::fd::BorrowedFd;

use rustix::io::Errno;

pub use memfd::SealedObject;
pub use process::ExitStatus;

/// The stub binary, built by build.rs and embedded here.
pub static STUB: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/zygote-stub"));

/// The stub, held in a sealed executable memfd and exec'd with execveat.
#[derive(Debug)]
pub struct Stub {
    object: SealedObject,
}

impl Stub {
    pub fn load() -> Result<Self, Errno> {
        Ok(Stub { object: SealedObject::create_exec("zygote-stub", STUB)? })
    }
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.object.fd()
    }
}

/// 64 random bits from the kernel.
pub fn random_u64() -> Result<u64, Errno> {
    let mut b = [0u8; 8];
    let mut filled = 0;
    while filled < b.len() {
        filled += rustix::rand::getrandom(&mut b[filled..], rustix::rand::GetRandomFlags::empty())?;
    }
    Ok(u64::from_le_bytes(b))
}
