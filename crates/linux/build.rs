//! Builds the no_std launchers (workspace member `zygote-stub`: the daemon's
//! stub and the thin exec client) with their own link flags and places them
//! in OUT_DIR, from where `src/lib.rs` (`STUB`, `EXEC_CLIENT`) embeds them
//! with `include_bytes!`, so the zygote binary needs no install path.
use std::env;
use std::path::PathBuf;
use std::process::Command;

const STUB_BASE: &str = "0x6f0000000000";

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    for p in ["../stub/src", "../stub/Cargo.toml", "../plan/src", "../plan/Cargo.toml"] {
        println!("cargo::rerun-if-changed={}", manifest.join(p).display());
    }
    println!("cargo::rustc-env=ZYGOTE_STUB_BASE={STUB_BASE}");

    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = "x86_64-unknown-linux-gnu";
    let target_dir = out.join("stub-target");
    let flags = [
        "-Crelocation-model=static",
        "-Ccode-model=large",
        "-Ctarget-feature=+crt-static",
        "-Clink-arg=-nostartfiles",
        "-Clink-arg=-nostdlib",
        "-Clink-arg=-static",
        &format!("-Clink-arg=-Wl,--image-base={STUB_BASE}"),
        "-Clink-arg=-Wl,--build-id=none",
        "-Clink-arg=-Wl,-z,noexecstack",
        // One read+exec segment instead of four: fewer mappings for every exec of the stub.
        "-Clink-arg=-Wl,--no-rosegment",
        "-Clink-arg=-Wl,-z,noseparate-code",
    ]
    .join("\x1f");
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&manifest)
        .args(["build", "--offline", "-p", "zygote-stub", "--profile", "stub", "--target", target])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", flags);
    // The outer build's settings must not leak into the stub's.
    for v in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PROFILE_RELEASE_PANIC",
        "CLIPPY_ARGS",
    ] {
        cmd.env_remove(v);
    }
    let status = cmd.status().expect("failed to run cargo to build the stub");
    assert!(status.success(), "building zygote-stub failed: {status}");
    for bin in ["zygote-stub", "zygote-exec"] {
        let built = target_dir.join(target).join("stub").join(bin);
        std::fs::copy(&built, out.join(bin)).unwrap_or_else(|e| panic!("copy {}: {e}", built.display()));
    }
}
