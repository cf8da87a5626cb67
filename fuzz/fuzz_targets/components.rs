//! Components as tenants upload them: the header check and the stripping
//! of custom sections a node does before it digests or compiles one, and
//! the `put-bytes` header check.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    fabric_host::fuzzing::component(data);
    if let Some((&len, header)) = data.split_first() {
        fabric_host::fuzzing::put_bytes_header(header, usize::from(len));
    }
});
