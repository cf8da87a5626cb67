//! Protobuf bytes as a peer, the head or a client sends them: decoding and
//! every check a node applies before acting on a message.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fabric_host::fuzzing::peer_bytes(data);
    fabric_host::fuzzing::control_bytes(data);
});
