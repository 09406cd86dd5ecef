//! Dynamically linked programs started by `zygote run` from a prototype
//! image behave exactly like a direct exec: same stdout, stderr and exit
//! status, for three argv/environment sets each, and `--stats --json` shows
//! they really were restored (`image.kind == "Dynamic"`, `image.fallback ==
//! null`), not run by plain exec.
//!
//! Programs: `/bin/true`, `/bin/ls -la /`, `/usr/bin/env`, python3 (whose
//! `import hashlib` dlopens `_hashlib` and libcrypto after the restore) and
//! `tests/c/dyn/showme.c` (argv, environ, program_invocation_name, pid/tid,
//! threads, fork, signals, clocks, heap growth, atexit, errno).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use zygote_linux::SpawnRequest;

const PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Run every case through `assert_same_as_direct` and check the image kind.
fn check_cases(prog: &Path, cases: &[ArgsEnv<'_>]) {
    for (i, (args, env)) in cases.iter().enumerate() {
        let context = format!("{} case {i} (args {args:?}, env {env:?})", prog.display());
        let stats = assert_same_as_direct(prog, args, env, &context);
        assert_restored(&stats, &context);
    }
}

#[test]
fn bin_true() {
    let prog = Path::new("/bin/true");
    assert!(has_interp(prog), "/bin/true is expected to be dynamically linked");
    check_cases(
        prog,
        &[
            (vec![], vec![]),
            (vec!["--version"], vec![("LANG", "C"), ("X", "1")]),
            (vec!["--help"], vec![("PATH", PATH), ("LC_ALL", "C"), ("HOME", "/")]),
        ],
    );
}

/// The link count `ls -l` shows for `/proc` is the number of processes on
/// the whole machine (procfs root: fixed links + nr_processes()), which
/// `zygote run` itself (one more process while ls runs) and anything else
/// running on the machine change. That one number is masked, and as its
/// width sets the padding of the link-count column of the whole listing
/// (99 vs 100 processes), runs of spaces are collapsed to one; every field
/// of every line is still compared.
fn mask_proc_links(o: &Outcome) -> Outcome {
    let text = o.stdout_str();
    let mut out = String::new();
    for line in text.split_inclusive('\n') {
        let mut fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 8 && fields[0].starts_with('d') && fields.last() == Some(&"proc") {
            fields[1] = "N";
        }
        out.push_str(&fields.join(" "));
        if line.ends_with('\n') {
            out.push('\n');
        }
    }
    Outcome { stdout: out.into_bytes(), ..o.clone() }
}

#[test]
fn ls_la_root() {
    let prog = Path::new("/bin/ls");
    let cases: [ArgsEnv<'_>; 3] = [
        (vec!["-la", "/"], vec![("PATH", PATH), ("X", "1")]),
        (vec!["-la", "/"], vec![("LC_ALL", "C"), ("TZ", "UTC")]),
        (vec!["-la", "-n", "--time-style=long-iso", "/", "/usr"], vec![("TZ", "UTC"), ("HOME", "/tmp")]),
    ];
    for (i, (args, env)) in cases.iter().enumerate() {
        let context = format!("ls case {i} (args {args:?}, env {env:?})");
        let stats = assert_same_as_direct_with(prog, args, env, &context, mask_proc_links);
        assert_restored(&stats, &context);
    }
    // The mask touches nothing but that number.
    let masked = mask_proc_links(&direct_run(prog, &["-la", "/"], &[("LC_ALL", "C")], true)).stdout_str();
    let proc_lines: Vec<&str> = masked.lines().filter(|l| l.ends_with(" proc")).collect();
    assert_eq!(proc_lines.len(), 1, "one /proc line in:\n{masked}");
    assert!(proc_lines[0].starts_with("dr-xr-xr-x N "), "masked: {}", proc_lines[0]);
    assert_eq!(
        masked.lines().count(),
        direct_run(prog, &["-la", "/"], &[("LC_ALL", "C")], true).stdout_str().lines().count()
    );
}

#[test]
fn usr_bin_env() {
    let prog = Path::new("/usr/bin/env");
    check_cases(
        prog,
        &[
            (vec![], vec![("PATH", PATH), ("X", "1"), ("Y", "two words")]),
            (vec!["-u", "X", "NEW=added"], vec![("X", "gone"), ("Z", ""), ("LONG", &"v".repeat(3000))]),
            // env execs another program (an exec from a restored process).
            (vec!["-i", "Q=1", "/usr/bin/env"], vec![("X", "1")]),
        ],
    );
}

#[test]
fn python3_hashlib() {
    let prog = PathBuf::from("/usr/bin/python3");
    let script = r#"import sys, os, json, hashlib; print(sys.argv, os.environ.get("X"))"#;
    // Proof that the dlopen happened: _hashlib is the OpenSSL extension
    // module, loaded on demand after the restore; libcrypto shows in the
    // maps. Then a thread and a subprocess (vfork + exec).
    let explicit = "import sys, os, json, hashlib, _hashlib, threading\n\
                    print(sys.argv, os.environ.get('X'), sorted(os.environ))\n\
                    print(hashlib.sha256(b'zygote').hexdigest(), hashlib.md5(b'x').hexdigest())\n\
                    maps = open('/proc/self/maps').read()\n\
                    print(os.path.basename(_hashlib.__file__).split('.')[0], 'libcrypto' in maps)\n\
                    r = []\nt = threading.Thread(target=lambda: r.append(sum(range(1000))))\nt.start(); t.join()\n\
                    print(r, json.dumps({'b': 1, 'a': [1, 2]}, sort_keys=True))\n\
                    import subprocess\n\
                    print(subprocess.run(['/bin/echo', 'from a subprocess'], capture_output=True).stdout)\n\
                    sys.stderr.write('to stderr\\n'); sys.exit(3)";
    check_cases(
        &prog,
        &[
            (vec!["-c", script, "a", "b c"], vec![("X", "1")]),
            (vec!["-c", script], vec![("PATH", PATH), ("LANG", "C.UTF-8"), ("X", "ünïcödé")]),
            (vec!["-c", script, "--flag", ""], vec![("PYTHONHASHSEED", "0")]),
            (vec!["-c", explicit, "x"], vec![("X", "explicit"), ("PATH", PATH)]),
        ],
    );
}

fn showme() -> PathBuf {
    cc_cached(&dyn_src("showme.c"), "showme", &["-O1", "-pthread", "-rdynamic"], &[])
}

#[test]
fn showme_c_program() {
    let prog = showme();
    assert!(has_interp(&prog), "{} should be dynamically linked", prog.display());
    // A longer name than the prototype's argv[0], through a symlink: the
    // restored program_invocation_name must point at the new argv[0].
    let dir = unique_dir("showme-link");
    let link = dir.join("a-much-longer-name-for-the-showme-program");
    std::os::unix::fs::symlink(&prog, &link).expect("symlink to showme");
    check_cases(
        &prog,
        &[
            (vec![], vec![]),
            (vec!["hello", "two words", "exit=3"], vec![("X", "1"), ("PATH", PATH)]),
            (vec!["", "--x", "kill=15"], vec![("X", ""), ("A", "b=c"), ("LONG", &"e".repeat(2000))]),
        ],
    );
    check_cases(&link, &[(vec!["via", "symlink"], vec![("X", "link")])]);
    // The program checks itself too.
    let out = direct_run(&prog, &[], &[], true);
    assert!(out.stdout_str().contains("failures=0\n"), "showme's own checks fail when run directly:\n{out}");
}

/// Through the library, with an argv[0] that is not the program's path
/// (compared with `Command::arg0`), twice from one image.
#[test]
fn showme_library_argv0() {
    use std::os::unix::process::CommandExt;
    let prog = showme();
    let z = new_zygote();
    for (argv0, args) in [("custom-name", vec!["one"]), ("/some/dir/other", vec!["two", "exit=5"])] {
        // Sorted by key, as `Command` passes it (see `sorted_env`).
        let env = [("PATH", PATH), ("X", "lib")];
        let mut cmd = std::process::Command::new(&prog);
        cmd.arg0(argv0).args(&args).env_clear().envs(env);
        let direct = run_command(&mut cmd);
        let mut req = SpawnRequest::new(prog.as_os_str()).argv0(argv0).args(&args).env_clear();
        for (k, v) in env {
            req = req.env(k, v);
        }
        let (_, via_lib) = lib_run(&z, req);
        assert_eq!(
            via_lib, direct,
            "argv0 {argv0:?}: library spawn differs from a direct run\n\
             === library ===\n{via_lib}\n=== direct ===\n{direct}"
        );
    }
    let s = z.stats();
    assert_eq!((s.misses, s.builds), (1, 1), "one image for both spawns: {}", stats_line(&s));
    let images = z.cache().images();
    assert_eq!(images.len(), 1, "one cached image");
    assert_eq!(images[0].kind(), zygote_core::elf::ProgramKind::Dynamic);
    assert_eq!(images[0].fallback(), None, "showme must be restored, not exec'd");
}

/// dlopen after the restore of a module with general-dynamic TLS, used from
/// the restored main thread and from new threads, closed and opened again.
#[test]
fn dlopen_module_with_tls() {
    let dir = unique_dir("tls-mod");
    let module = shared_lib(
        "gcc",
        &[&dyn_src("tls_mod.c")],
        &dir.join("libzt_tls_mod.so"),
        &["-O1", "-ftls-model=global-dynamic"],
    );
    let prog = cc_cached(&dyn_src("dlopen_tls.c"), "dlopen_tls", &["-O1", "-pthread"], &[]);
    let m = module.to_str().expect("UTF-8 module path");
    let direct = direct_run(&prog, &[m], &[], true);
    assert!(direct.code == 0 && direct.stdout_str().contains("ok=1\n"), "direct run:\n{direct}");
    check_cases(
        &prog,
        &[(vec![m], vec![]), (vec![m, "extra"], vec![("X", "1")]), (vec![m, "a", "b"], vec![("PATH", PATH)])],
    );
}
