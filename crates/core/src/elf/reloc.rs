//! Relative relocations (REL, RELA, RELR), per machine.
//!
//! The preparer applies every relative relocation of a static PIE ahead of time
//! at the image's load bias, so that the relocated pages can be sealed and shared.
//! Machines differ only in their relocation type numbers; the tables' formats
//! (Elf64_Rel, Elf64_Rela, RELR bitmaps) are the same, so adding a machine means
//! adding its [`Machine`] constants.
//!
//! Memory is reached through the [`Target`] trait (the test seam): the preparer
//! implements it over the segment copies, the unit tests over a plain buffer.

use std::fmt;

use object::elf;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Machine {
    X86_64,
    AArch64,
}

impl Machine {
    pub fn from_em(em: u16) -> Option<Self> {
        match em {
            elf::EM_X86_64 => Some(Machine::X86_64),
            elf::EM_AARCH64 => Some(Machine::AArch64),
            _ => None,
        }
    }

    /// The e_machine value.
    pub fn em(self) -> u16 {
        match self {
            Machine::X86_64 => elf::EM_X86_64,
            Machine::AArch64 => elf::EM_AARCH64,
        }
    }

    /// The machine this build runs on.
    pub fn host() -> Self {
        if cfg!(target_arch = "aarch64") { Machine::AArch64 } else { Machine::X86_64 }
    }

    pub fn name(self) -> &'static str {
        match self {
            Machine::X86_64 => "x86_64",
            Machine::AArch64 => "aarch64",
        }
    }

    pub fn r_none(self) -> u32 {
        match self {
            Machine::X86_64 => elf::R_X86_64_NONE,
            Machine::AArch64 => elf::R_AARCH64_NONE,
        }
    }

    pub fn r_relative(self) -> u32 {
        match self {
            Machine::X86_64 => elf::R_X86_64_RELATIVE,
            Machine::AArch64 => elf::R_AARCH64_RELATIVE,
        }
    }

    pub fn r_irelative(self) -> u32 {
        match self {
            Machine::X86_64 => elf::R_X86_64_IRELATIVE,
            Machine::AArch64 => elf::R_AARCH64_IRELATIVE,
        }
    }
}

#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum RelocError {
    #[error("{table} entry {index}: relocation target {addr:#x} is outside the file-backed part of every PT_LOAD")]
    OutOfImage { table: Table, index: usize, addr: u64 },
    #[error("{table}: size {size:#x} is not a multiple of the entry size {entsize}")]
    BadTableSize { table: Table, size: u64, entsize: u64 },
}

/// Which relocation table an entry came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Rela,
    Rel,
    Relr,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Table::Rela => "DT_RELA",
            Table::Rel => "DT_REL",
            Table::Relr => "DT_RELR",
        })
    }
}

/// Word-addressed access to the image being relocated, by unbiased vaddr.
pub trait Target {
    fn read_u64(&self, vaddr: u64) -> Option<u64>;
    fn write_u64(&mut self, vaddr: u64, value: u64) -> Option<()>;
}

/// What one table held and what was done with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableOutcome {
    /// Entries in the table.
    pub entries: usize,
    /// Relative relocations applied ahead of time.
    pub applied: usize,
    /// Length of the leading run of entries that were applied or are no-ops, so
    /// start-up code may skip them. For RELR this is the whole table.
    pub prefix: usize,
}

/// Apply the relative entries of an Elf64_Rela table: `*P = B + A`.
///
/// Non-relative entries are left for the program's own start-up code (they are
/// after the returned prefix; RELA application is idempotent, so a relative
/// entry after the prefix is harmless if the program applies it again).
pub fn apply_rela(
    machine: Machine,
    table: &[u8],
    bias: u64,
    mem: &mut impl Target,
) -> Result<TableOutcome, RelocError> {
    const ENT: usize = 24;
    check_size(Table::Rela, table.len(), ENT)?;
    let mut out = TableOutcome { entries: table.len() / ENT, ..Default::default() };
    let mut in_prefix = true;
    for (index, ent) in table.chunks_exact(ENT).enumerate() {
        let r_offset = le64(&ent[0..8]);
        let r_info = le64(&ent[8..16]);
        let addend = le64(&ent[16..24]);
        let (rtype, sym) = ((r_info & 0xffff_ffff) as u32, r_info >> 32);
        if rtype == machine.r_relative() && sym == 0 {
            mem.write_u64(r_offset, bias.wrapping_add(addend)).ok_or(RelocError::OutOfImage {
                table: Table::Rela,
                index,
                addr: r_offset,
            })?;
            out.applied += 1;
        } else if rtype != machine.r_none() {
            in_prefix = false;
        }
        if in_prefix {
            out.prefix += 1;
        }
    }
    Ok(out)
}

