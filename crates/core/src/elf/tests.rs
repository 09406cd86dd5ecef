//! Unit tests of ELF decoding, on images built in memory: valid layouts and
//! each defect, checked for the exact error and where in the file it is.

use super::*;

#[test]
fn page_math() {
    assert_eq!(page_down(0x1fff), 0x1000);
    assert_eq!(page_up(0x1001), 0x2000);
    assert_eq!(page_up(0x2000), 0x2000);
}

#[test]
fn segment_kinds() {
    let s = |flags, filesz, memsz| Segment { index: 0, vaddr: 0, memsz, offset: 0, filesz, flags, align: 4096 };
    assert_eq!(s(elf::PF_R | elf::PF_X, 10, 10).kind(), SegmentKind::Constant);
    assert_eq!(s(elf::PF_R | elf::PF_W, 10, 10).kind(), SegmentKind::Data);
    assert_eq!(s(elf::PF_R | elf::PF_W, 10, 20).kind(), SegmentKind::DataWithZeroFill);
    assert_eq!(s(elf::PF_R | elf::PF_W, 0, 20).kind(), SegmentKind::ZeroFill);
}

#[test]
fn rejects_garbage() {
    assert_eq!(check(b"hello world"), Err(ElfError::NotElf { magic: b"hell".to_vec() }));
    assert_eq!(check(b"\x7fEL"), Err(ElfError::NotElf { magic: b"\x7fEL".to_vec() }));
    assert_eq!(
        check(b"\x7fELF\x02"),
        Err(ElfError::Truncated { what: "the ELF identification", start: 0, end: 16, len: 5 })
    );
    assert_eq!(check(b"\x7fELF\x01\x01"), Err(ElfError::Class { class: 1 }));
    assert_eq!(check(b"\x7fELF\x02\x02"), Err(ElfError::ByteOrder { data: 2 }));
    assert_eq!(
        check(b"\x7fELF\x02\x01\x01"),
        Err(ElfError::Truncated { what: "the ELF header", start: 0, end: 64, len: 7 })
    );
}

// --- Synthetic program files -------------------------------------------

/// One program header to write.
#[derive(Clone, Copy)]
struct P {
    ptype: u32,
    flags: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
    memsz: u64,
    align: u64,
}

const RX: u32 = elf::PF_R | elf::PF_X;
const RW: u32 = elf::PF_R | elf::PF_W;
const PHOFF: u64 = 64;
/// Where `Spec::dynamic` is written (and what PT_DYNAMIC names).
const DYN_OFF: u64 = 0x1000;
const LEN: usize = 0x1800;

fn p(ptype: u32, flags: u32, offset: u64, vaddr: u64, filesz: u64, memsz: u64, align: u64) -> P {
    P { ptype, flags, offset, vaddr, filesz, memsz, align }
}

/// File offset of program header `i` when the table is at PHOFF.
fn at(i: usize) -> u64 {
    PHOFF + 56 * i as u64
}

fn host_em() -> u16 {
    Machine::host().em()
}

/// An ELF file to build.
struct Spec {
    etype: u16,
    machine: u16,
    entry: u64,
    phoff: u64,
    phdrs: Vec<P>,
    /// (d_tag, d_val) pairs written at DYN_OFF.
    dynamic: Vec<(u64, u64)>,
    len: usize,
}

/// A static PIE: text (with the headers and the entry point), data+bss
/// holding .dynamic, PT_DYNAMIC, RELRO, TLS and a non-executable stack.
fn static_pie() -> Spec {
    Spec {
        etype: elf::ET_DYN,
        machine: host_em(),
        entry: 0x100,
        phoff: PHOFF,
        phdrs: vec![
            p(elf::PT_LOAD, RX, 0, 0, 0x1000, 0x1000, 0x1000),
            p(elf::PT_LOAD, RW, 0x1000, 0x2000, 0x200, 0x800, 0x1000),
            p(elf::PT_DYNAMIC, RW, DYN_OFF, 0x2000, 0x30, 0x30, 8),
            p(elf::PT_GNU_RELRO, elf::PF_R, 0x1000, 0x2000, 0x100, 0x100, 1),
            p(elf::PT_TLS, elf::PF_R, 0x1100, 0x2100, 0x10, 0x20, 8),
            p(elf::PT_GNU_STACK, RW, 0, 0, 0, 0, 16),
        ],
        dynamic: vec![(u64::from(elf::DT_FLAGS_1), u64::from(elf::DF_1_PIE)), (u64::from(elf::DT_DEBUG), 0)],
        len: LEN,
    }
}

