//! Images over core's in-memory kernel and its real relocating preparer.

use super::*;
use zygote_core::test_kernel::{MemFile, MemKernel};

/// A static ET_EXEC for the host machine: text at 0x400000 (headers and
/// entry), data+bss at 0x401000; `tag` varies the text's bytes.
pub(crate) fn static_exec(tag: u8) -> Vec<u8> {
    let machine: u16 = if cfg!(target_arch = "aarch64") { 183 } else { 62 };
    let mut b = vec![0u8; 0x1100];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    put(0, b"\x7fELF\x02\x01\x01");
    put(0x10, &2u16.to_le_bytes()); // ET_EXEC
    put(0x12, &machine.to_le_bytes());
    put(0x14, &1u32.to_le_bytes());
    put(0x18, &0x40_0100u64.to_le_bytes());
    put(0x20, &64u64.to_le_bytes());
    put(0x34, &64u16.to_le_bytes());
    put(0x36, &56u16.to_le_bytes());
    put(0x38, &3u16.to_le_bytes());
    // (type, flags, offset, vaddr, filesz, memsz, align)
    let phdrs: [(u32, u32, u64, u64, u64, u64, u64); 3] = [
        (1, 5, 0, 0x40_0000, 0x1000, 0x1000, 0x1000),
        (1, 6, 0x1000, 0x40_1000, 0x100, 0x800, 0x1000),
        (0x6474_e551, 6, 0, 0, 0, 0, 16), // PT_GNU_STACK, not executable
    ];
    for (i, (t, f, off, va, fs, ms, al)) in phdrs.into_iter().enumerate() {
        let o = 64 + 56 * i;
        put(o, &t.to_le_bytes());
        put(o + 4, &f.to_le_bytes());
        for (k, v) in [off, va, va, fs, ms, al].into_iter().enumerate() {
            put(o + 8 + 8 * k, &v.to_le_bytes());
        }
    }
    put(0x100, &[tag; 16]);
    put(0x1000, &[tag; 0x100]);
    b
}

/// A file of these bytes with its own inode number.
pub(crate) fn file(bytes: &[u8], ino: u64) -> MemFile {
    let mut f = MemFile::regular(bytes);
    f.identity.ino = ino;
    f
}

pub(crate) fn dup(f: &MemFile) -> io::Result<MemFile> {
    Ok(MemFile { bytes: f.bytes.clone(), identity: f.identity })
}

pub(crate) fn images() -> Images<MemKernel, Relocating> {
    Images::new(CacheConfig { max_entries: 8, max_bytes: 1 << 20 }, Relocating, Box::new(dup))
}

#[test]
fn a_static_program_is_imaged_once_and_found_by_identity() {
    let im = images();
    let f = file(&static_exec(1), 10);
    let a = im.image(Path::new("prog"), &f).expect("image");
    assert!(a.fallback().is_none(), "{:?}", a.fallback());
    assert_eq!(a.kind(), ProgramKind::Static);
    assert_eq!(a.sealed_bytes(), 0x1000, "the data page is sealed");
    let b = im.image(Path::new("prog"), &f).expect("hit");
    assert!(Arc::ptr_eq(&a, &b));
    let s = im.stats();
    assert_eq!((s.entries, s.builds, s.misses, s.hits), (1, 1, 1, 1));

    // The same contents under another identity: read and hashed again,
    // but the same image.
    let c = im.image(Path::new("copy"), &file(&static_exec(1), 11)).expect("same contents");
    assert!(Arc::ptr_eq(&a, &c));
    assert_eq!(im.stats().builds, 1);
}

