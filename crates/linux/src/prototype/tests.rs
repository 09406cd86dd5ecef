//! Unit tests of the prototype preparer's pure stages, on recorded `/proc`
//! text and stack memory (and real memfds for sealing).

use super::*;
use zygote_plan::{PROT_EXEC, PROT_READ, PROT_WRITE};

/// /proc/PID/maps of a dynamically linked program, as the kernel prints it
/// (name column padded; anonymous lines end in a space), plus a line that
/// is not one.
const MAPS: &str = "\
560e26d44000-560e26d46000 r--p 00000000 fe:00 247030                     /usr/bin/cat
560e26d46000-560e26d4b000 r-xp 00002000 fe:00 247030                     /usr/bin/cat
560e26d4f000-560e26d50000 rw-p 0000a000 fe:00 247030                     /usr/bin/cat
560e35290000-560e352b1000 rw-p 00000000 00:00 0                          [heap]
7fcf75350000-7fcf75372000 rw-p 00000000 00:00 0 
7fcf755b8000-7fcf755bf000 r--s 00000000 fe:00 325745                     /usr/lib/x86_64-linux-gnu/gconv/gconv-modules.cache
7fcf755d0000-7fcf755d1000 ---p 00000000 00:00 0 
7fcf755e0000-7fcf755e2000 rw-p 00003000 08:11 99                         /tmp/a b (deleted)
this line is not a mapping
7fcf755c2000-7fcf755c6000 r--p 00000000 00:00 0                          [vvar]
7fcf755c8000-7fcf755ca000 r-xp 00000000 00:00 0                          [vdso]
7ffd5f0e9000-7ffd5f10a000 rw-p 00000000 00:00 0                          [stack]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
";

fn vma(start: u64, end: u64, prot: u32, name: &str) -> Vma {
    Vma { start, end, prot, shared: false, offset: 0, dev: (0, 0), inode: 0, name: name.into() }
}

#[test]
fn parse_maps_reads_every_field() {
    let v = parse_maps(MAPS);
    assert_eq!(v.len(), 12, "the malformed line is skipped: {v:#?}");
    assert_eq!(
        v[1],
        Vma {
            start: 0x560e_26d4_6000,
            end: 0x560e_26d4_b000,
            prot: PROT_READ | PROT_EXEC,
            shared: false,
            offset: 0x2000,
            dev: (0xfe, 0),
            inode: 247_030,
            name: "/usr/bin/cat".into(),
        }
    );
    assert_eq!((v[2].prot, v[2].offset), (PROT_READ | PROT_WRITE, 0xa000));
    assert_eq!(v[3].name, "[heap]");
    assert_eq!(v[4], vma(0x7fcf_7535_0000, 0x7fcf_7537_2000, PROT_READ | PROT_WRITE, ""));
    assert!(v[5].shared && v[5].prot == PROT_READ, "{:?}", v[5]);
    assert_eq!(v[6].prot, 0, "---p");
    assert_eq!((v[7].dev, v[7].inode, v[7].name.as_str()), ((8, 0x11), 99, "/tmp/a b (deleted)"));
    let names: Vec<&str> = v[8..].iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["[vvar]", "[vdso]", "[stack]", "[vsyscall]"]);
    assert_eq!((v[11].start, v[11].prot), (0xffff_ffff_ff60_0000, PROT_EXEC));
}

#[test]
fn loader_environment() {
    for kv in ["LD_PRELOAD=/x.so", "LD_BIND_NOW=1", "GLIBC_TUNABLES=glibc.malloc.check=3", "MALLOC_ARENA_MAX=2"] {
        assert!(is_loader_env(kv.as_bytes()), "{kv}");
    }
    for kv in ["PATH=/bin", "GLIBC_TUNABLES", "XLD_PRELOAD=1", "ld_preload=1", "HOME=/LD_", ""] {
        assert!(!is_loader_env(kv.as_bytes()), "{kv}");
    }
}

