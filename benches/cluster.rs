//! Cluster benchmarks on local nodes, each a real `fabric` process:
//! async task throughput on 1, 2 and 3 nodes, moving a 1 GiB object from
//! one node to another, and a 100 MiB object read on every node.
//!
//! Run it (release build):
//! ```text
//! cargo bench --bench cluster
//! ```
//! Every figure is timed inside the driver and is the mean ± standard
//! deviation of several runs. All nodes share this one machine, so they
//! share its cores and memory bandwidth too.

#[path = "../tests/support/mod.rs"]
mod support;

use support::procs::ProcCluster;
use support::programs;

const RUNS: usize = 3;

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let m = xs.iter().sum::<f64>() / xs.len() as f64;
    (
        m,
        (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / xs.len() as f64).sqrt(),
    )
}

/// The seconds a scenario printed as its last word.
fn seconds(c: &ProcCluster, args: &[&str]) -> f64 {
    let (out, err, ok) = c.submit(programs::CLUSTER, args);
    assert!(ok, "{args:?} failed:\n{out}\n{err}");
    let line = out.lines().last().unwrap_or_default();
    line.split_whitespace()
        .rev()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no time in {line:?}"))
}

fn cluster(nodes: usize) -> ProcCluster {
    let node = ["--num-cpus", "2", "--num-gpus", "0"];
    let mut c = ProcCluster::start_logging(env!("CARGO_BIN_EXE_fabric"), "warn", &node);
    for _ in 1..nodes {
        c.add(&node);
    }
    c
}

fn main() {
    let tasks = 20_000;
    println!(
        "wasmfabric cluster benchmark: local nodes of 2 CPUs each on this {}-core machine, {RUNS} runs per figure\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("{:<44} {:>20}", "metric", "mean ± sd");
    for n in [1, 2, 3] {
        let c = cluster(n);
        seconds(&c, &["throughput", "2000"]); // warm up (compiles on each node)
        let rates: Vec<f64> = (0..RUNS)
            .map(|_| tasks as f64 / seconds(&c, &["throughput", &tasks.to_string()]))
            .collect();
        let (m, s) = mean_sd(&rates);
        println!(
            "{:<44} {:>20}",
            format!("async tasks on {n} node(s), tasks/s"),
            format!("{m:.0} ± {s:.0}")
        );
        if n == 3 {
            let target = c.nodes[2].id.clone();
            seconds(&c, &["transfer", "64", &target]);
            let gbps: Vec<f64> = (0..RUNS)
                .map(|_| (1u64 << 30) as f64 / seconds(&c, &["transfer", "1024", &target]) / 1e9)
                .collect();
            let (m, s) = mean_sd(&gbps);
            println!(
                "{:<44} {:>20}",
                "1 GiB object to another node, GB/s",
                format!("{m:.2} ± {s:.2}")
            );
            let others = [c.nodes[1].id.clone(), c.nodes[2].id.clone()];
            let secs: Vec<f64> = (0..RUNS)
                .map(|_| seconds(&c, &["broadcast", "100", &others[0], &others[1]]))
                .collect();
            let (m, s) = mean_sd(&secs);
            println!(
                "{:<44} {:>20}",
                "100 MiB broadcast to the 2 other nodes, s",
                format!("{m:.3} ± {s:.3}")
            );
            let (m, _) = mean_sd(
                &secs
                    .iter()
                    .map(|t| 2.0 * (100u64 << 20) as f64 / t / 1e9)
                    .collect::<Vec<_>>(),
            );
            println!(
                "{:<44} {:>20}",
                "  (bytes delivered, GB/s)",
                format!("{m:.2}")
            );
        }
    }
}
