//! The image request and reply bodies (crates/plan/src/image.rs): the daemon
//! decodes requests from any local client, the thin exec client decodes the
//! daemon's replies. Decoding arbitrary bytes never panics; whatever decodes
//! encodes back to the same bytes, and the env entries, the plan fd mapping
//! and the frame header read only what they were given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use zygote_plan::image::{ImageReply, ImageRequest, PROGRAM_FD, frame_header, parse_frame_header};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = ImageRequest::decode(data) {
        assert_eq!(req.env_entries().count(), req.env_count as usize);
        let mut out = vec![0u8; req.encoded_len()];
        assert_eq!(req.encode(&mut out), out.len());
        assert_eq!(out, data);
    }
    if let Ok(reply) = ImageReply::decode(data) {
        let mut out = vec![0u8; reply.encoded_len()];
        assert_eq!(reply.encode(&mut out), out.len());
        assert_eq!(ImageReply::decode(&out), Ok(reply));
        let attached: Vec<i32> = (0..reply.fd_count as i32).map(|i| 100 + i).collect();
        for fd in [i32::MIN, -1, 0, PROGRAM_FD, PROGRAM_FD + 1, PROGRAM_FD + reply.fd_count as i32, i32::MAX] {
            if let Some(local) = ImageReply::local_fd(fd, 3, &attached) {
                assert!(local == 3 || attached.contains(&local));
            }
        }
    }
    if let Some((len, fds)) = parse_frame_header(data) {
        assert_eq!(parse_frame_header(&frame_header(len as usize, fds as usize)), Some((len, fds)));
    }
});
