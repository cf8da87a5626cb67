//! The wasmfabric microbenchmark: call rates, object store throughput,
//! instantiation latency and actor density on one embedded node, next to
//! Ray 2.60's figures on the same kind of machine.
//!
//! Run it (release build; guests always build in release):
//! ```text
//! cargo bench --bench microbenchmark
//! ```
//! Each workload runs inside the sandbox (tests/programs/bench) and is timed
//! there; every figure is the mean of several runs, with the spread.

#[path = "../tests/support/mod.rs"]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabric_host::logs::{LogSink, LogSource, Stream};
use fabric_host::{Node, NodeConfig};
use tokio::sync::Notify;

use support::programs;

/// Runs per workload.
const RUNS: usize = 3;

/// Collects stdout lines and wakes a waiter on each.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    notify: Notify,
}

impl LogSink for Lines {
    fn line(&self, _: &LogSource, stream: Stream, line: &[u8]) {
        if stream == Stream::Stdout {
            self.lines
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(line).into_owned());
            self.notify.notify_waiters();
        }
    }
}

/// Runs `workload` with `n` and returns (ops, seconds) as the guest timed them.
async fn run(
    node: &Node,
    app: &Arc<fabric_host::AppComponent>,
    workload: &str,
    n: usize,
) -> (f64, f64) {
    let sink = Arc::new(Lines::default());
    let outcome = node
        .run_job(
            app.clone(),
            vec![workload.into(), n.to_string()],
            sink.clone(),
        )
        .await;
    outcome.result.unwrap_or_else(|e| panic!("{workload}: {e}"));
    let lines = sink.lines.lock().unwrap();
    let line = lines
        .iter()
        .find(|l| l.starts_with(workload))
        .unwrap_or_else(|| panic!("{workload}: no result in {lines:?}"));
    let parts: Vec<&str> = line.split_whitespace().collect();
    (parts[1].parse().unwrap(), parts[2].parse().unwrap())
}

fn mean_spread(xs: &[f64]) -> (f64, f64) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    (mean, var.sqrt())
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

struct Row {
    name: &'static str,
    unit: &'static str,
    ours: (f64, f64),
    ray: Option<f64>,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = Node::start(NodeConfig {
            num_gpus: Some(0),
            object_store_memory: Some(4 << 30),
            ..NodeConfig::default()
        })
        .expect("node");
        let app = node.load(&std::fs::read(programs::BENCH).unwrap()).await.expect("load");
        let cpus = node.stats().total.cpu as f64 / fabric_host::resources::UNIT as f64;
        println!("wasmfabric microbenchmark: {cpus} CPUs, {RUNS} runs per figure (mean ± standard deviation)\n");

        // (workload, ops per run, reported name, unit, Ray 2.60 figure)
        let plan: &[(&str, usize, &str, &str, Option<f64>)] = &[
            ("tasks-sync", 5_000, "single_client_tasks_sync", "tasks/s", Some(542.0)),
            ("tasks-async", 10_000, "single_client_tasks_async", "tasks/s", Some(1_864.0)),
            ("actor-calls-sync", 10_000, "1_1_actor_calls_sync", "calls/s", Some(1_111.0)),
            ("actor-calls-async", 10_000, "1_1_actor_calls_async", "calls/s", Some(5_178.0)),
            ("put-calls", 50_000, "single_client_put_calls", "puts/s", Some(2_160.0)),
            ("get-calls", 100_000, "single_client_get_calls", "gets/s", Some(13_155.0)),
            ("put-gigabytes", 30, "single_client_put_gigabytes", "GB/s", Some(12.35)),
            ("put-gigabytes-encoded", 10, "put_gigabytes (serde-encoded)", "GB/s", None),
        ];
        let mut rows = Vec::new();
        for (workload, n, name, unit, ray) in plan {
            run(&node, &app, workload, n / 10).await; // warm up
            let mut rates = Vec::new();
            for _ in 0..RUNS {
                let (ops, secs) = run(&node, &app, workload, *n).await;
                let rate = ops / secs;
                rates.push(if *unit == "GB/s" { rate / 1e9 } else { rate });
            }
            rows.push(Row { name, unit, ours: mean_spread(&rates), ray: *ray });
        }

        let mut lat: Vec<f64> = node
            .measure_instantiate(app.clone(), 5_000)
            .await
            .expect("instantiate")
            .iter()
            .map(|d| d.as_secs_f64() * 1e6)
            .collect();
        lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let p50 = lat[lat.len() / 2];
        let p99 = lat[lat.len() * 99 / 100];

        // Density: RSS growth while 10,000 actors sit idle.
        let idle = 10_000;
        let before = rss_bytes();
        let sink = Arc::new(Lines::default());
        let job = {
            let (node, app, sink) = (node.clone(), app.clone(), sink.clone());
            tokio::spawn(async move { node.run_job(app, vec!["idle-actors".into(), idle.to_string()], sink).await })
        };
        let mut after = before;
        for _ in 0..600 {
            let notified = sink.notify.notified();
            if sink.lines.lock().unwrap().iter().any(|l| l == "actors ready") {
                after = rss_bytes();
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(100), notified).await;
        }
        let created = sink.lines.lock().unwrap().iter().find(|l| l.starts_with("idle-actors")).cloned();
        job.await.unwrap().result.expect("idle actors job");
        let creation_rate = created
            .map(|l| {
                let p: Vec<&str> = l.split_whitespace().collect();
                p[1].parse::<f64>().unwrap() / p[2].parse::<f64>().unwrap()
            })
            .unwrap_or(0.0);

        println!("{:<32} {:>18} {:>12} {:>8}", "metric", "wasmfabric", "Ray 2.60", "ratio");
        for r in &rows {
            let (m, s) = r.ours;
            let ours = if r.unit == "GB/s" { format!("{m:.2} ± {s:.2}") } else { format!("{m:.0} ± {s:.0}") };
            let (ray, ratio) = match r.ray {
                Some(x) => (if r.unit == "GB/s" { format!("{x:.2}") } else { format!("{x:.0}") }, format!("{:.1}x", m / x)),
                None => ("-".into(), "-".into()),
            };
            println!("{:<32} {:>18} {:>12} {:>8}   {}", r.name, ours, ray, ratio, r.unit);
        }
        println!("{:<32} {:>18}", "instantiate latency p50", format!("{p50:.1} us"));
        println!("{:<32} {:>18}", "instantiate latency p99", format!("{p99:.1} us"));
        println!("{:<32} {:>18} {:>12} {:>8}   actors/s", "actor creation (10,000)", format!("{creation_rate:.0}"), "5.5", format!("{:.0}x", creation_rate / 5.5));
        let per_actor = after.saturating_sub(before) as f64 / idle as f64;
        println!(
            "{:<32} {:>18} {:>12} {:>8}   ({} MiB for all 10,000)",
            "RSS per idle actor",
            format!("{:.1} KiB", per_actor / 1024.0),
            "77.6 MiB",
            format!("{:.0}x less", 77.6 * 1024.0 * 1024.0 / per_actor.max(1.0)),
            (after.saturating_sub(before)) >> 20
        );
    });
}
