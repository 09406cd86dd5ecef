//! The plan decoder the stub trusts: `Plan::parse` on arbitrary bytes, then
//! every read the stub (crates/stub/src/main.rs, restore.rs, prestart.rs)
//! makes of a plan that parsed: each region and its source, each fd move and
//! the close-the-gaps walk over them, each op (typed, by kind, as the stub
//! selects them), the name, and the args block split into argc + envc strings.
//! After `parse` succeeds none of these may panic; the status record the stub
//! sends for a parse error must decode again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zygote_plan::{FdMove, OpKind, Plan, RestoreOp, Source, Stage, StatusRecord};

fuzz_target!(|data: &[u8]| {
    let _ = StatusRecord::decode(data).map(|r| (Stage::from_u32(r.stage), r.encode()));
    let plan = match Plan::parse(data) {
        Ok(plan) => plan,
        Err(e) => {
            let (code, extra) = StatusRecord::plan_error(e);
            let r = StatusRecord { stage: Stage::Plan as u32, index: extra, errno: 0, detail: code, addr: 0 };
            assert_eq!(StatusRecord::decode(&r.encode()), Some(r));
            return;
        }
    };
    let h = plan.header;
    assert!(h.total_size as usize <= data.len());
    // map_image: every region, by source.
    for i in 0..h.region_count {
        let r = plan.region(i);
        let source = r.source().expect("parse checked the source");
        assert!(r.len > 0 && r.vaddr.checked_add(r.len).is_some());
        if source == Source::Fd {
            let _ = (r.fd as isize as usize, r.offset as usize);
        }
    }
    // launch: the fd moves in order, then close the gaps between targets.
    let mut lo: u32 = 3;
    let mut last = -1;
    for i in 0..h.fd_count {
        let FdMove { from, to } = plan.fd_move(i);
        assert!(from >= 0 && to > last, "parse checked the order");
        last = to;
        let to = to as u32;
        if to >= lo {
            if to > lo {
                let _gap = (lo, to - 1);
            }
            lo = to + 1;
        }
    }
    // restore: the ops of each kind in plan order, typed.
    for i in 0..h.op_count {
        let op = plan.op(i);
        let kind = op.kind().expect("parse checked the kind");
        let _ = kind.at_warm_up();
        if let Some(typed) = RestoreOp::from_op(&op) {
            assert_eq!(typed.kind(), kind);
            assert_eq!(RestoreOp::from_op(&typed.to_op()), Some(typed));
        }
    }
    let _ = (0..h.op_count).map(|i| plan.op(i)).find(|o| o.kind() == Some(OpKind::MmLayout));
    // launch: PR_SET_NAME takes at most 15 bytes.
    assert!(plan.name().len() <= 16);
    // prestart::build_stack: argc + envc NUL-terminated strings.
    let args = plan.args();
    assert_eq!(args.len(), h.args_len as usize);
    if !args.is_empty() {
        assert_eq!(args.last(), Some(&0));
        let strings = args.split(|&b| b == 0).count() - 1;
        assert_eq!(strings, h.argc as usize + h.envc as usize);
        assert!(h.argc >= 1);
    } else {
        assert_eq!((h.argc, h.envc), (0, 0));
    }
});
