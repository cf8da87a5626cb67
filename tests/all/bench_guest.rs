//! The benchmark guest (tests/programs/bench) runs every workload and
//! reports `<name> <ops> <seconds>`, so `cargo bench` cannot rot unnoticed.

use crate::support::{node, programs, run_ok};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_benchmark_workload_runs_and_reports() {
    let node = node(2.0);
    let list = run_ok(&node, programs::BENCH, &["list"]).await;
    for workload in list.split_whitespace() {
        let n = if workload.starts_with("put-gigabytes") {
            "1"
        } else {
            "20"
        };
        let out = run_ok(&node, programs::BENCH, &[workload, n]).await;
        let line = out
            .lines()
            .find(|l| l.starts_with(workload))
            .unwrap_or_else(|| panic!("{workload}: {out}"));
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{line}");
        let ops: u64 = parts[1].parse().unwrap();
        let secs: f64 = parts[2].parse().unwrap();
        assert!(ops > 0 && secs > 0.0, "{line}");
    }
}
