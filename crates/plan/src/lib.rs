//! The spawn-plan wire format, shared by the zygote daemon (which writes plans)
//! and the no_std stub (which reads them), so the two sides cannot drift.
//!
//! A plan is one contiguous byte buffer, little-endian, 8-byte aligned records:
//!
//! ```text
//! Header                      (Header::SIZE bytes, at offset 0)
//! Region  * header.region_count (at header.region_off)
//! FdMove  * header.fd_count     (at header.fd_off)
//! Op      * header.op_count     (at header.op_off)
//! ```
//!
//! Ops restore the state a prototype had at its entry point (images of
//! dynamically linked programs): the vDSO position, stack-pointer fixups,
//! protections, the thread pointer, tid/robust-list/rseq registration, a fresh
//! stack canary and the mm layout (brk). Static images have none.
//!
//! The daemon hands the plan to the stub on [`PLAN_FD`]. The stub `mmap`s it
//! (never `read`s it: children spawned from one fd would share its offset),
//! validates it with [`Plan::parse`], maps every [`Region`], patches the auxiliary
//! vector, moves the caller's fds into place, closes everything else and jumps to
//! the entry point.
//!
//! Every record is encoded and decoded field by field with explicit
//! little-endian conversions, so this crate needs no `unsafe` and the layout is
//! the same whatever the compiler does with struct padding.
#![no_std]
#![forbid(unsafe_code)]

/// "ZYGPLAN\0" as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"ZYGPLAN\0");
/// Bumped on every incompatible change of the layout below.
pub const VERSION: u32 = 3;
/// The fd on which the stub finds its plan.
pub const PLAN_FD: i32 = 3;
/// Largest plan the stub accepts (a sanity bound, not a tuning knob).
pub const MAX_PLAN_SIZE: u64 = 16 << 20;
/// `argv[1]` of a pre-started launcher: the stub execs with
/// `[name, PRESTART_ARG, control fd]` and waits on the control socket for its
/// fds and plan (see [`Header::args_len`]).
pub const PRESTART_ARG: &[u8] = b"--wait-for-plan";
/// Most fds one hand-over to a pre-started launcher carries (the kernel's
/// SCM_MAX_FD is 253).
pub const MAX_HANDOVER_FDS: usize = 250;
/// The status index of a "replicate" hand-over to a warmed-up launcher: its
/// one fd is the control socket of a replacement, which the launcher forks
/// (`CLONE_PARENT`: the spawner is its parent) before it takes its spawn. The
/// replacement keeps the warmed-up image, registers its own thread and waits;
/// the launcher sends its pid (u32) on its own control socket.
pub const HANDOVER_REPLICATE: u32 = 0xffff_fffe;
/// Exit status of a stub that failed before jumping to the program.
pub const STUB_FAILURE_EXIT: i32 = 127;

pub mod image;
mod ops;
mod parse;
mod records;
mod status;
mod wire;