#[test]
fn stat_fields_after_the_comm() {
    // A comm with spaces and a parenthesis does not shift the fields.
    let stat = "42 (a) b) S 1 42 43 5 -1";
    assert_eq!((stat_field(stat, 4), stat_field(stat, 5), stat_field(stat, 7)), (1, 42, 5));
    assert_eq!(stat_field(stat, 8), 0, "unparsable (-1) reads as 0");
    assert_eq!(stat_field(stat, 30), 0, "missing reads as 0");
}

const STACK_LO: u64 = 0x7ffd_5f0e_9000;
const STACK_HI: u64 = 0x7ffd_5f10_a000;

/// A recorded initial stack: argc 2, argv, envp (2), auxv, strings.
/// Returns (sp, words at sp).
fn recorded_stack() -> (u64, Vec<u64>) {
    let sp = STACK_HI - 0x400;
    let strings = STACK_HI - 0x100;
    let words = vec![
        2,                // argc
        strings,          // argv[0] = "/usr/bin/cat"
        strings + 13,     // argv[1]
        0,                //
        strings + 20,     // envp[0]
        strings + 30,     // envp[1]
        0,                //
        AT_PHDR,          // auxv
        0x560e_26d4_4040, //
        31,               // AT_EXECFN
        strings + 40,     //
        0,                // AT_NULL
        0,
    ];
    (sp, words)
}

fn read_recorded(sp: u64, words: &[u64]) -> impl Fn(u64) -> Result<u64, u64> + '_ {
    move |addr| {
        let i = addr.checked_sub(sp).filter(|o| o % 8 == 0).ok_or(addr)? / 8;
        words.get(i as usize).copied().ok_or(addr)
    }
}

#[test]
fn walk_stack_follows_argv_and_envp() {
    let (sp, words) = recorded_stack();
    let w = walk_stack(sp, b"/usr/bin/cat", read_recorded(sp, &words)).unwrap();
    let strings = STACK_HI - 0x100;
    assert_eq!(w, StackWalk { argv: sp + 8, envp: sp + 32, auxv: sp + 56, argv0: strings, argv0_base: strings + 9 });
    let w = walk_stack(sp, b"cat", read_recorded(sp, &words)).unwrap();
    assert_eq!(w.argv0_base, strings, "no slash: the basename is argv[0]");
    // An envp without its NULL runs off the recorded words: the read error.
    let err = walk_stack(sp, b"cat", read_recorded(sp, &words[..6])).unwrap_err();
    assert_eq!(err, sp + 48);
}

fn stack_info() -> StackInfo {
    let (sp, words) = recorded_stack();
    let walk = walk_stack(sp, b"/usr/bin/cat", read_recorded(sp, &words)).unwrap();
    let stack = vma(STACK_LO, STACK_HI, PROT_READ | PROT_WRITE, "[stack]");
    StackInfo::new(&stack, sp, walk, &[(AT_PHDR, 0x560e_26d4_4040), (31, STACK_HI - 0x100 + 40)])
}

#[test]
fn classify_stack_pointers() {
    let si = stack_info();
    let sp = STACK_HI - 0x400;
    let strings = STACK_HI - 0x100;
    assert_eq!(si.classify(sp), Some((FixupKind::StackEnd, 0)));
    assert_eq!(si.classify(sp + 8), Some((FixupKind::Argv, 0)));
    assert_eq!(si.classify(sp + 32), Some((FixupKind::Envp, 0)));
    assert_eq!(si.classify(sp + 56), Some((FixupKind::Auxv, 0)));
    assert_eq!(si.classify(strings), Some((FixupKind::Argv0, 0)));
    assert_eq!(si.classify(strings + 9), Some((FixupKind::Argv0Base, 0)));
    assert_eq!(si.classify(strings + 40), Some((FixupKind::AuxVal, 31)));
    assert_eq!(si.classify(sp + 16), None, "a stack address nobody names");
    assert_eq!(si.classify(0x560e_26d4_4040), None, "an auxv value outside the stack");
    assert_eq!(si.classify(STACK_HI), None);
}

fn captured(start: u64, bytes: Option<Vec<u8>>) -> Captured {
    let len = bytes.as_ref().map_or(0x1000, |b| b.len() as u64);
    Captured { vma: vma(start, start + len, PROT_READ | PROT_WRITE, ""), bytes, file: None }
}

