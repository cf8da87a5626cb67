//! Entry points for the fuzz targets in `fuzz/` that exercise the runtime
//! (not a stable API): what guests and tenants hand a node. None of them may
//! panic, whatever the input: that is what the fuzzers check.

use std::sync::Arc;

use crate::bindings::fabric::core::types::{LabelAffinity, NodeAffinity, Placement, Resources};
use crate::limits::Limits;
use crate::logs::{GuestOutput, LogSource, Stream};
use crate::manifest::{JobManifest, Policy};

/// What a guest passes to `submit` and `create-actor` besides its values:
/// resource demands and a placement.
#[allow(clippy::too_many_arguments)]
pub fn guest_options(
    num_cpus: Option<f64>,
    num_gpus: Option<f64>,
    memory: Option<u64>,
    custom: Vec<(String, f64)>,
    placement: u8,
    node: String,
    key: String,
    value: String,
) {
    let r = Resources {
        num_cpus,
        num_gpus,
        memory,
        custom,
    };
    if let Ok(demand) = crate::host_api::demand_of(&r, 1.0) {
        let sched = crate::scheduler::Scheduler::new(
            crate::resources::ResourceSet::default().with_cpus(4.0),
            1,
        );
        let _ = sched.check_feasible(&demand);
        let _ = demand.to_string();
    }
    let p = match placement % 4 {
        0 => None,
        1 => Some(Placement::Spread),
        2 => Some(Placement::Node(NodeAffinity {
            node_id: node,
            soft: placement > 128,
        })),
        _ => Some(Placement::Label(LabelAffinity {
            key,
            value,
            soft: placement > 128,
        })),
    };
    let _ = crate::host_api::strategy_of(p);
}

/// Counts what reaches a job's log: line bytes, and marker lines.
#[derive(Default)]
struct CountingSink {
    bytes: std::sync::atomic::AtomicU64,
    markers: std::sync::atomic::AtomicU64,
}

impl crate::logs::LogSink for CountingSink {
    fn line(&self, _: &LogSource, _: Stream, line: &[u8]) {
        use std::sync::atomic::Ordering::Relaxed;
        if line.starts_with(b"[fabric: output dropped past ") {
            self.markers.fetch_add(1, Relaxed);
        } else {
            self.bytes.fetch_add(line.len() as u64, Relaxed);
        }
    }
}

/// A guest's writes to stdout, in `chunks`: lines are cut, and no more than
/// `limit` bytes of them (then one marker line) reach the job's log.
pub fn guest_output(chunks: &[Vec<u8>], limit: u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let sink = Arc::new(CountingSink::default());
    {
        let out = GuestOutput::new(
            sink.clone(),
            LogSource::task("f", "t"),
            Stream::Stdout,
            limit,
        );
        for c in chunks {
            out.write_bytes(c);
        }
    }
    let written: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let kept = sink.bytes.load(Relaxed);
    assert!(
        kept <= written.min(limit),
        "{kept} bytes kept of {written} with a limit of {limit}"
    );
    let markers = sink.markers.load(Relaxed);
    assert!(markers <= 1, "{markers} marker lines");
    assert_eq!(
        markers == 1,
        written > limit,
        "a marker exactly when output was dropped"
    );
}

/// A job manifest as a tenant writes it.
pub fn manifest(text: &str) {
    if let Ok(m) = JobManifest::parse(text) {
        let _ = Limits::default().for_job(&Limits::max(), &m.limits);
        let _ = Policy::default().check(&m.capabilities);
        let _ = Policy::allow_all().check(&m.capabilities);
    }
}

/// A component as a tenant uploads it: its header is checked and its custom
/// sections are stripped (a node does both before it digests or compiles
/// one); what stripping keeps strips to itself again.
pub fn component(bytes: &[u8]) {
    if crate::runtime::component::check_header(bytes).is_err() {
        return;
    }
    if let Ok(stripped) = crate::runtime::strip::strip_custom_sections(bytes) {
        assert!(stripped.len() <= bytes.len());
        let again = crate::runtime::strip::strip_custom_sections(&stripped)
            .expect("a stripped component parses");
        assert_eq!(again, stripped);
    }
}

/// A `put-bytes` header as a guest sends it, for data of `len` bytes.
pub fn put_bytes_header(header: &[u8], len: usize) {
    let _ = crate::host_api::objects::check_bin_header(header, len);
}
