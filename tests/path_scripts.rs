//! Program resolution like a shell/execvp: PATH lookup, `#!` scripts
//! (with and without an interpreter argument, and nested), and the
//! shell-style statuses 127 (not found) and 126 (not executable).

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `zygote run [--env PATH=..] -- PROGRAM ARGS` with PROGRAM given verbatim.
fn zygote_run_name(program: &str, args: &[&str], path_env: Option<&Path>) -> Outcome {
    let mut cli: Vec<String> = vec!["run".into()];
    if let Some(p) = path_env {
        cli.push("--env".into());
        cli.push(format!("PATH={}", p.display()));
    }
    cli.push("--".into());
    cli.push(program.into());
    cli.extend(args.iter().map(|s| s.to_string()));
    zygote_cli(cli)
}

fn assert_same(what: &str, via: &Outcome, direct: &Outcome) {
    assert_eq!(
        via, direct,
        "{what}: zygote run differs from direct execution\n=== zygote run ===\n{via}\n\
         === direct ===\n{direct}"
    );
}

#[test]
fn path_lookup() {
    let prog = build_spie_test(Variant::GlibcStaticPie);
    let bin = unique_dir("bin");
    let name = format!("zt-prog-{}", std::process::id());
    std::fs::copy(&prog, bin.join(&name)).expect("copy program into bin dir");
    // an entry earlier in PATH without the program, to exercise the search
    let empty = unique_dir("emptybin");
    let path = std::env::join_paths([&empty, &bin]).expect("join PATH");
    let path = PathBuf::from(path);
    sync();

    let args = ["one", "two words", "exit=7"];
    let direct = run_command(Command::new(&name).args(args).env("PATH", &path));
    assert_eq!(direct.code, 7, "direct run via PATH:\n{direct}");
    let via = zygote_run_name(&name, &args, Some(&path));
    assert_same("PATH lookup", &via, &direct);

    // not found anywhere in PATH: 127, message names the program
    let missing = format!("zt-no-such-program-{}", std::process::id());
    let out = zygote_run_name(&missing, &[], Some(&path));
    assert_eq!(out.code, 127, "missing program via PATH:\n{out}");
    assert!(out.stderr_str().contains(&missing), "{out}");
}

#[test]
fn missing_and_not_executable() {
    let missing = build_dir().join("does-not-exist");
    let out = zygote_run_name(&missing.display().to_string(), &[], None);
    assert_eq!(out.code, 127, "missing absolute path:\n{out}");
    assert!(out.stderr_str().contains(&missing.display().to_string()), "message should name the path:\n{out}");

    let prog = build_spie_test(Variant::GlibcStaticPie);
    let noexec = build_dir().join("not-executable");
    write_file(&noexec, &std::fs::read(&prog).expect("read program"), 0o644);
    let out = zygote_run_name(&noexec.display().to_string(), &[], None);
    assert_eq!(out.code, 126, "file without exec permission:\n{out}");
    assert!(out.stderr_str().contains(&noexec.display().to_string()), "message should name the path:\n{out}");
}

#[test]
fn shebang_scripts() {
    let interp = build_spie_test(Variant::GlibcStaticPie);
    let dir = unique_dir("scripts");
    let with_arg = dir.join("with-arg.sh");
    write_file(
        &with_arg,
        format!("#!{} -x\nthis line is not read by the interpreter\n", interp.display()).as_bytes(),
        0o755,
    );
    let no_arg = dir.join("no-arg.sh");
    write_file(&no_arg, format!("#!{}\n", interp.display()).as_bytes(), 0o755);
    let nested = dir.join("nested.sh");
    write_file(&nested, format!("#! {}\n", no_arg.display()).as_bytes(), 0o755);
    sync();

    for script in [&with_arg, &no_arg, &nested] {
        for args in [&[][..], &["a", "b c", "exit=9"][..]] {
            let direct = run_command(Command::new(script).args(args));
            assert!(direct.stdout_str().contains("failures=0"), "direct run of {}:\n{direct}", script.display());
            let via = zygote_run_name(&script.display().to_string(), args, None);
            assert_same(&format!("{} {args:?}", script.display()), &via, &direct);
        }
    }
    // the direct runs really saw the interpreter argument and the nesting
    let out = run_command(&mut Command::new(&with_arg));
    assert!(out.stdout_str().contains("argv[1]=<-x>"), "{out}");
    let out = run_command(&mut Command::new(&nested));
    assert!(out.stdout_str().contains(&format!("argv[1]=<{}>", no_arg.display())), "{out}");
}

/// A script named by a relative path gets that path, as given, as its
/// script argument (binfmt_script passes execve's filename), under `zygote
/// run` and `zygote spawn`, with and without `--cwd`; so does a script whose
/// `#!` names another script by a relative path.
#[test]
fn relative_script_paths_stay_as_given() {
    let interp = build_spie_test(Variant::GlibcStaticPie);
    let dir = unique_dir("rel-scripts");
    write_file(&dir.join("rel.sh"), format!("#!{}\n", interp.display()).as_bytes(), 0o755);
    write_file(&dir.join("nested-rel.sh"), b"#!./rel.sh\n", 0o755);
    sync();
    let daemon = Daemon::start(&socket_path("rel-scripts"), &[]);
    let socket = daemon.socket.display().to_string();
    let elsewhere = build_dir();
    let cwd = dir.display().to_string();
    for script in ["./rel.sh", "./nested-rel.sh"] {
        let args = ["a", "exit=4"];
        let direct = run_command(Command::new(script).args(args).current_dir(&dir));
        assert!(direct.stdout_str().contains(&format!("<{script}>")), "direct run of {script}:\n{direct}");
        assert!(direct.stdout_str().contains("failures=0"), "direct run of {script}:\n{direct}");
        let cases: [(&str, &Path, Vec<&str>); 4] = [
            ("zygote run", &dir, vec!["run", "--"]),
            ("zygote run --cwd", elsewhere, vec!["run", "--cwd", &cwd, "--"]),
            ("zygote spawn", &dir, vec!["spawn", "--daemon-side", "--socket", &socket, "--"]),
            ("zygote spawn --cwd", elsewhere, vec!["spawn", "--daemon-side", "--socket", &socket, "--cwd", &cwd, "--"]),
        ];
        for (what, from, cli) in cases {
            let via = run_command(Command::new(zygote_bin()).args(&cli).arg(script).args(args).current_dir(from));
            assert_same(&format!("{what} {script}"), &via, &direct);
        }
    }
}
