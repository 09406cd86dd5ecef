//! The service over core's memory kernel and a backend that records what it
//! was asked to create.

use std::sync::Mutex;

use super::*;
use crate::images::Relocating;
use crate::images::tests::{file, static_exec};
use crate::inspect::Value;
use crate::processargs::{PA_FD, pa_hnd};
use zygote_core::elf::ProgramKind;
use zygote_core::test_kernel::{MemFile, MemKernel};

/// What the fake backend saw: the image key or the plain reason, and the
/// launch's name, args and handle count.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    source: String,
    name: String,
    args: Vec<Vec<u8>>,
    handles: usize,
    job: &'static str,
    loader: Option<u32>,
}

#[derive(Default)]
struct Fake {
    seen: Mutex<Vec<Seen>>,
    fail_create: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("the fake backend refuses")]
struct FakeError;

impl Backend<MemKernel> for Fake {
    type Handle = u32;
    type Job = &'static str;
    type Created = Seen;
    type Process = (Seen, &'static str);
    type Error = FakeError;

    fn duplicate(&self, f: &MemFile) -> std::io::Result<MemFile> {
        crate::images::tests::dup(f)
    }
    fn create(&self, source: Source<'_, MemKernel>, spec: Spec<MemKernel, Self>) -> Result<Seen, FakeError> {
        if self.fail_create {
            return Err(FakeError);
        }
        let source = match source {
            Source::Image(img) if img.kind() == ProgramKind::Dynamic => format!("interp {}", img.key()),
            Source::Image(img) => format!("image {}", img.key()),
            Source::Plain { reason } => format!("plain: {reason}"),
        };
        let (name, args, handles, job, loader) = (spec.name, spec.args, spec.handles.len(), spec.job, spec.loader);
        let seen = Seen { source, name, args, handles, job, loader };
        self.seen.lock().unwrap().push(seen.clone());
        Ok(seen)
    }
    fn start(&self, created: Seen) -> Result<(Seen, &'static str), FakeError> {
        Ok((created, "started"))
    }
    fn status(&self, _: &FakeError) -> Status {
        Status::NO_RESOURCES
    }
}

fn config() -> Config {
    Config { cache_max_entries: 4, cache_max_bytes: 1 << 20, log_filter: "info".into(), preload: vec![] }
}

fn service(fake: Fake) -> Service<MemKernel, Relocating, Fake> {
    Service::new(&config(), Relocating, fake).expect("valid config")
}

fn info(exe: MemFile, name: &str) -> LaunchInfo<MemFile, &'static str> {
    LaunchInfo { executable: exe, job: "caller's job", name: name.into() }
}

fn uint(node: &Node, child: &str, name: &str) -> u64 {
    match node.node(child).and_then(|c| c.get(name)) {
        Some(Value::Uint(v)) => *v,
        other => panic!("{child}.{name}: {other:?}"),
    }
}

#[test]
fn a_launch_maps_the_image_in_the_callers_job_and_the_next_hits_the_cache() {
    let s = service(Fake::default());
    let mut c = s.connect();
    c.add_args(vec![b"prog".to_vec()]);
    c.add_handles(vec![HandleEntry { handle: 7, id: pa_hnd(PA_FD, 1) }]);
    let (seen, state) = c.launch(info(file(&static_exec(1), 1), "prog")).expect("launched");
    assert_eq!(state, "started");
    assert!(seen.source.starts_with("image "), "{}", seen.source);
    assert_eq!((seen.name.as_str(), seen.args.len(), seen.handles, seen.job), ("prog", 1, 1, "caller's job"));

    let (again, _) = c.launch(info(file(&static_exec(1), 1), "prog")).expect("launched");
    assert_eq!(again.source, seen.source);
    assert_eq!((again.args.len(), again.handles), (0, 0), "the state was reset by the first Launch");

    let tree = s.inspect();
    assert_eq!((uint(&tree, "cache", "builds"), uint(&tree, "cache", "hits")), (1, 1));
    assert_eq!((uint(&tree, "spawns", "launched"), uint(&tree, "spawns", "plain")), (2, 0));
    let Some(Value::Histogram { inserts, .. }) = tree.node("spawns").and_then(|n| n.get("latency_us")) else {
        panic!("no latency histogram: {tree:?}");
    };
    assert_eq!(inserts.iter().map(|(_, n)| n).sum::<u64>(), 2, "both launches timed");
}

#[test]
fn what_cannot_be_imaged_is_launched_plainly() {
    let s = service(Fake::default());
    let mut c = s.connect();
    let (seen, _) = c.launch(info(file(b"not ELF at all", 2), "text")).expect("launched plainly");
    assert!(seen.source.starts_with("plain: text: not an ELF"), "{}", seen.source);

    c.set_options(1);
    let (seen, _) = c.launch(info(file(&static_exec(1), 3), "shared")).expect("launched plainly");
    assert_eq!(seen.source, "plain: process options 0x1");

    let mut dir = file(b"", 4);
    dir.identity.mode = 0o040755;
    let (seen, _) = c.launch(info(dir, "dir")).expect("the backend decides");
    assert!(seen.source.contains("not a regular file"), "{}", seen.source);
    assert_eq!(uint(&s.inspect(), "spawns", "plain"), 3);
}

#[test]
fn a_discarded_launch_empties_the_state() {
    let s = service(Fake::default());
    let mut c = s.connect();
    c.add_args(vec![b"stale".to_vec()]);
    c.add_handles(vec![HandleEntry { handle: 9, id: pa_hnd(PA_FD, 1) }]);
    c.discard();
    assert_eq!(uint(&s.inspect(), "spawns", "refused"), 1);
    let (seen, _) = c.launch(info(file(&static_exec(2), 8), "next")).expect("launched");
    assert_eq!((seen.args.len(), seen.handles), (0, 0), "nothing of the discarded request is left");
}