/// Apply the leading relative entries of an Elf64_Rel table: `*P += B`.
///
/// REL is implicit-addend and so not idempotent: only the leading run is
/// applied (start-up code skips exactly that run); a relative entry after a
/// non-relative one is left to the program.
pub fn apply_rel(machine: Machine, table: &[u8], bias: u64, mem: &mut impl Target) -> Result<TableOutcome, RelocError> {
    const ENT: usize = 16;
    check_size(Table::Rel, table.len(), ENT)?;
    let mut out = TableOutcome { entries: table.len() / ENT, ..Default::default() };
    for (index, ent) in table.chunks_exact(ENT).enumerate() {
        let r_offset = le64(&ent[0..8]);
        let r_info = le64(&ent[8..16]);
        let (rtype, sym) = ((r_info & 0xffff_ffff) as u32, r_info >> 32);
        if rtype == machine.r_relative() && sym == 0 {
            let err = RelocError::OutOfImage { table: Table::Rel, index, addr: r_offset };
            let v = mem.read_u64(r_offset).ok_or(err.clone())?;
            mem.write_u64(r_offset, v.wrapping_add(bias)).ok_or(err)?;
            out.applied += 1;
        } else if rtype != machine.r_none() {
            break;
        }
        out.prefix += 1;
    }
    Ok(out)
}

/// Apply a DT_RELR table: every listed word gets `+= B`.
///
/// An even entry is an address (relocate it, continue from the next word); an
/// odd entry is a bitmap of the 63 words that follow the current position.
pub fn apply_relr(table: &[u8], bias: u64, mem: &mut impl Target) -> Result<TableOutcome, RelocError> {
    check_size(Table::Relr, table.len(), 8)?;
    let mut out = TableOutcome { entries: table.len() / 8, ..Default::default() };
    let mut next: u64 = 0;
    for (index, ent) in table.chunks_exact(8).enumerate() {
        let word = le64(ent);
        let mut bump = |addr: u64| -> Result<(), RelocError> {
            let err = RelocError::OutOfImage { table: Table::Relr, index, addr };
            let v = mem.read_u64(addr).ok_or(err.clone())?;
            mem.write_u64(addr, v.wrapping_add(bias)).ok_or(err)?;
            Ok(())
        };
        if word & 1 == 0 {
            bump(word)?;
            out.applied += 1;
            next = word.wrapping_add(8);
        } else {
            let mut bits = word >> 1;
            let mut addr = next;
            while bits != 0 {
                if bits & 1 != 0 {
                    bump(addr)?;
                    out.applied += 1;
                }
                bits >>= 1;
                addr = addr.wrapping_add(8);
            }
            next = next.wrapping_add(63 * 8);
        }
    }
    out.prefix = out.entries;
    Ok(out)
}

fn check_size(table: Table, len: usize, ent: usize) -> Result<(), RelocError> {
    if !len.is_multiple_of(ent) {
        return Err(RelocError::BadTableSize { table, size: len as u64, entsize: ent as u64 });
    }
    Ok(())
}