fn le_words(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn fixups_in_recorded_memory() {
    let sp = STACK_HI - 0x400;
    // ld.so's data: __libc_stack_end, a dead stack pointer, environ, a
    // non-pointer, _dl_argv; then 32-bit words.
    let data = le_words(&[sp, sp + 16, sp + 32, 0x1234, sp + 8, 0x0000_0002_0000_0001]);
    let caps = vec![captured(0x1000, None), captured(0x7000, Some(data)), captured(0x9000, None)];
    let argc_slots = [0x7028, 0x9000, 0x7030, 0x702e];
    let (fixups, unclassified) = find_fixups(&caps, Some(&stack_info()), &argc_slots);
    let f = |addr, kind| Fixup { mapping: 1, addr, kind, extra: 0 };
    assert_eq!(
        fixups,
        vec![
            f(0x7000, FixupKind::StackEnd),
            f(0x7010, FixupKind::Envp),
            f(0x7020, FixupKind::Argv),
            f(0x7028, FixupKind::Argc32),
        ]
    );
    assert_eq!(unclassified, 1);
    // Without a stack mapping only the argc copies are fixed.
    let (fixups, unclassified) = find_fixups(&caps, None, &[0x7028]);
    assert_eq!((fixups, unclassified), (vec![f(0x7028, FixupKind::Argc32)], 0));
}

#[test]
fn argc_words_and_layout() {
    let ours = [1u32, 1, 7, 1].iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    let theirs = [2u32, 1, 8, 2].iter().flat_map(|w| w.to_le_bytes()).collect::<Vec<u8>>();
    assert_eq!(argc_words(0x5000, &ours, &theirs), vec![0x5000, 0x500c]);
    assert_eq!(argc_words(0x5000, &ours[..6], &theirs[..6]), vec![0x5000], "whole words only");

    let a = parse_maps(MAPS);
    let mut b = a.clone();
    let stack = b.iter_mut().find(|v| v.name == "[stack]").unwrap();
    stack.start -= 0x1000;
    assert!(same_layout(&a, &b), "the stack may differ");
    b[3].end += 0x1000;
    assert!(!same_layout(&a, &b), "the heap may not");
    assert!(!same_layout(&a, &a[1..]));
}

#[test]
fn seal_regions_and_protects() {
    let mut file = captured(0x1000, None);
    file.file = Some(1);
    file.vma.prot = PROT_READ | PROT_EXEC;
    file.vma.offset = 0x2000;
    let mut relro = captured(0x4000, Some(vec![7; 0x1000]));
    relro.vma.prot = PROT_READ;
    let data = captured(0x6000, Some(vec![9; 0x2000]));
    let bss = captured(0x9000, None);
    let caps = vec![file, relro, data, bss];
    let fixups = [Fixup { mapping: 1, addr: 0x4008, kind: FixupKind::Argv, extra: 0 }];
    let Sealed { objects, regions, protects } = seal(Path::new("/x"), &caps, &fixups).unwrap();
    assert_eq!(objects.iter().map(|o| o.len()).collect::<Vec<_>>(), vec![0x1000, 0x2000]);
    let got: Vec<_> = regions.iter().map(|r| (r.vaddr, r.len, r.prot, r.kind, r.segment)).collect();
    assert_eq!(
        got,
        vec![
            (0x1000, 0x1000, PROT_READ | PROT_EXEC, RegionKind::File { file: 1, offset: 0x2000 }, 0),
            (0x4000, 0x1000, PROT_READ | PROT_WRITE, RegionKind::Sealed { object: 0, offset: 0 }, 1),
            (0x6000, 0x2000, PROT_READ | PROT_WRITE, RegionKind::Sealed { object: 1, offset: 0 }, 2),
            (0x9000, 0x1000, PROT_READ | PROT_WRITE, RegionKind::Zero, 3),
        ]
    );
    let protect = RestoreOp::Protect { addr: 0x4000, len: 0x1000, prot: PROT_READ };
    assert_eq!(protects, vec![protect], "write access taken back after the fixup");
}

#[test]
fn restore_ops_in_order() {
    // /proc/PID/stat: field n (from 4 on) holds n * 0x1000.
    let stat = format!("7 (proto) t {}", (4..=52).map(|n| (n * 0x1000).to_string()).collect::<Vec<_>>().join(" "));
    let sys = |nr, args: [u64; 6], ret| SyscallRecord { nr, args, ret };
    let syscalls = [
        sys(SYS_BRK, [0; 6], 47 * 0x1000),
        sys(SYS_SET_TID_ADDRESS, [0; 6], 7),
        sys(SYS_SET_TID_ADDRESS, [0xa0, 0, 0, 0, 0, 0], 7),
        sys(SYS_SET_ROBUST_LIST, [0xb0, 24, 0, 0, 0, 0], 0),
        sys(SYS_SET_ROBUST_LIST, [0xb8, 24, 0, 0, 0, 0], -22),
        sys(SYS_RSEQ, [0xc0, 32, 1, 0x53053053, 0, 0], 0),
        sys(SYS_RSEQ, [0xc8, 32, 0, 0x53053053, 0, 0], 0),
        sys(SYS_BRK, [0; 6], 47 * 0x1000 + 0x21000),
        sys(SYS_BRK, [0; 6], -12),
    ];
    let regs = EntryRegs { rip: 1, rsp: 2, rdx: 3, fs_base: 0x7f00_0000_0740 };
    let fixups = [Fixup { mapping: 0, addr: 0x7000, kind: FixupKind::AuxVal, extra: 31 }];
    let protect = RestoreOp::Protect { addr: 0x4000, len: 0x1000, prot: 1 };
    let ops = restore_ops(regs, &syscalls, &stat, &fixups, vec![protect]);
    assert_eq!(
        ops,
        vec![
            RestoreOp::Fixup { addr: 0x7000, kind: FixupKind::AuxVal, param: 31 },
            protect,
            RestoreOp::SetFs { fs_base: 0x7f00_0000_0740 },
            RestoreOp::SetTidAddress { addr: 0xa0 },
            RestoreOp::RobustList { head: 0xb0, len: 24 },
            RestoreOp::Rseq { addr: 0xc8, len: 32, flags: 0, signature: 0x53053053 },
            RestoreOp::Canary { addr: 0x7f00_0000_0768 },
            RestoreOp::MmLayout {
                start_code: 26 * 0x1000,
                end_code: 27 * 0x1000,
                start_data: 45 * 0x1000,
                end_data: 46 * 0x1000
            },
            RestoreOp::MmBrk { start_brk: 47 * 0x1000, brk: 47 * 0x1000 + 0x21000 },
        ]
    );
    // No fs_base: no canary; a brk below start_brk does not lower it.
    let regs = EntryRegs { fs_base: 0, ..regs };
    let ops = restore_ops(regs, &[sys(SYS_BRK, [0; 6], 0x10)], &stat, &[], Vec::new());
    assert!(!ops.iter().any(|o| o.kind() == zygote_plan::OpKind::Canary));
    assert_eq!(ops.last(), Some(&RestoreOp::MmBrk { start_brk: 47 * 0x1000, brk: 47 * 0x1000 }));
}

/// A 64-bit ELF file with one PT_LOAD (the whole file, at 0x400000) and a
/// PT_DYNAMIC whose string table holds `strings`, followed by `rest`.
fn elf_with_dynstr(strings: &[u8], rest: &[u8]) -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let (phoff, dynoff) = (64u64, 64 + 2 * 56);
    let stroff = dynoff + 4 * 16;
    let len = stroff + (strings.len() + rest.len()) as u64;
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(b"\x7fELF");
    (f[4], f[5], f[6]) = (2, 1, 1);
    f[16] = 3; // ET_DYN
    f[18] = 62; // EM_X86_64
    f[32..40].copy_from_slice(&phoff.to_le_bytes());
    f[52..54].copy_from_slice(&64u16.to_le_bytes());
    f[54..56].copy_from_slice(&56u16.to_le_bytes());
    f[56..58].copy_from_slice(&2u16.to_le_bytes());
    let phdr = |f: &mut Vec<u8>, kind: u32, off: u64, size: u64| {
        f.extend(kind.to_le_bytes());
        f.extend(4u32.to_le_bytes());
        for word in [off, BASE + off, BASE + off, size, size, 8] {
            f.extend(word.to_le_bytes());
        }
    };
    phdr(&mut f, object::elf::PT_LOAD, 0, len);
    phdr(&mut f, object::elf::PT_DYNAMIC, dynoff, 4 * 16);
    let dynamic = [
        (object::elf::DT_STRTAB, BASE + stroff),
        (object::elf::DT_STRSZ, strings.len() as u64),
        (object::elf::DT_RUNPATH, 1),
        (object::elf::DT_NULL, 0),
    ];
    for (tag, value) in dynamic {
        f.extend(u64::from(tag).to_le_bytes());
        f.extend(value.to_le_bytes());
    }
    f.extend(strings);
    f.extend(rest);
    f
}

