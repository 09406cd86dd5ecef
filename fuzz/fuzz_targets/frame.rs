//! The frame layer as the daemon runs it: the fuzz input arrives on a Unix
//! socket in pieces (the first byte chooses their size, so frames and headers
//! are split at every point), `FrameReader` assembles frames under the
//! default limits and under tight ones, and each frame body is decoded as
//! the server decodes it (a `Hello` first, then `Request`s).
#![no_main]

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use libfuzzer_sys::fuzz_target;
use zygote_protocol::frame::{FrameError, FrameReader, HEADER_SIZE, ReadStatus};
use zygote_protocol::message::{Hello, Limits, Request};

fn decode(first: bool, body: &[u8]) {
    if first {
        let _ = serde_json::from_slice::<Hello>(body);
    } else if let Ok(r) = serde_json::from_slice::<Request>(body) {
        let _ = (r.method(), r.expected_fds());
    }
}

/// Feed `bytes` in pieces of `piece` bytes, taking frames as they complete.
/// Returns how many frames came out.
fn run(bytes: &[u8], piece: usize, limits: &Limits) -> Result<usize, FrameError> {
    let (mut tx, rx) = UnixStream::pair().expect("socketpair");
    let mut reader = FrameReader::new();
    let (mut frames, mut sent, mut received) = (0, 0, 0);
    for chunk in bytes.chunks(piece) {
        tx.write_all(chunk).expect("write to the socket pair");
        sent += chunk.len();
        // A socket pair delivers at once; one recvmsg takes up to 16 KiB.
        while received < sent {
            let before = reader.buffered();
            match reader.read_once(rx.as_fd())? {
                ReadStatus::Data => received += reader.buffered() - before,
                status => panic!("{status:?} with bytes in flight"),
            }
        }
        while let Some(f) = reader.next_frame(limits)? {
            assert!(f.fds.is_empty());
            assert!(f.body.len() <= limits.max_message_bytes as usize);
            decode(frames == 0, &f.body);
            frames += 1;
        }
        assert!(reader.buffered() < HEADER_SIZE + limits.max_message_bytes as usize);
    }
    drop(tx);
    assert_eq!(reader.read_once(rx.as_fd())?, ReadStatus::Eof);
    if let Some(f) = reader.finish(limits)? {
        decode(frames == 0, &f.body);
        frames += 1;
    }
    assert_eq!(reader.buffered(), 0, "a clean end leaves nothing buffered");
    Ok(frames)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else { return };
    // A socket pair buffers ~200 KiB; inputs stay far below (-max_len).
    let bytes = &bytes[..bytes.len().min(64 << 10)];
    let piece = usize::from(split).max(1);
    let whole = run(bytes, bytes.len().max(1), &Limits::default());
    let split = run(bytes, piece, &Limits::default());
    // Pieces change nothing: the same frames, or the same kind of error.
    match (&whole, &split) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(a), Err(b)) => assert_eq!(std::mem::discriminant(a), std::mem::discriminant(b), "{a} / {b}"),
        _ => panic!("whole: {whole:?}, in pieces of {piece}: {split:?}"),
    }
    let tight = Limits { max_message_bytes: 64, max_fds: 1, max_args_bytes: 64 };
    let _ = run(bytes, piece, &tight);
});
