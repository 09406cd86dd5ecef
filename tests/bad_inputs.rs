//! Inputs zygote must refuse, through the CLI and the library: each is
//! rejected with an error naming the file (CLI: exit 126 with a message on
//! stderr; library: `Err` whose Display names the file), and rejecting them
//! leaks no file descriptors.
//!
//! Everything is in one test function on purpose: the fd count of this
//! process is compared before and after, so nothing may run concurrently.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use zygote_linux::SpawnRequest;

struct Bad {
    name: &'static str,
    path: PathBuf,
    /// Extra substrings the error must contain (besides the path).
    must_mention: Vec<&'static str>,
}

impl Bad {
    /// The error must also mention these (the contract: "names the file and the field").
    fn mentioning(mut self, words: &[&'static str]) -> Bad {
        self.must_mention.extend_from_slice(words);
        self
    }
}

fn patched(base: &Path, name: &'static str, f: impl FnOnce(&mut Vec<u8>)) -> Bad {
    let mut b = std::fs::read(base).expect("read base binary");
    let orig = b.clone();
    f(&mut b);
    assert!(b != orig, "{name}: the patch changed nothing");
    let path = build_dir().join(format!("bad-{name}"));
    write_file(&path, &b, 0o755);
    Bad { name, path, must_mention: vec![] }
}

/// A real 32-bit ELF executable, if the 32-bit assembler/linker work.
fn real_elf32() -> Option<PathBuf> {
    let s = build_dir().join("elf32.s");
    std::fs::write(&s, ".globl _start\n_start:\n mov $1,%eax\n xor %ebx,%ebx\n int $0x80\n").expect("write elf32.s");
    let o = build_dir().join("elf32.o");
    let exe = build_dir().join("bad-elf32");
    let ok = Command::new("as").arg("--32").arg(&s).arg("-o").arg(&o).status().is_ok_and(|st| st.success())
        && Command::new("ld")
            .args(["-m", "elf_i386"])
            .arg(&o)
            .arg("-o")
            .arg(&exe)
            .status()
            .is_ok_and(|st| st.success());
    ok.then_some(exe)
}

fn bad_inputs() -> Vec<Bad> {
    let spie = static_pie("cow.c");
    let static_exe = cc_cached(&c_src("cow.c"), "cow.static", &["-static", "-O2"], &[]);
    let mut v = Vec::new();

    let text = build_dir().join("bad-not-elf");
    write_file(&text, b"this is just text, not an ELF file\n", 0o755);
    v.push(Bad { name: "not-elf", path: text, must_mention: vec![] });

    match real_elf32() {
        Some(path) => {
            assert_eq!(std::fs::read(&path).expect("read elf32")[4], 1, "ELFCLASS32");
            v.push(Bad { name: "elf32", path, must_mention: vec!["EI_CLASS"] });
        }
        None => v.push(patched(&spie, "elf32-patched", |b| b[4] = 1).mentioning(&["EI_CLASS"])),
    }
    v.push(patched(&spie, "big-endian", |b| b[5] = 2).mentioning(&["EI_DATA"]));
    v.push(patched(&spie, "machine-aarch64", |b| wr_u16(b, 0x12, 183)).mentioning(&["e_machine"]));
    v.push(patched(&spie, "truncated-header", |b| b.truncate(40)));
    v.push(
        patched(&static_exe, "segment-past-eof", |b| {
            let half = b.len() / 2;
            b.truncate(half);
            let beyond = loads(b).iter().any(|p| p.p_offset + p.p_filesz > half as u64);
            assert!(beyond, "truncation left every segment inside the file");
        })
        .mentioning(&["p_offset"]),
    );
    v.push(
        patched(&spie, "filesz-gt-memsz", |b| {
            let mut p = *loads(b).iter().find(|p| p.p_filesz >= 2).expect("a PT_LOAD with file contents");
            p.p_memsz = p.p_filesz / 2;
            write_phdr(b, &p);
        })
        .mentioning(&["p_filesz", "p_memsz"]),
    );
    v.push(
        patched(&spie, "unsorted-loads", |b| {
            let l = loads(b);
            assert!(l.len() >= 2, "need two PT_LOADs");
            let (mut a, mut c) = (l[0], l[1]);
            std::mem::swap(&mut a.file_off, &mut c.file_off);
            write_phdr(b, &a);
            write_phdr(b, &c);
            let l2 = loads(b);
            assert!(l2[0].p_vaddr > l2[1].p_vaddr, "PT_LOADs not unsorted");
        })
        .mentioning(&["p_vaddr"]),
    );
    v.push(
        patched(&spie, "overlapping-loads", |b| {
            let l = loads(b);
            let (first, mut second) = (l[0], l[1]);
            // keep p_vaddr congruent to p_offset modulo the page size, so the
            // only defect is the overlap
            let v = first.p_vaddr + (second.p_vaddr & 0xfff);
            assert!(v < first.p_vaddr + first.p_memsz, "first PT_LOAD too small to overlap");
            second.p_vaddr = v;
            second.p_paddr = v;
            write_phdr(b, &second);
        })
        .mentioning(&["p_vaddr"]),
    );
    v.push(
        patched(&spie, "align-3", |b| {
            let mut p = loads(b)[0];
            p.p_align = 3;
            write_phdr(b, &p);
        })
        .mentioning(&["p_align"]),
    );
    v.push(
        patched(&spie, "memsz-2-pow-60", |b| {
            let mut p = *loads(b).last().expect("a PT_LOAD");
            p.p_memsz = 1 << 60;
            write_phdr(b, &p);
        })
        .mentioning(&["p_memsz"]),
    );

    let lib_c = build_dir().join("badlib.c");
    std::fs::write(&lib_c, "#include <stdio.h>\nint zt_f(void) { return puts(\"x\"); }\n").expect("write badlib.c");
    let so = cc(&lib_c, "bad-shared.so", &["-shared", "-fPIC"], &[]);
    v.push(Bad { name: "shared-library", path: so, must_mention: vec![] });

    // A shared library with an entry point is no bad input: the kernel runs
    // it, so zygote runs it by plain exec (tests/et_dyn.rs).

    let obj = cc(&c_src("cow.c"), "bad-object.o", &["-c"], &[]);
    write_file(&obj, &std::fs::read(&obj).expect("read .o"), 0o755);
    v.push(Bad { name: "relocatable-object", path: obj, must_mention: vec![] });

    // Dynamically linked programs were refused here until the prototype
    // preparer landed; they are now run (tests/dynamic_*.rs).
    v
}

#[test]
fn bad_inputs_are_refused_cleanly() {
    let good = static_pie("cow.c");
    let inputs = bad_inputs();
    sync();

    // Sanity: the unpatched binary works through both paths, so failures
    // below come from the defects.
    let out = zygote_run(&good, &[], &[], false);
    assert_eq!(out.code, 17, "unpatched cow.c via zygote run:\n{out}");

    let mut problems = Vec::new();
    for bad in &inputs {
        let p = bad.path.display().to_string();
        let out = zygote_run(&bad.path, &[], &[], false);
        let err = out.stderr_str();
        if out.code != 126 {
            problems.push(format!("CLI {}: expected exit 126, got {}\n{out}", bad.name, out.code));
        }
        if !err.contains(&p) {
            problems.push(format!("CLI {}: stderr does not name {p}:\n{err}", bad.name));
        }
        for m in &bad.must_mention {
            if !err.contains(m) {
                problems.push(format!("CLI {}: stderr does not mention {m:?}:\n{err}", bad.name));
            }
        }
    }

    let z = new_zygote();
    // Warm up (lazily created resources, one cached image) before counting.
    let (st, out) = lib_run(&z, SpawnRequest::new(good.as_os_str()));
    assert_eq!(lib_shell_code(&st), 17, "unpatched cow.c via library:\n{out}");
    let stats_before = z.stats();
    let fds_before = list_fds();
    let count_before = count_fds();

    for bad in &inputs {
        let p = bad.path.display().to_string();
        match z.spawn(SpawnRequest::new(bad.path.as_os_str())) {
            Ok(mut child) => {
                let pid = child.pid();
                let _ = child.kill(libc::SIGKILL);
                let _ = child.wait();
                problems.push(format!("library spawn {}: succeeded (pid {pid})", bad.name));
            }
            Err(e) => {
                let msg = e.to_string();
                if !msg.contains(&p) {
                    problems.push(format!("library spawn {}: error does not name {p}: {msg}", bad.name));
                }
                for m in &bad.must_mention {
                    if !msg.contains(m) {
                        problems.push(format!("library spawn {}: error does not mention {m:?}: {msg}", bad.name));
                    }
                }
            }
        }
        match z.prepare(&bad.path) {
            Ok(_) => problems.push(format!("library prepare {}: succeeded", bad.name)),
            Err(e) => {
                let msg = e.to_string();
                if !msg.contains(&p) {
                    problems.push(format!("library prepare {}: error does not name {p}: {msg}", bad.name));
                }
            }
        }
    }

    let count_after = count_fds();
    let fds_after = list_fds();
    if count_after != count_before {
        problems.push(format!(
            "fd leak: {count_before} fds before, {count_after} after\nbefore: {fds_before:#?}\n\
             after: {fds_after:#?}"
        ));
    }
    let stats_after = z.stats();
    if stats_after.entries != stats_before.entries {
        problems.push(format!(
            "bad inputs changed the cache: before {} / after {}",
            stats_line(&stats_before),
            stats_line(&stats_after)
        ));
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n\n"));
}
