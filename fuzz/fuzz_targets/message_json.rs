//! The protocol's JSON messages on arbitrary bytes, as the daemon (`Hello`,
//! `Request`) and the client (`Welcome`, `Response`) decode frame bodies.
//! What decodes must survive a round trip and answer its questions
//! (method, expected fds, argument bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zygote_protocol::frame::encode;
use zygote_protocol::message::{Hello, Request, Response, Welcome};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = serde_json::from_slice::<Hello>(data) {
        assert_eq!(serde_json::from_slice::<Hello>(&encode(&h)).expect("Hello round trip"), h);
    }
    if let Ok(r) = serde_json::from_slice::<Request>(data) {
        let (method, fds) = (r.method(), r.expected_fds());
        assert!(Request::METHODS.contains(&method));
        assert!(fds.start() <= fds.end());
        if let Request::Spawn(a) = &r {
            let _ = a.args_bytes();
        }
        let back = serde_json::from_slice::<Request>(&encode(&r)).expect("Request round trip");
        assert_eq!(back, r);
    }
    if let Ok(w) = serde_json::from_slice::<Welcome>(data) {
        let _ = encode(&w);
    }
    if let Ok(r) = serde_json::from_slice::<Response>(data) {
        // Floats may not survive to the last bit: only re-encoding is checked.
        let json = encode(&r);
        assert!(serde_json::from_slice::<Response>(&json).is_ok(), "{}", String::from_utf8_lossy(&json));
    }
});