#[test]
fn origin_is_found_in_the_dynamic_strings() {
    for runpath in [&b"\0$ORIGIN/lib\0"[..], b"\0/opt/x:${ORIGIN}/../lib\0", b"\0$ORIGIN\0"] {
        assert!(uses_origin(&elf_with_dynstr(runpath, b"")), "{}", String::from_utf8_lossy(runpath));
    }
    // Outside the string table (a message in .rodata) it is not the loader's.
    assert!(!uses_origin(&elf_with_dynstr(b"\0/usr/lib/x\0", b"use $ORIGIN or ${ORIGIN}\0")));
    assert!(!uses_origin(&elf_with_dynstr(b"\0$ORIGI\0", b"")));
    // A file whose table is not found is searched whole.
    assert!(uses_origin(b"not an ELF file, but $ORIGIN/lib"));
    assert!(!uses_origin(b"not an ELF file"));
    // The loader environment.
    let env = |kv: &[&str]| kv.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>();
    let uses = |kv: &[Vec<u8>]| env_uses_origin(&Environment { loader_env: kv, creds: None });
    assert!(uses(&env(&["LD_BIND_NOW=1", "LD_LIBRARY_PATH=/usr/lib:$ORIGIN/../lib"])));
    assert!(uses(&env(&["LD_PRELOAD=${ORIGIN}/p.so"])));
    assert!(!uses(&env(&["LD_LIBRARY_PATH=/usr/lib"])));
}