fn build(s: &Spec) -> Vec<u8> {
    let mut b = vec![0u8; s.len.max(64)];
    let put = |b: &mut Vec<u8>, at: u64, bytes: &[u8]| {
        let at = at as usize;
        if b.len() < at + bytes.len() {
            b.resize(at + bytes.len(), 0);
        }
        b[at..at + bytes.len()].copy_from_slice(bytes);
    };
    put(&mut b, 0, b"\x7fELF\x02\x01\x01");
    put(&mut b, 0x10, &s.etype.to_le_bytes());
    put(&mut b, 0x12, &s.machine.to_le_bytes());
    put(&mut b, 0x14, &1u32.to_le_bytes());
    put(&mut b, 0x18, &s.entry.to_le_bytes());
    put(&mut b, 0x20, &s.phoff.to_le_bytes());
    put(&mut b, 0x34, &64u16.to_le_bytes());
    put(&mut b, 0x36, &56u16.to_le_bytes());
    put(&mut b, 0x38, &(s.phdrs.len() as u16).to_le_bytes());
    for (i, ph) in s.phdrs.iter().enumerate() {
        let o = s.phoff + 56 * i as u64;
        put(&mut b, o, &ph.ptype.to_le_bytes());
        put(&mut b, o + 4, &ph.flags.to_le_bytes());
        for (k, v) in [ph.offset, ph.vaddr, ph.vaddr, ph.filesz, ph.memsz, ph.align].iter().enumerate() {
            put(&mut b, o + 8 + 8 * k as u64, &v.to_le_bytes());
        }
    }
    for (i, (tag, val)) in s.dynamic.iter().enumerate() {
        put(&mut b, DYN_OFF + 16 * i as u64, &tag.to_le_bytes());
        put(&mut b, DYN_OFF + 16 * i as u64 + 8, &val.to_le_bytes());
    }
    b.truncate(s.len);
    b
}

fn decode_spec(s: &Spec) -> Result<ElfInfo, ElfError> {
    decode(&build(s))
}

/// Just the verdict, to compare errors whole.
fn check(data: &[u8]) -> Result<(), ElfError> {
    decode(data).map(drop)
}

fn check_spec(s: &Spec) -> Result<(), ElfError> {
    check(&build(s))
}

/// Decoding `s` fails on program header `index`'s `field`, for a reason
/// that mentions `why_has`.
fn expect_bad_segment(s: &Spec, index: usize, field: &str, why_has: &str) {
    let err = decode_spec(s).expect_err("decoded a bad program header");
    let ElfError::BadSegment { index: i, offset, ptype, field: f, why } = &err else {
        panic!("expected BadSegment for program header {index}, got {err:?}");
    };
    assert_eq!((*i, *offset, *ptype, *f), (index, at(index), PType(s.phdrs[index].ptype), field), "{err:?}");
    assert!(why.contains(why_has), "{why:?} lacks {why_has:?}");
}

#[test]
fn decodes_a_static_pie() {
    let info = decode_spec(&static_pie()).expect("a valid static PIE");
    assert_eq!(info.kind, ProgramKind::StaticPie);
    assert_eq!(info.machine, Machine::host());
    assert_eq!((info.entry, info.phdr_vaddr, info.phnum, info.phentsize), (0x100, PHOFF, 6, 56));
    let kinds: Vec<_> = info.segments.iter().map(|s| (s.index, s.kind())).collect();
    assert_eq!(kinds, vec![(0, SegmentKind::Constant), (1, SegmentKind::DataWithZeroFill)]);
    assert_eq!(info.relro, Some((0x2000, 0x100)));
    assert_eq!(info.tls, Some(Tls { vaddr: 0x2100, filesz: 0x10, memsz: 0x20, align: 8 }));
    assert_eq!(info.max_align, PAGE_SIZE);
    let d = info.dynamic.as_ref().expect("PT_DYNAMIC decoded");
    assert_eq!(d.vaddr, 0x2000);
    assert_eq!(d.entries.len(), 2, "stops at DT_NULL");
    assert_eq!(d.get(elf::DT_FLAGS_1), Some(u64::from(elf::DF_1_PIE)));
    assert_eq!(d.entry(elf::DT_DEBUG).map(|e| e.vaddr), Some(0x2010));
    assert_eq!((info.start(), info.end()), (0, 0x3000));
    assert_eq!(info.file_offset(0x2008, 8), Some(0x1008));
    assert_eq!(info.file_offset(0x2200, 8), None, "bss has no file bytes");
}

