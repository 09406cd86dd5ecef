//! The whole relocating preparer (`zygote_core::image::relocate::prepare`) on
//! arbitrary bytes, over an in-memory kernel: decoding, the load bias, the
//! segment copies, RELA/REL/RELR application and `.dynamic` patching, and the
//! region layout. An image it returns must be mappable: page-aligned,
//! non-overlapping regions in user space whose sealed parts lie inside their
//! objects.
#![no_main]

use std::io;
use std::path::Path;
use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use zygote_core::Kernel;
use zygote_core::elf::{PAGE_SIZE, ProgramKind, USER_TOP};
use zygote_core::image::relocate::{self, BIAS_WINDOW};
use zygote_core::image::{ContentHash, FileIdentity, ImageKey, RegionKind};
use zygote_core::kernel::SealedObject;

/// A kernel in memory: objects are byte vectors, randomness is fixed.
struct Mem;

#[derive(Debug)]
struct Object(Vec<u8>);

impl SealedObject for Object {
    fn len(&self) -> u64 {
        self.0.len() as u64
    }
}

const IDENTITY: FileIdentity = FileIdentity { dev: 1, ino: 2, size: 3, mtime: (4, 5), ctime: (6, 7), mode: 0o755 };

impl Kernel for Mem {
    type Object = Object;
    type File = ();

    fn seal(_name: &str, bytes: &[u8]) -> io::Result<Object> {
        Ok(Object(bytes.to_vec()))
    }
    fn random_u64() -> io::Result<u64> {
        Ok(0x9e37_79b9_7f4a_7c15)
    }
    fn identify(_file: &()) -> io::Result<FileIdentity> {
        Ok(IDENTITY)
    }
    fn identify_path(_path: &Path) -> io::Result<FileIdentity> {
        Ok(IDENTITY)
    }
    fn read_at(_file: &(), _buf: &mut [u8], _offset: u64) -> io::Result<usize> {
        Ok(0)
    }
}

fuzz_target!(|data: &[u8]| {
    let key = ImageKey::relocate(ContentHash([0; 32]));
    let image = match relocate::prepare::<Mem>(Path::new("fuzz"), (), IDENTITY, data, key, Instant::now()) {
        Ok(image) => image,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let bias = image.load_bias();
    match image.kind() {
        ProgramKind::Static => assert_eq!(bias, 0),
        ProgramKind::StaticPie => assert_eq!(bias % PAGE_SIZE, 0, "bias {bias:#x}"),
        ProgramKind::Dynamic => panic!("the relocating preparer made a dynamic image"),
    }
    let regions = image.regions();
    assert!(!regions.is_empty());
    for r in regions {
        assert!(r.len > 0 && r.vaddr % PAGE_SIZE == 0 && r.len % PAGE_SIZE == 0, "{r:?}");
        let end = r.vaddr.checked_add(r.len).expect("region end overflows");
        assert!(end <= USER_TOP, "{r:?} leaves user space (bias {bias:#x})");
        if image.kind() == ProgramKind::StaticPie {
            assert!(r.vaddr >= BIAS_WINDOW.0 && end <= BIAS_WINDOW.1, "{r:?} outside the bias window");
        }
        match r.kind {
            RegionKind::Sealed { object, offset } => {
                let obj = &image.objects()[object];
                assert!(
                    offset % PAGE_SIZE == 0 && offset + r.len <= obj.len(),
                    "{r:?} past its object ({:#x})",
                    obj.len()
                );
            }
            RegionKind::File { file, offset } => {
                assert_eq!(file, 0);
                assert_eq!(offset % PAGE_SIZE, 0, "{r:?}");
            }
            RegionKind::Zero => {}
        }
    }
    for w in regions.windows(2) {
        assert!(w[0].vaddr + w[0].len <= w[1].vaddr, "overlapping regions {:?} and {:?}", w[0], w[1]);
    }
    let e = image.entry();
    assert_eq!(e.pc, e.at_entry);
    assert!(regions.iter().any(|r| (r.vaddr..r.vaddr + r.len).contains(&e.pc)), "entry {:#x} is unmapped", e.pc);
    // A copy is a segment's file-backed pages: at most its bytes plus a page each side.
    for o in image.objects() {
        assert!(
            o.len() <= data.len() as u64 + 2 * PAGE_SIZE,
            "a {:#x}-byte object from a {:#x}-byte file",
            o.len(),
            data.len()
        );
    }
});
