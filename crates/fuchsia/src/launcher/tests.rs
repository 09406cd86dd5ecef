//! The launcher state against the platform launcher's behaviour and the
//! bootstrap message's limits.

use super::*;
use crate::processargs::{
    HEADER_BYTES, LAUNCHER_HANDLES, PA_FD, PA_NS_DIR, PA_PROC_SELF, PA_VMAR_LOADED, PA_VMO_EXECUTABLE, pa_hnd,
};

/// Handles are numbers here; a dropped one is simply gone.
type State = LaunchState<u32>;

fn info(name: &str) -> LaunchInfo<&'static str, &'static str> {
    LaunchInfo { executable: "vmo", job: "job", name: name.into() }
}

fn fd(n: u16, handle: u32) -> HandleEntry<u32> {
    HandleEntry { handle, id: pa_hnd(PA_FD, n) }
}

fn name(path: &str, directory: u32) -> NameEntry<u32> {
    NameEntry { path: path.as_bytes().to_vec(), directory }
}

#[test]
fn calls_accumulate_and_launch_takes_everything_then_resets() {
    let mut s = State::new();
    s.add_args(vec![b"prog".to_vec(), b"-v".to_vec()]);
    s.add_args(vec![b"x".to_vec()]);
    s.add_environs(vec![b"A=1".to_vec()]);
    s.add_environs(vec![b"B=2".to_vec()]);
    s.add_names(vec![name("/svc", 10)]);
    s.add_names(vec![name("/pkg", 11)]);
    s.add_handles(vec![fd(0, 20), fd(1, 21)]);
    s.add_handles(vec![HandleEntry { handle: 30, id: pa_hnd(PA_LDSVC_LOADER, 0) }]);
    s.add_handles(vec![HandleEntry { handle: 31, id: pa_hnd(PA_VMO_VDSO, 0) }]);
    s.add_handles(vec![HandleEntry { handle: 32, id: pa_hnd(PA_VMO_VDSO, 1) }]);
    s.set_options(1);
    s.set_options(4);
    assert!(!s.is_empty());

    let spec = s.take(info("prog")).expect("valid");
    assert!(s.is_empty(), "Launch leaves the launcher in its initial state");
    assert_eq!(spec.args, [b"prog".to_vec(), b"-v".to_vec(), b"x".to_vec()]);
    assert_eq!(spec.environ, [b"A=1".to_vec(), b"B=2".to_vec()]);
    let names: Vec<(&[u8], u32)> = spec.names.iter().map(|n| (n.path.as_slice(), n.directory)).collect();
    assert_eq!(names, [(&b"/svc"[..], 10), (&b"/pkg"[..], 11)]);
    let handles: Vec<(u32, u32)> = spec.handles.iter().map(|h| (h.handle, h.id)).collect();
    assert_eq!(handles, [(20, pa_hnd(PA_FD, 0)), (21, pa_hnd(PA_FD, 1)), (32, pa_hnd(PA_VMO_VDSO, 1))]);
    assert_eq!((spec.loader, spec.vdso), (Some(30), Some(31)), "the loader and vDSO 0 are kept aside");
    assert_eq!(spec.options, 4, "SetOptions replaces");
    assert_eq!((spec.executable, spec.job, spec.name.as_str()), ("vmo", "job", "prog"));
    assert_eq!(spec.caller_handles(), 5);

    let empty = s.take(info("again")).expect("an empty launch is valid");
    assert!(empty.args.is_empty() && empty.handles.is_empty() && empty.loader.is_none() && empty.options == 0);
}

#[test]
fn a_refused_launch_also_resets() {
    let mut s = State::new();
    s.add_args(vec![b"bad\0arg".to_vec()]);
    s.add_handles(vec![fd(1, 1)]);
    assert_eq!(s.take(info("p")).unwrap_err(), LaunchError::Nul { what: "argument", index: 0 });
    assert!(s.is_empty());
    s.add_args(vec![b"good".to_vec()]);
    assert_eq!(s.take(info("p")).expect("the next launch starts clean").args, [b"good".to_vec()]);
}

