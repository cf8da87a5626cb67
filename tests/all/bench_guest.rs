//! The benchmark guest (tests/programs/bench) runs every workload of Ray's
//! suite and of the scale envelope at a small size and reports
//! `<name> <ops> <seconds>`, so `cargo bench` cannot rot unnoticed.

use crate::support::{node, node_with, programs, run_ok, test_config};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_benchmark_workload_runs_and_reports() {
    // With the `custom` resource Ray's placement-group row reserves from.
    let node = node_with(fabric_host::NodeConfig {
        num_cpus: Some(2.0),
        custom: fabric_host::resources::ResourceSet::parse_custom("custom=100").unwrap(),
        ..test_config()
    });
    let list = run_ok(&node, programs::BENCH, &["list"]).await;
    let workloads: Vec<&str> = list.split_whitespace().collect();
    assert!(workloads.len() >= 21, "{list}");
    for workload in workloads {
        let args: &[&str] = match workload {
            "single_client_put_gigabytes" | "multi_client_put_gigabytes" => &["1", "mib=1"],
            "queued_tasks" => &["200", "clients=2", "seconds=0.2"],
            "idle_actors" => &["20", "seconds=0"],
            "refs_as_args" => &["100"],
            "put_get_object" => &["1", "mib=1"],
            _ => &["2", "clients=2"],
        };
        let mut argv = vec![workload];
        argv.extend_from_slice(args);
        let out = run_ok(&node, programs::BENCH, &argv).await;
        let prefix = if workload == "put_get_object" {
            "get_object "
        } else {
            workload
        };
        let line = out
            .lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{workload}: {out}"));
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{line}");
        let ops: f64 = parts[1].parse().unwrap();
        let secs: f64 = parts[2].parse().unwrap();
        assert!(ops > 0.0 && secs > 0.0, "{line}");
    }
}

/// wasmtime caps a store at 100,000 live handles by default; a job may
/// hold as many refs as its pending-tasks limit allows, and a task may
/// take them all as its argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_can_hold_and_pass_more_refs_than_wasmtimes_default_cap() {
    let node = node(2.0);
    let out = run_ok(&node, programs::BENCH, &["refs_as_args", "150000"]).await;
    assert!(out.contains("refs_as_args 150000 "), "{out}");
}