#[test]
fn the_origin_directory_is_part_of_the_key_only_when_given() {
    let env = Environment { loader_env: &[], creds: None };
    let machine = [7u8; 32];
    let key = |origin: Option<&[u8]>| super::key(ContentHash([1; 32]), (1, 2), origin, &env, &machine);
    assert_eq!(key(Some(b"/a")), key(Some(b"/a")));
    assert_ne!(key(Some(b"/a")), key(Some(b"/b")));
    assert_ne!(key(Some(b"/a")), key(None));
    assert_ne!(key(Some(b"")), key(None));
}

/// `$ORIGIN` is the directory of the file's own path: of the hard link it
/// was opened by, with symbolic links resolved.
#[test]
fn the_origin_directory_is_where_the_file_was_opened() {
    use std::os::unix::ffi::OsStringExt;
    let top = std::env::temp_dir().join(format!("zygote-origin-test-{}", std::process::id()));
    let (a, b, c) = (top.join("a"), top.join("b"), top.join("c"));
    for d in [&a, &b, &c] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(a.join("prog"), b"program").expect("write");
    std::fs::hard_link(a.join("prog"), b.join("prog")).expect("hard link");
    std::os::unix::fs::symlink("../b/prog", c.join("prog")).expect("symlink");
    let canonical = |d: &Path| std::fs::canonicalize(d).expect("canonical").into_os_string().into_vec();
    for (opened, dir) in [(&a, &a), (&b, &b), (&c, &b)] {
        let path = opened.join("prog");
        let file = std::fs::File::open(&path).expect("open");
        assert_eq!(origin_dir(&path, Some(file.as_fd())), canonical(dir), "{}", path.display());
        assert_eq!(origin_dir(&path, None), canonical(dir), "{} unopened", path.display());
    }
    assert_eq!(origin_dir(&top.join("missing"), None), b"");
    std::fs::remove_dir_all(&top).ok();
}
