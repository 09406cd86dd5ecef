//! `zygote inspect`: prepare a program and show its image.

use clap::Args;
use std::path::PathBuf;

use zygote_core::CacheConfig;
use zygote_linux::Zygote;

use super::CliError;

#[derive(Args)]
pub struct InspectArgs {
    /// Program file to prepare (a path; no PATH lookup).
    program: PathBuf,
    /// Machine-readable output.
    #[arg(long)]
    json: bool,
}

pub fn inspect(a: InspectArgs) -> Result<i32, CliError> {
    let zygote = Zygote::new(CacheConfig::default())?;
    let img = zygote.prepare(&a.program)?;
    if a.json {
        let objects: Vec<_> =
            img.objects().iter().map(|o| serde_json::json!({ "len": o.len(), "resident": o.resident() })).collect();
        let v = serde_json::json!({
            "path": img.path(),
            "key": img.key().to_string(),
            "kind": img.kind(),
            "load_bias": img.load_bias(),
            "entry": img.entry(),
            "relocations": img.relocs(),
            "regions": img.regions(),
            "objects": objects,
            "sealed_bytes": img.sealed_bytes(),
            "build_nanos": img.build_time().as_nanos() as u64,
        });
        println!("{v:#}");
        return Ok(0);
    }
    println!("{}", img.path().display());
    println!("  key         {}", img.key());
    println!("  kind        {:?}", img.kind());
    println!("  load bias   {:#x}", img.load_bias());
    println!("  entry       {:#x}", img.entry().pc);
    let r = img.relocs();
    println!("  relocations {} applied ahead of time, {} left to the program", r.applied, r.left_to_program);
    println!("  sealed      {} bytes in {} objects", img.sealed_bytes(), img.objects().len());
    println!("  build       {:.3} ms", img.build_time().as_secs_f64() * 1e3);
    println!("  regions:");
    for reg in img.regions() {
        let p = reg.prot;
        let prot = format!(
            "{}{}{}",
            if p & 1 != 0 { 'r' } else { '-' },
            if p & 2 != 0 { 'w' } else { '-' },
            if p & 4 != 0 { 'x' } else { '-' }
        );
        let relro = if reg.relro { " relro" } else { "" };
        println!(
            "    {:#014x}-{:#014x} {prot} phdr{:<2} {:?}{relro}",
            reg.vaddr,
            reg.vaddr + reg.len,
            reg.segment,
            reg.kind
        );
    }
    Ok(0)
}