#[test]
fn static_exec_and_pt_phdr() {
    let mut s = static_pie();
    s.etype = elf::ET_EXEC;
    s.phdrs.retain(|p| p.ptype != elf::PT_DYNAMIC);
    s.phdrs.push(p(elf::PT_PHDR, elf::PF_R, PHOFF, 0x80, 56 * 6, 56 * 6, 8));
    let info = decode_spec(&s).expect("a valid static executable");
    assert_eq!(info.kind, ProgramKind::Static);
    assert!(info.dynamic.is_none());
    assert_eq!(info.phdr_vaddr, 0x80, "PT_PHDR wins over the PT_LOAD holding e_phoff");
}

#[test]
fn header_fields_are_located() {
    let truncated = build(&static_pie())[..40].to_vec();
    assert_eq!(check(&truncated), Err(ElfError::Truncated { what: "the ELF header", start: 0, end: 64, len: 40 }));

    let mut b = build(&static_pie());
    b[6] = 2;
    assert_eq!(
        check(&b),
        Err(ElfError::BadField { field: "EI_VERSION", offset: 6, value: 2, why: "must be EV_CURRENT (1)" })
    );

    let mut s = static_pie();
    s.machine = elf::EM_386;
    let host = Machine::host().name();
    assert_eq!(check_spec(&s), Err(ElfError::Machine { machine: elf::EM_386, name: "i386", host }));

    let mut s = static_pie();
    s.etype = elf::ET_REL;
    assert_eq!(check_spec(&s), Err(ElfError::Relocatable));
    s.etype = elf::ET_CORE;
    assert!(matches!(decode_spec(&s), Err(ElfError::BadField { field: "e_type", offset: 0x10, value: 4, .. })));

    let mut b = build(&static_pie());
    b[0x36] = 32;
    assert!(matches!(decode(&b), Err(ElfError::BadField { field: "e_phentsize", offset: 0x36, value: 32, .. })));
    let mut b = build(&static_pie());
    b[0x38] = 0;
    assert!(matches!(decode(&b), Err(ElfError::BadField { field: "e_phnum", offset: 0x38, value: 0, .. })));
}

#[test]
fn truncated_program_headers() {
    let mut s = static_pie();
    s.phoff = LEN as u64 - 100;
    let end = s.phoff + 6 * 56;
    assert_eq!(
        check_spec(&s),
        Err(ElfError::Truncated { what: "the program headers", start: s.phoff, end, len: LEN as u64 })
    );
}

#[test]
fn segment_past_end_of_file() {
    let mut s = static_pie();
    s.phdrs[1].filesz = 0x900;
    s.phdrs[1].memsz = 0x900;
    expect_bad_segment(&s, 1, "p_offset + p_filesz", "runs past the end of the file (0x1800 bytes)");
    // An offset far past the end with no file bytes is fine for PT_GNU_STACK.
    let mut s = static_pie();
    s.phdrs[5] = p(elf::PT_GNU_STACK, RW, u64::MAX, 0, u64::MAX, 0, 16);
    assert!(decode_spec(&s).is_ok());
}

#[test]
fn filesz_larger_than_memsz() {
    let mut s = static_pie();
    s.phdrs[1].memsz = 0x100;
    expect_bad_segment(&s, 1, "p_filesz", "0x200 is larger than p_memsz 0x100");
    let mut s = static_pie();
    s.phdrs[4].memsz = 0x8;
    expect_bad_segment(&s, 4, "p_filesz", "larger than p_memsz");
}

#[test]
fn absurd_memsz_and_alignment() {
    let mut s = static_pie();
    s.phdrs[1].memsz = 1 << 60;
    expect_bad_segment(&s, 1, "p_memsz", "absurd size");
    let mut s = static_pie();
    s.phdrs[0].align = 3;
    expect_bad_segment(&s, 0, "p_align", "0x3 is not a power of two");
    let mut s = static_pie();
    s.phdrs[1].align = 0x2000;
    expect_bad_segment(&s, 1, "p_vaddr", "modulo p_align 0x2000");
    let mut s = static_pie();
    s.phdrs[1].align = 0;
    s.phdrs[1].vaddr = 0x2100;
    expect_bad_segment(&s, 1, "p_vaddr", "modulo the page size");
    let mut s = static_pie();
    s.phdrs[4].align = 6;
    expect_bad_segment(&s, 4, "p_align", "not a power of two");
}