fn le64(b: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[..8]);
    u64::from_le_bytes(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flat little-endian memory at vaddr `base`.
    struct Flat {
        base: u64,
        bytes: Vec<u8>,
    }

    impl Target for Flat {
        fn read_u64(&self, vaddr: u64) -> Option<u64> {
            let at = vaddr.checked_sub(self.base)? as usize;
            self.bytes.get(at..at + 8).map(le64)
        }
        fn write_u64(&mut self, vaddr: u64, value: u64) -> Option<()> {
            let at = vaddr.checked_sub(self.base)? as usize;
            self.bytes.get_mut(at..at + 8)?.copy_from_slice(&value.to_le_bytes());
            Some(())
        }
    }

    fn rela(entries: &[(u64, u64, u64)]) -> Vec<u8> {
        entries.iter().flat_map(|&(o, i, a)| [o.to_le_bytes(), i.to_le_bytes(), a.to_le_bytes()].concat()).collect()
    }

    fn words(mem: &Flat) -> Vec<u64> {
        mem.bytes.chunks_exact(8).map(le64).collect()
    }

    #[test]
    fn x86_64_rela_relative_and_prefix() {
        let mut mem = Flat { base: 0x1000, bytes: vec![0; 64] };
        let r = u64::from(elf::R_X86_64_RELATIVE);
        let irel = u64::from(elf::R_X86_64_IRELATIVE);
        let t = rela(&[(0x1000, r, 0x10), (0x1008, r, 0x20), (0x1010, irel, 0x30), (0x1018, r, 0x40)]);
        let out = apply_rela(Machine::X86_64, &t, 0x5a00_0000_0000, &mut mem).unwrap();
        assert_eq!(out, TableOutcome { entries: 4, applied: 3, prefix: 2 });
        assert_eq!(&words(&mem)[..4], &[0x5a00_0000_0010, 0x5a00_0000_0020, 0, 0x5a00_0000_0040]);
    }

    #[test]
    fn aarch64_rela_relative() {
        let mut mem = Flat { base: 0x10000, bytes: vec![0; 24] };
        let r = u64::from(elf::R_AARCH64_RELATIVE);
        assert_eq!(r, 1027);
        let none = u64::from(elf::R_AARCH64_NONE);
        let t = rela(&[(0x10000, r, 0x123), (0, none, 0), (0x10010, r, 0x8)]);
        let out = apply_rela(Machine::AArch64, &t, 0x40_0000, &mut mem).unwrap();
        assert_eq!(out, TableOutcome { entries: 3, applied: 2, prefix: 3 });
        assert_eq!(words(&mem), vec![0x40_0123, 0, 0x40_0008]);
        // An x86_64 RELATIVE number means nothing to aarch64: left alone.
        let t = rela(&[(0x10008, u64::from(elf::R_X86_64_RELATIVE), 1)]);
        let out = apply_rela(Machine::AArch64, &t, 0x40_0000, &mut mem).unwrap();
        assert_eq!(out, TableOutcome { entries: 1, applied: 0, prefix: 0 });
    }

    #[test]
    fn rel_implicit_addend_prefix_only() {
        let mut mem = Flat { base: 0, bytes: vec![0; 24] };
        mem.write_u64(0, 0x100).unwrap();
        mem.write_u64(8, 0x200).unwrap();
        mem.write_u64(16, 0x300).unwrap();
        let r = u64::from(elf::R_X86_64_RELATIVE);
        let other = u64::from(elf::R_X86_64_64) | (1 << 32);
        let t: Vec<u8> = [(0u64, r), (8, other), (16, r)]
            .iter()
            .flat_map(|&(o, i)| [o.to_le_bytes(), i.to_le_bytes()].concat())
            .collect();
        let out = apply_rel(Machine::X86_64, &t, 0x1000, &mut mem).unwrap();
        assert_eq!(out, TableOutcome { entries: 3, applied: 1, prefix: 1 });
        assert_eq!(words(&mem), vec![0x1100, 0x200, 0x300]);
    }

    #[test]
    fn relr_addresses_and_bitmaps() {
        // 130 words at vaddr 0x2000, each holding its index.
        let mut mem = Flat { base: 0x2000, bytes: (0..130u64).flat_map(|i| i.to_le_bytes()).collect() };
        // Address entry for word 0, then a bitmap for words 1..=63 with bits for
        // words 1, 3 and 63, then a bitmap for words 64..=126 with word 64 and 126.
        let bitmap1 = 1 | (1 << 1) | (1 << 3) | (1 << 63);
        let bitmap2 = 1u64 | (1 << 1) | (1 << 63);
        let t: Vec<u8> = [0x2000u64, bitmap1, bitmap2].iter().flat_map(|w| w.to_le_bytes()).collect();
        let out = apply_relr(&t, 0x1_0000, &mut mem).unwrap();
        assert_eq!(out.applied, 6);
        let w = words(&mem);
        for (i, v) in w.iter().enumerate() {
            let relocated = matches!(i, 0 | 1 | 3 | 63 | 64 | 126);
            assert_eq!(*v, i as u64 + if relocated { 0x1_0000 } else { 0 }, "word {i}");
        }
    }

    #[test]
    fn relr_aarch64_style_table_is_machine_independent() {
        // RELR has no type field; the same table relocates any 64-bit machine.
        let mut mem = Flat { base: 0x40_0000, bytes: vec![0; 16] };
        let t: Vec<u8> = [0x40_0008u64].iter().flat_map(|w| w.to_le_bytes()).collect();
        apply_relr(&t, 0x7000_0000, &mut mem).unwrap();
        assert_eq!(words(&mem), vec![0, 0x7000_0000]);
    }

    #[test]
    fn out_of_image_and_bad_size() {
        let mut mem = Flat { base: 0, bytes: vec![0; 8] };
        let r = u64::from(elf::R_X86_64_RELATIVE);
        let err = apply_rela(Machine::X86_64, &rela(&[(0x100, r, 0)]), 0, &mut mem).unwrap_err();
        assert_eq!(err, RelocError::OutOfImage { table: Table::Rela, index: 0, addr: 0x100 });
        let err = apply_relr(&[0u8; 7], 0, &mut mem).unwrap_err();
        assert!(matches!(err, RelocError::BadTableSize { .. }));
    }

    #[test]
    fn machines_by_em() {
        assert_eq!(Machine::from_em(elf::EM_X86_64), Some(Machine::X86_64));
        assert_eq!(Machine::from_em(elf::EM_AARCH64), Some(Machine::AArch64));
        assert_eq!(Machine::from_em(elf::EM_386), None);
        assert_eq!(Machine::from_em(elf::EM_RISCV), None);
        assert_eq!((Machine::X86_64.r_relative(), Machine::X86_64.r_irelative()), (8, 37));
        assert_eq!((Machine::AArch64.r_none(), Machine::AArch64.r_irelative()), (0, 1032));
    }

    #[test]
    fn rela_leaves_unsupported_types_to_the_program() {
        let mut mem = Flat { base: 0x1000, bytes: vec![0xaa; 40] };
        let r = u64::from(elf::R_X86_64_RELATIVE);
        let sym = |t: u32, s: u64| u64::from(t) | (s << 32);
        let t = rela(&[
            (0x1000, sym(elf::R_X86_64_64, 3), 0x1),
            (0x1008, sym(elf::R_X86_64_GLOB_DAT, 4), 0),
            (0x1010, sym(elf::R_X86_64_RELATIVE, 5), 0x2), // RELATIVE with a symbol: not ours
            (0x1018, u64::from(elf::R_X86_64_IRELATIVE), 0x3),
            (0x1020, r, 0x4),
        ]);
        let out = apply_rela(Machine::X86_64, &t, 0x10_0000, &mut mem).unwrap();
        assert_eq!(out, TableOutcome { entries: 5, applied: 1, prefix: 0 });
        assert_eq!(
            words(&mem),
            vec![0xaaaa_aaaa_aaaa_aaaa, 0xaaaa_aaaa_aaaa_aaaa, 0xaaaa_aaaa_aaaa_aaaa, 0xaaaa_aaaa_aaaa_aaaa, 0x10_0004]
        );
    }

    #[test]
    fn rel_none_entries_stay_in_the_prefix() {
        let mut mem = Flat { base: 0x4000, bytes: vec![0; 16] };
        mem.write_u64(0x4008, 0x30).unwrap();
        let r = u64::from(elf::R_AARCH64_RELATIVE);
        let t: Vec<u8> = [(0u64, u64::from(elf::R_AARCH64_NONE)), (0x4008, r)]
            .iter()
            .flat_map(|&(o, i)| [o.to_le_bytes(), i.to_le_bytes()].concat())
            .collect();
        let out = apply_rel(Machine::AArch64, &t, 0x7000, &mut mem).unwrap();
        assert_eq!(out, TableOutcome { entries: 2, applied: 1, prefix: 2 });
        assert_eq!(words(&mem), vec![0, 0x7030]);
    }

    #[test]
    fn out_of_image_names_table_entry_and_address() {
        let mut mem = Flat { base: 0x1000, bytes: vec![0; 16] };
        let r = u64::from(elf::R_X86_64_RELATIVE);
        let t: Vec<u8> = [(0x1000u64, r), (0x1010, r)]
            .iter()
            .flat_map(|&(o, i)| [o.to_le_bytes(), i.to_le_bytes()].concat())
            .collect();
        let err = apply_rel(Machine::X86_64, &t, 1, &mut mem).unwrap_err();
        assert_eq!(err, RelocError::OutOfImage { table: Table::Rel, index: 1, addr: 0x1010 });
        assert_eq!(words(&mem), vec![1, 0], "entries before the bad one were applied");
        // RELR: the bitmap (entry 1) reaches word 2, past the end.
        let t: Vec<u8> = [0x1000u64, 0b111].iter().flat_map(|w| w.to_le_bytes()).collect();
        let err = apply_relr(&t, 1, &mut mem).unwrap_err();
        assert_eq!(err, RelocError::OutOfImage { table: Table::Relr, index: 1, addr: 0x1010 });
        assert_eq!(
            err.to_string(),
            "DT_RELR entry 1: relocation target 0x1010 is outside the file-backed part of every PT_LOAD"
        );
    }

    #[test]
    fn table_sizes_must_be_whole_entries() {
        let mut mem = Flat { base: 0, bytes: vec![0; 8] };
        let err = apply_rela(Machine::X86_64, &[0u8; 25], 0, &mut mem).unwrap_err();
        assert_eq!(err, RelocError::BadTableSize { table: Table::Rela, size: 25, entsize: 24 });
        let err = apply_rel(Machine::X86_64, &[0u8; 17], 0, &mut mem).unwrap_err();
        assert_eq!(err, RelocError::BadTableSize { table: Table::Rel, size: 17, entsize: 16 });
        assert_eq!(err.to_string(), "DT_REL: size 0x11 is not a multiple of the entry size 16");
        let out = apply_rela(Machine::X86_64, &[], 0, &mut mem).unwrap();
        assert_eq!(out, TableOutcome::default());
    }
}
