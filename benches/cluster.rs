//! Cluster benchmarks on local nodes, each a real `fabric` process:
//! async task throughput on 1, 2 and 3 nodes, moving a 1 GiB object from
//! one node to another, and a 100 MiB object read on two others, over the
//! nodes' local sockets and (the baseline) over TLS.
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

/// The seconds a scenario printed on each line, as its next-to-last word.
fn rounds(c: &ProcCluster, args: &[&str]) -> Vec<f64> {
    let (out, err, ok) = c.submit(programs::CLUSTER, args);
    assert!(ok, "{args:?} failed:\n{out}\n{err}");
    out.lines()
        .map(|line| {
            line.split_whitespace()
                .rev()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no time in {line:?}"))
        })
        .collect()
}

/// The seconds a one-round scenario printed.
fn seconds(c: &ProcCluster, args: &[&str]) -> f64 {
    *rounds(c, args).last().expect("a line")
}

fn cluster(nodes: usize, extra: &[&str]) -> ProcCluster {
    let node = [&["--num-cpus", "2", "--num-gpus", "0"], extra].concat();
    let mut c = ProcCluster::start_logging(env!("CARGO_BIN_EXE_fabric"), "warn", &node);
    for _ in 1..nodes {
        c.add(&node);
    }
    c
}

fn row(metric: &str, xs: &[f64], digits: usize) {
    let (m, s) = mean_sd(xs);
    println!(
        "{metric:<60} {:>20}",
        format!("{m:.digits$} ± {s:.digits$}")
    );
}

/// Moving objects between the nodes of `c` (3 nodes): a 1 GiB object to
/// another node, and a 100 MiB one to the 2 others at once. Each job moves
/// a new object several times: the first into a receiver with no buffer
/// of that size (fresh memory, page faults), the next ones into a receiver
/// that freed the last copy and so reuses its buffer.
fn transfers(c: &ProcCluster, how: &str) {
    let target = c.nodes[2].id.clone();
    seconds(c, &["transfer", "64", &target, "1"]);
    let (mut fresh, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let times = rounds(c, &["transfer", "1024", &target, "4"]);
        let gbps = |t: &f64| (1u64 << 30) as f64 / t / 1e9;
        fresh.push(gbps(&times[0]));
        warm.extend(times[1..].iter().map(gbps));
    }
    row(
        &format!("1 GiB to another node {how}, fresh receiver, GB/s"),
        &fresh,
        2,
    );
    row(
        &format!("1 GiB to another node {how}, warm receiver, GB/s"),
        &warm,
        2,
    );
    let others = [c.nodes[1].id.clone(), c.nodes[2].id.clone()];
    let (mut fresh, mut warm) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let times = rounds(c, &["broadcast", "100", "4", &others[0], &others[1]]);
        fresh.push(times[0] * 1e3);
        warm.extend(times[1..].iter().map(|t| t * 1e3));
    }
    row(
        &format!("100 MiB to 2 nodes {how}, fresh receivers, ms"),
        &fresh,
        1,
    );
    row(
        &format!("100 MiB to 2 nodes {how}, warm receivers, ms"),
        &warm,
        1,
    );
}

fn main() {
    let tasks = 20_000;
    println!(
        "wasmfabric cluster benchmark: local nodes of 2 CPUs each on this {}-core machine, {RUNS} runs per figure\n",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    println!("{:<60} {:>20}", "metric", "mean ± sd");
    for n in [1, 2, 3] {
        let c = cluster(n, &[]);
        seconds(&c, &["throughput", "2000"]); // warm up (compiles on each node)
        let rates: Vec<f64> = (0..RUNS)
            .map(|_| tasks as f64 / seconds(&c, &["throughput", &tasks.to_string()]))
            .collect();
        row(&format!("async tasks on {n} node(s), tasks/s"), &rates, 0);
        if n == 3 {
            transfers(&c, "over its local socket");
        }
    }
    // The baseline, in the same run: the same nodes, taking objects from
    // each other over TLS as nodes on different machines do.
    let c = cluster(3, &["--no-local-transfers"]);
    transfers(&c, "over TLS");
}