#[test]
fn strings_with_nul_are_refused_with_their_place() {
    let mut s = State::new();
    s.add_environs(vec![b"A=1".to_vec(), b"B=\0x".to_vec()]);
    assert_eq!(s.take(info("p")).unwrap_err(), LaunchError::Nul { what: "environment entry", index: 1 });
    s.add_names(vec![name("/ok", 1), name("/a\0b", 2)]);
    assert_eq!(s.take(info("p")).unwrap_err(), LaunchError::Nul { what: "namespace path", index: 1 });
}

#[test]
fn namespace_paths_are_absolute_and_bounded() {
    let mut s = State::new();
    s.add_names(vec![name("svc", 1)]);
    assert_eq!(s.take(info("p")).unwrap_err(), LaunchError::RelativePath { path: "svc".into() });
    let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    s.add_names(vec![name(&long, 1)]);
    assert_eq!(s.take(info("p")).unwrap_err(), LaunchError::LongPath { len: MAX_PATH_BYTES + 1 });
    let longest = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
    s.add_names(vec![name(&longest, 1)]);
    assert!(s.take(info("p")).is_ok());
}

#[test]
fn handle_types_the_launcher_adds_are_refused() {
    for kind in [PA_PROC_SELF, PA_VMAR_LOADED, PA_VMO_EXECUTABLE, PA_NS_DIR] {
        let mut s = State::new();
        s.add_handles(vec![fd(0, 1), HandleEntry { handle: 2, id: pa_hnd(kind, 0) }]);
        assert_eq!(s.take(info("p")).unwrap_err(), LaunchError::ReservedHandle { index: 1, kind });
    }
}

#[test]
fn the_handle_budget_leaves_room_for_the_launchers_own() {
    let mut s = State::new();
    let names: Vec<_> = (0..8).map(|i| name(&format!("/d{i}"), i)).collect();
    s.add_names(names);
    let fds: Vec<_> = (0..(CALLER_HANDLE_BUDGET - 8) as u16).map(|i| fd(i, u32::from(i))).collect();
    s.add_handles(fds);
    let spec = s.take(info("p")).expect("exactly the budget");
    assert_eq!(spec.caller_handles() + LAUNCHER_HANDLES.len(), crate::processargs::MAX_MSG_HANDLES);

    let fds: Vec<_> = (0..=CALLER_HANDLE_BUDGET as u16).map(|i| fd(i, u32::from(i))).collect();
    s.add_handles(fds);
    assert_eq!(s.take(info("p")).unwrap_err(), LaunchError::TooManyHandles { count: CALLER_HANDLE_BUDGET + 1 });
}

#[test]
fn the_message_must_fit_a_channel_message() {
    let launcher = 4 * LAUNCHER_HANDLES.len();
    let fits = MAX_MSG_BYTES - HEADER_BYTES - launcher - 1;
    let mut s = State::new();
    s.add_args(vec![vec![b'a'; fits]]);
    assert!(s.take(info("p")).is_ok(), "a message of exactly {MAX_MSG_BYTES} bytes");
    s.add_args(vec![vec![b'a'; fits + 1]]);
    assert_eq!(s.take(info("p")).unwrap_err(), LaunchError::TooLarge { bytes: MAX_MSG_BYTES + 1 });
}

#[test]
fn after_a_limit_the_state_stops_growing() {
    let mut s = State::new();
    s.add_args(vec![vec![b'a'; MAX_MSG_BYTES]]);
    for _ in 0..100 {
        s.add_args(vec![vec![b'b'; 1000]]);
        s.add_handles(vec![fd(3, 9)]);
    }
    assert_eq!(s.args.len(), 1, "nothing accumulates past the refusal");
    assert!(s.handles.is_empty());
}

#[test]
fn process_names_are_bounded() {
    let mut s = State::new();
    assert!(s.take(info(&"n".repeat(MAX_NAME_BYTES))).is_ok());
    let long = "n".repeat(MAX_NAME_BYTES + 1);
    assert_eq!(s.take(info(&long)).unwrap_err(), LaunchError::BadName { name: long });
    assert!(matches!(s.take(info("a\0b")), Err(LaunchError::BadName { .. })));
}