pub use ops::*;
pub use parse::*;
pub use records::*;
pub use status::*;

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    fn sample() -> (Header, [Region; 2], [FdMove; 2]) {
        let mut name = [0u8; 16];
        name[..4].copy_from_slice(b"prog");
        let h = Header {
            entry: 0x5a00_0000_1000,
            at_phdr: 0x5a00_0000_0040,
            at_phnum: 9,
            at_phent: 56,
            at_entry: 0x5a00_0000_1000,
            sigmask: 0,
            status_fd: 7,
            name_len: 4,
            name,
            ..Header::default()
        };
        let regions = [
            Region {
                vaddr: 0x5a00_0000_0000,
                len: 0x2000,
                offset: 0,
                fd: 4,
                prot: PROT_READ | PROT_EXEC,
                source: Source::Fd as u32,
                _reserved: 0,
            },
            Region {
                vaddr: 0x5a00_0000_4000,
                len: 0x1000,
                offset: 0,
                fd: -1,
                prot: PROT_READ | PROT_WRITE,
                source: Source::Zero as u32,
                _reserved: 0,
            },
        ];
        let fds = [FdMove { from: 20, to: 5 }, FdMove { from: 21, to: 9 }];
        (h, regions, fds)
    }

    #[test]
    fn round_trip() {
        let (h, regions, fds) = sample();
        let ops = [Op { kind: OpKind::Fixup as u32, arg: FixupKind::Argv as u32, a: 0x1000, ..Op::default() }];
        let mut buf = vec![0u8; plan_size(2, 2, 1, 0)];
        encode_plan(h, &regions, &fds, &ops, &[], &mut buf);
        let p = Plan::parse(&buf).unwrap();
        assert_eq!(p.op(0), ops[0]);
        assert_eq!(p.header.entry, h.entry);
        assert_eq!(p.header.status_fd, 7);
        assert_eq!(p.name(), b"prog");
        assert_eq!(p.region(0), regions[0]);
        assert_eq!(p.region(1), regions[1]);
        assert_eq!(p.fd_move(1), fds[1]);
    }

    #[test]
    fn rejects_bad_input() {
        let (h, mut regions, fds) = sample();
        let mut buf = vec![0u8; plan_size(2, 2, 0, 0)];
        encode_plan(h, &regions, &fds, &[], &[], &mut buf);
        assert_eq!(Plan::parse(&buf[..100]).unwrap_err(), PlanError::Truncated);
        assert_eq!(Plan::parse(&buf[..buf.len() - 1]).unwrap_err(), PlanError::Truncated);
        let mut bad = buf.clone();
        bad[0] ^= 1;
        assert_eq!(Plan::parse(&bad).unwrap_err(), PlanError::BadMagic);
        let mut bad = buf.clone();
        bad[8] = 99;
        assert_eq!(Plan::parse(&bad).unwrap_err(), PlanError::BadVersion(99));
        regions[1].vaddr += 1;
        encode_plan(h, &regions, &fds, &[], &[], &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadRegion(1));
        regions[1].vaddr -= 1;
        let unsorted = [fds[1], fds[0]];
        encode_plan(h, &regions, &unsorted, &[], &[], &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
    }

    #[test]
    fn args_block_round_trip_and_validation() {
        let (mut h, regions, fds) = sample();
        let args = b"prog\0-x\0HOME=/\0";
        h.argc = 2;
        h.envc = 1;
        let mut buf = vec![0u8; plan_size(2, 2, 0, args.len())];
        encode_plan(h, &regions, &fds, &[], args, &mut buf);
        let p = Plan::parse(&buf).unwrap();
        assert_eq!(p.args(), args);
        assert_eq!((p.header.argc, p.header.envc), (2, 1));
        // A count that does not match the strings, or a missing terminator.
        h.envc = 2;
        encode_plan(h, &regions, &fds, &[], args, &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
        h.envc = 1;
        encode_plan(h, &regions, &fds, &[], b"prog\0-x\0HOME=/x", &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
        // argc 0 with a block is refused too: the program needs argv[0].
        h.argc = 0;
        h.envc = 3;
        encode_plan(h, &regions, &fds, &[], args, &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
        // Found by fuzz/plan: no block, but an offset past the end, which
        // `Plan::args` sliced at.
        let mut buf = vec![0u8; plan_size(2, 2, 0, 0)];
        encode_plan(Header { argc: 0, envc: 0, ..h }, &regions, &fds, &[], &[], &mut buf);
        assert_eq!(Plan::parse(&buf).unwrap().args(), b"");
        buf[140..144].copy_from_slice(&0x5a00_0000u32.to_le_bytes());
        assert_eq!(Plan::parse(&buf).unwrap_err(), PlanError::BadLayout);
    }

    #[test]
    fn status_round_trip() {
        let r = StatusRecord { stage: Stage::Map as u32, index: 3, errno: 17, detail: 0, addr: 0x1000 };
        assert_eq!(StatusRecord::decode(&r.encode()), Some(r));
        assert_eq!(Stage::from_u32(5), Some(Stage::Map));
    }
}