#[test]
fn create_without_starting_returns_the_created_process() {
    let s = service(Fake::default());
    let mut c = s.connect();
    let created = c.create_without_starting(info(file(&static_exec(2), 5), "dbg")).expect("created");
    assert_eq!(created.name, "dbg");
    let tree = s.inspect();
    assert_eq!((uint(&tree, "spawns", "created"), uint(&tree, "spawns", "launched")), (1, 0));
}

#[test]
fn failures_carry_their_status() {
    let s = service(Fake::default());
    let mut c = s.connect();
    c.add_args(vec![b"a\0b".to_vec()]);
    let e = c.launch(info(file(&static_exec(1), 6), "p")).unwrap_err();
    assert_eq!(e.status, Status::INVALID_ARGS);
    assert!(e.message.contains("NUL"), "{e}");
    assert!(s.images().stats().entries == 0, "a refused request reads nothing");

    let s = service(Fake { fail_create: true, ..Fake::default() });
    let e = s.connect().launch(info(file(&static_exec(1), 7), "p")).unwrap_err();
    assert_eq!(e, LaunchFailure { status: Status::NO_RESOURCES, message: "the fake backend refuses".into() });
    let tree = s.inspect();
    assert_eq!((uint(&tree, "spawns", "failed"), uint(&tree, "spawns", "refused")), (1, 0));
}

#[test]
fn connections_are_counted_and_images_listed_lazily() {
    let s = service(Fake::default());
    {
        let _a = s.connect();
        let _b = s.connect();
        let tree = s.inspect();
        assert_eq!((uint(&tree, "launchers", "connections"), uint(&tree, "launchers", "open")), (2, 2));
    }
    assert_eq!(uint(&s.inspect(), "launchers", "open"), 0);

    crate::protocol::preload(s.images(), "/pkg/bin/one", &file(&static_exec(1), 8)).expect("preload");
    crate::protocol::preload(s.images(), "/pkg/bin/txt", &file(b"text", 9)).expect("preload");
    let images = s.images_node();
    assert_eq!(images.name, crate::inspect::LAZY_IMAGES);
    assert_eq!(images.children.len(), 2);
    let txt = &images.children[0];
    assert_eq!(txt.get("path"), Some(&Value::String("/pkg/bin/txt".into())), "most recent first");
    assert!(matches!(txt.get("fallback"), Some(Value::String(why)) if why.contains("not an ELF")));
    let one = &images.children[1];
    assert_eq!(one.get("sealed_bytes"), Some(&Value::Uint(0x1000)));
    assert_eq!(one.get("fallback"), None);
    assert_eq!(one.name.len(), 16);
}

#[test]
fn a_bad_config_is_refused() {
    let bad = Config { log_filter: "verbose".into(), ..config() };
    assert!(Service::<MemKernel, Relocating, Fake>::new(&bad, Relocating, Fake::default()).is_err());
}

fn with_loaders(s: Service<MemKernel, Relocating, Fake>, ld: Vec<u8>) -> Service<MemKernel, Relocating, Fake> {
    s.with_loaders(Box::new(move |handle| {
        let mut l = crate::images::tests::loader(ld.clone());
        l.handle = handle;
        Box::new(l)
    }))
}

#[test]
fn a_pt_interp_program_starts_from_its_interpreter_with_the_loader_passed_on() {
    use crate::interp::tests::{interpreter, program};
    use crate::processargs::PA_LDSVC_LOADER;
    let s = with_loaders(service(Fake::default()), interpreter(1));
    let mut c = s.connect();
    c.add_handles(vec![HandleEntry { handle: 5, id: pa_hnd(PA_LDSVC_LOADER, 0) }]);
    let (seen, _) = c.launch(info(file(&program(), 70), "dyn")).expect("launched");
    assert!(seen.source.starts_with("interp "), "{}", seen.source);
    assert_eq!(seen.loader, Some(5), "the loader channel goes on to the interpreter");
    assert_eq!(uint(&s.inspect(), "spawns", "plain"), 0);

    // Without a loader it is a plain launch, which the backend decides.
    let (seen, _) = c.launch(info(file(&program(), 70), "dyn")).expect("the backend decides");
    assert!(seen.source.contains("needs a loader"), "{}", seen.source);
    assert_eq!(seen.loader, None);

    // A loader that does not have it fails the launch, as process_builder's.
    let s = with_loaders(service(Fake::default()), Vec::new());
    let s = s.with_loaders(Box::new(|handle| {
        Box::new(crate::images::tests::FakeLoader { objects: Vec::new(), asked: Vec::new(), handle })
    }));
    let mut c = s.connect();
    c.add_handles(vec![HandleEntry { handle: 6, id: pa_hnd(PA_LDSVC_LOADER, 0) }]);
    let e = c.launch(info(file(&program(), 71), "dyn")).unwrap_err();
    assert_eq!(e.status, Status::NOT_FOUND);
    assert!(e.message.contains("the interpreter \"ld.so.1\""), "{e}");
    assert_eq!(uint(&s.inspect(), "spawns", "failed"), 1);
}

#[test]
fn a_refused_static_program_is_mapped_as_it_is() {
    let s = service(Fake::default());
    let mut exec_stack = static_exec(3);
    exec_stack[64 + 2 * 56 + 4] = 7; // PT_GNU_STACK RWX: the relocating preparer refuses it
    let (seen, _) = s.connect().launch(info(file(&exec_stack, 72), "xs")).expect("launched");
    assert!(seen.source.starts_with("image "), "{}", seen.source);
    assert_eq!(uint(&s.inspect(), "spawns", "plain"), 0);
}
