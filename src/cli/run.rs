//! `zygote run`: start a program in-process from a prepared image, wait,
//! and exit with its status (optionally with the image and cache statistics).

use clap::Args;
use std::ffi::OsString;

use zygote_linux::Zygote;

use super::{CacheArgs, CliError, ProcessArgs};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    process: ProcessArgs,
    /// Print the image and cache statistics to stderr after the program ends.
    #[arg(long)]
    stats: bool,
    /// With --stats: print them as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cache: CacheArgs,
    /// The program and its arguments.
    #[arg(trailing_var_arg = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

pub fn run(a: RunArgs) -> Result<i32, CliError> {
    let zygote = Zygote::new(a.cache.config())?;
    let req = a.process.request(a.command)?;
    // One spawn: a launcher warmed up for a next one would be wasted.
    zygote.set_prestarted(0);
    let mut child = zygote.spawn(req)?;
    let status = child
        .wait_relaying_signals()
        .map_err(|e| CliError { message: format!("waiting for pid {}: {e}", child.pid()), code: 125 })?;
    if a.stats {
        print_stats(&zygote, &child, status, a.json);
    }
    Ok(status.shell_code())
}

/// `--stats`: the image the child ran from and the cache counters, on stderr.
fn print_stats(zygote: &Zygote, child: &zygote_linux::Child, status: zygote_core::ExitStatus, json: bool) {
    let stats = zygote.stats();
    let image = zygote.cache().images().into_iter().find(|i| i.key() == child.image_key());
    let kind = image.as_ref().map(|i| i.kind());
    let fallback = image.as_ref().and_then(|i| i.fallback().map(str::to_string));
    if json {
        let v = serde_json::json!({
            "status": status,
            "exit_code": status.shell_code(),
            "image": { "key": child.image_key().to_string(), "kind": kind, "fallback": fallback },
            "cache": stats,
        });
        eprintln!("{v}");
        return;
    }
    let how = match &fallback {
        Some(why) => format!("plain exec ({why})"),
        None => format!("from image {}", &child.image_key().to_string()[..16]),
    };
    eprintln!(
        "zygote: {status}; started {how}; cache: {} entries, {} sealed bytes, {} hits, {} misses, build {:.3} ms",
        stats.entries,
        stats.bytes,
        stats.hits,
        stats.misses,
        stats.build_nanos as f64 / 1e6
    );
}
