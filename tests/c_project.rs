//! A real open-source C project built through masquerade links: Lua's C
//! sources, as the crates.io package lua-src bundles them (fetched by
//! tests/cproject/Cargo.toml), compiled by tests/cproject/Makefile with
//! `make -j2`, once with the compiler direct and once with CC resolved
//! through `zygote install-links` (the links directory first in PATH), with
//! gcc and with clang-14. Every object file must be byte-identical, and the
//! daemon must have served the compilers of the masquerade build (its
//! image_requests.served grows) once a warm-up build has had them built.
//! Nothing here measures time (`zygote bench-exec` does, and finds the
//! sources the same way: `zygote_tools::bench_exec::find_lua_sources`).
#![cfg(feature = "tools")]

mod common;

use common::*;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use zygote_tools::bench_exec::find_lua_sources;

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cproject/Cargo.toml");
const MAKEFILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/cproject/Makefile");

/// Lua's sources, fetched with Cargo when they are not in its registry yet.
fn lua_sources() -> PathBuf {
    if let Some(d) = find_lua_sources() {
        return d;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run_tool(Command::new(cargo).args(["fetch", "--manifest-path", MANIFEST]));
    find_lua_sources().expect("lua-src's Lua 5.4 sources in Cargo's registry after cargo fetch")
}

fn require(tool: &str) {
    let found =
        Command::new("sh").arg("-c").arg(format!("command -v {tool}")).output().is_ok_and(|o| o.status.success());
    assert!(found, "{tool} is not installed (tests/run installs it: apt-get install {tool})");
}

/// A fresh directory with the sources and the Makefile.
fn project(stem: &str, sources: &Path) -> PathBuf {
    let dir = unique_dir(stem);
    for e in fs::read_dir(sources).expect("read the sources").flatten() {
        let p = e.path();
        if matches!(p.extension().and_then(|x| x.to_str()), Some("c" | "h")) {
            fs::copy(&p, dir.join(e.file_name())).expect("copy a source file");
        }
    }
    fs::copy(MAKEFILE, dir.join("Makefile")).expect("copy the Makefile");
    dir
}

/// `make -j2 CC=cc CFLAGS=cflags` in `dir` with PATH `path`.
fn make(dir: &Path, cc: &str, cflags: &str, path: &OsString, socket: &Path) {
    run_tool(
        Command::new("make")
            .arg("-j2")
            .arg(format!("CC={cc}"))
            .arg(format!("CFLAGS={cflags}"))
            .current_dir(dir)
            .env("PATH", path)
            .env("ZYGOTE_SOCKET", socket)
            .env_remove("ZYGOTE_EXEC_DEBUG"),
    );
}

/// The object files of `dir`, by name.
fn objects(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .expect("read the build directory")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "o"))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).expect("read an object")))
        .collect();
    v.sort();
    v
}

/// Run the link `links/cc --version` until the daemon serves it (the first
/// requests miss while the image is built in the background).
fn wait_served(daemon: &Daemon, link: &Path, path: &OsString) {
    let start = Instant::now();
    loop {
        let before = daemon.stats().image_requests.served;
        run_tool(Command::new(link).arg("--version").env("PATH", path).env("ZYGOTE_SOCKET", &daemon.socket));
        if daemon.stats().image_requests.served > before {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{} was never served: {:?}\n{}",
            link.display(),
            daemon.stats().image_requests,
            daemon.log_tail(4000)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn objects_are_identical_through_masquerade_links() {
    for tool in ["make", "gcc", "clang-14"] {
        require(tool);
    }
    let sources = lua_sources();
    let socket = socket_path("cproject");
    let daemon = Daemon::start(&socket, &[]);
    let links = unique_dir("cproject-links");
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    run_tool(Command::new(zygote_bin()).arg("install-links").arg(&links).args(["gcc", "clang-14"]).env("PATH", &path));
    let mut link_path = links.clone().into_os_string();
    link_path.push(":");
    link_path.push(&path);

    for cc in ["gcc", "clang-14"] {
        let direct = project(&format!("cproject-{cc}-direct"), &sources);
        make(&direct, cc, "-O2", &path, &socket);
        // The warm-up build's compilers miss and have their image built.
        let warm = project(&format!("cproject-{cc}-warm"), &sources);
        make(&warm, cc, "-O0", &link_path, &socket);
        wait_served(&daemon, &links.join(cc), &link_path);

        let before = daemon.stats().image_requests;
        let served = project(&format!("cproject-{cc}-links"), &sources);
        make(&served, cc, "-O2", &link_path, &socket);
        let after = daemon.stats().image_requests;

        let (a, b) = (objects(&direct), objects(&served));
        let c_files =
            fs::read_dir(&sources).unwrap().flatten().filter(|e| e.path().extension().is_some_and(|x| x == "c"));
        assert_eq!(a.len(), c_files.count(), "{cc}: one object per .c file");
        let names = |v: &[(String, Vec<u8>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&a), names(&b), "{cc}: the same object files");
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert!(x == y, "{cc}: {name} differs between the direct and the masquerade build");
        }
        assert!(
            after.served > before.served,
            "{cc}: no compiler of the masquerade build was served ({before:?} -> {after:?})\n{}",
            daemon.log_tail(4000)
        );
        eprintln!(
            "{cc}: {} objects identical; {} of the masquerade build's compilers served",
            a.len(),
            after.served - before.served
        );
    }
}
