//! What a node process holds for its work, and what it gives back: real
//! `fabric` processes whose resident memory is compared, report by report,
//! with what the node accounts for (its object store, the memory of its
//! live instances, the components it keeps), both read on the node at the
//! same instant and carried by its heartbeats.

use std::time::{Duration, Instant};

use wasmfabric_proto::v1 as pb;

use crate::support::procs::ProcCluster;
use crate::support::{distinct_component, programs, with_custom_section};

const MIB: u64 = 1 << 20;

/// One heartbeat's memory report of the head's node.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    resident: u64,
    accounted: u64,
}

/// The head's latest memory report.
async fn sample(c: &ProcCluster) -> Sample {
    let mut client = c.control(&c.admin_token()).await;
    let state = client
        .cluster_state(pb::ClusterStateRequest {})
        .await
        .expect("cluster state")
        .into_inner();
    let head = state.nodes.iter().find(|n| n.is_head).expect("the head");
    Sample {
        at: Instant::now(),
        resident: head.resident_bytes,
        accounted: head.accounted_bytes,
    }
}

/// The idle head's resident memory: the most of a few reports, once it
/// has settled.
async fn idle_baseline(c: &ProcCluster) -> u64 {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut most = 0;
    for _ in 0..5 {
        most = most.max(sample(c).await.resident);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    most
}

/// A single-node cluster (the head) with 2 CPUs.
fn head() -> ProcCluster {
    ProcCluster::start_logging(env!("CARGO_BIN_EXE_fabric"), "warn", &["--num-cpus", "2"])
}

/// Runs breaches `args` on the head while sampling its memory, then 6 s
/// more. Checks every report against the rule (resident within the idle
/// baseline plus what the node accounts for plus 64 MiB), and that the
/// node is back within 100 MiB of its baseline within 5 s of the job's
/// end. Returns the job's output and the peak resident memory.
async fn watch_job(c: &ProcCluster, args: &[&str]) -> (String, u64) {
    let baseline = idle_baseline(c).await;
    let (mut job, lines) = c.submit_in_background(programs::BREACHES, args);
    let mut samples = Vec::new();
    let ended = loop {
        samples.push(sample(c).await);
        if job.try_wait().unwrap().is_some() {
            break Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(job.wait().unwrap().success(), "{:?}", lines.lock().unwrap());
    while ended.elapsed() < Duration::from_secs(6) {
        samples.push(sample(c).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if std::env::var("FOOTPRINT_DUMP").is_ok() {
        for s in &samples {
            eprintln!("{} {}", s.resident / MIB, s.accounted / MIB);
        }
    }
    for s in &samples {
        assert!(
            s.resident <= baseline + s.accounted + 64 * MIB,
            "{args:?}: resident {} MiB, idle baseline {} MiB + accounted {} MiB + 64 MiB",
            s.resident / MIB,
            baseline / MIB,
            s.accounted / MIB
        );
    }
    let settled = samples
        .iter()
        .filter(|s| s.at >= ended + Duration::from_secs(5))
        .map(|s| s.resident)
        .max()
        .expect("reports after the job");
    assert!(
        settled <= baseline + 100 * MIB,
        "{args:?}: 5 s after the job the node holds {} MiB (idle: {} MiB)",
        settled / MIB,
        baseline / MIB
    );
    let peak = samples.iter().map(|s| s.resident).max().unwrap_or(0);
    let out = lines.lock().unwrap().join("\n");
    (out, peak)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_readers_of_a_large_object_leave_no_memory_behind() {
    // Once: 3.5 GB resident (one reader: 0.53 GB), kept after the job.
    let c = head();
    let (out, peak) = watch_job(&c, &["read-big", "100", "16"]).await;
    assert!(out.contains("read 1600000000 bytes in 16 tasks"), "{out}");
    assert!(peak < 1024 * MIB, "peak {} MiB", peak / MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_tasks_touching_200_mib_each_leave_no_memory_behind() {
    // Once: 7.0 GB resident.
    let c = head();
    let (out, peak) = watch_job(&c, &["touch", "200", "70"]).await;
    assert!(out.contains("touched 14000 MiB in 70 tasks"), "{out}");
    assert!(peak < 1024 * MIB, "peak {} MiB", peak / MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_tasks_leaves_no_memory_behind() {
    // Once: an idle node stayed at 1.57 GB for good after such a burst.
    let c = head();
    let (out, _) = watch_job(&c, &["burst", "500", "3"]).await;
    assert!(out.contains("burst of 500 touched 1500 MiB"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_million_empty_objects_are_accounted_and_given_back() {
    // Once: 1.8 GiB charged to no one, 1.4 GiB of it kept after the job.
    // Now each costs its overhead and the job's objects limit (2,000,000 by
    // default) stops it with a typed error.
    let c = head();
    let (out, _) = watch_job(&c, &["empty-puts"]).await;
    assert!(
        out.contains("stored 2000000 empty objects, then: limit-exceeded objects 2000000"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_with_a_wrong_token_are_never_read() {
    // Six 200 MiB submits with a wrong token once took the head from 81 MiB
    // to 1.16 GiB.
    let c = head();
    let baseline = idle_baseline(&c).await;
    let mut client = c.control("not-a-token").await;
    for _ in 0..6 {
        let request = pb::SubmitJobRequest {
            component: vec![0u8; 200 << 20].into(),
            args: Vec::new(),
            manifest: String::new(),
            components: Vec::new(),
        };
        let refused = client.submit_job(request).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{refused:?}");
    }
    let grown = c.rss(0).saturating_sub(baseline);
    assert!(grown < 64 * MIB, "the head grew by {} MiB", grown / MIB);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_with_huge_custom_sections_cost_the_head_only_their_code() {
    // Eight jobs with distinct components, each with a 48 MiB custom
    // section, once added 523 MiB to the head for good.
    let c = head();
    let baseline = idle_baseline(&c).await;
    for n in 0..8 {
        let wasm = with_custom_section(distinct_component(700 + n), 48 << 20, n as u8);
        let path = c.dir.join(format!("bloated-{n}.wasm"));
        std::fs::write(&path, wasm).unwrap();
        let (out, err, ok) = c.submit(path.to_str().unwrap(), &["hold", "10"]);
        assert!(ok, "{out}\n{err}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown = c.rss(0).saturating_sub(baseline);
    assert!(grown < 100 * MIB, "the head grew by {} MiB", grown / MIB);
}