#[test]
fn misordered_loads() {
    let mut s = static_pie();
    s.phdrs.swap(0, 1);
    expect_bad_segment(&s, 1, "p_vaddr", "PT_LOADs must be sorted");
}

#[test]
fn overlapping_loads() {
    let mut s = static_pie();
    s.phdrs[0].memsz = 0x2800;
    expect_bad_segment(&s, 1, "p_vaddr", "overlaps program header 0 (0x0..0x2800)");
}

#[test]
fn loads_sharing_a_page() {
    let mut s = static_pie();
    s.phdrs[0].memsz = 0x1100;
    s.phdrs[1].offset = 0x1200;
    s.phdrs[1].vaddr = 0x1200;
    expect_bad_segment(&s, 1, "p_vaddr", "shares a page with program header 0");
}

#[test]
fn absurd_span() {
    let mut s = static_pie();
    s.phdrs[1].vaddr = (1 << 37) + 0x2000;
    expect_bad_segment(&s, 1, "p_memsz", "absurdly large image");
}

#[test]
fn empty_loads_are_dropped_and_none_is_refused() {
    let mut s = static_pie();
    s.phdrs.insert(1, p(elf::PT_LOAD, RW, 0, 0x1000, 0, 0, 0x1000));
    let info = decode_spec(&s).expect("an empty PT_LOAD is ignored");
    assert_eq!(info.segments.iter().map(|s| s.index).collect::<Vec<_>>(), vec![0, 2]);

    let mut s = static_pie();
    s.phdrs.retain(|p| p.ptype != elf::PT_LOAD);
    assert!(matches!(decode_spec(&s), Err(ElfError::BadField { field: "e_phnum", offset: 0x38, value: 4, .. })));
}

#[test]
fn entry_and_program_header_placement() {
    let mut s = static_pie();
    s.entry = 0x2100;
    assert!(matches!(decode_spec(&s), Err(ElfError::BadField { field: "e_entry", offset: 0x18, value: 0x2100, .. })));

    let mut s = static_pie();
    s.phoff = 0x1400;
    let e = decode_spec(&s).unwrap_err();
    assert_eq!(e, ElfError::PhdrsNotLoaded { phoff: 0x1400 });
    assert!(e.kernel_runs_it(), "the kernel runs it (AT_PHDR 0): a plain exec");
}

#[test]
fn interpreter_and_exec_stack_are_refused() {
    let mut s = static_pie();
    s.phdrs.push(p(elf::PT_INTERP, elf::PF_R, 0x1700, 0, 0x10, 0x10, 1));
    let mut b = build(&s);
    b[0x1700..0x170b].copy_from_slice(b"/lib/ld.so\0");
    assert_eq!(check(&b), Err(ElfError::Dynamic { index: 6, interp: "/lib/ld.so".into() }));

    // No file bytes, offset past the end: still refused, without reading.
    let mut s = static_pie();
    s.phdrs.push(p(elf::PT_INTERP, elf::PF_R, 0x10_0000, 0, 0, 0, 1));
    assert_eq!(check_spec(&s), Err(ElfError::Dynamic { index: 6, interp: String::new() }));

    let mut s = static_pie();
    s.phdrs[5].flags = RW | elf::PF_X;
    assert_eq!(check_spec(&s), Err(ElfError::ExecStack { index: 5 }));
}

#[test]
fn dynamic_section_defects() {
    let mut s = static_pie();
    s.phdrs[2].filesz = 0x20;
    s.phdrs[2].memsz = 0x20;
    s.dynamic.push((u64::from(elf::DT_DEBUG), 0));
    assert!(matches!(decode_spec(&s), Err(ElfError::DynamicSection { index: 2, offset: DYN_OFF, .. })));

    let mut s = static_pie();
    s.phdrs[2].filesz = 0x40;
    s.phdrs[2].memsz = 0x40;
    s.dynamic.push((u64::from(elf::DT_NEEDED), 1));
    let err = decode_spec(&s).expect_err("DT_NEEDED without PT_INTERP");
    assert!(matches!(&err, ElfError::SharedLibrary { why } if why.contains("DT_NEEDED")), "{err:?}");

    // Found by fuzz/elf_decode: entry addresses past the top of the address
    // space overflowed (a panic with overflow checks).
    let mut s = static_pie();
    s.phdrs[2].vaddr = u64::MAX - 8;
    let err = decode_spec(&s).expect_err("PT_DYNAMIC past the address space");
    assert!(matches!(&err, ElfError::DynamicSection { index: 2, offset: DYN_OFF, .. }), "{err:?}");
}

