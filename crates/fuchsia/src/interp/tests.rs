//! Tests of the as-is load layout (with the headers as the core's decoder
//! reads them) and the interpreter key, on ELF files built in memory.

use zygote_core::elf::Machine;
use zygote_core::elf::abi::{ET_DYN, PF_R, PF_W, PF_X, PT_GNU_STACK, PT_INTERP, PT_LOAD};

use std::path::Path;
use std::time::Instant;

use zygote_core::image::FileIdentity;

use super::*;

pub(crate) const RX: u32 = PF_R | PF_X;
pub(crate) const RW: u32 = PF_R | PF_W;

/// (type, flags, offset, vaddr, filesz, memsz)
type Ph = (u32, u32, u64, u64, u64, u64);

/// An ELF64 ET_DYN for this host of `len` bytes with program headers at
/// 64, entry `entry`, and `tail` written at 0x800.
pub(crate) fn elf(entry: u64, phs: &[Ph], len: usize, tail: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; len];
    b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    b[0x10..0x12].copy_from_slice(&ET_DYN.to_le_bytes());
    b[0x12..0x14].copy_from_slice(&Machine::host().em().to_le_bytes());
    b[0x18..0x20].copy_from_slice(&entry.to_le_bytes());
    b[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
    b[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
    b[0x38..0x3a].copy_from_slice(&(phs.len() as u16).to_le_bytes());
    for (i, &(t, f, off, va, fs, ms)) in phs.iter().enumerate() {
        let at = 64 + 56 * i;
        b[at..at + 4].copy_from_slice(&t.to_le_bytes());
        b[at + 4..at + 8].copy_from_slice(&f.to_le_bytes());
        for (k, v) in [(8, off), (16, va), (24, va), (32, fs), (40, ms)] {
            b[at + k..at + k + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    b[0x800..0x800 + tail.len()].copy_from_slice(tail);
    b
}

pub(crate) fn program() -> Vec<u8> {
    let mut data = elf(
        0x1010,
        &[
            (PT_INTERP, PF_R, 0x800, 0x800, 9, 9),
            (PT_LOAD, RX, 0, 0, 0x900, 0x900),
            (PT_LOAD, RW, 0x1a00, 0x2a00, 0x100, 0x2000),
            (PT_LOAD, RW, 0, 0x6000, 0, 0x1000),
            (PT_GNU_STACK, RW, 0, 0, 0, 0x40000),
        ],
        0x1b00,
        b"ld.so.1\0\0",
    );
    data[0x1a00..0x1b00].fill(0xdd);
    data
}

/// What decoding an ELF file as it is gives the interpreter's loading.
fn as_is(data: &[u8]) -> Result<AsIsInfo, ElfError> {
    decode_as_is(data, data.len() as u64)
}

#[test]
fn reads_loads_interpreter_and_stack() {
    let h = as_is(&program()).expect("headers");
    assert_eq!(h.entry, 0x1010);
    assert_eq!(h.interp, Some(0));
    assert_eq!(h.stack.and_then(|s| s.size()), Some(0x40000));
    let loads: Vec<_> = h.segments.iter().map(|l| (l.index, l.vaddr)).collect();
    assert_eq!(loads, [(1, 0), (2, 0x2a00), (3, 0x6000)]);
    assert_eq!((h.start(), h.end()), (0, 0x7000));
}

#[test]
fn refuses_bad_headers() {
    assert_eq!(as_is(b"\x7fELF\x01\x01"), Err(ElfError::Class { class: 1 }));
    let mut short = program();
    short[0x38] = 200;
    assert!(matches!(as_is(&short), Err(ElfError::Truncated { what: "the program headers", .. })));
    let overlap = elf(0, &[(PT_LOAD, RX, 0, 0, 0x1000, 0x1800), (PT_LOAD, RW, 0x1000, 0x1000, 8, 8)], 0x1100, b"");
    assert!(matches!(as_is(&overlap), Err(ElfError::BadSegment { index: 1, field: "p_vaddr", .. })));
    let incongruent = elf(0, &[(PT_LOAD, RX, 0x10, 0x1000, 8, 8)], 0x900, b"");
    assert!(matches!(as_is(&incongruent), Err(ElfError::BadSegment { index: 0, field: "p_vaddr", .. })));
    let none = elf(0, &[(PT_GNU_STACK, RW, 0, 0, 0, 0)], 0x900, b"");
    assert!(matches!(as_is(&none), Err(ElfError::BadField { why: "no PT_LOAD segments", .. })));
}

#[test]
fn loads_as_is_with_the_partial_page_zeroed_in_the_copy() {
    let data = program();
    let h = as_is(&data).expect("headers");
    let bias = 0x10_0000;
    let (regions, copies) = load_regions(&h, &data, bias).expect("layout");
    let got: Vec<_> = regions.iter().map(|r| (r.vaddr - bias, r.len, r.kind)).collect();
    assert_eq!(
        got,
        [
            (0, 0x1000, RegionKind::File { file: 0, offset: 0 }),
            (0x2000, 0x1000, RegionKind::Sealed { object: 0, offset: 0 }),
            (0x3000, 0x2000, RegionKind::Zero),
            (0x6000, 0x1000, RegionKind::Zero),
        ]
    );
    assert_eq!(copies.len(), 1);
    let copy = &copies[0];
    assert_eq!(copy.len(), 0x1000);
    assert!(copy[..0xa00].iter().all(|&b| b == 0), "before p_vaddr in the page");
    assert!(copy[0xa00..0xb00].iter().all(|&b| b == 0xdd), "the file bytes");
    assert!(copy[0xb00..].iter().all(|&b| b == 0), "past p_filesz: zeroed ahead of time");
    assert_eq!(regions[1].prot, h.segments[1].prot());
}

#[test]
fn file_bytes_must_be_in_the_file() {
    let data = elf(0, &[(PT_LOAD, RW, 0x800, 0x800, 0x1000, 0x1000)], 0x900, b"");
    let err = as_is(&data).expect_err("file bytes past the end");
    assert!(matches!(err, ElfError::BadSegment { index: 0, field: "p_offset + p_filesz", .. }), "{err:?}");
    // Only the head of a longer file was decoded: laying out the loads with
    // what was read finds the bytes missing.
    let h = decode_as_is(&data, 0x1800).expect("headers");
    let (start, end, len) = (0x800, 0x1800, 0x900);
    let what = "a writable PT_LOAD's file bytes";
    assert_eq!(load_regions(&h, &data, 0), Err(ElfError::Truncated { what, start, end, len }));
}

#[test]
fn the_key_covers_program_config_and_every_loaded_object() {
    let program = ContentHash([1; 32]);
    let ld = ("ld.so.1".to_string(), ContentHash([2; 32]));
    let base = LoaderAnswers { config: None, objects: vec![ld.clone()] };
    let k = interp_key(&program, &base);
    assert_eq!(k.preparer, INTERP_V1);
    assert_eq!(k, interp_key(&program, &base.clone()), "deterministic");
    let variants = [
        interp_key(&ContentHash([9; 32]), &base),
        interp_key(&program, &LoaderAnswers { config: Some(String::new()), ..base.clone() }),
        interp_key(&program, &LoaderAnswers { config: Some("asan".into()), ..base.clone() }),
        interp_key(&program, &LoaderAnswers { config: None, objects: vec![("ld.so.1".into(), ContentHash([3; 32]))] }),
        interp_key(&program, &LoaderAnswers { config: None, objects: vec![("ld.so.2".into(), ContentHash([2; 32]))] }),
        interp_key(&program, &LoaderAnswers { config: None, objects: vec![ld.clone(), ld] }),
    ];
    for (i, v) in variants.iter().enumerate() {
        assert_ne!(*v, k, "variant {i}");
        for (j, w) in variants.iter().enumerate().skip(i + 1) {
            assert_ne!(v, w, "variants {i} and {j}");
        }
    }
}

/// A kernel of byte vectors, to build interpreter images on any host.
#[derive(Debug)]
struct Mem;

#[derive(Debug)]
struct MemObject(Vec<u8>, String);

impl zygote_core::kernel::SealedObject for MemObject {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

impl Kernel for Mem {
    type Object = MemObject;
    type File = ();
    fn seal(name: &str, bytes: &[u8]) -> std::io::Result<MemObject> {
        Ok(MemObject(bytes.to_vec(), name.to_string()))
    }
    fn random_u64() -> std::io::Result<u64> {
        Ok(7)
    }
    fn identify(_: &()) -> std::io::Result<FileIdentity> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn identify_path(_: &Path) -> std::io::Result<FileIdentity> {
        Err(std::io::ErrorKind::Unsupported.into())
    }
    fn read_at(_: &(), _: &mut [u8], _: u64) -> std::io::Result<usize> {
        Ok(0)
    }
}

#[test]
fn prepares_an_interpreter_image() {
    let data = program();
    let key = interp_key(&ContentHash([1; 32]), &LoaderAnswers::default());
    let identity =
        FileIdentity { dev: 0, ino: 1, size: data.len() as u64, mtime: (0, 0), ctime: (0, 0), mode: 0o100755 };
    let bias = 0x5a00_0000_0000;
    let p = |data| Program { path: Path::new("ld.so.1"), file: (), identity, data, key, started: Instant::now() };
    let image = load_as_is::<Mem>(p(&data), bias, ProgramKind::Dynamic).expect("image");
    assert_eq!(image.kind(), ProgramKind::Dynamic);
    assert_eq!(image.entry().pc, bias + 0x1010);
    assert_eq!(image.load_bias(), bias);
    assert_eq!(image.regions().len(), 4);
    assert_eq!(image.objects().len(), 1);
    let o = &image.objects()[0];
    assert_eq!(o.0.len(), 0x1000);
    assert!(o.1.starts_with("zyg:") && o.1.ends_with(":ld2") && o.1.len() <= 31, "{}", o.1);
    // The mapping policy takes it: the interpreter relocates itself, so its
    // data is a per-process child and nothing is shared read-only.
    let plan = zygote_core::vmar::plan(image.regions(), zygote_core::vmar::Relro::AsSegment).expect("plan");
    assert_eq!(plan.base, bias);
    assert!(matches!(plan.steps[1].source, zygote_core::vmar::Source::SealedChild { object: 0, .. }));
    let bad = elf(0, &[(PT_LOAD, RW, 0x800, 0x800, 0x1000, 0x1000)], 0x900, b"");
    let err = load_as_is::<Mem>(p(&bad), bias, ProgramKind::Dynamic).unwrap_err();
    assert!(err.to_string().contains("ld.so.1: the interpreter: program header 0"), "{err}");
}

/// An interpreter: an ET_DYN without PT_INTERP, `tag` in its data.
pub(crate) fn interpreter(tag: u8) -> Vec<u8> {
    let mut data =
        elf(0x1010, &[(PT_LOAD, RX, 0, 0, 0x900, 0x900), (PT_LOAD, RW, 0x1a00, 0x2a00, 0x100, 0x2000)], 0x1b00, b"");
    data[0x1a00..0x1b00].fill(tag);
    data
}

#[test]
fn the_interpreter_is_named_by_pt_interp() {
    let data = program();
    let h = as_is(&data).expect("headers");
    let read = |off: u64, len: usize| Ok(data[off as usize..off as usize + len].to_vec());
    assert_eq!(interp_name(Path::new("p"), &data, &h, read).expect("name"), Some("ld.so.1".into()));
    let ld = interpreter(1);
    let none = as_is(&ld).expect("headers");
    assert_eq!(interp_name(Path::new("ld"), &ld, &none, |_, _| unreachable!()).expect("none"), None);
    let empty = |_: u64, _: usize| Ok(vec![0u8; 9]);
    let e = interp_name(Path::new("p"), &data, &h, empty).unwrap_err();
    assert!(e.to_string().contains("p: the PT_INTERP name is empty"), "{e}");
    let failed = |_: u64, _: usize| Err(std::io::ErrorKind::UnexpectedEof.into());
    assert!(matches!(interp_name(Path::new("p"), &data, &h, failed), Err(InterpError::Name { .. })));
    assert_eq!(elf_type(&data), Some(ET_DYN));
    assert_eq!(elf_type(b"short"), None);
}

#[test]
fn a_random_bias_keeps_the_image_in_the_window() {
    let h = as_is(&program()).expect("headers");
    let (lo, hi) = relocate::BIAS_WINDOW;
    for r in [0, 1, 0x1234_5678, u64::MAX] {
        let bias = random_bias(&h, r);
        assert_eq!(bias % PAGE_SIZE, 0);
        assert!(bias + h.start() >= lo && bias + h.end() <= hi, "{bias:#x}");
    }
}
