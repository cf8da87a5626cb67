//! What a guest hands the host besides opaque values: resource demands,
//! placements, output written to stdout, and (from its tenant) the job
//! manifest.
#![no_main]

use arbitrary::Arbitrary;

#[derive(Arbitrary, Debug)]
struct Input {
    num_cpus: Option<f64>,
    num_gpus: Option<f64>,
    memory: Option<u64>,
    custom: Vec<(String, f64)>,
    placement: u8,
    node: String,
    key: String,
    value: String,
    output: Vec<Vec<u8>>,
    log_limit: u16,
    manifest: String,
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    fabric_host::fuzzing::guest_options(
        input.num_cpus,
        input.num_gpus,
        input.memory,
        input.custom,
        input.placement,
        input.node,
        input.key,
        input.value,
    );
    fabric_host::fuzzing::guest_output(&input.output, u64::from(input.log_limit));
    fabric_host::fuzzing::manifest(&input.manifest);
});
