//! `zygote_core::elf::decode` on arbitrary bytes: it must return an error or a
//! program whose facts hold up (sorted, non-overlapping PT_LOADs inside the
//! file and user space, an entry point in an executable segment), and every
//! lookup the preparer makes on it must stay in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zygote_core::elf::{self, PAGE_SIZE, SegmentKind, USER_TOP, page_down, page_up};

fuzz_target!(|data: &[u8]| {
    let info = match elf::decode(data) {
        Ok(info) => info,
        Err(e) => {
            // Every error renders (names the field and where it is).
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    assert!(!info.segments.is_empty());
    assert!(info.max_align >= PAGE_SIZE);
    for s in &info.segments {
        assert!(s.filesz <= s.memsz && s.memsz > 0, "{s:?}");
        assert!(s.vaddr + s.memsz <= USER_TOP, "{s:?}");
        assert!(s.filesz == 0 || s.offset + s.filesz <= data.len() as u64, "{s:?}");
        let _ = (s.prot(), s.kind());
        if s.kind() == SegmentKind::Constant {
            assert!(!s.writable());
        }
    }
    for w in info.segments.windows(2) {
        assert!(page_up(w[0].vaddr + w[0].memsz) <= page_down(w[1].vaddr), "{:?}", info.segments);
    }
    assert!(info.start() < info.end());
    assert!(info.segments.iter().any(|s| s.executable() && (s.vaddr..s.vaddr + s.memsz).contains(&info.entry)));
    // Every lookup relocation makes: a word at the entry point, at every
    // dynamic entry, at the TLS image and at the program headers.
    let mut probes = vec![(info.entry, 8), (info.phdr_vaddr, info.phnum * info.phentsize)];
    if let Some(t) = &info.tls {
        probes.push((t.vaddr, t.filesz));
    }
    if let Some(d) = &info.dynamic {
        probes.extend(d.entries.iter().flat_map(|e| [(e.vaddr, 16), (e.val, 8)]));
    }
    for (vaddr, len) in probes {
        if let Some(off) = info.file_offset(vaddr, len) {
            let end = off.checked_add(len).expect("file offset overflows");
            assert!(end <= data.len() as u64, "{vaddr:#x}+{len:#x} -> {off:#x} outside the file");
        }
    }
});