#[test]
fn relro_past_the_address_space() {
    // Found by fuzz/elf_prepare: the preparer's RELRO split overflowed.
    let mut s = static_pie();
    s.phdrs[3].memsz = u64::MAX - 0x1000;
    expect_bad_segment(&s, 3, "p_memsz", "leaves user space");
}

/// The kernel runs any ET_DYN without an interpreter: one that needs no
/// symbol resolved is imaged as a static PIE whatever DT_FLAGS_1 says (or
/// without a PT_DYNAMIC at all); anything else runs by plain exec.
#[test]
fn et_dyn_without_an_interpreter() {
    let kind = |b: &[u8]| decode(b).map(|i| i.kind);
    let mut s = static_pie();
    s.dynamic[0] = (u64::from(elf::DT_FLAGS_1), 0);
    assert_eq!(kind(&build(&s)), Ok(ProgramKind::StaticPie), "no DF_1_PIE, nothing to relocate");
    s.phdrs.retain(|p| p.ptype != elf::PT_DYNAMIC);
    assert_eq!(kind(&build(&s)), Ok(ProgramKind::StaticPie), "no PT_DYNAMIC");

    // DT_RELA at 0x2080 (file offset 0x1080): one relative, one symbol relocation.
    let mut s = static_pie();
    s.phdrs[2].filesz = 0x40;
    s.phdrs[2].memsz = 0x40;
    s.dynamic =
        vec![(u64::from(elf::DT_RELA), 0x2080), (u64::from(elf::DT_RELASZ), 24), (u64::from(elf::DT_FLAGS_1), 0)];
    let mut b = build(&s);
    let relative = u64::from(Machine::host().r_relative());
    b[0x1080..0x1088].copy_from_slice(&0x2000u64.to_le_bytes());
    b[0x1088..0x1090].copy_from_slice(&relative.to_le_bytes());
    b[0x1098..0x10a0].copy_from_slice(&0x2008u64.to_le_bytes());
    b[0x10a0..0x10a8].copy_from_slice(&(1u64 << 32 | 1).to_le_bytes());
    assert_eq!(kind(&b), Ok(ProgramKind::StaticPie), "only a relative relocation");
    b[0x1010 + 8..0x1010 + 16].copy_from_slice(&48u64.to_le_bytes());
    let why = "no DF_1_PIE in DT_FLAGS_1, and relocations other than relative";
    assert_eq!(kind(&b), Err(ElfError::SharedLibrary { why }), "a symbol relocation");
    b[0x1020 + 8..0x1020 + 16].copy_from_slice(&u64::from(elf::DF_1_PIE).to_le_bytes());
    assert_eq!(kind(&b), Ok(ProgramKind::StaticPie), "flagged a PIE: its start-up resolves the rest");
}

#[test]
fn tls_image_outside_the_loads() {
    let mut s = static_pie();
    s.phdrs[4].vaddr = 0x2400;
    expect_bad_segment(&s, 4, "p_vaddr", "0x2400: the TLS initialization image");
    s.phdrs[4].filesz = 0;
    assert!(decode_spec(&s).is_ok(), "a TLS block without an image needs no file bytes");
}

#[test]
fn messages_say_where_and_not_which_file() {
    let mut s = static_pie();
    s.phdrs[1].memsz = 0x100;
    let msg = decode_spec(&s).expect_err("bad").to_string();
    assert_eq!(msg, "program header 1 (PT_LOAD, at offset 0x78): p_filesz 0x200 is larger than p_memsz 0x100");
    let mut s = static_pie();
    s.entry = 0x5000;
    let msg = decode_spec(&s).expect_err("bad").to_string();
    assert_eq!(msg, "e_entry = 0x5000 (ELF header offset 0x18): is not inside an executable PT_LOAD");
}

// --- Loading as it is ---------------------------------------------------

#[test]
fn as_is_reads_the_headers() {
    let b = build(&static_pie());
    let info = decode_as_is(&b, LEN as u64).expect("a valid static PIE");
    assert_eq!(info.machine, Machine::host());
    assert_eq!((info.entry, info.phoff, info.phnum, info.phentsize), (0x100, PHOFF, 6, 56));
    assert_eq!(info.segments, decode(&b).expect("decodes").segments, "the same PT_LOADs");
    assert_eq!((info.start(), info.end()), (0, 0x3000));
    assert_eq!(info.interp, None);
    assert_eq!(info.stack, Some(GnuStack { index: 5, flags: RW, memsz: 0 }));
    assert_eq!(info.stack.and_then(|s| s.size()), None, "p_memsz 0 asks for no size");
}

