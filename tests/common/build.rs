//! Building the C programs the tests run: paths (binary, sources, per-process
//! build dir), gcc/musl-gcc invocations with caching, and writing files.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::{has_interp, readelf};

/// Path of the `zygote` binary under test.
pub fn zygote_bin() -> &'static str {
    env!("CARGO_BIN_EXE_zygote")
}

/// Path of a C source under `tests/c/`.
pub fn c_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c").join(name)
}

/// A build directory unique to this test process, under `CARGO_TARGET_TMPDIR`.
/// Directories left behind by earlier test processes that are no longer
/// alive are removed the first time this is called.
pub fn build_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR"));
        fs::create_dir_all(root).expect("create CARGO_TARGET_TMPDIR");
        if let Ok(entries) = fs::read_dir(root) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let Some(rest) = name.strip_prefix("zt-") else {
                    continue;
                };
                let Some(pid) = rest.rsplit('-').next() else {
                    continue;
                };
                if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let exe = std::env::current_exe().expect("current_exe");
        let stem = exe.file_stem().map(|s| s.to_string_lossy().replace('-', "_")).unwrap_or_else(|| "test".to_string());
        let dir = root.join(format!("zt-{stem}-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("create per-process build dir");
        dir
    })
}

/// A fresh path inside [`build_dir`] (unique per call).
pub fn unique_path(stem: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    build_dir().join(format!("{stem}-{n}"))
}

/// A fresh directory inside [`build_dir`].
pub fn unique_dir(stem: &str) -> PathBuf {
    let d = unique_path(stem);
    fs::create_dir_all(&d).expect("create unique dir");
    d
}

/// Run a build tool; panic with its full output if it fails.
pub fn run_tool(cmd: &mut Command) -> String {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({})\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Compile `src` with gcc into `build_dir()/out_name` with `flags`
/// (flags go before the source, libraries after it).
pub fn cc(src: &Path, out_name: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    let out = build_dir().join(out_name);
    run_tool(Command::new("gcc").args(flags).arg(src).args(libs).arg("-o").arg(&out));
    out
}

/// Like [`cc`], but compiles each distinct `out_name` only once per test
/// process, so tests running in parallel can share binaries.
pub fn cc_cached(src: &Path, out_name: &str, flags: &[&str], libs: &[&str]) -> PathBuf {
    static CACHE: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(out_name) {
        return p.clone();
    }
    let p = cc(src, out_name, flags, libs);
    map.insert(out_name.to_string(), p.clone());
    p
}

/// A glibc static-PIE build of a C source under `tests/c/` (cached).
pub fn static_pie(c_name: &str) -> PathBuf {
    let stem = c_name.trim_end_matches(".c");
    cc_cached(&c_src(c_name), &format!("{stem}.spie"), &["-static-pie", "-O2", "-pthread"], &["-lm"])
}

/// The four builds of `spie_test.c` the run-equivalence tests use.
#[derive(Clone, Copy, Debug)]
pub enum Variant {
    GlibcStaticPie,
    GlibcStaticPieRelr,
    GlibcStatic,
    MuslStaticPie,
}

/// Build `spie_test.c` as `variant`, checking the result has the expected shape.
pub fn build_spie_test(variant: Variant) -> PathBuf {
    let src = c_src("spie_test.c");
    let libs = ["-lm"];
    let out = match variant {
        Variant::GlibcStaticPie => cc_cached(&src, "spie_test.glibc-spie", &["-static-pie", "-O2", "-pthread"], &libs),
        Variant::GlibcStaticPieRelr => {
            let p = cc_cached(
                &src,
                "spie_test.glibc-spie-relr",
                &["-static-pie", "-O2", "-pthread", "-Wl,-z,pack-relative-relocs"],
                &libs,
            );
            let dynamic = readelf(&["-d"], &p);
            assert!(
                dynamic.contains("(RELR)"),
                "{} was linked with -z pack-relative-relocs but has no DT_RELR:\n{dynamic}",
                p.display()
            );
            p
        }
        Variant::GlibcStatic => {
            cc_cached(&src, "spie_test.glibc-static", &["-static", "-no-pie", "-O2", "-pthread"], &libs)
        }
        Variant::MuslStaticPie => musl_static_pie(&src, "spie_test.musl-spie"),
    };
    let header = readelf(&["-h"], &out);
    let want = match variant {
        Variant::GlibcStatic => "EXEC",
        _ => "DYN",
    };
    assert!(
        header.lines().any(|l| l.contains("Type:") && l.contains(want)),
        "{} ({variant:?}) is not ELF type {want}:\n{header}",
        out.display()
    );
    assert!(!has_interp(&out), "{} ({variant:?}) has a PT_INTERP: not static", out.display());
    out
}

/// A musl static-PIE build of `src` (cached by `out_name`).
///
/// Debian's `musl-gcc -static-pie` silently produces a dynamic PIE (its specs
/// file overrides the link spec), so compile with `-fPIE`, try the driver,
/// and if the result has a PT_INTERP link by hand with musl's `rcrt1.o`.
pub fn musl_static_pie(src: &Path, out_name: &str) -> PathBuf {
    static LOCK: Mutex<()> = Mutex::new(());
    let _g = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let out = build_dir().join(out_name);
    if out.exists() {
        return out;
    }
    let obj = build_dir().join(format!("{out_name}.o"));
    run_tool(Command::new("musl-gcc").args(["-fPIE", "-O2", "-c"]).arg(src).arg("-o").arg(&obj));
    let first = build_dir().join(format!("{out_name}.driver"));
    run_tool(Command::new("musl-gcc").arg("-static-pie").arg(&obj).arg("-o").arg(&first));
    if !has_interp(&first) {
        fs::rename(&first, &out).expect("rename musl binary");
        return out;
    }
    let musl = musl_lib_dir();
    let libgcc = PathBuf::from(run_tool(Command::new("gcc").arg("-print-libgcc-file-name")).trim().to_string());
    let gccdir = libgcc.parent().expect("libgcc dir").to_path_buf();
    run_tool(
        Command::new("gcc")
            .args(["-static-pie", "-nostdlib", "-nostartfiles"])
            .arg(musl.join("rcrt1.o"))
            .arg(musl.join("crti.o"))
            .arg(gccdir.join("crtbeginS.o"))
            .arg(&obj)
            .arg("-L")
            .arg(&musl)
            .arg("-lc")
            .arg(&libgcc)
            .arg(musl.join("libc.a"))
            .arg(gccdir.join("crtendS.o"))
            .arg(musl.join("crtn.o"))
            .arg("-o")
            .arg(&out),
    );
    assert!(!has_interp(&out), "manual musl static-PIE link of {} still has PT_INTERP", out.display());
    out
}

fn musl_lib_dir() -> PathBuf {
    for d in ["/usr/lib/musl/lib", "/usr/lib/x86_64-linux-musl", "/usr/local/musl/lib"] {
        let d = Path::new(d);
        if d.join("rcrt1.o").exists() {
            return d.to_path_buf();
        }
    }
    panic!("musl rcrt1.o not found (looked in /usr/lib/musl/lib, /usr/lib/x86_64-linux-musl)");
}

/// Flush written files (freshly written, unsynced pages show as dirty in smaps).
pub fn sync() {
    rustix::fs::sync();
}

/// Write `contents` to `path` with mode `mode`.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}
