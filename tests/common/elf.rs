//! ELF inspection for the tests: `readelf` queries, and ELF64 program-header
//! byte patching by hand, independent of `zygote_core::elf` (which the bad-input tests check).

use std::path::Path;
use std::process::Command;

use super::run_tool;

/// `readelf ARGS PATH` (wide output); panics if readelf fails.
pub fn readelf(args: &[&str], path: &Path) -> String {
    run_tool(Command::new("readelf").arg("-W").args(args).arg(path))
}

/// Whether the ELF file has a PT_INTERP program header.
pub fn has_interp(path: &Path) -> bool {
    readelf(&["-l"], path).lines().any(|l| l.trim_start().starts_with("INTERP"))
}

/// Value of a dynamic tag such as `RELACOUNT` from `readelf -d`.
pub fn dynamic_tag(path: &Path, tag: &str) -> Option<u64> {
    let want = format!("({tag})");
    readelf(&["-d"], path).lines().find_map(|l| {
        let mut it = l.split_whitespace();
        let _addr = it.next()?;
        if it.next()? != want {
            return None;
        }
        let v = it.next()?;
        if let Some(h) = v.strip_prefix("0x") { u64::from_str_radix(h, 16).ok() } else { v.parse().ok() }
    })
}

pub const PT_LOAD: u32 = 1;

/// A decoded ELF64 program header and where it lives in the file.
#[derive(Clone, Copy, Debug)]
pub struct Phdr {
    pub file_off: usize,
    pub p_type: u32,
    pub p_flags: u32,
    pub p_offset: u64,
    pub p_vaddr: u64,
    pub p_paddr: u64,
    pub p_filesz: u64,
    pub p_memsz: u64,
    pub p_align: u64,
}

pub fn rd_u16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}
pub fn rd_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}
pub fn rd_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}
pub fn wr_u16(b: &mut [u8], off: usize, v: u16) {
    b[off..off + 2].copy_from_slice(&v.to_le_bytes());
}
pub fn wr_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}
pub fn wr_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

/// Program headers of an ELF64 LE file (panics if it is not one).
pub fn phdrs(b: &[u8]) -> Vec<Phdr> {
    assert!(b.len() >= 64 && &b[..4] == b"\x7fELF" && b[4] == 2 && b[5] == 1, "not an ELF64 LE file");
    let phoff = rd_u64(b, 0x20) as usize;
    let phentsize = rd_u16(b, 0x36) as usize;
    let phnum = rd_u16(b, 0x38) as usize;
    assert_eq!(phentsize, 56, "e_phentsize");
    (0..phnum)
        .map(|i| {
            let o = phoff + i * phentsize;
            Phdr {
                file_off: o,
                p_type: rd_u32(b, o),
                p_flags: rd_u32(b, o + 4),
                p_offset: rd_u64(b, o + 8),
                p_vaddr: rd_u64(b, o + 0x10),
                p_paddr: rd_u64(b, o + 0x18),
                p_filesz: rd_u64(b, o + 0x20),
                p_memsz: rd_u64(b, o + 0x28),
                p_align: rd_u64(b, o + 0x30),
            }
        })
        .collect()
}

/// Write a (modified) program header back to its place in the file.
pub fn write_phdr(b: &mut [u8], p: &Phdr) {
    let o = p.file_off;
    wr_u32(b, o, p.p_type);
    wr_u32(b, o + 4, p.p_flags);
    wr_u64(b, o + 8, p.p_offset);
    wr_u64(b, o + 0x10, p.p_vaddr);
    wr_u64(b, o + 0x18, p.p_paddr);
    wr_u64(b, o + 0x20, p.p_filesz);
    wr_u64(b, o + 0x28, p.p_memsz);
    wr_u64(b, o + 0x30, p.p_align);
}

/// The PT_LOAD headers, in file order.
pub fn loads(b: &[u8]) -> Vec<Phdr> {
    phdrs(b).into_iter().filter(|p| p.p_type == PT_LOAD).collect()
}
