//! The streaming server's SPDY/3.1 framing: whatever a client sends after
//! the upgrade parses into a frame or a clean error (compressed header
//! blocks included, through one decompression context as on a connection).
#![no_main]

use berth_cri::stream::spdy::{Frame, HeaderDecoder};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut dec = HeaderDecoder::new();
    let _ = dec.decode(data);
    let mut dec = HeaderDecoder::new();
    let mut rest = data;
    while rest.len() >= 8 {
        let head: [u8; 8] = rest[..8].try_into().unwrap();
        let len = (u32::from_be_bytes([head[4], head[5], head[6], head[7]]) & 0xff_ffff) as usize;
        let payload = &rest[8..(8 + len).min(rest.len())];
        let _ = Frame::decode(head, payload, &mut dec);
        rest = &rest[8 + payload.len()..];
    }
});
