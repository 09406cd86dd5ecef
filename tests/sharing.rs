//! Relocated pages are shared between processes started from one image.
//!
//! A generated static-PIE with a table of 200,000 relocated pointers
//! (>= 200,000 R_X86_64_RELATIVE relocs) reads its whole table, prints
//! "ready" and pauses. Twenty live instances are started from one image;
//! within the image's regions each instance's Private_Dirty must be below
//! 5% of its Rss (a directly exec'd instance would have the whole table,
//! ~1.6 MB, private dirty after self-relocation).

mod common;

use common::*;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;
use zygote_linux::SpawnRequest;

const ENTRIES: usize = 200_000;
const TARGETS: usize = 509;
const INSTANCES: usize = 20;

/// Build the generated program once per test process (both tests use it).
fn build_big_table() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(generate_and_compile).clone()
}

fn generate_and_compile() -> PathBuf {
    let mut src = String::with_capacity(ENTRIES * 10 + 4096);
    src.push_str("#include <stdio.h>\n#include <unistd.h>\n");
    writeln!(src, "static char t[{TARGETS}];").expect("fmt");
    writeln!(src, "void *tbl[{ENTRIES}] = {{").expect("fmt");
    for i in 0..ENTRIES {
        write!(src, "&t[{}],", i % TARGETS).expect("fmt");
        if i % 16 == 15 {
            src.push('\n');
        }
    }
    src.push_str("};\n");
    write!(
        src,
        r#"
int main(void)
{{
    for (int i = 0; i < {ENTRIES}; i++) {{
        if (tbl[i] != (void *)&t[i % {TARGETS}]) {{
            printf("corrupt %d\n", i);
            return 1;
        }}
    }}
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
}}
"#
    )
    .expect("fmt");
    let c = unique_path("bigtable").with_extension("c");
    std::fs::write(&c, src).expect("write generated C");
    let out = cc(&c, "bigtable.spie", &["-static-pie", "-O0"], &[]);
    let count = dynamic_tag(&out, "RELACOUNT").unwrap_or(0);
    assert!(count >= ENTRIES as u64, "{}: RELACOUNT = {count}, expected >= {ENTRIES}", out.display());
    out
}

#[test]
fn relocated_pages_are_shared_between_instances() {
    let prog = build_big_table();
    sync();

    let z = new_zygote();
    let mut live: Vec<LiveChild> = Vec::new();
    for _ in 0..INSTANCES {
        live.push(LiveChild::spawn(&z, SpawnRequest::new(prog.as_os_str())));
    }
    for c in &mut live {
        c.wait_for_line("ready");
    }
    let image = z.prepare(&prog).unwrap_or_else(|e| panic!("prepare({}): {e}", prog.display()));
    let s = z.stats();
    assert_eq!(s.misses, 1, "one build for {INSTANCES} spawns: {}", stats_line(&s));
    assert!(s.hits >= INSTANCES as u64, "spawns after the first plus prepare() are hits: {}", stats_line(&s));

    let regions: Vec<(u64, u64)> = image.regions().iter().map(|r| (r.vaddr, r.vaddr + r.len)).collect();
    assert!(!regions.is_empty(), "image has no regions");
    let table_kb = (ENTRIES * 8 / 1024) as u64;

    let mut report = String::new();
    let mut failures = Vec::new();
    for c in &live {
        let pid = c.guard.pid();
        let maps = smaps(pid);
        let mut rss = 0;
        let mut private_dirty = 0;
        let mut pss = 0;
        for m in &maps {
            if regions.iter().any(|&(a, b)| m.start < b && a < m.end) {
                rss += m.kb("Rss");
                private_dirty += m.kb("Private_Dirty");
                pss += m.kb("Pss");
            }
        }
        writeln!(report, "pid {pid}: Rss {rss} kB, Pss {pss} kB, Private_Dirty {private_dirty} kB").expect("fmt");
        if rss < table_kb {
            failures.push(format!(
                "pid {pid}: only {rss} kB Rss inside the image regions {regions:x?}, but the \
                 program read a {table_kb} kB table: the regions do not describe its mappings"
            ));
        }
        if private_dirty * 20 >= rss {
            let detail: Vec<String> = maps
                .iter()
                .filter(|m| regions.iter().any(|&(a, b)| m.start < b && a < m.end))
                .map(|m| format!("{}  Rss {} Private_Dirty {}", m.header, m.kb("Rss"), m.kb("Private_Dirty")))
                .collect();
            failures.push(format!(
                "pid {pid}: Private_Dirty {private_dirty} kB is not < 5% of Rss {rss} kB:\n  {}",
                detail.join("\n  ")
            ));
        }
    }
    for c in &live {
        signal(c.guard.0.as_ref().expect("live child"), libc::SIGKILL);
    }
    for c in &mut live {
        let st = c.guard.wait();
        assert_eq!(
            lib_shell_code(&st),
            128 + libc::SIGKILL,
            "instance should have died by SIGKILL, got {}",
            describe(&st)
        );
    }
    println!("image regions {regions:x?}\n{report}");
    assert!(failures.is_empty(), "{}\n{report}", failures.join("\n"));
}

/// Control for the measurement above: the same program exec'd directly
/// relocates itself, so its relocated table is private dirty in every
/// instance. If this fails, the smaps accounting, not zygote, is wrong.
#[test]
fn direct_exec_control_has_private_table() {
    let prog = build_big_table();
    sync();
    let child = std::process::Command::new(&prog)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn bigtable directly");
    let mut guard = StdChildGuard(Some(child));
    let c = guard.0.as_mut().expect("child");
    let stdout = c.stdout.take().expect("stdout");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).expect("read ready line");
    assert_eq!(line, "ready\n");
    let path = prog.display().to_string();
    let private_dirty: u64 =
        smaps(c.id() as i32).iter().filter(|m| m.header.ends_with(&path)).map(|m| m.kb("Private_Dirty")).sum();
    let table_kb = (ENTRIES * 8 / 1024) as u64;
    assert!(
        private_dirty >= table_kb,
        "directly exec'd bigtable: Private_Dirty {private_dirty} kB in its file mappings, \
         expected >= {table_kb} kB (the self-relocated table)"
    );
}