#[test]
fn what_cannot_be_imaged_is_a_remembered_refusal_not_an_error() {
    let im = images();
    let f = file(b"#!/bin/sh\necho not ELF\n", 20);
    let img = im.image(Path::new("script"), &f).expect("a refusal is an image");
    let why = img.fallback().expect("refused");
    assert!(why.contains("script") && why.contains("not an ELF"), "{why}");
    assert_eq!(img.files().len(), 1, "it holds the executable, to launch it plainly");
    let again = im.image(Path::new("script"), &f).expect("remembered");
    assert!(Arc::ptr_eq(&img, &again));
    assert_eq!(im.stats().builds, 1);
}

#[test]
fn a_file_that_cannot_be_read_or_duplicated_is_an_error_with_its_name() {
    let im = images();
    let mut dir = file(b"", 30);
    dir.identity.mode = 0o040755;
    let e = im.image(Path::new("/pkg/dir"), &dir).unwrap_err();
    assert!(matches!(e, ImagesError::Read { source: ReadError::NotRegular, .. }), "{e:?}");
    assert!(e.to_string().starts_with("/pkg/dir: reading"), "{e}");

    let no_dup: Images<MemKernel, Relocating> =
        Images::new(CacheConfig::default(), Relocating, Box::new(|_| Err(io::ErrorKind::PermissionDenied.into())));
    let e = no_dup.image(Path::new("p"), &file(&static_exec(2), 31)).unwrap_err();
    assert!(matches!(e, ImagesError::Duplicate { .. }), "{e:?}");
    assert_eq!(no_dup.stats().entries, 0, "a failed build caches nothing");
}

#[test]
fn evict_by_key_and_by_file() {
    let im = images();
    let one = file(&static_exec(1), 40);
    let two = file(&static_exec(2), 41);
    let a = im.image(Path::new("one"), &one).expect("image");
    im.image(Path::new("two"), &two).expect("image");
    assert_eq!(im.evict_key(&a.key().to_string()).expect("key"), 1);
    assert_eq!(im.evict_key(&a.key().to_string()).expect("key"), 0, "already gone");
    assert_eq!(im.stats().entries, 1);
    // By file: its identity is memoised, or it is read and hashed.
    assert_eq!(im.evict_file(Path::new("two"), &file(&static_exec(2), 99)).expect("file"), 1);
    assert_eq!(im.stats().entries, 0);
}

#[test]
fn keys_are_64_lowercase_hex_digits() {
    let h = ContentHash([0xab; 32]);
    assert_eq!(parse_key(&h.to_string()).expect("round trip"), h);
    for bad in ["", "ab", &"AB".repeat(32), &"g0".repeat(32), &"ab".repeat(33)] {
        assert!(matches!(parse_key(bad), Err(ImagesError::BadKey { .. })), "{bad:?}");
    }
}