/// What only the relocating preparer cannot run is loaded as it is: an
/// interpreter, an executable stack, a shared library, an entry point
/// outside the text.
#[test]
fn as_is_takes_what_relocating_refuses() {
    let mut s = static_pie();
    s.phdrs.push(p(elf::PT_INTERP, elf::PF_R, 0x1700, 0, 0x10, 0x10, 1));
    s.phdrs[5] = p(elf::PT_GNU_STACK, RW | elf::PF_X, 0, 0, 0, 0x40000, 16);
    let mut b = build(&s);
    b[0x1700..0x170b].copy_from_slice(b"/lib/ld.so\0");
    assert_eq!(check(&b), Err(ElfError::Dynamic { index: 6, interp: "/lib/ld.so".into() }));
    let info = decode_as_is(&b, b.len() as u64).expect("an interpreter and an executable stack");
    assert_eq!(info.interp, Some(6));
    let stack = info.stack.expect("PT_GNU_STACK");
    assert!(stack.executable());
    assert_eq!(stack.size(), Some(0x40000));

    let mut s = static_pie();
    s.phdrs[2].filesz = 0x40;
    s.phdrs[2].memsz = 0x40;
    s.dynamic = vec![(u64::from(elf::DT_NEEDED), 1), (u64::from(elf::DT_FLAGS_1), 0)];
    let mut b = build(&s);
    assert!(matches!(check(&b), Err(ElfError::SharedLibrary { .. })), "{:?}", check(&b));
    assert!(decode_as_is(&b, b.len() as u64).is_ok(), "a shared library");
    b[0x10] = elf::ET_EXEC as u8;
    b[0x18..0x20].copy_from_slice(&0x5000u64.to_le_bytes());
    let err = check(&b).expect_err("e_entry 0x5000 is in no executable PT_LOAD");
    assert!(matches!(err, ElfError::BadField { field: "e_entry", .. }), "{err:?}");
    assert_eq!(decode_as_is(&b, b.len() as u64).map(|i| i.entry), Ok(0x5000));
}

/// The same checks of the headers and the layout, with the same errors.
#[test]
fn as_is_keeps_the_checks() {
    let as_is = |s: &Spec| {
        let b = build(s);
        decode_as_is(&b, b.len() as u64).map(drop)
    };
    let mut s = static_pie();
    s.phdrs[0].memsz = 0x2800;
    assert_eq!(as_is(&s), check_spec(&s), "overlapping PT_LOADs");
    assert!(matches!(as_is(&s), Err(ElfError::BadSegment { index: 1, field: "p_vaddr", .. })));
    let mut s = static_pie();
    s.phdrs[1].memsz = 0x100;
    assert_eq!(as_is(&s), check_spec(&s), "p_filesz > p_memsz");
    let mut s = static_pie();
    s.machine = elf::EM_RISCV;
    assert!(matches!(as_is(&s), Err(ElfError::Machine { machine: elf::EM_RISCV, .. })));
    let mut s = static_pie();
    s.phdrs.retain(|p| p.ptype != elf::PT_LOAD);
    assert!(matches!(as_is(&s), Err(ElfError::BadField { field: "e_phnum", why: "no PT_LOAD segments", .. })));
    assert_eq!(decode_as_is(b"\x7fELF\x01\x01", 6), Err(ElfError::Class { class: 1 }));
}

/// The start of a file is enough when it holds the program headers; the
/// segments' file bytes are checked against the whole file's length.
#[test]
fn as_is_reads_the_head_of_a_longer_file() {
    let b = build(&static_pie());
    let head = &b[..0x200];
    assert_eq!(decode_as_is(head, LEN as u64), decode_as_is(&b, LEN as u64));
    let err = decode_as_is(head, 0x200).expect_err("PT_LOADs past the end of the file");
    assert!(matches!(err, ElfError::BadSegment { index: 0, field: "p_offset + p_filesz", .. }), "{err:?}");
    let err = decode_as_is(&b[..0x100], LEN as u64).expect_err("the head lacks the program headers");
    assert!(matches!(err, ElfError::Truncated { what: "the program headers", start: PHOFF, .. }), "{err:?}");
}