/// A `fuchsia.ldsvc.Loader` of in-memory objects: what it was asked, and
/// its handle back.
pub(crate) struct FakeLoader {
    pub objects: Vec<(&'static str, Vec<u8>)>,
    pub asked: Vec<String>,
    pub handle: u32,
}

impl Loader<MemKernel, u32> for FakeLoader {
    fn config(&mut self, config: &str) -> Result<(), Status> {
        self.asked.push(format!("config {config}"));
        Ok(())
    }
    fn load_object(&mut self, name: &str) -> Result<MemFile, Status> {
        self.asked.push(name.to_string());
        let found = self.objects.iter().position(|(n, _)| *n == name).ok_or(Status::NOT_FOUND)?;
        // Other contents, another identity (as another VMO's koid).
        let bytes = &self.objects[found].1;
        Ok(file(bytes, 1000 + bytes.iter().map(|&b| u64::from(b)).sum::<u64>()))
    }
    fn into_handle(self: Box<Self>) -> Option<u32> {
        Some(self.handle)
    }
}

pub(crate) fn loader(ld: Vec<u8>) -> FakeLoader {
    FakeLoader { objects: vec![("ld.so.1", ld)], asked: Vec::new(), handle: 77 }
}

#[test]
fn a_pt_interp_program_is_the_image_of_the_interpreter_its_loader_gives() {
    use crate::interp::tests::{interpreter, program};
    let im = images();
    let exe = file(&program(), 50);
    let refused = im.image(Path::new("dyn"), &exe).expect("a refusal");
    assert!(refused.fallback().is_some());
    let mut ld = loader(interpreter(1));
    let img = im.loaded(Path::new("dyn"), &exe, Some(&mut ld)).expect("interpreter image");
    assert_eq!(ld.asked, ["ld.so.1"], "LoadObject of the PT_INTERP name, no Config");
    assert!(img.fallback().is_none(), "{:?}", img.fallback());
    assert_eq!((img.kind(), img.key().preparer), (ProgramKind::Dynamic, crate::interp::INTERP_V1));
    let hash = ContentHash::of(&program());
    let answers = LoaderAnswers { config: None, objects: vec![("ld.so.1".into(), ContentHash::of(&interpreter(1)))] };
    assert_eq!(*img.key(), interp_key(&hash, &answers));
    assert_eq!(img.files()[0].file.bytes, interpreter(1), "the image maps the interpreter");
    assert_eq!(img.sealed_bytes(), 0x1000, "its data page");

    let again = im.loaded(Path::new("dyn"), &exe, Some(&mut loader(interpreter(1)))).expect("hit");
    assert!(Arc::ptr_eq(&img, &again));
    let other = im.loaded(Path::new("dyn"), &exe, Some(&mut loader(interpreter(2)))).expect("another interpreter");
    assert_ne!(other.key(), img.key(), "the loader's answer is in the key");

    let mut none = FakeLoader { objects: Vec::new(), asked: Vec::new(), handle: 1 };
    let e = im.loaded(Path::new("dyn"), &exe, Some(&mut none)).unwrap_err();
    assert!(matches!(e, ImagesError::Loader { status: Status::NOT_FOUND, .. }), "{e:?}");
    let bad = im.loaded(Path::new("dyn"), &exe, Some(&mut loader(b"not ELF".to_vec()))).expect("a refusal");
    assert!(bad.fallback().is_some_and(|why| why.contains("the interpreter")), "{:?}", bad.fallback());
    let evicted = im.evict_file(Path::new("dyn"), &exe).expect("evict");
    assert_eq!(evicted, 4, "the refusal and the three interpreter images (one refused)");
    assert_eq!(im.stats().entries, 0);
    let e = im.loaded::<u32>(Path::new("dyn"), &exe, None).unwrap_err();
    assert!(matches!(e, ImagesError::NoLoader { ref name, .. } if name == "ld.so.1"), "{e:?}");
}

#[test]
fn a_refused_static_program_is_loaded_as_it_is() {
    let im = images();
    let mut exec_stack = static_exec(3);
    exec_stack[64 + 2 * 56 + 4] = 7; // PT_GNU_STACK RWX
    let f = file(&exec_stack, 60);
    assert!(im.image(Path::new("xs"), &f).expect("refusal").fallback().is_some());
    let img = im.loaded::<u32>(Path::new("xs"), &f, None).expect("as is");
    assert!(img.fallback().is_none(), "{:?}", img.fallback());
    assert_eq!((img.kind(), img.load_bias(), img.entry().pc), (ProgramKind::Static, 0, 0x40_0100));
    assert_eq!(img.key().preparer, AS_IS_V1);
    assert!(Arc::ptr_eq(&img, &im.loaded::<u32>(Path::new("xs"), &f, None).expect("hit")));

    let pie = crate::interp::tests::interpreter(4);
    let img = im.loaded::<u32>(Path::new("pie"), &file(&pie, 61), None).expect("as is");
    assert_eq!(img.kind(), ProgramKind::StaticPie);
    assert_ne!(img.load_bias(), 0, "an ET_DYN at a random bias");

    let text = im.loaded::<u32>(Path::new("txt"), &file(b"#!/bin/sh\n", 63), None).unwrap_err();
    assert!(text.to_string().starts_with("txt: "), "{text}");
}
